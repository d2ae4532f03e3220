"""A result's identity is everything that made it.

A run's *configuration* holds what can change any of its numbers: the experiment and its version, the
profile and every field of it (dataset and size, models, steps, eps, ...), every option that is not a
mere grid selection or a file location, the seed, the tfadv version, and a hash per file of the code that
computes the cells (tfadv's engine and the paper's modules that its cell code imports; the report's modules
left out). Its *fingerprint* is a hash of that configuration; a cell's file name hashes the fingerprint with
the cell's coordinates, so two configurations can never share a cell, and a file renamed or copied under
another cell's name is caught when it is read (tfadv.experiments.store).
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


#: tfadv's packages that compute no cell: the runner layer itself and the benchmarks.
NON_NUMERIC_PACKAGES = ("experiments", "benchmarks")


def code_hashes(module: str, cell_modules: Iterable[str]) -> dict[str, str]:
    """{file: hash of its text} of the source that computes a cell's numbers: tfadv's engine (everything but
    the runner layer and the benchmarks) and, of an experiment package, its __init__ and the modules its cell
    code imports, directly or through one another (`cell_modules`; see cell_code_files); a single-module
    experiment whole. A stored result whose code differs is stale (a bug fixed in the engine changes the
    numbers), and the refusal names the files. The package's other modules (claims, figures, report sections
    and their readings, --plan's cost model) shape no cell: editing them keeps the results."""
    import tfadv

    engine = Path(tfadv.__file__).parent
    files = {f.relative_to(engine.parent).as_posix(): f for f in engine.rglob("*.py")
             if f.relative_to(engine).parts[0] not in NON_NUMERIC_PACKAGES}
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"cannot find the source of experiment module {module!r}")
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        files.update({f.relative_to(origin.parent.parent).as_posix(): f
                      for f in cell_code_files(module, origin.parent, cell_modules)})
    else:
        files[origin.name] = origin
    return {name: hashlib.sha256(path.read_bytes()).hexdigest()[:12] for name, path in sorted(files.items())
            if "__pycache__" not in path.parts}


def cell_code_files(package: str, folder: Path, cell_modules: Iterable[str]) -> list[Path]:
    """The package's __init__.py and every module of it that `cell_modules` import, themselves included,
    found by reading their import statements (any form, inside functions too). Cell code written in the
    __init__ itself, whose imports reach the report's modules too, cannot be told apart: the whole package."""
    cell_modules = list(cell_modules)
    if package in cell_modules:
        return list(folder.glob("*.py"))
    todo = [m.removeprefix(package + ".") for m in cell_modules if m.startswith(package + ".")]
    if not todo:
        raise ValueError(f"no cell code of {package!r} among the modules {sorted(cell_modules)}")
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += _package_imports(package, folder / f"{name}.py")
    return [folder / "__init__.py", *(folder / f"{name}.py" for name in sorted(reached))]


def _package_imports(package: str, path: Path) -> set[str]:
    """The modules of a flat `package` that the file at `path` imports."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                module = package + ("." + module if module else "")
            if module == package:
                found |= {alias.name for alias in node.names}
            elif module.startswith(package + "."):
                found.add(module.removeprefix(package + ".").split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix(package + ".").split(".")[0] for a in node.names
                      if a.name.startswith(package + ".")}
    return {name for name in found if (path.parent / f"{name}.py").is_file()}


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
