"""``LogApplier``: what a service stacked on a consensus core gets from it (stacked.py).

A scripted consensus core hands out chosen ``Ready`` objects; a recording service shows
what reached it and what it saw when it did: snapshots newer or older than what is
applied, gaps, duplicates, reads held until their index is applied, failed and forgotten
reads, the compaction cadence and leadership edges. Then the durable formats of the
three services built on it: a snapshot in the layout written before ``LogApplier``
existed must restore unchanged."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from giants.core.consensus import ConsensusConfig, Entry, Membership, Ready
from giants.core.envelope import Envelope
from giants.core.errors import NotLeader, RemoteProtocolError
from giants.core.kv import KVStateMachine
from giants.core.process import Durable, Io
from giants.core.rsm import (
    ClientCommand,
    ClientQuery,
    CommandResult,
    QueryResult,
    ReplicatedService,
)
from giants.core.solo import solo_factory
from giants.core.stacked import LogApplier, pack, unpack


class ScriptedCore:
    """A ``ConsensusCore`` whose ``Ready`` and leader the test sets."""

    def __init__(self, node_id: str = "n1") -> None:
        self.node_id = node_id
        self.ready = Ready()
        self.leader_id: str | None = None
        self.compacted: list[tuple[int, bytes]] = []
        self.barriers: list[int] = []
        self.received: list[Envelope] = []
        self.started = 0
        self.ticks = 0

    def start(self, io: Io) -> None:
        self.started += 1

    def tick(self, io: Io) -> None:
        self.ticks += 1

    def receive(self, io: Io, env: Envelope) -> None:
        self.received.append(env)

    def handles(self, body: Any) -> bool:
        return body == "consensus-message"

    def propose(self, io: Io, command: bytes) -> None:
        raise AssertionError("the applier never proposes")

    def read_barrier(self, io: Io, token: int) -> None:
        if self.leader_id != self.node_id:
            raise NotLeader(hint=self.leader_id)
        self.barriers.append(token)

    def compact(self, io: Io, index: int, snapshot: bytes) -> None:
        self.compacted.append((index, snapshot))

    def change_membership(self, io: Io, op: str, node: str, address: str | None = None) -> None:
        raise AssertionError("the applier never changes membership")

    def take_ready(self) -> Ready:
        ready, self.ready = self.ready, Ready()
        return ready

    def leader(self) -> str | None:
        return self.leader_id

    def members(self) -> Membership:
        return Membership({self.node_id: self.node_id}, {})


class Recorder:
    """A ``StackedService`` and ``ReadService`` that logs every call with the applied
    index it saw (its state is the list of commands applied)."""

    def __init__(self) -> None:
        self.applier: LogApplier[str] | None = None
        self.state: list[bytes] = []
        self.calls: list[tuple[Any, ...]] = []

    def _applied(self) -> int:
        assert self.applier is not None
        return self.applier.applied_index

    def apply_committed(self, io: Io, index: int, command: bytes) -> None:
        self.calls.append(("apply", index, command, self._applied()))
        self.state.append(command)

    def snapshot_state(self) -> bytes:
        packed: bytes = msgpack.packb(self.state)
        return packed

    def restore_state(self, data: bytes) -> None:
        if data == b"garbage":
            raise RemoteProtocolError("undecodable snapshot")
        self.calls.append(("restore", data, self._applied()))
        self.state = list(msgpack.unpackb(data))

    def leadership_changed(self, io: Io, leading: bool) -> None:
        assert self.applier is not None
        self.calls.append(("leadership", leading, self.applier.leading))

    def serve_read(self, io: Io, read: str) -> None:
        self.calls.append(("serve", read, self._applied()))

    def fail_read(self, io: Io, read: str) -> None:
        self.calls.append(("fail", read))


def _io() -> Io:
    ids = iter(range(1, 1_000_000))
    return Io(node_id="n1", now=0.0, rng=random.Random(0), next_msg_id=lambda: next(ids))


def _stack(snapshot_every: int = 1000, *, reads: bool = True
           ) -> tuple[ScriptedCore, Recorder, LogApplier[str]]:
    core, svc = ScriptedCore(), Recorder()
    applier: LogApplier[str] = LogApplier(core, svc, snapshot_every=snapshot_every,
                                          reads=svc if reads else None)
    svc.applier = applier
    return core, svc, applier


def _entries(lo: int, hi: int) -> list[Entry]:
    return [Entry(i, 1, f"c{i}".encode()) for i in range(lo, hi + 1)]


def _drain(core: ScriptedCore, applier: LogApplier[str], **ready: Any) -> None:
    core.ready = Ready(**ready)
    applier.drain(_io())


def test_entries_apply_in_order_with_the_index_already_advanced() -> None:
    core, svc, applier = _stack()
    _drain(core, applier, entries=_entries(1, 3))
    assert svc.calls == [("apply", i, f"c{i}".encode(), i) for i in (1, 2, 3)]
    assert applier.applied_index == 3


def test_duplicate_entries_are_skipped() -> None:
    core, svc, applier = _stack()
    _drain(core, applier, entries=_entries(1, 3))
    _drain(core, applier, entries=[*_entries(2, 3), *_entries(3, 5)])
    assert [c[1] for c in svc.calls] == [1, 2, 3, 4, 5]
    assert svc.state == [f"c{i}".encode() for i in range(1, 6)]


def test_a_gap_in_the_entries_is_a_broken_invariant() -> None:
    core, _svc, applier = _stack()
    _drain(core, applier, entries=_entries(1, 2))
    core.ready = Ready(entries=[Entry(4, 1, b"c4")])
    with pytest.raises(AssertionError, match="gap in applied entries 2 -> 4"):
        applier.drain(_io())


def test_entries_without_a_command_advance_the_index_only() -> None:
    core, svc, applier = _stack()
    _drain(core, applier, entries=[Entry(1, 1, None), Entry(2, 1, b"c2"), Entry(3, 2, None)])
    assert svc.calls == [("apply", 2, b"c2", 2)]
    assert applier.applied_index == 3


def test_a_newer_snapshot_is_installed_before_the_entries_after_it() -> None:
    core, svc, applier = _stack()
    _drain(core, applier, entries=_entries(1, 2))
    snap = msgpack.packb([b"s"])
    _drain(core, applier, snapshot=(10, snap), entries=_entries(9, 11))
    assert svc.calls[2:] == [("restore", snap, 2), ("apply", 11, b"c11", 11)]
    assert (applier.applied_index, applier.snapshot_index) == (11, 10)
    assert svc.state == [b"s", b"c11"]


@pytest.mark.parametrize("snap_index", [3, 5])
def test_a_snapshot_not_newer_than_applied_is_ignored(snap_index: int) -> None:
    core, svc, applier = _stack()
    _drain(core, applier, entries=_entries(1, 5))
    _drain(core, applier, snapshot=(snap_index, msgpack.packb([b"old"])))
    assert [c[0] for c in svc.calls] == ["apply"] * 5
    assert (applier.applied_index, applier.snapshot_index) == (5, 0)


def test_a_snapshot_that_does_not_restore_leaves_the_index_alone() -> None:
    core, _svc, applier = _stack()
    _drain(core, applier, entries=_entries(1, 2))
    core.ready = Ready(snapshot=(9, b"garbage"), entries=_entries(10, 10))
    with pytest.raises(RemoteProtocolError):
        applier.drain(_io())
    assert (applier.applied_index, applier.snapshot_index) == (2, 0)


def test_compaction_every_n_applied_entries_counted_from_the_last_snapshot() -> None:
    core, svc, applier = _stack(snapshot_every=3)
    _drain(core, applier, entries=_entries(1, 2))
    assert core.compacted == []
    _drain(core, applier, entries=_entries(3, 7))      # 7 - 0 >= 3: one compaction at 7
    assert core.compacted == [(7, msgpack.packb(svc.state))]
    _drain(core, applier, entries=_entries(8, 9))
    assert len(core.compacted) == 1
    _drain(core, applier, snapshot=(20, msgpack.packb([b"s"])))
    _drain(core, applier, entries=_entries(21, 22))    # counted from the installed 20
    assert len(core.compacted) == 1
    _drain(core, applier, entries=_entries(23, 23))
    assert core.compacted[-1] == (23, msgpack.packb([b"s", b"c21", b"c22", b"c23"]))
    assert applier.snapshot_index == 23


def test_snapshot_every_must_be_positive() -> None:
    with pytest.raises(AssertionError):
        _stack(snapshot_every=0)


def test_leadership_edges_only_with_the_flag_already_set() -> None:
    core, svc, applier = _stack()
    applier.drain(_io())
    core.leader_id = "n1"
    applier.drain(_io())
    applier.drain(_io())
    core.leader_id = "n2"
    applier.drain(_io())
    core.leader_id = None
    applier.drain(_io())
    core.leader_id = "n1"
    applier.drain(_io())
    assert svc.calls == [("leadership", True, True), ("leadership", False, False),
                         ("leadership", True, True)]


def test_leadership_is_noticed_after_the_entries_and_reads_of_the_ready() -> None:
    core, svc, applier = _stack()
    core.leader_id = "n1"
    _drain(core, applier, entries=_entries(1, 1))
    assert [c[0] for c in svc.calls] == ["apply", "leadership"]


def test_a_read_is_served_only_once_its_index_is_applied() -> None:
    core, svc, applier = _stack()
    core.leader_id = "n1"
    _drain(core, applier, entries=_entries(1, 2))
    applier.read_barrier(_io(), "r1")
    applier.read_barrier(_io(), "r2")
    assert core.barriers == [1, 2] and applier.pending_reads == 2
    _drain(core, applier, reads=[(1, 4), (2, 2)])
    assert svc.calls[-1] == ("serve", "r2", 2)
    _drain(core, applier, entries=_entries(3, 3))
    assert svc.calls[-1] == ("apply", 3, b"c3", 3)
    _drain(core, applier, entries=_entries(4, 5))
    assert svc.calls[-3:] == [("apply", 4, b"c4", 4), ("apply", 5, b"c5", 5),
                              ("serve", "r1", 5)]
    assert applier.pending_reads == 0
    _drain(core, applier, reads=[(1, 5)])               # a late duplicate: nothing
    assert svc.calls[-1] == ("serve", "r1", 5)


def test_queued_reads_are_served_in_the_order_they_completed() -> None:
    core, svc, applier = _stack()
    core.leader_id = "n1"
    for r in ("a", "b", "c", "d"):
        applier.read_barrier(_io(), r)
    _drain(core, applier, reads=[(3, 1), (1, 2)])
    _drain(core, applier, reads=[(4, 2), (2, 1)])
    _drain(core, applier, entries=_entries(1, 2))
    assert [c[1] for c in svc.calls if c[0] == "serve"] == ["c", "a", "d", "b"]


def test_failed_reads_are_failed_once_and_never_served() -> None:
    core, svc, applier = _stack()
    core.leader_id = "n1"
    applier.read_barrier(_io(), "r1")
    applier.read_barrier(_io(), "r2")
    core.leader_id = "n2"
    _drain(core, applier, failed_reads=[1, 1, 7])
    assert ("fail", "r1") in svc.calls and svc.calls.count(("fail", "r1")) == 1
    _drain(core, applier, reads=[(1, 0), (2, 0)])
    assert [c for c in svc.calls if c[0] == "serve"] == [("serve", "r2", 0)]


def test_a_refused_barrier_registers_nothing_but_uses_up_its_token() -> None:
    core, _svc, applier = _stack()
    core.leader_id = "n2"
    with pytest.raises(NotLeader):
        applier.read_barrier(_io(), "r1")
    assert applier.pending_reads == 0
    core.leader_id = "n1"
    applier.read_barrier(_io(), "r2")
    assert core.barriers == [2]


def test_forgotten_reads_are_never_answered() -> None:
    core, svc, applier = _stack()
    core.leader_id = "n1"
    applier.read_barrier(_io(), "r1")
    applier.read_barrier(_io(), "r2")
    _drain(core, applier, reads=[(1, 3)])
    applier.forget_reads()
    assert applier.pending_reads == 0
    _drain(core, applier, entries=_entries(1, 3), reads=[(2, 1)], failed_reads=[1])
    assert [c[0] for c in svc.calls] == ["leadership", "apply", "apply", "apply"]


def test_reads_need_a_read_service() -> None:
    core, _svc, applier = _stack(reads=False)
    core.leader_id = "n1"
    with pytest.raises(AssertionError, match="without reads"):
        applier.read_barrier(_io(), "r")
    core.ready = Ready(reads=[(1, 0)])
    with pytest.raises(AssertionError, match="nobody started"):
        applier.drain(_io())


def test_receive_hands_over_only_the_cores_messages_and_start_tick_drain() -> None:
    core, svc, applier = _stack()
    own = Envelope("n2", "n1", 1, None, "consensus-message")
    assert applier.receive(_io(), own) is True
    assert applier.receive(_io(), Envelope("c", "n1", 2, None, "client")) is False
    assert core.received == [own]
    core.ready = Ready(entries=_entries(1, 1))
    applier.start(_io())
    core.ready = Ready(entries=_entries(2, 2))
    applier.tick(_io())
    assert (core.started, core.ticks, applier.applied_index) == (1, 1, 2)
    assert [c[1] for c in svc.calls] == [1, 2]


# -- the services on it keep their durable formats ------------------------------------


def test_pack_is_plain_msgpack_keeping_bytes_strings_and_int_keys_apart() -> None:
    assert pack({"a": b"\x00"}) == b"\x81\xa1a\xc4\x01\x00"     # bin 8, not str
    value = {1: [b"raw", "text"], "k": {2: None}}
    assert unpack(pack(value)) == value
    with pytest.raises((ValueError, msgpack.UnpackException)):
        unpack(b"\xc1")


def _solo_durable(index: int, snapshot: Any) -> Durable:
    data: bytes = msgpack.packb(snapshot, use_bin_type=True)
    return Durable({"consensus.snap": {"snap": [index, data]},
                    "consensus.log": {index + 1: [1, msgpack.packb(["c1", 8, ["put", "b", 2]])]}})


def _call(svc: ReplicatedService, body: Any) -> Any:
    io = _io()
    svc.receive(io, Envelope("client", "n1", 99, None, body))
    return [env.body for env in io.sends if env.in_reply_to == 99]


def test_replicated_service_restores_its_snapshot_layout() -> None:
    """``{"sm": ..., "sessions": [[client, seq, result]]}`` as ReplicatedService wrote
    it: the state and the session table come back, and the entry after it applies."""
    durable = _solo_durable(7, {"sm": {"a": 1}, "sessions": [["c1", 7, True], ["c2", 3, None]]})
    svc = ReplicatedService(KVStateMachine(), solo_factory,
                            ConsensusConfig(node_id="n1", peers={"n1": "n1"}), durable)
    svc.start(_io())
    assert svc.applied_index == 8
    assert _call(svc, ClientQuery(["get", "a"])) == [QueryResult(1)]
    assert _call(svc, ClientQuery(["get", "b"])) == [QueryResult(2)]
    assert _call(svc, ClientCommand("c2", 3, ["put", "x", 0])) == [CommandResult(3, None)]
    assert _call(svc, ClientCommand("c1", 8, ["put", "y", 0])) == [CommandResult(8, None)]
    assert _call(svc, ClientQuery(["get", "x"])) == [QueryResult(None)]
