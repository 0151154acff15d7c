"""Tests for giants.core.trace_html: structure of the space-time diagram, not pixels."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from giants.core.errors import LocalProtocolError
from giants.core.trace import TraceWriter
from giants.core.trace_html import render_file, render_html

SVG = "{http://www.w3.org/2000/svg}"


def hand_made_trace() -> TraceWriter:
    """n1 wins an election; a vote to n3 is dropped; n2 crashes and restarts; a
    partition comes and heals; a client op; one message is still in flight."""
    tw = TraceWriter()
    tw.event(0.00, "n1", "state", what="candidate", term=1)
    tw.event(0.01, "n1", "send", src="n1", dst="n2", id=1, reply_to=None, msg="RequestVote",
             body="RequestVote(term=1)")
    tw.event(0.01, "n1", "send", src="n1", dst="n3", id=2, reply_to=None, msg="RequestVote",
             body="RequestVote(term=1)")
    tw.event(0.01, "n1", "drop", src="n1", dst="n3", id=2, why="loss")
    tw.event(0.02, "n2", "recv", src="n1", dst="n2", id=1, reply_to=None, msg="RequestVote")
    tw.event(0.03, "n2", "send", src="n2", dst="n1", id=1, reply_to=1, msg="Vote", body="Vote(granted=True)")
    tw.event(0.04, "n1", "recv", src="n2", dst="n1", id=1, reply_to=1, msg="Vote")
    tw.event(0.04, "n1", "recv", src="n2", dst="n1", id=1, reply_to=1, msg="Vote")  # duplicate
    tw.event(0.05, "n1", "state", what="leader", term=1)
    tw.event(0.06, "n2", "fault", what="crash")
    tw.event(0.07, "client-1", "op", what="invoke", f="put", key="k")
    tw.event(0.08, "sim", "fault", what="partition", groups=[["n1"], ["n2", "n3"]])
    tw.event(0.09, "n2", "fault", what="restart")
    tw.event(0.10, "sim", "fault", what="heal")
    tw.event(0.11, "client-1", "op", what="ok", f="put", key="k")
    tw.event(0.12, "n1", "send", src="n1", dst="n3", id=3, reply_to=None, msg="Append", body="")
    return tw


def svg_of(page: str) -> ET.Element:
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])  # the diagram is well-formed XML


def groups(svg: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == cls]


def titles(elems: list[ET.Element]) -> list[str]:
    return [e.findtext(f"{SVG}title") or "" for e in elems]


def test_diagram_structure() -> None:
    tw = hand_made_trace()
    page = render_html([json.loads(line) for line in tw.lines])
    assert page.startswith("<!doctype html>") and "<script" not in page and "http://" not in \
        page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    svg = svg_of(page)
    lanes = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "node"]
    assert lanes == ["n1", "n2", "n3", "client-1"]  # "sim" is not a lane; clients last
    msgs = groups(svg, "msg")
    arrows = [g for g in msgs if g.find(f"{SVG}line").get("marker-end")]  # type: ignore[union-attr]
    assert len(arrows) == 3  # RequestVote n1->n2 and the Vote twice (duplicated)
    assert sum("msg=Vote" in t for t in titles(arrows)) == 2
    stubs = [g for g in msgs if not g.find(f"{SVG}line").get("marker-end")]  # type: ignore[union-attr]
    assert len(stubs) == 1 and "Append" in titles(stubs)[0]  # still in flight
    drops = groups(svg, "drop")
    assert len(drops) == 1 and "why=loss" in titles(drops)[0]
    states = titles(groups(svg, "circle"))
    assert any("what=leader" in t and "term=1" in t for t in states)
    ops = titles(groups(svg, "rect"))
    assert len(ops) == 2 and "what=ok" in ops[1]
    rects = list(svg.iter(f"{SVG}rect"))
    down = [r for r in rects if r.get("class") == "down"]
    cut = [r for r in rects if r.get("class") == "cut"]
    assert len(down) == 1 and "n2 down" in (down[0].findtext(f"{SVG}title") or "")
    assert len(cut) == 1 and "partition" in (cut[0].findtext(f"{SVG}title") or "")
    assert "RequestVote (2 sent)" in page and "Vote (1 sent)" in page  # legend counts tags


def test_arrows_point_down_and_between_the_right_lanes() -> None:
    events = [json.loads(line) for line in hand_made_trace().lines]
    svg = svg_of(render_html(events))
    lane_x = {t.text: float(t.get("x", 0)) for t in svg.iter(f"{SVG}text")
              if t.get("class") == "node"}
    for g in groups(svg, "msg"):
        line = g.find(f"{SVG}line")
        assert line is not None
        if not line.get("marker-end"):
            continue
        title = g.findtext(f"{SVG}title") or ""
        src = title.split("src=")[1].split(",")[0]
        dst = title.split("dst=")[1].split(",")[0]
        assert float(line.get("x1", 0)) == lane_x[src] and float(line.get("x2", 0)) == lane_x[dst]
        assert float(line.get("y2", 0)) > float(line.get("y1", 0))


def test_time_axis_real_t_spaces_by_time() -> None:
    events: list[dict[str, Any]] = [
        {"seq": 1, "t": 0.0, "node": "a", "kind": "state", "what": "x"},
        {"seq": 2, "t": 0.1, "node": "a", "kind": "state", "what": "y"},
        {"seq": 3, "t": 1.0, "node": "a", "kind": "state", "what": "z"},
    ]
    ys = [float(c.get("cy", 0)) for c in svg_of(render_html(events, axis="t")).iter(f"{SVG}circle")]
    assert ys[1] - ys[0] < (ys[2] - ys[1]) / 5
    ys = [float(c.get("cy", 0)) for c in svg_of(render_html(events)).iter(f"{SVG}circle")]
    assert ys[1] - ys[0] == ys[2] - ys[1]
    with pytest.raises(LocalProtocolError):
        render_html(events, axis="wall")


def test_window_caps_events_and_says_so() -> None:
    events = [{"seq": i, "t": i * 0.01, "node": f"n{i % 3}", "kind": "state", "what": "tick"}
              for i in range(1, 501)]
    page = render_html(events, start=100, max_events=50)
    assert len(list(svg_of(page).iter(f"{SVG}circle"))) == 50
    assert "events 101..150 of 500" in page and "--start" in page
    assert "no events" in render_html(events, start=600)
    with pytest.raises(LocalProtocolError):
        render_html(events, max_events=0)


def test_render_file_and_escaping(tmp_path: Path) -> None:
    tw = TraceWriter()
    tw.event(0.0, "<n1>", "state", what="a&b<script>", note='"quoted"')
    src = tmp_path / "run.trace.jsonl"
    tw.save(str(src))
    out = render_file(src)
    assert out == tmp_path / "run.trace.html"
    page = out.read_text()
    assert "<script>" not in page and "a&amp;b&lt;script&gt;" in page
    svg_of(page)
    assert render_file(src, tmp_path / "x.html", axis="t").exists()
