"""The leader's side of Raft (paper §5.3-5.4, §7; dissertation ch. 3, 4, 6).

* Replication: per-follower ``Progress`` (``_progress.py``); AppendEntries are batched
  (``max_batch_entries``/``max_batch_bytes``) and pipelined (``max_inflight``). Within
  one host call -- the host hands a whole batch of client requests to the core with one
  ``Io`` -- proposals extend the AppendEntries already queued for a follower instead of
  queueing one message per command (the in-call half of batching).
* Fast back-off on rejection with the follower's conflict hint (§5.3, "the follower can
  include the term of the conflicting entry and the first index it stores for that
  term").
* Commit (§5.4.2): the largest index a majority of voters stores, *only if its term is
  the current term*; earlier entries commit with it. A new leader appends a no-op at the
  start of its term (§8) so this happens promptly.
* Commit notices (``notify_commit``): a follower learns the commit index from the
  leader's next message (§5.3); on request the leader sends one follower a heartbeat as
  soon as an entry is committed *and* stored there (for services whose other servers
  must apply a write before they answer for it).
* ReadIndex (dissertation §6.4): a read waits for the no-op to commit, records the
  commit index, and is released once a quorum acknowledged a heartbeat sent after it.
  Optional LEASE reads (§6.4.1) skip the round while a quorum acknowledged us recently;
  they rely on bounded clock drift and are off by default.
* CheckQuorum (§6.2): a leader that heard from no majority for an election timeout
  steps down.
* Snapshots (§7): a follower that needs compacted entries gets InstallSnapshot chunks.
* Membership (dissertation §4.1, single-server changes): ``add_learner`` (a non-voter
  that catches up), ``promote`` (only once it is within ``promote_max_lag`` entries),
  ``remove``. One change at a time, and only after the leader committed an entry of its
  own term (the dissertation's fix to the single-server bug). A leader that removes
  itself keeps leading until the change commits, not counting itself, then hands over
  with TimeoutNow and steps down (§4.2.2).
* Leadership transfer (§3.10): catch the target up, send TimeoutNow; no proposals in
  the meantime; abandoned after an election timeout.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from giants.core.consensus import Ready
from giants.core.envelope import Envelope
from giants.core.errors import Rejected
from giants.core.process import Io
from giants.raft._log import RaftLog, is_config
from giants.raft._messages import (
    AppendEntries,
    AppendReply,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    SnapshotReply,
    TimeoutNow,
)
from giants.raft._options import RaftOptions
from giants.raft._progress import PROBE, REPLICATE, SNAPSHOT, Progress, quorum, quorum_value

__all__ = ["LeaderMixin"]


class _CoreView(Protocol):
    """What the leader's half uses of ``RaftCore`` (for the type checker only)."""

    node_id: str
    term: int
    role: str
    leader_id: str | None
    log: RaftLog
    commit: int
    opts: RaftOptions
    voters: dict[str, str]
    learners: dict[str, str]
    snapshot: tuple[int, int, dict[str, str], dict[str, str], bytes] | None
    _ready: Ready
    _log_ns: str
    _conf_entries: list[tuple[int, dict[str, Any]]]
    _election_elapsed: int

    def _become_follower(self, io: Io, term: int, leader: str | None) -> None: ...
    def _refresh_config(self) -> None: ...
    def _hand_out(self) -> None: ...
    def _reject(self, io: Io, env: Envelope, reason: str, detail: str = "") -> None: ...
    def _new_progress(self) -> Progress: ...


if TYPE_CHECKING:
    _Base = _CoreView
else:
    _Base = object

LEADER = "leader"
CANDIDATE = "candidate"


