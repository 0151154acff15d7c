"""The gfs plugin: the system's plan, the filesystem capability, rebalancing plans."""

from __future__ import annotations

import random

from giants.core.interfaces import FileSystem
from giants.core.plugins import UpOptions, load_registry
from giants.gfs import plugin
from giants.gfs._locations import Locations
from giants.gfs._metadata import Metadata
from giants.gfs._replication import REBALANCE_SLACK, plan_drops, plan_rebalance
from giants.gfs.client import GFSClient, open_filesystem


def test_plan_is_one_master_one_shadow_and_four_chunkservers_by_default():
    instances = plugin.plan(UpOptions(None, 7000, "/tmp/x", extra={"chunk_size": 1 << 20}))
    assert [(i.role, i.name) for i in instances] == [
        ("master", "master"), ("shadow", "shadow-0"), ("chunkserver", "cs-0"),
        ("chunkserver", "cs-1"), ("chunkserver", "cs-2"), ("chunkserver", "cs-3")]
    assert len({i.endpoint for i in instances}) == 6
    assert all(i.config["chunk_size"] == 1 << 20 and i.config["shadows"] == ["shadow-0"]
               for i in instances)
    assert instances[0].config["peers"]["cs-3"] == "127.0.0.1:7005"


def test_registry_offers_the_gfs_filesystem_capability():
    registry = load_registry([plugin], entry_points_too=False)
    assert registry.system("gfs").roles.keys() == {"master", "shadow", "chunkserver"}
    assert registry.filesystem("gfs") is open_filesystem
    assert isinstance(GFSClient(["127.0.0.1:1"]), FileSystem)


def test_rebalancing_moves_a_chunk_from_the_heaviest_to_the_lightest_server():
    md = Metadata()
    handles = list(range(1, 8))
    md.ns.add_file("/f", handles)
    md.versions = {h: 1 for h in handles}
    locs = Locations()
    for cs in ("a", "b", "c"):
        locs.report(cs, cs, 0.0, [], md.versions, set())
    for h in handles:
        locs.add(h, "a", 1)
        locs.add(h, "b", 1)
    assert locs.load("a") - locs.load("c") > REBALANCE_SLACK
    move = plan_rebalance(md, locs, set(), random.Random(1))
    assert move is not None
    h, source, target = move
    assert target == "c" and source in ("a", "b") and h in handles
    locs.add(h, target, 1)
    assert plan_drops(md, locs, 2, set()) == [(h, source)]
    assert plan_rebalance(md, locs, set(handles), random.Random(1)) is None  # all busy
