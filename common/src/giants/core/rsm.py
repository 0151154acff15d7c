"""``ReplicatedService``: any ``StateMachine`` on any consensus plugin.

This is state machine replication as the Raft dissertation (ch. 6) describes it for
clients: every command carries a client session ``(client_id, seq)``; the replicated
session table remembers each client's last applied ``seq`` and its result, so a command
retried after a timeout is applied once and answered with the original result
(exactly-once). A client keeps at most one command outstanding per ``client_id``.
Queries go through the consensus core's read barrier (ReadIndex) and are answered from
the local state machine once it has applied the read index (linearizable reads). A
node that is not the leader answers ``NotLeader(hint)``. Applying what the consensus
core decided (snapshot install, index order, compaction, read barriers, leadership) is
``giants.core.stacked.LogApplier``'s; this class supplies the session table around it.

Messages (all requests are answered with their reply or an ``ErrorReply``):
``ClientCommand`` -> ``CommandResult``; ``ClientQuery`` -> ``QueryResult``;
``MembershipChange`` -> ``MembershipResult``; ``WhoIsLeader`` -> ``LeaderInfo``.

Simplification: the session table is bounded (``MAX_SESSIONS``); the least recently
used session is evicted deterministically at apply time (the dissertation expires
sessions by leader timestamps instead). A client whose session was evicted and who
retries an old command could see it applied twice; with the bound far above the number
of live clients this does not happen in practice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgpack

from giants.core.codec import message
from giants.core.consensus import ConsensusConfig, ConsensusCore, ConsensusFactory, StateMachine
from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import DefiniteError, NotLeader, Rejected, RemoteProtocolError
from giants.core.process import Durable, Io
from giants.core.stacked import LogApplier, pack, unpack

__all__ = [
    "ReplicatedService",
    "ClientCommand",
    "CommandResult",
    "ClientQuery",
    "QueryResult",
    "MembershipChange",
    "MembershipResult",
    "WhoIsLeader",
    "LeaderInfo",
    "MAX_SESSIONS",
]

# Far above the live clients of any test or benchmark (32 concurrent in the Raft bench).
MAX_SESSIONS = 10_000
# Snapshot the state machine after this many applied entries (bounds log and replay).
DEFAULT_SNAPSHOT_EVERY = 1_000
# Bound on queued reads/pending commands per node before new ones are refused.
MAX_PENDING = 10_000


@message("rsm.command")
@dataclass(frozen=True, slots=True)
class ClientCommand:
    client_id: str
    seq: int
    command: Any


@message("rsm.command_result")
@dataclass(frozen=True, slots=True)
class CommandResult:
    seq: int
    result: Any


@message("rsm.query")
@dataclass(frozen=True, slots=True)
class ClientQuery:
    query: Any


@message("rsm.query_result")
@dataclass(frozen=True, slots=True)
class QueryResult:
    result: Any


@message("rsm.membership")
@dataclass(frozen=True, slots=True)
class MembershipChange:
    op: str
    node: str
    address: str | None


@message("rsm.membership_result")
@dataclass(frozen=True, slots=True)
class MembershipResult:
    voters: dict[str, str]
    learners: dict[str, str]


@message("rsm.who_is_leader")
@dataclass(frozen=True, slots=True)
class WhoIsLeader:
    pass


@message("rsm.leader_info")
@dataclass(frozen=True, slots=True)
class LeaderInfo:
    leader: str | None
    voters: dict[str, str]


class ReplicatedService:
    """A ``Process`` hosting a state machine over a consensus core. See module docs."""

    def __init__(
        self,
        state_machine: StateMachine,
        consensus_factory: ConsensusFactory,
        config: ConsensusConfig,
        durable: Durable,
        *,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        self.node_id = config.node_id
        self.sm = state_machine
        self.consensus: ConsensusCore = consensus_factory(config, durable)
        self.applier: LogApplier[tuple[Envelope, Any]] = LogApplier(
            self.consensus, self, snapshot_every=snapshot_every, reads=self)
        self._sessions: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._pending: dict[tuple[str, int], Envelope] = {}

    @property
    def applied_index(self) -> int:
        """The index of the last log entry (or snapshot) the state machine applied."""
        return self.applier.applied_index

    # -- Process ----------------------------------------------------------------------

    def start(self, io: Io) -> None:
        self.applier.start(io)

    def tick(self, io: Io) -> None:
        self.applier.tick(io)

    def receive(self, io: Io, env: Envelope) -> None:
        body = env.body
        if isinstance(body, ClientCommand):
            self._on_command(io, env, body)
        elif isinstance(body, ClientQuery):
            self._on_query(io, env, body)
        elif isinstance(body, MembershipChange):
            self._on_membership(io, env, body)
        elif isinstance(body, WhoIsLeader):
            io.reply(env, LeaderInfo(self.consensus.leader(), self.consensus.members().voters))
        elif not self.applier.receive(io, env):
            io.reply(env, ErrorReply.protocol(f"unexpected message {type(body).__name__}"))
            return
        self.applier.drain(io)

    # -- client requests --------------------------------------------------------------

    def _on_command(self, io: Io, env: Envelope, cmd: ClientCommand) -> None:
        session = self._sessions.get(cmd.client_id)
        if session is not None and session[0] >= cmd.seq:
            if session[0] == cmd.seq:
                io.probe("rsm.duplicate_answered_from_session")
                self._answer(io, env, cmd.seq, session[1])
            else:
                io.reply(env, ErrorReply.definite(Rejected(f"stale seq {cmd.seq}")))
            return
        try:
            self.sm.validate_command(cmd.command)
        except DefiniteError as exc:
            io.reply(env, ErrorReply.definite(exc))
            return
        if len(self._pending) >= MAX_PENDING:
            io.reply(env, ErrorReply.definite(Rejected("too many pending commands")))
            return
        try:
            self.consensus.propose(io, pack([cmd.client_id, cmd.seq, cmd.command]))
        except NotLeader as exc:
            io.reply(env, ErrorReply.definite(exc))
            return
        self._pending[(cmd.client_id, cmd.seq)] = env

    def _on_query(self, io: Io, env: Envelope, q: ClientQuery) -> None:
        try:
            self.sm.validate_query(q.query)
        except DefiniteError as exc:
            io.reply(env, ErrorReply.definite(exc))
            return
        if self.applier.pending_reads >= MAX_PENDING:
            io.reply(env, ErrorReply.definite(Rejected("too many pending reads")))
            return
        try:
            self.applier.read_barrier(io, (env, q.query))
        except NotLeader as exc:
            io.reply(env, ErrorReply.definite(exc))

    def _on_membership(self, io: Io, env: Envelope, m: MembershipChange) -> None:
        try:
            self.consensus.change_membership(io, m.op, m.node, m.address)
        except DefiniteError as exc:
            io.reply(env, ErrorReply.definite(exc))
            return
        members = self.consensus.members()
        io.reply(env, MembershipResult(dict(members.voters), dict(members.learners)))

    def _answer(self, io: Io, env: Envelope, seq: int, result: Any) -> None:
        if isinstance(result, dict) and "__error__" in result:
            io.reply(env, ErrorReply("definite", result["__error__"]))
        else:
            io.reply(env, CommandResult(seq, result))

    # -- LogApplier callbacks: applying what consensus decided ---------------------

    def apply_committed(self, io: Io, index: int, command: bytes) -> None:
        try:
            client_id, seq, cmd = unpack(command)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise AssertionError(f"undecodable committed command: {exc}") from exc
        session = self._sessions.get(client_id)
        if session is not None and session[0] >= seq:
            io.probe("rsm.duplicate_suppressed")
            result = session[1]
        else:
            try:
                result = self.sm.apply(cmd)
            except DefiniteError as exc:
                result = {"__error__": ErrorReply.definite(exc).error}
            self._sessions[client_id] = (seq, result)
            self._sessions.move_to_end(client_id)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        env = self._pending.pop((client_id, seq), None)
        if env is not None:
            self._answer(io, env, seq, result)

    def serve_read(self, io: Io, read: tuple[Envelope, Any]) -> None:
        env, query = read
        try:
            io.reply(env, QueryResult(self.sm.query(query)))
        except DefiniteError as exc:
            io.reply(env, ErrorReply.definite(exc))

    def fail_read(self, io: Io, read: tuple[Envelope, Any]) -> None:
        io.reply(read[0], ErrorReply.definite(NotLeader(hint=self.consensus.leader())))

    def snapshot_state(self) -> bytes:
        return pack({"sm": self.sm.snapshot(),
                      "sessions": [[k, v[0], v[1]] for k, v in self._sessions.items()]})

    def restore_state(self, data: bytes) -> None:
        try:
            state = unpack(data)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise RemoteProtocolError(f"undecodable snapshot: {exc}") from exc
        self.sm.restore(state["sm"])
        self._sessions = OrderedDict((k, (seq, res)) for k, seq, res in state["sessions"])

    def leadership_changed(self, io: Io, leading: bool) -> None:
        if not leading:
            # Proposals may still commit under the next leader; the clients time out and
            # retry, and their sessions make the retry safe. Nothing is answered here.
            self._pending.clear()
