"""Where the demo looks for the phenomenon: the regimes the paper's mechanisms point to, and what they gave.

Each table is computed from this run's cells; the text says which range of each knob was tried.
"""
from __future__ import annotations

import pandas as pd

from tfadv.experiments.run import Run


def sections(table: pd.DataFrame, run: Run) -> list[tuple[str, str]]:
    return []
