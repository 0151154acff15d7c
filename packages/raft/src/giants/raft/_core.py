"""``RaftCore``: Raft as a sans-I/O ``ConsensusCore`` (Ongaro & Ousterhout, ATC 2014;
Ongaro's dissertation, 2014). Elections, the follower side of replication, recovery,
snapshots installed from a leader, and the public ``ConsensusCore`` API live here; the
leader's side (replication, commit, ReadIndex, snapshot sending, transfer) is in
``_leader.py``.

State (paper Fig. 2): ``term`` and ``vote`` are persisted in ``<ns>.hard`` (key
``"hs"`` -> ``[term, vote]``), the log in ``<ns>.log`` (index -> ``[term, data]``), the
latest snapshot in ``<ns>.snap`` (``"snap"`` -> ``[index, term, voters, learners, data,
base_index, base_term]``). ``commit`` and ``applied`` are volatile; after a restart the
durable snapshot is handed out first (``Ready.snapshot``) and entries after it again as
they are learned to be committed.

Ordering contract (``giants.core.process``): every durable change is recorded with
``io.put``/``io.delete_range`` *before* the message that depends on it (a vote, an
append acknowledgement) in the same call, and the host persists a call's writes before
its messages leave -- so term, vote and log are durable before any reply (§5.1, Fig. 2).

Bad input: a message from a node outside the configuration, with a stale term, with an
index beyond the log or a malformed body is rejected (a log line, a probe, a trace
event) and changes nothing. A stale-term request is answered with our term so the
sender steps down (§5.1).

Roles change only through ``_become_*`` methods, which assert the legal prior role.
"""

from __future__ import annotations

import logging
from typing import Any

from giants.core.consensus import ConsensusConfig, Entry, Membership, Ready
from giants.core.envelope import Envelope
from giants.core.errors import NotLeader, Rejected
from giants.core.process import Durable, Io
from giants.raft._leader import LeaderMixin
from giants.raft._log import RaftLog, is_config
from giants.raft._messages import (
    RAFT_MESSAGES,
    AppendEntries,
    AppendReply,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    RequestVote,
    SnapshotReply,
    TimeoutNow,
    VoteReply,
)
from giants.raft._options import RaftOptions
from giants.raft._progress import Progress, quorum
from giants.raft._validate import validate

__all__ = ["RaftCore", "FOLLOWER", "PRE_CANDIDATE", "CANDIDATE", "LEADER", "raft_factory"]

log = logging.getLogger("giants.raft")

FOLLOWER = "follower"
PRE_CANDIDATE = "pre_candidate"
CANDIDATE = "candidate"
LEADER = "leader"

# A snapshot being received is held in memory; refuse one larger than this.
MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024

_FROM_LEADER = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow)


