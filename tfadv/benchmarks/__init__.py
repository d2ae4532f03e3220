"""Benchmarks run by `make bench` (`python -m tfadv.benchmarks`): speed as ratios measured in one process."""
