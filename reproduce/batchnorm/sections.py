"""The report's sections: each experiment's table (mean ± s.d. over seeds), how verdicts are decided, and
what this reproduction leaves out. Every number is read from this run's merged results."""
from __future__ import annotations

import pandas as pd

from reproduce.batchnorm import beyond, claims_cifar, rules, search
from reproduce.batchnorm.claims import REASONABLE_CLEAN, data_used, part
from reproduce.batchnorm.stats import summary
from tfadv.experiments import markdown_table, verdicts
from tfadv.experiments.run import Run
from tfadv.experiments.verdicts import CHANCE_MARGIN, SATURATION_COUNT, SATURATION_MARGIN


def cell_text(row: pd.Series | None, scale: float = 100.0, digits: int = 1) -> str:
    if row is None:
        return "–"
    spread = f" ± {scale * row['sd']:.{digits}f}" if row["n"] > 1 else ""
    return f"{scale * row['mean']:.{digits}f}{spread}"


def wide(table: pd.DataFrame, keys: list[str], metrics: list[str], scales: dict[str, float] | None = None,
         labels: dict[str, str] | None = None) -> str:
    """One row per `keys` group, one column per metric: "mean ± s.d." (x100 unless `scales` says otherwise)."""
    s = summary(table[table["metric"].isin(metrics)], [*keys, "metric"])
    rows = []
    for group, block in s.groupby(keys, dropna=False, sort=True):
        by_metric = {r["metric"]: r for _, r in block.iterrows()}
        group = group if isinstance(group, tuple) else (group,)
        n = int(max(r["n"] for r in by_metric.values()))
        rows.append([*group, n, *[cell_text(by_metric.get(m), (scales or {}).get(m, 100.0)) for m in metrics]])
    names = [(labels or {}).get(m, m) for m in metrics]
    return markdown_table([*keys, "seeds", *names], rows)


def tilting(table: pd.DataFrame) -> str:
    t = part(table, "tilting")
    return wide(t, ["width", "variant"], ["tilt_deg", "train", "clean", "awgn", "fgsm", "fgsm_eps0.25"],
                scales={"tilt_deg": 1.0}, labels={"tilt_deg": "θ (°)", "awgn": "AWGN N(0,1)", "fgsm": "FGSM ε=0.1",
                                                  "fgsm_eps0.25": "FGSM ε=0.25"}) + (
        "\n\nAccuracies in %, θ in degrees w.r.t. the nearest-centroid direction; the paper's Table 1 values "
        "were not available, only its claims are checked.")


def dimension(table: pd.DataFrame) -> str:
    t = part(table, "dimension")
    t = t.assign(BN=t["batchnorm"].map(lambda b: "BN" if b == True else ""))
    return wide(t, ["model", "BN", "weight_decay", "image_width"], ["train", "clean", "awgn", "bim"],
                labels={"awgn": "AWGN", "bim": "BIM-ℓ∞"}) + "\n\nAccuracies in %; the same λ at every width."


def depth_batch(table: pd.DataFrame) -> str:
    t = part(table, "depth_batch")
    t = t.assign(BN=t["batchnorm"].map(lambda b: "BN" if b == True else "no BN"))
    return wide(t, ["BN", "depth", "batch_size"], ["clean", "awgn", "bim"], labels={"awgn": "AWGN", "bim": "BIM"}) + (
        f"\n\nAccuracies in %. The batch-size claim uses depths ≤ 25 where every net reached "
        f"{100 * REASONABLE_CLEAN:g}% clean accuracy.")


def cifar(table: pd.DataFrame) -> str:
    t = part(table, "cifar")
    t = t[~t["metric"].str.contains("_s[1-5]$", regex=True)]
    text = wide(t[t["test_set"] != "cifar10_c"], ["model", "schedule", "normalization", "test_set"],
                ["train", "clean", "awgn", "pgd_linf", "pgd_l2", "autoattack_linf"],
                labels={"awgn": "AWGN σ=0.25", "autoattack_linf": "AutoAttack-ℓ∞ (beyond the paper; first test images)"})
    corrupted = t[t["test_set"] == "cifar10_c"]
    if not corrupted.empty:
        text += "\n\nCIFAR-10-C noise corruptions (mean of 5 severities):\n\n" + wide(
            corrupted, ["model", "schedule", "normalization"], sorted(set(corrupted["metric"])))
    return text + "\n\nAccuracies in %, normalised inputs (the authors' units, CIFAR-10's mean and s.d.)."


def imagenet(table: pd.DataFrame) -> str:
    t = part(table, "imagenet")
    metrics = [f"{kind}_top{k}" for kind in ("clean", "awgn", "pgd_linf") for k in (1, 5)]
    return wide(t, ["model", "has_batchnorm"], metrics) + "\n\nAccuracies in %, ImageNetV2 matched-frequency."


