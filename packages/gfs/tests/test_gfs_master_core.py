"""The master core driven by hand (GFS paper §2.6.3): a mutation's log record is made
durable and sent to the shadow masters in the same step, and the client's answer waits
until every in-sync shadow has acknowledged it; a silent shadow is dropped from the
in-sync set after ``shadow_sync_timeout_s`` so it cannot stop the master."""

from __future__ import annotations

import itertools
import random

from giants.core.envelope import Envelope
from giants.core.process import Durable, Io, Put
from giants.gfs._master import MasterConfig, MasterCore
from giants.gfs._messages import Create, LogAck, LogAppend, Ok
from giants.gfs._oplog import LOG_NS

_ids = itertools.count(1)


def io_at(now: float) -> Io:
    return Io("master", now, random.Random(0), lambda: next(_ids))


def in_sync_master() -> MasterCore:
    m = MasterCore(MasterConfig(shadows=("shadow-0",), shadow_sync_timeout_s=1.0),
                   Durable())
    io = io_at(0.0)
    m.start(io)
    m.receive(io, Envelope("shadow-0", "master", 1, None, LogAck(0)))
    assert m.in_sync == {"shadow-0"}
    return m


def test_reply_waits_for_the_shadow_and_the_record_is_durable_first():
    m = in_sync_master()
    io = io_at(1.0)
    m.receive(io, Envelope("client", "master", 7, None, Create("/a")))
    assert any(isinstance(p, Put) and p.ns == LOG_NS for p in io.persists)
    log_sends = [e for e in io.sends if isinstance(e.body, LogAppend)]
    assert [e.target for e in log_sends] == ["shadow-0"]
    assert not [e for e in io.sends if e.target == "client"], "answered before the shadow"
    io = io_at(1.1)
    m.receive(io, Envelope("shadow-0", "master", 2, log_sends[0].msg_id, LogAck(1)))
    replies = [e for e in io.sends if e.target == "client"]
    assert len(replies) == 1 and isinstance(replies[0].body, Ok)
    assert replies[0].in_reply_to == 7


def test_a_silent_shadow_is_dropped_from_sync_and_the_master_answers():
    m = in_sync_master()
    io = io_at(1.0)
    m.receive(io, Envelope("client", "master", 8, None, Create("/b")))
    io = io_at(1.5)
    m.tick(io)
    assert not [e for e in io.sends if e.target == "client"]
    io = io_at(2.2)
    m.tick(io)
    assert m.in_sync == set()
    assert [type(e.body) for e in io.sends if e.target == "client"] == [Ok]
    # Later mutations do not wait for it; it is caught up from the log instead.
    io = io_at(2.3)
    m.receive(io, Envelope("client", "master", 9, None, Create("/c")))
    assert [type(e.body) for e in io.sends if e.target == "client"] == [Ok]


def test_conflicting_operations_wait_for_namespace_locks():
    """§4.1: while a create of /d/x waits for its log record to reach the shadow (holding
    its locks), a snapshot of /d must wait; it runs once the create is answered."""
    m = in_sync_master()
    io = io_at(1.0)
    m.receive(io, Envelope("client", "master", 10, None, Create("/d/x")))
    first = next(e for e in io.sends if isinstance(e.body, LogAppend))
    from giants.gfs._messages import Snapshot

    io = io_at(1.01)
    m.receive(io, Envelope("client", "master", 11, None, Snapshot("/d", "/e")))
    assert not [e for e in io.sends if isinstance(e.body, LogAppend)], "snapshot ran early"
    io = io_at(1.02)
    m.receive(io, Envelope("shadow-0", "master", 3, first.msg_id, LogAck(first.body.first)))
    appended = [e.body.records[0]["op"] for e in io.sends if isinstance(e.body, LogAppend)]
    assert appended == ["snapshot"]
