"""Tests for the ``giants`` CLI: argument handling in-process, ``up``/``run`` as real
processes (with the fake systems of fake_systems_core.py registered via --plugin)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from giants.core.cli import main, parse_extra
from giants.core.errors import GiantsError

HERE = str(Path(__file__).parent)
FAKE = ["--no-entry-points", "--plugin", "fake_systems_core:plugin"]


@pytest.fixture
def fake_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(HERE)


def test_parse_extra() -> None:
    assert parse_extra(["--shards", "4", "--fast", "--name=x y", "--ratio", "0.5",
                        "--tags", '["a"]', "--dry-run"]) == {
        "shards": 4, "fast": True, "name": "x y", "ratio": 0.5, "tags": ["a"], "dry_run": True}
    with pytest.raises(GiantsError):
        parse_extra(["stray"])


def test_list_shows_systems_roles_and_capabilities(fake_path: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*FAKE, "list"]) == 0
    out = capsys.readouterr().out
    header, _rule, *rows = out.splitlines()
    assert header.split() == ["SYSTEM", "ROLES", "CAPABILITIES", "HAS", "SUMMARY"]
    echo = next(r for r in rows if r.startswith("fake-echo"))
    assert "echo" in echo and "demo, sim" in echo
    assert any(r.startswith("fake-broken") and "crash, mute" in r for r in rows)


def test_errors_exit_2_with_a_message(fake_path: None, capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    assert main([*FAKE, "up"]) == 2
    assert "either SYSTEM or --spec" in capsys.readouterr().err
    assert main([*FAKE, "up", "nope"]) == 2
    assert "no system 'nope' installed" in capsys.readouterr().err
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    assert main([*FAKE, "run", "node", "--system", "fake-echo", "--config", str(cfg)]) == 2
    assert "has no role 'node' (roles: echo)" in capsys.readouterr().err
    assert main([*FAKE, "sim", "fake-front"]) == 2
    assert "no simulation (systems with one: fake-echo)" in capsys.readouterr().err
    assert main([*FAKE, "trace", str(tmp_path / "missing.jsonl")]) == 2
    with pytest.raises(SystemExit):
        main([*FAKE, "list", "--bogus"])


def test_sim_dispatches_and_renders(fake_path: None, capsys: pytest.CaptureFixture[str],
                                    tmp_path: Path) -> None:
    tdir = tmp_path / "traces"
    assert main([*FAKE, "sim", "fake-echo", "--seed", "7", "--ops", "20", "--trace-dir",
                 str(tdir), "--html"]) == 0
    out = capsys.readouterr().out
    assert "PASS fake-echo seed=7 ops=20" in out and "verdict: PASS" in out
    assert (tdir / "fake-echo-seed7.trace.html").exists()
    assert main([*FAKE, "sim", "fake-echo", "--nemesis", "fail", "--trace-dir", str(tdir)]) == 1
    assert "verdict: FAIL" in capsys.readouterr().out
    spec = tmp_path / "s.toml"
    spec.write_text('[services.e]\nsystem = "fake-echo"\nnodes = 3\n')
    assert main([*FAKE, "sim", "--spec", str(spec), "--trace-dir", str(tdir)]) == 0


def test_demo_runs_all_and_summarises(fake_path: None, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert main([*FAKE, "demo"]) == 1  # fake-front's demo raises
    out = capsys.readouterr().out
    assert "fake-echo demo ran" in out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line.startswith("fake-")}
    assert rows == {"fake-echo": "PASS", "fake-front": "FAIL"}
    assert main([*FAKE, "demo", "fake-echo"]) == 0


def test_trace_command_writes_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t.trace.jsonl"
    src.write_text('{"seq":1,"t":0.0,"node":"n1","kind":"state","what":"leader"}\n')
    assert main(["--no-entry-points", "trace", str(src), "-o", str(tmp_path / "o.html"),
                 "--axis", "t"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "o.html")
    assert "leader" in (tmp_path / "o.html").read_text()


# -- real processes --------------------------------------------------------------------------


def start_up(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get(
        "PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "giants.core.cli", *FAKE, "up", *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the launcher prints it once every instance is ready
    if not line:
        proc.kill()
        raise AssertionError(f"giants up printed nothing: {proc.communicate()[1]}")
    return proc, json.loads(line)


def ask(endpoint: str, data: bytes) -> bytes:
    import socket

    host, _, port = endpoint.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        return s.recv(1024)


def wait_gone(pids: list[int], deadline_s: float = 15.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.real
def test_up_prints_json_records_survives_a_dead_child_and_stops(tmp_path: Path) -> None:
    proc, info = start_up(tmp_path, "fake-echo", "--nodes", "2", "--greeting", "yo")
    try:
        assert set(info) >= {"system", "endpoints", "pids", "data_dir"}
        assert info["system"] == "fake-echo"
        assert info["data_dir"] == str(tmp_path / ".giants" / "data" / "fake-echo")
        assert json.loads((tmp_path / ".giants" / "last-up.json").read_text()) == info
        eps = info["endpoints"]["echo"]  # type: ignore[index]
        pids = info["pids"]
        assert isinstance(pids, dict) and isinstance(eps, list)
        assert ask(eps[1], b"x") == b"echo-1:yo:x"  # the extra reached the system's plan
        os.kill(pids["echo-0"], signal.SIGKILL)
        assert proc.stderr is not None
        assert "echo-0 exited with status -9" in proc.stderr.readline()
        assert proc.poll() is None and ask(eps[1], b"y") == b"echo-1:yo:y"
        proc.send_signal(signal.SIGHUP)  # restart the dead
        assert "echo-0 restarted as pid" in proc.stderr.readline()
        record = json.loads((tmp_path / ".giants" / "last-up.json").read_text())
        assert record["pids"]["echo-0"] != pids["echo-0"]
        assert ask(eps[0], b"z") == b"echo-0:yo:z"
        pids = record["pids"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert wait_gone(list(pids.values()))
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.real
def test_children_exit_when_the_launcher_is_killed(tmp_path: Path) -> None:
    proc, info = start_up(tmp_path, "fake-echo", "--nodes", "1")
    pids = info["pids"]
    assert isinstance(pids, dict)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_gone(list(pids.values())), "an orphaned instance kept running"


@pytest.mark.real
def test_up_spec(tmp_path: Path) -> None:
    (tmp_path / "pair.toml").write_text(
        '[services.front]\nsystem = "fake-front"\nlock = "echo"\n\n'
        '[services.echo]\nsystem = "fake-echo"\nnodes = 1\ngreeting = "s"\n')
    proc, info = start_up(tmp_path, "--spec", "pair.toml")
    try:
        assert info["system"] == "pair"
        eps = info["endpoints"]
        assert isinstance(eps, dict)
        assert ask(eps["front/front"][0], b"q") == b"front>echo-0:s:q"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
