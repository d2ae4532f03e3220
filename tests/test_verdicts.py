"""Verdict primitives: the four outcomes, the preconditions that make a claim inconclusive, noise tests."""
import math

import numpy as np
import pytest

from tfadv.experiments import report, verdicts as v

CLAIM = v.Claim("accuracy drops with batch size", "98% → 92%")


def test_judge_gives_the_three_rule_outcomes():
    assert v.judge(CLAIM, "m", holds=True).outcome == v.REPRODUCED
    assert v.judge(CLAIM, "m", holds=False, partly=True).outcome == v.PARTLY
    assert v.judge(CLAIM, "m", holds=False).outcome == v.NOT_REPRODUCED


def test_a_failed_precondition_makes_any_rule_inconclusive_and_says_why():
    verdict = v.judge(CLAIM, "10% → 10%", holds=True, unless=[None, v.untrained([0.10, 0.11], classes=10)])
    assert verdict.outcome == v.INCONCLUSIVE
    assert "did not train" in verdict.why and "chance (10%)" in verdict.why


def test_untrained_sees_accuracies_near_chance_only():
    assert v.untrained([0.98, 0.97], classes=10) is None
    assert v.untrained([0.98, 0.14], classes=10) is not None
    assert v.untrained([0.54], classes=2) is not None  # a binary model at 54% is within 5 points of 50%
    assert v.untrained([0.30], classes=10, margin=0.25) is not None


def test_saturated_only_when_every_value_is_at_an_end():
    assert v.saturated([1.0, 1.0, 0.999]) is not None
    assert "0% or 100%" in v.saturated([0.0, 1.0])
    assert v.saturated([1.0, 0.93]) is None
    assert v.saturated([]) is None


def test_saturation_is_judged_in_samples_when_their_number_is_known():
    # The batchnorm demo's floor: 2 of 91 images (2.2%) against 0 of 91, finer than SATURATION_MARGIN can see.
    assert v.saturated([0.022, 0.0, 0.0, 0.0]) is None
    reason = v.saturated([0.022, 0.0, 0.0, 0.0], n=91)
    assert reason is not None and f"within {v.SATURATION_COUNT} samples (of 91) of 0%" in reason
    assert v.saturated([0.06, 0.0], n=91) is None                   # 5 of 91 can differ from 0 by 2 s.e.
    assert v.saturated([0.96, 0.99], n=[100, 450]) is None          # 0.99 of 450 is 4.5 samples from the top
    assert v.saturated([0.96, 0.995], n=[100, 450]) is not None
    assert v.saturated([0.003, float("nan")], n=[float("nan"), 91]) is not None  # unknown n: the margin
    assert v.saturated([0.01, 0.0], n=[float("nan"), 91]) is None


def test_saturation_count_is_the_largest_count_no_two_sigma_difference_can_come_from():
    k = v.SATURATION_COUNT
    assert all(k1 - k2 <= 2 * math.sqrt(k1 + k2) for k1 in range(k + 1) for k2 in range(k1 + 1))
    assert (k + 1) - 0 > 2 * math.sqrt(k + 1)


def test_too_few_and_missing():
    assert "1 run, the rule needs 3" in v.too_few(1, 3)
    assert v.too_few(3, 3) is None
    assert v.missing([], "no fp16 cells") is not None
    assert v.missing([0.5], "x") is None


def test_binomial_se_is_never_zero():
    assert v.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert v.binomial_se(1.0, 100) == pytest.approx(0.01)  # the 1/n floor at a saturated rate
    assert math.isnan(v.binomial_se(0.5, 0))


def test_clearly_greater_and_within_noise_are_complementary_around_the_threshold():
    assert v.clearly_greater(0.60, 0.50, 0.02, 0.02)
    assert not v.clearly_greater(0.52, 0.50, 0.02, 0.02)
    assert v.within_noise(0.52, 0.50, 0.02, 0.02)


def test_sign_test_matches_the_binomial_tail():
    # 5 of 8 going one way: P(X >= 5) = (56 + 28 + 8 + 1) / 256, doubled.
    assert v.sign_test(5, 8) == pytest.approx(2 * 93 / 256)
    assert v.sign_test(8, 8) == pytest.approx(2 / 256)
    assert v.sign_test(0, 0) == 1.0


def test_mean_sd_ignores_nan_and_has_no_sd_for_one_value():
    mean, sd, n = v.mean_sd([0.5, np.nan, 0.7])
    assert (mean, n) == (pytest.approx(0.6), 2) and sd == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert math.isnan(v.mean_sd([0.5])[1])


def test_largest_spread_takes_the_widest_repeated_setting_and_skips_single_runs():
    groups = [[0.5, 0.7], [0.1], [0.40, 0.41, np.nan], [0.9, np.nan]]
    assert v.largest_spread(groups) == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert v.largest_spread([[0.5], [0.2, np.nan]]) is None
    assert v.largest_spread([]) is None


def test_report_renders_every_outcome_and_refuses_unknown_sources():
    verdicts = [v.judge(CLAIM, "a", holds=True), v.inconclusive(CLAIM, "measurement saturated"),
                v.not_measured(CLAIM, "needs ImageNet")]
    text = report.render(title="T", key="k", profile="demo", fingerprint="f", verdicts=verdicts,
                         settings=[report.Setting("eps", 0.3, "reference code: mnist_challenge")])
    assert "**inconclusive** (demo)" in text and "not measured in this profile: needs ImageNet" in text
    assert "3 claims: 1 reproduced, 2 inconclusive." in text
    with pytest.raises(ValueError):
        report.Setting("eps", 0.3, "my guess")
    with pytest.raises(ValueError):
        v.Verdict(CLAIM, "not measured", "-")


def test_markdown_table_escapes_pipes_and_checks_widths():
    assert "a\\|b" in report.markdown_table(["x"], [["a|b"]])
    with pytest.raises(ValueError):
        report.markdown_table(["x", "y"], [[1]])
