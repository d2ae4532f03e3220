"""The freefast claims on small hand-made tables: no training. Includes the overclaims of the old runner
(a Fast alpha = 2 eps that did not collapse, Free most robust at m = 4, Free-8 within noise of Fast, curves
still rising at the last epoch) and the preconditions (untrained, saturated, noise, --limit)."""
import numpy as np
import pandas as pd
import pytest

from reproduce.freefast import claims, paper
from tfadv.experiments.verdicts import INCONCLUSIVE, NOT_REPRODUCED, PARTLY, REPRODUCED

POINTS = 450


def row(method, *, replays=None, alpha_ratio=None, natural=0.9, pgd=0.4, architecture="preact_resnet18",
        epochs=20, batch_size=128, repeat=0, points=POINTS, seconds=1.0):
    key = f"{method},{architecture},{batch_size},{epochs},{replays},{alpha_ratio},{repeat}"
    return {"cell": key, "method": method, "architecture": architecture, "batch_size": batch_size, "epochs": epochs,
            "replays": replays, "alpha_ratio": alpha_ratio, "repeat": repeat, "natural_accuracy": natural,
            "pgd10_accuracy": pgd, "pgd20_accuracy": pgd, "pgd50_accuracy": pgd, "eval_points": points,
            "curve_points": points, "curve_steps": 10, "avg_epoch_seconds": seconds, "train_minutes": 1.0}


def curve(result, pgd_values, seconds=None):
    seconds = seconds if seconds is not None else [result["avg_epoch_seconds"]] * len(pgd_values)
    return [{"cell": result["cell"], "epoch": e + 1, "val_pgd_accuracy": p, "val_natural_accuracy": 0.9,
             "epoch_seconds": s} for e, (p, s) in enumerate(zip(pgd_values, seconds))]


def tables(rows, curves=()):
    results = pd.DataFrame(rows)
    return results, pd.DataFrame(list(curves)) if curves else pd.DataFrame(columns=["cell", "epoch"])


def fast_seeds(pgd_large, pgd_small, natural=0.9):
    return ([row("fast", alpha_ratio=2.0, pgd=p, repeat=i, natural=natural) for i, p in enumerate(pgd_large)]
            + [row("fast", alpha_ratio=1.25, pgd=p, repeat=i, natural=natural) for i, p in enumerate(pgd_small)])


def robust_first(rows, peak=0.2):
    """Each run's curve: PGD accuracy `peak` at epoch 1 (clearly above the collapse level on 450 points, but
    not so high that a fall to 0 is a fall of more than 0.2), then its final value."""
    return [point for r in rows for point in curve(r, [peak, r["pgd20_accuracy"]])]


@pytest.mark.parametrize("large, small, natural, outcome", [
    ((0.0, 0.01, 0.0), (0.40, 0.42, 0.39), 0.9, REPRODUCED),
    ((0.0, 0.41, 0.40), (0.40, 0.42, 0.39), 0.9, PARTLY),
    ((0.391, 0.40, 0.38), (0.387, 0.39, 0.40), 0.9, NOT_REPRODUCED),  # the old demo: 2 eps did not collapse
    ((0.391,), (0.387,), 0.9, INCONCLUSIVE),                           # ... in one run: too few to rule it out
    ((0.0, 0.0, 0.0), (0.40, 0.42, 0.39), 0.11, INCONCLUSIVE),         # models at chance: did not train
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.9, INCONCLUSIVE),             # saturated at 0%
    ((0.06, 0.0, 0.0), (0.40, 0.42, 0.39), 0.9, INCONCLUSIVE),         # 6% on 450 points: noise spans 5%
])
def test_catastrophic_overfitting(large, small, natural, outcome):
    rows = fast_seeds(large, small, natural)
    results, curves = tables(rows, robust_first(rows))
    assert claims.catastrophic_overfitting(results, curves).outcome == outcome


def test_a_run_never_robust_did_not_collapse():
    """The demo at eps = 0.4: Fast 1.25 eps trained (natural 0.81) but its curve never passed 0.04 (PGD-7
    training itself reached 0.07): a budget it did not learn, not catastrophic overfitting."""
    rows = fast_seeds((0.0, 0.0, 0.0), (0.02, 0.40, 0.41))
    never = robust_first(rows[:3]) + robust_first(rows[4:]) + curve(rows[3], [0.01, 0.04, 0.03, 0.02])
    verdict = claims.catastrophic_overfitting(*tables(rows, never))
    assert verdict.outcome == INCONCLUSIVE and "1 run(s) never robust" in verdict.why
    assert "α=1.25ε: collapsed in 0 of 3 run(s); 1 did not train" in verdict.measured


