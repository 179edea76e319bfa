"""Writes that never leave a half-finished file or folder behind.

Every file is first written under a temporary name in the same folder and then renamed over the
target, which is atomic on POSIX: a process killed at any moment leaves either the old version or the
new one, never a torn mix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import ActivityError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes owner-only files; keep the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write ``data`` as indented JSON with sorted keys (stable bytes for equal data)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces ``path`` as a whole.

    The old folder is moved aside before the new one is renamed in and deleted after, so at every
    instant either ``path`` or ``<path>.old`` holds a complete version (see :func:`complete_dir`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.with_name(path.name + ".old")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes owner-only folders
        if path.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def complete_dir(path: str | os.PathLike) -> Path | None:
    """The complete version of a folder written with :func:`atomic_dir`, or ``None``.

    Normally ``path`` itself; ``<path>.old`` when a process was killed between the two renames.
    """
    path = Path(path)
    if path.is_dir():
        return path
    old = path.with_name(path.name + ".old")
    return old if old.is_dir() else None


def find_files(paths: "list[str | os.PathLike]", suffixes: tuple[str, ...], flag: str) -> list[Path]:
    """Expand files and folders (searched recursively for ``suffixes``, sorted within each folder) into files.

    A named file is taken whatever its suffix; a path that is neither raises :class:`ActivityError`
    naming ``flag`` (``--audio``, ``--midi``).
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in suffixes))
        elif item.is_file():
            found.append(item)
        else:
            raise ActivityError(f"{flag} {item} is neither a file nor a folder")
    return found
