"""Reading credentials back and naming the user (the drop itself is tested
as root in tests/kernel/test_service.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netmon.errors import UsageError
from netmon.privileges import caps_mask, describe_caps, lookup_user, read_credentials

STATUS = """Name:\tnetmon
Umask:\t0022
State:\tS (sleeping)
Uid:\t65534\t65534\t65534\t65534
Gid:\t65534\t65534\t65534\t65534
Groups:\t
CapInh:\t0000000000000000
CapPrm:\t0000004000000000
CapEff:\t0000004000000000
CapBnd:\t0000004000000000
CapAmb:\t0000000000000000
NoNewPrivs:\t1
"""


def test_read_credentials(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text(STATUS)
    creds = read_credentials(status)
    assert creds.uids == (65534,) * 4 and creds.gids == (65534,) * 4
    assert creds.groups == ()
    assert creds.cap_eff == creds.cap_prm == creds.cap_bnd == caps_mask([38])
    assert creds.cap_amb == 0 and creds.no_new_privs


def test_describe_caps() -> None:
    assert describe_caps(0) == "no capabilities"
    assert describe_caps(caps_mask([39, 38])) == "CAP_PERFMON, CAP_BPF"


def test_lookup_user() -> None:
    nobody = lookup_user("nobody")
    assert (nobody.name, nobody.uid) == ("nobody", 65534)
    assert lookup_user("0").name == "root"
    with pytest.raises(UsageError, match="no such user 'no-such-user-here'"):
        lookup_user("no-such-user-here")
    with pytest.raises(UsageError):
        lookup_user("99999999999999999999")
