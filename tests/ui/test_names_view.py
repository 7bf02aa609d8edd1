"""The REMOTE column with host names, and the `n` key."""

from __future__ import annotations

from dataclasses import replace

from netmon.view import HELP_TEXT, UIState, View, ViewSettings, apply_key

from .builders import flow, snapshot

SETTINGS = ViewSettings(interval_s=1.0, alpha=0.4, threshold_bps=1e12)


def view_of(names: dict[str, str]) -> View:
    snap = snapshot([
        flow(1, "curl", rate=30.0, remote_ip="192.0.2.1"),
        flow(2, "wget", rate=20.0, remote_ip="2001:db8::7"),
        flow(3, "ping", rate=10.0, remote_ip=None, protocol="ICMP", port=0, role="unknown"),
    ])  # fmt: skip
    view = View(SETTINGS)
    view.set_snapshot(replace(snap, flows=snap.table.with_names(names)))
    return view


def body(view: View, state: UIState, width: int = 120) -> list[str]:
    frame = view.frame(state, width, 10)
    return ["".join(s.text for s in line) for line in frame.lines[3:6]]


def test_names_where_known_and_the_n_key_switches_to_addresses() -> None:
    view = view_of({"192.0.2.1": "www.example.org", "2001:db8::7": "evil\x1b[2Jname"})
    state = UIState()
    rows = body(view, state)
    assert "www.example.org" in rows[0] and "192.0.2.1" not in rows[0]
    assert "evil^[[2Jname" in rows[1] and "\x1b" not in rows[1]  # a PTR record is untrusted text
    assert " - " in rows[2]
    state = apply_key(state, "n", 3, 5)
    assert state.numeric
    rows = body(view, state)
    assert "192.0.2.1" in rows[0] and "www.example.org" not in rows[0]
    assert "2001:db8::7" in rows[1]
    state = apply_key(state, "n", 3, 5)
    assert "www.example.org" in body(view, state)[0]


def test_without_names_the_addresses_show() -> None:
    rows = body(view_of({}), UIState())
    assert "192.0.2.1" in rows[0] and "2001:db8::7" in rows[1]


def test_a_long_name_is_cut_to_the_column() -> None:
    long_name = "a-very-long-host-name-of-a-content-delivery-node.example.org"
    view = view_of({"192.0.2.1": long_name})
    rows = body(view, UIState(), width=100)
    assert long_name[:20] in rows[0] and long_name not in rows[0]
    assert len(rows[0]) <= 100


def test_the_filter_matches_names() -> None:
    view = view_of({"192.0.2.1": "www.example.org"})
    state = UIState(filter_text="example.org")
    assert [f.key.pid for f in view.rows(state)] == [1]


def test_help_lists_the_key() -> None:
    assert any(line.split()[:1] == ["n"] for line in HELP_TEXT)
