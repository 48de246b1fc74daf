"""Atomic file replacement: write a temporary file beside the target, then ``os.replace``.

A failure while writing (an exception, a full disk, a killed process) leaves any earlier file
at the target path untouched; readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


def _default_mode() -> int:
    """Permission bits a plain ``open(path, "w")`` would give a new file (0o666 minus umask)."""
    umask = 0o022
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path in ``path``'s directory; on success move it over ``path``.

    On an exception the temporary file is removed and ``path`` keeps its old content.

    Example::

        with atomic_path("model.h5") as tmp:
            write_everything_to(tmp)      # model.h5 appears only if this returns
    """
    target = os.path.abspath(os.fspath(path))
    if not overwrite and os.path.exists(target):
        raise FileExistsError(f"{os.fspath(path)} already exists and overwrite=False")
    directory, base = os.path.split(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save {os.fspath(path)}: directory {directory} does not exist")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot save {os.fspath(path)}: it is a directory")
    mode = os.stat(target).st_mode & 0o7777 if os.path.exists(target) else _default_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
