"""Paper-claim tests in the simulator: snapshot copy-on-write (§3.4), lazy garbage
collection (§4.4), stale replicas (§4.5), checksums and repair (§5.2), shadow masters
(§5.1.3), recovery from checkpoint + log (§2.6.3), re-replication priority (§4.3), and
the errors bad input gets."""

from __future__ import annotations

import random

import pytest

from giants.core.errors import IndefiniteError, NotFound, Rejected, Unavailable
from giants.core.trace import TraceWriter
from giants.gfs._clientops import file_size, list_dir, namespace_op, read, record_append, write
from giants.gfs._locations import Locations
from giants.gfs._messages import Create, Delete, Mkdir, Rename, Snapshot
from giants.gfs._metadata import Metadata
from giants.gfs._namespace import HIDDEN_DIR
from giants.gfs._replication import plan_clones
from giants.gfs._simulation import GfsWorld, SimOptions

CS = 4096


def run(world, work, name="c", until=30.0):
    """Run ``work`` [(op name, make_op)] in a new client; {op: (outcome, value)}."""
    world.add_client(name, work, think_s=0.0)
    world.sim.run_for(until, stop=world.clients_done)
    assert world.clients_done(), "client did not finish"
    return {op: (outcome, value) for c, op, outcome, value in world.results if c == name}


def data(n, salt=0):
    return bytes((i * 7 + salt) % 256 for i in range(n))


def settle(world, seconds=3.0):
    world.sim.run_for(seconds)


def test_snapshot_copies_on_write_and_shares_untouched_chunks():
    world = GfsWorld(1)
    original = data(3 * CS - 100)
    r = run(world, [("create", lambda s: namespace_op(s, Create("/home/f"))),
                    ("write", lambda s: write(s, "/home/f", 0, original)),
                    ("snap", lambda s: namespace_op(s, Snapshot("/home", "/save"))),
                    ("overwrite", lambda s: write(s, "/home/f", 10, b"NEW" * 10)),
                    ("read_snap", lambda s: read(s, "/save/f", 0, 1 << 20)),
                    ("read_orig", lambda s: read(s, "/home/f", 0, 1 << 20))])
    assert all(outcome == "ok" for outcome, _ in r.values()), r
    assert r["read_snap"][1] == original
    assert r["read_orig"][1] == original[:10] + b"NEW" * 10 + original[40:]
    files = world.master().log.md.ns.files
    assert files["/save/f"][1:] == files["/home/f"][1:]      # untouched chunks shared
    assert files["/save/f"][0] != files["/home/f"][0]        # the written one was copied
    refs = world.master().log.md.refs
    assert all(refs[h] == 2 for h in files["/home/f"][1:])


def test_snapshot_revokes_outstanding_leases_first():
    trace = TraceWriter()
    world = GfsWorld(2, trace=trace)
    r = run(world, [("create", lambda s: namespace_op(s, Create("/d/log"))),
                    ("append", lambda s: record_append(s, "/d/log", b"a" * 100))])
    assert r["append"][0] == "ok"
    m = world.master()
    assert m.leases, "the append left a lease"
    r = run(world, [("snap", lambda s: namespace_op(s, Snapshot("/d", "/d2"))),
                    ("append2", lambda s: record_append(s, "/d/log", b"b" * 100)),
                    ("snapread", lambda s: read(s, "/d2/log", 0, 1 << 20))], name="c2")
    assert r["snap"][0] == "ok" and r["append2"][0] == "ok"
    assert r["snapread"][1] == b"a" * 100
    assert '"what":"revoke"' in trace.text()
    files = m.log.md.ns.files
    assert files["/d/log"][0] != files["/d2/log"][0], "the append copied the chunk first"


