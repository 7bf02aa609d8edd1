"""Settings shared by every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import netmon.names


@pytest.fixture(autouse=True)
def no_lookups_to_the_machines_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never send reverse lookups to the machine's resolver: in this
    process, netmon's default lookup finds no name. (Real lookups are tested
    in a private mount namespace with its own /etc/hosts and resolv.conf:
    tests/kernel/test_names_live.py; netmon run as a command by the other
    tests gets --numeric.)"""
    monkeypatch.setattr(netmon.names, "reverse_lookup", lambda ip: None)
    yield
