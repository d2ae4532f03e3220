"""What a paper's runner fills in: an `Experiment` (profiles, options, cells, claims, figures) and the
`Option`s of its command line, each with its role in a result's identity."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import pandas as pd

from tfadv.experiments.plan import Cost
from tfadv.experiments.report import Setting
from tfadv.experiments.verdicts import Verdict

if TYPE_CHECKING:
    from tfadv.experiments.run import Run

PROFILES = ("paper", "demo", "smoke")
#: identity: part of every cell's identity (the default); selection: picks cells of the grid (the cells
#: carry those coordinates); location: where inputs are read from (a path, not a setting).
ROLES = ("identity", "selection", "location")
Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Option:
    """A paper's own command-line option; `role` says whether it is part of a result's identity."""

    flag: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: Sequence[Any] | None = None
    role: str = "identity"
    action: str = "store"
    #: A profile field this option overrides: when the option is not given, its value is the profile's,
    #: so `--batching emulated` on a profile whose batching is "emulated" is the same configuration.
    profile_field: str | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"option {self.flag}: role must be one of {ROLES}, got {self.role!r}")

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _seed_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of seeds >= 1, got {text!r}")
    return int(text)


def seeds_option(per: str, profile_field: str | None = "seeds") -> Option:
    """`--seeds N`: training runs per `per` (seeds 0..N-1); when not given, the profile's `profile_field`, or
    None for a grid that lists its repeats itself."""
    return Option("--seeds", f"training runs per {per} (seeds 0..N-1; default: the profile's). Each seed's cells "
                             "are the same whatever N is, so raising it later adds runs to the same folder",
                  type=_seed_count, role="selection", profile_field=profile_field)


@dataclass(frozen=True)
class Experiment:
    """What a paper's runner fills in; everything else is shared."""

    key: str
    title: str
    profiles: Mapping[str, Any]
    grid: Callable[[Run], Sequence[dict]]
    run_cell: Callable[[dict, Run], Any]
    judge: Callable[[Tables, Run], list[Verdict]]
    figures: Callable[[Tables, Run], list[str]] = lambda tables, run: []
    sections: Callable[[Tables, Run], list[tuple[str, str]]] = lambda tables, run: []
    settings: Callable[[Run], list[Setting]] = lambda run: []
    options: Sequence[Option] = ()
    #: Bump when what a cell computes changes: stored cells of the old code then no longer count as done.
    version: int = 1
    #: Once per process before the first cell (e.g. train the model that every cell attacks).
    prepare: Callable[[Run], None] | None = None
    #: Cells whose results or artifacts a cell reads; it waits until they are finished.
    needs: Callable[[dict, Run], Sequence[dict]] | None = None
    #: Cells that need the whole machine (all devices): never run beside other --jobs processes.
    whole_machine: Callable[[dict, Run], bool] | None = None
    #: What one cell asks of a GPU (for --plan); None: the experiment cannot estimate its cost.
    cost: Callable[[dict, Run], Cost] | None = None
    description: str = ""
    #: The module `python -m` runs for this experiment (the --jobs children); default reproduce.<key>.
    module: str = ""

    def cell_code_modules(self) -> list[str]:
        """The modules of the functions that compute the cells and of the profiles' classes (whose properties
        the cells read): what they import is the cell code whose hash is part of every result's identity
        (identity.code_hashes)."""
        functions = (self.grid, self.run_cell, self.prepare, self.needs, self.whole_machine)
        return sorted({f.__module__ for f in functions if f is not None}
                      | {type(p).__module__ for p in self.profiles.values()})
