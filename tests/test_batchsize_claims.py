"""The batchsize claims on small hand-made tables: no training. Each overclaim of the old runner is here."""
import itertools

import numpy as np
import pandas as pd

from reproduce.batchsize import claims
from reproduce.batchsize.profiles import DEMO, in_regime

BATCHES = (8, 32, 128, 512)
NOISE = (0.0, 0.004, -0.004)  # per-seed offsets: a small, realistic spread over three seeds


def runs(setting: str, momentum: float, accuracies, *, model: str = "StdCNN", dataset: str = "digits",
         seeds: int = 3, fgsm=None, pgd=None, lambda1=None, samples: int = 10_000, noise=NOISE) -> list[dict]:
    """Rows of one line: accuracies[i] (and fgsm/pgd/lambda1[i]) at BATCHES[i]; a number is offset by the
    seed's noise (shared by every batch size, as a seed's initial weights are), a tuple gives each seed's."""
    def value(values, i, seed, default):
        v = (values or default)[i]
        return v[seed] if isinstance(v, tuple) else v + noise[seed % len(noise)]

    rows = []
    for (i, b), seed in itertools.product(enumerate(BATCHES[:len(accuracies)]), range(seeds)):
        acc = value(accuracies, i, seed, None)
        rows.append({"dataset": dataset, "model": model, "schedule": setting, "momentum": momentum,
                     "lr_scale": 1.0, "epochs": 30, "batch_size": b, "seed": seed, "test_samples": samples,
                     "eval_samples": samples, "test_accuracy": acc,
                     "fgsm_accuracy": value(fgsm, i, seed, [acc / 2] * len(accuracies)),
                     "pgd_accuracy": value(pgd, i, seed, [acc / 3] * len(accuracies)),
                     "lambda1": value(lambda1, i, seed, [10.0] * len(accuracies))})
    return rows


def verdict(function, *lines) -> claims.Verdict:
    return function(pd.DataFrame([row for line in lines for row in line]))


def test_smoke_at_chance_is_inconclusive_not_reproduced():
    # The old smoke report said "LR/BS keeps test accuracy constant: reproduced" with every model at 10%.
    v = verdict(claims.lrbs_accuracy, runs("LR/BS", 0.0, [0.10, 0.10, 0.11, 0.10]))
    assert v.outcome == "inconclusive" and "did not train" in v.why


def test_one_seed_is_too_few():
    v = verdict(claims.lrbs_accuracy, runs("LR/BS", 0.0, [0.95, 0.95, 0.95, 0.95], seeds=1))
    assert v.outcome == "inconclusive" and "too few seeds" in v.why
    assert "spread 0.000 (one run: no spread): undecided" in v.measured


def test_unstable_fixed_lr_line_is_not_a_drop():
    # The old demo: StdCNN at fixed LR reached 0.98, 0.38, 0.88, 0.25 in one run and "drops" was reproduced.
    one_run = runs("LR", 0.0, [0.98, 0.38, 0.88, 0.25], seeds=1)
    assert verdict(claims.lr_drop, one_run).outcome == "inconclusive"
    # Three seeds, one of which collapses at the largest batch: the mean falls, but the seeds disagree.
    unstable = runs("LR", 0.0, [(0.98, 0.97, 0.98), (0.9, 0.95, 0.6), (0.9, 0.5, 0.96), (0.30, 0.95, 0.99)])
    v = verdict(claims.lr_drop, unstable)
    assert v.outcome == "inconclusive" and "within noise" in v.why


def test_differences_are_paired_by_seed():
    # Seeds far apart (0.90 / 0.96 / 0.99) but each the same at every batch size: flat beyond doubt ...
    shared = runs("LR/BS", 0.0, [0.95] * 4, noise=(-0.05, 0.01, 0.04))
    assert verdict(claims.lrbs_accuracy, shared).outcome == "reproduced"
    # ... while the same values shuffled between batch sizes are not.
    shuffled = runs("LR/BS", 0.0, [(0.90, 0.96, 0.99), (0.99, 0.90, 0.96), (0.96, 0.99, 0.90), (0.90, 0.99, 0.96)])
    assert verdict(claims.lrbs_accuracy, shuffled).outcome == "inconclusive"


def test_flat_lr_bs_line_is_reproduced_and_a_clear_slope_is_not():
    assert verdict(claims.lrbs_accuracy, runs("LR/BS", 0.0, [0.97, 0.975, 0.97, 0.965])).outcome == "reproduced"
    v = verdict(claims.lrbs_accuracy, runs("LR/BS", 0.0, [0.97, 0.94, 0.90, 0.80]))
    assert v.outcome == "not reproduced" and "spread 0.170" in v.measured


