"""One figure style for every paper, and saving that is atomic and works headless (Agg backend)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # keep a notebook's inline backend; runners draw on headless servers
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from tfadv.experiments import atomic  # noqa: E402

DPI = 120
_styled = False


def set_style() -> None:
    """Apply tfadv's seaborn style once per process (later calls do nothing)."""
    global _styled
    if not _styled:
        sns.set_theme(context="paper", style="whitegrid", palette="colorblind")
        _styled = True


def save_figure(fig, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Save `fig` (a matplotlib Figure or a seaborn FacetGrid) atomically with a tight box, then close it."""
    fig = getattr(fig, "figure", fig)  # seaborn grids hold their matplotlib figure in `.figure`
    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)
