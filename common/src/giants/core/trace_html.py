"""Render a trace (``giants.core.trace`` lines) as one self-contained HTML file.

DESIGN.md "trace": a run's trace renders to a space-time diagram (Lamport's picture of
a distributed run), so a person can look at an election or a 2PC round instead of
reading logs. One vertical lane per node, time flowing down; an arrow per message from
its ``send`` to its ``recv`` (matched by ``(src, id)``; a duplicated message gets two
arrows), labelled with the message tag; a red cross where a message was dropped;
markers for state changes, client operations and faults; a crashed node's lane shaded
until its restart; a partition shaded across the diagram until ``heal``. Every mark has
a hover title with the event's fields. Time is the logical ``seq`` (one row per event,
the default, readable however bursty the run) or real ``t`` (``axis="t"``, distances
proportional to time).

The page is plain HTML + inline SVG + CSS: no scripts, no external resources. Huge
traces are cut to a window (``start``, ``max_events``) so the page still opens; the
header says which part is shown.
"""

from __future__ import annotations

import html
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from giants.core.errors import LocalProtocolError
from giants.core.trace import read_trace

__all__ = ["render_html", "render_file", "DEFAULT_MAX_EVENTS"]

# A browser stays responsive with a few thousand SVG groups; beyond that, page through
# the trace with ``start``.
DEFAULT_MAX_EVENTS = 3000
ROW_PX = 18
LANE_PX = 170
TOP_PX = 50
LEFT_PX = 90
GLOBAL_NODES = ("sim", "nemesis")  # fault sources that are not lanes
OP_COLORS = {"invoke": "#777", "ok": "#2a2", "fail": "#c22", "info": "#e80"}
FAULT_COLORS = {"crash": "#c00", "restart": "#090", "partition": "#c44", "heal": "#090",
                "block": "#e60", "clog": "#e60", "clock": "#83c"}


@dataclass
class _Layout:
    lanes: dict[str, float]
    ys: list[float]
    height: float
    width: float


def _natural(name: str) -> tuple[Any, ...]:
    parts = re.split(r"(\d+)", name)
    key = tuple(int(p) if p.isdigit() else p for p in parts)
    is_client = "client" in name.lower() or re.fullmatch(r"c\d+", name) is not None
    return (is_client, key)


def _lanes(events: Sequence[dict[str, Any]]) -> list[str]:
    names: set[str] = set()
    for ev in events:
        for k in ("node", "src", "dst"):
            v = ev.get(k)
            if isinstance(v, str) and v not in GLOBAL_NODES:
                names.add(v)
    return sorted(names, key=_natural)


def _layout(events: Sequence[dict[str, Any]], axis: str) -> _Layout:
    lanes = {n: float(LEFT_PX + i * LANE_PX) for i, n in enumerate(_lanes(events))}
    span = max(len(events), 1) * ROW_PX
    if axis == "seq":
        ys = [float(TOP_PX + i * ROW_PX) for i in range(len(events))]
    else:
        ts = [float(ev.get("t", 0.0)) for ev in events]
        t0, t1 = (min(ts), max(ts)) if ts else (0.0, 0.0)
        scale = span / (t1 - t0) if t1 > t0 else 0.0
        ys = [TOP_PX + (t - t0) * scale for t in ts]
    width = LEFT_PX + max(len(lanes), 1) * LANE_PX
    return _Layout(lanes, ys, TOP_PX + span + 30, width)


def _color(tag: str) -> str:
    hue = zlib.crc32(tag.encode()) % 360
    return f"hsl({hue},65%,38%)"


def _title(ev: dict[str, Any]) -> str:
    shown = {k: v for k, v in ev.items() if k not in ("seq",)}
    text = f"#{ev.get('seq', '?')} " + ", ".join(f"{k}={v}" for k, v in shown.items())
    return f"<title>{html.escape(text)}</title>"


def _label(x: float, y: float, text: str, cls: str = "lbl", anchor: str = "start") -> str:
    return (f'<text class="{cls}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">'
            f"{html.escape(text[:32])}</text>")


