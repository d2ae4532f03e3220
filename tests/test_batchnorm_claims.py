"""The batchnorm claims' verdict logic on small hand-made tables: no training, every outcome, every overclaim."""
from types import SimpleNamespace

import pandas as pd
import pytest

from reproduce.batchnorm import claims, claims_cifar, rules
from reproduce.batchnorm.profiles import PROFILES
from reproduce.batchnorm.stats import Arm, Difference, difference

N_TEST = 1000


def run(profile="demo", limit=None):
    return SimpleNamespace(profile_name=profile, limit=limit, profile=PROFILES[profile])


def cifar_rows(model, schedule, with_bn, without, seeds=3, test_set="test", clean=(0.9, 0.9), spread=0.005):
    """Rows of the cifar experiment: metric -> accuracy with BN / without, the same on every seed but for a
    small alternating spread."""
    rows = []
    for s in range(seeds):
        jitter = spread * (-1) ** s
        for norm, values in (("batchnorm", with_bn), ("none", without)):
            metrics = {"clean": clean[0] if norm == "batchnorm" else clean[1], **values}
            rows += [{"experiment": "cifar", "model": model, "schedule": schedule, "normalization": norm,
                      "seed": s, "test_set": test_set, "metric": m, "value": v + jitter, "n_test": N_TEST}
                     for m, v in metrics.items()]
    return rows


def verdict_of(rows, claim, profile="demo"):
    tables = {"results": pd.DataFrame(rows)}
    found = {v.claim: v for v in [*claims_cifar.judge_all(tables, run(profile)),
                                  *claims_cifar.outside_paper(tables, run(profile))]}
    return found[claim]


# ----------------------------------------------------------------------------------------- the effect rule
def test_one_seed_is_inconclusive_even_with_a_large_effect_and_two_at_most_partly():
    for seeds, outcome, why in ((1, "inconclusive", "too few seeds (a difference between single runs can be noise): 1 run"),
                                (2, "partly reproduced", "2 seed(s): spread over seeds not trusted")):
        rows = cifar_rows("vgg8", "small", {"awgn": 0.5, "pgd_linf": 0.2, "pgd_l2": 0.4},
                          {"awgn": 0.8, "pgd_linf": 0.6, "pgd_l2": 0.7}, seeds=seeds)
        v = verdict_of(rows, claims_cifar.VGG_C10)
        assert v.outcome == outcome and why in v.why


def test_the_smoke_overclaim_models_at_chance_are_inconclusive():
    # The old smoke report called this "reproduced": one seed, both models at chance, a large "effect".
    rows = cifar_rows("vgg8", "small", {"awgn": 0.02, "pgd_linf": 0.01, "pgd_l2": 0.02},
                      {"awgn": 0.12, "pgd_linf": 0.11, "pgd_l2": 0.12}, seeds=1, clean=(0.11, 0.13))
    v = verdict_of(rows, claims_cifar.VGG_C10)
    assert v.outcome == "inconclusive" and "did not train" in v.why


def test_three_seeds_and_a_clear_effect_reproduce():
    rows = cifar_rows("vgg8", "small", {"awgn": 0.5, "pgd_linf": 0.2, "pgd_l2": 0.4},
                      {"awgn": 0.8, "pgd_linf": 0.6, "pgd_l2": 0.7})
    assert verdict_of(rows, claims_cifar.VGG_C10).outcome == "reproduced"


def test_an_effect_inside_the_noise_is_inconclusive_and_a_clear_absence_is_not_reproduced():
    noisy = cifar_rows("vgg8", "small", {"awgn": 0.78, "pgd_linf": 0.58, "pgd_l2": 0.68},
                       {"awgn": 0.8, "pgd_linf": 0.6, "pgd_l2": 0.7}, spread=0.03)
    assert verdict_of(noisy, claims_cifar.VGG_C10).outcome == "inconclusive"
    reversed_ = cifar_rows("vgg8", "small", {"awgn": 0.9, "pgd_linf": 0.7, "pgd_l2": 0.8},
                           {"awgn": 0.8, "pgd_linf": 0.6, "pgd_l2": 0.7})
    assert verdict_of(reversed_, claims_cifar.VGG_C10).outcome == "not reproduced"