def test_deleted_files_are_hidden_then_reclaimed_lazily():
    """§4.4: delete renames to a hidden name; the space is reclaimed only after
    gc_after_s; the chunkservers delete the orphaned chunks after the heartbeat exchange."""
    world = GfsWorld(3)
    r = run(world, [("create", lambda s: namespace_op(s, Create("/tmp/f"))),
                    ("write", lambda s: write(s, "/tmp/f", 0, data(2 * CS))),
                    ("rm", lambda s: namespace_op(s, Delete("/tmp/f"))),
                    ("ls", lambda s: list_dir(s, "/tmp"))])
    assert r["ls"] == ("ok", [])
    md = world.master().log.md
    hidden = [p for p in md.ns.files if p.startswith(HIDDEN_DIR + "/")]
    assert len(hidden) == 1
    handles = set(md.ns.files[hidden[0]])
    assert any(h in st.handles() for st in world.stores.values() for h in handles)
    world.sim.run_for(world.master_config.gc_after_s + 3.0)
    md = world.master().log.md
    assert not [p for p in md.ns.files if p.startswith(HIDDEN_DIR + "/")]
    assert not any(h in st.handles() for st in world.stores.values() for h in handles)


def test_stale_replica_is_detected_by_version_and_removed():
    """§4.5: a chunkserver down while the chunk was mutated comes back with an older
    version; it is never used and is garbage collected."""
    world = GfsWorld(4, SimOptions(chunkservers=4))
    r = run(world, [("create", lambda s: namespace_op(s, Create("/f"))),
                    ("w1", lambda s: write(s, "/f", 0, data(100)))])
    m = world.master()
    h = m.log.md.ns.files["/f"][0]
    victim = sorted(m.locs.of(h))[0]
    old_version = m.log.md.versions[h]
    world.sim.crash(victim)
    world.sim.run_for(world.opts.dead_after_s + world.opts.lease_s + 1.0)
    r = run(world, [("w2", lambda s: write(s, "/f", 100, data(100, 1)))], name="c2")
    assert r["w2"][0] == "ok"
    assert m.log.md.versions[h] > old_version
    before = m.stale_removed
    world.sim.restart(victim)
    settle(world)
    assert m.stale_removed > before
    core = world.sim.process(victim)
    assert core.versions.get(h, m.log.md.versions[h]) == m.log.md.versions[h]


def test_corrupt_block_is_caught_reads_stay_correct_and_replica_is_recloned():
    world = GfsWorld(5)
    payload = data(2 * CS, 3)
    run(world, [("create", lambda s: namespace_op(s, Create("/f"))),
                ("w", lambda s: write(s, "/f", 0, payload))])
    m = world.master()
    h = m.log.md.ns.files["/f"][0]
    bad = sorted(m.locs.of(h))[0]
    world.stores[bad].corrupt(h, 5)
    reads = [(f"r{i}", lambda s: read(s, "/f", 0, 1 << 20)) for i in range(8)]
    r = run(world, reads, name="reader")
    assert all(v == ("ok", payload) for v in r.values())
    settle(world, 5.0)
    assert m.corrupt_reported >= 1
    assert len(m.locs.of(h)) == 3
    for cs in m.locs.of(h):
        assert world.stores[cs].verify(h) == []


def test_shadow_master_serves_reads_while_the_master_is_down():
    world = GfsWorld(6)
    payload = data(CS + 10)
    run(world, [("create", lambda s: namespace_op(s, Create("/docs/a"))),
                ("w", lambda s: write(s, "/docs/a", 0, payload))])
    settle(world, 1.0)
    world.sim.crash("master")
    r = run(world, [("read", lambda s: read(s, "/docs/a", 0, 1 << 20)),
                    ("ls", lambda s: list_dir(s, "/docs")),
                    ("mkdir", lambda s: namespace_op(s, Mkdir("/new")))], name="c2")
    assert r["read"] == ("ok", payload)
    assert r["ls"] == ("ok", [("a", False)])
    assert r["mkdir"][0] == "info" and isinstance(r["mkdir"][1], IndefiniteError)


def test_master_recovers_from_checkpoint_plus_log_tail():
    world = GfsWorld(7, SimOptions(checkpoint_every=10))
    work = [(f"mk{i}", lambda s, i=i: namespace_op(s, Create(f"/n/f{i}"))) for i in range(25)]
    r = run(world, work)
    assert all(v[0] == "ok" for v in r.values())
    settle(world, 0.5)
    before = world.master().log.md.to_checkpoint()
    world.sim.crash("master")
    world.sim.restart("master")
    m = world.master()
    assert m.log.md.to_checkpoint() == before
    assert 0 < m.log.checkpoint_seq <= m.log.applied
    assert m.log.replayed == m.log.applied - m.log.checkpoint_seq < 25


