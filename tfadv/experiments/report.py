"""report.md: the paper's claims beside the numbers measured in this run, and where every setting came from.

Layout: a header naming the profile and the configuration, warnings about what the numbers rest on
(cells computed with different threads, kernels or data, weights that are not the official files), the
verdicts table (claim | paper | measured | verdict | why), the paper's own sections (tables, figures), the
settings table (setting | value | source), and the machine the run used.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tfadv.experiments.verdicts import Verdict

#: Where a setting comes from; a runner names the reference code after the colon ("reference code: mnist_challenge").
SOURCES = ("paper", "reference code", "tfadv")


@dataclass(frozen=True)
class Setting:
    """One setting of a profile and its source: the paper, the reference code it built on, or tfadv's choice."""

    name: str
    value: Any
    source: str

    def __post_init__(self):
        if self.source.split(":")[0].strip() not in SOURCES:
            raise ValueError(f"a setting's source starts with one of {SOURCES}, got {self.source!r}")


def _cell(value: Any, float_format: str = "{:.4g}") -> str:
    # A table cell must stay on one line and must not open a new column.
    text = float_format.format(value) if isinstance(value, (float, np.floating)) else str(value)
    return text.replace("|", "\\|").replace("\n", "<br>")


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], float_format: str = "{:.4g}") -> str:
    """A GitHub Markdown table; floats are written with `float_format`, everything else with str().

    For a DataFrame: markdown_table(df.columns, df.itertuples(index=False)).
    """
    columns = [str(c) for c in columns]
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        row = list(row)
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns: {row!r}")
        lines.append("| " + " | ".join(_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines)


def render(*, title: str, key: str, profile: str, fingerprint: str, verdicts: Iterable[Verdict],
           sections: Iterable[tuple[str, str]] = (), settings: Iterable[Setting] = (),
           run_facts: Mapping[str, Any] | None = None, warnings: Sequence[str] = ()) -> str:
    """The Markdown text of report.md; each of `warnings` (what the numbers rest on that a reader must know
    before reading them) is shown under the header."""
    verdicts = list(verdicts)
    for v in verdicts:
        if not isinstance(v, Verdict):
            raise TypeError(f"claims must be judged into Verdict instances, got {type(v).__name__}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "",
             f"Reproduction `{key}`, profile **{profile}**, configuration `{fingerprint}` (see config.json), "
             f"written {stamp}. Every measured number below was computed by this configuration's cells.", ""]
    lines += [line for warning in warnings for line in (f"> **Warning.** {warning}", "")]
    if profile != "paper":
        lines += [f"> Profile `{profile}` runs the paper's protocol, as implemented in tfadv, on smaller data and "
                  "models than the paper, so a verdict here says whether the phenomenon shows at that scale, not "
                  "whether the paper's numbers are matched.", ""]
    counts = {o: sum(v.outcome == o for v in verdicts) for o in dict.fromkeys(v.outcome for v in verdicts)}
    summary = ", ".join(f"{n} {o}" for o, n in counts.items()) or "no claims judged"
    rows = [(v.claim.text, v.claim.paper, v.measured, f"**{v.outcome}** ({profile})", v.why) for v in verdicts]
    lines += ["## Claims", "", f"{len(verdicts)} claims: {summary}.", "",
              markdown_table(["claim", "paper", f"measured ({profile})", "verdict", "rule, or why inconclusive"],
                             rows or [("(no claims judged)", "", "", "", "")]), ""]
    for heading, text in sections:
        lines += [f"## {heading}", "", str(text).rstrip(), ""]
    settings = list(settings)
    if settings:
        lines += ["## Settings and their sources", "",
                  "Each setting of this profile, and where it comes from: the paper, the reference code the "
                  "paper built on, or tfadv's choice where both are silent (or where the profile is scaled down).",
                  "", markdown_table(["setting", "value", "source"],
                                     [(s.name, s.value, s.source) for s in settings], float_format="{}"), ""]
    if run_facts:
        lines += ["## This run", "", markdown_table(["", ""], run_facts.items(), float_format="{:.4g}"), ""]
    return "\n".join(lines)
