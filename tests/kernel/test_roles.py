"""Which side a socket is on, for sockets the kernel program never saw set up."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import pytest

from .conftest import MODES, open_source
from .traffic import bind_explicit_port


@pytest.mark.parametrize("mode", MODES)
def test_accepted_socket_predating_netmon_is_server_after_listener_closed(mode: str) -> None:
    # Created, accepted and with its listener gone before the probes attach:
    # neither bind() nor a listening port can be seen any more, only the
    # local port, which lies outside the ephemeral range.
    listener = socket.socket()
    port = bind_explicit_port(listener, "127.0.0.1")
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    listener.close()
    src = open_source(mode)
    try:
        assert server.send(b"s" * 1500) == 1500
        received = 0
        while received < 1500:
            received += len(client.recv(4096))
        flows = {
            (k.role, k.port): v
            for k, v in src.read().flows.items()
            if k.pid == os.getpid() and k.protocol == "TCP"
        }
        assert (flows[("server", port)].bytes_sent, flows[("client", port)].bytes_recv) == (
            1500,
            1500,
        )
        assert set(flows) == {("server", port), ("client", port)}
    finally:
        src.close()
        server.close()
        client.close()


@pytest.mark.parametrize("mode", MODES)
def test_listener_on_ephemeral_port_predating_netmon_makes_accepted_sockets_servers(
    mode: str,
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # an ephemeral port: only LISTEN state tells
    listener.listen()
    port = listener.getsockname()[1]
    src = open_source(mode)
    try:
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        with client, server:
            assert client.send(b"c" * 700) == 700
            received = 0
            while received < 700:
                received += len(server.recv(4096))
        roles = {
            (k.role, k.port): v.bytes_recv
            for k, v in src.read().flows.items()
            if k.pid == os.getpid() and k.protocol == "TCP"
        }
        assert roles == {("server", port): 700, ("client", port): 0}
    finally:
        src.close()
        listener.close()


@pytest.mark.parametrize("mode", MODES)
def test_busy_server_on_ephemeral_listening_port_is_server_from_the_first_byte(mode: str) -> None:
    """Traffic already flowing to a listener inside the ephemeral range while
    the probes attach: every byte lands on the server flow, none on a client
    flow keyed by the client's port (the side of a socket is judged once the
    listeners that predate netmon are known)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # ephemeral, no bind lock: only LISTEN tells
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    client_port = client.getsockname()[1]
    stop = threading.Event()
    chunk = b"p" * 4096

    def pump() -> None:  # server -> client, as fast as the client reads
        with contextlib.suppress(OSError):  # the test shuts the sockets down
            while not stop.is_set():
                server.sendall(chunk)

    def drain() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set() and client.recv(65536):
                pass

    threads = [threading.Thread(target=pump), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    src = None
    try:
        src = open_source(mode)  # attaches while the bytes flow
        sample = src.read()
        deadline = time.monotonic() + 30
        while not any(
            k.pid == os.getpid() and k.port == port and k.role == "server" and c.bytes_sent
            for k, c in sample.flows.items()
        ):
            assert time.monotonic() < deadline, "no server bytes counted in 30 s"
            sample = src.read()  # until the first counted bytes show up
        mine = {
            (k.role, k.port)
            for k, c in sample.flows.items()
            if k.pid == os.getpid() and k.protocol == "TCP" and c.bytes_sent
        }
        assert ("client", client_port) not in mine, mine
        assert ("server", port) in mine
    finally:
        stop.set()
        for sock in (client, server):
            with contextlib.suppress(OSError):  # already reset
                sock.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(timeout=10)
        server.close()
        client.close()
        listener.close()
        if src is not None:
            src.close()