class LeaderMixin(_Base):
    """Leader state and transitions; mixed into ``RaftCore``."""

    leader_id: str | None
    role: str
    commit: int

    def _init_leader_state(self) -> None:
        self.progress: dict[str, Progress] = {}
        self._ticks = 0
        self._heartbeat_elapsed = 0
        self._seq = 0
        self._pending_reads: deque[tuple[int, int, int]] = deque()
        self._reads_before_noop: list[int] = []
        self._noop_index = 0
        self._pending_conf_index = 0
        self._transfer: str | None = None
        self._transfer_elapsed = 0
        self._batch_io: Io | None = None
        self._batch_pos: dict[str, int] = {}
        self._read_io: Io | None = None
        self._lease_until = 0
        self._lease_term = 0      # a term in which leases are off (a transfer was started)
        self._seq_ticks: dict[int, int] = {}
        self._commit_notices: dict[str, int] = {}   # follower -> index it waits for

    # -- becoming and stopping -------------------------------------------------------

    def _become_leader(self, io: Io) -> None:
        assert self.role == CANDIDATE, f"{self.node_id}: leader from {self.role}"
        self.role = LEADER
        self.leader_id = self.node_id
        self.progress = {}
        self._sync_progress()
        self._heartbeat_elapsed = self._election_elapsed = 0
        self._transfer = None
        self._lease_until = 0
        io.trace("leader", term=self.term, last_index=self.log.last_index)
        self._noop_index = self._append(io, None)
        self._pending_conf_index = self._noop_index
        self._replicate(io)

    def _stop_leading(self, io: Io) -> None:
        failed = self._ready.failed_reads
        failed.extend(token for token, _, _ in self._pending_reads)
        failed.extend(self._reads_before_noop)
        self._pending_reads.clear()
        self._reads_before_noop = []
        self.progress = {}
        self._transfer = None
        self._batch_io = self._read_io = None
        self._seq_ticks.clear()
        self._commit_notices.clear()

    def _sync_progress(self) -> None:
        members = set(self.voters) | set(self.learners)
        members.discard(self.node_id)
        for gone in set(self.progress) - members:
            del self.progress[gone]
            self._commit_notices.pop(gone, None)
        for new in sorted(members - set(self.progress)):
            self.progress[new] = self._new_progress()

    # -- ticks ------------------------------------------------------------------------

    def _tick_leader(self, io: Io) -> None:
        opts = self.opts
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        for pr in self.progress.values():
            pr.ticks_since_ack += 1
        if self._transfer is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= opts.election_ticks:
                io.probe("raft.transfer.abandoned")
                self._transfer = None
        if self._election_elapsed >= opts.election_ticks:
            self._election_elapsed = 0
            if opts.check_quorum and not self._quorum_active():
                io.probe("raft.check_quorum.step_down")
                self._become_follower(io, self.term, None)
                return
            for pr in self.progress.values():
                pr.recent_active = False
        if self._heartbeat_elapsed >= opts.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat(io)

    def _quorum_active(self) -> bool:
        active = sum(1 for v in self.voters
                     if v == self.node_id or (v in self.progress and self.progress[v].recent_active))
        return active >= quorum(len(self.voters))

    def _broadcast_heartbeat(self, io: Io) -> None:
        self._seq += 1
        if self.opts.lease_reads:
            self._seq_ticks[self._seq] = self._ticks
        retry = self.opts.retry_ticks
        for peer, pr in self.progress.items():
            io.send(peer, Heartbeat(self.term, min(pr.match, self.commit), self._seq))
            if pr.state == PROBE:
                pr.paused = False
                self._send_append(io, peer, pr)
            elif pr.ticks_since_ack >= retry and (
                    pr.state == SNAPSHOT or pr.match < pr.next - 1):
                pr.ticks_since_ack = 0
                io.probe(f"raft.retry.{pr.state}")
                if pr.state == SNAPSHOT:
                    self._send_chunk(io, peer, pr)
                else:
                    pr.become_probe()
                    self._send_append(io, peer, pr)

    # -- appending and replicating ----------------------------------------------------

    def _append(self, io: Io, data: Any) -> int:
        index = self.log.append(self.term, data)
        io.put(self._log_ns, index, [self.term, data])
        if is_config(data):
            self._conf_entries.append((index, data))
            self._refresh_config()
        return index

    def _replicate(self, io: Io) -> None:
        for peer, pr in self.progress.items():
            self._send_more(io, peer, pr)
        self._maybe_commit(io)

    def _send_more(self, io: Io, peer: str, pr: Progress) -> None:
        if pr.state == REPLICATE:
            last, cap = self.log.last_index, self.opts.max_inflight
            while pr.state == REPLICATE and pr.next <= last and pr.inflight < cap:
                self._send_append(io, peer, pr)    # may switch it to SNAPSHOT
        elif pr.state == PROBE and not pr.paused:
            self._send_append(io, peer, pr)

    def _send_append(self, io: Io, peer: str, pr: Progress) -> None:
        prev = pr.next - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None:
            assert self.snapshot is not None and prev < self.log.base_index
            io.probe("raft.snapshot.send")
            pr.become_snapshot(self.snapshot)
            pr.ticks_since_ack = 0
            self._send_chunk(io, peer, pr)
            return
        opts, log_ = self.opts, self.log
        if pr.state == REPLICATE and self._batch_io is io and pr.next <= log_.last_index:
            pos = self._batch_pos.get(peer)
            if pos is not None:
                env = io.sends[pos]
                m = env.body
                if m.prev_index + len(m.entries) == prev and len(m.entries) < opts.max_batch_entries:
                    more = log_.slice(pr.next, opts.max_batch_entries - len(m.entries),
                                      opts.max_batch_bytes)
                    io.sends[pos] = replace(env, body=replace(
                        m, entries=m.entries + more, commit=self.commit))
                    pr.next += len(more)
                    return
        entries = (log_.slice(pr.next, opts.max_batch_entries, opts.max_batch_bytes)
                   if pr.next <= log_.last_index else [])
        io.send(peer, AppendEntries(self.term, prev, prev_term, entries, self.commit, self._seq))
        if self._batch_io is not io:
            self._batch_io, self._batch_pos = io, {}
        self._batch_pos[peer] = len(io.sends) - 1
        if pr.state == REPLICATE:
            pr.next += len(entries)
            pr.inflight += 1
        else:
            pr.paused = True

    def _send_chunk(self, io: Io, peer: str, pr: Progress) -> None:
        assert pr.snap is not None
        index, term, voters, learners, data = pr.snap
        off = pr.snap_offset
        chunk = data[off:off + self.opts.snapshot_chunk_bytes]
        done = off + len(chunk) >= len(data)
        io.send(peer, InstallSnapshot(self.term, index, term, voters, learners, off, chunk, done))

    # -- replies ----------------------------------------------------------------------

    def _leader_progress(self, io: Io, env: Envelope, seq: int) -> Progress | None:
        """The sender's progress, after the checks every reply to a leader gets."""
        if self.role != LEADER:
            return None
        pr = self.progress.get(env.source)
        if pr is None:
            return None
        if seq > self._seq:
            self._reject(io, env, "malformed", f"seq {seq} never sent")
            return None
        pr.recent_active = True
        if seq > pr.acked_seq:
            pr.acked_seq = seq
        return pr

    def _on_append_reply(self, io: Io, env: Envelope, m: AppendReply) -> None:
        if m.success and m.index > self.log.last_index and self.role == LEADER:
            self._reject(io, env, "beyond_log", f"acknowledged {m.index} > {self.log.last_index}")
            return
        pr = self._leader_progress(io, env, m.seq)
        if pr is None:
            return
        src = env.source
        if m.success:
            pr.ticks_since_ack = 0
            if m.index > pr.match:
                pr.match = m.index
            if pr.state == PROBE:
                pr.become_replicate()
            elif pr.state == REPLICATE:
                pr.inflight = max(0, pr.inflight - 1)
                pr.next = max(pr.next, pr.match + 1)
            self._maybe_commit(io)
            if self.role != LEADER:
                return
            if self._commit_notices:
                self._send_commit_notices(io)
            if self._transfer == src and pr.match == self.log.last_index:
                io.send(src, TimeoutNow(self.term))
            self._send_more(io, src, pr)
        elif self._is_fresh_rejection(pr, m):
            io.probe("raft.append.back_off")
            hint = m.conflict_index
            if m.conflict_term > 0:
                ours = self.log.last_index_of_term(m.conflict_term)
                if ours is not None:
                    hint = ours + 1
            pr.become_probe()
            pr.next = max(pr.match + 1, min(hint, m.index))
            self._send_append(io, src, pr)
        self._check_reads(io)

    @staticmethod
    def _is_fresh_rejection(pr: Progress, m: AppendReply) -> bool:
        if pr.state == REPLICATE:
            return m.index > pr.match
        return pr.state == PROBE and m.index == pr.next - 1

    def _on_heartbeat_reply(self, io: Io, src: str, m: HeartbeatReply) -> None:
        pr = self._leader_progress(io, Envelope(src, self.node_id, 0, None, m), m.seq)
        if pr is not None:
            self._check_reads(io)

    def _on_snapshot_reply(self, io: Io, env: Envelope, m: SnapshotReply) -> None:
        pr = self._leader_progress(io, env, 0)
        if pr is None:
            return
        if pr.state != SNAPSHOT or pr.snap is None or m.last_index != pr.snap[0]:
            io.probe("raft.snapshot.stale_reply")
            return
        if m.next_offset > len(pr.snap[4]):
            self._reject(io, env, "beyond_log", f"offset {m.next_offset}")
            return
        pr.ticks_since_ack = 0
        if m.done:
            pr.match = max(pr.match, m.last_index)
            pr.become_probe()
            self._send_append(io, env.source, pr)
        else:
            pr.snap_offset = m.next_offset
            self._send_chunk(io, env.source, pr)

    # -- commit -----------------------------------------------------------------------

    def _maybe_commit(self, io: Io) -> None:
        if self.role != LEADER:
            return
        matches = {p: pr.match for p, pr in self.progress.items()}
        matches[self.node_id] = self.log.last_index
        index = quorum_value(self.voters, matches)
        if index <= self.commit or self.log.term_at(index) != self.term:
            return
        self.commit = index
        self._hand_out()
        if self._reads_before_noop and self.commit >= self._noop_index:
            waiting, self._reads_before_noop = self._reads_before_noop, []
            for token in waiting:
                self._start_read(io, token)
        if self.node_id not in self.voters and self.commit >= self._pending_conf_index:
            self._step_down_removed(io)

    def _step_down_removed(self, io: Io) -> None:
        """§4.2.2: the configuration without us committed; hand over and step down."""
        io.probe("raft.leader_removed")
        best = max(self.voters, key=lambda v: self.progress[v].match if v in self.progress else -1)
        if best in self.progress and self.progress[best].match == self.log.last_index:
            io.send(best, TimeoutNow(self.term))
        for peer, pr in self.progress.items():   # let everyone learn the final commit index
            io.send(peer, Heartbeat(self.term, min(pr.match, self.commit), self._seq))
        self._become_follower(io, self.term, None)

    # -- commit notices -----------------------------------------------------------------

    def notify_commit(self, io: Io, peer: str, index: int) -> None:
        """One ``Heartbeat`` to ``peer`` as soon as entry ``index`` is committed and
        stored there (module docstring). Nothing unless we lead and ``peer`` is a
        member; a pending request is dropped when we stop leading."""
        if self.role != LEADER or peer not in self.progress:
            return
        if index > self._commit_notices.get(peer, -1):
            self._commit_notices[peer] = index
        self._send_commit_notices(io)

    def _send_commit_notices(self, io: Io) -> None:
        for peer, index in list(self._commit_notices.items()):
            known = min(self.progress[peer].match, self.commit)    # what a heartbeat may carry (§5.3)
            if known >= index:   # current seq: its reply confirms nothing sent earlier
                del self._commit_notices[peer]
                io.probe("raft.commit_notice")
                io.send(peer, Heartbeat(self.term, known, self._seq))

    # -- reads (ReadIndex, optional lease) -----------------------------------------------

    def _read(self, io: Io, token: int) -> None:
        if self.commit < self._noop_index:
            self._reads_before_noop.append(token)
            return
        self._start_read(io, token)

    def _start_read(self, io: Io, token: int) -> None:
        index = self.commit
        if list(self.voters) == [self.node_id]:
            self._ready.reads.append((token, index))
            return
        if (self.opts.lease_reads and self._lease_term != self.term
                and self._ticks < self._lease_until):
            io.probe("raft.read.lease")
            self._ready.reads.append((token, index))
            return
        if self._read_io is not io:
            self._read_io = io
            self._broadcast_heartbeat(io)
        self._pending_reads.append((token, index, self._seq))

    def _check_reads(self, io: Io) -> None:
        if not self._pending_reads and not self.opts.lease_reads:
            return
        acked = {p: pr.acked_seq for p, pr in self.progress.items()}
        acked[self.node_id] = self._seq
        confirmed = quorum_value(self.voters, acked)
        pending = self._pending_reads
        while pending and pending[0][2] <= confirmed:
            token, index, _ = pending.popleft()
            self._ready.reads.append((token, index))
        if self.opts.lease_reads and confirmed in self._seq_ticks:
            sent = self._seq_ticks[confirmed]
            self._lease_until = max(self._lease_until, sent + self.opts.election_ticks
                                    - self.opts.lease_margin_ticks)
            for s in [s for s in self._seq_ticks if s <= confirmed]:
                del self._seq_ticks[s]

    # -- membership and transfer ------------------------------------------------------

    def _change_config(self, io: Io, op: str, node: str, address: str | None) -> None:
        if self.commit < self._noop_index:
            raise Rejected("the leader has not committed an entry of its term yet")
        if self._pending_conf_index > self.commit:
            raise Rejected("a configuration change is still uncommitted")
        voters, learners = dict(self.voters), dict(self.learners)
        if op == "add_learner":
            if not address:
                raise Rejected("add_learner needs an address")
            if node in voters or node in learners:
                raise Rejected(f"{node} is already a member")
            learners[node] = address
        elif op == "promote":
            if node not in learners:
                raise Rejected(f"{node} is not a learner")
            match = self.progress[node].match
            if match + self.opts.promote_max_lag < self.log.last_index:
                raise Rejected(f"{node} is still catching up ({match} of {self.log.last_index})")
            voters[node] = learners.pop(node)
        elif op == "remove":
            if node in voters:
                if len(voters) == 1:
                    raise Rejected("cannot remove the last voter")
                del voters[node]
            elif node in learners:
                del learners[node]
            else:
                raise Rejected(f"{node} is not a member")
        else:
            raise Rejected(f"unknown membership operation {op!r}")
        self._pending_conf_index = self._append(io, {"voters": voters, "learners": learners})
        io.trace("config", index=self._pending_conf_index, voters=sorted(voters),
                 learners=sorted(learners))
        self._replicate(io)

    def transfer_leadership(self, io: Io, target: str) -> None:
        """Hand leadership to voter ``target`` (§3.10). Raises ``Rejected``."""
        if target == self.node_id:
            return
        if target not in self.voters:
            raise Rejected(f"{target} is not a voter")
        self._transfer, self._transfer_elapsed = target, 0
        # the target may campaign (bypassing leases) whenever TimeoutNow arrives, even
        # after we gave up waiting: no lease reads for the rest of this term
        self._lease_term = self.term
        io.trace("transfer", to=target)
        pr = self.progress[target]
        if pr.match == self.log.last_index:
            io.send(target, TimeoutNow(self.term))
        else:
            self._send_more(io, target, pr)