def test_one_flat_study_and_one_sloped_is_partly():
    flat = runs("LR/BS", 0.0, [0.97, 0.97, 0.97, 0.97], model="M1")
    sloped = runs("LR/BS", 0.0, [0.97, 0.94, 0.90, 0.80])
    assert verdict(claims.lrbs_accuracy, flat, sloped).outcome == "partly reproduced"


def test_a_spread_near_the_threshold_on_few_test_images_is_inconclusive():
    # 0.045 of spread on 450 images: the binomial error alone could carry it past 0.05.
    v = verdict(claims.lrbs_accuracy, runs("LR/BS", 0.0, [0.95, 0.93, 0.92, 0.905], samples=450))
    assert v.outcome == "inconclusive" and "within noise of the threshold" in v.why


def test_pgd_at_zero_everywhere_is_saturated():
    line = runs("LR/BS", 0.0, [0.97] * 4, fgsm=[0.3] * 4, pgd=[0.0] * 4, noise=(0.0,))
    v = verdict(claims.lrbs_robust, line)
    assert v.outcome == "inconclusive" and "saturated" in v.why


def test_drop_is_reproduced_when_clear_for_test_and_fgsm():
    line = runs("LR", 0.0, [0.98, 0.97, 0.93, 0.85], fgsm=[0.5, 0.45, 0.4, 0.3])
    assert verdict(claims.lr_drop, line).outcome == "reproduced"
    no_drop = runs("LR", 0.0, [0.97, 0.97, 0.97, 0.97])
    assert verdict(claims.lr_drop, no_drop).outcome == "not reproduced"


def test_curvature_rules_work_on_ratios_and_refuse_negative_eigenvalues():
    flat = runs("LR/BS", 0.0, [0.97] * 4, lambda1=[10, 12, 11, 14])
    assert verdict(claims.lrbs_curvature, flat).outcome == "reproduced"
    capped = [dict(row, lambda1_converged=row["seed"] != 0) for row in flat]
    assert "4 of 12 λ1 runs stopped at the iteration cap" in verdict(claims.lrbs_curvature, capped).measured
    assert verdict(claims.lrbs_curvature, capped).outcome == "inconclusive"  # flat, but on lower bounds
    steep = runs("LR/BS", 0.0, [0.97] * 4, lambda1=[10, 20, 40, 80])
    assert verdict(claims.lrbs_curvature, steep).outcome == "not reproduced"
    negative = runs("LR/BS", 0.0, [0.97] * 4, lambda1=[10, -3, 11, 12])
    v = verdict(claims.lrbs_curvature, negative)
    assert v.outcome == "inconclusive" and "λ1 ≤ 0" in v.why
    # every λ1 of a batch size negative (the smoke run's untrained models): measured, but no ratio
    v = verdict(claims.lrbs_curvature, runs("LR/BS", 0.0, [0.97] * 4, lambda1=[10, -3, 11, 12], noise=(0.0,)))
    assert "λ1 ≤ 0 at some batch size (min -3): no ratio: undecided" in v.measured and "not measured" not in v.measured
    sharper = runs("LR", 0.0, [0.97] * 4, lambda1=[10, 20, 40, 80])
    assert verdict(claims.lr_sharper, sharper).outcome == "reproduced"


def test_five_of_eight_momentum_points_is_chance():
    # The old demo judged "larger momentum gives better FGSM accuracy" reproduced on 5 of 8 points.
    without = [0.50] * 4
    with_momentum = {"M1": [0.55, 0.55, 0.55, 0.45], "StdCNN": [0.55, 0.55, 0.45, 0.45]}  # better at 3 + 2
    lines = [runs("LR", m, [0.97] * 4, fgsm=fgsm, model=model) for model, better in with_momentum.items()
             for m, fgsm in ((0.0, without), (0.9, better))]
    table = pd.DataFrame([row for line in lines for row in line])
    v = claims.most_cases(claims.LR_MOMENTUM_FGSM, table, "LR", "fgsm_accuracy")
    assert v.outcome == "inconclusive" and "5 of 8" in v.measured and "could be chance" in v.why