def test_accuracies_saturated_at_zero_are_inconclusive():
    rows = cifar_rows("wrn", "small", {"awgn": 0.0, "pgd_linf": 0.0, "pgd_l2": 0.0},
                      {"awgn": 0.0, "pgd_linf": 0.0, "pgd_l2": 0.0}, spread=0.0)
    for r in rows:
        r["normalization"] = "fixup" if r["normalization"] == "none" else r["normalization"]
    v = verdict_of(rows, claims_cifar.WRN_FIXUP)
    assert v.outcome == "inconclusive" and "saturated" in v.why


def test_paper_profile_also_checks_the_size_of_the_effect():
    # Right sign and clear, but five times smaller than the paper's -17.3 points for PGD-linf.
    rows = cifar_rows("vgg8", "small", {"awgn": 0.74, "pgd_linf": 0.565, "pgd_l2": 0.64},
                      {"awgn": 0.8, "pgd_linf": 0.6, "pgd_l2": 0.7})
    assert verdict_of(rows, claims_cifar.VGG_C10, "demo").outcome == "reproduced"
    paper = verdict_of(rows, claims_cifar.VGG_C10, "paper")
    assert paper.outcome == "partly reproduced" and "size" in paper.why


def test_imagenet_comparison_across_architectures_is_at_most_partly():
    rows = [{"experiment": "imagenet", "model": m, "has_batchnorm": bn, "metric": metric, "value": value,
             "n_test": N_TEST}
            for m, bn, pgd in (("vgg16", False, 0.30), ("vgg19", False, 0.31), ("resnet50", True, 0.10),
                               ("densenet121", True, 0.11))
            for metric, value in (("clean_top1", 0.7), ("pgd_linf_top5", pgd), ("pgd_linf_top1", pgd / 2))]
    v = verdict_of(rows, claims_cifar.IMAGENET_TOP5)
    assert v.outcome == "partly reproduced" and "architecture" in v.why


def test_effect_rule_directly():
    claim = claims_cifar.VGG_C10
    clear = rules.effect(claim, Difference(-0.10, 0.01, 5), -0.17)
    assert clear.outcome == "reproduced"
    assert rules.effect(claim, Difference(-0.10, 0.01, 2), -0.17).outcome == "partly reproduced"
    assert rules.effect(claim, Difference(-0.01, 0.02, 5), -0.17).outcome == "inconclusive"
    assert rules.effect(claim, Difference(0.01, 0.002, 5), -0.17).outcome == "not reproduced"
    assert rules.effect(claim, Difference(-0.10, 0.01, 5), -0.17, unless=["model did not train"]).outcome == \
        "inconclusive"


def test_difference_uses_the_binomial_floor_when_seeds_agree_by_luck():
    a, b = Arm((0.5, 0.5, 0.5), (0.05,) * 3), Arm((0.6, 0.6, 0.6), (0.05,) * 3)
    d = difference(a, b)
    assert d.delta == pytest.approx(-0.1) and d.se == pytest.approx((2 * 0.05 ** 2 / 3) ** 0.5)


def test_combine_reports_partly_when_some_cases_show_it():
    yes = rules.effect(claims.BN_BIM, Difference(-0.3, 0.01, 3), -0.438)
    no = rules.effect(claims.BN_BIM, Difference(0.0, 0.005, 3), -0.438)
    assert rules.combine(claims.BN_BIM, [("a", yes), ("b", yes)], "r").outcome == "reproduced"
    assert rules.combine(claims.BN_BIM, [("a", yes), ("b", no)], "r").outcome == "partly reproduced"
    assert rules.combine(claims.BN_BIM, [("a", no), ("b", no)], "r").outcome == "not reproduced"
    assert rules.combine(claims.BN_BIM, [], "r").outcome == "inconclusive"


# ------------------------------------------------------------------------------------ linear models, MLPs
def toy_rows(theta_bn, theta_gd, seeds):
    return [{"experiment": "toy", "variant": v, "seed": s, "metric": m, "value": value, "n_test": 1000}
            for s in range(seeds) for v, theta in (("bngd", theta_bn + s), ("gd", theta_gd + s))
            for m, value in (("tilt_deg", theta), ("clean", 1.0))]


