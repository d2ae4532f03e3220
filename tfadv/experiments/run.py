"""One invocation of a paper runner: its profile, options, seed, output folder and per-process caches.

A paper's functions receive the `Run`: `run.profile` (the profile's frozen dataclass), `run.options`
(the paper's own options, by name), `run.seed`, `run.work_dir(cell)` for a cell's scratch files
(checkpoints of a training that may be killed), `run.artifact(name)` for files that outlive a cell
(a model other cells attack), and `run.cached(key, make)` for what one process builds once.
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import keras

from tfadv.experiments import identity
from tfadv.experiments.store import ARTIFACTS_DIR, WORK_DIR, CellStore

if TYPE_CHECKING:
    from tfadv.experiments.spec import Experiment


@dataclass
class Run:
    experiment: "Experiment"
    profile_name: str
    profile: Any
    options: dict[str, Any]
    seed: int
    out: Path
    configuration: dict[str, Any]
    store: CellStore | None
    merge_dirs: list[Path] = field(default_factory=list)
    #: --limit: cap on images, training steps and epochs (a wiring check), None for the profile's own sizes.
    limit: int | None = None
    #: --only filters ("coordinate=value[,value...]"): a selection of the grid, not part of any identity.
    only: tuple[str, ...] = ()
    data_dir: str | None = None
    show_progress: bool = True
    keep_work: bool = False
    cache: dict = field(default_factory=dict)
    _prepared: bool = False

    # ------------------------------------------------------------------------------------ cells
    def finished(self, cell: dict) -> bool:
        """Is the cell finished here or in a --merge folder (same configuration, so the same file name)?"""
        name = self.store.path(identity.cell_key(cell)).name
        return any((folder / self.store.cells_dir.name / name).is_file() for folder in self.folders)

    def needs(self, cell: dict) -> list[dict]:
        needs = self.experiment.needs
        return list(needs(cell, self)) if needs else []

    def cell_id(self, cell: dict) -> str:
        """The name of the cell's file, work folder and claim: unique per configuration and cell."""
        return identity.cell_id(self.store.fingerprint, identity.cell_key(cell))

    def whole_machine(self, cell: dict) -> bool:
        rule = self.experiment.whole_machine
        return bool(rule and rule(cell, self))

    def prepare(self) -> None:
        """The experiment's once-per-process preparation (e.g. training the model every cell attacks)."""
        if not self._prepared and self.experiment.prepare is not None:
            self.experiment.prepare(self)
        self._prepared = True

    def capped(self, value: int | None) -> int | None:
        """`value` (a count of images, steps or epochs; None = all) under --limit."""
        if self.limit is None:
            return value
        return self.limit if value is None else min(value, self.limit)

    # ------------------------------------------------------------------------------------ files
    @property
    def folders(self) -> list[Path]:
        return [self.out, *self.merge_dirs]

    @property
    def work_root(self) -> Path:
        """The scratch folders of the cells being computed (and their locks: tfadv.experiments.locks)."""
        return self.out / WORK_DIR

    def work_dir(self, cell: dict) -> Path:
        """Scratch folder of one cell (checkpoints, logs); removed once the cell is stored."""
        path = self.work_root / self.cell_id(cell)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def discard_work(self, cell: dict) -> None:
        if not self.keep_work:
            shutil.rmtree(self.work_root / self.cell_id(cell), ignore_errors=True)

    def artifact(self, name: str) -> Path:
        """Where to write an artifact that outlives its cell (write it with tfadv.experiments.atomic)."""
        path = self.out / ARTIFACTS_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def find_artifact(self, name: str) -> Path | None:
        """An artifact written by this run or found in a --merge folder (same configuration), else None."""
        for folder in self.folders:
            path = folder / ARTIFACTS_DIR / name
            if path.exists():
                return path
        return None

    # ------------------------------------------------------------------------------------ process
    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """make() once per process and key (datasets, models, compiled attacks)."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def progress_bar(self, total: int | None, unit: str = "step") -> keras.utils.Progbar:
        """Keras' progress bar for a loop inside a cell (silent with --no-progress)."""
        return keras.utils.Progbar(total, unit_name=unit, verbose=1 if self.show_progress else 0)

    def log(self, message: str) -> None:
        if self.show_progress:
            print(f"[{self.experiment.key}/{self.profile_name}] {message}", file=sys.stderr, flush=True)
