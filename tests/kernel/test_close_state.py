"""Bytes read after a TCP socket reached TCP_CLOSE keep their flow.

At TCP_CLOSE the kernel releases the local port (skc_num becomes 0) of a
socket without a bind lock, so a flow key rebuilt from the socket on every
event would put what is still read from the receive queue on a port-0 flow.
"""

from __future__ import annotations

from typing import Any

import pytest

from .flows import assert_no_problems, flow_mismatches
from .traffic import CLOSE_STATE_WAYS, closed_reader, closing_client


@pytest.mark.parametrize("family_host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("way", CLOSE_STATE_WAYS)
def test_reads_after_close_stay_on_the_flow(
    live: Any, spawn: Any, way: str, family_host: str
) -> None:
    n = 200_000
    before = live.read()
    server = spawn("nm-closed-rd", closed_reader, family_host, n, way)
    port = server.recv()
    client = spawn("nm-closer", closing_client, family_host, port, n, way)
    assert server.recv() == "drained"
    if way != "reset":
        client.send("go")
    client_ledger = client.result()
    server_ledger = server.result()
    after = live.read()
    problems = flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    problems += flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    assert_no_problems(problems, live)