def test_momentum_lowering_lambda1_everywhere_is_reproduced_and_nowhere_is_not():
    def table(with_momentum):
        lines = [runs("LR", m, [0.97] * 4, lambda1=values, model=model) for model in ("M1", "StdCNN")
                 for m, values in ((0.0, [10] * 4), (0.9, with_momentum))]
        return pd.DataFrame([row for line in lines for row in line])

    assert claims.most_cases(claims.LR_MOMENTUM_CURVATURE, table([5] * 4), "LR", "lambda1").outcome == "reproduced"
    v = claims.most_cases(claims.LR_MOMENTUM_CURVATURE, table([20] * 4), "LR", "lambda1")
    assert v.outcome == "not reproduced" and "0 of 8" in v.measured


def test_untrained_runs_are_left_out_of_the_momentum_cases():
    lines = [runs("LR", 0.0, [0.97] * 4, lambda1=[10] * 4), runs("LR", 0.9, [0.97, 0.97, 0.97, 0.10], lambda1=[5] * 4)]
    cases = claims.momentum_cases(pd.DataFrame([r for line in lines for r in line]), "LR", "lambda1")
    assert cases == (3, 3, 3, 0, 0)


def test_a_run_whose_robustness_rests_on_dead_gradients_is_left_out():
    """The 2026-12-04 demo: StdCNN at batch 16 with momentum 0.9 kept one of three seeds trained (61% clean),
    and its FGSM accuracy of 55% beat momentum 0's 50% only because 102 of its 247 robust samples had a
    saturated softmax, so no gradient attack could move them. That case was counted as momentum helping.
    Here one seed at the smallest batch with momentum counts `dead` of its samples robust that way."""
    def table(dead):
        without = runs("LR", 0.0, [0.97] * 4, fgsm=[0.50, 0.48, 0.43, 0.31])
        with_momentum = runs("LR", 0.9, [0.97] * 4, fgsm=[0.55, 0.50, 0.56, 0.50])
        for row in without + with_momentum:
            masked_run = row["momentum"] == 0.9 and row["batch_size"] == BATCHES[0] and row["seed"] == 2
            row["fgsm_unmeasured"] = dead if masked_run else 0.0
        return pd.DataFrame(without + with_momentum)

    assert claims.momentum_cases(table(0.0), "LR", "fgsm_accuracy") == (4, 4, 0, 0, 0)
    assert claims.momentum_cases(table(0.01), "LR", "fgsm_accuracy") == (4, 4, 0, 0, 0)  # within UNMEASURED_MAX
    assert claims.momentum_cases(table(0.23), "LR", "fgsm_accuracy") == (4, 4, 0, 1, 0)  # seeds 0, 1 still decide
    v = claims.most_cases(claims.LR_MOMENTUM_FGSM, table(0.23), "LR", "fgsm_accuracy")
    assert "1 run with masked gradients left out" in v.measured
    assert claims.momentum_cases(table(0.23), "LR", "lambda1").masked == 0  # λ1 needs no attack
    line = table(0.23).query("momentum == 0.9").assign(schedule="LR/BS", momentum=0.0)
    v = verdict(claims.lrbs_robust, line.to_dict("records"))
    assert v.outcome == "inconclusive"
    assert "masked gradients: 1 run counts up to 23% of the samples FGSM-robust" in v.why


def test_claims_without_their_runs_are_not_measured():
    table = pd.DataFrame(runs("LR/BS", 0.0, [0.97] * 4))
    for function in (claims.lr_drop, claims.benchmark_drop, claims.counter_example):
        v = function(table)
        assert v.outcome == "inconclusive" and "not measured" in v.why


def test_counter_example_needs_all_three_to_rise():
    rises = runs("LR", 0.0, [0.9] * 4, dataset="fashion_mnist", fgsm=[0.1, 0.2, 0.3, 0.4], pgd=[0.05, 0.1, 0.15, 0.2],
                 lambda1=[10, 20, 40, 80])
    assert verdict(claims.counter_example, rises).outcome == "reproduced"
    falling_pgd = runs("LR", 0.0, [0.9] * 4, dataset="fashion_mnist", fgsm=[0.1, 0.2, 0.3, 0.4],
                       pgd=[0.2, 0.15, 0.1, 0.05], lambda1=[10, 20, 40, 80])
    assert verdict(claims.counter_example, falling_pgd).outcome == "partly reproduced"
    flat_pgd = runs("LR", 0.0, [0.9] * 4, dataset="fashion_mnist", fgsm=[0.1, 0.2, 0.3, 0.4], pgd=[0.1] * 4,
                    lambda1=[10, 20, 40, 80])
    assert verdict(claims.counter_example, flat_pgd).outcome == "inconclusive"  # no change: the sign is noise


