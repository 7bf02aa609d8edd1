"""Open the files netmon writes (recordings, logs) safely as root.

netmon runs as root, often with paths under world-writable directories such
as /tmp. So a file it writes:

- is created with O_CREAT|O_EXCL and mode 0600, so it is private from the
  first byte and never reached through a symlink planted at that name;
- if it already exists, is used only when the caller allows it, and then only
  appended to (never truncated, its mode never changed), and only if it is a
  regular file owned by netmon's user with no other hard link;
- is never a symlink (O_NOFOLLOW on the last component), a device, a FIFO, a
  socket or a directory: /dev/null is refused rather than written to or
  chmodded.

The checks are made on the opened descriptor (fstat), so swapping the path
between a check and the open cannot get around them. An lstat() before
opening an existing path only keeps netmon from opening a device or FIFO at
all (opening one can have side effects, or block).

Directory components of the path are resolved as usual; only the last
component is protected from links.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

FILE_MODE = 0o600

# Flags for every open: no controlling terminal, not inherited by children,
# and never blocking on a FIFO (a FIFO is refused anyway).
_BASE_FLAGS = os.O_APPEND | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK

# os.open can lose a race with someone creating or deleting the path between
# the O_EXCL attempt and the open of the existing file; retry a few times.
_ATTEMPTS = 5


class SafeFileError(Exception):
    """A path netmon refuses to write, or cannot open; the message is one
    line, without the path (the caller prefixes it)."""


class AlreadyExists(SafeFileError):
    """The path exists and the caller did not ask to append to it."""


@dataclass(frozen=True)
class OpenedFile:
    fd: int  # opened for appending (O_APPEND), blocking, close-on-exec
    created: bool  # True if this open created the file
    size: int  # bytes in the file when it was opened


def _kind(mode: int) -> str:
    """'a symbolic link', 'a directory', ... for an lstat/fstat mode."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_kind(mode: int) -> SafeFileError:
    if stat.S_ISLNK(mode):
        return SafeFileError(
            "is a symbolic link; netmon does not write through links (give the real path)"
        )
    return SafeFileError(f"is {_kind(mode)}, not a regular file; netmon writes only regular files")


def _check_existing(st: os.stat_result) -> None:
    """Raise SafeFileError unless `st` is a file netmon may append to."""
    if not stat.S_ISREG(st.st_mode):
        raise _refuse_kind(st.st_mode)
    if st.st_uid != os.geteuid():
        raise SafeFileError(
            f"is owned by another user (uid {st.st_uid}); netmon appends only to its own files"
        )
    if st.st_nlink > 1:
        raise SafeFileError(
            f"has {st.st_nlink} hard links; netmon appends only to single-link files"
        )


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def open_append(path: str, *, existing: bool, readable: bool = False) -> OpenedFile:
    """Open `path` for appending, creating it 0600 if it does not exist.

    With existing=False an existing path raises AlreadyExists (and nothing is
    opened). With existing=True an existing regular file, owned by us, with a
    single link, is appended to as it is. `readable` also opens it for
    reading (to look at what is already there). Anything else raises
    SafeFileError."""
    access = os.O_RDWR if readable else os.O_WRONLY
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, access | _BASE_FLAGS | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SafeFileError(f"cannot create: {_strerror(exc)}") from None
        else:
            return _finish(fd, created=True)

        try:
            before = os.lstat(path)
        except FileNotFoundError:
            continue  # deleted meanwhile: try to create it again
        except OSError as exc:
            raise SafeFileError(f"cannot open: {_strerror(exc)}") from None
        if not stat.S_ISREG(before.st_mode):
            raise _refuse_kind(before.st_mode)  # without opening it
        if not existing:
            raise AlreadyExists("already exists")
        try:
            fd = os.open(path, access | _BASE_FLAGS)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # became a symlink since the lstat
                raise _refuse_kind(stat.S_IFLNK) from None
            if exc.errno == errno.ENXIO:  # became a FIFO without a reader
                raise _refuse_kind(stat.S_IFIFO) from None
            raise SafeFileError(f"cannot open: {_strerror(exc)}") from None
        return _finish(fd, created=False)
    raise SafeFileError("keeps appearing and disappearing; not writing to it")


def _finish(fd: int, *, created: bool) -> OpenedFile:
    """Check what was opened (the authoritative check) and make it blocking."""
    try:
        st = os.fstat(fd)
        if created:
            # O_EXCL made it, so it is ours; still, never trust more than we know.
            if not stat.S_ISREG(st.st_mode):
                raise _refuse_kind(st.st_mode)
        else:
            _check_existing(st)
        os.set_blocking(fd, True)
    except SafeFileError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise SafeFileError(f"cannot open: {_strerror(exc)}") from None
    return OpenedFile(fd=fd, created=created, size=st.st_size)


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data`; os.write may write less than asked (a full disk
    writes what fits, then fails on the rest). Raises OSError."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # not seen on regular files; never loop forever
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view = view[written:]


def ends_with_newline(fd: int, size: int) -> bool:
    """Whether the first `size` bytes of the file end with a newline (or are
    empty). Needs a readable fd."""
    if size == 0:
        return True
    return os.pread(fd, 1, size - 1) == b"\n"
