"""Which process is computing a cell right now, among every process that writes into one output folder.

Shards may share a folder, and nothing stops a second run of the same command on a folder another run is
still filling: without a lock both computed the same cells, in the same scratch folder (a training's
checkpoints written by two processes at once). A process holds an exclusive `flock` on a cell's lock
file while it computes that cell; another process leaves a locked cell to its holder and, when nothing
else is left to do, waits for it. The operating system releases the lock of a process that ends, however
it ends, so a killed run never leaves a cell locked. Locks reach every process of one machine, and of
several machines where the file system's locks do (NFSv4, Lustre, GPFS); elsewhere two machines may still
compute one cell twice, which costs time and changes no number.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


def lock_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.lock"


def acquire(folder: Path, name: str) -> IO | None:
    """The held lock of cell `name` in `folder` (give it back with `release`), or None if another process
    holds it. The lock file names the holder's process id, for a person looking at the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path(folder, name), "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def release(handle: IO, remove: bool = False) -> None:
    """Give the lock back; `remove` deletes its file first (once the cell is stored: a process that opened
    the file before then locks a deleted file, sees the cell finished and leaves it)."""
    if remove:
        Path(handle.name).unlink(missing_ok=True)
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def held_elsewhere(folder: Path, name: str) -> bool:
    """Is another process computing cell `name` now? Ask only while this process holds no lock on it."""
    path = lock_path(folder, name)
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def held_in(folder: Path) -> list[str]:
    """The cells of `folder` that other processes are computing now."""
    return sorted(p.stem for p in folder.glob("*.lock") if held_elsewhere(folder, p.stem))