def test_bad_input_gets_the_papers_errors():
    world = GfsWorld(8)
    big = b"x" * (CS // 4 + 1)
    r = run(world, [
        ("create", lambda s: namespace_op(s, Create("/f"))),
        ("again", lambda s: namespace_op(s, Create("/f"))),
        ("invalid", lambda s: namespace_op(s, Create("no/slash"))),
        ("under_file", lambda s: namespace_op(s, Create("/f/g"))),
        ("reserved", lambda s: namespace_op(s, Create(HIDDEN_DIR + "/x"))),
        ("rm_missing", lambda s: namespace_op(s, Delete("/nope"))),
        ("mv_into_self", lambda s: namespace_op(s, Rename("/f", "/f/x"))),
        ("append_small", lambda s: record_append(s, "/f", b"ok")),
        ("append_big", lambda s: record_append(s, "/f", big)),
        ("past_eof", lambda s: read(s, "/f", 10, 1)),
        ("hole", lambda s: write(s, "/f", 50, b"x")),
        ("read_dir", lambda s: read(s, "/", 0, 1)),
        ("missing", lambda s: file_size(s, "/missing")),
        ("size", lambda s: file_size(s, "/f")),
    ])
    assert r["create"][0] == "ok" and r["append_small"][0] == "ok"
    for op in ("again", "invalid", "under_file", "reserved", "mv_into_self", "append_big",
               "past_eof", "hole", "read_dir"):
        assert r[op][0] == "fail" and isinstance(r[op][1], Rejected), (op, r[op])
    for op in ("rm_missing", "missing"):
        assert r[op][0] == "fail" and isinstance(r[op][1], NotFound), (op, r[op])
    assert r["size"] == ("ok", 2), "the file survived the bad requests unchanged"


def test_chunkserver_refuses_a_read_naming_a_newer_version():
    world = GfsWorld(9)
    run(world, [("create", lambda s: namespace_op(s, Create("/f"))),
                ("w", lambda s: write(s, "/f", 0, b"abc"))])
    m = world.master()
    h = m.log.md.ns.files["/f"][0]
    cs = sorted(m.locs.of(h))[0]
    core = world.sim.process(cs)
    from giants.core.envelope import Envelope, ErrorReply
    from giants.gfs._messages import Read

    replies = []

    def ask(proc, io):
        proc.receive(io, Envelope("probe", cs, 1, None, Read(h, core.versions[h] + 5, 0, 3)))
        replies.extend(io.sends)

    world.sim.invoke(cs, ask)
    assert isinstance(replies[0].body, ErrorReply)
    assert isinstance(replies[0].body.exception(), Unavailable)


def test_rereplication_serves_the_chunk_furthest_below_goal_first():
    md = Metadata()
    md.ns.add_file("/f", [1, 2])
    md.versions = {1: 3, 2: 3}
    locs = Locations()
    for cs in ("a", "b", "c", "d"):
        locs.report(cs, cs, 0.0, [], md.versions, set())
    locs.add(1, "a", 3)
    locs.add(1, "b", 3)      # 2 of 3
    locs.add(2, "c", 3)      # 1 of 3: most urgent
    plans = plan_clones(md, locs, 3, set(), 1, random.Random(0))
    assert [p[0] for p in plans] == [2]
    plans = plan_clones(md, locs, 3, set(), 5, random.Random(0))
    assert [p[0] for p in plans] == [2, 1]
    assert all(target not in locs.of(h) for h, _src, target in plans)


@pytest.mark.parametrize("seed", [11, 12])
def test_lease_is_extended_while_the_primary_keeps_mutating(seed):
    """§3.1: a lease outlives its 60 s (here lease_s) while mutations continue, through
    extensions piggybacked on heartbeats; the version changes only with a new lease."""
    world = GfsWorld(seed, SimOptions(lease_s=1.0))
    run(world, [("create", lambda s: namespace_op(s, Create("/f")))])
    work = [(f"a{i}", lambda s, i=i: record_append(s, "/f", b"r%03d" % i)) for i in range(40)]
    world.add_client("appender", work, think_s=0.1)
    world.sim.run_for(30.0, stop=world.clients_done)
    m = world.master()
    h = m.log.md.ns.files["/f"][0]
    assert m.log.md.versions[h] == 1, "one lease served all appends (extended, not re-granted)"
