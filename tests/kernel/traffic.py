"""Traffic generators that count what each of their own calls moved.

Every generator runs in a forked child (`Child`), so it has a pid of its own
and a name set with prctl(PR_SET_NAME). It counts only what the calls
returned: the bytes each call reported as moved and one message per call
(one per entry for sendmmsg/recvmmsg). The counts come back to the test as
`Expected` flows, keyed like netmon's flows minus the pid.

No call here is allowed to return 0 or fail: the receivers read exactly the
number of bytes or datagrams the sender reports, so there is no end-of-file
read and no EAGAIN whose counting could be argued about.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import multiprocessing
import multiprocessing.connection
import os
import pickle
import random
import select
import signal
import socket
import struct
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

PR_SET_NAME = 15
CLONE_NEWNET = 0x40000000
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
MSG_WAITFORONE = 0x10000
ETH_P_NETMON_TEST = 0x88B5  # IEEE local experimental ethertype
RECV_TIMEOUT_S = 20
PIPE_CHUNK = 65536

Conn = multiprocessing.connection.Connection


# --------------------------------------------------------------------------
# counting


@dataclass
class Tally:
    """What one flow moved, as the generator's own calls reported it."""

    bytes_sent: int = 0
    bytes_recv: int = 0
    packets_sent: int = 0
    packets_recv: int = 0

    def sent(self, n: int, messages: int = 1) -> None:
        if n <= 0:
            raise AssertionError(f"generator bug: a send returned {n}")
        self.bytes_sent += n
        self.packets_sent += messages

    def recv(self, n: int, messages: int = 1) -> None:
        if n <= 0:
            raise AssertionError(f"generator bug: a receive returned {n}")
        self.bytes_recv += n
        self.packets_recv += messages

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.bytes_sent, self.bytes_recv, self.packets_sent, self.packets_recv)

    def add(self, other: Tally) -> None:
        self.bytes_sent += other.bytes_sent
        self.bytes_recv += other.bytes_recv
        self.packets_sent += other.packets_sent
        self.packets_recv += other.packets_recv


# (protocol, family, port, remote_ip, role): a FlowKey without the pid.
FlowId = tuple[str, str, int, "str | None", str]


@dataclass
class Ledger:
    """Flows of one process: FlowId -> Tally."""

    flows: dict[FlowId, Tally] = field(default_factory=dict)

    def at(self, protocol: str, family: str, port: int, remote_ip: str | None, role: str) -> Tally:
        key: FlowId = (protocol, family, port, remote_ip, role)
        return self.flows.setdefault(key, Tally())

    def merge(self, other: Ledger) -> None:
        for key, tally in other.flows.items():
            self.flows.setdefault(key, Tally()).add(tally)


def norm_ip(addr: str) -> str:
    """The address the way netmon writes it (IPv6 compressed, no scope)."""
    return str(ipaddress.ip_address(addr.split("%", 1)[0]))


def family_name(family: int) -> str:
    return {int(socket.AF_INET): "IPv4", int(socket.AF_INET6): "IPv6"}[int(family)]


