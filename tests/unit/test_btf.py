"""The BTF reader, on small blobs built here with the documented layout."""

from __future__ import annotations

import struct

import pytest

from netmon.sources.btf import Btf, BtfError

KIND_INT, KIND_STRUCT, KIND_UNION, KIND_TYPEDEF = 1, 4, 5, 8


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
