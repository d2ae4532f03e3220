"""Construction-time checks of numeric and boolean arguments, shared by attacks and training models.

Python converts too eagerly for hyper-parameters: `float("0.1")` accepts a string from a config file,
`float(True)` is 1.0 and `bool("False")` is True. Each of those silently changes an experiment, so these
helpers accept only real numbers (Python or NumPy scalars, never bool) and real booleans, and every error
names the class and the argument.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def real(
    owner: str,
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    positive: bool = False,
) -> float:
    """`value` as a float, refusing strings, bools and anything that is not a real number.

    minimum: smallest allowed value (inclusive); positive: the value must be > 0.
    """
    requirement = "a finite number"
    if positive:
        requirement += " > 0"
    elif minimum is not None:
        requirement += f" >= {minimum:g}"
    if not _is_real(value):
        raise TypeError(f"{owner}: {name} must be {requirement}, got {type(value).__name__} {value!r}")
    number = float(value)
    bad_size = (positive and not number > 0) or (minimum is not None and number < minimum)
    if not np.isfinite(number) or bad_size:
        raise ValueError(f"{owner}: {name} must be {requirement}, got {value!r}")
    return number


def optional_real(owner: str, name: str, value: Any) -> float | None:
    """None, or a finite real number."""
    return None if value is None else real(owner, name, value)


def integer(owner: str, name: str, value: Any, *, minimum: int | None = None) -> int:
    """`value` as an int, refusing bools, strings and floats (even 3.0: a step count is not a float)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def flag(owner: str, name: str, value: Any) -> bool:
    """A real boolean: `bool("False")` is True, so strings and numbers are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _is_real(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return np.issubdtype(value.dtype, np.number) and not np.iscomplexobj(value)
    return isinstance(value, numbers.Real)
