"""The report's own sections: measured vs paper, the claim from the reference code's log, readings added to the
search sections, the protocol in words, and notes on --limit."""
from __future__ import annotations

import pandas as pd

from tfadv.experiments import Run, markdown_table
from tfadv.experiments.tables import select
from tfadv.experiments.verdicts import Verdict, provisional

from reproduce.freefast import claims, paper, robustness, search
from reproduce.freefast import measures as m
from reproduce.freefast.paper import NETWORK, label

ACCURACIES = ("natural_accuracy", "pgd10_accuracy", "pgd20_accuracy", "pgd50_accuracy")
#: A configuration without its epochs and budget: what a measured row and the paper's rows have in common.
SETUP_COLUMNS = ("method", "architecture", "batch_size", "replays", "alpha_ratio")
#: The headings of search.sections, whose texts sections() completes.
OVERFITTING_HEADING = "Catastrophic overfitting: where it was searched"
FREE_M_HEADING = "Free's m: the seed's epochs and equal cost"


def _mean_sd(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    return f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else "")


def measured_vs_paper(results: pd.DataFrame, run: Run) -> str:
    """Every configuration measured (mean ± s.d. over its seeds), followed by the paper's rows of the same
    method, network, batch size and m or alpha (at the paper's epochs, on CIFAR-10 at eps = 8/255)."""
    reference, rows = paper.table(), []
    for setup, runs in results.groupby(list(SETUP_COLUMNS), dropna=False, sort=True):
        setup = dict(zip(SETUP_COLUMNS, setup))
        name = f"{label(**setup)}, {NETWORK[setup['architecture']]}, bs {int(setup['batch_size'])}"
        for (epochs, eps), group in runs.groupby(["epochs", "eps"], sort=True):
            rows.append([f"{name}, ε {eps:.3g} (measured, {len(group)} seed{'s' * (len(group) > 1)})",
                         *(_mean_sd(group[c]) if c in group else "–" for c in ACCURACIES), int(epochs),
                         f"{group['train_minutes'].mean():.2f}", f"{group['avg_epoch_seconds'].mean():.2f}"])
        for _, theirs in _paper_rows(reference, setup).iterrows():
            rows.append([f"{name}, ε 8/255 (paper, CIFAR-10)",
                         *("–" if pd.isna(theirs[c]) else f"{theirs[c]:.3f}" for c in ACCURACIES),
                         int(theirs["epochs"]), f"{theirs['train_minutes']:g}", f"{theirs['avg_epoch_seconds']:g}"])
    columns = ["configuration", "natural", "PGD-10", "PGD-20", "PGD-50", "epochs", "train min", "s/epoch"]
    p = run.profile
    note = ("The paper's rows are its tables (Secs. 5-7; times on its GPU). "
            + ("" if p.dataset == "cifar10" else
               f"This profile trains on {p.dataset} at ε = {p.eps:g} with networks of width {p.width}, for other "
               "epochs, on a CPU: its rows sit beside the paper's for orientation, and the claims above judge "
               "whether each effect shows, not whether these numbers match."))
    return markdown_table(columns, rows) + "\n\n" + note


def _paper_rows(reference: pd.DataFrame, setup: dict) -> pd.DataFrame:
    """The paper's rows of one setup (SETUP_COLUMNS), at every epochs it ran."""
    mask = pd.Series(True, index=reference.index)
    for column, value in setup.items():
        mask &= reference[column].isna() if pd.isna(value) else reference[column] == value
    return reference[mask]


def protocol(run: Run) -> str:
    """How epochs, training and evaluation are counted, in words (numbers from the profile)."""
    p = run.profile
    steps = "/".join(map(str, p.eval_steps))
    return (
        "An epoch is one pass over the training set. In a Free-m epoch each minibatch is replayed m times (the "
        "seed's convention: its cyclic schedule spans epochs × batches × m steps), so Free-m makes m times as many "
        "SGD steps as Fast in the same epochs; Shafahi et al. count N_ep/m passes instead. "
        f"Evaluation: L∞ PGD-{steps} at the cell's ε (the claims: ε = {p.eps:.4g}), step {p.eval_step_ratio:g}ε, "
        f"{p.restarts} random start(s) "
        "(a sample counts robust only if every start fails); a sample stops moving once misclassified (the seed's "
        "`attack_pgd`); model in inference mode and float32. Curves: natural and "
        f"PGD-{p.curve_steps} accuracy on the first {p.curve_points or 'all'} test points after every epoch. "
        "Train time sums the epochs' wall time and excludes all evaluation; the first epoch includes compiling.")