def family_of(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


# --------------------------------------------------------------------------
# processes


def set_comm(name: str) -> None:
    """Name the calling thread (the process, when called before any thread)."""
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")


def enter_netns(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class ChildError(RuntimeError):
    pass


class Child:
    """A forked process running `fn(ctl, *args)` under its own name.

    `fn` talks to the test through `ctl` (a multiprocessing Connection);
    its return value comes back through `result()`.
    """

    def __init__(
        self, comm: str, fn: Callable[..., Any], *args: Any, netns: str | None = None
    ) -> None:
        self.comm = comm[:15]
        self._ctl, child_end = multiprocessing.Pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            status = 0
            try:
                self._ctl.close()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if netns:
                    enter_netns(netns)
                set_comm(self.comm)
                child_end.send(("done", fn(child_end, *args)))
            except BaseException:
                status = 1
                with contextlib.suppress(BaseException):
                    child_end.send(("error", traceback.format_exc()))
            finally:
                os._exit(status)
        child_end.close()
        self.pid = pid
        self._done = False
        self._result: Any = None
        self._reaped = False

    def _next(self, timeout: float) -> tuple[str, Any]:
        if not self._ctl.poll(timeout):
            raise TimeoutError(f"child {self.comm} (pid {self.pid}) silent for {timeout} s")
        try:
            kind, value = self._ctl.recv()
        except EOFError as exc:
            raise ChildError(f"child {self.comm} (pid {self.pid}) died") from exc
        if kind == "error":
            raise ChildError(f"child {self.comm} (pid {self.pid}) failed:\n{value}")
        return kind, value

    def recv(self, timeout: float = 30) -> Any:
        """The next message the child sent with ctl.send()."""
        kind, value = self._next(timeout)
        if kind != "msg":
            raise ChildError(f"child {self.comm} finished while a message was expected")
        return value

    def send(self, value: Any) -> None:
        self._ctl.send(value)

    def fileno(self) -> int:
        """Readable when the child has sent something (or died)."""
        return self._ctl.fileno()

    def result(self, timeout: float = 60) -> Any:
        """Wait for the child's return value and reap it."""
        if not self._done:
            while True:
                kind, value = self._next(timeout)
                if kind == "done":
                    break
            self._done, self._result = True, value
            self.reap()
        return self._result

    def reap(self) -> None:
        if not self._reaped:
            os.waitpid(self.pid, 0)
            self._reaped = True

    def kill(self) -> None:
        if not self._reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.reap()


def tell(ctl: Conn, value: Any) -> None:
    ctl.send(("msg", value))


# --------------------------------------------------------------------------
# sockets and payloads


def payload(n: int, seed: int = 0) -> bytes:
    block = bytes((seed + i * 7) & 0xFF for i in range(256))
    return (block * (n // 256 + 1))[:n]


def set_recv_timeout(sock: socket.socket, seconds: int = RECV_TIMEOUT_S) -> None:
    """A kernel receive timeout that keeps the socket blocking for Python."""
    tv = struct.pack("ll", seconds, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def big_rcvbuf(sock: socket.socket, size: int = 4 << 20) -> None:
    sock.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE (root)


def sockaddr(ip: str, port: int) -> bytes:
    if family_of(ip) == socket.AF_INET:
        return (
            struct.pack("=H", socket.AF_INET)
            + struct.pack("!H", port)
            + socket.inet_pton(socket.AF_INET, ip)
            + bytes(8)
        )
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!HI", port, 0)
        + socket.inet_pton(socket.AF_INET6, ip)
        + struct.pack("=I", 0)
    )


def parse_sockaddr(raw: bytes) -> tuple[str, int]:
    (family,) = struct.unpack("=H", raw[:2])
    (port,) = struct.unpack("!H", raw[2:4])
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port


def bind_explicit_port(sock: socket.socket, host: str) -> int:
    """Bind to an explicit, non-zero port below the ephemeral range."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, min(low, 32000))
        try:
            sock.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free explicit port")


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def sendmmsg(fd: int, datagrams: list[bytes], dest: tuple[str, int] | None) -> list[int]:
    """One sendmmsg(2) call; returns msg_len of each message it sent."""
    n = len(datagrams)
    vec = (_Mmsghdr * n)()
    keep: list[Any] = []
    for i, data in enumerate(datagrams):
        buf = ctypes.create_string_buffer(data, len(data))
        iov = _Iovec(ctypes.cast(buf, ctypes.c_void_p), len(data))
        keep += [buf, iov]
        vec[i].msg_hdr.msg_iov = ctypes.pointer(iov)
        vec[i].msg_hdr.msg_iovlen = 1
        if dest is not None:
            name = ctypes.create_string_buffer(sockaddr(*dest))
            keep.append(name)
            vec[i].msg_hdr.msg_name = ctypes.cast(name, ctypes.c_void_p)
            vec[i].msg_hdr.msg_namelen = len(sockaddr(*dest))
    sent = _check(libc.sendmmsg(fd, vec, n, 0), "sendmmsg")
    return [vec[i].msg_len for i in range(sent)]


def recvmmsg(fd: int, vlen: int, size: int, flags: int = 0) -> list[tuple[int, str, int]]:
    """One recvmmsg(2) call with MSG_WAITFORONE: (msg_len, peer ip, port) per message."""
    vec = (_Mmsghdr * vlen)()
    keep: list[Any] = []
    for i in range(vlen):
        buf = ctypes.create_string_buffer(size)
        iov = _Iovec(ctypes.cast(buf, ctypes.c_void_p), size)
        name = ctypes.create_string_buffer(128)
        keep += [buf, iov, name]
        vec[i].msg_hdr.msg_iov = ctypes.pointer(iov)
        vec[i].msg_hdr.msg_iovlen = 1
        vec[i].msg_hdr.msg_name = ctypes.cast(name, ctypes.c_void_p)
        vec[i].msg_hdr.msg_namelen = 128
    got = _check(libc.recvmmsg(fd, vec, vlen, MSG_WAITFORONE | flags, None), "recvmmsg")
    out = []
    for i in range(got):
        name_buf = keep[i * 3 + 2]
        ip, port = parse_sockaddr(name_buf.raw[: vec[i].msg_hdr.msg_namelen])
        out.append((vec[i].msg_len, ip, port))
    return out


def libc_sendto_connected(fd: int, data: bytes) -> int:
    """sendto(2) with a NULL address, on a connected socket."""
    buf = ctypes.create_string_buffer(data, len(data))
    return _check(libc.sendto(fd, buf, ctypes.c_size_t(len(data)), 0, None, 0), "sendto")


# --------------------------------------------------------------------------
# stream (TCP) send and receive, by method

STREAM_SEND = ("send", "sendto", "sendmsg", "write", "writev", "sendfile", "splice")
STREAM_RECV = ("recv", "recvfrom", "recvmsg", "read", "readv", "splice", "peek", "peekmsg")


def stream_send(sock: socket.socket, method: str, total: int, chunk: int, tally: Tally) -> None:
    """Send exactly `total` bytes with `method`, counting every call."""
    data = payload(total, seed=3)
    fd = sock.fileno()
    done = 0
    if method == "sendfile":
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.flush()
            while done < total:
                n = os.sendfile(fd, f.fileno(), done, min(chunk, total - done))
                tally.sent(n)
                done += n
        return
    if method == "splice":
        r, w = os.pipe()
        try:
            while done < total:
                piece = data[done : done + min(chunk, PIPE_CHUNK, total - done)]
                queued = os.write(w, piece)  # a pipe write: not network traffic
                while queued:
                    n = os.splice(r, fd, queued)
                    tally.sent(n)
                    queued -= n
                    done += n
        finally:
            os.close(r)
            os.close(w)
        return
    while done < total:
        piece = data[done : done + min(chunk, total - done)]
        half = len(piece) // 2
        if method == "send":
            n = sock.send(piece)
        elif method == "sendto":
            n = libc_sendto_connected(fd, piece)
        elif method == "sendmsg":
            n = sock.sendmsg([piece[:half], piece[half:]])
        elif method == "write":
            n = os.write(fd, piece)
        elif method == "writev":
            n = os.writev(fd, [piece[:half], piece[half:]])
        else:
            raise ValueError(method)
        tally.sent(n)
        done += n


def stream_recv(sock: socket.socket, method: str, total: int, chunk: int, tally: Tally) -> None:
    """Receive exactly `total` bytes with `method`, counting every call."""
    fd = sock.fileno()
    done = 0
    pipe = os.pipe() if method == "splice" else None
    try:
        while done < total:
            want = min(chunk, total - done)
            if method == "recv":
                n = len(sock.recv(want))
            elif method == "recvfrom":
                n = len(sock.recvfrom(want)[0])
            elif method == "recvmsg":
                bufs = [bytearray(want // 2 or 1), bytearray(want - (want // 2 or 1) or 1)]
                n = sock.recvmsg_into(bufs)[0]
                if n > want:
                    raise AssertionError("recvmsg_into overran")
            elif method == "read":
                n = len(os.read(fd, want))
            elif method == "readv":
                half = max(1, want // 2)
                n = os.readv(fd, [bytearray(half), bytearray(max(1, want - half))])
            elif method == "splice":
                assert pipe is not None
                n = os.splice(fd, pipe[1], min(want, PIPE_CHUNK))
                left = n
                while left:  # drain the pipe: pipe reads are not network traffic
                    left -= len(os.read(pipe[0], left))
            elif method == "peekmsg":  # MSG_PEEK through recvmsg(2)
                peeked = sock.recvmsg_into([bytearray(want)], 0, socket.MSG_PEEK)[0]
                if peeked <= 0:
                    raise AssertionError("peek returned nothing")
                n = sock.recvmsg_into([bytearray(peeked)])[0]
                if n != peeked:
                    raise AssertionError(f"read {n} after peeking {peeked}")
            elif method == "peek":
                peeked = len(sock.recv(want, socket.MSG_PEEK))
                if peeked <= 0:
                    raise AssertionError("peek returned nothing")
                n = len(sock.recv(peeked))
                if n != peeked:
                    raise AssertionError(f"read {n} after peeking {peeked}")
            else:
                raise ValueError(method)
            tally.recv(n)
            done += n
    finally:
        if pipe:
            os.close(pipe[0])
            os.close(pipe[1])
    if done != total:
        raise AssertionError(f"received {done}, expected {total}")


def gate(ctl: Conn) -> None:
    """Tell the test we are set up, and wait until it says go."""
    tell(ctl, "gated")
    ctl.recv()


def tcp_server(
    ctl: Conn,
    host: str,
    send_method: str,
    recv_method: str,
    n_in: int,
    n_out: int,
    gated: bool = False,
) -> Ledger:
    """Accept one connection, receive n_in bytes, then send n_out back."""
    ls = socket.socket(family_of(host), socket.SOCK_STREAM)
    ls.bind((host, 0))
    ls.listen(8)
    port = ls.getsockname()[1]
    tell(ctl, port)
    set_recv_timeout(ls)
    conn, peer = ls.accept()
    set_recv_timeout(conn)
    if gated:
        gate(ctl)
    ledger = Ledger()
    tally = ledger.at("TCP", family_name(ls.family), port, norm_ip(peer[0]), "server")
    stream_recv(conn, recv_method, n_in, 32768, tally)
    stream_send(conn, send_method, n_out, 65536, tally)
    ctl.recv()  # the client read everything: closing now cannot reset anything
    conn.close()
    ls.close()
    return ledger


def tcp_client(
    ctl: Conn,
    host: str,
    port: int,
    send_method: str,
    recv_method: str,
    n_out: int,
    n_in: int,
    gated: bool = False,
) -> Ledger:
    """Connect, send n_out bytes, then receive n_in."""
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    set_recv_timeout(s)
    s.connect((host, port))
    if gated:
        gate(ctl)
    ledger = Ledger()
    tally = ledger.at("TCP", family_name(s.family), port, norm_ip(host), "client")
    stream_send(s, send_method, n_out, 65536, tally)
    stream_recv(s, recv_method, n_in, 32768, tally)
    s.close()
    return ledger


# --------------------------------------------------------------------------
# datagram (UDP) exchanges

DGRAM_METHODS = ("sendto", "sendmsg", "mmsg", "send", "write", "writev", "peek", "peekmmsg")
CONNECTED_DGRAM = ("send", "write", "writev", "peek", "peekmmsg")
DGRAM_SIZES = (1, 100, 512, 1400, 1473, 9000, 30000)


def dgram_send(
    sock: socket.socket,
    method: str,
    sizes: Iterable[int],
    dest: tuple[str, int] | None,
    ledger_tally: Callable[[str], Tally],
) -> None:
    """Send one datagram per size; `dest` None means the socket is connected."""
    datagrams = [payload(n, seed=n) for n in sizes]
    fd = sock.fileno()
    if method == "mmsg":
        i = 0
        while i < len(datagrams):
            lens = sendmmsg(fd, datagrams[i:], dest)
            for n in lens:
                ledger_tally(dest[0] if dest else "").sent(n)
            i += len(lens)
        return
    for data in datagrams:
        if method == "sendto":
            assert dest is not None
            n = sock.sendto(data, dest)
        elif method == "sendmsg":
            assert dest is not None
            half = len(data) // 2
            n = sock.sendmsg([data[:half], data[half:]], [], 0, dest)
        elif method in ("send", "peek", "peekmmsg"):
            n = sock.send(data)
        elif method == "write":
            n = os.write(fd, data)
        elif method == "writev":
            half = len(data) // 2
            n = os.writev(fd, [data[:half], data[half:]])
        else:
            raise ValueError(method)
        ledger_tally(dest[0] if dest else "").sent(n)


def dgram_recv(
    sock: socket.socket, method: str, count: int, ledger_tally: Callable[[str], Tally]
) -> list[tuple[str, int]]:
    """Receive `count` datagrams; returns (peer ip, port) of each ("" if connected)."""
    fd = sock.fileno()
    peers: list[tuple[str, int]] = []
    size = 65536
    while len(peers) < count:
        if method == "mmsg":
            for n, ip, port in recvmmsg(fd, count - len(peers), size):
                ledger_tally(ip).recv(n)
                peers.append((ip, port))
            continue
        if method == "sendto":
            data, addr = sock.recvfrom(size)
            n, ip, port = len(data), addr[0], addr[1]
        elif method == "sendmsg":
            buf1, buf2 = bytearray(700), bytearray(size)
            n, _anc, _flags, addr = sock.recvmsg_into([buf1, buf2])
            ip, port = addr[0], addr[1]
        elif method == "send":
            n, ip, port = len(sock.recv(size)), "", 0
        elif method == "write":
            n, ip, port = len(os.read(fd, size)), "", 0
        elif method == "writev":
            n, ip, port = os.readv(fd, [bytearray(700), bytearray(size)]), "", 0
        elif method == "peekmmsg":  # MSG_PEEK through recvmmsg(2), then a plain read
            (peeked, _ip, _port), *_ = recvmmsg(fd, 1, size, socket.MSG_PEEK)
            n, ip, port = len(os.read(fd, size)), "", 0
            if n != peeked:
                raise AssertionError(f"read {n} after peeking {peeked}")
        elif method == "peek":
            peeked = len(sock.recv(size, socket.MSG_PEEK))
            n, ip, port = len(sock.recv(size)), "", 0
            if n != peeked:
                raise AssertionError(f"read {n} after peeking {peeked}")
        else:
            raise ValueError(method)
        ledger_tally(ip).recv(n)
        peers.append((ip, port))
    return peers


def udp_server(
    ctl: Conn, host: str, method: str, sizes: tuple[int, ...], gated: bool = False
) -> Ledger:
    """Bind an explicit port, receive len(sizes) datagrams, answer each with the same size."""
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    big_rcvbuf(s)
    set_recv_timeout(s)
    port = bind_explicit_port(s, host)
    tell(ctl, port)
    ledger = Ledger()
    fam = family_name(s.family)
    peer_ip = ""
    if method in CONNECTED_DGRAM:
        client = ctl.recv()
        s.connect(client)
        peer_ip = norm_ip(client[0])
        tell(ctl, "connected")
    if gated:
        gate(ctl)

    def tally(ip: str) -> Tally:
        return ledger.at("UDP", fam, port, norm_ip(ip or peer_ip), "server")

    peers = dgram_recv(s, method, len(sizes), tally)
    if method in CONNECTED_DGRAM:
        dgram_send(s, method, sizes, None, tally)
    else:
        ips = {ip for ip, _ in peers}
        if len(ips) != 1:
            raise AssertionError(f"datagrams from several peers: {ips}")
        dgram_send(s, method, sizes, peers[0], tally)
    s.close()
    return ledger


def udp_client(
    ctl: Conn, host: str, port: int, method: str, sizes: tuple[int, ...], gated: bool = False
) -> Ledger:
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    big_rcvbuf(s)
    set_recv_timeout(s)
    ledger = Ledger()
    fam = family_name(s.family)

    def tally(ip: str) -> Tally:
        return ledger.at("UDP", fam, port, norm_ip(ip or host), "client")

    if gated and method not in CONNECTED_DGRAM:
        raise ValueError("only connected UDP clients can be gated")
    if method in CONNECTED_DGRAM:
        s.connect((host, port))
        tell(ctl, s.getsockname()[:2])
        ctl.recv()  # the server is connected back to us
        if gated:
            gate(ctl)
        dgram_send(s, method, sizes, None, tally)
    else:
        dgram_send(s, method, sizes, (host, port), tally)
    dgram_recv(s, method, len(sizes), tally)
    s.close()
    return ledger


# --------------------------------------------------------------------------
# ICMP, raw IP, AF_PACKET


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(v6: bool, ident: int, seq: int, size: int) -> bytes:
    kind = 128 if v6 else 8
    body = payload(size, seed=seq)
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:  # the kernel fills in the ICMPv6 checksum
        return header + body
    csum = _checksum(header + body)
    return struct.pack("!BBHHH", kind, 0, csum, ident, seq) + body


def icmp_ping(
    ctl: Conn, dest: str, kind: str, count: int, size: int, gated: bool = False
) -> Ledger:
    """Echo requests from a raw ("raw") or ping ("dgram") socket; receive the replies.

    Raw sockets are filtered to echo replies only, so the generator's own
    count is the replies it read. `gated`: wait for the test's go once the
    socket exists.
    """
    v6 = family_of(dest) == socket.AF_INET6
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    stype = socket.SOCK_RAW if kind == "raw" else socket.SOCK_DGRAM
    s = socket.socket(family_of(dest), stype, proto)
    set_recv_timeout(s)
    if kind == "raw" and v6:
        words = [0xFFFFFFFF] * 8
        words[129 >> 5] &= ~(1 << (129 & 31))
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))
    elif kind == "raw":
        s.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", 0xFFFFFFFF & ~1))
    if gated:
        gate(ctl)
    ledger = Ledger()
    name = "ICMPv6" if v6 else "ICMP"
    fam = "IPv6" if v6 else "IPv4"
    ident = os.getpid() & 0xFFFF
    for seq in range(1, count + 1):
        n = s.sendto(echo_request(v6, ident, seq, size), (dest, 0))
        ledger.at(name, fam, 0, norm_ip(dest), "unknown").sent(n)
    replies = 0
    while replies < count:
        data, addr = s.recvfrom(65536)
        ledger.at(name, fam, 0, norm_ip(addr[0]), "unknown").recv(len(data))
        icmp = data if (v6 or kind == "dgram") else data[(data[0] & 0xF) * 4 :]
        if icmp[0] == (129 if v6 else 0):
            replies += 1
    s.close()
    return ledger


RAW_PROTO = 253  # RFC 3692 experimentation


def raw_receiver(ctl: Conn, bind_ip: str, count: int, marker: bytes, gated: bool = False) -> Ledger:
    s = socket.socket(family_of(bind_ip), socket.SOCK_RAW, RAW_PROTO)
    set_recv_timeout(s)
    big_rcvbuf(s)
    s.bind((bind_ip, 0))
    if gated:
        gate(ctl)  # what arrives meanwhile is queued
    else:
        tell(ctl, "ready")
    ledger = Ledger()
    fam = family_name(s.family)
    got = 0
    while got < count:
        data, addr = s.recvfrom(65536)
        ledger.at("RAW", fam, 0, norm_ip(addr[0]), "unknown").recv(len(data))
        if marker in data:
            got += 1
    s.close()
    return ledger


def raw_sender(
    ctl: Conn, dest: str, sizes: tuple[int, ...], marker: bytes, gated: bool = False
) -> Ledger:
    s = socket.socket(family_of(dest), socket.SOCK_RAW, RAW_PROTO)
    if gated:
        gate(ctl)
    ledger = Ledger()
    fam = family_name(s.family)
    for size in sizes:
        n = s.sendto(marker + payload(size), (dest, 0))
        ledger.at("RAW", fam, 0, norm_ip(dest), "unknown").sent(n)
    s.close()
    return ledger


def packet_receiver(ctl: Conn, ifname: str, count: int, marker: bytes) -> Ledger:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_NETMON_TEST))
    set_recv_timeout(s)
    s.bind((ifname, ETH_P_NETMON_TEST))
    tell(ctl, "ready")
    ledger = Ledger()
    got = 0
    while got < count:
        data = s.recv(65536)
        ledger.at("PACKET", "PACKET", 0, None, "unknown").recv(len(data))
        if marker in data:
            got += 1
    s.close()
    return ledger


def packet_sender(
    ctl: Conn, ifname: str, src_mac: str, dst_mac: str, sizes: tuple[int, ...], marker: bytes
) -> Ledger:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_NETMON_TEST))
    s.bind((ifname, ETH_P_NETMON_TEST))
    header = (
        bytes.fromhex(dst_mac.replace(":", ""))
        + bytes.fromhex(src_mac.replace(":", ""))
        + struct.pack("!H", ETH_P_NETMON_TEST)
    )
    ledger = Ledger()
    for size in sizes:
        n = s.send(header + marker + payload(size))
        ledger.at("PACKET", "PACKET", 0, None, "unknown").sent(n)
    s.close()
    return ledger


# --------------------------------------------------------------------------
# attribution


def udp_sink(ctl: Conn, host: str) -> Ledger:
    """Bind an explicit port and count datagrams until the test says how many
    were sent and that many have arrived."""
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    big_rcvbuf(s, 16 << 20)
    set_recv_timeout(s)
    port = bind_explicit_port(s, host)
    tell(ctl, port)
    ledger = Ledger()
    fam = family_name(s.family)
    received, target = 0, None
    while target is None or received < target:
        if target is None:
            ready, _, _ = select.select([s.fileno(), ctl.fileno()], [], [], RECV_TIMEOUT_S)
            if not ready:
                raise TimeoutError("sink: nothing happened")
            if ctl.fileno() in ready:
                target = ctl.recv()
                continue
        data, addr = s.recvfrom(65536)
        ledger.at("UDP", fam, port, norm_ip(addr[0]), "server").recv(len(data))
        received += 1
    s.close()
    return ledger


def short_lived_sender(ctl: Conn, host: str, port: int, sizes: tuple[int, ...]) -> Ledger:
    """Runs in a short-lived process: a few datagrams, then exit."""
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    ledger = Ledger()
    t = ledger.at("UDP", family_name(s.family), port, norm_ip(host), "client")
    for n in sizes:
        t.sent(s.sendto(payload(n, seed=n), (host, port)))
    s.close()
    return ledger


def forked(comm: str, fn: Callable[[], Ledger]) -> tuple[int, Ledger]:
    """Run fn in a forked grandchild named comm; returns its pid and ledger."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the grandchild
        status = 0
        try:
            os.close(r)
            set_comm(comm)
            data = pickle.dumps(fn())
        except BaseException:
            data, status = pickle.dumps(traceback.format_exc()), 1
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        result = pickle.loads(f.read())
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise ChildError(f"forked {comm} failed:\n{result}")
    return pid, result


def inherit_client(ctl: Conn, host: str, port: int, sizes: tuple[int, int, int]) -> dict[str, Any]:
    """Connect and send, fork a child that writes on the inherited socket and
    exits, then send again. The peer only receives."""
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.connect((host, port))
    fid: FlowId = ("TCP", family_name(s.family), port, norm_ip(host), "client")
    mine = Ledger()
    stream_send(s, "send", sizes[0], 65536, mine.at(*fid))

    def kid() -> Ledger:
        theirs = Ledger()
        stream_send(s, "write", sizes[1], 65536, theirs.at(*fid))
        return theirs

    kid_pid, kid_ledger = forked("nm-inh-kid", kid)
    stream_send(s, "sendmsg", sizes[2], 65536, mine.at(*fid))
    s.close()
    return {"parent": mine, "kid_pid": kid_pid, "kid": kid_ledger}


def inherit_server(ctl: Conn, host: str, sizes: tuple[int, int, int]) -> dict[str, Any]:
    """Accept, receive, fork a child that answers on the accepted socket,
    then answer again. The child's bytes are role server, port = our port."""
    ls = socket.socket(family_of(host), socket.SOCK_STREAM)
    ls.bind((host, 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    tell(ctl, port)
    set_recv_timeout(ls)
    conn, peer = ls.accept()
    set_recv_timeout(conn)
    fid: FlowId = ("TCP", family_name(ls.family), port, norm_ip(peer[0]), "server")
    mine = Ledger()
    stream_recv(conn, "recv", sizes[0], 32768, mine.at(*fid))

    def kid() -> Ledger:
        theirs = Ledger()
        stream_send(conn, "send", sizes[1], 65536, theirs.at(*fid))
        return theirs

    kid_pid, kid_ledger = forked("nm-inh-srvkid", kid)
    stream_send(conn, "write", sizes[2], 65536, mine.at(*fid))
    ctl.recv()
    conn.close()
    return {"parent": mine, "kid_pid": kid_pid, "kid": kid_ledger}


def sink_server(ctl: Conn, host: str, connections: int, each: int) -> Ledger:
    """Accept `connections` connections and read exactly `each` bytes from each."""
    ls = socket.socket(family_of(host), socket.SOCK_STREAM)
    ls.bind((host, 0))
    ls.listen(connections)
    port = ls.getsockname()[1]
    tell(ctl, port)
    set_recv_timeout(ls)
    ledger = Ledger()
    for _ in range(connections):
        conn, peer = ls.accept()
        set_recv_timeout(conn)
        fid: FlowId = ("TCP", family_name(ls.family), port, norm_ip(peer[0]), "server")
        stream_recv(conn, "recv", each, 32768, ledger.at(*fid))
        conn.close()
    ls.close()
    return ledger


def dup_client(ctl: Conn, host: str, port: int, sizes: tuple[int, int, int]) -> Ledger:
    """Send on the socket, on a dup() of it and on a dup2() of it."""
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.connect((host, port))
    ledger = Ledger()
    t = ledger.at("TCP", family_name(s.family), port, norm_ip(host), "client")
    stream_send(s, "send", sizes[0], 65536, t)
    d = os.dup(s.fileno())
    d2 = os.dup2(s.fileno(), 200)
    s.close()  # only the duplicates are left
    for fd, n in ((d, sizes[1]), (d2, sizes[2])):
        dup = socket.socket(fileno=fd)
        stream_send(dup, "write", n, 65536, t)
        dup.close()
    return ledger


def threaded_client(ctl: Conn, host: str, port: int, threads: int, each: int) -> dict[str, Any]:
    """`threads` threads, each named, each on its own connection to the same port."""
    ledgers: list[Ledger] = []
    tids: list[int] = []
    errors: list[str] = []
    names = [f"nm-thr-{i}" for i in range(threads)]
    lock = threading.Lock()

    def run(name: str) -> None:
        try:
            set_comm(name)
            s = socket.socket(family_of(host), socket.SOCK_STREAM)
            s.connect((host, port))
            ledger = Ledger()
            t = ledger.at("TCP", family_name(s.family), port, norm_ip(host), "client")
            stream_send(s, "send", each, 8192, t)
            s.close()
            with lock:
                ledgers.append(ledger)
                tids.append(threading.get_native_id())
        except BaseException:
            errors.append(traceback.format_exc())

    workers = [threading.Thread(target=run, args=(n,)) for n in names]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise ChildError("\n".join(errors))
    total = Ledger()
    for ledger in ledgers:
        total.merge(ledger)
    return {"ledger": total, "tids": tids, "names": names}


def local_only(ctl: Conn, tmpdir: str) -> dict[str, int]:
    """AF_UNIX stream and datagram sockets, pipes and files: none of it is network traffic."""
    moved: dict[str, int] = {}
    data = payload(50_000)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    moved["unix_stream_send"] = a.send(data[:20000])
    moved["unix_stream_recv"] = len(b.recv(20000))
    moved["unix_stream_write"] = os.write(a.fileno(), data[:1000])
    moved["unix_stream_read"] = len(os.read(b.fileno(), 1000))
    moved["unix_stream_sendmsg"] = a.sendmsg([data[:500], data[:500]])
    moved["unix_stream_recvmsg"] = b.recvmsg_into([bytearray(1000)])[0]
    moved["unix_stream_writev"] = os.writev(a.fileno(), [data[:10], data[:20]])
    moved["unix_stream_readv"] = os.readv(b.fileno(), [bytearray(30)])
    with tempfile.TemporaryFile() as f:
        f.write(data[:4000])
        f.flush()
        moved["unix_stream_sendfile"] = os.sendfile(a.fileno(), f.fileno(), 0, 4000)
        r, w = os.pipe()
        moved["unix_stream_splice_out"] = os.splice(b.fileno(), w, 4000)
        moved["pipe_read"] = len(os.read(r, 4000))
        moved["pipe_write"] = os.write(w, data[:3000])
        moved["unix_stream_splice_in"] = os.splice(r, a.fileno(), 3000)
        moved["unix_stream_recv2"] = len(b.recv(3000))
        os.close(r)
        os.close(w)
    a.close()
    b.close()
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    moved["unix_dgram_send"] = c.send(data[:900])
    moved["unix_dgram_recv"] = len(d.recv(2000))
    c.close()
    d.close()
    path = os.path.join(tmpdir, "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    moved["unix_dgram_sendto"] = cli.sendto(data[:700], path)
    moved["unix_dgram_recvfrom"] = len(srv.recvfrom(2000)[0])
    cli.close()
    srv.close()
    r, w = os.pipe()
    moved["pipe_writev"] = os.writev(w, [data[:100], data[:200]])
    moved["pipe_readv"] = os.readv(r, [bytearray(300)])
    os.close(r)
    os.close(w)
    fpath = os.path.join(tmpdir, "file")
    fd = os.open(fpath, os.O_RDWR | os.O_CREAT, 0o600)
    moved["file_write"] = os.write(fd, data)
    moved["file_pread"] = len(os.pread(fd, 50_000, 0))
    os.lseek(fd, 0, os.SEEK_SET)
    moved["file_read"] = len(os.read(fd, 50_000))
    moved["file_writev"] = os.writev(fd, [data[:10], data[:10]])
    out = os.open(fpath + "2", os.O_RDWR | os.O_CREAT, 0o600)
    moved["file_sendfile"] = os.sendfile(out, fd, 0, 50_000)
    os.close(out)
    os.close(fd)
    return moved


# --------------------------------------------------------------------------
# edge cases


def sized_sink(ctl: Conn, host: str) -> Ledger:
    """Accept one connection; read exactly as many bytes as the test says."""
    ls = socket.socket(family_of(host), socket.SOCK_STREAM)
    ls.bind((host, 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    tell(ctl, port)
    set_recv_timeout(ls)
    conn, peer = ls.accept()
    set_recv_timeout(conn)
    total = ctl.recv()
    ledger = Ledger()
    fid: FlowId = ("TCP", family_name(ls.family), port, norm_ip(peer[0]), "server")
    stream_recv(conn, "recv", total, 65536, ledger.at(*fid))
    tell(ctl, "drained")
    ctl.recv()
    conn.close()
    return ledger


def nonblocking_client(ctl: Conn, host: str, port: int) -> dict[str, Any]:
    """Calls that fail with EAGAIN move nothing: receive on an empty socket,
    then send until the socket buffer is full (the peer is not reading yet)."""
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.connect((host, port))
    s.setblocking(False)
    ledger = Ledger()
    t = ledger.at("TCP", family_name(s.family), port, norm_ip(host), "client")
    failed = 0
    for attempt in (lambda: s.recv(100), lambda: os.read(s.fileno(), 100), lambda: s.recv(1)):
        try:
            attempt()
            raise AssertionError("a receive on an empty socket returned data")
        except BlockingIOError:
            failed += 1
    data = payload(65536)
    while True:
        try:
            t.sent(s.send(data))
        except BlockingIOError:
            failed += 1
            break
    for _ in range(3):
        try:
            t.sent(os.write(s.fileno(), data))
        except BlockingIOError:
            failed += 1
    tell(ctl, t.bytes_sent)
    ctl.recv()  # the peer read everything
    s.close()
    return {"ledger": ledger, "failed": failed}


def renaming_client(
    ctl: Conn, host: str, port: int, sizes: tuple[int, int], new_name: str
) -> Ledger:
    """Send under the process's first name, rename it, send again."""
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.connect((host, port))
    ledger = Ledger()
    t = ledger.at("TCP", family_name(s.family), port, norm_ip(host), "client")
    stream_send(s, "send", sizes[0], 65536, t)
    set_comm(new_name)
    stream_send(s, "send", sizes[1], 65536, t)
    s.close()
    return ledger


def udp_many_peers(ctl: Conn, servers: list[tuple[str, int]], sizes: tuple[int, ...]) -> Ledger:
    """One unconnected UDP socket talking to several servers: one flow per peer."""
    s = socket.socket(family_of(servers[0][0]), socket.SOCK_DGRAM)
    big_rcvbuf(s)
    set_recv_timeout(s)
    ledger = Ledger()
    fam = family_name(s.family)
    port_of = {norm_ip(ip): port for ip, port in servers}
    for ip, port in servers:
        for n in sizes:
            ledger.at("UDP", fam, port, norm_ip(ip), "client").sent(
                s.sendto(payload(n, seed=n), (ip, port))
            )
    for _ in range(len(servers) * len(sizes)):
        data, addr = s.recvfrom(65536)
        ip = norm_ip(addr[0])
        ledger.at("UDP", fam, port_of[ip], ip, "client").recv(len(data))
    s.close()
    return ledger


# --------------------------------------------------------------------------
# reading after the socket reached TCP_CLOSE

TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
CLOSE_STATE_WAYS = ("reset", "fin", "threads")


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of `sock` (first byte of struct tcp_info)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def wait_tcp_state(sock: socket.socket, state: int, timeout: float = RECV_TIMEOUT_S) -> None:
    """Block until `sock` is in `state`: poll() wakes on the state changes that matter here
    (the peer's FIN or RST), the loop covers the rest (our own FIN being acked)."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    waited = 0.0
    step = 0.005
    while tcp_state(sock) != state:
        if waited > timeout:
            raise TimeoutError(f"socket stayed in TCP state {tcp_state(sock)}, not {state}")
        poller.poll(int(step * 1000))
        waited += step
        step = min(step * 2, 0.2)


def closing_client(ctl: Conn, host: str, port: int, n: int, way: str) -> Ledger:
    """Send n bytes, then end the connection: a reset for "reset", else a FIN."""
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    set_recv_timeout(s)
    s.connect((host, port))
    ledger = Ledger()
    tally = ledger.at("TCP", family_name(s.family), port, norm_ip(host), "client")
    stream_send(s, "send", n, 65536, tally)
    if way == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        return ledger
    s.shutdown(socket.SHUT_WR)
    ctl.recv()  # the server has read everything: closing now resets nothing
    s.close()
    return ledger


def closed_reader(ctl: Conn, host: str, n: int, way: str) -> Ledger:
    """Accept one connection on an ephemeral listening port (no bind lock, so the
    kernel zeroes the socket's local port when it reaches TCP_CLOSE) and read
    the n queued bytes only after the socket is closed:
      reset    the peer reset the connection;
      fin      both sides sent their FIN (ours last) and ours was acked;
      threads  as fin, but one thread closes its side while another reads,
               half of the bytes before the close and half after it."""
    ls = socket.socket(family_of(host), socket.SOCK_STREAM)
    big_rcvbuf(ls)  # inherited by the accepted socket: all n bytes stay queued
    ls.bind((host, 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    tell(ctl, port)
    set_recv_timeout(ls)
    conn, peer = ls.accept()
    set_recv_timeout(conn)
    ledger = Ledger()
    tally = ledger.at("TCP", family_name(ls.family), port, norm_ip(peer[0]), "server")

    def close_our_side() -> None:
        wait_tcp_state(conn, TCP_CLOSE_WAIT)  # the peer's FIN arrived
        conn.shutdown(socket.SHUT_WR)
        wait_tcp_state(conn, TCP_CLOSE)

    if way == "reset":
        wait_tcp_state(conn, TCP_CLOSE)
        stream_recv(conn, "recv", n, 32768, tally)
    elif way == "fin":
        close_our_side()
        stream_recv(conn, "recv", n, 32768, tally)
    elif way == "threads":
        half = n // 2
        stream_recv(conn, "recv", half, 32768, tally)
        closer = threading.Thread(target=close_our_side)
        closer.start()
        closer.join()
        stream_recv(conn, "recv", n - half, 32768, tally)
    else:
        raise ValueError(way)
    if tcp_state(conn) != TCP_CLOSE:
        raise AssertionError("the reads were meant to happen after TCP_CLOSE")
    tell(ctl, "drained")
    conn.close()
    ls.close()
    return ledger


def slot_churner(ctl: Conn, host: str, ports: list[int], sockets: int, rounds: int) -> Ledger:
    """On one CPU, many connected UDP sockets and one unconnected socket (to
    every port in turn) sending round-robin: more flows than the kernel's
    per-CPU slots, so they keep taking each other's slots."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    fam = family_of(host)
    ledger = Ledger()
    connected = []
    for i in range(sockets):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.connect((host, ports[i % len(ports)]))
        connected.append(s)
    loose = socket.socket(fam, socket.SOCK_DGRAM)
    name = family_name(fam)
    for r in range(rounds):
        for i, s in enumerate(connected):
            n = 1 + (r * 7 + i) % 50
            ledger.at("UDP", name, ports[i % len(ports)], norm_ip(host), "client").sent(
                s.send(payload(n, seed=i))
            )
        port = ports[r % len(ports)]
        ledger.at("UDP", name, port, norm_ip(host), "client").sent(
            loose.sendto(payload(60 + r, seed=r), (host, port))
        )
    for s in [*connected, loose]:
        s.close()
    return ledger
