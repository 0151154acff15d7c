"""Tests for giants.core.cluster (specs, resolve_endpoints) and giants.core.launcher
(LocalCluster with real processes of the fake systems in fake_systems_core.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from giants.core.cluster import (
    ClusterSpec,
    load_spec,
    parse_endpoints,
    parse_spec,
    resolve_endpoints,
)
from giants.core.errors import LocalProtocolError
from giants.core.launcher import LaunchError, LocalCluster, _ports_in, load_plugin_objects
from giants.core.plugins import UpOptions

HERE = str(Path(__file__).parent)
PLUGIN = "fake_systems_core:plugin"

# -- specs ---------------------------------------------------------------------------------

SPEC = """
base_port = 7000
data_dir = "/tmp/giants-spec"

[services.tablets]
system = "bigtable"
lock = "locks"
filesystem = "fs"
shards = 4

[services.fs]
system = "colossus"
consensus = "raft"
base_port = 9000

[services.locks]
system = "chubby"
nodes = 5
options = { lease_s = 12 }
"""


def test_spec_orders_services_by_binding_and_splits_keys(tmp_path: Path) -> None:
    path = tmp_path / "stack.toml"
    path.write_text(SPEC)
    spec = load_spec(path)
    assert spec.name == "stack"
    assert [s.name for s in spec.services] == ["locks", "fs", "tablets"]
    tablets = spec.service("tablets")
    assert tablets.bindings == {"lock": "locks", "filesystem": "fs"}
    assert tablets.extra == {"shards": 4}
    assert spec.service("fs").bindings == {"consensus": "raft"}
    assert spec.service("locks").extra == {"lease_s": 12} and spec.service("locks").nodes == 5
    assert spec.service_base_port(spec.service("locks")) == 7000
    assert spec.service_base_port(spec.service("fs")) == 9000
    assert spec.service_base_port(spec.service("tablets")) == 7200


@pytest.mark.parametrize("raw, message", [
    ({"services": {}}, "at least one"),
    ({"services": {"a": {"nodes": 3}}}, "'system'"),
    ({"services": {"a": {"system": "x", "nodes": 0}}}, "nodes must be"),
    ({"services": {"a": {"system": "x"}}, "colour": 1}, "unknown top-level"),
    ({"services": {"a": {"system": "x", "lock": "b"}, "b": {"system": "y", "lock": "a"}}},
     "cycle"),
    ({"services": {"a": {"system": "x", "options": 3}}}, "options"),
])
def test_spec_errors_are_clear(raw: dict[str, object], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        parse_spec(raw)


def test_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError, match="cannot read"):
        load_spec(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("services = [")
    with pytest.raises(LocalProtocolError, match="not valid TOML"):
        load_spec(tmp_path / "bad.toml")


# -- resolve_endpoints -----------------------------------------------------------------------


def write_last_up(root: Path, services: dict[str, object]) -> None:
    (root / ".giants").mkdir()
    (root / ".giants" / "last-up.json").write_text(json.dumps({"services": services}))


def test_resolve_endpoints_precedence(tmp_path: Path) -> None:
    write_last_up(tmp_path, {"kv": {"system": "kv", "endpoints": {"node": ["127.0.0.1:1"]}}})
    env = {"GIANTS_ENDPOINTS": "127.0.0.1:2,127.0.0.1:3"}
    assert resolve_endpoints("h:4", cwd=tmp_path, environ=env) == ["h:4"]
    assert resolve_endpoints(None, cwd=tmp_path, environ=env) == ["127.0.0.1:2", "127.0.0.1:3"]
    assert resolve_endpoints(None, cwd=tmp_path, environ={}) == ["127.0.0.1:1"]
    assert resolve_endpoints(["a:5", "b:6"]) == ["a:5", "b:6"]


def test_resolve_endpoints_picks_system_and_role(tmp_path: Path) -> None:
    write_last_up(tmp_path, {
        "locks": {"system": "chubby", "endpoints": {"cell": ["127.0.0.1:10", "127.0.0.1:11"]}},
        "fs": {"system": "gfs", "endpoints": {"master": ["127.0.0.1:20"],
                                              "chunkserver": ["127.0.0.1:21"]}},
    })
    assert resolve_endpoints(None, "chubby", cwd=tmp_path, environ={}) == [
        "127.0.0.1:10", "127.0.0.1:11"]
    assert resolve_endpoints(None, "fs", "master", cwd=tmp_path, environ={}) == ["127.0.0.1:20"]
    with pytest.raises(LocalProtocolError, match="several services"):
        resolve_endpoints(None, cwd=tmp_path, environ={})
    with pytest.raises(LocalProtocolError, match="which role"):
        resolve_endpoints(None, "gfs", cwd=tmp_path, environ={})
    with pytest.raises(LocalProtocolError, match="runs no 'raft'"):
        resolve_endpoints(None, "raft", cwd=tmp_path, environ={})
    with pytest.raises(LocalProtocolError, match="no endpoints for role"):
        resolve_endpoints(None, "gfs", "shadow", cwd=tmp_path, environ={})


def test_resolve_endpoints_errors(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError, match="--endpoints"):
        resolve_endpoints(None, cwd=tmp_path, environ={})
    for bad in ("localhost", "h:0", "h:99999", ":80", ","):
        with pytest.raises(LocalProtocolError):
            parse_endpoints(bad)


def test_ports_in_config() -> None:
    cfg = {"listen": "127.0.0.1:7000", "peers": {"a": "127.0.0.1:7001"}, "peer_port": 7100,
           "url": "sqlite:///x", "nodes": 3, "ok": True}
    assert sorted(_ports_in(cfg)) == [7000, 7001, 7100]


# -- LocalCluster with real processes --------------------------------------------------------


def ask(endpoint: str, data: bytes, timeout_s: float = 10.0) -> bytes:
    host, _, port = endpoint.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.sendall(data)
        return s.recv(65536)


def refuses(endpoint: str) -> bool:
    try:
        ask(endpoint, b"x", timeout_s=1.0)
    except OSError:
        return True
    return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def make_cluster(tmp_path: Path, system: str = "fake-echo", **extra: object) -> LocalCluster:
    opts = UpOptions(2 if system == "fake-echo" else None, 0, str(tmp_path / "data"),
                     extra=dict(extra))
    return LocalCluster(system, opts, plugins=[PLUGIN], pythonpath=[HERE], ready_timeout_s=30,
                        entry_points=False)


@pytest.mark.real
def test_local_cluster_kill_restart_stop(tmp_path: Path) -> None:
    record = tmp_path / "rec" / "last-up.json"
    cluster = make_cluster(tmp_path, greeting="hi")
    cluster.record_path = record
    with cluster:
        info = json.loads(json.dumps(cluster.info))  # it is the JSON line as printed
        assert info["system"] == "fake-echo"
        eps = info["endpoints"]["echo"]
        assert len(eps) == 2 and all(e.startswith("127.0.0.1:") for e in eps)
        assert set(info["pids"]) == {"echo-0", "echo-1"}
        assert json.loads(record.read_text())["pids"] == info["pids"]
        assert ask(eps[0], b"ping") == b"echo-0:hi:ping"
        assert ask(eps[1], b"pong") == b"echo-1:hi:pong"
        config = json.loads((tmp_path / "data" / "echo-1" / "config.json").read_text())
        assert config["listen"] == eps[1] and config["name"] == "echo-1"

        old_pid = cluster.pids["echo-1"]
        assert cluster.kill("echo-1") == -signal.SIGKILL
        assert not cluster.alive("echo-1") and refuses(eps[1])
        assert ask(eps[0], b"still") == b"echo-0:hi:still"  # the survivor serves on
        assert cluster.reap() == []  # killed on purpose: not an unexpected death
        new_pid = cluster.restart("echo-1")
        assert new_pid != old_pid and ask(eps[1], b"back") == b"echo-1:hi:back"
        assert json.loads(record.read_text())["pids"]["echo-1"] == new_pid

        os.kill(cluster.pids["echo-0"], signal.SIGKILL)  # dies behind the launcher's back
        deadline = time.monotonic() + 10
        died: list[tuple[str, int]] = []
        while not died and time.monotonic() < deadline:
            died = cluster.reap()
            time.sleep(0.05)
        assert died == [("echo-0", -signal.SIGKILL)]
        with pytest.raises(LocalProtocolError, match="still running"):
            cluster.restart("echo-1")
        cluster.restart("echo-0")
        assert ask(eps[0], b"again") == b"echo-0:hi:again"
        procs = [c.proc for c in cluster.children.values()]
    assert all(p is not None and p.returncode == 0 for p in procs)  # SIGTERM: clean exit
    assert all(refuses(e) for e in eps)
    assert "shutting down" in cluster.log_tail("echo-0")


@pytest.mark.real
def test_spec_cluster_passes_bindings(tmp_path: Path) -> None:
    spec = parse_spec({
        "name": "pair", "data_dir": str(tmp_path / "d"),
        "services": {"front": {"system": "fake-front", "lock": "echo"},
                     "echo": {"system": "fake-echo", "nodes": 1, "greeting": "g"}},
    })
    with LocalCluster.from_spec(spec, plugins=[PLUGIN], pythonpath=[HERE],
                                entry_points=False) as cluster:
        info = cluster.info
        assert info["system"] == "pair" and set(info["services"]) == {"echo", "front"}
        assert set(info["pids"]) == {"echo/echo-0", "front/front-0"}
        front = info["endpoints"]["front/front"][0]
        assert ask(front, b"hello") == b"front>echo-0:g:hello"
        cfg = json.loads((tmp_path / "d" / "front" / "front-0" / "config.json").read_text())
        assert cfg["bound_to"] == "fake-echo"
        assert cfg["upstream"] == info["endpoints"]["echo/echo"][0]


@pytest.mark.real
def test_launch_errors_name_the_instance_and_log(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"crash-0 exited with status 3[\s\S]*on purpose"):
        make_cluster(tmp_path / "a", "fake-broken", role="crash").start()
    cluster = make_cluster(tmp_path / "b", "fake-broken", role="mute")
    cluster.ready_timeout_s = 1.5
    with pytest.raises(LaunchError, match="mute-0 did not accept connections"):
        cluster.start()
    assert all(not c.proc or c.proc.poll() is not None for c in cluster.children.values())


def test_unknown_system_and_plugin_fail_early(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError, match="no system 'nope'"):
        make_cluster(tmp_path, "nope")
    with pytest.raises(LocalProtocolError, match="cannot load plugin"):
        load_plugin_objects(["no_such_module_here:plugin"])
    spec = ClusterSpec("x", ())
    assert spec.services == ()