def autoattack(results: pd.DataFrame, run: Run) -> str | None:
    """AutoAttack beside PGD on the same points, per configuration (seeds pooled), with the paired gap and
    what it says (robustness.gap_reading)."""
    if "aa_robust_accuracy" not in results or results["aa_robust_accuracy"].isna().all():
        return None
    p, rows, readings = run.profile, [], {}
    measured = results.dropna(subset=["aa_robust_accuracy"])
    for keys, group in measured.groupby([*paper.CONFIG_COLUMNS], dropna=False, sort=True):
        config = dict(zip(paper.CONFIG_COLUMNS, keys))
        name = f"{label(**config)}, {NETWORK[config['architecture']]}, {int(config['epochs'])} ep"
        pooled = {**{k: group[k].sum() for k in ("aa_only_pgd_robust", "aa_only_aa_robust", "aa_points")},
                  **{k: group[k].mean() for k in ("aa_clean_accuracy", "aa_pgd_accuracy", "aa_robust_accuracy")}}
        gap, se = robustness.paired_gap(pooled)
        reading = robustness.gap_reading(pooled)
        readings.setdefault(reading.split(":")[0], []).append(name)
        rows.append([f"{name} ({len(group)} seed{'s' * (len(group) > 1)})", f"{pooled['aa_clean_accuracy']:.3f}",
                     f"{pooled['aa_pgd_accuracy']:.3f}", f"{pooled['aa_robust_accuracy']:.3f}",
                     f"{gap:+.3f} ± {se:.3f}", reading])
    steps = max(p.eval_steps)
    table = markdown_table(["model", "clean", f"PGD-{steps}", "AutoAttack", f"PGD-{steps} − AutoAttack",
                            "PGD overstated robustness?"], rows)
    targets = f", {p.aa_targets} target classes" if any(a.endswith("-t") for a in p.aa_attacks) else ""
    summary = {"yes": "PGD overstated robustness clearly", "no": "No clear overstatement",
               "cannot say": "The comparison cannot say"}
    warnings = sorted({w for w in measured["aa_warnings"].dropna() if w})
    return "\n\n".join([
        f"The paper measures robustness with PGD only. Beyond it, tfadv runs an AutoAttack-style cascade "
        f"({', '.join(p.aa_attacks)}; {p.aa_steps} iterations, {p.aa_queries} queries{targets}: a reduced budget, "
        f"see the settings) on the first {int(measured['aa_points'].iloc[0])} test points of each model listed "
        f"(ε = {p.eps:g}), and the final PGD-{steps} on the same points. The gap is paired (the same points), its "
        "standard error from the points only one attack left robust; seeds are pooled.", table,
        " ".join(f"{text} for: {', '.join(readings[k])}." for k, text in summary.items() if k in readings),
        *(f"AutoAttack warned: {w}" for w in warnings)])


def masking(table: pd.DataFrame, run: Run) -> str | None:
    """Which gradient-masking checks each model raised, and what the raised ones mean."""
    if table is None or "check" not in table:
        return None
    rows, explained = [], {}
    for keys, group in table.groupby([*paper.CONFIG_COLUMNS, "repeat"], dropna=False, sort=True):
        config = dict(zip(paper.CONFIG_COLUMNS, keys))
        raised = group[group["raised"].astype(bool)]
        rows.append([f"{label(**config)}, {NETWORK[config['architecture']]}, {int(config['epochs'])} ep",
                     f"{len(raised)} of {len(group)}", "; ".join(f"{r['check']}: {r['measured']}"
                                                                for _, r in raised.iterrows()) or "–"])
        explained.update({r["check"]: f"{r['meaning']} {r['advice']}" for _, r in raised.iterrows()})
    text = [f"tfadv.evaluation.check_gradient_masking on {int(table['masking_points'].iloc[0])} test points of "
            f"each model listed (APGD-CE with {run.profile.masking_steps} steps as the reference attack).",
            markdown_table(["model", "checks raised", "what was measured"], rows)]
    return "\n\n".join(text + [f"- **{name}**: {why}" for name, why in sorted(explained.items())])


LOG_INTRO = (
    "Not the paper's claim: the paper gives Fast α = 10/255 after 90 epochs as 0.836 natural / 0.434 PGD-50 "
    "(Sec. 7.1) and mentions no collapse. The seed authors' own log of that run (reference code: neuralNetworkExam "
    "CIFAR10/output) collapses at epoch 85; the table's 0.434 is the log's epoch 84. Judged by the same rules as "
    "the paper's claims, and not counted with them.")


def reference_log(results: pd.DataFrame, curves: pd.DataFrame, run: Run, partial: list[str]) -> str:
    """The claims from the reference code's log (claims.reference_log_claims), judged and shown apart from the
    paper's; inconclusive on a partial run (`partial`: how it falls short, as the claims table says)."""
    judged = claims.reference_log_claims(results, curves, run.profile.eps)
    if partial:
        judged = [provisional(v, "partial run (see the warning above)") for v in judged]
    return LOG_INTRO + "\n\n" + verdict_table(judged, run.profile_name)


