"""safefile: what netmon writes as root is created 0600, never through a
link, never a device or FIFO, never truncated or chmodded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from netmon import safefile
from netmon.safefile import AlreadyExists, SafeFileError, open_append, write_all


def append(path: Path, data: bytes, *, existing: bool) -> safefile.OpenedFile:
    opened = open_append(str(path), existing=existing)
    try:
        write_all(opened.fd, data)
    finally:
        os.close(opened.fd)
    return opened


@pytest.mark.parametrize("existing", [False, True])
def test_a_new_file_is_0600_from_creation_even_with_umask_0(tmp_path: Path, existing: bool) -> None:
    path = tmp_path / "out"
    old = os.umask(0)
    try:
        opened = append(path, b"one\n", existing=existing)
    finally:
        os.umask(old)
    assert opened.created and opened.size == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"one\n"


def test_an_existing_file_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"before\n")
    path.chmod(0o644)
    with pytest.raises(AlreadyExists):
        open_append(str(path), existing=False)
    assert path.read_bytes() == b"before\n"

    opened = append(path, b"after\n", existing=True)
    assert not opened.created and opened.size == len(b"before\n")
    assert path.read_bytes() == b"before\nafter\n"  # appended, not truncated
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not chmodded


@pytest.mark.parametrize("existing", [False, True])
def test_a_symlink_to_a_file_is_refused(tmp_path: Path, existing: bool) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"keep\n")
    target.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(SafeFileError, match="is a symbolic link"):
        open_append(str(link), existing=existing)
    assert target.read_bytes() == b"keep\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.parametrize("existing", [False, True])
def test_a_dangling_symlink_is_refused_and_its_target_not_created(
    tmp_path: Path, existing: bool
) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(SafeFileError, match="is a symbolic link"):
        open_append(str(link), existing=existing)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_a_symlink_to_dev_null_is_refused(tmp_path: Path, existing: bool) -> None:
    link = tmp_path / "link"
    link.symlink_to("/dev/null")
    before = os.stat("/dev/null").st_mode
    with pytest.raises(SafeFileError, match="is a symbolic link"):
        open_append(str(link), existing=existing)
    assert os.stat("/dev/null").st_mode == before


@pytest.mark.parametrize("existing", [False, True])
def test_a_device_is_refused_and_keeps_its_mode(existing: bool) -> None:
    before = os.stat("/dev/null")
    with pytest.raises(SafeFileError, match="is a character device, not a regular file"):
        open_append("/dev/null", existing=existing)
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)


@pytest.mark.parametrize("existing", [False, True])
def test_a_fifo_is_refused_without_waiting_for_a_reader(tmp_path: Path, existing: bool) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    with pytest.raises(SafeFileError, match="is a FIFO"):
        open_append(str(fifo), existing=existing)
    assert stat.S_IMODE(fifo.stat().st_mode) == 0o644


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SafeFileError, match="is a directory"):
        open_append(str(tmp_path), existing=True)


def test_a_file_with_another_hard_link_is_refused(tmp_path: Path) -> None:
    # With fs.protected_hardlinks=0 anyone can link a file they cannot write
    # (/etc/shadow) into /tmp; appending through the link would change it.
    target = tmp_path / "target"
    target.write_bytes(b"keep\n")
    os.link(target, tmp_path / "out")
    with pytest.raises(SafeFileError, match="2 hard links"):
        open_append(str(tmp_path / "out"), existing=True)
    assert target.read_bytes() == b"keep\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"theirs\n")
    os.chown(path, 65534, 65534)
    with pytest.raises(SafeFileError, match="owned by another user"):
        open_append(str(path), existing=True)
    assert path.read_bytes() == b"theirs\n"


def test_a_symlink_planted_after_the_check_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the path is a regular file when looked at, a symlink when
    opened. O_NOFOLLOW on the open refuses it."""
    target = tmp_path / "target"
    target.write_bytes(b"keep\n")
    path = tmp_path / "out"
    path.write_bytes(b"")
    real_lstat = os.lstat

    def lstat_then_swap(p: object) -> os.stat_result:
        result = real_lstat(p)  # type: ignore[arg-type]
        if Path(str(p)) == path:
            path.unlink()
            path.symlink_to(target)
        return result

    monkeypatch.setattr(safefile.os, "lstat", lstat_then_swap)
    with pytest.raises(SafeFileError, match="is a symbolic link"):
        open_append(str(path), existing=True)
    assert target.read_bytes() == b"keep\n"


def test_a_missing_directory_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(SafeFileError, match="cannot create: No such file or directory"):
        open_append(str(tmp_path / "no" / "out"), existing=True)
