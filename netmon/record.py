"""`--record FILE`: snapshots as JSON Lines, the same format as `--json`.

The file is opened with netmon.safefile: created 0600, never through a
symlink, never a device or FIFO. An existing file is refused unless
`--append` asks to add a new session after what it holds.
"""

from __future__ import annotations

import os

from netmon.errors import OutputError
from netmon.jsonl import dumps
from netmon.model import Snapshot
from netmon.safefile import AlreadyExists, SafeFileError, ends_with_newline, open_append, write_all


class Recorder:
    """Writes one snapshot per line with a single write each, so a recording
    cut short by a crash, a kill or a full disk keeps every line before the
    last one whole (replay drops an incomplete last line with a warning)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def open(cls, path: str, *, append: bool = False) -> Recorder:
        """Create `path` (mode 0600), or with `append` add to it if it is
        already a recording of ours. Raises OutputError with one line."""
        try:
            opened = open_append(path, existing=append, readable=append)
        except AlreadyExists:
            raise OutputError(
                f"cannot record to {path}: already exists; pass --append to add to it, "
                "or choose another name"
            ) from None
        except SafeFileError as exc:
            raise OutputError(f"cannot record to {path}: {exc}") from None
        try:
            complete = ends_with_newline(opened.fd, opened.size)
        except OSError as exc:
            os.close(opened.fd)
            raise OutputError(f"cannot record to {path}: {exc.strerror}") from None
        if not complete:
            # Appending would glue the new session onto a half line.
            os.close(opened.fd)
            raise OutputError(
                f"cannot record to {path}: it ends with an incomplete line (a recording "
                "cut short); record to another file"
            )
        return cls(path, opened.fd)

    def write(self, snapshot: Snapshot) -> None:
        if self._fd is None:
            raise OutputError(f"{self.path}: recording already closed")
        try:
            write_all(self._fd, (dumps(snapshot) + "\n").encode("utf-8"))
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write recording: {exc.strerror}") from None

    def close(self) -> None:
        """Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot write recording: {exc.strerror}") from None
