"""Read struct member offsets of the running kernel from its BTF.

BCC compiles against whatever headers are installed, which may belong to a
different kernel version (fields past `struct sock_common` move between
releases). Offsets we need beyond the stable prefix are taken from
/sys/kernel/btf/vmlinux and handed to the BPF program as constants.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

_KIND_INT, _KIND_PTR, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM = 1, 2, 3, 4, 5, 6
_KIND_FWD, _KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT = 7, 8, 9, 10, 11
_KIND_FUNC, _KIND_FUNC_PROTO, _KIND_VAR, _KIND_DATASEC, _KIND_FLOAT = 12, 13, 14, 15, 16
_KIND_DECL_TAG, _KIND_TYPE_TAG, _KIND_ENUM64 = 17, 18, 19

# Bytes that follow the common 12-byte type header, per member (vlen) or fixed.
_PER_MEMBER = {_KIND_STRUCT: 12, _KIND_UNION: 12, _KIND_ENUM: 8, _KIND_FUNC_PROTO: 8,
               _KIND_DATASEC: 12, _KIND_ENUM64: 12}
_FIXED = {_KIND_INT: 4, _KIND_ARRAY: 12, _KIND_VAR: 4, _KIND_DECL_TAG: 4}


class BtfError(Exception):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0 when not a bitfield


class Btf:
    """The struct/union part of a BTF blob. Names are decoded only on lookup:
    vmlinux has hundreds of thousands of members and netmon needs a dozen."""

    def __init__(self, data: bytes) -> None:
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != 0xEB9F:
            raise BtfError("not a little-endian BTF blob")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._types_blob = data[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        # type id -> (kind, size_or_type, kind_flag, vlen, offset of its members)
        self._types: dict[int, tuple[int, int, int, int, int]] = {}
        self._struct_by_name_off: dict[int, int] = {}
        self._typedef_by_name_off: dict[int, int] = {}
        types, pos, type_id = self._types_blob, 0, 1
        unpack = struct.Struct("<III").unpack_from
        while pos < len(types):
            name_off, info, size_or_type = unpack(types, pos)
            pos += 12
            kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            self._types[type_id] = (kind, size_or_type, kind_flag, vlen, pos)
            if kind in (_KIND_STRUCT, _KIND_UNION) and name_off:
                self._struct_by_name_off.setdefault(name_off, type_id)
            elif kind == _KIND_TYPEDEF and name_off:
                self._typedef_by_name_off.setdefault(name_off, type_id)
            pos += _PER_MEMBER.get(kind, 0) * vlen + _FIXED.get(kind, 0)
            type_id += 1

    def _str(self, offset: int) -> str:
        end = self._strings.index(b"\0", offset)
        return self._strings[offset:end].decode()

    def _struct_id(self, name: str) -> int | None:
        return self._named(self._struct_by_name_off, name)

    def _named(self, by_name_off: dict[int, int], name: str) -> int | None:
        wanted = b"\0" + name.encode() + b"\0"
        start = self._strings.find(wanted)
        while start != -1:
            type_id = by_name_off.get(start + 1)
            if type_id is not None:
                return type_id
            start = self._strings.find(wanted, start + 1)
        return None

    def _name_of(self, type_id: int) -> str:
        pos = self._types[type_id][4]
        return self._str(struct.unpack_from("<I", self._types_blob, pos - 12)[0])

    def _describe(self, type_id: int) -> str:
        """A C spelling of a type, typedefs and qualifiers resolved."""
        if type_id == 0:
            return "void"
        type_id = self._resolve(type_id)
        kind = self._types[type_id][0]
        if kind == _KIND_PTR:
            return self._describe(self._types[type_id][1]) + " *"
        if kind in (_KIND_STRUCT, _KIND_UNION):
            return ("struct " if kind == _KIND_STRUCT else "union ") + self._name_of(type_id)
        return self._name_of(type_id)

    def tracepoint_args(self, event: str) -> list[str]:
        """The arguments a raw tracepoint program of `event` gets, as C types
        (from the kernel's `btf_trace_<event>` typedef, whose first argument,
        the tracing context, is left out)."""
        type_id = self._named(self._typedef_by_name_off, f"btf_trace_{event}")
        if type_id is None:
            raise BtfError(f"tracepoint {event} not in kernel BTF")
        proto = self._resolve(self._types[self._resolve(type_id)][1])
        kind, _ret, _flag, vlen, pos = self._types[proto]
        if kind != _KIND_FUNC_PROTO:
            raise BtfError(f"btf_trace_{event} is not a function pointer")
        params = [struct.unpack_from("<II", self._types_blob, pos + 8 * i)[1] for i in range(vlen)]
        return [self._describe(param) for param in params[1:]]

    def _members(self, type_id: int) -> list[Member]:
        kind, _size, kind_flag, vlen, pos = self._types[type_id]
        if kind not in (_KIND_STRUCT, _KIND_UNION):
            return []
        members = []
        for i in range(vlen):
            m_name, m_type, m_off = struct.unpack_from("<III", self._types_blob, pos + 12 * i)
            bits = (m_off >> 24) if kind_flag else 0
            bit_offset = (m_off & 0xFFFFFF) if kind_flag else m_off
            members.append(Member(self._str(m_name), m_type, bit_offset, bits))
        return members

    def _resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers."""
        while self._types[type_id][0] in (_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST,
                                          _KIND_RESTRICT, _KIND_TYPE_TAG):
            type_id = self._types[type_id][1]
        return type_id

    def _find(self, type_id: int, name: str) -> tuple[int, Member] | None:
        """Find `name` in a struct, descending into anonymous members."""
        for member in self._members(self._resolve(type_id)):
            if member.name == name:
                return member.bit_offset, member
            if not member.name:
                inner = self._find(member.type_id, name)
                if inner is not None:
                    return member.bit_offset + inner[0], inner[1]
        return None

    def member(self, struct_name: str, path: str) -> tuple[int, Member]:
        """Bit offset of `path` ("a.b.c") inside `struct struct_name`."""
        type_id = self._struct_id(struct_name)
        if type_id is None:
            raise BtfError(f"struct {struct_name} not in kernel BTF")
        total, member = 0, None
        for part in path.split("."):
            found = self._find(type_id, part)
            if found is None:
                raise BtfError(f"{struct_name}.{path} not in kernel BTF")
            bit_offset, member = found
            total += bit_offset
            type_id = member.type_id
        assert member is not None
        return total, member

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of a non-bitfield member."""
        bit_offset, member = self.member(struct_name, path)
        if member.bitfield_size or bit_offset % 8:
            raise BtfError(f"{struct_name}.{path} is a bitfield")
        return bit_offset // 8


def load_vmlinux_btf(path: Path = VMLINUX_BTF) -> Btf:
    try:
        return Btf(path.read_bytes())
    except OSError as exc:
        raise BtfError(f"cannot read {path}: {exc.strerror}") from None
