"""Construction-time checks of numeric and boolean arguments, shared by attacks and training models.

Python converts too eagerly for hyper-parameters: `float("0.1")` accepts a string from a config file,
`float(True)` is 1.0 and `bool("False")` is True. Each of those silently changes an experiment, so these
helpers accept only real numbers (Python or NumPy scalars, never bool) and real booleans, and every error
names the class and the argument. Also here: tfadv's warning categories (TfadvWarning and its kinds), the
warning for an eps far below the inputs' scale, and `warn_caller`, which points a warning at the user's line.
"""
from __future__ import annotations

import numbers
import os
import sys
import warnings
from typing import Any, Sequence

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


class TfadvWarning(UserWarning):
    """A number tfadv computed may not mean what it seems. Experiment runners record these with each cell
    and list them in report.md (tfadv.experiments.grid); filter by category to silence one kind."""


class EpsScaleWarning(TfadvWarning):
    """eps does not fit the scale of the inputs (see SMALL_EPS_FRACTION)."""


class EvaluationWarning(TfadvWarning):
    """A robust accuracy rests on something a reader must know: samples a gradient attack never moved, a
    cascade off the reference protocol, a black-box attack beating the white-box ones."""


#: An eps smaller than this fraction of the input range (per coordinate: eps for L-inf, eps / sqrt(d) for
#: L2) is below the perturbations the literature studies: the smallest usual ones are half an 8-bit level,
#: 0.5/255 = 2.0e-3 of the range (L-inf), and ImageNet's L2 eps 0.25 on [0, 1], 6.4e-4 per coordinate. The usual
#: cause is an eps in [0, 1] units on data in [0, 255], which makes any model look robust; the thresholds sit
#: above MNIST's eps read that way, the mistake closest to the literature: L-inf 0.3/255 = 1.2e-3, L2 2.0 on
#: 784 pixels 2.8e-4.
SMALL_EPS_FRACTION = {"inf": 1.5e-3, "2": 3e-4}


def small_eps_warning(owner: str, eps: float, norm: str, span: float, dims: int, source: str) -> str | None:
    """A warning (or None) when eps is implausibly small for inputs spanning `span` with `dims` coordinates.

    `norm` is canonical ("inf" or "2"); `source` says where the span came from (the clip range or the data).
    """
    if eps <= 0 or span <= 0:
        return None
    per_coordinate = eps if norm == "inf" else eps / float(np.sqrt(dims))
    fraction = per_coordinate / span
    if fraction >= SMALL_EPS_FRACTION[norm]:
        return None
    what = "eps" if norm == "inf" else "eps / sqrt(d)"
    return (f"{owner}: eps={eps:g} ({norm} norm) is tiny for inputs spanning {span:g} ({source}): {what} is "
            f"{fraction:.2g} of the range, below {SMALL_EPS_FRACTION[norm]:g}, so robustness measured at it means "
            f"little. If eps is in [0, 1] units and the data are in [0, 255], scale one to match the other")


def warn_if_eps_tiny(owner: str, eps: float, norm: str, sample_shape: Sequence[int | None],
                     clip_min: float | None, clip_max: float | None, data_span: float | None = None) -> None:
    """An EpsScaleWarning at the caller's line when eps is tiny (small_eps_warning) against the clip range,
    or, with an open range, against `data_span` (the data's max - min; None: nothing to judge)."""
    if clip_min is not None and clip_max is not None:
        span, source = clip_max - clip_min, f"clip range [{clip_min:g}, {clip_max:g}]"
    elif data_span is not None:
        span, source = data_span, "the data's range; no clip_min/clip_max given"
    else:
        return
    if norm == "2" and any(d is None for d in sample_shape):
        return  # eps / sqrt(d) needs d
    dims = int(np.prod([d for d in sample_shape if d is not None]))
    message = small_eps_warning(owner, eps, norm, span, dims, source)
    if message:
        warn_caller(message, EpsScaleWarning)


def warn_if_short_reach(owner: str, eps: float, steps: int, step_size: float) -> None:
    """An EvaluationWarning at the caller's line when `steps` steps of `step_size` cannot reach the eps ball's
    boundary (each step moves at most step_size in the attack's norm): such an attack measures robustness in a
    smaller ball than eps says, which overstates it."""
    reach = steps * step_size
    if steps > 0 and reach < eps * (1 - 1e-6):
        warn_caller(
            f"{owner}: {steps} steps of {step_size:g} move at most {reach:g} from the start, less than eps={eps:g}, "
            f"so the attack searches a smaller ball than eps names, and robustness measured (or trained) against it "
            f"is overstated. Raise steps or step_size (Madry et al.'s rule: step_size = 2.5 * eps / steps)",
            EvaluationWarning)


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """warnings.warn attributed to the first frame outside tfadv, however deep inside tfadv it was raised
    (what Python 3.12's skip_file_prefixes does)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
