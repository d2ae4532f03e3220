"""The Wilson interval of a robust accuracy, against textbook values."""
import numpy as np
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


@pytest.mark.parametrize("successes, n", [(0.45, 100), (np.float64(0.9), 1000), (45.5, 100)])
def test_a_fraction_is_refused_with_the_count_to_pass(successes, n):
    """The probe: wilson_interval(0.45, 100), a robust_accuracy passed as the count, returned (0.0004, 0.045)."""
    with pytest.raises(ValueError, match=r"wilson_interval: successes must be a count \(an integer\), got .*not a fraction"):
        wilson_interval(successes, n)
    with pytest.raises(ValueError, match=r"round\(0.45 \* 100\) = 45"):
        wilson_interval(0.45, 100)


def test_integer_valued_counts_of_any_numeric_type_pass_and_bools_do_not():
    expected = wilson_interval(45, 100)
    assert wilson_interval(45.0, 100.0) == wilson_interval(np.int64(45), np.int64(100)) == expected
    assert wilson_interval((np.arange(100) < 45).sum(), 100) == expected  # a mask's sum: a numpy integer
    with pytest.raises(TypeError, match="successes must be a count"):
        wilson_interval(True, 1)
    with pytest.raises(ValueError, match=r"n must be a count \(an integer\), got 100.5"):
        wilson_interval(45, 100.5)
    with pytest.raises(ValueError, match=r"successes must lie in \[0, n\] = \[0, 100\], got 101"):
        wilson_interval(101, 100)
