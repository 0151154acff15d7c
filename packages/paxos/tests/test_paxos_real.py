"""Real processes: ``giants up paxos --nodes 3`` as three OS processes on 127.0.0.1;
SIGKILL the leader under client load; progress resumes under a new leader and every
acknowledged write is read back (and the whole client history is linearizable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from giants.paxos.demo import kill_leader_under_load


@pytest.mark.real
def test_kill_the_leader_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    report = kill_leader_under_load("paxos", str(tmp_path / "data"), clients=3,
                                    before_s=1.0, after_s=2.0, say=lambda _s: None)
    assert report.ok_before > 0, "no progress before the kill"
    assert report.new_leader not in (None, report.killed), report
    assert report.ok_after > 0, f"no progress after killing {report.killed}"
    assert report.lost_writes == [], report.lost_writes
    assert report.linearizable, report.explain
