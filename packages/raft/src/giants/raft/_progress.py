"""The leader's view of each follower (paper Fig. 2: nextIndex[], matchIndex[]) and
quorum arithmetic.

A follower's progress is in one of three states, as in etcd-io/raft:

* ``PROBE``     -- we do not know where its log matches ours: one AppendEntries at a
  time, resent each heartbeat interval, walking ``next`` back with the conflict hint;
* ``REPLICATE`` -- it matches: AppendEntries are pipelined, ``next`` advances as they
  are sent, at most ``max_inflight`` unacknowledged;
* ``SNAPSHOT``  -- it needs entries we compacted away: InstallSnapshot chunks, one in
  flight at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Progress", "PROBE", "REPLICATE", "SNAPSHOT", "quorum", "quorum_value"]

PROBE = "probe"
REPLICATE = "replicate"
SNAPSHOT = "snapshot"


@dataclass
class Progress:
    next: int
    match: int = 0
    state: str = PROBE
    inflight: int = 0
    paused: bool = False
    acked_seq: int = 0
    recent_active: bool = False
    ticks_since_ack: int = 0
    # the snapshot being sent: (index, term, voters, learners, data) and the next offset
    snap: tuple[int, int, dict[str, str], dict[str, str], bytes] | None = None
    snap_offset: int = 0

    def become_probe(self) -> None:
        self.state, self.inflight, self.paused, self.snap = PROBE, 0, False, None
        self.next = self.match + 1

    def become_replicate(self) -> None:
        self.state, self.inflight, self.paused, self.snap = REPLICATE, 0, False, None
        self.next = self.match + 1

    def become_snapshot(self, snap: tuple[int, int, dict[str, str], dict[str, str], bytes]) -> None:
        self.state, self.inflight, self.paused = SNAPSHOT, 0, False
        self.snap, self.snap_offset = snap, 0


def quorum(voters: int) -> int:
    """Votes or acknowledgements that make a majority of ``voters``."""
    return voters // 2 + 1


def quorum_value(voters: Iterable[str], values: Mapping[str, int], default: Any = 0) -> int:
    """The largest ``v`` such that a majority of ``voters`` has ``values[x] >= v``
    (the commit rule of §5.3/§5.4 applied to matchIndex, or to acknowledged seqs)."""
    vs = sorted((values.get(v, default) for v in voters), reverse=True)
    if not vs:
        return 0
    return int(vs[quorum(len(vs)) - 1])