def test_toy_tilt_verdicts():
    assert claims.toy_tilt(pd.DataFrame(toy_rows(67.0, 1.0, 3))).outcome == "reproduced"
    assert claims.toy_tilt(pd.DataFrame(toy_rows(80.0, 1.0, 3))).outcome == "partly reproduced"  # angle off
    assert claims.toy_tilt(pd.DataFrame(toy_rows(67.0, 1.0, 2))).outcome == "partly reproduced"  # two seeds
    one_untilted = claims.toy_tilt(pd.DataFrame(toy_rows(12.0, 4.0, 1)))
    assert one_untilted.outcome == "inconclusive" and "too few seeds" in one_untilted.why
    assert claims.toy_tilt(pd.DataFrame(toy_rows(12.0, 4.0, 3))).outcome == "not reproduced"


def dimension_rows(bim, seeds=3, clean=0.95):
    """bim: {(model, batchnorm, weight_decay, scale): accuracy}."""
    return [{"experiment": "dimension", "model": m, "batchnorm": bn, "weight_decay": wd, "scale": k,
             "image_width": 8 * k, "seed": s, "metric": metric, "value": value + 0.002 * (-1) ** s, "n_test": N_TEST}
            for (m, bn, wd, k), acc in bim.items() for s in range(seeds)
            for metric, value in (("bim", acc), ("clean", clean), ("awgn", acc))]


def test_linear_weight_decay_flat_for_one_lambda_of_the_grid():
    table = pd.DataFrame(dimension_rows({
        ("linear", False, 0.0, 1): 0.88, ("linear", False, 0.0, 2): 0.76, ("linear", False, 0.0, 4): 0.66,
        ("linear", False, 0.01, 1): 0.89, ("linear", False, 0.01, 2): 0.80, ("linear", False, 0.01, 4): 0.72,
        ("linear", False, 0.1, 1): 0.88, ("linear", False, 0.1, 2): 0.87, ("linear", False, 0.1, 4): 0.87}))
    flat = claims.linear_flat(table)
    assert flat.outcome == "reproduced" and "λ = 0.1" in flat.why
    assert claims.linear_falls(table).outcome == "reproduced"
    falling = table[table["weight_decay"] != 0.1]
    assert claims.linear_flat(falling).outcome == "not reproduced"


def test_bn_effect_is_judged_at_every_width():
    table = pd.DataFrame(dimension_rows({
        ("mlp", True, 0.0, 1): 0.60, ("mlp", False, 0.0, 1): 0.85,
        ("mlp", True, 0.0, 2): 0.84, ("mlp", False, 0.0, 2): 0.85}))
    v = claims.bn_effect_per_width(table, run(), claims.BN_BIM, "bim", claims.PAPER_BN_BIM)
    assert v.outcome == "partly reproduced" and "1 of 2" in v.why


def depth_batch_rows(bn_trend, plain_trend, seeds=3, clean=0.95):
    rows = []
    for s in range(seeds):
        for bn, trend in ((True, bn_trend), (False, plain_trend)):
            for depth in (2, 6):
                for batch, bim in ((16, 0.6), (256, 0.6 + trend)):
                    rows += [{"experiment": "depth_batch", "depth": depth, "batch_size": batch, "batchnorm": bn,
                              "seed": s, "metric": m, "value": v + 0.003 * (-1) ** s, "n_test": N_TEST}
                             for m, v in (("clean", clean), ("bim", bim), ("awgn", bim))]
    return pd.DataFrame(rows)


def test_depth_batch_trend_verdicts():
    assert claims.depth_batch(depth_batch_rows(-0.15, 0.0)).outcome == "reproduced"
    assert claims.depth_batch(depth_batch_rows(0.05, 0.0)).outcome == "not reproduced"
    assert claims.depth_batch(depth_batch_rows(-0.005, 0.0)).outcome == "inconclusive"  # inside the noise
    untrained = claims.depth_batch(depth_batch_rows(-0.15, 0.0, clean=0.3))
    assert untrained.outcome == "inconclusive" and "no depth" in untrained.why


