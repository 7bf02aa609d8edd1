"""The constants read from bpf/netmon.h, and the socket-table rules."""

from __future__ import annotations

from pathlib import Path

from netmon.abi import load_abi, parse_header
from netmon.sources.socket_tables import ephemeral_range, listening_ports


def test_header_names_and_limits() -> None:
    abi = parse_header(
        "#ifndef NETMON_MAX_FLOWS\n#define NETMON_MAX_FLOWS 10240\n#endif\n"
        "#define NETMON_PROTO_TCP 1   /* name: TCP */\n"
        "#define NETMON_PROTO_ICMPV6 4 /* name: ICMPv6 */\n"
        "#define NETMON_ROLE_SERVER 2 /* name: server */\n"
    )
    assert abi.values["MAX_FLOWS"] == 10240
    assert abi.names["PROTO"] == {1: "TCP", 4: "ICMPv6"}
    assert abi.name("ROLE", 2) == "server"
    assert abi.name("PROTO", 99) == "proto-99"


def test_shipped_header_names_every_protocol_in_the_contract() -> None:
    abi = load_abi()
    assert set(abi.names["PROTO"].values()) == {"TCP", "UDP", "ICMP", "ICMPv6", "RAW", "PACKET"}
    assert set(abi.names["FAMILY"].values()) == {"IPv4", "IPv6", "PACKET"}
    assert set(abi.names["ROLE"].values()) == {"client", "server", "unknown"}


def _proc(tmp_path: Path, tcp: str, tcp6: str = "", port_range: str | None = "1024 4999\n") -> Path:
    (tmp_path / "net").mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue\n"
    (tmp_path / "net" / "tcp").write_text(header + tcp)
    (tmp_path / "net" / "tcp6").write_text(header + tcp6)
    if port_range is not None:
        (tmp_path / "sys/net/ipv4").mkdir(parents=True)
        (tmp_path / "sys/net/ipv4/ip_local_port_range").write_text(port_range)
    return tmp_path


def test_listening_ports_count_listeners_and_ignore_other_states(tmp_path: Path) -> None:
    proc = _proc(
        tmp_path,
        "   0: 0100007F:1F90 00000000:0000 0A 0:0\n"  # 8080 LISTEN
        "   1: 0100007F:1F90 0100007F:D431 01 0:0\n"  # 8080 ESTABLISHED
        "   2: 00000000:0016 00000000:0000 0A 0:0\n",  # 22 LISTEN
        "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A\n",
    )
    assert listening_ports(proc) == {8080: 2, 22: 1}
    assert ephemeral_range(proc) == (1024, 4999)


def test_ephemeral_range_defaults_when_unreadable(tmp_path: Path) -> None:
    assert ephemeral_range(_proc(tmp_path, "", port_range=None)) == (32768, 60999)
