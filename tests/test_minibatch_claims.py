"""The minibatch claims and report sentences on hand-made tables: no training, no TensorFlow work."""
import itertools

import pandas as pd
import pytest

from reproduce.minibatch import claims, sections
from tfadv.experiments.verdicts import INCONCLUSIVE, NOT_REPRODUCED, PARTLY, REPRODUCED

PRECISIONS = ("float32", "mixed_float16", "mixed_float16+scaling")


def table(success, *, models=("digits_cnn",), images=1000, clean_error=0.05, classes=10, sizes=(1, 128)):
    """One row per cell; `success(model, precision, norm, loss, attack, batch_size)` gives its success rate."""
    rows = []
    for model, precision, norm, loss, attack, size in itertools.product(
            models, PRECISIONS, ("l2", "linf"), ("mean", "sum"), ("FGM", "PGD"), sizes):
        rows.append(dict(model=model, precision=precision, norm=norm, loss=loss, attack=attack, batch_size=size,
                         run=0, images=images, classes=classes, clean_error=clean_error,
                         success_rate=success(model, precision, norm, loss, attack, size)))
    return pd.DataFrame(rows)


def paper_like(model, precision, norm, loss, attack, size):
    """The paper's picture: the mean loses strength with the batch, more for L2; the sum does not."""
    drop = {"l2": 0.3, "linf": 0.1}[norm] if loss == "mean" and size > 1 else 0.0
    return 0.9 - drop - (0.05 if precision == "mixed_float16" else 0.0)


def flat(*_):
    return 0.6


def test_saturated_smoke_is_inconclusive_not_not_reproduced():
    t = table(lambda *_: 1.0, images=8)
    for verdict in (claims.mean_degrades(t), claims.fp16_weaker(t)):
        assert verdict.outcome == INCONCLUSIVE and "saturated" in verdict.why
    assert claims.sum_restores(t).outcome == INCONCLUSIVE


def test_the_papers_picture_is_reproduced():
    t = table(paper_like)
    for judge in (claims.mean_degrades, claims.sum_restores, claims.l2_larger, claims.fp16_weaker):
        assert judge(t).outcome == REPRODUCED, judge(t)
    assert "90.0% → 60.0%" in claims.mean_degrades(t).measured


def test_a_drop_the_noise_could_flip_is_inconclusive():
    t = table(lambda m, p, n, loss, a, size: 0.6 - (0.1 if loss == "mean" and size > 1 else 0.0), images=8)
    verdict = claims.mean_degrades(t)
    assert verdict.outcome == INCONCLUSIVE and "noise" in verdict.why


def test_no_drop_on_many_images_is_not_reproduced():
    verdict = claims.mean_degrades(table(flat, images=10000))
    assert verdict.outcome == NOT_REPRODUCED and "0 of 4" in verdict.why


def test_a_drop_in_some_comparisons_is_partly_reproduced():
    t = table(lambda m, p, n, loss, a, size: 0.9 - (0.3 if n == "l2" and loss == "mean" and size > 1 else 0))
    assert claims.mean_degrades(t).outcome == PARTLY


def test_no_degradation_leaves_nothing_for_the_sum_to_remove():
    verdict = claims.sum_restores(table(flat))
    assert verdict.outcome == INCONCLUSIVE and "no degradation" in verdict.why


def test_a_sum_that_degrades_as_much_does_not_restore():
    t = table(lambda m, p, n, loss, a, size: 0.9 - (0.3 if size > 1 else 0.0))
    assert claims.sum_restores(t).outcome == NOT_REPRODUCED


def test_an_untrained_model_makes_every_judged_claim_inconclusive():
    t = table(paper_like, clean_error=0.92)
    for judge in (claims.mean_degrades, claims.sum_restores, claims.l2_larger, claims.fp16_weaker):
        verdict = judge(t)
        assert verdict.outcome == INCONCLUSIVE and "did not train" in verdict.why


def test_l2_larger_while_linf_does_not_degrade_is_partly_reproduced():
    """The demo: L2 drops 38 pp, L∞ not at all (sign(g) is scale-free in float32); the paper: L∞ degrades too,
    only less (§4.1)."""
    t = table(lambda m, p, n, loss, a, size: 0.9 - (0.3 if n == "l2" and loss == "mean" and size > 1 else 0.0))
    verdict = claims.l2_larger(t)
    assert verdict.outcome == PARTLY and "here L∞ shows no drop beyond the noise" in verdict.why


