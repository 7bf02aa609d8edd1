"""User-facing errors: each has a one-line message and its own exit code."""

from __future__ import annotations


class NetmonError(Exception):
    """An error shown to the user as one line, exiting with `exit_code`."""

    exit_code = 1


class UsageError(NetmonError):
    """Invalid options (argparse also exits with 2)."""

    exit_code = 2


class PermissionDenied(NetmonError):
    """Not root, or missing CAP_BPF/CAP_PERFMON."""

    exit_code = 3


class BccMissing(NetmonError):
    """The bcc Python module cannot be imported."""

    exit_code = 4


class KernelHeadersMissing(NetmonError):
    """BCC cannot find headers for the running kernel."""

    exit_code = 5


class TracefsUnavailable(NetmonError):
    """tracefs is not mounted and cannot be mounted."""

    exit_code = 6


class ProbeError(NetmonError):
    """The BPF program failed to compile, load or attach."""

    exit_code = 7


class RecordingError(NetmonError):
    """A recording is missing, unreadable, truncated or corrupt."""

    exit_code = 8


class OutputError(NetmonError):
    """An output cannot be written: stdout, a --record file or a --log-file
    (a refused path, a full disk, an I/O error)."""

    exit_code = 9
