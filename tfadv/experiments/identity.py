"""A result's identity is everything that made it.

A run's *configuration* holds what can change any of its numbers: the experiment and its version, the
profile and every field of it (dataset and size, models, steps, eps, ...), every option that is not a
mere grid selection or a file location, the seed, the tfadv version, and a hash of the code that computes
the cells (tfadv's engine and the paper's own cell code; report-only files excluded). Its *fingerprint* is a hash of
that configuration; a cell's file name hashes the fingerprint with the cell's coordinates, so two
configurations can never share a cell, and a file renamed or copied under another cell's name is caught
when it is read (tfadv.experiments.store).
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

Scalar = str | int | float | bool | None


def canonical(value: Any) -> Any:
    """A JSON-able form of `value` that is equal exactly when the values are: dataclasses become dicts,
    tuples lists, numpy scalars Python scalars; keys are strings, floats are written exactly."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no inf/nan
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a configuration value must be a scalar, a list, a dict or a dataclass, got "
                    f"{type(value).__name__}: {value!r}")


def dumps(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, ensure_ascii=False, indent=1)


def fingerprint(configuration: Mapping[str, Any]) -> str:
    """Short stable hash of a configuration."""
    text = json.dumps(canonical(configuration), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def differences(stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Readable list of what differs between two configurations: "seed: 0 there, 7 here"."""
    stored, current = canonical(stored), canonical(current)
    found = []
    for name in sorted(set(stored) | set(current)):
        path = f"{prefix}{name}"
        if name not in stored:
            found.append(f"{path}: absent there, {current[name]!r} here")
        elif name not in current:
            found.append(f"{path}: {stored[name]!r} there, absent here")
        elif isinstance(stored[name], dict) and isinstance(current[name], dict):
            found += differences(stored[name], current[name], prefix=f"{path}.")
        elif stored[name] != current[name]:
            found.append(f"{path}: {stored[name]!r} there, {current[name]!r} here")
    return found


#: Files that shape the report, not the cells' numbers: editing them never makes stored cells stale.
REPORT_ONLY_FILES = ("claims.py", "figures.py", "sections.py", "__main__.py")
#: tfadv's packages that compute no cell: the runner layer itself and the benchmarks.
NON_NUMERIC_PACKAGES = ("experiments", "benchmarks")


def code_fingerprint(module: str) -> str:
    """Hash of the source that computes a cell's numbers: tfadv's engine (everything but the runner layer
    and the benchmarks) and the experiment's own package or module, but for its report-only files. A
    stored result whose code differs is stale: a bug fixed in the engine changes the numbers."""
    import tfadv

    engine = Path(tfadv.__file__).parent
    files = [f for f in engine.rglob("*.py") if f.relative_to(engine).parts[0] not in NON_NUMERIC_PACKAGES]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"cannot find the source of experiment module {module!r}")
    origin = Path(spec.origin)
    own = origin.parent.rglob("*.py") if origin.name == "__init__.py" else [origin]
    files += [f for f in own if f.name not in REPORT_ONLY_FILES]
    return _hash_files(files)


def _hash_files(files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(files), key=lambda f: (f.parent.name, f.name, str(f))):
        if "__pycache__" in path.parts:
            continue
        digest.update(f"{path.parent.name}/{path.name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cell_key(cell: Mapping[str, Scalar]) -> str:
    """A stable, readable key for a cell's coordinates, independent of dict order: "batch=8,model=resnet50"."""
    if not isinstance(cell, Mapping) or not cell:
        raise ValueError(f"a cell must be a non-empty dict of parameter name -> scalar, got {cell!r}")
    parts = []
    for name in sorted(cell):
        value = cell[name]
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(name, str) or not name or any(c in name for c in ",="):
            raise ValueError(f"cell parameter names must be non-empty strings without ',' or '=': {name!r}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"cell parameter {name!r} must be a scalar (str, int, float, bool, None), "
                            f"got {type(value).__name__}")
        if isinstance(value, str) and any(c in value for c in ",="):
            raise ValueError(f"cell parameter {name!r}={value!r}: values must not contain ',' or '='")
        parts.append(f"{name}={value}")
    return ",".join(parts)


def cell_id(config_fingerprint: str, key: str) -> str:
    """The name of a cell's file and work folder: a hash of the configuration and the cell's key."""
    return hashlib.sha256(f"{config_fingerprint}\n{key}".encode("utf-8")).hexdigest()[:24]