def tilting_rows(seeds, theta=None, fgsm=None, width=8, n_test=91):
    """Table 1's rows: per variant its angle and FGSM eps = 1/4 accuracy, the same on every seed but for a small
    alternating spread (the smoke run's numbers by default: n_test 91 at width 8)."""
    theta = theta or {"gd": 65.5, "wd": 65.0, "bngd_fixed": 53.0, "bngd_learned": 59.6, "nearest_centroid": 0.0}
    fgsm = fgsm or {"gd": 0.0, "wd": 0.0, "bngd_fixed": 0.0, "bngd_learned": 0.0, "nearest_centroid": 0.275}
    return pd.DataFrame([{"experiment": "tilting", "variant": v, "seed": s, "width": width, "metric": m,
                          "value": value + (0.001 * (-1) ** s if v != "nearest_centroid" and value > 0 else 0.0),
                          "n_test": n_test}
                         for s in range(seeds) for v in theta
                         for m, value in (("tilt_deg", theta[v]), ("fgsm_eps0.25", fgsm[v]), ("clean", 0.97))])


def test_nearest_centroid_one_seed_is_inconclusive_as_in_the_smoke_report():
    # The smoke report called this "partly reproduced": 27.5% vs 0.0% at width 8, one seed.
    one = claims.nearest_centroid(tilting_rows(1))
    assert one.outcome == "inconclusive" and "single runs" in one.why and "needs 2" in one.why
    assert claims.nearest_centroid(tilting_rows(2)).outcome == "partly reproduced"
    fgsm = {"gd": 0.0, "wd": 0.0, "bngd_fixed": 0.0, "bngd_learned": 0.0, "nearest_centroid": 0.4}
    assert claims.nearest_centroid(tilting_rows(3, fgsm=fgsm, n_test=N_TEST)).outcome == "reproduced"


TILTED = {"gd": 2.0, "wd": 3.0, "bngd_fixed": 60.0, "bngd_learned": 62.0, "nearest_centroid": 0.0}


def linear_dimension_rows(seeds):
    """The linear model's BIM accuracy falling with the width (λ = 0) and flat with it (λ = 0.1)."""
    return pd.DataFrame(dimension_rows({
        ("linear", False, 0.0, 1): 0.88, ("linear", False, 0.0, 2): 0.60, ("linear", False, 0.0, 4): 0.40,
        ("linear", False, 0.1, 1): 0.88, ("linear", False, 0.1, 2): 0.88, ("linear", False, 0.1, 4): 0.88},
        seeds=seeds))


@pytest.mark.parametrize("judge, table", [
    (claims.toy_tilt, lambda seeds: pd.DataFrame(toy_rows(67.0, 1.0, seeds))),
    (claims.tilt_bn, lambda seeds: tilting_rows(seeds, theta=TILTED)),
    (claims.tilt_affine, lambda seeds: tilting_rows(seeds, theta=TILTED)),
    (claims.nearest_centroid, tilting_rows),
    (claims.linear_flat, linear_dimension_rows),
    (claims.linear_falls, linear_dimension_rows),
], ids=["toy_tilt", "tilt_bn", "tilt_affine", "nearest_centroid", "linear_flat", "linear_falls"])
def test_a_difference_between_single_runs_decides_no_claim(judge, table):
    # Each table shows the claim clearly; with one seed it is still no more than noise between two runs.
    one = judge(table(1))
    assert one.outcome == "inconclusive" and "single runs" in one.why, one
    assert judge(table(2)).outcome == "partly reproduced"


# ------------------------------------------------------------------------------------ beyond the paper
def test_autoattack_section_says_where_pgd_overstated_robustness():
    from reproduce.batchnorm import beyond

    rows = cifar_rows("vgg8", "small", {"autoattack_linf": 0.30, "pgd_linf_on_aa_points": 0.50},
                      {"autoattack_linf": 0.60, "pgd_linf_on_aa_points": 0.605})
    text = beyond.autoattack_section(pd.DataFrame(rows))
    assert "overstated ℓ∞ robustness at this scale for: vgg8 small LR batchnorm." in text
    assert verdict_of(rows, claims_cifar.AUTOATTACK).outcome == "reproduced"  # 0.30 vs 0.60 under AutoAttack
    same = cifar_rows("vgg8", "small", {"autoattack_linf": 0.5, "pgd_linf_on_aa_points": 0.5},
                      {"autoattack_linf": 0.6, "pgd_linf_on_aa_points": 0.6})
    assert "did not clearly overstate" in beyond.autoattack_section(pd.DataFrame(same))