def verdict_rules() -> str:
    return (f"A claim about a difference (with BN minus without, over seeds) is **reproduced** when the difference "
            f"has the paper's sign, exceeds {rules.Z:g} standard errors and the smallest effect ({100 * rules.MIN_EFFECT:g} "
            f"points, or the paper's own effect ÷ {rules.MAGNITUDE:g} when that is smaller, so that the rule can call the "
            f"paper's own number an effect), rests on at least {rules.MIN_SEEDS} seeds per arm and, on the paper profile "
            f"only, lies within a factor {rules.MAGNITUDE:g} of the paper's number; **partly reproduced** when it is shown "
            f"but one of the last two fails; **not reproduced** when even {rules.Z:g} standard errors in the paper's "
            f"favour stay below the smallest effect; **inconclusive** otherwise (the noise could flip it), and whenever a "
            f"compared model did not train (clean accuracy within {100 * CHANCE_MARGIN:g} points of chance, or, for the "
            f"CIFAR-style runs, training accuracy less than {rules.FIT_SHARE:.0%} of the way from chance to the best "
            f"compared run's; the reason then also gives the difference over the runs that trained), or every compared "
            f"accuracy is saturated (within {SATURATION_COUNT} samples or {100 * SATURATION_MARGIN:g} points of 0% or "
            f"100%, whichever is wider; {100 * SATURATION_MARGIN:g} points where the sample count is unknown: two "
            f"counts of at most {SATURATION_COUNT} can never differ by {rules.Z:g} standard errors), or an arm has "
            f"fewer than {rules.MIN_SEEDS_TO_JUDGE} seeds (a difference between single runs can be noise). Claims "
            "with a threshold of their own (angles, ratios, the nearest-centroid lead) say it in their row, and are "
            "inconclusive too when the noise could put the measurement on either side of it. The standard error of a mean over seeds is the seeds' spread, never below the binomial error of "
            "the accuracies themselves. A claim over several cases (widths, metrics, models) is reproduced when every "
            "case is, partly when some are.")


LEFT_OUT = ("Not reproduced here: the SVHN experiment (App. E), the sweep of BN's constant c (App. A), the black-box "
            "transfer analysis (App. E.2), tracked vs batch statistics (App. I), the fooling images (App. J) and the "
            "BagNets' AWGN accuracies (1.25 / 5.09 / 14.62% top-5 for patches 9 / 17 / 33: torchvision-style BagNet "
            "weights are not among keras.applications). Also not judged: Table 6's caption, \"a 61 ± 1% reduction in "
            "test accuracy due to batch norm for √d = 84 compared to √d = 28\", which does not say which accuracy "
            "(clean, noise or BIM), nor whether the reduction is absolute or relative, and Table 6's values that would "
            "tell are not available (the demo profile also leaves out √d = 84, its 3x width).")


def outside_paper(tables: dict[str, pd.DataFrame], run: Run) -> str | None:
    """The claims judged like the paper's but not in its tally (the report's Claims table counts the paper's only)."""
    found = claims_cifar.outside_paper(tables, run)
    if not found:
        return None
    partial = partial_reason(run)
    if partial:
        found = [verdicts.provisional(v, partial) for v in found]
    counts = {o: sum(v.outcome == o for v in found) for o in dict.fromkeys(v.outcome for v in found)}
    rows = [(v.claim.text, claims_cifar.OUTSIDE_SOURCES.get(v.claim, ""), v.claim.paper, v.measured,
             f"**{v.outcome}** ({run.profile_name})", v.why) for v in found]
    return (f"Not counted in the Claims tally above, which holds the paper's claims only: {len(found)} claims, "
            f"{', '.join(f'{n} {o}' for o, n in counts.items())}.\n\n"
            + markdown_table(["claim", "source", "their number", f"measured ({run.profile_name})", "verdict",
                              "rule, or why inconclusive"], rows))


def partial_reason(run: Run) -> str | None:
    """Why this run's verdicts are provisional (as the Claims table's), or None for the profile's whole grid."""
    try:
        from tfadv.experiments import cli

        cells = cli.reported_grid(run)
        reasons = cli.partial_run(run, cells, sum(run.finished(c) for c in cells))
    except (AttributeError, TypeError):  # a hand-made run (tests) has no grid
        return None
    return "partial run (see the warning above)" if reasons else None


def sections(tables: dict[str, pd.DataFrame], run: Run) -> list[tuple[str, str]]:
    table = tables["results"]
    found = [(f"{heading}, on {data_used(run, name)}", make(table)) for heading, name, make in (
        ("Table 1: boundary tilting on 3 vs 7 (mean ± s.d. over seeds)", "tilting", tilting),
        ("Tables 6-7, App. F: input dimension", "dimension", dimension),
        ("Figure 2: depth × batch size", "depth_batch", depth_batch),
        ("Tables 2-4: VGG and residual nets with and without BN", "cifar", cifar),
        ("Table 5: ImageNet models with and without BN", "imagenet", imagenet)) if not part(table, name).empty]
    extra = [(heading, text) for heading, text in (
        ("Claims outside the paper: the authors' code and beyond the paper", outside_paper(tables, run)),
        ("Beyond the paper: AutoAttack-style accuracy next to the paper's PGD", beyond.autoattack_section(table)),
        ("Beyond the paper: gradient-masking checks", beyond.masking_section(tables))) if text]
    return [*found, *extra, *search.sections(table, run), ("How verdicts are decided", verdict_rules()),
            ("Left out", LEFT_OUT)]
