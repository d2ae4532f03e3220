"""Every saved artifact appears whole or not at all: write to a temporary name, fsync, rename.

One helper for tables, cell files, figures, weights and checkpoints. A run killed at any moment leaves
each file either complete or absent, so "the file exists" is a safe marker of "done". Temporary names keep
the target's suffix (Keras insists on `.weights.h5` and `.keras`, matplotlib picks the format from it) and
carry the writer's host and pid, so a later run can tell a dead writer's leftover from a live one's.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

import pandas as pd

TMP_MARKER = ".tmp~"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally, make it `path` atomically.

        with atomic_path(out / "model.weights.h5") as tmp:
            model.save_weights(tmp)

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_MARKER}{socket.gethostname()}~{os.getpid()}~{path.name}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {path}")
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    return write_text(path, table.to_csv(index=False))


def save_weights(model, path: str | os.PathLike) -> Path:
    """model.save_weights, atomically (path must end in `.weights.h5`, as Keras requires)."""
    with atomic_path(path) as tmp:
        model.save_weights(tmp)
    return Path(path)


def save_model(model, path: str | os.PathLike) -> Path:
    """model.save (a `.keras` file), atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


def remove_dead_writers_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files left in `directory` by writers on this host that are no longer running.

    Files of live writers (another shard sharing the directory) and of other hosts are left alone; they
    are never read as results either way.
    """
    host, removed = socket.gethostname(), []
    for tmp in Path(directory).glob(f"{TMP_MARKER}*"):
        parts = tmp.name[len(TMP_MARKER):].split("~", 2)
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; not supported (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