def test_a_final_value_near_zero_without_a_curve_is_not_called_a_collapse():
    verdict = claims.catastrophic_overfitting(*tables(fast_seeds((0.0, 0.0, 0.0), (0.40, 0.42, 0.39))))
    assert verdict.outcome == INCONCLUSIVE and "3 run(s) within 2 s.e." in verdict.why


def test_a_collapse_along_the_curve_counts_even_if_the_final_value_recovers():
    rows = fast_seeds((0.30,), (0.40,))
    results, curves = tables(rows, curve(rows[0], [0.6, 0.7, 0.02, 0.30]) + curve(rows[1], [0.3, 0.35, 0.4, 0.4]))
    verdict = claims.catastrophic_overfitting(results, curves)
    assert verdict.outcome == REPRODUCED and "collapsed in 1 of 1" in verdict.measured


def free_sweep(natural, pgd, points=POINTS):
    return [row("free", replays=m, natural=n, pgd=p, points=points) for m, n, p in zip((2, 4, 8, 10), natural, pgd)]


def repeated(sd=0.005, pgd=0.40, natural=0.90, alpha_ratio=1.25):
    """Three seeds of a setting the comparisons do not read (Fast for 40 epochs): the spread over seeds
    (s.d. `sd`) that the claims assume for single runs."""
    return [row("fast", alpha_ratio=alpha_ratio, epochs=40, pgd=pgd + o, natural=natural + o, repeat=i)
            for i, o in enumerate((-sd, 0.0, sd))]


def test_free_claims_on_the_papers_own_numbers_are_reproduced():
    results, _ = tables(free_sweep((0.895, 0.867, 0.839, 0.821), (0.297, 0.457, 0.486, 0.482), points=10_000)
                        + repeated())
    assert claims.free_natural(results).outcome == REPRODUCED
    assert claims.free_robust(results).outcome == REPRODUCED


@pytest.mark.parametrize("natural, outcome", [
    ((0.95, 0.93, 0.85), REPRODUCED), ((0.95, 0.78, 0.85), PARTLY), ((0.85, 0.90, 0.95), NOT_REPRODUCED),
    ((0.95, 0.94, 0.94), INCONCLUSIVE),
])
def test_free_natural_accuracy_falls(natural, outcome):
    results, _ = tables(free_sweep(natural, (0.3, 0.4, 0.45)) + repeated())
    assert claims.free_natural(results).outcome == outcome


@pytest.mark.parametrize("pgd, outcome", [
    ((0.30, 0.40, 0.45), PARTLY),            # rises up to m = 8, but no m above 8 ran: "best m" untested
    ((0.30, 0.45, 0.36), PARTLY),            # the old demo: m = 4 clearly the most robust
    ((0.30, 0.42, 0.40), PARTLY),            # m = 4 best, but within noise of m = 8
    ((0.40, 0.41, 0.42), INCONCLUSIVE),      # every m within noise
    ((0.45, 0.40, 0.30), NOT_REPRODUCED),    # robustness falls with m
])
def test_free_robustness_best_at_m8(pgd, outcome):
    results, _ = tables(free_sweep((0.95, 0.93, 0.90), pgd) + repeated())
    verdict = claims.free_robust(results)
    assert verdict.outcome == outcome, verdict
    assert "m = 8 is the largest m run" in verdict.measured
    assert "a single run's s.e. includes a spread over seeds of 0.005" in verdict.measured


def test_the_best_m_is_tested_by_an_m_above_8():
    natural = (0.95, 0.93, 0.90, 0.89)
    verdict = claims.free_robust(tables(free_sweep(natural, (0.30, 0.40, 0.46, 0.45)) + repeated())[0])
    assert verdict.outcome == REPRODUCED and "best m = 8" in verdict.measured
    verdict = claims.free_robust(tables(free_sweep(natural, (0.30, 0.40, 0.46, 0.56)) + repeated())[0])
    assert verdict.outcome == PARTLY and "m=10 clearly above m=8" in verdict.why


