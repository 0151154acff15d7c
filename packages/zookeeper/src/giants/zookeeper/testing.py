"""Helpers for real-process tests, the demo and the benchmark: start an ensemble through
the launcher (as ``giants up zookeeper`` does), ask servers four-letter words, find the
leader. Blocking code (it polls with deadlines), for use outside trio."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions

__all__ = ["start_ensemble", "four_letter", "leader_of", "wait_until"]


def start_ensemble(data_dir: Path | str, nodes: int = 3, *, tick_ms: int = 200,
                   base_port: int = 0, **extra: Any) -> LocalCluster:
    """A started ``LocalCluster`` of ``nodes`` servers (``tick_ms``: ZooKeeper's
    tickTime; sessions may time out in [2, 20] ticks)."""
    cluster = LocalCluster("zookeeper", UpOptions(nodes, base_port, str(data_dir),
                                                  extra={"tick_ms": tick_ms, **extra}))
    cluster.start()
    return cluster


def four_letter(address: str, word: bytes, timeout: float = 2.0) -> str:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(word)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


def leader_of(addresses: list[str], deadline_s: float = 20.0) -> str:
    """The client address of the server that says it leads (polls until the deadline;
    raises ``AssertionError`` if none does)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for a in addresses:
            try:
                if "Mode: leader" in four_letter(a, b"srvr"):
                    return a
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("no leader within the deadline")


def wait_until(pred: Any, timeout: float = 30.0, poll_s: float = 0.05) -> None:
    """Poll ``pred()`` until it is true; exceptions count as "not yet" until the
    deadline, when the last one propagates (or ``AssertionError`` if it was False)."""
    end = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return
        except Exception:
            if time.monotonic() > end:
                raise
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(poll_s)
