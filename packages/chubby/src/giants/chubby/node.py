"""The trio driver of a Chubby replica: the ``ChubbyReplica`` core hosted by
``giants.core.host.run_process`` on one TCP port (peers and clients alike) and a SQLite
store in its data directory. It decides nothing.

Config (written by ``plugin.plan``)::

    {"node_id": "chubby-0", "listen": "127.0.0.1:P", "peers": {"chubby-0": "127.0.0.1:P",...},
     "data_dir": ".giants/chubby/chubby-0", "tick_s": 0.01, "consensus": "raft",
     "options": {...consensus options...}, "cell": {"lease_s": 12.0, ...},
     "storage_url": null}
"""

from __future__ import annotations

from typing import Any

import trio

from giants.chubby._master import CellOptions, ChubbyReplica
from giants.core.consensus import ConsensusConfig
from giants.core.host import run_process
from giants.core.plugins import load_registry
from giants.core.process import Durable
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.transport import tcp

__all__ = ["serve_replica"]


async def serve_replica(config: dict[str, Any],
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one replica until cancelled."""
    node_id = config["node_id"]
    peers = dict(config["peers"])
    consensus = load_registry().consensus(str(config.get("consensus", "raft")))
    cconfig = ConsensusConfig(node_id=node_id, peers=peers,
                              options=dict(config.get("options", {})))
    cell = CellOptions.from_dict(dict(config.get("cell", {})))
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    store = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)

    def factory(durable: Durable) -> ChubbyReplica:
        return ChubbyReplica(consensus, cconfig, durable, cell)

    try:
        async with tcp.serve(node_id, listen=config["listen"], peers=peers) as ep:
            await run_process(factory, node_id=node_id, endpoint=ep, store=store,
                              tick_s=float(config.get("tick_s", 0.01)), task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await store.close()
        data_dir.unlock()