def test_judge_all_leaves_the_regime_search_out():
    class Run:
        profile = DEMO

    own = runs("LR/BS", 0.0, [0.97, 0.97, 0.975, 0.97])
    for row in own:
        row.update(lr_scale=DEMO.lr_scale, batch_size=DEMO.batch_sizes[BATCHES.index(row["batch_size"])])
    search = [dict(row, batch_size=512, test_accuracy=0.1) for row in own[:3]]  # beyond the demo's batches
    table = pd.DataFrame(own + search)
    assert len(in_regime(table, DEMO)) == len(own)
    verdicts = {v.claim: v for v in claims.judge_all({"results": table}, Run())}
    assert verdicts[claims.LRBS_ACCURACY].outcome == "reproduced"
    assert verdicts[claims.YAO_VALUES].outcome == "inconclusive"


# ------------------------------------------------------------------------------------------------ 2026-12 review
def capped_at(rows: list[dict], batch_sizes=(), momenta=(), seed: int = 0) -> list[dict]:
    """The rows with `seed`'s power iteration stopped at its cap at these batch sizes (or momenta)."""
    return [dict(row, lambda1_converged=not (row["seed"] == seed and (row["batch_size"] in batch_sizes
                                                                     or row["momentum"] in momenta)))
            for row in rows]


def test_lambda1_growth_is_judged_per_schedule_and_an_unmeasured_benchmark_says_so():
    # The 2026-12-05 demo: "λ1 grows with the batch size (fixed LR and Benchmark)" reproduced, no Benchmark run.
    table = pd.DataFrame(runs("LR", 0.0, [0.97] * 4, lambda1=[10, 20, 40, 80]))
    assert claims.lr_sharper(table).outcome == "reproduced"
    v = claims.benchmark_sharper(table)
    assert v.outcome == "inconclusive" and "not measured" in v.why and "Benchmark" in v.claim.text
    assert "Benchmark" not in claims.lr_sharper(table).claim.text


def test_a_capped_lambda1_decides_only_what_a_higher_true_value_would_not_reverse():
    rises = runs("LR", 0.0, [0.97] * 4, lambda1=[10, 20, 40, 80])
    # capped at the largest batch: its true λ1 is only higher, the rise only larger
    assert verdict(claims.lr_sharper, capped_at(rises, [BATCHES[-1]])).outcome == "reproduced"
    # capped at the smallest batch: a higher true λ1 there could undo the rise
    v = verdict(claims.lr_sharper, capped_at(rises, [BATCHES[0]]))
    assert v.outcome == "inconclusive" and "lower bound" in v.why
    assert f"1 capped λ1 (a lower bound) at B={BATCHES[0]}" in v.measured
    # a fall: a capped λ1 at the largest batch could hide a rise; at the smallest it could not
    falls = runs("LR", 0.0, [0.97] * 4, lambda1=[80, 40, 20, 10])
    assert verdict(claims.lr_sharper, capped_at(falls, [BATCHES[0]])).outcome == "not reproduced"
    assert verdict(claims.lr_sharper, capped_at(falls, [BATCHES[-1]])).outcome == "inconclusive"
    # far from flat: a capped λ1 at the highest point cannot narrow the spread, at the lowest it could
    steep = runs("LR/BS", 0.0, [0.97] * 4, lambda1=[10, 20, 40, 80])
    assert verdict(claims.lrbs_curvature, capped_at(steep, [BATCHES[-1]])).outcome == "not reproduced"
    assert verdict(claims.lrbs_curvature, capped_at(steep, [BATCHES[0]])).outcome == "inconclusive"


def test_a_momentum_case_on_a_capped_lambda1_is_left_out_where_it_could_reverse():
    # momentum lowers λ1 in all 4 cases of each study
    rows = [row for model in ("M1", "StdCNN") for m, values in ((0.0, [10] * 4), (0.9, [5] * 4))
            for row in runs("LR", m, [0.97] * 4, lambda1=values, model=model)]
    assert claims.most_cases(claims.LR_MOMENTUM_CURVATURE, pd.DataFrame(capped_at(rows)), "LR",
                             "lambda1").outcome == "reproduced"
    # a capped run at m=0.9 could hide a higher λ1 there ...
    capped_with = pd.DataFrame(capped_at(rows, momenta=[0.9]))
    cases = claims.momentum_cases(capped_with, "LR", "lambda1")
    assert (cases.better, cases.total, cases.capped) == (0, 0, 8)
    v = claims.most_cases(claims.LR_MOMENTUM_CURVATURE, capped_with, "LR", "lambda1")
    assert v.outcome == "inconclusive" and "8 cases left out: a capped λ1" in v.measured
    # ... while one at m=0 only makes the case stronger
    cases = claims.momentum_cases(pd.DataFrame(capped_at(rows, momenta=[0.0])), "LR", "lambda1")
    assert (cases.better, cases.total, cases.capped) == (8, 8, 0)


