"""`make bench`: every benchmark in one process, printed as tables of ratios.

`python -m tfadv.benchmarks [--quick] [--rounds N] [--only attacks|training|evaluation|minibatch]`
"""
from __future__ import annotations

import argparse
import importlib

import pandas as pd

SUITES = ("attacks", "training", "evaluation", "minibatch")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tfadv.benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per case (median taken)")
    parser.add_argument("--quick", action="store_true", help="small cases only (no ResNet50 at 224)")
    parser.add_argument("--only", choices=SUITES, help="run one suite")
    args = parser.parse_args(argv)
    for suite in (args.only,) if args.only else SUITES:
        module = importlib.import_module(f"tfadv.benchmarks.{suite}")
        rows = module.run(rounds=args.rounds, quick=args.quick)
        print(f"\n## {suite}\n")
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
