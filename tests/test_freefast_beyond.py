"""Beyond the paper: the AutoAttack-beside-PGD section and the masking section on hand-made tables (no
training), and where the profiles run them."""
import types

import pandas as pd
import pytest

from reproduce.freefast import profiles, robustness, sections

N = 150


def aa_row(method="fast", *, alpha_ratio=1.25, replays=None, repeat=0, clean=0.9, pgd=0.5, only_pgd=0, only_aa=0):
    """One model's AutoAttack columns: AutoAttack's accuracy follows from PGD's and the discordant points."""
    return {"method": method, "architecture": "preact_resnet18", "batch_size": 128, "epochs": 20,
            "replays": replays, "alpha_ratio": alpha_ratio if method == "fast" else None, "repeat": repeat,
            "aa_points": N, "aa_clean_accuracy": clean, "aa_pgd_accuracy": pgd,
            "aa_robust_accuracy": pgd - (only_pgd - only_aa) / N, "aa_only_pgd_robust": only_pgd,
            "aa_only_aa_robust": only_aa, "aa_warnings": ""}


def demo_run():
    return types.SimpleNamespace(profile=profiles.DEMO, profile_name="demo")


@pytest.mark.parametrize("only_pgd, only_aa, clean, pgd, reading", [
    (20, 0, 0.9, 0.5, "yes: PGD overstated"),
    (2, 0, 0.9, 0.5, "no: within 2 s.e."),        # two points of 150: noise
    (0, 20, 0.9, 0.5, "no: AutoAttack at this budget is weaker"),
    (0, 0, 0.9, 0.0, "cannot say: PGD already finds no robust point"),
    (20, 0, 0.12, 0.5, "cannot say: model did not train"),
])
def test_gap_reading(only_pgd, only_aa, clean, pgd, reading):
    assert robustness.gap_reading(aa_row(only_pgd=only_pgd, only_aa=only_aa, clean=clean, pgd=pgd)).startswith(reading)


def test_paired_gap_is_the_difference_of_the_two_accuracies():
    row = aa_row(pgd=0.5, only_pgd=12, only_aa=3)
    gap, se = robustness.paired_gap(row)
    assert gap == pytest.approx(row["aa_pgd_accuracy"] - row["aa_robust_accuracy"]) == pytest.approx(9 / N)
    assert se == pytest.approx((15 - 81 / N) ** 0.5 / N)


def test_section_pools_seeds_and_names_where_pgd_overstated():
    # Fast 2 eps: three seeds that each overstate a little (pooled: clearly); Free-8: one seed, within noise.
    rows = [aa_row(alpha_ratio=2.0, repeat=r, only_pgd=4) for r in range(3)] + [aa_row("free", replays=8, only_pgd=1)]
    text = sections.autoattack(pd.DataFrame(rows), demo_run())
    assert "Fast α=2ε, PreActResNet18, 20 ep (3 seeds)" in text and "+0.027 ± " in text
    assert "PGD overstated robustness clearly for: Fast α=2ε, PreActResNet18, 20 ep." in text
    assert "No clear overstatement for: Free m=8, PreActResNet18, 20 ep." in text
    assert "apgd-ce, apgd-t, square" in text and f"first {N} test points" in text


def test_section_is_absent_where_nothing_was_measured():
    assert sections.autoattack(pd.DataFrame([{"method": "fast", "natural_accuracy": 0.9}]), demo_run()) is None
    assert sections.masking(None, demo_run()) is None


def test_masking_section_lists_raised_checks_with_their_meaning():
    config = {k: v for k, v in aa_row().items() if not k.startswith("aa_")}
    table = pd.DataFrame([{**config, "check": "square_beats_white_box", "raised": True, "measured": "Square 10%",
                           "meaning": "gradients mislead.", "advice": "use Square.", "masking_points": 100},
                          {**config, "check": "zero_gradients", "raised": False, "measured": "0 of 100",
                           "meaning": "-", "advice": "-", "masking_points": 100}])
    text = sections.masking(table, demo_run())
    assert "| Fast α=1.25ε, PreActResNet18, 20 ep | 1 of 2 | square_beats_white_box: Square 10% |" in text
    assert "**square_beats_white_box**: gradients mislead. use Square." in text and "zero_gradients**" not in text


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_autoattack_and_masking_cells_are_cells_the_profile_trains_at_its_eps(name):
    p = profiles.PROFILES[name]
    for chosen in (p.aa_cells, p.masking_cells):
        assert chosen and all(c in p.cells for c in chosen)
        assert all(abs(c["eps"] - p.eps) < 1e-12 for c in chosen)
    assert all(c in p.aa_cells for c in p.masking_cells)  # the masking flags read beside the gap
