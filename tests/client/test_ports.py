"""hepsonic_client.free_port: loopback ports that no outgoing connection can take first."""

from __future__ import annotations

import socket

import pytest

import hepsonic_client._ports as ports_module
from hepsonic_client import free_port


def test_ports_are_bindable_distinct_and_below_the_ephemeral_range() -> None:
    ephemeral_start = ports_module._ephemeral_start()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10_000 <= port < ephemeral_start for port in ports)
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_or_handed_out_before_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    handed_out = free_port()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe,
    ):
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        probe.bind(("127.0.0.1", 0))
        expected = probe.getsockname()[1]
        probe.close()  # free again, and never handed out
        candidates = iter([taken.getsockname()[1], handed_out, expected])
        monkeypatch.setattr(ports_module.random, "randint", lambda _low, _high: next(candidates))
        monkeypatch.setattr(ports_module, "_ephemeral_start", lambda: 65_535)
        assert free_port() == expected
