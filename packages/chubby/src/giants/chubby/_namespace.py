"""Chubby's replicated database: the namespace, sessions, handles and locks
(Burrows, OSDI 2006, §2.3 "Files, directories, and handles", §2.4 "Locks and
sequencers", §2.8 "Sessions").

This is the deterministic state machine every replica applies in log order. It holds
only what must survive a master fail-over (§2.9: "the new master ... reconstructs ...
sessions, handles and locks from the database"): nodes, sessions, handles, locks and
the per-session last command (for exactly-once retries). Leases, held KeepAlives,
cache registrations and timers are the master's volatile state (``_master``).

Nodes live under ``/ls/<cell>``; each carries the paper's metadata: instance number
(unique per creation), content generation (bumped per write), lock generation (bumped
whenever the lock goes from free to held), ACL generation, and a checksum (CRC-32 of
the contents). ACLs are by name (§2.3): a node names three ACL files (read, write,
change-ACL) under ``/ls/<cell>/acl``, each holding user names one per line; an empty
name means "anyone". A new node inherits its parent's ACL names.

Locks are advisory reader/writer locks (§2.4): ``x`` (exclusive) or ``s`` (shared). A
sequencer is ``[path, mode, lock generation]``; ``check_sequencer`` accepts it while that
lock is still held in that mode at that generation. When a session dies holding an
exclusive lock the lock becomes *delayed* (lock-delay); the master times the delay and
says so in the acquiring command (``clear_delay``), so applying stays deterministic.

Ephemeral nodes are deleted when no handle is open on them any more (§2.3).
Errors are ``DefiniteError``s raised before any change (``apply_op`` checks first,
then mutates), so a failed command leaves the state untouched.

Events (``Effect`` tuples ``(session, [kind, path, detail])``) are returned from apply
for the master to deliver: ``modified``, ``child``, ``lock`` (acquired), ``invalid``
(handle's node deleted).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack

from giants.core.errors import DefiniteError, NotFound, Rejected

__all__ = ["Namespace", "validate_path", "validate_call", "parent_of", "call_digest", "Effect",
           "MAX_CONTENTS_BYTES"]

# Chubby stores small files (§4: 90% under 1 KB); cap contents to keep the log small.
MAX_CONTENTS_BYTES = 256 * 1024
MAX_PATH_CHARS = 1024
MAX_HANDLES_PER_SESSION = 10_000
_COMPONENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
EVENT_KINDS = frozenset({"modified", "child", "lock", "conflict", "invalid"})
MODES = frozenset("rwl")

Effect = tuple[int, list[Any]]


_CREATE = frozenset({"", "file", "dir", "ephemeral", "ephemeral-dir"})
_SHAPES: dict[str, tuple[type | tuple[type, ...] | None, ...]] = {
    "open": (str, str, str, list, (list, type(None))),
    "close": (int,), "delete": (int,), "release": (int,), "stat": (int,), "read": (int,),
    "readdir": (int,), "sequencer": (int,), "write": (int, bytes, int),
    "acquire": (int, str), "try_acquire": (int, str), "set_acl": (int, list),
    "check_sequencer": (None,), "end_session": (), "lookup": (str,),
}


def validate_call(op: Any, args: Any, cell: str) -> None:
    """Raises ``Rejected`` unless ``op(args)`` is well-formed: checked by the master before
    anything is proposed, so applying never meets a malformed command."""
    shape = _SHAPES.get(op) if isinstance(op, str) else None
    if shape is None:
        raise Rejected(f"unknown operation {op!r}", reason="bad_op")
    if not isinstance(args, list) or len(args) != len(shape):
        raise Rejected(f"{op} takes {len(shape)} arguments", reason="bad_args")
    for value, want in zip(args, shape, strict=True):
        if want is not None and (not isinstance(value, want) or isinstance(value, bool)):
            raise Rejected(f"{op}: bad argument {value!r}", reason="bad_args")
    if op == "open":
        validate_path(args[0], cell)
        if not set(args[1]) <= MODES or args[2] not in _CREATE:
            raise Rejected(f"open: bad mode {args[1]!r} or create {args[2]!r}", reason="bad_args")
        if not all(isinstance(e, str) and e in EVENT_KINDS for e in args[3]):
            raise Rejected(f"open: bad events {args[3]!r}", reason="bad_args")
    if (op == "open" and args[4] is not None) or op == "set_acl":
        acls = args[4] if op == "open" else args[1]
        if len(acls) != 3 or not all(isinstance(a, str) for a in acls):
            raise Rejected("acls must be [read, write, change] names", reason="bad_args")
    if op in ("acquire", "try_acquire") and args[1] not in ("x", "s"):
        raise Rejected(f"bad lock mode {args[1]!r}", reason="bad_args")


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0]


def validate_path(path: Any, cell: str) -> str:
    """Raises ``Rejected`` unless ``path`` is ``/ls/<cell>/a/b...`` with sane components."""
    root = f"/ls/{cell}"
    if not isinstance(path, str) or len(path) > MAX_PATH_CHARS:
        raise Rejected(f"invalid path {path!r}", reason="bad_path")
    if path != root and not path.startswith(root + "/"):
        raise Rejected(f"invalid path {path!r}: must be under {root}", reason="bad_path")
    for comp in path[len(root):].split("/")[1:]:
        if not _COMPONENT.match(comp) or comp in (".", ".."):
            raise Rejected(f"invalid path {path!r}: bad component {comp!r}", reason="bad_path")
    return path


@dataclass
class Node:
    is_dir: bool
    contents: bytes
    instance: int
    acls: list[str]
    ephemeral: bool
    content_gen: int = 0
    lock_gen: int = 0
    acl_gen: int = 0
    children: set[str] = field(default_factory=set)
    # lock state
    exclusive: int = 0              # holding handle id (0: none)
    shared: set[int] = field(default_factory=set)
    delayed: bool = False           # lock-delay after a holder's session died
    handles: set[int] = field(default_factory=set)

    def stat(self) -> dict[str, Any]:
        return {"instance": self.instance, "content_gen": self.content_gen,
                "lock_gen": self.lock_gen, "acl_gen": self.acl_gen,
                "checksum": zlib.crc32(self.contents), "size": len(self.contents),
                "is_dir": self.is_dir, "ephemeral": self.ephemeral, "acls": list(self.acls)}

    def lock_free(self) -> bool:
        return not self.exclusive and not self.shared


@dataclass
class Handle:
    session: int
    path: str
    instance: int
    mode: str
    events: list[str]
    lock: str = ""                  # "", "x" or "s"


@dataclass
class Session:
    user: str
    nonce: str
    handles: set[int] = field(default_factory=set)
    last_seq: int = 0
    last_result: Any = None
    last_call: int = 0              # call_digest of the last_seq call


def call_digest(op: str, args: list[Any]) -> int:
    """What a session's call was, so a re-sent call (same seq, same digest) is told
    from another call that reused the seq (two clients on one adopted session). An
    abandoned ``acquire`` comes back as ``try_acquire`` with the same seq: one call."""
    return zlib.crc32(msgpack.packb(["acquire" if op == "try_acquire" else op, args],
                                    use_bin_type=True))


class Namespace:
    """The replicated database. ``apply(command) -> (result, effects)``."""

    def __init__(self, cell: str) -> None:
        self.cell = cell
        self.root = f"/ls/{cell}"
        self.epoch = 0
        self.master = ""
        self.nodes: dict[str, Node] = {self.root: Node(True, b"", 1, ["", "", ""], False)}
        self.sessions: dict[int, Session] = {}
        self.handles: dict[int, Handle] = {}
        self.counters = {"instance": 1, "session": 0, "handle": 0}

    # -- commands ---------------------------------------------------------------------

    def apply(self, cmd: list[Any]) -> tuple[Any, list[Effect]]:
        """Apply one committed command. DefiniteErrors come back as ``{"error": ...}``
        results inside ``op`` commands (recorded for retries); other kinds never fail."""
        kind = cmd[0]
        if kind == "epoch":
            self.epoch += 1
            self.master = cmd[1]
            return self.epoch, []
        if kind == "create_session":
            for sid, s in self.sessions.items():
                if s.nonce == cmd[2]:
                    return sid, []          # a retried CreateSession
            self.counters["session"] += 1
            sid = self.counters["session"]
            self.sessions[sid] = Session(cmd[1], cmd[2])
            return sid, []
        if kind == "expire_session":
            return self._end_session(cmd[1], failed=True)
        assert kind == "op", f"unknown command {kind!r}"
        _, sid, seq, op, args, clear_delay = cmd
        session = self.sessions.get(sid)
        if session is None:
            return {"error": "session_expired"}, []
        digest = call_digest(op, args)
        if seq == session.last_seq and digest == session.last_call:
            return session.last_result, []          # a re-sent call: its first answer
        if seq <= session.last_seq:
            return {"error": "Rejected", "message": f"call {seq} superseded",
                    "detail": {"reason": "superseded", "newest": session.last_seq}}, []
        effects: list[Effect] = []
        try:
            result = self._op(sid, op, args, bool(clear_delay), effects)
        except DefiniteError as exc:
            result, effects = {"error": type(exc).__name__, "message": exc.message,
                               "detail": exc.detail}, []
        session.last_seq, session.last_result, session.last_call = seq, result, digest
        return result, effects

    def _op(self, sid: int, op: str, args: list[Any], clear_delay: bool,
            fx: list[Effect]) -> Any:
        if op == "open":
            return self._open(sid, args[0], args[1], args[2], args[3], args[4], fx)
        if op == "end_session":
            ended, more = self._end_session(sid, failed=False)
            fx.extend(more)
            return ended
        if op == "close":
            h = self.handles.get(args[0]) if isinstance(args[0], int) else None
            if h is None or h.session != sid:
                raise Rejected(f"handle {args[0]!r} is closed or not yours", reason="bad_handle")
            self._close(args[0], fx, failed=False)
            return True
        h, node = self.handle(sid, args[0])
        if op == "write":
            return self._write(sid, h, node, args[1], args[2], fx)
        if op == "delete":
            return self._delete(sid, h, node, fx)
        if op in ("acquire", "try_acquire"):
            return self._acquire(args[0], h, node, args[1], clear_delay, fx)
        if op == "release":
            return self._release(args[0], h, node, fx, failed=False)
        if op == "set_acl":
            self._check_acl(sid, node, 2)
            if not (isinstance(args[1], list) and len(args[1]) == 3):
                raise Rejected("acls must be [read, write, change] names", reason="bad_args")
            node.acls = [str(a) for a in args[1]]
            node.acl_gen += 1
            self._event(fx, node, h.path, "modified", "acl")
            return node.stat()
        raise Rejected(f"unknown operation {op!r}", reason="bad_op")

    # -- queries (served by the master after a read barrier) --------------------------

    def query(self, sid: int, op: str, args: list[Any]) -> Any:
        """Raises DefiniteError for an expired session, a bad handle, a missing
        permission."""
        if op == "check_sequencer":
            return self.check_sequencer(args[0])
        if sid not in self.sessions:
            raise Rejected("session expired", reason="session_expired")
        h, node = self.handle(sid, args[0])
        if op == "read":
            self._check_acl(sid, node, 0)
            return [node.contents, node.stat()]
        if op == "stat":
            return node.stat()
        if op == "readdir":
            self._check_acl(sid, node, 0)
            if not node.is_dir:
                raise Rejected(f"{h.path} is not a directory", reason="not_dir")
            return sorted(node.children)
        if op == "sequencer":
            if not h.lock:
                raise Rejected(f"handle {args[0]} holds no lock", reason="not_held")
            return [h.path, h.lock, node.lock_gen]
        raise Rejected(f"unknown operation {op!r}", reason="bad_op")

    def check_sequencer(self, seqr: Any) -> bool:
        if not (isinstance(seqr, list) and len(seqr) == 3 and isinstance(seqr[0], str)
                and isinstance(seqr[2], int)):
            raise Rejected(f"malformed sequencer {seqr!r}", reason="bad_args")
        node = self.nodes.get(seqr[0])
        if node is None or node.lock_gen != seqr[2]:
            return False
        return bool(node.exclusive) if seqr[1] == "x" else bool(node.shared)

    def handle(self, sid: int, hid: Any) -> tuple[Handle, Node]:
        h = self.handles.get(hid) if isinstance(hid, int) else None
        if h is None or h.session != sid:
            raise Rejected(f"handle {hid!r} is closed or not yours", reason="bad_handle")
        node = self.nodes.get(h.path)
        if node is None or node.instance != h.instance:
            raise Rejected(f"handle {hid} is invalid: {h.path} was deleted", reason="bad_handle")
        return h, node

    # -- operations -------------------------------------------------------------------

    def _open(self, sid: int, path: str, mode: str, create: str, events: list[str],
              acls: list[str] | None, fx: list[Effect]) -> list[Any]:
        validate_path(path, self.cell)
        if not (isinstance(mode, str) and set(mode) <= MODES) or not set(events) <= EVENT_KINDS:
            raise Rejected(f"bad mode {mode!r} or events {events!r}", reason="bad_args")
        if len(self.sessions[sid].handles) >= MAX_HANDLES_PER_SESSION:
            raise Rejected("too many open handles", reason="limit")
        node = self.nodes.get(path)
        if node is None:
            if not create:
                raise NotFound(f"{path} does not exist")
            parent = self.nodes.get(parent_of(path))
            if parent is None or not parent.is_dir:
                raise NotFound(f"parent of {path} does not exist or is not a directory")
            self._check_acl(sid, parent, 1)
            self.counters["instance"] += 1
            node = Node("dir" in create, b"", self.counters["instance"],
                        list(acls) if acls else list(parent.acls), "ephemeral" in create)
            self.nodes[path] = node
            parent.children.add(path.rsplit("/", 1)[1])
            self._event(fx, parent, parent_of(path), "child", "added")
        else:
            self._check_acl(sid, node, 1 if "w" in mode else 0)
        self.counters["handle"] += 1
        hid = self.counters["handle"]
        self.handles[hid] = Handle(sid, path, node.instance, mode, list(events))
        self.sessions[sid].handles.add(hid)
        node.handles.add(hid)
        return [hid, node.stat()]

    def _write(self, sid: int, h: Handle, node: Node, data: Any, if_gen: int,
               fx: list[Effect]) -> dict[str, Any]:
        if "w" not in h.mode:
            raise Rejected(f"handle not opened for writing {h.path}", reason="permission")
        self._check_acl(sid, node, 1)
        if node.is_dir:
            raise Rejected(f"{h.path} is a directory", reason="is_dir")
        if not isinstance(data, bytes) or len(data) > MAX_CONTENTS_BYTES:
            raise Rejected(f"contents must be bytes of at most {MAX_CONTENTS_BYTES}",
                           reason="bad_args")
        if if_gen >= 0 and if_gen != node.content_gen:
            raise Rejected(f"content generation is {node.content_gen}, not {if_gen}",
                           reason="generation")
        node.contents = data
        node.content_gen += 1
        self._event(fx, node, h.path, "modified", "contents")
        return node.stat()

    def _delete(self, sid: int, h: Handle, node: Node, fx: list[Effect]) -> bool:
        if h.path == self.root:
            raise Rejected("cannot delete the cell root", reason="permission")
        self._check_acl(sid, node, 1)
        if node.children:
            raise Rejected(f"{h.path} has children", reason="not_empty")
        self._remove(h.path, fx)
        return True

    def _acquire(self, hid: int, h: Handle, node: Node, mode: str, clear_delay: bool,
                 fx: list[Effect]) -> list[Any]:
        if "l" not in h.mode:
            raise Rejected("handle not opened for locking", reason="permission")
        if mode not in ("x", "s"):
            raise Rejected(f"bad lock mode {mode!r}", reason="bad_args")
        if h.lock:
            raise Rejected(f"{h.path} is already locked ({h.lock}) through handle {hid}: "
                           "release it first", reason="already_held")
        if node.delayed and not clear_delay:
            return [False, None]
        if node.exclusive or (mode == "x" and node.shared):
            return [False, None]
        if node.lock_free():
            node.lock_gen += 1
        node.delayed = False
        if mode == "x":
            node.exclusive = hid
        else:
            node.shared.add(hid)
        h.lock = mode
        self._event(fx, node, h.path, "lock", mode)
        return [True, [h.path, mode, node.lock_gen]]

    def _release(self, hid: int, h: Handle, node: Node, fx: list[Effect], failed: bool) -> bool:
        if not h.lock:
            raise Rejected("no lock held through this handle", reason="not_held")
        if h.lock == "x":
            node.exclusive = 0
            node.delayed = failed
            if failed:
                fx.append((0, ["delayed", h.path, "", hid]))
        else:
            node.shared.discard(hid)
        h.lock = ""
        return True

    def _close(self, hid: int, fx: list[Effect], failed: bool) -> None:
        h = self.handles.pop(hid)
        self.sessions[h.session].handles.discard(hid)
        node = self.nodes.get(h.path)
        if node is None or node.instance != h.instance:
            return
        if h.lock:
            self._release(hid, h, node, fx, failed)
        node.handles.discard(hid)
        if node.ephemeral and not node.handles and not node.children:
            self._remove(h.path, fx)

    def _end_session(self, sid: int, failed: bool) -> tuple[Any, list[Effect]]:
        session = self.sessions.get(sid)
        if session is None:
            return False, []
        fx: list[Effect] = []
        for hid in sorted(session.handles):
            self._close(hid, fx, failed)
        del self.sessions[sid]
        return True, [e for e in fx if e[0] != sid]

    def _remove(self, path: str, fx: list[Effect]) -> None:
        node = self.nodes.pop(path)
        for hid in sorted(node.handles):
            if hid in self.handles:
                self._notify(fx, hid, "invalid", path, "deleted")
        parent = self.nodes[parent_of(path)]
        parent.children.discard(path.rsplit("/", 1)[1])
        self._event(fx, parent, parent_of(path), "child", "removed")

    # -- helpers ----------------------------------------------------------------------

    def _check_acl(self, sid: int, node: Node, which: int) -> None:
        name = node.acls[which]
        if not name:
            return
        acl = self.nodes.get(f"{self.root}/acl/{name}")
        users = acl.contents.decode("utf-8", "replace").split() if acl else []
        if self.sessions[sid].user not in users:
            what = ("read", "write", "change the ACL of")[which]
            raise Rejected(f"user {self.sessions[sid].user!r} may not {what} this node "
                           f"(ACL {name!r})", reason="permission")

    def _event(self, fx: list[Effect], node: Node, path: str, kind: str, detail: str) -> None:
        for hid in sorted(node.handles):
            if kind in self.handles[hid].events:
                self._notify(fx, hid, kind, path, detail)

    def _notify(self, fx: list[Effect], hid: int, kind: str, path: str, detail: str) -> None:
        fx.append((self.handles[hid].session, [kind, path, detail, hid]))

    # -- snapshot ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "master": self.master, "counters": dict(self.counters),
            "nodes": {p: [n.is_dir, n.contents, n.instance, n.acls, n.ephemeral, n.content_gen,
                          n.lock_gen, n.acl_gen, sorted(n.children), n.exclusive,
                          sorted(n.shared), n.delayed, sorted(n.handles)]
                      for p, n in self.nodes.items()},
            "sessions": {sid: [s.user, s.nonce, sorted(s.handles), s.last_seq, s.last_result,
                               s.last_call]
                         for sid, s in self.sessions.items()},
            "handles": {hid: [h.session, h.path, h.instance, h.mode, h.events, h.lock]
                        for hid, h in self.handles.items()},
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.epoch, self.master = snap["epoch"], snap["master"]
        self.counters = dict(snap["counters"])
        self.nodes = {}
        for p, v in snap["nodes"].items():
            self.nodes[p] = Node(v[0], v[1], v[2], list(v[3]), v[4], v[5], v[6], v[7],
                                 set(v[8]), v[9], set(v[10]), v[11], set(v[12]))
        self.sessions = {int(sid): Session(v[0], v[1], set(v[2]), v[3], v[4],
                                           v[5] if len(v) > 5 else 0)
                         for sid, v in snap["sessions"].items()}
        self.handles = {int(hid): Handle(v[0], v[1], v[2], v[3], list(v[4]), v[5])
                        for hid, v in snap["handles"].items()}
