"""The plugins register what issue 5 names: the 2pc system with its roles and plan, the
``commit_protocol`` capability, and (from giants-2pl) the ``lock_manager`` one."""

from __future__ import annotations

from giants.core.plugins import UpOptions, load_registry
from giants.twopc import Coordinator, Participant, ReplicatedCoordinator
from giants.twopl import LockManager


def test_registry_has_the_system_and_capabilities() -> None:
    reg = load_registry()
    system = reg.system("2pc")
    assert set(system.roles) == {"coordinator", "participant"}
    proto = reg.get("commit_protocol", "2pc")
    assert (proto.coordinator, proto.replicated_coordinator, proto.participant) == (
        Coordinator, ReplicatedCoordinator, Participant)
    manager = reg.get("lock_manager", "2pl")("wait-die")
    assert isinstance(manager, LockManager) and manager.policy.value == "wait-die"


def test_plan_shards_and_replicated_coordinator() -> None:
    system = load_registry().system("2pc")
    plain = system.plan(UpOptions(None, 7000, "/tmp/d", extra={"shards": 4}))
    assert [i.name for i in plain] == ["coord-0", "shard-0", "shard-1", "shard-2", "shard-3"]
    assert [i.endpoint for i in plain][-1] == "127.0.0.1:7004"
    assert plain[1].config["options"]["detector"] == ["coord-0"]
    repl = system.plan(UpOptions(3, 7000, "/tmp/d", extra={"shards": 2, "consensus": "raft",
                                                           "deadlock": "detect"}))
    assert [i.role for i in repl] == ["coordinator"] * 3 + ["participant"] * 2
    assert repl[0].config["consensus"] == "raft"
    assert repl[3].config["options"]["deadlock"] == "detect"