def test_a_small_gap_excluded_by_the_noise_is_not_called_an_overstatement():
    from reproduce.batchnorm import beyond

    rows = [{**r, "n_test": 100_000} for r in cifar_rows("vgg8", "small", {"autoattack_linf": 0.500,
                                                                        "pgd_linf_on_aa_points": 0.505},
                                                         {"autoattack_linf": 0.6, "pgd_linf_on_aa_points": 0.6})]
    text = beyond.autoattack_section(pd.DataFrame(rows))
    assert "no gap of 2 pts or more" in text and "did not clearly overstate" in text


def test_masking_section_names_every_raised_flag_and_its_measurement():
    from reproduce.batchnorm import beyond

    common = {"experiment": "cifar", "model": "vgg8", "schedule": "small", "seed": 0, "points": 100}
    rows = [{**common, "normalization": norm, "check": check, "raised": raised, "measured": f"{check} {norm}"}
            for norm, raised_check in (("batchnorm", "square"), ("none", None))
            for check, raised in (("square", raised_check == "square"), ("large eps", False))]
    text = beyond.masking_section({"masking": pd.DataFrame(rows)})
    assert "| square | **raised** | ok |" in text and "| large eps | ok | ok |" in text
    assert "- vgg8 small LR batchnorm, square: square batchnorm" in text and "none, square" not in text
    assert beyond.masking_section({}) is None


def test_budget_fields_the_cascade_never_reads_are_left_out_of_the_settings():
    from reproduce.batchnorm import beyond

    demo = PROFILES["demo"].cifar.robustness
    assert beyond.unused_budget("queries", demo) and not beyond.unused_budget("targets", demo)
    assert not beyond.unused_budget("queries", PROFILES["paper"].cifar.robustness)
    assert beyond.unused_budget("targets", PROFILES["smoke"].cifar.robustness)


def test_a_gap_on_models_at_chance_is_not_judged():
    from reproduce.batchnorm import beyond

    rows = cifar_rows("vgg8", "small", {"autoattack_linf": 0.02, "pgd_linf_on_aa_points": 0.10},
                      {"autoattack_linf": 0.03, "pgd_linf_on_aa_points": 0.11}, clean=(0.11, 0.12))
    text = beyond.autoattack_section(pd.DataFrame(rows))
    assert "overstated ℓ∞ robustness at this scale for" not in text and "did not train: vgg8 small LR batchnorm" in text


def test_the_learning_rate_search_skips_a_shard_that_holds_one_side_only():
    # A shard's folder may hold the BN runs of a cell and not the plain ones: its report used to crash here.
    from reproduce.batchnorm import search

    table = pd.DataFrame({"experiment": ["cifar"], "test_set": ["test"], "model": ["vgg8"], "schedule": ["small"],
                          "normalization": ["batchnorm"], "metric": ["awgn"], "value": [0.5], "seed": [0]})
    assert search.by_learning_rate(table) is None


# ------------------------------------------------------------------------------------ the 2026-12-05 review
def tension_rows(bn_bim, bn_clean, plain_bim=0.0, plain_clean=0.0, seeds=3, n_test=10_000):
    """Figure 2's rows at depth 2: BIM and clean accuracy at B = 16 (0.9 and 0.97) and their change at B = 256."""
    rows = []
    for s in range(seeds):
        for bn, (d_bim, d_clean) in ((True, (bn_bim, bn_clean)), (False, (plain_bim, plain_clean))):
            for batch, bim, clean in ((16, 0.9, 0.97), (256, 0.9 + d_bim, 0.97 + d_clean)):
                rows += [{"experiment": "depth_batch", "depth": 2, "batch_size": batch, "batchnorm": bn, "seed": s,
                          "metric": m, "value": v + 0.002 * (-1) ** s, "n_test": n_test}
                         for m, v in (("clean", clean), ("bim", bim), ("awgn", bim))]
    return pd.DataFrame(rows)