def test_single_runs_compared_with_no_setting_repeated_are_inconclusive():
    """The free sweep runs one seed per m: on the test points' binomial error alone, a 5-point step between two
    single runs was called clear, though seeds of one setting differ by as much."""
    results, _ = tables(free_sweep((0.95, 0.93, 0.85), (0.30, 0.40, 0.45)))
    for rule in (claims.free_natural, claims.free_robust):
        verdict = rule(results)
        assert verdict.outcome == INCONCLUSIVE and "no setting of this run was repeated" in verdict.why
    results, _ = tables([row("free", replays=8, pgd=0.485, points=10_000),
                         row("fast", alpha_ratio=1.25, pgd=0.434, points=10_000)])
    assert claims.free_vs_fast(results).outcome == INCONCLUSIVE


def test_single_runs_carry_the_largest_spread_measured_over_seeds():
    sweep = free_sweep((0.95, 0.93, 0.90), (0.30, 0.40, 0.45))
    assert claims.free_robust(tables(sweep + repeated(sd=0.005))[0]).outcome == PARTLY
    noisy = claims.free_robust(tables(sweep + repeated(sd=0.005) + repeated(sd=0.12, alpha_ratio=2.0))[0])
    assert noisy.outcome == INCONCLUSIVE and "spread over seeds of 0.120" in noisy.measured
    # A setting that collapsed in some seeds spreads by the phenomenon, not by training noise: not assumed.
    collapsed = [row("fast", alpha_ratio=2.0, epochs=40, pgd=p, repeat=i) for i, p in enumerate((0.0, 0.4, 0.0))]
    assert claims.free_robust(tables(sweep + repeated(sd=0.005) + collapsed)[0]).outcome == PARTLY


@pytest.mark.parametrize("seconds, outcome", [
    ((1.0, 2.0, 4.0), REPRODUCED),           # the paper: about proportional to m
    ((1.0, 2.0, 2.0), PARTLY),               # grows from m = 2 to 4 only
    ((4.0, 2.0, 1.0), NOT_REPRODUCED),       # shrinks
    ((1.0, 1.1, 1.2), INCONCLUSIVE),         # steps smaller than the epochs' spread
    ((1.0, 1.0, 1.0), INCONCLUSIVE),         # flat, but the spread cannot rule out a small growth
])
def test_free_train_time_grows_with_m(seconds, outcome):
    rows = free_sweep((0.95, 0.93, 0.90), (0.3, 0.4, 0.45))
    spread = (0.8, 1.2, 1.0, 0.9, 1.1)   # per-epoch noise, e.g. a shared machine
    curves = [point for r, t in zip(rows, seconds) for point in curve(r, [0.4] * 6, [60.0] + [t * f for f in spread])]
    verdict = claims.free_time(*tables(rows, curves))
    assert verdict.outcome == outcome, verdict
    assert f"{seconds[0]:.2f} s (m=2)" in verdict.measured  # the compiling first epoch left out


@pytest.mark.parametrize("free8, fast, points, outcome", [
    (0.485, 0.434, 10_000, REPRODUCED), (0.36, 0.39, POINTS, INCONCLUSIVE), (0.30, 0.40, POINTS, NOT_REPRODUCED),
])
def test_free8_more_robust_than_fast(free8, fast, points, outcome):
    results, _ = tables([row("free", replays=8, pgd=free8, points=points),
                         row("fast", alpha_ratio=1.25, pgd=fast, points=points)] + repeated())
    assert claims.free_vs_fast(results).outcome == outcome


def test_free_vs_fast_uses_the_spread_over_seeds():
    free8 = [row("free", replays=8, pgd=p, repeat=i) for i, p in enumerate((0.35, 0.55, 0.45))]
    fast = [row("fast", alpha_ratio=1.25, pgd=p, repeat=i) for i, p in enumerate((0.33, 0.34, 0.35))]
    results, _ = tables(free8 + fast)
    # 0.45 vs 0.34 on 450 points would be clear; with a seed s.d. of 0.1 it is noise
    assert claims.free_vs_fast(results).outcome == INCONCLUSIVE


@pytest.mark.parametrize("free_seconds, outcome", [
    ([4.5, 4.6, 4.4, 4.5], REPRODUCED), ([2.0, 2.1, 1.9, 2.0], PARTLY), ([0.9, 1.0, 0.95, 0.9], NOT_REPRODUCED),
    ([1.0, 9.0, 2.0, 6.0], INCONCLUSIVE),
])
def test_speed_ratio_with_timing_noise(free_seconds, outcome):
    free8, fast = row("free", replays=8), row("fast", alpha_ratio=1.25)
    results, curves = tables([free8, fast], curve(free8, [0.4] * 4, free_seconds) + curve(fast, [0.4] * 4, [1.0] * 4))
    assert claims.speed(results, curves).outcome == outcome


