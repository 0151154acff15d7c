"""The standard example state machine: a key-value map with compare-and-set.

Commands (plain msgpack arrays, so any client can build them):
``["put", key, value]`` -> None; ``["delete", key]`` -> True if the key existed;
``["cas", key, expected, new]`` -> True if it swapped (``expected`` None means
"absent"). Query: ``["get", key]`` -> the value or None. Keys are ``str``; values are
anything msgpack carries. Malformed commands are ``Rejected`` before they reach a log.
"""

from __future__ import annotations

from typing import Any

from giants.core.errors import Rejected

__all__ = ["KVStateMachine", "MAX_KEY_BYTES", "MAX_VALUE_BYTES"]

# Bounded so one client cannot wedge a replicated log with a giant entry.
MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1024 * 1024


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise Rejected(f"key must be a string, not {type(key).__name__}")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise Rejected(f"key longer than {MAX_KEY_BYTES} bytes")


def _check_value(value: Any) -> None:
    if isinstance(value, (bytes, str)) and len(value) > MAX_VALUE_BYTES:
        raise Rejected(f"value larger than {MAX_VALUE_BYTES} bytes")


class KVStateMachine:
    """A deterministic dict; see the module docstring for commands and queries."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def validate_command(self, command: Any) -> None:
        if not isinstance(command, (list, tuple)) or not command:
            raise Rejected("a command is a non-empty array")
        op = command[0]
        shape = {"put": 3, "delete": 2, "cas": 4}
        if op not in shape:
            raise Rejected(f"unknown command {op!r}")
        if len(command) != shape[op]:
            raise Rejected(f"{op} takes {shape[op] - 1} arguments")
        _check_key(command[1])
        for v in command[2:]:
            _check_value(v)

    def validate_query(self, query: Any) -> None:
        if not isinstance(query, (list, tuple)) or len(query) != 2 or query[0] != "get":
            raise Rejected("a query is ['get', key]")
        _check_key(query[1])

    def apply(self, command: Any) -> Any:
        op, key = command[0], command[1]
        if op == "put":
            self.data[key] = command[2]
            return None
        if op == "delete":
            existed = key in self.data
            self.data.pop(key, None)
            return existed
        expected, new = command[2], command[3]
        if self.data.get(key) == expected:
            self.data[key] = new
            return True
        return False

    def query(self, query: Any) -> Any:
        return self.data.get(query[1])

    def snapshot(self) -> Any:
        return dict(self.data)

    def restore(self, snapshot: Any) -> None:
        self.data = dict(snapshot)