def test_a_bim_fall_that_only_follows_clean_accuracy_is_no_tension():
    # The demo: with BN, BIM and clean accuracy both fell by ~4 pts from B = 16 to 256; it was called reproduced.
    follows = claims.depth_batch(tension_rows(-0.04, -0.04))
    assert follows.outcome == "not reproduced", follows
    assert "BIM − clean" in follows.measured and "in BIM alone" in follows.measured
    assert claims.depth_batch(tension_rows(-0.04, -0.04, n_test=450)).outcome == "inconclusive"  # the demo's noise
    assert claims.depth_batch(tension_rows(-0.08, 0.0)).outcome == "reproduced"  # clean holds, BIM falls
    rises = claims.depth_batch(tension_rows(0.0, 0.08))  # clean rises, BIM flat: the gap widens, BIM does not fall
    assert rises.outcome == "partly reproduced" and "BIM accuracy itself does not fall" in rises.why


def test_an_effect_the_paper_calls_small_can_be_inconclusive_not_excluded():
    # Table 2's gap: the paper's -1.1 pts is below MIN_EFFECT; +0.6 ± 0.8 allows ~1 pt in its direction.
    assert rules.smallest_effect(-0.011) == pytest.approx(0.0055)
    assert rules.smallest_effect(-0.173) == rules.MIN_EFFECT and rules.smallest_effect(None) == rules.MIN_EFFECT
    v = rules.effect(claims_cifar.VGG_GAP, Difference(0.006, 0.008, 3), claims_cifar.PAPER_VGG_GAP)
    assert v.outcome == "inconclusive" and "0.55 pts" in v.why
    assert rules.effect(claims_cifar.VGG_GAP, Difference(-0.011, 0.002, 3), -0.011).outcome == "reproduced"
    assert rules.effect(claims_cifar.VGG_GAP, Difference(0.02, 0.002, 3), -0.011).outcome == "not reproduced"


def test_nearest_centroid_on_a_floor_is_saturated_and_a_noisy_lead_is_inconclusive():
    floor = {"gd": 0.0, "wd": 0.0, "bngd_fixed": 0.0, "bngd_learned": 0.0, "nearest_centroid": 2 / 91}
    v = claims.nearest_centroid(tilting_rows(3, fgsm=floor, width=28))
    assert v.outcome == "inconclusive" and "within 4 samples (of 91) of 0%" in v.why
    noisy = {"gd": 0.12, "wd": 0.0, "bngd_fixed": 0.0, "bngd_learned": 0.0, "nearest_centroid": 0.20}
    rows = tilting_rows(3, fgsm=noisy, n_test=91)
    rows.loc[(rows["variant"] == "gd") & (rows["metric"] == "fgsm_eps0.25"), "value"] = [0.0, 0.12, 0.24]
    v = claims.nearest_centroid(rows)
    assert v.outcome == "inconclusive" and "within the noise" in v.why, v
    none = {"gd": 0.30, "wd": 0.0, "bngd_fixed": 0.0, "bngd_learned": 0.0, "nearest_centroid": 0.30}
    assert claims.nearest_centroid(tilting_rows(3, fgsm=none, n_test=N_TEST)).outcome == "not reproduced"


def test_the_nearest_centroid_lead_has_gd_seeds_in_the_claim_and_in_the_search_table():
    from reproduce.batchnorm import search

    table = tilting_rows(3, width=28)
    claim = claims.nearest_centroid(table)
    text = search.by_width(table)
    assert "(n=3)" in claim.measured and "(n=3)" in text and "(n=1)" not in text


def test_a_run_that_did_not_fit_makes_the_comparison_inconclusive_and_says_what_the_others_give():
    # The demo's Table 3: one no-BN seed reached 26.5% training accuracy (27.8% test), beyond the chance check.
    rows = cifar_rows("vgg8", "large", {"pgd_linf": 0.90}, {"pgd_linf": 0.65}, clean=(0.93, 0.78))
    for r in [r for r in rows if r["metric"] == "clean"]:
        rows.append({**r, "test_set": "train", "metric": "train", "value": r["value"] + 0.02})
    assert verdict_of(rows, claims_cifar.VGG_DEPTHS).outcome == "not reproduced"
    for r in rows:
        if r["normalization"] == "none" and r["seed"] == 1:
            r["value"] = {"train": 0.265, "clean": 0.278}.get(r["metric"], 0.23)
    v = verdict_of(rows, claims_cifar.VGG_DEPTHS)
    assert v.outcome == "inconclusive" and "no-BN seed 1 26.5%" in v.why
    assert "over the runs that trained: +" in v.why and "(n=2)" in v.why
    assert rules.unfit({"a": 0.98, "b": 0.80}, 10) is None and rules.unfit({"a": 0.98}, 10) is None


