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


# Room for mkstemp's random part and ".tmp" within a file name of at most 255 bytes.
_TMP_PREFIX_CHARS = 128


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path in ``path``'s directory; on success move it over ``path``.

    On an exception the temporary file is removed and ``path`` keeps its old content. A symbolic
    link is followed (the file it points to is replaced, the link stays; a link to nothing is
    refused); a target that is not a regular file (a device, a FIFO) or that is read-only is
    refused, as writing it in place would be.

    Example::

        with atomic_path("model.h5") as tmp:
            write_everything_to(tmp)      # model.h5 appears only if this returns
    """
    target = os.path.realpath(os.fspath(path))
    exists = os.path.lexists(target)
    if os.path.islink(os.fspath(path)) and not exists:
        raise FileNotFoundError(f"cannot save {os.fspath(path)}: it is a symbolic link to {target}, which does not exist")
    if not overwrite and exists:
        raise FileExistsError(f"{os.fspath(path)} already exists and overwrite=False")
    directory, base = os.path.split(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save {os.fspath(path)}: directory {directory} does not exist")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot save {os.fspath(path)}: it is a directory")
    if exists and not os.path.isfile(target):
        raise OSError(f"cannot save {os.fspath(path)}: {target} exists and is not a regular file")
    if exists and not os.access(target, os.W_OK):
        raise PermissionError(f"cannot save {os.fspath(path)}: {target} is read-only")
    mode = os.stat(target).st_mode & 0o7777 if exists else _default_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{base[:_TMP_PREFIX_CHARS]}.", suffix=".tmp", dir=directory)
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