class RaftCore(LeaderMixin):
    """One Raft server. See the module docstring."""

    def __init__(self, config: ConsensusConfig, durable: Durable) -> None:
        self.node_id = config.node_id
        self.opts = RaftOptions.from_dict(dict(config.options))
        self._hard_ns, self._log_ns, self._snap_ns = (
            f"{config.ns}.hard", f"{config.ns}.log", f"{config.ns}.snap")
        hs = durable.get(self._hard_ns, "hs")
        self.term: int = hs[0] if hs else 0
        self.vote: str | None = hs[1] if hs else None
        self.role: str = FOLLOWER
        self.leader_id: str | None = None
        self.log = RaftLog()
        self.commit: int = 0
        self._handed = 0          # last index handed out in Ready.entries (lastApplied)
        self._ready = Ready()
        self.snapshot: tuple[int, int, dict[str, str], dict[str, str], bytes] | None = None
        self._base_config: tuple[dict[str, str], dict[str, str]] = (
            ({} if config.join else dict(config.peers)), {})
        self._recover(durable)
        self._conf_entries: list[tuple[int, dict[str, Any]]] = [
            (self.log.base_index + i + 1, e[1]) for i, e in enumerate(self.log.entries)
            if is_config(e[1])]
        self.voters: dict[str, str] = {}
        self.learners: dict[str, str] = {}
        self._refresh_config()
        self._election_elapsed = 0
        self._timeout = 2 * self.opts.election_ticks
        self._votes: set[str] = set()
        self._rejects: set[str] = set()
        self._incoming: tuple[int, bytearray] | None = None
        self._init_leader_state()

    def _recover(self, durable: Durable) -> None:
        snap = durable.get(self._snap_ns, "snap")
        if snap:
            index, term, voters, learners, data, base_index, base_term = snap
            self.snapshot = (index, term, dict(voters), dict(learners), data)
            self._base_config = (dict(voters), dict(learners))
            self.log = RaftLog(base_index, base_term)
            self.commit = self._handed = index
            self._ready.snapshot = (index, data)
        expected = self.log.base_index + 1
        for index, entry in durable.items(self._log_ns):
            assert isinstance(index, int)
            if index < expected:
                continue
            assert index == expected, f"{self.node_id}: hole in durable log at {expected}"
            self.log.entries.append([entry[0], entry[1]])
            expected += 1
        if self.log.entries:
            self.log.changed_from = self.log.base_index + 1

    # -- configuration (dissertation §4.1: the latest configuration in the log rules) ----

    def _config_at(self, index: int) -> tuple[dict[str, str], dict[str, str]]:
        for i, data in reversed(self._conf_entries):
            if i <= index:
                return data["voters"], data["learners"]
        return self._base_config

    def _refresh_config(self) -> None:
        voters, learners = self._config_at(self.log.last_index)
        if voters != self.voters or learners != self.learners:
            self.voters, self.learners = dict(voters), dict(learners)
            if self.role == LEADER:
                self._sync_progress()

    def _known(self, node: str) -> bool:
        return node in self.voters or node in self.learners

    # -- Process ------------------------------------------------------------------------

    def start(self, io: Io) -> None:
        self._reset_election_timer(io)
        io.trace("follower", term=self.term, last_index=self.log.last_index)

    def tick(self, io: Io) -> None:
        self._ticks += 1
        if self.role == LEADER:
            self._tick_leader(io)
            return
        self._election_elapsed += 1
        if self._election_elapsed >= self._timeout and self.node_id in self.voters:
            io.probe("raft.election_timeout")
            self._campaign(io, pre_vote=self.opts.pre_vote)

    def handles(self, body: Any) -> bool:
        return isinstance(body, RAFT_MESSAGES)

    def receive(self, io: Io, env: Envelope) -> None:
        body, src = env.body, env.source
        if src == self.node_id or not (self._known(src) or (
                not self.voters and not self.learners and isinstance(body, _FROM_LEADER))):
            self._reject(io, env, "unknown_sender")
            return
        problem = validate(body)
        if problem is not None:
            self._reject(io, env, "malformed", problem)
            return
        if body.term > self.term:
            if not self._on_higher_term(io, env):
                return
        elif body.term < self.term:
            self._on_stale_term(io, env)
            return
        self._dispatch(io, env)

    def _dispatch(self, io: Io, env: Envelope) -> None:
        body = env.body
        if isinstance(body, AppendEntries):
            self._on_append(io, env, body)
        elif isinstance(body, Heartbeat):
            self._on_heartbeat(io, env, body)
        elif isinstance(body, RequestVote):
            self._on_request_vote(io, env, body)
        elif isinstance(body, VoteReply):
            self._on_vote_reply(io, env.source, body)
        elif isinstance(body, InstallSnapshot):
            self._on_snapshot(io, env, body)
        elif isinstance(body, TimeoutNow):
            self._on_timeout_now(io)
        elif isinstance(body, AppendReply):
            self._on_append_reply(io, env, body)
        elif isinstance(body, HeartbeatReply):
            self._on_heartbeat_reply(io, env.source, body)
        else:
            assert isinstance(body, SnapshotReply)
            self._on_snapshot_reply(io, env, body)

    def _reject(self, io: Io, env: Envelope, reason: str, detail: str = "") -> None:
        """Drop a message that must not change our state, with a log line and a probe."""
        level = logging.DEBUG if reason in ("stale_term", "in_lease") else logging.INFO
        log.log(level, "%s: rejected %s from %s: %s %s", self.node_id,
                type(env.body).__name__, env.source, reason, detail)
        io.probe(f"raft.rejected.{reason}")
        if reason not in ("stale_term", "in_lease"):
            io.trace("rejected", src=env.source, msg=type(env.body).__name__, why=reason)

    def _on_higher_term(self, io: Io, env: Envelope) -> bool:
        """§5.1: a higher term makes us a follower of it. False: drop the message."""
        body = env.body
        if isinstance(body, RequestVote):
            if not body.transfer and self._in_lease():
                # §4.2.3 / §9.6: a node that heard from a live leader within the minimum
                # election timeout ignores vote requests (removed or partitioned nodes
                # must not depose it).
                self._reject(io, env, "in_lease")
                return False
            if body.pre_vote:
                return True
            self._become_follower(io, body.term, None)
        elif isinstance(body, VoteReply) and body.pre_vote and body.granted:
            return True
        else:
            leader = env.source if isinstance(body, _FROM_LEADER) else None
            self._become_follower(io, body.term, leader)
        return True

    def _on_stale_term(self, io: Io, env: Envelope) -> None:
        body = env.body
        self._reject(io, env, "stale_term", f"{body.term} < {self.term}")
        if isinstance(body, (AppendEntries, Heartbeat, InstallSnapshot)):
            io.reply(env, HeartbeatReply(self.term, 0))   # tells the old leader to step down
        elif isinstance(body, RequestVote):
            io.reply(env, VoteReply(self.term, False, body.pre_vote))

    def _in_lease(self) -> bool:
        if not self.opts.check_quorum or self.leader_id is None:
            return False
        return self.role == LEADER or self._election_elapsed < self.opts.election_ticks

    # -- roles ----------------------------------------------------------------------------

    def _save_hard_state(self, io: Io) -> None:
        io.put(self._hard_ns, "hs", [self.term, self.vote])

    def _reset_election_timer(self, io: Io) -> None:
        e = self.opts.election_ticks
        self._election_elapsed = 0
        self._timeout = io.rng.randint(e, (self.opts.election_timeout_max_ticks or 2 * e) - 1)

    def _become_follower(self, io: Io, term: int, leader: str | None) -> None:
        assert term >= self.term
        was = self.role
        if term > self.term:
            self.term, self.vote = term, None
            self._save_hard_state(io)
        self.role = FOLLOWER
        self.leader_id = leader
        self._reset_election_timer(io)
        if was == LEADER:
            self._stop_leading(io)
        if was != FOLLOWER or leader is not None:
            io.trace("follower", term=self.term, leader=leader)

    def _campaign(self, io: Io, *, pre_vote: bool, transfer: bool = False) -> None:
        """§5.2: ask the voters for their votes (first only hypothetically, Pre-Vote)."""
        assert self.role != LEADER and self.node_id in self.voters
        if pre_vote:
            self.role = PRE_CANDIDATE
            term = self.term + 1
        else:
            self.role = CANDIDATE
            self.term += 1
            self.vote = self.node_id
            self._save_hard_state(io)
            term = self.term
        self.leader_id = None
        self._votes, self._rejects = {self.node_id}, set()
        self._reset_election_timer(io)
        io.trace(self.role, term=term)
        if len(self._votes) >= quorum(len(self.voters)):
            self._won(io)
            return
        msg = RequestVote(term, self.log.last_index, self.log.last_term, pre_vote, transfer)
        for voter in self.voters:
            if voter != self.node_id:
                io.send(voter, msg)

    def _won(self, io: Io) -> None:
        if self.role == PRE_CANDIDATE:
            self._campaign(io, pre_vote=False)
        else:
            self._become_leader(io)

    def _on_request_vote(self, io: Io, env: Envelope, m: RequestVote) -> None:
        src = env.source
        up_to_date = (m.last_term, m.last_index) >= (self.log.last_term, self.log.last_index)
        if m.pre_vote:
            grant = m.term > self.term and up_to_date
        else:
            free = self.vote == src or (self.vote is None and self.leader_id is None)
            grant = free and up_to_date and src in self.voters
            if grant:
                self.vote = src
                self._save_hard_state(io)      # durable before the reply (Fig. 2)
                self._reset_election_timer(io)
        io.reply(env, VoteReply(m.term if grant else self.term, grant, m.pre_vote))

    def _on_vote_reply(self, io: Io, src: str, m: VoteReply) -> None:
        if self.role not in (PRE_CANDIDATE, CANDIDATE) or m.pre_vote != (self.role == PRE_CANDIDATE):
            return
        if src not in self.voters:
            return
        (self._votes if m.granted else self._rejects).add(src)
        q = quorum(len(self.voters))
        if len(self._votes) >= q:
            self._won(io)
        elif len(self._rejects) >= q:
            self._become_follower(io, self.term, None)

    def _on_timeout_now(self, io: Io) -> None:
        if self.role != LEADER and self.node_id in self.voters:
            io.probe("raft.timeout_now")
            self._campaign(io, pre_vote=False, transfer=True)

    # -- the follower's side of replication (§5.3) --------------------------------------

    def _follow(self, io: Io, leader: str) -> None:
        assert self.role != LEADER, f"{self.node_id}: two leaders in term {self.term}"
        if self.role != FOLLOWER:
            self._become_follower(io, self.term, leader)
        if self.leader_id != leader:
            self.leader_id = leader
            io.trace("follower", term=self.term, leader=leader)
        self._election_elapsed = 0

    def _on_append(self, io: Io, env: Envelope, m: AppendEntries) -> None:
        self._follow(io, env.source)
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev < self.commit:
            # the prefix up to our commit index is committed, hence matches the leader's
            skip = self.commit - prev
            if skip >= len(entries):
                io.reply(env, AppendReply(self.term, True, self.commit, 0, 0, m.seq))
                return
            prev, prev_term, entries = self.commit, entries[skip - 1][0], entries[skip:]
            if self.log.term_at(prev) != prev_term:
                self._reject(io, env, "malformed", "entry terms disagree with our commit")
                return
        if prev > self.log.last_index:
            io.probe("raft.append.beyond_log")
            io.reply(env, AppendReply(self.term, False, prev, self.log.last_index + 1, 0, m.seq))
            return
        ours = self.log.term_at(prev)
        assert ours is not None, f"{self.node_id}: prev {prev} below base {self.log.base_index}"
        if ours != prev_term:
            io.probe("raft.append.conflict")
            first = self.log.first_index_of_term(prev)
            io.reply(env, AppendReply(self.term, False, prev, first, ours, m.seq))
            return
        self._accept(io, prev, entries)
        last_new = prev + len(entries)
        self._advance_commit(io, min(m.commit, last_new))
        io.reply(env, AppendReply(self.term, True, last_new, 0, 0, m.seq))

    def _accept(self, io: Io, prev: int, entries: list[list[Any]]) -> None:
        """Append what we lack; truncate at the first conflict (§5.3, log matching)."""
        log_ = self.log
        i, j = prev + 1, 0
        while j < len(entries) and i <= log_.last_index:
            if log_.term_at(i) != entries[j][0]:
                assert i > self.commit, f"{self.node_id}: conflict at committed {i}"
                io.probe("raft.append.truncate")
                log_.truncate_after(i - 1)
                io.delete_range(self._log_ns, i)
                self._conf_entries = [c for c in self._conf_entries if c[0] < i]
                break
            i, j = i + 1, j + 1
        rest = entries[j:]
        if not rest:
            self._refresh_config()
            return
        start = log_.last_index + 1
        log_.extend(rest)
        put, ns = io.put, self._log_ns
        for k, e in enumerate(rest):
            put(ns, start + k, e)
            if is_config(e[1]):
                self._conf_entries.append((start + k, e[1]))
        self._refresh_config()

    def _advance_commit(self, io: Io, index: int) -> None:
        if index <= self.commit:
            return
        assert index <= self.log.last_index
        self.commit = index
        self._hand_out()

    def _hand_out(self) -> None:
        """Committed entries go to Ready in index order, each once (State Machine Safety)."""
        out = self._ready.entries
        log_ = self.log
        for i in range(self._handed + 1, self.commit + 1):
            term, data = log_.entry(i)
            out.append(Entry(i, term, data if isinstance(data, bytes) else None))
        self._handed = max(self._handed, self.commit)

    def _on_heartbeat(self, io: Io, env: Envelope, m: Heartbeat) -> None:
        self._follow(io, env.source)
        self._advance_commit(io, min(m.commit, self.log.last_index))
        io.reply(env, HeartbeatReply(self.term, m.seq))

    def _on_snapshot(self, io: Io, env: Envelope, m: InstallSnapshot) -> None:
        """§7, Fig. 13: gather chunks in order; install when ``done``."""
        self._follow(io, env.source)
        if m.last_index <= self.commit:
            io.reply(env, SnapshotReply(self.term, m.last_index, 0, True))
            return
        inc = self._incoming
        if m.offset == 0:
            inc = self._incoming = (m.last_index, bytearray())
        if inc is None or inc[0] != m.last_index or m.offset != len(inc[1]):
            want = len(inc[1]) if inc is not None and inc[0] == m.last_index else 0
            io.probe("raft.snapshot.out_of_order")
            io.reply(env, SnapshotReply(self.term, m.last_index, want, False))
            return
        inc[1].extend(m.data)
        if len(inc[1]) > MAX_SNAPSHOT_BYTES:
            self._incoming = None
            self._reject(io, env, "malformed", "snapshot too large")
            return
        if not m.done:
            io.reply(env, SnapshotReply(self.term, m.last_index, len(inc[1]), False))
            return
        self._incoming = None
        self._install(io, m.last_index, m.last_term, dict(m.voters), dict(m.learners), bytes(inc[1]))
        io.reply(env, SnapshotReply(self.term, m.last_index, 0, True))

    def _install(self, io: Io, index: int, term: int, voters: dict[str, str],
                 learners: dict[str, str], data: bytes) -> None:
        """Keep a log suffix that follows the snapshot, else discard the log (§7)."""
        io.probe("raft.snapshot.installed")
        if self.log.term_at(index) == term:
            self.log.compact(index)
            io.delete_range(self._log_ns, 0, index + 1)
        else:
            self.log.reset(index, term)
            io.delete_range(self._log_ns, 0)
        self.snapshot = (index, term, voters, learners, data)
        self._base_config = (voters, learners)
        self._conf_entries = [c for c in self._conf_entries if c[0] > index]
        self._refresh_config()
        self._save_snapshot(io)
        self.commit = self._handed = index
        self._ready.snapshot = (index, data)
        io.trace("snapshot_installed", index=index, term=term)

    def _save_snapshot(self, io: Io) -> None:
        assert self.snapshot is not None
        index, term, voters, learners, data = self.snapshot
        io.put(self._snap_ns, "snap", [index, term, voters, learners, data,
                                       self.log.base_index, self.log.base_term])

    # -- the ConsensusCore API ------------------------------------------------------------

    def propose(self, io: Io, command: bytes) -> None:
        """Raises ``NotLeader`` (not appended) unless we lead and no transfer is under way."""
        if self.role != LEADER or self._transfer is not None:
            raise NotLeader(hint=self.leader_id if self.role != LEADER else self._transfer)
        self._append(io, command)
        self._replicate(io)

    def read_barrier(self, io: Io, token: int) -> None:
        """ReadIndex (§6.4). Raises ``NotLeader``."""
        if self.role != LEADER:
            raise NotLeader(hint=self.leader_id)
        self._read(io, token)

    def compact(self, io: Io, index: int, snapshot: bytes) -> None:
        """The service's snapshot at applied ``index``: persist it, then drop the log up
        to ``snapshot_trailing_entries`` before it (§7)."""
        assert index <= self._handed, f"compact({index}) beyond applied {self._handed}"
        if self.snapshot is not None and index <= self.snapshot[0]:
            return
        term = self.log.term_at(index)
        assert term is not None, f"compact({index}) below the log base {self.log.base_index}"
        voters, learners = self._config_at(index)
        cut = max(self.log.base_index, index - self.opts.snapshot_trailing_entries)
        self._base_config = self._config_at(cut)
        self.log.compact(cut)
        self._conf_entries = [c for c in self._conf_entries if c[0] > cut]
        self.snapshot = (index, term, dict(voters), dict(learners), snapshot)
        self._save_snapshot(io)
        io.delete_range(self._log_ns, 0, cut + 1)

    def change_membership(self, io: Io, op: str, node: str, address: str | None = None) -> None:
        """Single-server changes (dissertation §4.1): ``add_learner``, ``promote``,
        ``remove``; also ``transfer_leader`` (§3.10). Raises ``NotLeader``/``Rejected``."""
        if self.role != LEADER:
            raise NotLeader(hint=self.leader_id)
        if op == "transfer_leader":
            self.transfer_leadership(io, node)
            return
        self._change_config(io, op, node, address)

    def take_ready(self) -> Ready:
        ready, self._ready = self._ready, Ready()
        return ready

    def leader(self) -> str | None:
        return self.node_id if self.role == LEADER else self.leader_id

    def members(self) -> Membership:
        return Membership(dict(self.voters), dict(self.learners))

    def _reject_change(self, why: str) -> None:
        raise Rejected(why)

    def _new_progress(self) -> Progress:
        return Progress(next=self.log.last_index + 1)


def raft_factory(config: ConsensusConfig, durable: Durable) -> RaftCore:
    """The ``consensus`` capability ``raft``: ``registry.consensus("raft")``."""
    return RaftCore(config, durable)