class _Svg:
    """Accumulates SVG fragments for one window of events."""

    def __init__(self, events: Sequence[dict[str, Any]], axis: str) -> None:
        self.events = events
        self.lay = _layout(events, axis)
        self.back: list[str] = []   # shading, drawn first
        self.parts: list[str] = []
        self.tags: dict[str, int] = {}

    def x(self, node: Any) -> float | None:
        return self.lay.lanes.get(node) if isinstance(node, str) else None

    def build(self) -> str:
        sends: dict[tuple[Any, Any], int] = {}
        received: set[tuple[Any, Any]] = set()
        for i, ev in enumerate(self.events):
            if ev.get("kind") == "send":
                sends[(ev.get("src", ev.get("node")), ev.get("id"))] = i
                tag = str(ev.get("msg", "?"))
                self.tags[tag] = self.tags.get(tag, 0) + 1
            elif ev.get("kind") in ("recv", "drop"):
                received.add((ev.get("src"), ev.get("id")))
        self._faults()
        for i, ev in enumerate(self.events):
            self._event(i, ev, sends, received)
        return self._svg()

    # -- marks --------------------------------------------------------------------------

    def _event(self, i: int, ev: dict[str, Any], sends: dict[tuple[Any, Any], int],
               received: set[tuple[Any, Any]]) -> None:
        kind = ev.get("kind")
        y = self.lay.ys[i]
        if kind == "recv":
            j = sends.get((ev.get("src"), ev.get("id")))
            self._arrow(j, i, ev)
        elif kind == "send":
            if (ev.get("src", ev.get("node")), ev.get("id")) not in received:
                self._stub(i, ev, "in flight or lost", "#999")
        elif kind == "drop":
            self._drop(i, ev, sends)
        elif kind == "state":
            self._marker(ev.get("node"), y, ev, "circle", "#2563eb", str(ev.get("what", "")))
        elif kind == "op":
            what = str(ev.get("what", ""))
            self._marker(ev.get("node"), y, ev, "rect", OP_COLORS.get(what, "#555"), what)
        elif kind == "fault":
            what = str(ev.get("what", ""))
            node = ev.get("node")
            if self.x(node) is not None:
                self._marker(node, y, ev, "diamond", FAULT_COLORS.get(what, "#a0a"), what)
            else:
                self.parts.append(
                    f'<g class="fault">{_title(ev)}<line x1="0" x2="{self.lay.width}" '
                    f'y1="{y:.1f}" y2="{y:.1f}" stroke="{FAULT_COLORS.get(what, "#a0a")}" '
                    f'stroke-dasharray="6 3"/>{_label(4, y - 3, what, "flbl")}</g>')
        else:
            self._marker(ev.get("node"), y, ev, "circle", "#888", str(kind))

    def _arrow(self, j: int | None, i: int, ev: dict[str, Any]) -> None:
        x2, y2 = self.x(ev.get("dst", ev.get("node"))), self.lay.ys[i]
        tag = str(ev.get("msg", "?"))
        color = _color(tag)
        if x2 is None:
            return
        if j is None:  # sent before the window, or by a node the trace did not record
            x1, y1 = self.x(ev.get("src")), self.lay.ys[0] - ROW_PX
            if x1 is None:
                x1 = x2 - 30
        else:
            x1, y1 = self.x(self.events[j].get("node")), self.lay.ys[j]
            if x1 is None:
                return
            send = self.events[j]
            ev = {**send, **{k: v for k, v in ev.items() if k not in send}, "recv_seq": ev.get("seq")}
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        self.parts.append(
            f'<g class="msg">{_title(ev)}<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" '
            f'y2="{y2:.1f}" stroke="{color}" marker-end="url(#arrow)"/>'
            f'{_label(mx + 3, my - 2, tag, "mlbl")}</g>')

    def _stub(self, i: int, ev: dict[str, Any], why: str, color: str) -> None:
        x1, y = self.x(ev.get("node")), self.lay.ys[i]
        x2 = self.x(ev.get("dst"))
        if x1 is None:
            return
        tip = x1 + (30 if x2 is None else (x2 - x1) * 0.35)
        self.parts.append(
            f'<g class="msg">{_title({**ev, "note": why})}<line x1="{x1:.1f}" y1="{y:.1f}" '
            f'x2="{tip:.1f}" y2="{y + ROW_PX * 0.6:.1f}" stroke="{color}" '
            f'stroke-dasharray="4 3"/>{_label(tip + 3, y + 4, str(ev.get("msg", "")), "mlbl")}</g>')

    def _drop(self, i: int, ev: dict[str, Any], sends: dict[tuple[Any, Any], int]) -> None:
        j = sends.get((ev.get("src"), ev.get("id")))
        x1 = self.x(ev.get("src", ev.get("node")))
        x2 = self.x(ev.get("dst"))
        if x1 is None:
            return
        y1 = self.lay.ys[j] if j is not None else self.lay.ys[i]
        tip_x = x1 + (40 if x2 is None else (x2 - x1) * 0.45)
        tip_y = self.lay.ys[i] + ROW_PX * 0.5
        msg = self.events[j].get("msg", "") if j is not None else ""
        self.parts.append(
            f'<g class="drop">{_title(ev)}<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{tip_x:.1f}" '
            f'y2="{tip_y:.1f}" stroke="#c00" stroke-dasharray="3 3"/>'
            f'<path d="M{tip_x - 5:.1f},{tip_y - 5:.1f} l10,10 m0,-10 l-10,10" stroke="#c00" '
            f'stroke-width="2"/>{_label(tip_x + 7, tip_y + 4, f"{msg} dropped", "dlbl")}</g>')

    def _marker(self, node: Any, y: float, ev: dict[str, Any], shape: str, color: str,
                text: str) -> None:
        x = self.x(node)
        if x is None:
            return
        if shape == "circle":
            mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}"/>'
        elif shape == "rect":
            mark = f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{color}"/>'
        else:
            mark = (f'<path d="M{x:.1f},{y - 7:.1f} l7,7 l-7,7 l-7,-7 z" fill="{color}"/>')
        self.parts.append(f'<g class="{shape}">{_title(ev)}{mark}'
                          f'{_label(x - 8, y + 4, text, "slbl", "end")}</g>')

    def _faults(self) -> None:
        """Shade crashed lanes (crash -> restart) and partitions (partition -> heal)."""
        bottom = self.lay.height - 20
        down: dict[str, float] = {}
        cut: list[tuple[float, dict[str, Any]]] = []
        for i, ev in enumerate(self.events):
            if ev.get("kind") != "fault":
                continue
            what, y, node = ev.get("what"), self.lay.ys[i], ev.get("node")
            if what == "crash" and isinstance(node, str):
                down.setdefault(node, y)
            elif what == "restart" and isinstance(node, str) and node in down:
                self._shade_lane(node, down.pop(node), y)
            elif what in ("partition", "block", "clog"):
                cut.append((y, ev))
            elif what == "heal":
                for y0, pev in cut:
                    self._shade_band(y0, y, pev)
                cut = []
        for node, y0 in down.items():
            self._shade_lane(node, y0, bottom)
        for y0, pev in cut:
            self._shade_band(y0, bottom, pev)

    def _shade_lane(self, node: str, y0: float, y1: float) -> None:
        x = self.lay.lanes[node]
        self.back.append(f'<rect class="down" x="{x - LANE_PX / 2 + 8:.1f}" y="{y0:.1f}" '
                         f'width="{LANE_PX - 16}" height="{max(y1 - y0, 2):.1f}">'
                         f"<title>{html.escape(node)} down</title></rect>")

    def _shade_band(self, y0: float, y1: float, ev: dict[str, Any]) -> None:
        self.back.append(f'<rect class="cut" x="0" y="{y0:.1f}" width="{self.lay.width}" '
                         f'height="{max(y1 - y0, 2):.1f}">{_title(ev)}</rect>')

    def _svg(self) -> str:
        lanes = []
        for name, x in self.lay.lanes.items():
            lanes.append(f'<line class="lane" x1="{x}" y1="{TOP_PX - 10}" x2="{x}" '
                         f'y2="{self.lay.height - 20:.1f}"/>'
                         f'<text class="node" x="{x}" y="{TOP_PX - 18}" text-anchor="middle">'
                         f"{html.escape(name)}</text>")
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.lay.width + 60:.0f}" '
                f'height="{self.lay.height:.0f}"><defs><marker id="arrow" viewBox="0 0 10 10" '
                'refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
                '<path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>'
                + "".join(self.back) + "".join(lanes) + "".join(self.parts) + "</svg>")


