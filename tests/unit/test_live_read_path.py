"""The live source's per-interval helpers that need no kernel: the layout of
a batch read, the names, and the rule for writing rates back."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from netmon.sources.live import (
    PUBLISH_EVERY,
    PUBLISH_MOVED,
    PublishedRates,
    counter_columns,
    current_names,
    numpy_dtype,
)


class Stats(ctypes.Structure):  # the shape of struct traffic_stats
    _fields_ = [
        ("bytes_sent", ctypes.c_uint64),
        ("bytes_recv", ctypes.c_uint64),
        ("packets_sent", ctypes.c_uint64),
        ("packets_recv", ctypes.c_uint64),
        ("named_ns", ctypes.c_uint64),
        ("comm", ctypes.c_char * 16),
        ("flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("cgroup_id", ctypes.c_uint64),
    ]


def test_numpy_dtype_follows_the_ctypes_layout_with_names_as_bytes() -> None:
    dtype = numpy_dtype(Stats)
    assert dtype.itemsize == ctypes.sizeof(Stats)
    assert dtype.fields is not None
    assert dtype.fields["comm"][0] == np.dtype("S16")
    assert dtype.fields["flags"][1] == Stats.flags.offset
    assert numpy_dtype(ctypes.c_uint32) == np.dtype(np.uint32)


def test_counter_columns_of_a_batch() -> None:
    values = (Stats * 2)()
    values[0] = Stats(1, 2, 3, 4, 5, b"nginx", 0, 0, 4242)
    values[1] = Stats(2**64 - 1, 0, 1, 0, 9, b"kworker/0:1", 1, 0, 1)
    records = np.frombuffer(values, numpy_dtype(Stats))
    counts, comm, kernel, cgroup = counter_columns(records, kernel_flag=1)
    assert counts.dtype == np.uint64
    assert counts.tolist() == [[1, 2, 3, 4], [2**64 - 1, 0, 1, 0]]
    assert comm.tolist() == [b"nginx", b"kworker/0:1"]
    assert kernel.tolist() == [False, True]
    assert cgroup.tolist() == [4242, 1]


def test_counter_columns_of_per_cpu_copies() -> None:
    """Counters add up over the CPUs' copies; the name, flags and cgroup are
    those of the copy named last (a rename on another CPU than the creation)."""
    values = (Stats * 4)()
    values[0] = Stats(10, 0, 1, 0, 100, b"nginx", 0, 0, 77)  # created on CPU 0
    values[1] = Stats(5, 7, 1, 1, 0, b"", 0, 0, 0)  # counted on CPU 1 too
    values[2] = Stats(0, 1, 0, 1, 100, b"old", 1, 0, 10)
    values[3] = Stats(2, 0, 1, 0, 200, b"renamed", 1, 0, 11)  # renamed (and moved) on CPU 1
    records = np.frombuffer(values, numpy_dtype(Stats)).reshape(2, 2)
    counts, comm, kernel, cgroup = counter_columns(records, kernel_flag=1)
    assert counts.tolist() == [[15, 7, 2, 1], [2, 1, 1, 1]]
    assert comm.tolist() == [b"nginx", b"renamed"]
    assert kernel.tolist() == [False, True]
    assert cgroup.tolist() == [77, 11]


def test_flows_show_their_process_current_name() -> None:
    flow_pids = np.array([10, 20, 30, 10])
    flow_comm = np.array([b"old", b"b", b"c", b"old2"], dtype="S16")
    pids = np.array([30, 10, 20])
    comm = np.array([b"", b"new", b"b"], dtype="S16")
    names = current_names(flow_pids, flow_comm, pids, comm)
    # pid 10 renamed; pid 20 unchanged; pid 30 has no name in pid_stats: keep the flow's
    assert names.tolist() == [b"new", b"b", b"c", b"new"]
    assert current_names(flow_pids, flow_comm, pids[:0], comm[:0]).tolist() == flow_comm.tolist()
    missing = current_names(np.array([99]), np.array([b"x"], dtype="S16"), pids, comm)
    assert missing.tolist() == [b"x"]


def ids(*names: str) -> list[bytes]:
    return [n.encode() for n in names]


def test_rates_are_written_first_then_when_they_move_materially() -> None:
    pub = PublishedRates()
    rows = ids("a", "b", "c")
    first = np.array([1600, 0, 5])
    due = pub.due(lambda: rows, b"t1", first)
    assert due.tolist() == [True, True, True]
    pub.written(np.flatnonzero(due), first)
    # 1600 -> 1700 is 1/16; more than that is material; 0 -> 1 too.
    step = np.array([1600 + 1600 // PUBLISH_MOVED, 1, 5])
    assert pub.due(lambda: rows, b"t1", step).tolist() == [False, True, False]
    bigger = np.array([1600 + 1600 // PUBLISH_MOVED + 1, 0, 5])
    assert pub.due(lambda: rows, b"t1", bigger).tolist() == [True, False, False]


def test_a_rate_not_written_for_a_while_is_written_again() -> None:
    pub = PublishedRates()
    rows = ids("a")
    rate = np.array([1000])
    pub.written(np.flatnonzero(pub.due(lambda: rows, None, rate)), rate)
    dues = [bool(pub.due(lambda: rows, None, rate)[0]) for _ in range(PUBLISH_EVERY)]
    assert dues == [False] * (PUBLISH_EVERY - 1) + [True]


def test_what_was_written_follows_the_flows_when_the_rows_change() -> None:
    pub = PublishedRates()
    rate = np.array([100, 200])
    pub.written(np.flatnonzero(pub.due(lambda: ids("a", "b"), b"t1", rate)), rate)
    # "a" went away, "c" is new, "b" moved to the first row.
    due = pub.due(lambda: ids("b", "c"), b"t2", np.array([200, 300]))
    assert due.tolist() == [False, True]


@pytest.mark.parametrize("token", [None, b"same"])
def test_unwritten_rows_stay_due(token: bytes | None) -> None:
    pub = PublishedRates()
    rows = ids("a", "b")
    rate = np.array([100, 200])
    due = pub.due(lambda: rows, token, rate)
    pub.written(np.flatnonzero(due)[:1], rate)  # the write of "b" failed
    assert pub.due(lambda: rows, token, rate).tolist() == [False, True]
