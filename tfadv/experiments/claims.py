"""The cells of one --jobs run, handed out one at a time to whichever process is free.

A fixed split (shard i takes every n-th cell) leaves a process idle while another still has a long cell
queued: on the efficient demo the training cells took 39 to 183 CPU-seconds. Instead, each process
of a --jobs run takes the next cell nobody has taken by creating its claim file (atomically: O_EXCL) in a
folder of that run, holding the cell's lock (tfadv.experiments.locks) from before it takes the cell until
the cell is stored: whether the taker is still computing it is the lock's to say, which a process that
dies gives up at once (a process id in the claim file could be reused). Taking a cell decides only who
computes it, never what is computed (a cell's numbers do not depend on the process: tested by running
the same grid under --jobs 1 and 2). The parent may write the order in which cells are handed out
(longest first: tfadv.experiments.plan).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from tfadv.experiments import atomic

#: How often a process with nothing to take looks again for a cell whose prerequisites another process
#: is computing.
POLL_SECONDS = 1.0
#: The order file in a claims folder (claims are named by 24-hex-digit cell ids, so it is never one).
ORDER_FILE = "order.json"


def write_order(folder: Path, names: Sequence[str]) -> None:
    """Hand the cells out in this order (cells not listed come after, in the grid's order)."""
    atomic.write_text(folder / ORDER_FILE, json.dumps(list(names)))


def ranks(folder: Path) -> dict[str, int]:
    """Each listed cell's place in the order the parent wrote; empty if it wrote none."""
    path = folder / ORDER_FILE
    return {name: i for i, name in enumerate(json.loads(path.read_text()))} if path.is_file() else {}


def take(folder: Path, name: str) -> bool:
    """Take the cell `name` for this process; False if another process (alive or dead) took it first. The
    file names the taker's process id, for a person looking at the folder."""
    try:
        handle = os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w") as f:
        f.write(str(os.getpid()))
    return True


def taken(folder: Path, name: str) -> bool:
    return (folder / name).exists()