CSS = """
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 6px}
.meta{color:#555;margin-bottom:10px}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:8px 0 12px;max-width:1200px}
.legend span{display:inline-flex;align-items:center;gap:5px}
.sw{display:inline-block;width:12px;height:12px}
.diagram{overflow:auto;border:1px solid #ddd;max-height:85vh}
.lane{stroke:#bbb;stroke-width:1}
.node{font-weight:600;font-size:13px}
.msg line{stroke-width:1.3}.msg:hover line{stroke-width:3}
.mlbl{font-size:10px;fill:#333}.slbl{font-size:10px;fill:#1e3a8a}
.dlbl{font-size:10px;fill:#c00}.flbl{font-size:11px;fill:#a00;font-weight:600}
.down{fill:#999;opacity:.25}.cut{fill:#f55;opacity:.08}
g:hover text{font-weight:700}
"""


def _legend(tags: dict[str, int]) -> str:
    items = [
        ('<span class="sw" style="background:#2563eb;border-radius:6px"></span>state change'),
        ('<span class="sw" style="background:#2a2"></span>client op (ok; grey invoke, '
         "red fail, orange info)"),
        ('<span class="sw" style="background:#c00;transform:rotate(45deg)"></span>fault'),
        ('<span class="sw" style="background:#999;opacity:.5"></span>node down'),
        ('<span class="sw" style="background:#f55;opacity:.3"></span>partition / cut link'),
        ('<span style="color:#c00;font-weight:700">&#x2715;</span>message dropped'),
        ('<span style="color:#999">- - -</span>message not received (in flight or lost)'),
    ]
    for tag, n in sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:24]:
        items.append(f'<span class="sw" style="background:{_color(tag)}"></span>'
                     f"{html.escape(tag)} ({n} sent)")
    return '<div class="legend">' + "".join(f"<span>{i}</span>" for i in items) + "</div>"