def test_speed_ignores_the_first_epoch_which_compiles():
    free8, fast = row("free", replays=8), row("fast", alpha_ratio=1.25)
    results, curves = tables([free8, fast], curve(free8, [0.4] * 3, [5.0, 4.5, 4.5]) + curve(fast, [0.4] * 3,
                                                                                           [60.0, 1.0, 1.0]))
    assert claims.speed(results, curves).outcome == REPRODUCED


@pytest.mark.parametrize("pgd_curve, runs, epochs, outcome", [
    ([0.1, 0.2, 0.3, 0.38, 0.41], 3, 90, NOT_REPRODUCED),   # the log's length, still improving at the end
    ([0.1, 0.2, 0.3, 0.38, 0.41], 3, 40, INCONCLUSIVE),     # the demo: ends before the log's epoch 85
    ([0.1, 0.2, 0.3, 0.38, 0.41], 1, 90, INCONCLUSIVE),     # one run without a collapse does not rule it out
    ([0.3, 0.43, 0.44, 0.10, 0.01], 1, 20, REPRODUCED),     # one collapse shows it
    ([0.3, 0.40, 0.42, 0.30, 0.22], 3, 90, INCONCLUSIVE),   # a fall of 0.2 on 450 points: within noise
])
def test_late_collapse_along_the_longest_fast_curve(pgd_curve, runs, epochs, outcome):
    fast = [row("fast", alpha_ratio=1.25, pgd=pgd_curve[-1], repeat=i, epochs=epochs) for i in range(runs)]
    results, curves = tables(fast, [point for r in fast for point in curve(r, pgd_curve)])
    verdict = claims.late_collapse(results, curves)
    assert verdict.outcome == outcome
    assert ("before epoch 85 where the log collapsed" in verdict.why) == (epochs == 40)


def test_the_claim_from_the_reference_log_is_not_counted_with_the_papers():
    """The late collapse is in the seed authors' log, not in the paper: judged apart (reference_log_claims)."""
    fast = [row("fast", alpha_ratio=1.25, pgd=0.41, repeat=i, epochs=40) for i in range(3)]
    results, curves = tables(fast, [point for r in fast for point in curve(r, [0.2, 0.41])])
    papers = [v.claim for v in claims.judge_tables(results, curves, "digits")]
    assert claims.LATE_COLLAPSE not in papers and claims.FREE_TIME in papers
    assert [v.claim for v in claims.reference_log_claims(results, curves)] == [claims.LATE_COLLAPSE]
    assert "not the paper" in claims.LATE_COLLAPSE.text and "log" in claims.LATE_COLLAPSE.paper


def test_networks_preact_beats_resnet50():
    rows = [row(m, architecture=a, natural=n, pgd=p, points=10_000, **w)
            for m, w in (("free", {"replays": 8}), ("fast", {"alpha_ratio": 1.25}))
            for a, n, p in (("preact_resnet18", 0.84, 0.48), ("resnet50", 0.74, 0.40))] + repeated()
    results, _ = tables(rows)
    assert claims.networks(results).outcome == REPRODUCED
    results, _ = tables([r for r in rows if r["architecture"] == "preact_resnet18"])
    assert claims.networks(results).outcome == INCONCLUSIVE  # not measured


def test_paper_numbers_judged_only_on_cifar10_within_tolerance():
    measured = paper.table().assign(eval_points=10_000, repeat=0)
    measured["cell"] = [str(i) for i in range(len(measured))]
    assert all(v.outcome == REPRODUCED for v in claims.paper_numbers(measured, "cifar10"))
    shifted = measured.assign(natural_accuracy=measured["natural_accuracy"] - 0.05)
    assert all(v.outcome == PARTLY for v in claims.paper_numbers(shifted, "cifar10"))
    assert all(v.outcome == INCONCLUSIVE for v in claims.paper_numbers(measured, "digits"))