def test_lambda1_is_the_geometric_mean_in_claims_table_and_momentum_cases():
    from reproduce.batchsize import sections

    # seeds' λ1 of 5, 10, 80: geometric mean 15.9, arithmetic 31.7
    line = runs("LR", 0.0, [0.97] * 2, lambda1=[(5, 10, 80), (5, 10, 80)])
    assert "λ1 (geometric mean) 15.9 → 15.9" in verdict(claims.lr_sharper, line).measured
    table = pd.DataFrame(line).assign(setting="LR, m=0", learning_rate=0.01, lambda1_converged=True)
    text = sections.measurements(table)
    assert "15.9 ×/÷" in text and "31.7" not in text and "λ1: geometric mean" in text
    # m=0.9 lowers λ1 by the geometric mean (1, 1, 40 -> 3.4 < 10) though not by the arithmetic one (14)
    lines = [runs("LR", 0.0, [0.97], lambda1=[(10, 10, 10)]), runs("LR", 0.9, [0.97], lambda1=[(1, 1, 40)])]
    assert claims.momentum_cases(pd.DataFrame(lines[0] + lines[1]), "LR", "lambda1")[:2] == (1, 1)


def test_every_momentum_claim_is_judged_whatever_the_data_say():
    # The 2026-12-05 demo judged only FGSM at fixed LR; PGD (3 of 7) and test accuracy (5 of 8) were left out.
    def table(schedule, test, pgd):
        lines = [runs(schedule, m, test_acc, pgd=p, model=model) for model in ("M1", "StdCNN")
                 for m, test_acc, p in ((0.0, [0.95] * 4, [0.30] * 4), (0.9, test, pgd))]
        return pd.DataFrame([row for line in lines for row in line])

    mixed = table("LR", [0.96, 0.94, 0.96, 0.94], [0.31, 0.29, 0.29, 0.29])  # better in 4 of 8, 2 of 8
    verdicts = {v.claim: v for v in claims.judge_all({"results": mixed})}
    assert "4 of 8" in verdicts[claims.LR_MOMENTUM_TEST].measured
    assert "2 of 8" in verdicts[claims.LR_MOMENTUM_PGD].measured
    assert verdicts[claims.LR_MOMENTUM_PGD].outcome == "inconclusive"
    worse = table("LR", [0.90] * 4, [0.20] * 4)
    assert claims.most_cases(claims.LR_MOMENTUM_PGD, worse, "LR", "pgd_accuracy").outcome == "not reproduced"


def test_momentum_with_lr_bs_playing_a_consistent_role_refutes_no_significant_role():
    def table(test):
        lines = [runs("LR/BS", m, acc, model=model) for model in ("M1", "StdCNN")
                 for m, acc in ((0.0, [0.95] * 4), (0.9, test))]
        return pd.DataFrame([row for line in lines for row in line])

    metrics = ["test_accuracy", "fgsm_accuracy", "pgd_accuracy"]
    v = claims.no_role(claims.LRBS_MOMENTUM_NO_ROLE, table([0.97] * 4), "LR/BS", metrics)  # better in 8 of 8
    assert v.outcome == "not reproduced" and "test: better with the larger momentum in 8 of 8" in v.measured
    v = claims.no_role(claims.LRBS_MOMENTUM_NO_ROLE, table([0.97, 0.93] * 2), "LR/BS", metrics)  # 4 of 8
    assert v.outcome == "inconclusive" and "cannot show" in v.why
    verdicts = {v.claim for v in claims.judge_all({"results": table([0.97] * 4)})}
    assert claims.LRBS_MOMENTUM_NO_ROLE in verdicts


def test_the_figures_plot_the_geometric_mean_of_lambda1():
    import matplotlib

    matplotlib.use("Agg")
    from reproduce.batchsize import figures

    df = pd.DataFrame(runs("LR", 0.0, [0.97] * 2, lambda1=[(5, 10, 80), (5, 10, 80)])).assign(setting="LR, m=0")
    g = figures._panels(df, "setting", "test")
    ax = next(ax for ax in g.axes.flat if ax.get_title().startswith("λ1"))
    assert ax.get_title() == "λ1 (geometric mean)"
    assert np.allclose(np.exp(ax.get_lines()[0].get_ydata()), (5 * 10 * 80) ** (1 / 3))  # 15.9, not 31.7
    matplotlib.pyplot.close(g.figure)
