"""`--record FILE`: snapshots as JSON Lines, the same format as `--json`."""

from __future__ import annotations

import os
from typing import IO

from netmon.errors import RecordingError
from netmon.jsonl import dumps
from netmon.model import Snapshot


class Recorder:
    """Writes one snapshot per line and flushes it, so a recording cut short
    by a crash or a kill loses at most the line being written."""

    def __init__(self, path: str, stream: IO[str]) -> None:
        self.path = path
        self._stream: IO[str] | None = stream

    @classmethod
    def open(cls, path: str) -> Recorder:
        """Create or truncate `path` with mode 0600 (recordings show who
        talks to whom)."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RecordingError(f"{path}: cannot create recording: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o600)  # the file may have existed with wider permissions
            stream = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            os.close(fd)
            raise RecordingError(f"{path}: cannot create recording: {exc.strerror}") from None
        return cls(path, stream)

    def write(self, snapshot: Snapshot) -> None:
        if self._stream is None:
            raise RecordingError(f"{self.path}: recording already closed")
        try:
            self._stream.write(dumps(snapshot) + "\n")
            self._stream.flush()
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot write recording: {exc.strerror}") from None

    def close(self) -> None:
        """Safe to call twice."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except OSError as exc:
                raise RecordingError(
                    f"{self.path}: cannot write recording: {exc.strerror}"
                ) from None