def verdict_table(judged: list[Verdict], profile: str) -> str:
    """Verdicts in the claims table's columns."""
    return markdown_table(["claim", "source", f"measured ({profile})", "verdict", "rule, or why inconclusive"],
                          [(v.claim.text, v.claim.paper, v.measured, f"**{v.outcome}** ({profile})", v.why)
                           for v in judged])


def partial_run(run: Run) -> list[str]:
    """How this report falls short of the profile's whole grid (tfadv.experiments.cli.partial_run)."""
    from tfadv.experiments import cli

    cells = cli.reported_grid(run)
    return cli.partial_run(run, cells, sum(run.finished(c) for c in cells))


#: Added to the search's definitions: a collapse needs robustness to lose (measures.collapse_status).
NEVER_ROBUST_NOTE = (
    "A collapse needs robustness to lose: either fall counts only after an epoch of the curve clearly (2 s.e.) "
    "above {level} (else unclear), and a run whose curve rose above {level} at no epoch is counted under 'did not "
    "train' whatever its natural accuracy (a budget it did not learn, not catastrophic overfitting).")


def with_never_robust_note(text: str) -> str:
    """The overfitting search's text with NEVER_ROBUST_NOTE after its first paragraph (its definitions)."""
    first, rest = text.split("\n\n", 1)
    return f"{first} {NEVER_ROBUST_NOTE.format(level=m.COLLAPSE_ACCURACY)}\n\n{rest}"


def free_m_reading(results: pd.DataFrame, eps: float) -> str | None:
    """Whether the most robust m of each convention (search.free_table's two groups) is clearly (2 s.e.) more
    robust than the runner-up, or within noise of it."""
    free = select(results, method="free", architecture="preact_resnet18", eps=float(eps))
    if free.empty:
        return None
    free = free.assign(replay_epochs=free["replays"] * free["epochs"])
    groups = (("at the seed's epochs", m.sweep(free, "free", "replays")),
              ("at equal cost", free[free["replay_epochs"] == free.groupby("replay_epochs")["replays"].nunique().idxmax()]))
    found = [f"{name}, {_best_m(group)}" for name, group in groups if group["replays"].nunique() > 1]
    if not found:
        return None
    seeds = int(free.groupby(["replays", "epochs"]).size().min())
    return (f"Judged ({m.Z:g} s.e. on the test points{', one seed per m' if seeds == 1 else ''}): "
            + "; ".join(found) + ".")


def _best_m(group: pd.DataFrame) -> str:
    """"m = 8 clearly above every other m (...)" or "m = 8 and m = 4 within noise (...): no most robust m"."""
    est = sorted(((k, m.estimate(g, "pgd20_accuracy")) for k, g in group.groupby("replays")),
                 key=lambda kv: kv[1].mean, reverse=True)
    (best, a), (second, b) = est[0], est[1]
    numbers = f"PGD-20 {a.mean:.3f} at m = {best:g} vs {b.mean:.3f} at m = {second:g}"
    close = [k for k, e in est[1:] if not m.clearly_above(a, e)]
    if not close:
        return f"m = {best:g} clearly above every other m ({numbers})"
    return (f"m = {best:g} and m = {', '.join(f'{k:g}' for k in close)} within noise ({numbers}): no most robust "
            "m there")


def search_sections(tables: dict[str, pd.DataFrame], run: Run) -> list[tuple[str, str]]:
    """search.sections, with the never-robust definition and the judged reading of Free's m added."""
    found = []
    for heading, text in search.sections(tables, run):
        if heading == OVERFITTING_HEADING:
            text = with_never_robust_note(text)
        if heading == FREE_M_HEADING:
            reading = free_m_reading(tables["results"], run.profile.eps)
            text += f"\n\n{reading}" if reading else ""
        found.append((heading, text))
    return found


def limit_note(run: Run) -> str | None:
    if run.limit is None:
        return None
    return (f"This run used --limit {run.limit}: images, training epochs, curve points and attack steps were "
            f"capped at {run.limit} (a column named PGD-50 holds PGD-{run.limit}). It checks that the {run.profile_name} profile's code path runs end to end; its numbers "
            "are not the profile's, and every verdict is inconclusive.")


def sections(tables: dict[str, pd.DataFrame], run: Run) -> list[tuple[str, str]]:
    found = [("Note", limit_note(run))] if run.limit is not None else []
    found += [("Measured vs paper", measured_vs_paper(tables["results"], run))]
    curves = tables.get("curves", pd.DataFrame(columns=["cell", "epoch"]))
    if "method" in tables["results"]:
        found += [("Beyond the paper: the seed authors' 90-epoch log",
                   reference_log(tables["results"], curves, run, partial_run(run)))]
    found += search_sections(tables, run)
    beyond = [("AutoAttack beside PGD (beyond the paper)", autoattack(tables["results"], run)),
              ("Gradient-masking checks (beyond the paper)", masking(tables.get("masking"), run))]
    return found + [(heading, text) for heading, text in beyond if text] + [("Protocol", protocol(run))]