def test_l2_versus_linf_within_noise_is_inconclusive():
    t = table(lambda m, p, n, loss, a, size: 0.9 - (0.2 + (0.01 if n == "l2" else 0) if loss == "mean" and size > 1
                                                    else 0.0))
    verdict = claims.l2_larger(t)
    assert verdict.outcome == INCONCLUSIVE and "within" in verdict.why
    larger_linf = table(lambda m, p, n, loss, a, size: 0.9 - ({"l2": 0.05, "linf": 0.3}[n]
                                                              if loss == "mean" and size > 1 else 0.0))
    assert claims.l2_larger(larger_linf).outcome == NOT_REPRODUCED


def test_claims_about_models_a_run_lacks_are_not_measured():
    t = table(paper_like)
    for verdict in (claims.inception_l2(t), claims.arch_larger(t)):
        assert verdict.outcome == INCONCLUSIVE and "not measured" in verdict.why


def test_inception_and_architecture_claims_on_imagenet_models():
    def success(model, precision, norm, loss, attack, size):
        heavy = model in claims.BIG
        return paper_like(model, precision, norm, loss, attack, size) - (0.2 if heavy and loss == "mean" and size > 1
                                                                         else 0.0)
    t = table(success, models=("inception_v3", "resnet50"), classes=1000, clean_error=0.25, images=10000)
    assert claims.inception_l2(t).outcome == REPRODUCED
    assert claims.arch_larger(t).outcome == REPRODUCED


def test_equal_precisions_are_not_reproduced_and_fp16_sum_beats_fp32_mean():
    assert claims.fp16_weaker(table(flat, images=10000)).outcome == NOT_REPRODUCED
    assert claims.fp16_weaker(table(flat)).outcome == INCONCLUSIVE  # 1,000 images: a 2-point drop could hide
    assert claims.fp16_sum_beats(table(paper_like)).outcome == REPRODUCED
    assert claims.fp16_sum_beats(table(flat, images=10000)).outcome == NOT_REPRODUCED
    assert claims.fp16_sum_beats(table(flat, images=100)).outcome == INCONCLUSIVE  # noise could hide a lead


def test_fp16_cells_on_the_same_images_are_not_pooled_into_a_test():
    """A 1-point gap in every cell is within each cell's noise: the cells share images and model, so counting
    them as independent trials (the old sign test: p = 0.008 over 8 of 8 cells, reproduced) would overclaim."""
    t = table(lambda m, precision, *_: 0.6 - (0.01 if precision == "mixed_float16" else 0.0))
    verdict = claims.fp16_weaker(t)
    assert verdict.outcome == INCONCLUSIVE and "could flip every cell" in verdict.why
    assert "p =" not in verdict.measured + verdict.why and "in 0, stronger in 0, within the noise in 8 of 8" in verdict.measured
    some = table(lambda m, precision, norm, *_: 0.6 - (0.2 if precision == "mixed_float16" and norm == "linf" else 0.0))
    assert claims.fp16_weaker(some).outcome == PARTLY


def test_missing_precisions_are_not_measured():
    t = table(paper_like)
    t = t[t["precision"] == "float32"]
    for verdict in (claims.fp16_weaker(t), claims.fp16_sum_beats(t)):
        assert verdict.outcome == INCONCLUSIVE and "not measured" in verdict.why
    assert "Not measured" in sections.loss_scaling(t)


@pytest.mark.parametrize("plain, scaled, says", [
    ((0.0, 0.01), (0.0, 0.01), "no gap to close"),
    ((0.10, 0.01), (0.0, 0.01), "closes the gap"),
    ((0.10, 0.01), (0.04, 0.01), "closes most of the gap"),
    ((0.10, 0.01), (0.09, 0.01), "does not close most of the gap"),
])
def test_the_loss_scaling_sentence_is_computed_from_the_gaps(plain, scaled, says):
    text = sections.scaling_statement(plain, scaled)
    assert says in text
    if says == "no gap to close":
        assert "does not close" not in text


def test_loss_scaling_section_on_a_table_with_no_gap():
    assert "no gap to close" in sections.loss_scaling(table(flat))


