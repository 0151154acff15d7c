"""Raft's tunables (``ConsensusConfig.options``), all in ticks, entries or bytes.

The paper's timing rule (§5.6) is broadcastTime << electionTimeout << MTBF. At the
hosts' default tick of 10 ms the defaults give a heartbeat every 30 ms and an election
timeout drawn uniformly from [150, 300) ms -- the paper's recommended range.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from giants.core.errors import LocalProtocolError

__all__ = ["RaftOptions"]


@dataclass(frozen=True)
class RaftOptions:
    # Election timeout: uniformly random in [election_ticks, election_timeout_max_ticks)
    # (0: 2 * election_ticks). election_ticks + 1 means no randomness (paper Fig. 16).
    election_ticks: int = 15
    election_timeout_max_ticks: int = 0
    # Leader heartbeat interval; well below election_ticks (§5.6).
    heartbeat_ticks: int = 3
    # Pre-Vote (dissertation §9.6): ask before bumping the term.
    pre_vote: bool = True
    # CheckQuorum: a leader that has not heard from a majority for an election timeout
    # steps down; followers that heard from a leader within one ignore vote requests.
    check_quorum: bool = True
    # Unacknowledged AppendEntries per follower (pipelining).
    max_inflight: int = 64
    # One AppendEntries carries at most this many entries / command bytes (batching).
    max_batch_entries: int = 512
    max_batch_bytes: int = 1024 * 1024
    # InstallSnapshot chunk size (paper Fig. 13: offset + data + done).
    snapshot_chunk_bytes: int = 64 * 1024
    # Entries kept before a snapshot, so a slightly lagging follower gets entries, not
    # a whole snapshot.
    snapshot_trailing_entries: int = 100
    # A learner is promoted only once its log is within this many entries of ours.
    promote_max_lag: int = 64
    # A replicating follower that acknowledged nothing for this long is probed again
    # (messages lost under pipelining).
    retry_ticks: int = 10
    # LEASE READS: serve reads without a heartbeat round while a quorum acknowledged us
    # within (election_ticks - lease_margin_ticks) ticks. Relies on bounded clock drift
    # between nodes (tick rates within the margin); off by default.
    lease_reads: bool = False
    lease_margin_ticks: int = 3

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> RaftOptions:
        """Raises ``LocalProtocolError`` for unknown keys or values of the wrong type."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(options) - set(known)
        if unknown:
            raise LocalProtocolError(f"unknown raft options {sorted(unknown)}; known: {sorted(known)}")
        for key, value in options.items():
            want = type(getattr(cls(), key))
            if type(value) is not want:
                raise LocalProtocolError(f"raft option {key} must be {want.__name__}, got {value!r}")
            if want is int and value < 1 and key not in (
                    "snapshot_trailing_entries", "lease_margin_ticks", "election_timeout_max_ticks"):
                raise LocalProtocolError(f"raft option {key} must be positive, got {value}")
        opts = cls(**options)
        if opts.election_timeout_max_ticks < 0:
            raise LocalProtocolError("election_timeout_max_ticks must not be negative")
        if opts.election_timeout_max_ticks and opts.election_timeout_max_ticks <= opts.election_ticks:
            raise LocalProtocolError("election_timeout_max_ticks must exceed election_ticks")
        if opts.lease_reads and not opts.check_quorum:
            raise LocalProtocolError("lease_reads needs check_quorum (voters must ignore "
                                     "elections while a leader is live)")
        if opts.lease_margin_ticks >= opts.election_ticks:
            raise LocalProtocolError("lease_margin_ticks must be below election_ticks")
        if opts.heartbeat_ticks >= opts.election_ticks:
            raise LocalProtocolError("heartbeat_ticks must be below election_ticks (§5.6)")
        return opts
