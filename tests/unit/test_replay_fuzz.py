"""Fuzz `netmon --replay FILE --json` with random and mutated recordings: it
either plays (exit 0) or stops with one line and exit 8, its output is
always strict JSON, and no exception ever escapes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmon import cli
from netmon.jsonl import decode, loads

from .helpers import FakeClock, FakeStop

# Any JSON value, including the ones Python's json writes but JSON forbids.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: n * 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2**64 - 1, 2**64, 65535, 65536, 2**32, 1e308, 253402300800.0]),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _flow(i: int) -> dict[str, Any]:
    return {
        "pid": 100 + i, "comm": "curl", "protocol": "TCP", "family": "IPv4", "port": 443,
        "remote_ip": "192.0.2.1", "role": "client", "bytes_sent": 10, "bytes_recv": 20,
        "packets_sent": 1, "packets_recv": 2, "rate_bps": 30.5, "anomaly": False,
        "kernel": False,
    }  # fmt: skip


def _snapshot(ts: float) -> dict[str, Any]:
    return {
        "ts": ts,
        "interval_s": 1.0,
        "flows": [_flow(0), _flow(1)],
        "processes": [{"pid": 100, "comm": "curl", "bytes_sent": 10, "bytes_recv": 20,
                       "rate_bps": 30.5, "kernel": False}],
        "protocols": {"TCP": 30},
        "dropped": 0,
    }  # fmt: skip


@st.composite
def mutated_snapshot(draw: st.DrawFn) -> str:
    """A valid snapshot with a few fields replaced, removed or added."""
    obj = _snapshot(draw(st.floats(min_value=0, max_value=2e9)))
    parts = {
        "top": obj,
        "flow": obj["flows"][0],
        "process": obj["processes"][0],
        "protocols": obj["protocols"],
    }
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        target = parts[draw(st.sampled_from(sorted(parts)))]
        name = draw(st.sampled_from([*target, "extra"]))
        if draw(st.booleans()):
            target[name] = draw(values)
        else:
            target.pop(name, None)
    return json.dumps(obj)  # NaN and Infinity written as Python writes them


@st.composite
def recording(draw: st.DrawFn) -> bytes:
    lines = draw(
        st.lists(
            st.one_of(
                mutated_snapshot(),
                st.builds(lambda ts: json.dumps(_snapshot(ts)), st.floats(0, 2e9)),
                st.text(max_size=30),
                st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
            ),
            max_size=6,
        )
    )
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data += b"\n"
    cut = draw(st.integers(min_value=0, max_value=len(data)))
    return data[:cut] if draw(st.booleans()) else data


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(recording())
def test_replay_never_escapes_an_exception(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fuzz.jsonl")
        with open(path, "wb") as f:
            f.write(data)
        out, err = io.StringIO(), io.StringIO()
        clock = FakeClock()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--replay", path, "--json"], clock=clock, stop=FakeStop(clock))
    assert code in (0, 8), (code, err.getvalue())
    errors = [
        line for line in err.getvalue().splitlines() if not line.startswith("netmon: warning:")
    ]
    assert all(line.startswith("netmon: ") for line in err.getvalue().splitlines())
    if code == 8:
        assert len(errors) == 1 and errors[0].startswith(f"netmon: {path}: "), errors
    else:
        assert errors == []
    for n, line in enumerate(out.getvalue().splitlines(), start=1):
        decode(line)  # strict JSON: no NaN or Infinity
        loads(line, n)  # and a snapshot that replays again
