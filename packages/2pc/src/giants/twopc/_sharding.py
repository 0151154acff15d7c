"""Key -> shard placement for the sharded transactional KV.

A key lives on shard ``crc32(key) mod N`` (a fixed hash partitioning: the shard count is
fixed when the cluster is created; resharding is out of scope). Shards are named
``shard-0`` .. ``shard-<N-1>``; the coordinator is ``coord-0`` (``coord-0..2`` when
replicated).
"""

from __future__ import annotations

import zlib

__all__ = ["shard_names", "shard_for", "coordinator_names"]


def shard_names(n: int) -> list[str]:
    return [f"shard-{i}" for i in range(n)]


def coordinator_names(n: int) -> list[str]:
    return [f"coord-{i}" for i in range(n)]


def shard_for(key: str, shards: list[str]) -> str:
    return shards[zlib.crc32(key.encode()) % len(shards)]
