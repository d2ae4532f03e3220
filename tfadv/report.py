"""report.md for a paper runner: the paper's claims beside the numbers measured in this run.

Layout: a claims table (claim | paper | measured (profile) | verdict | note), then free Markdown sections,
then the settings tfadv had to choose where the paper is silent, labelled as such.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tfadv.results import atomic_write_text

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not measured")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: what it says, the paper's number, the number measured here, and the verdict."""

    claim: str
    paper: str
    measured: str
    verdict: str
    note: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def verdict(holds: bool | None, partly: bool = False) -> str:
    """Verdict of a claim from the measured condition: None (not measured), True, False, or partly."""
    if holds is None:
        return "not measured"
    if partly and not holds:
        return "partly reproduced"
    return "reproduced" if holds else "not reproduced"


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


def render_report(title: str, key: str, profile: str, claims: Iterable[Claim],
                  sections: Iterable[tuple[str, str]] = (), settings: Mapping[str, object] | None = None) -> str:
    """The Markdown text that `write_report` writes."""
    claims = list(claims)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "",
             f"Reproduction `{key}`, profile **{profile}**, written {stamp} by "
             f"`python -m reproduce.{key} --profile {profile}`. Every measured number below was computed "
             "in this run.", ""]
    if profile != "paper":
        lines += [f"> Profile `{profile}` runs the paper's code on smaller data and models than the paper, so a "
                  "verdict here says whether the phenomenon shows at that scale, not whether the paper's "
                  "numbers are matched.", ""]
    for c in claims:
        if not isinstance(c, Claim):
            raise TypeError(f"claims must be Claim instances, got {type(c).__name__}")
    rows = [(c.claim, c.paper, c.measured, f"**{c.verdict}** ({profile})", c.note) for c in claims]
    lines += ["## Claims", "",
              markdown_table(["claim", "paper", f"measured ({profile})", "verdict", "note"],
                             rows or [("(no claims evaluated)", "", "", "", "")]), ""]
    for heading, text in sections:
        lines += [f"## {heading}", "", str(text).rstrip(), ""]
    if settings:
        lines += ["## Settings tfadv chose", "",
                  "Where the paper does not say, tfadv picked these values:", "",
                  markdown_table(["setting", "value"], settings.items(), float_format="{}"), ""]
    return "\n".join(lines)


def write_report(path: str | os.PathLike, title: str, key: str, profile: str, claims: Iterable[Claim],
                 sections: Iterable[tuple[str, str]] = (), settings: Mapping[str, object] | None = None) -> Path:
    """Write report.md atomically; `sections` are (heading, Markdown text) pairs; returns the path."""
    path = Path(path)
    atomic_write_text(path, render_report(title, key, profile, claims, sections, settings))
    return path