def render_html(events: Sequence[dict[str, Any]], *, axis: str = "seq", start: int = 0,
                max_events: int = DEFAULT_MAX_EVENTS, title: str = "giants trace") -> str:
    """The HTML page for ``events[start : start + max_events]``.

    Raises ``LocalProtocolError`` for an unknown ``axis`` or a negative window.
    """
    if axis not in ("seq", "t"):
        raise LocalProtocolError(f"axis must be 'seq' or 't', not {axis!r}")
    if start < 0 or max_events < 1:
        raise LocalProtocolError("start must be >= 0 and max_events >= 1")
    window = list(events[start : start + max_events])
    svg = _Svg(window, axis)
    body = svg.build()
    shown = (f"events {start + 1}..{start + len(window)} of {len(events)}" if window
             else f"no events (trace has {len(events)})")
    if len(window) < len(events):
        shown += " (use --start / --max-events to see the rest)"
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<div class="meta">{html.escape(shown)}; {len(svg.lay.lanes)} nodes; time axis: '
            f"{'logical (seq)' if axis == 'seq' else 'real (t)'}; hover any mark for details"
            f"</div>{_legend(svg.tags)}<div class=\"diagram\">{body}</div></body></html>\n")


def render_file(path: str | Path, out: str | Path | None = None, **options: Any) -> Path:
    """Render the trace file ``path`` to ``out`` (default: ``path`` with ``.html``)."""
    src = Path(path)
    dest = Path(out) if out is not None else src.with_suffix(".html")
    options.setdefault("title", f"giants trace: {src.name}")
    dest.write_text(render_html(read_trace(str(src)), **options), encoding="utf-8")
    return dest
