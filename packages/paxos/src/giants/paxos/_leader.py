"""The Multi-Paxos leader's work: proposing, counting, reads, heartbeats, catch-up.

"Paxos Made Simple" §3 (steady state: phase 2 only; pipelining within the window) and
"Paxos Made Live" §5 (catch-up, leases). ``LeaderRole`` is a mixin of ``MultiPaxos``
(``_core.py``), which owns the state and the role transitions; these methods only run
while ``role == "leader"`` (asserted where it matters).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from giants.core.consensus import Ready
from giants.core.envelope import Envelope
from giants.core.process import Io
from giants.paxos._config import Config
from giants.paxos._log import ZERO, PaxosLog
from giants.paxos._messages import Accept, Accepted, Ballot, Learn, Prepare, Promise, WireEntry

__all__ = ["LeaderRole", "Value", "NOOP", "MAX_LEARN_ENTRIES"]

Value = tuple[str, bytes | None]
NOOP: Value = ("noop", None)
# Chosen values per Learn message: bounds one catch-up message; more follow next heartbeat.
MAX_LEARN_ENTRIES = 512


class LeaderRole:
    """Leader-side methods of ``MultiPaxos`` (see the module docstring)."""

    node_id: str
    role: str
    ballot: Ballot
    log: PaxosLog
    alpha: int
    heartbeat_ticks: int
    election_ticks: int
    lease_s: float
    ticks: int
    last_send_tick: int
    promises: dict[str, Promise]
    next_slot: int
    recovery: dict[int, tuple[Ballot, Value]]
    recovery_end: int
    proposals: dict[int, Value]
    proposed_at: dict[int, int]
    votes: dict[int, set[str]]
    queue: deque[Value]
    peer_prefix: dict[str, int]
    peer_ack_tick: dict[str, int]
    peer_seq: dict[str, int]
    hb_seq: int
    hb_sent_at: dict[int, float]
    last_hb_tick: int
    prev_hb_commit: int
    reads: deque[tuple[int, int, int]]
    lease_until: float
    confirmed_seq: int
    _ready: Ready
    _accept_io: Io | None                 # the call whose Accepts new proposals join
    _accept_pos: dict[str, int]           # peer -> index of its Accept in that call

    if TYPE_CHECKING:  # provided by MultiPaxos
        def _window_configs(self) -> list[Config]: ...
        def _peers(self) -> set[str]: ...
        def _advance(self, io: Io, ballot: Ballot | None, commit: int) -> None: ...
        def _become_follower(self, io: Io, why: str, leader: str | None = None) -> None: ...

    def _pump(self, io: Io) -> None:
        """Propose as many slots as the window, the configurations and the queue allow."""
        if self.role != "leader":
            return
        batch: list[WireEntry] = []
        while self.next_slot <= self.log.prefix + self.alpha:
            slot = self.next_slot
            config = self.log.configs.at(slot)
            if not config.is_quorum(self.promises):
                self._prepare_new_voters(io, config)
                break
            if slot <= self.recovery_end:
                value = self.recovery.pop(slot, (ZERO, NOOP))[1]
            elif self.queue:
                value = self.queue.popleft()
            elif slot < self.log.configs.latest_slot():
                value = NOOP  # padding: let a chosen configuration take effect
            else:
                break
            self._propose_slot(io, slot, value)
            batch.append((slot, value[0], value[1]))
            self.next_slot += 1
        if batch:
            self._send_accepts(io, batch)
            self._check_chosen(io, [s for s, _, _ in batch])

    def _propose_slot(self, io: Io, slot: int, value: Value) -> None:
        assert self.log.promised == self.ballot, f"{self.node_id}: leading below its promise"
        self.proposals[slot] = value
        self.proposed_at[slot] = self.ticks
        self.votes[slot] = set()
        if self.log.accept(io, slot, self.ballot, value[0], value[1]):
            self.votes[slot].add(self.node_id)

    def _send_accepts(self, io: Io, entries: list[WireEntry], only: set[str] | None = None) -> None:
        """Send ``entries`` to the peers (``only``: to those). New proposals made in one
        host call (a batch of client requests) share one Accept per peer: one message
        and one follower fsync for the whole batch."""
        merge = only is None and bool(entries)
        if merge and self._accept_io is not io:
            self._accept_io, self._accept_pos = io, {}
        msg = Accept(self.ballot, entries, self.log.prefix, self.hb_seq)
        for peer in sorted(self._peers()):
            if only is not None and peer not in only:
                continue
            pos = self._accept_pos.get(peer) if merge else None
            if pos is None:
                io.send(peer, msg)
                if merge:
                    self._accept_pos[peer] = len(io.sends) - 1
                continue
            old = io.sends[pos]
            assert isinstance(old.body, Accept) and old.target == peer
            body = Accept(self.ballot, [*old.body.entries, *entries], self.log.prefix, self.hb_seq)
            io.sends[pos] = Envelope(old.source, old.target, old.msg_id, None, body)

    def _prepare_new_voters(self, io: Io, config: Config) -> None:
        if self.ticks - self.last_send_tick < self.heartbeat_ticks and self.last_send_tick:
            return
        self.last_send_tick = self.ticks
        for node in sorted(set(config.voters) - set(self.promises)):
            io.send(node, Prepare(self.ballot, self.next_slot))

    def _on_accepted(self, io: Io, src: str, m: Accepted) -> None:
        if self.role != "leader" or m.ballot != self.ballot:
            return
        self.peer_prefix[src] = max(self.peer_prefix.get(src, 0), m.prefix)
        self.peer_ack_tick[src] = self.ticks
        if m.seq > self.peer_seq.get(src, 0):
            self.peer_seq[src] = m.seq
            self._confirm_round(io)
        for slot in m.slots:
            if slot in self.votes:
                self.votes[slot].add(src)
        self._check_chosen(io, m.slots)

    def _check_chosen(self, io: Io, slots: list[int]) -> None:
        for slot in slots:
            voters = self.votes.get(slot)
            if voters is not None and self.log.configs.at(slot).is_quorum(voters):
                self.log.chosen_ahead.add(slot)
                del self.votes[slot]
        before = self.log.prefix
        self._advance(io, None, 0)
        if self.log.prefix > before:
            for slot in range(before + 1, self.log.prefix + 1):
                self.proposals.pop(slot, None)
                self.proposed_at.pop(slot, None)
            self._release_reads()
            self._pump(io)

    def _heartbeat(self, io: Io) -> None:
        self.hb_seq += 1
        self.hb_sent_at[self.hb_seq] = io.now
        self.last_hb_tick = self.ticks
        self._send_accepts(io, [])
        self._confirm_round(io)

    def _confirm_round(self, io: Io) -> None:
        """Release reads (and extend the lease) for the heartbeat round a majority of
        every window configuration acknowledged."""
        confirmed = self.hb_seq
        for config in self._window_configs():
            seqs = sorted((self.hb_seq if v == self.node_id else self.peer_seq.get(v, 0)
                           for v in config.voters), reverse=True)
            confirmed = min(confirmed, seqs[config.quorum() - 1] if seqs else 0)
        if confirmed <= 0:
            return
        if self.lease_s > 0 and confirmed in self.hb_sent_at:
            self.lease_until = max(self.lease_until, self.hb_sent_at[confirmed] + self.lease_s)
        for seq in [s for s in self.hb_sent_at if s <= confirmed]:
            del self.hb_sent_at[seq]
        if confirmed <= self.confirmed_seq:
            return
        self.confirmed_seq = confirmed
        self._release_reads()
        if self.reads and self.reads[-1][2] > self.hb_seq:
            self._heartbeat(io)

    def _release_reads(self) -> None:
        while self.reads and self.reads[0][2] <= self.confirmed_seq:
            token, read_index, _ = self.reads.popleft()
            self._ready.reads.append((token, read_index))

    def _leader_tick(self, io: Io) -> None:
        if self.ticks - self.last_hb_tick >= self.heartbeat_ticks:
            self._catch_up_peers(io)
            self._resend_stalled(io)
            self._heartbeat(io)
            self.prev_hb_commit = self.log.prefix
        if self.ticks % self.election_ticks == 0:
            alive = {p for p, t in self.peer_ack_tick.items()
                     if self.ticks - t <= 2 * self.election_ticks} | {self.node_id}
            if not all(c.is_quorum(alive) for c in self._window_configs()):
                io.probe("paxos.leader_lost_quorum")
                self._become_follower(io, "lost contact with a majority")

    def _resend_stalled(self, io: Io) -> None:
        stalled = [s for s, t in self.proposed_at.items() if self.ticks - t >= 2 * self.heartbeat_ticks]
        if not stalled:
            return
        io.probe("paxos.accept_resent")
        entries = [(s, *self.proposals[s]) for s in sorted(stalled)]
        voted_all = set(self._peers())
        for s in stalled:
            voted_all &= self.votes.get(s, set())
        missing = set(self._peers()) - voted_all
        for s in stalled:
            self.proposed_at[s] = self.ticks
        self._send_accepts(io, entries, only=missing)

    def _catch_up_peers(self, io: Io) -> None:
        for peer in sorted(self._peers()):
            if self.peer_prefix.get(peer, 0) < self.prev_hb_commit:
                io.probe("paxos.catch_up_pushed")
                self._send_learn(io, peer, self.peer_prefix.get(peer, 0) + 1)

    def _send_learn(self, io: Io, dst: str, from_slot: int) -> None:
        snap = self.log.snapshot
        if snap is not None and from_slot <= snap[0]:
            entries = self.log.chosen_entries(snap[0] + 1, snap[0] + MAX_LEARN_ENTRIES)
            io.send(dst, Learn(snap[0], snap[1], self.log.configs.records(), entries))
            return
        entries = self.log.chosen_entries(from_slot, from_slot + MAX_LEARN_ENTRIES - 1)
        if entries or self.role == "leader":
            io.send(dst, Learn(0, None, self.log.configs.records(), entries))

    def _change_pending(self) -> bool:
        if self.log.configs.latest_slot() > self.next_slot:
            return True
        in_flight = [*self.queue, *self.proposals.values(), *(v for _, v in self.recovery.values())]
        return any(kind == "conf" for kind, _ in in_flight)
