"""The Wilson interval of a robust accuracy, against textbook values."""
import pytest

from tfadv.evaluation.uncertainty import wilson_interval


def test_wilson_interval_matches_textbook_values():
    # 0 of 10: [0, z^2 / (n + z^2)] = [0, 0.2775]; 50 of 100: 0.5 -+ 0.0962 (Wilson 1927; Newcombe 1998, Table I)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.27753, abs=1e-5))
    assert wilson_interval(10, 10) == (pytest.approx(1 - 0.27753, abs=1e-5), 1.0)
    assert wilson_interval(50, 100) == (pytest.approx(0.40383, abs=1e-5), pytest.approx(0.59617, abs=1e-5))
    # About ±3 points on 1,000 test points near 45%, ±1 on RobustBench's 10,000.
    low, high = wilson_interval(450, 1000)
    assert 0.029 < (high - low) / 2 < 0.032
    low, high = wilson_interval(4500, 10000)
    assert 0.0095 < (high - low) / 2 < 0.0100
    assert wilson_interval(50, 100, level=0.99)[0] < wilson_interval(50, 100)[0]


@pytest.mark.parametrize("args", [(5, 0), (11, 10), (-1, 10), (5, 10, 1.0), (5, 10, 0.0)])
def test_wilson_interval_refuses_impossible_counts_and_levels(args):
    with pytest.raises(ValueError, match="wilson_interval"):
        wilson_interval(*args)
