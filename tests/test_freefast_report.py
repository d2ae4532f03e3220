"""The freefast report's own sections and the final-accuracy figure on hand-made tables (no training): the
paper's rows beside the measured ones, the reference log's claim apart from the paper's, the search sections'
judged readings, and whiskers that are the claims' noise."""
import types

import numpy as np
import pandas as pd
import pytest

from reproduce.freefast import figures, profiles, sections
from reproduce.freefast import measures as m
from tfadv.experiments.verdicts import INCONCLUSIVE

POINTS = 450


def result(method, *, replays=None, alpha_ratio=None, epochs=20, eps=0.3, pgd=0.4, natural=0.95, repeat=0):
    cell = f"{method},{epochs},{replays},{alpha_ratio},{eps},{repeat}"
    return {"cell": cell, "method": method, "architecture": "preact_resnet18", "batch_size": 128, "epochs": epochs,
            "eps": eps, "replays": replays, "alpha_ratio": alpha_ratio, "repeat": repeat, "natural_accuracy": natural,
            "pgd10_accuracy": pgd, "pgd20_accuracy": pgd, "pgd50_accuracy": pgd, "eval_points": POINTS,
            "curve_points": 150, "curve_steps": 10, "train_minutes": 0.2, "avg_epoch_seconds": 0.5,
            "sgd_steps": 11 * epochs * (replays or 1)}


def demo_run(tmp_path=None):
    return types.SimpleNamespace(profile=profiles.DEMO, profile_name="demo", out=tmp_path)


def test_measured_vs_paper_puts_the_papers_rows_beside_the_measured_ones():
    results = pd.DataFrame([result("free", replays=8, pgd=0.45), result("fast", alpha_ratio=2.0, pgd=0.40),
                            result("pgd", eps=0.4, pgd=0.07)])
    text = sections.measured_vs_paper(results, demo_run())
    lines = text.splitlines()
    free = [i for i, line in enumerate(lines) if line.startswith("| Free m=8")]
    # measured first, then the paper's 45- and 90-epoch rows of the same setup, with the paper's numbers
    assert "(measured, 1 seed)" in lines[free[0]] and len(free) == 3
    assert "| 0.839 | 0.498 | 0.486 | 0.483 | 45 | 88 | 117 |" in lines[free[1]]
    assert "| 0.845 | – | – | 0.485 | 90 | 176 | 117 |" in lines[free[2]]
    assert "| Fast α=2ε, PreActResNet18, bs 128, ε 8/255 (paper, CIFAR-10) | 0.856 | 0.000 |" in text
    assert sum("PGD-7" in line for line in lines) == 1  # not in the paper: measured only
    assert "trains on digits at ε = 0.3" in text


def test_the_reference_logs_claim_is_shown_apart_and_inconclusive_on_a_partial_run():
    fast = [result("fast", alpha_ratio=1.25, epochs=90, repeat=i) for i in range(3)]
    curves = pd.DataFrame([{"cell": r["cell"], "epoch": e, "val_pgd_accuracy": p}
                           for r in fast for e, p in enumerate((0.3, 0.45, 0.44), 1)])
    text = sections.reference_log(pd.DataFrame(fast), curves, demo_run(), partial=[])
    assert text.startswith("Not the paper's claim") and "**not reproduced** (demo)" in text
    partial = sections.reference_log(pd.DataFrame(fast), curves, demo_run(), partial=["--limit 2"])
    assert f"**{INCONCLUSIVE}** (demo)" in partial and "partial run" in partial


def free_rows(pgd_by_m_and_epochs):
    return pd.DataFrame([result("free", replays=k, epochs=e, pgd=p) for (k, e), p in pgd_by_m_and_epochs.items()])


def test_the_most_robust_m_is_judged_against_the_noise():
    """The demo: at equal cost (40 replay-epochs) m = 8's 0.289 and m = 4's 0.278 are one seed each on 450
    points: within noise, so no most robust m; at the seed's epochs m = 8 is clearly ahead."""
    results = free_rows({(2, 20): 0.211, (4, 10): 0.278, (8, 5): 0.289, (4, 20): 0.331, (8, 20): 0.451})
    text = sections.free_m_reading(results, 0.3)
    assert "at the seed's epochs, m = 8 clearly above every other m (PGD-20 0.451 at m = 8 vs 0.331 at m = 4)" in text
    assert "at equal cost, m = 8 and m = 4 within noise (PGD-20 0.289 at m = 8 vs 0.278 at m = 4)" in text
    assert "one seed per m" in text


def test_the_search_section_says_a_collapse_needs_robustness_first():
    text = sections.with_never_robust_note("Definitions. Collapsed: ...\n\n| table |")
    assert text.startswith("Definitions. Collapsed: ... A collapse needs robustness to lose")
    assert text.endswith("\n\n| table |") and f"above {m.COLLAPSE_ACCURACY}" in text


def test_final_accuracy_whiskers_are_two_standard_errors(tmp_path, monkeypatch):
    """One seed: 2 binomial s.e.; three seeds: 2 x hypot(s.d. / sqrt(3), binomial s.e.)."""
    shown = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: shown.setdefault("figure", fig))
    seeds = [result("fast", alpha_ratio=1.25, pgd=p, repeat=i) for i, p in enumerate((0.35, 0.40, 0.45))]
    results = pd.DataFrame(seeds + [result("free", replays=8, pgd=0.45)])
    figures.final_accuracy(results, demo_run(tmp_path))
    ax = shown["figure"].axes[0]
    pgd20 = next(c for c in ax.containers if c.get_label() == "PGD-20")
    half_widths = [np.ptp(segment[:, 0]) / 2 for segment in pgd20.errorbar.lines[2][0].get_segments()]
    expected = [m.Z * m.estimate(results.iloc[rows], "pgd20_accuracy").se for rows in ([0, 1, 2], [3])]
    assert half_widths == pytest.approx(expected)
    assert "± 2 s.e." in ax.get_title() and any("Whiskers: ± 2 s.e." in t.get_text() for t in shown["figure"].texts)


def test_the_search_sections_get_their_readings():
    """search.sections' two headings are found (a renamed heading would silently drop the readings)."""
    rows = [result("fast", alpha_ratio=a, pgd=0.4) for a in (1.25, 2.0)]
    rows += [result("free", replays=k, epochs=e, pgd=p) for k, e, p in ((2, 20, 0.21), (4, 10, 0.278), (8, 5, 0.289))]
    curves = pd.DataFrame([{"cell": r["cell"], "epoch": 1, "val_pgd_accuracy": 0.4} for r in rows])
    found = dict(sections.search_sections({"results": pd.DataFrame(rows), "curves": curves}, demo_run()))
    assert "A collapse needs robustness to lose" in found[sections.OVERFITTING_HEADING]
    assert "Judged (2 s.e. on the test points, one seed per m): at equal cost" in found[sections.FREE_M_HEADING]
