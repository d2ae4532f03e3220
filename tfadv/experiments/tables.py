"""Reading the merged tables in claims and figures: one row filter, one number format."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd


def select(table: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Rows whose columns equal the given values (floats compared with np.isclose; a missing column or a
    NaN never matches). A list or tuple value matches any of its entries."""
    mask = pd.Series(True, index=table.index)
    for column, wanted in where.items():
        if column not in table:
            return table.iloc[0:0]
        values = table[column]
        options = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
        hit = pd.Series(False, index=table.index)
        for option in options:
            if isinstance(option, float) and pd.api.types.is_numeric_dtype(values):
                hit |= pd.Series(np.isclose(values.astype(float), option), index=table.index)
            else:
                hit |= values == option
        mask &= hit
    return table[mask]


def pct(value: float | None, digits: int = 1) -> str:
    """0.4567 -> "45.7%"; None or NaN -> "n/a"."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def arrow(values: Iterable[float], fmt: str = "{:.2f}") -> str:
    """A sequence as "0.98 → 0.92 → 0.90" (e.g. from the smallest to the largest batch)."""
    return " → ".join(fmt.format(v) for v in values)
