"""Helpers for real-process tests, the demo and the benchmark: start a cell through the
launcher (as ``giants up chubby`` does) and ask replicas who the master is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from giants.chubby._messages import MasterInfo, WhereIsMaster
from giants.core.errors import GiantsError
from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.transport import tcp

__all__ = ["start_cell", "find_master"]


def start_cell(data_dir: Path | str, replicas: int = 5, *, base_port: int = 0,
               **extra: Any) -> LocalCluster:
    """A started ``LocalCluster`` of ``replicas`` Chubby replicas (``extra``: cell
    options such as ``lease_s`` and ``consensus``)."""
    cluster = LocalCluster("chubby", UpOptions(replicas, base_port, str(data_dir),
                                               extra=dict(extra)))
    cluster.start()
    return cluster


async def find_master(endpoints: list[str], deadline_s: float = 20.0) -> tuple[str, int]:
    """``(master node id, epoch)`` once a replica names a master whose epoch is live
    (polls until the deadline; raises ``TimeoutError`` if none)."""
    with trio.fail_after(deadline_s):
        async with tcp.Client("chubby-finder") as client:
            while True:
                for address in endpoints:
                    try:
                        info = await client.request(address, WhereIsMaster(), timeout=0.5)
                    except GiantsError:
                        continue
                    if isinstance(info, MasterInfo) and info.master is not None:
                        return info.master, info.epoch
                await trio.sleep(0.05)