def test_claims_outside_the_paper_stay_out_of_its_tally():
    rows = cifar_rows("vgg8", "small", {"awgn": 0.5, "pgd_linf": 0.2, "pgd_l2": 0.4, "autoattack_linf": 0.2},
                      {"awgn": 0.8, "pgd_linf": 0.6, "pgd_l2": 0.7, "autoattack_linf": 0.6})
    tables = {"results": pd.DataFrame(rows)}
    paper = {v.claim for v in claims.judge_all(tables, run())}
    assert claims_cifar.AUTOATTACK not in paper and claims_cifar.RESNET not in paper
    assert {v.claim for v in claims_cifar.outside_paper(tables, run())} == {claims_cifar.AUTOATTACK, claims_cifar.RESNET}
    from reproduce.batchnorm import sections

    text = sections.outside_paper(tables, SimpleNamespace(**vars(run()), out=None))
    assert "Not counted in the Claims tally" in text and "README" in text and "**reproduced**" in text


def test_rows_on_the_digits_stand_in_say_so():
    rows = cifar_rows("vgg8", "small", {"awgn": 0.5, "pgd_linf": 0.2, "pgd_l2": 0.4},
                      {"awgn": 0.8, "pgd_linf": 0.6, "pgd_l2": 0.7})
    assert "one channel; the paper: CIFAR-10" in verdict_of(rows, claims_cifar.VGG_C10).measured
    assert "[on" not in verdict_of(rows, claims_cifar.VGG_C10, "paper").measured


def test_table_7_clean_accuracy_claims_are_judged_at_every_width():
    table = pd.DataFrame(dimension_rows({("mlp", bn, wd, k): 0.8 for bn in (True, False) for wd in (0.0, 0.01)
                                         for k in (1, 2)})).assign(n_test=100_000)
    for r, claim, paper in ((-0.0169, claims.WD_CLEAN_BN, claims.PAPER_WD_CLEAN_BN),
                            (0.0139, claims.WD_CLEAN_PLAIN, claims.PAPER_WD_CLEAN_PLAIN)):
        shifted = table.copy()
        hit = (shifted["metric"] == "clean") & (shifted["weight_decay"] == 0.01) & (shifted["batchnorm"] == (r < 0))
        shifted.loc[hit, "value"] += r
        v = claims.wd_effect(shifted, run(), claim, "clean", r < 0, paper)
        assert v.outcome == "reproduced" and "λ=0.01 2x" in v.measured, v
        assert claims.wd_effect(table, run(), claim, "clean", r < 0, paper).outcome == "not reproduced"


def test_the_toy_figure_names_both_classes_on_both_panels(tmp_path, monkeypatch):
    from reproduce.batchnorm import figures

    shown = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: shown.setdefault("fig", fig))
    rows = [{**r, "value": v} for r in toy_rows(67.0, 1.0, 1) if r["metric"] == "tilt_deg"
            for v in (r["value"],)]
    rows += [{"experiment": "toy", "variant": v, "seed": 0, "metric": m, "value": x, "n_test": 1000}
             for v in ("gd", "bngd") for m, x in (("w0", 1.0), ("w1", 0.1 if v == "bngd" else 0.0), ("b", 0.0))]
    assert figures.toy(pd.DataFrame(rows), SimpleNamespace(**vars(run()), out=tmp_path)) == "fig1_toy.png"
    for ax in shown["fig"].axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(l.startswith("class 0") for l in labels) and any(l.startswith("class 1") for l in labels), labels


def test_a_tilt_the_noise_could_put_on_either_side_of_the_margin_is_inconclusive():
    rows = pd.DataFrame(toy_rows(67.0, 1.0, 3))
    bn = (rows["variant"] == "bngd") & (rows["metric"] == "tilt_deg")
    rows.loc[bn, "value"] = [10.0, 25.0, 40.0]  # θ_BNGD − θ_GD = 23 ± 9°: 20° is neither cleared nor excluded
    v = claims.toy_tilt(rows)
    assert v.outcome == "inconclusive" and "within the noise" in v.why, v
