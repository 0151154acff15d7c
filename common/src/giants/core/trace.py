"""Traces: one JSON line per event, for people to look at and for determinism checks.

Line format (keys sorted, compact separators, so equal runs give byte-equal files)::

    {"seq": 17, "t": 0.123456, "node": "n1", "kind": "send", ...}

Kinds used by the hosts: ``send`` / ``recv`` (``src``, ``dst``, ``id``, ``reply_to``,
``msg`` = message tag, ``body`` = short summary), ``drop`` (with ``why``), ``state`` (a
process's own ``io.trace`` event: ``what`` plus its fields), ``fault`` (nemesis actions:
``what``), ``op`` (client operations: ``what`` = invoke/ok/fail/info). ``t`` is
seconds of (virtual or wall) time, ``seq`` a logical counter. ``giants trace FILE``
renders a trace as an HTML space-time diagram (``giants.core.trace_html``).
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import IO, Any

__all__ = ["TraceWriter", "summarize", "read_trace"]

# Keep summaries short: a trace is for reading, and bulk payloads would drown it.
SUMMARY_MAX_CHARS = 160


def summarize(body: Any) -> str:
    """A short human summary of a message body: its fields, bytes shown by length."""
    if is_dataclass(body) and not isinstance(body, type):
        parts = []
        for f in fields(body):
            parts.append(f"{f.name}={_short(getattr(body, f.name))}")
        text = f"{type(body).__name__}({', '.join(parts)})"
    else:
        text = _short(body)
    return text if len(text) <= SUMMARY_MAX_CHARS else text[: SUMMARY_MAX_CHARS - 3] + "..."


def _short(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)}B>"
    if isinstance(v, (list, tuple)) and len(v) > 4:
        return f"[{len(v)} items]"
    if is_dataclass(v) and not isinstance(v, type):
        return type(v).__name__
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)}B>"
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    return summarize(v)


class TraceWriter:
    """Writes trace lines to a text stream (or keeps them in memory when ``out`` is None)."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out
        self.lines: list[str] = []
        self._seq = 0

    def event(self, t: float, node: str, kind: str, **fields: Any) -> None:
        self._seq += 1
        record = {"seq": self._seq, "t": round(t, 6), "node": node, "kind": kind}
        for k, v in fields.items():
            record[k] = _jsonable(v)
        line = json.dumps(record, sort_keys=True, separators=(",", ":"))
        if self._out is None:
            self.lines.append(line)
        else:
            self._out.write(line + "\n")

    def text(self) -> str:
        """Everything written so far, when kept in memory."""
        return "".join(line + "\n" for line in self.lines)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.text())


def read_trace(path: str) -> list[dict[str, Any]]:
    """Parse a trace file; lines that are not JSON objects are skipped."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out