def test_batching_sentence_says_whether_the_emulation_matched_real_batches():
    t = table(flat).assign(batching="emulated", check_images=4, check_max_abs_diff=0.0, check_max_rel_diff=0.0,
                           check_grad_rel_diff=1e-6, check_success_mismatches=0)
    text = sections.batching_text(t, "emulated")
    assert "The examples agree to float rounding" in text and "The emulation is trusted" in text
    # Rounding amplified over PGD's steps shows with the sum loss too: the yardstick for the mean's.
    t.loc[t["loss"] == "sum", "check_max_rel_diff"] = 0.004
    t.loc[t["loss"] == "mean", "check_max_rel_diff"] = 0.003
    assert "The emulation is trusted" in sections.batching_text(t, "emulated")
    t.loc[(t["loss"] == "sum") & (t["precision"] == "float32"), "check_max_rel_diff"] = 0.0  # fp32 sum: exact
    text = sections.batching_text(t, "emulated")  # so fp32 mean's 0.003 is not rounding, though success agrees
    assert "Success agrees on every checked image" in text and "The emulation is NOT trusted" in text
    assert "FGM-L2 float32 mean b=1" in text and "read these numbers as emulated" in text
    t.loc[t["loss"] == "mean", "check_max_rel_diff"] = 0.0
    t.loc[3, "check_max_rel_diff"] = 0.05  # row 3: a mean-loss cell
    assert "PGD-L2 float32 mean b=128" in sections.batching_text(t, "emulated")
    t.loc[3, ["check_max_rel_diff", "check_success_mismatches"]] = [0.0, 1]
    text = sections.batching_text(t, "emulated")
    assert "Success differs on 1 of the " in text and "NOT trusted" in text
    t.loc[3, ["check_success_mismatches", "check_grad_rel_diff"]] = [0, 1.0]  # a gradient twice too large
    assert "NOT trusted" in sections.batching_text(t, "emulated")
    assert "real batches of its batch size" in sections.batching_text(t, "real")


def test_the_batching_check_says_how_far_the_examples_are_and_why_that_is_rounding():
    """The demo: success agrees everywhere, but PGD-L∞ mixed_float16 at b=1 ends 1 eps apart on some pixel
    under both losses (a float16 gradient entry's sign flips with the batch shape): said exactly, and trusted
    by the named rule because the sum loss, which is no emulation, differs as much."""
    t = table(flat).assign(batching="emulated", check_images=8, check_max_abs_diff=0.0, check_max_rel_diff=0.0,
                           check_grad_rel_diff=1e-6, check_success_mismatches=0)
    edge = (t["attack"] == "PGD") & (t["norm"] == "linf") & (t["precision"] == "mixed_float16") & (t["batch_size"] == 1)
    t.loc[edge, "check_max_rel_diff"] = 1.0
    text = sections.batching_text(t, "emulated")
    assert "Success agrees on every checked image." in text
    assert "where the largest difference on a pixel is: PGD-L∞ mixed_float16 (b=1; mean and sum loss) 1 eps." in text
    assert "sign(g) then moves that pixel by a whole step" in text and "not from the emulation's 1/B" in text
    assert f"The emulation is trusted: {sections.TRUST_RULE}." in text
    assert "No larger than float rounding" not in text  # the old sentence, which contradicted the 1 eps


def test_the_regime_search_says_where_the_drop_appeared():
    def success(model, precision, norm, loss, attack, size):
        return 0.9 - (0.4 if norm == "l2" and loss == "mean" and size > 1 else 0.0)
    t = table(success, images=10000).assign(sharpness=1.0, floor_clamp_frac=0.5, zero_grad_frac=0.0)
    sharper = table(lambda *_: 0.05, images=10000).assign(sharpness=16.0, floor_clamp_frac=1.0, zero_grad_frac=0.9)
    text = sections.regime_search(pd.concat([t, sharper]))
    assert "L2: a drop beyond the noise at k=1 (tried k=1, k=16)" in text
    assert "L∞: no drop beyond the noise at any logit scale tried (k=1, k=16)" in text
    assert claims.mean_degrades(claims.main_regime(pd.concat([t, sharper]))).outcome == PARTLY


def test_an_untrained_model_is_named_even_when_the_measurement_is_saturated():
    verdict = claims.fp16_weaker(table(lambda *_: 1.0, clean_error=1.0, classes=1000))
    assert verdict.outcome == INCONCLUSIVE and "did not train" in verdict.why and "saturated" in verdict.why


def test_an_untrained_model_is_named_from_float16_cells_alone():
    t = table(lambda *_: 1.0, clean_error=1.0, classes=1000)
    assert "did not train" in claims.not_trained(t[t["precision"] == "mixed_float16"])


def test_every_verdict_names_an_untrained_model():
    t = table(lambda *_: 1.0, clean_error=1.0, classes=1000, sizes=(1,))
    verdicts = claims.judge_all({"results": t[t["precision"] == "mixed_float16"]}, None)
    assert all(v.outcome == INCONCLUSIVE and "did not train" in v.why for v in verdicts)