def test_only_the_cells_at_the_profiles_eps_are_judged():
    rows = fast_seeds((0.0,), (0.4,))
    results, curves = tables(rows, robust_first(rows))
    assert claims.judge_tables(results, curves, "digits")[0].outcome == REPRODUCED
    assert claims.judge_tables(results.assign(eps=0.4), curves, "digits", eps=0.3)[0].outcome == INCONCLUSIVE


def test_an_empty_table_is_judged_not_measured():
    verdicts = claims.judge_tables(pd.DataFrame(), pd.DataFrame(), "digits")
    assert {v.outcome for v in verdicts} == {INCONCLUSIVE}
    assert np.all(["not measured" in v.why for v in verdicts])


def test_search_counts_a_model_at_chance_as_not_trained_not_collapsed():
    from reproduce.freefast import search

    rows = [{**r, "eps": 0.3} for r in fast_seeds((0.0,), (0.0,), natural=0.12)]  # at chance: PGD 0 means nothing
    rows += [{**r, "eps": 0.4} for r in fast_seeds((0.0,), (0.4,))]
    results, curves = tables(rows, robust_first(rows))
    table, found = search.fast_table(results, curves)
    assert found[:2] == ["ε = 0.3, Fast α=1.25ε, 20 epochs: collapsed in 0 of 1 run(s); 1 did not train",
                         "ε = 0.3, Fast α=2ε, 20 epochs: collapsed in 0 of 1 run(s); 1 did not train"]
    assert "| 0 / 0 / 0 / 1 |" in table and "| 1 / 0 / 0 / 0 |" in table
    text = search.pattern(results, curves)
    assert "pattern (α = 2ε collapsed in every run, 1.25ε in none): ε = 0.4 (20 epochs)." in text
    assert "Mixed, unclear or not trained: ε = 0.3 (20 epochs)." in text


@pytest.mark.parametrize("natural_large, natural_small", [
    (0.1875, 0.1875),   # the smoke report: both at chance on 16 points, PGD-20 0 for both
    (0.9, 0.1875),      # alpha = 2 eps collapsed; the 1.25 eps run did not train, so it cannot count as collapsed
])
def test_the_claim_and_the_search_section_count_collapses_alike(natural_large, natural_small):
    from reproduce.freefast import search

    large, small = fast_seeds((0.0,), (0.0,))
    rows = [{**r, "natural_accuracy": n, "eval_points": 16, "curve_points": 16, "eps": 0.3}
            for r, n in ((large, natural_large), (small, natural_small))]
    results, curves = tables(rows, robust_first(rows, peak=0.6))  # 0.6 on 16 points: clearly above 0.05
    verdict = claims.catastrophic_overfitting(results, curves)
    _, found = search.fast_table(results, curves)
    section = dict(line.split(", 20 epochs: ") for line in found)  # "ε = 0.3, Fast α=2ε" -> "collapsed in ..."
    for ratio in ("1.25", "2"):
        assert f"α={ratio}ε: {section[f'ε = 0.3, Fast α={ratio}ε']}, PGD-20" in verdict.measured
    assert "α=1.25ε: collapsed in 0 of 1 run(s); 1 did not train" in verdict.measured
    assert verdict.outcome == INCONCLUSIVE and "did not train" in verdict.why


def test_a_late_fall_of_a_run_that_did_not_train_is_not_a_collapse():
    fast = row("fast", alpha_ratio=1.25, natural=0.11, pgd=0.0)
    results, curves = tables([fast], curve(fast, [0.3, 0.43, 0.44, 0.10, 0.0]))
    verdict = claims.late_collapse(results, curves)
    assert "collapsed in 0 of 1 run(s); 1 did not train" in verdict.measured
    assert verdict.outcome == INCONCLUSIVE and "did not train" in verdict.why


def test_search_counts_a_run_never_robust_as_not_trained_not_collapsed():
    from reproduce.freefast import search

    rows = [{**r, "eps": 0.4} for r in fast_seeds((0.06,), (0.02,), natural=0.81)]
    results, curves = tables(rows, curve(rows[0], [0.01, 0.20, 0.06]) + curve(rows[1], [0.01, 0.04, 0.02]))
    table, found = search.fast_table(results, curves)
    assert "ε = 0.4, Fast α=1.25ε, 20 epochs: collapsed in 0 of 1 run(s); 1 did not train" in found
    assert "| 0.04@2 → 0.02 | 0 / 0 / 0 / 1 |" in table and "| 0.20@2 → 0.06 | 0 / 0 / 1 / 0 |" in table
