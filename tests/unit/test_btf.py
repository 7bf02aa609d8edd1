"""The BTF reader, on small blobs built here with the documented layout."""

from __future__ import annotations

import struct

import pytest

from netmon.sources.btf import Btf, BtfError
from netmon.sources.live import SOCK_RAW_TP_ARGS, sock_raw_tracepoints

KIND_INT, KIND_PTR, KIND_STRUCT, KIND_UNION, KIND_TYPEDEF = 1, 2, 4, 5, 8
KIND_CONST, KIND_FUNC_PROTO = 10, 13


class BlobBuilder:
    def __init__(self) -> None:
        self.strings = b"\0"
        self.types = b""
        self.next_id = 1

    def name(self, text: str) -> int:
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def _add(self, name: str, kind: int, vlen: int, size: int, extra: bytes, flag: int = 0) -> int:
        info = (flag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.name(name) if name else 0, info, size) + extra
        self.next_id += 1
        return self.next_id - 1

    def int_type(self, name: str, size: int) -> int:
        return self._add(name, KIND_INT, 0, size, struct.pack("<I", size * 8))

    def typedef(self, name: str, target: int) -> int:
        return self._add(name, KIND_TYPEDEF, 0, target, b"")

    def pointer(self, target: int) -> int:
        return self._add("", KIND_PTR, 0, target, b"")

    def func_proto(self, params: list[int], returns: int = 0) -> int:
        extra = b"".join(struct.pack("<II", 0, param) for param in params)
        return self._add("", KIND_FUNC_PROTO, len(params), returns, extra)

    def composite(
        self, name: str, size: int, members: list[tuple[str, int, int, int]], union: bool = False
    ) -> int:
        """members: (name, type id, bit offset, bitfield size)."""
        flag = int(any(bits for *_, bits in members))
        extra = b""
        for m_name, m_type, bit_offset, bits in members:
            offset = (bits << 24 | bit_offset) if flag else bit_offset
            extra += struct.pack("<III", self.name(m_name) if m_name else 0, m_type, offset)
        kind = KIND_UNION if union else KIND_STRUCT
        return self._add(name, kind, len(members), size, extra, flag)

    def blob(self) -> bytes:
        header = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings)
        )
        return header + self.types + self.strings


def sample() -> Btf:
    b = BlobBuilder()
    u16 = b.int_type("u16", 2)
    u32 = b.typedef("u32", b.int_type("unsigned int", 4))
    inner = b.composite("", 4, [("port", u16, 0, 0), ("family", u16, 16, 0)], union=False)
    anon = b.composite("", 4, [("", inner, 0, 0), ("pair", u32, 0, 0)], union=True)
    b.composite(
        "sock",
        16,
        [("head", u32, 0, 0), ("", anon, 32, 0), ("flags", u16, 64, 3), ("type", u16, 80, 0)],
    )
    b.composite("socket", 8, [("sk", u32, 32, 0)])
    return Btf(b.blob())


def test_offsets_of_plain_and_anonymous_members() -> None:
    btf = sample()
    assert btf.offset("sock", "head") == 0
    assert btf.offset("sock", "family") == 6  # inside an anonymous union and struct
    assert btf.offset("sock", "pair") == 4
    assert btf.offset("sock", "type") == 10
    assert btf.offset("socket", "sk") == 4


def test_bitfields_and_missing_names_are_errors() -> None:
    btf = sample()
    with pytest.raises(BtfError, match="bitfield"):
        btf.offset("sock", "flags")
    with pytest.raises(BtfError, match="not in kernel BTF"):
        btf.offset("sock", "nope")
    with pytest.raises(BtfError, match="struct task_struct"):
        btf.offset("task_struct", "files")


def test_rejects_a_blob_that_is_not_btf() -> None:
    with pytest.raises(BtfError):
        Btf(b"\0" * 64)


def tracepoints(send_args: list[str] | None = None) -> Btf:
    """A blob with raw tracepoint typedefs as the kernel declares them:
    btf_trace_<event> is a pointer to a function of (void *ctx, args...)."""
    b = BlobBuilder()
    int_id = b.int_type("int", 4)
    sock = b.composite("sock", 8, [("head", int_id, 0, 0)])
    sock_ptr = b.pointer(sock)
    void_ptr = b.pointer(0)
    types = {"struct sock *": sock_ptr, "int": int_id}
    for event in ("sock_send_length", "sock_recv_length"):
        args = send_args if send_args is not None and event == "sock_send_length" else None
        params = [types[a] for a in (args or ["struct sock *", "int", "int"])]
        b.typedef(f"btf_trace_{event}", b.pointer(b.func_proto([void_ptr, *params], int_id)))
    return Btf(b.blob())


def test_tracepoint_args_leave_out_the_context() -> None:
    btf = tracepoints()
    assert btf.tracepoint_args("sock_send_length") == ["struct sock *", "int", "int"]
    with pytest.raises(BtfError, match="sock_nope"):
        btf.tracepoint_args("sock_nope")


def test_raw_tracepoints_only_when_both_take_sk_ret_flags() -> None:
    assert sock_raw_tracepoints(tracepoints())
    assert SOCK_RAW_TP_ARGS == ["struct sock *", "int", "int"]
    # Another kernel's prototype (an argument added, or moved) keeps the
    # tracepoint programs, which read the trace-event record by name.
    assert not sock_raw_tracepoints(tracepoints(["struct sock *", "int"]))
    assert not sock_raw_tracepoints(tracepoints(["int", "struct sock *", "int"]))
    assert not sock_raw_tracepoints(sample())  # no such typedefs at all
