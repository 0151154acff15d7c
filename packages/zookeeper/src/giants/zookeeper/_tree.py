"""The replicated database: the znode data tree and the session table (ZooKeeper paper
section 4.1 "replicated database", section 2.1 data model, section 2.3 sessions).

``DataTree.apply(command, zxid)`` is the deterministic state machine every server runs
on the totally ordered log. Commands are msgpack-able lists made by the request
processor (``_server``); every field a replica needs (the time, the password, the
session owner, the client's auth ids) is inside the command, so applying it gives the
same result everywhere. The paper's request processor turns requests into idempotent
transactions ahead of the log; here the log carries the checked request itself and
``apply`` decides the outcome, which gives the same total order and the same results
(simplification: replay safety comes from replaying a snapshot plus the log suffix
exactly, not from idempotent transactions).

Commands (``origin`` is the server that proposed it, ``now_ms`` its clock)::

    ["cs", origin, now_ms, timeout_ms, passwd, owner]    create a session
    ["at", origin, now_ms, sid, passwd, owner]           attach (reconnect) a session
    ["cl", origin, now_ms, sid, owner | None]            close (owner None: expire)
    ["op", origin, now_ms, sid, owner, wseq, auth_ids, opcode, body]   a client write

``owner`` names the connection that holds the session (``server/conn``). A write
carries its connection's write sequence number ``wseq``: it applies only if it is the
next one for that owner, so a forwarded write that was retransmitted, duplicated or
overtaken is applied exactly once and in client order (FIFO client order), and a write
from a connection the session has moved away from fails with ``SessionMoved``.
"""

from __future__ import annotations

from typing import Any

from giants.zookeeper._jute import Err, Event, Op, Perm

__all__ = ["DataTree", "Znode", "Session", "CONTAINER_OWNER", "validate_path", "OPEN_ACL"]

# ZooKeeper marks containers with this ephemeralOwner (EphemeralType.CONTAINER).
CONTAINER_OWNER = -(1 << 63)
OPEN_ACL = [[Perm.ALL, "world", "anyone"]]
# Session ids: a fixed high tag plus a counter kept in the replicated state.
SESSION_ID_BASE = 0x0100_0000_0000_0000

Result = list[Any]


Events = list[tuple[int, str]]


class ZkError(Exception):
    """An operation's definite failure, with ZooKeeper's error code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Znode:
    __slots__ = (
        "acl",
        "aversion",
        "children",
        "ctime",
        "cversion",
        "czxid",
        "data",
        "mtime",
        "mzxid",
        "owner",
        "pzxid",
        "version",
    )

    def __init__(self, data: bytes, acl: list[list[Any]], zxid: int, now_ms: int,
                 owner: int = 0) -> None:
        self.data = data
        self.acl = acl
        self.czxid = self.mzxid = self.pzxid = zxid
        self.ctime = self.mtime = now_ms
        self.version = self.cversion = self.aversion = 0
        self.owner = owner
        self.children: set[str] = set()

    def stat(self) -> list[int]:
        return [self.czxid, self.mzxid, self.ctime, self.mtime, self.version, self.cversion,
                self.aversion, self.owner, len(self.data), len(self.children), self.pzxid]

    def copy(self) -> Znode:
        n = Znode.__new__(Znode)
        for f in Znode.__slots__:
            setattr(n, f, getattr(self, f))
        n.children = set(self.children)
        return n

    def dump(self) -> list[Any]:
        return [self.data, self.acl, self.czxid, self.mzxid, self.ctime, self.mtime,
                self.version, self.cversion, self.aversion, self.owner, self.pzxid]

    @classmethod
    def load(cls, raw: list[Any]) -> Znode:
        n = cls.__new__(cls)
        (n.data, n.acl, n.czxid, n.mzxid, n.ctime, n.mtime, n.version, n.cversion,
         n.aversion, n.owner, n.pzxid) = raw
        n.data = bytes(n.data)
        n.children = set()
        return n


class Session:
    __slots__ = ("ephemerals", "owner", "passwd", "timeout_ms", "wseq")

    def __init__(self, timeout_ms: int, passwd: bytes, owner: str) -> None:
        self.timeout_ms = timeout_ms
        self.passwd = passwd
        self.owner = owner
        self.wseq = 0
        self.ephemerals: set[str] = set()


def validate_path(path: str, sequential: bool = False) -> None:
    """ZooKeeper's path rules (a sequential path is checked with its suffix);
    raises ``ZkError(BAD_ARGUMENTS)``."""
    p = path + "0" if sequential else path
    if not p or p[0] != "/" or "\x00" in p:
        raise ZkError(Err.BAD_ARGUMENTS)
    if p == "/":
        return
    if any(part in ("", ".", "..") for part in p[1:].split("/")):
        raise ZkError(Err.BAD_ARGUMENTS)


def parent_of(path: str) -> str:
    i = path.rfind("/")
    return "/" if i == 0 else path[:i]


def allowed(acl: list[list[Any]], perm: int, auth_ids: list[list[str]]) -> bool:
    """True if ``acl`` grants ``perm`` to a holder of ``auth_ids`` (``[scheme, id]``)."""
    if any(s == "super" for s, _ in auth_ids):
        return True
    for perms, scheme, ident in acl:
        if not perms & perm:
            continue
        if scheme == "world" and ident == "anyone":
            return True
        if [scheme, ident] in auth_ids:
            return True
    return False


def _fix_acl(acl: list[list[Any]], auth_ids: list[list[str]]) -> list[list[Any]]:
    """Validate a requested ACL and expand the ``auth`` scheme; raises InvalidACL."""
    if not acl:
        raise ZkError(Err.INVALID_ACL)
    out: list[list[Any]] = []
    for perms, scheme, ident in acl:
        if scheme == "world" and ident == "anyone":
            out.append([perms, scheme, ident])
        elif scheme == "auth":
            mine = [[perms, s, i] for s, i in auth_ids if s != "ip"]
            if not mine:
                raise ZkError(Err.INVALID_ACL)
            out.extend(mine)
        elif scheme == "digest" and ":" in ident:
            out.append([perms, scheme, ident])
        elif scheme == "ip" and ident:
            out.append([perms, scheme, ident])
        else:
            raise ZkError(Err.INVALID_ACL)
    return out


class DataTree:
    """The znode tree plus the session table; see the module docstring."""

    def __init__(self) -> None:
        self.nodes: dict[str, Znode] = {}
        self.sessions: dict[int, Session] = {}
        self.owners: dict[str, int] = {}
        self.next_session = 1
        self.last_zxid = 0
        self._journal: dict[str, Znode | None] | None = None
        self._sess_journal: dict[int, set[str]] = {}
        self.nodes["/"] = Znode(b"", OPEN_ACL, 0, 0)
        self._add("/zookeeper", Znode(b"", OPEN_ACL, 0, 0))
        self._add("/zookeeper/quota", Znode(b"", OPEN_ACL, 0, 0))

    # -- reads (served locally by whichever server the client is connected to) --------

    def get(self, path: str) -> Znode | None:
        return self.nodes.get(path)

    def children(self, path: str) -> list[str]:
        return sorted(self.nodes[path].children)

    # -- the state machine ------------------------------------------------------------

    def apply(self, cmd: list[Any], zxid: int) -> tuple[Result, Events]:
        """Apply one committed command; returns ``(result, watch events)``."""
        assert zxid > self.last_zxid, f"zxid went backwards {zxid} <= {self.last_zxid}"
        self.last_zxid = zxid
        kind = cmd[0]
        now_ms = int(cmd[2])
        if kind == "op":
            return self._apply_op(cmd, zxid, now_ms)
        if kind == "cs":
            return self._create_session(int(cmd[3]), bytes(cmd[4]), str(cmd[5])), []
        if kind == "at":
            return self._attach(int(cmd[3]), bytes(cmd[4]), str(cmd[5])), []
        if kind == "cl":
            return self._close_session(int(cmd[3]), cmd[4], zxid)
        raise AssertionError(f"unknown committed command {kind!r}")

    def _create_session(self, timeout_ms: int, passwd: bytes, owner: str) -> Result:
        sid = self.owners.get(owner)
        if sid is None:  # a retransmitted create finds the session it made the first time
            sid = SESSION_ID_BASE + self.next_session
            self.next_session += 1
            self.sessions[sid] = Session(timeout_ms, passwd, owner)
            self.owners[owner] = sid
        s = self.sessions[sid]
        return ["ok", sid, s.timeout_ms, s.passwd]

    def _attach(self, sid: int, passwd: bytes, owner: str) -> Result:
        s = self.sessions.get(sid)
        if s is None or s.passwd != passwd:
            return ["expired"]
        if s.owner != owner:
            self.owners.pop(s.owner, None)
            s.owner = owner
            s.wseq = 0
            self.owners[owner] = sid
        return ["ok", sid, s.timeout_ms, s.passwd]

    def _close_session(self, sid: int, owner: str | None, zxid: int) -> tuple[Result, Events]:
        s = self.sessions.get(sid)
        if s is None:
            return ["ok"], []
        if owner is not None and s.owner != owner:
            return ["moved"], []
        events: Events = []
        for path in sorted(s.ephemerals, reverse=True):
            if path in self.nodes:
                self._remove(path, zxid, events)
        del self.sessions[sid]
        self.owners.pop(s.owner, None)
        return ["ok"], events

    def _apply_op(self, cmd: list[Any], zxid: int, now_ms: int) -> tuple[Result, Events]:
        _, _, _, sid, owner, wseq, auth_ids, opcode, body = cmd
        s = self.sessions.get(sid)
        if s is None:
            return [Err.SESSION_EXPIRED, None], []
        if s.owner != owner:
            return [Err.SESSION_MOVED, None], []
        if wseq <= s.wseq:
            return ["dup"], []
        if wseq != s.wseq + 1:
            return ["gap"], []
        s.wseq = wseq
        events: Events = []
        if opcode == Op.MULTI:
            return self._multi(sid, auth_ids, body, zxid, now_ms, events), events
        try:
            resp = self._write(sid, auth_ids, opcode, body, zxid, now_ms, events)
        except ZkError as exc:
            return [exc.code, None], []
        return [Err.OK, resp], events

    def _multi(self, sid: int, auth_ids: list[list[str]], ops: list[Any], zxid: int,
               now_ms: int, events: Events) -> Result:
        self._journal = {}
        self._sess_journal = {}
        results: list[list[Any]] = []
        failed = -1
        try:
            for i, (op, body) in enumerate(ops):
                try:
                    results.append([op, Err.OK,
                                    self._write(sid, auth_ids, op, body, zxid, now_ms, events)])
                except ZkError as exc:
                    failed = i
                    results.append([op, exc.code, None])
                    break
            if failed >= 0:
                self._rollback()
                events.clear()
                out = [[-1, Err.OK, None] for _ in range(failed)]
                out.append([-1, results[failed][1], None])
                out.extend([-1, Err.RUNTIME_INCONSISTENCY, None] for _ in ops[failed + 1:])
                return [Err.OK, out]
        finally:
            self._journal = None
            self._sess_journal = {}
        return [Err.OK, results]

    def _rollback(self) -> None:
        assert self._journal is not None
        for path, old in self._journal.items():
            if old is None:
                self.nodes.pop(path, None)
            else:
                self.nodes[path] = old
        for sid, eph in self._sess_journal.items():
            if sid in self.sessions:
                self.sessions[sid].ephemerals = eph

    def _save(self, path: str) -> None:
        if self._journal is not None and path not in self._journal:
            node = self.nodes.get(path)
            self._journal[path] = node.copy() if node is not None else None

    def _save_session(self, sid: int) -> None:
        if self._journal is not None and sid not in self._sess_journal and sid in self.sessions:
            self._sess_journal[sid] = set(self.sessions[sid].ephemerals)

    # -- the write operations ---------------------------------------------------------

    def _write(self, sid: int, auth_ids: list[list[str]], op: int, body: list[Any],
               zxid: int, now_ms: int, events: Events) -> Any:
        if op in (Op.CREATE, Op.CREATE2, Op.CREATE_CONTAINER):
            path = self._create(sid, auth_ids, op, body, zxid, now_ms, events)
            return path if op == Op.CREATE else [path, self.nodes[path].stat()]
        if op == Op.DELETE:
            self._delete(auth_ids, body[0], body[1], zxid, events)
            return None
        if op == Op.SET_DATA:
            return self._set_data(auth_ids, body[0], bytes(body[1]), body[2], zxid, now_ms, events)
        if op == Op.SET_ACL:
            return self._set_acl(auth_ids, body[0], body[1], body[2])
        if op == Op.CHECK:
            node = self._existing(body[0])
            if body[1] != -1 and node.version != body[1]:
                raise ZkError(Err.BAD_VERSION)
            return None
        if op == Op.SYNC:
            return body[0]
        raise ZkError(Err.UNIMPLEMENTED)

    def _existing(self, path: str) -> Znode:
        validate_path(path)
        node = self.nodes.get(path)
        if node is None:
            raise ZkError(Err.NO_NODE)
        return node

    def _create(self, sid: int, auth_ids: list[list[str]], op: int, body: list[Any],
                zxid: int, now_ms: int, events: Events) -> str:
        path, data, acl, flags = str(body[0]), bytes(body[1]), body[2], int(body[3])
        container = op == Op.CREATE_CONTAINER or flags == 4
        if flags not in (0, 1, 2, 3, 4) or (op == Op.CREATE_CONTAINER and flags != 4):
            raise ZkError(Err.BAD_ARGUMENTS)
        sequential = flags in (2, 3)
        ephemeral = flags in (1, 3)
        validate_path(path, sequential)
        if path == "/":
            raise ZkError(Err.NODE_EXISTS)
        parent_path = parent_of(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            raise ZkError(Err.NO_NODE)
        if not allowed(parent.acl, Perm.CREATE, auth_ids):
            raise ZkError(Err.NO_AUTH)
        acl = _fix_acl(acl, auth_ids)
        if parent.owner not in (0, CONTAINER_OWNER):
            raise ZkError(Err.NO_CHILDREN_FOR_EPHEMERALS)
        if sequential:
            path = f"{path}{parent.cversion:010d}"
        if path in self.nodes:
            raise ZkError(Err.NODE_EXISTS)
        owner = sid if ephemeral else (CONTAINER_OWNER if container else 0)
        self._save(parent_path)
        self._save(path)
        self._add(path, Znode(data, acl, zxid, now_ms, owner))
        parent.cversion += 1
        parent.pzxid = zxid
        if ephemeral:
            self._save_session(sid)
            self.sessions[sid].ephemerals.add(path)
        events.append((Event.CREATED, path))
        events.append((Event.CHILDREN_CHANGED, parent_path))
        return path

    def _add(self, path: str, node: Znode) -> None:
        self.nodes[path] = node
        self.nodes[parent_of(path)].children.add(path.rsplit("/", 1)[1])

    def _delete(self, auth_ids: list[list[str]], path: str, version: int, zxid: int,
                events: Events) -> None:
        node = self._existing(path)
        if path in ("/", "/zookeeper", "/zookeeper/quota"):
            raise ZkError(Err.BAD_ARGUMENTS)
        parent = self.nodes[parent_of(path)]
        if not allowed(parent.acl, Perm.DELETE, auth_ids):
            raise ZkError(Err.NO_AUTH)
        if version != -1 and node.version != version:
            raise ZkError(Err.BAD_VERSION)
        if node.children:
            raise ZkError(Err.NOT_EMPTY)
        self._remove(path, zxid, events)

    def _remove(self, path: str, zxid: int, events: Events) -> None:
        node = self.nodes[path]
        parent_path = parent_of(path)
        parent = self.nodes[parent_path]
        self._save(path)
        self._save(parent_path)
        del self.nodes[path]
        parent.children.discard(path.rsplit("/", 1)[1])
        parent.cversion += 1
        parent.pzxid = zxid
        if node.owner > 0 and node.owner in self.sessions:
            self._save_session(node.owner)
            self.sessions[node.owner].ephemerals.discard(path)
        events.append((Event.DELETED, path))
        events.append((Event.CHILDREN_CHANGED, parent_path))
        if parent.owner == CONTAINER_OWNER and not parent.children:
            # Simplification: ZooKeeper's leader reaps empty containers a little later;
            # here the container goes in the same transaction as its last child.
            self._remove(parent_path, zxid, events)

    def _set_data(self, auth_ids: list[list[str]], path: str, data: bytes, version: int,
                  zxid: int, now_ms: int, events: Events) -> list[int]:
        node = self._existing(path)
        if not allowed(node.acl, Perm.WRITE, auth_ids):
            raise ZkError(Err.NO_AUTH)
        if version != -1 and node.version != version:
            raise ZkError(Err.BAD_VERSION)
        self._save(path)
        node.data = data
        node.version += 1
        node.mzxid = zxid
        node.mtime = now_ms
        events.append((Event.DATA_CHANGED, path))
        return node.stat()

    def _set_acl(self, auth_ids: list[list[str]], path: str, acl: list[list[Any]],
                 version: int) -> list[int]:
        node = self._existing(path)
        if not allowed(node.acl, Perm.ADMIN, auth_ids):
            raise ZkError(Err.NO_AUTH)
        if version != -1 and node.aversion != version:
            raise ZkError(Err.BAD_VERSION)
        acl = _fix_acl(acl, auth_ids)
        self._save(path)
        node.acl = acl
        node.aversion += 1
        return node.stat()

    # -- snapshots --------------------------------------------------------------------

    def snapshot(self) -> Any:
        return {
            "nodes": [[p, n.dump()] for p, n in self.nodes.items()],
            "sessions": [[sid, s.timeout_ms, s.passwd, s.owner, s.wseq]
                         for sid, s in self.sessions.items()],
            "next_session": self.next_session,
            "last_zxid": self.last_zxid,
        }

    def restore(self, snap: Any) -> None:
        self.nodes = {}
        for path, raw in sorted(snap["nodes"], key=lambda pn: (pn[0].count("/"), pn[0])):
            node = Znode.load(raw)
            if path == "/":
                self.nodes[path] = node
            else:
                self._add(path, node)
        self.sessions = {}
        self.owners = {}
        for sid, timeout_ms, passwd, owner, wseq in snap["sessions"]:
            s = Session(timeout_ms, bytes(passwd), owner)
            s.wseq = wseq
            self.sessions[sid] = s
            self.owners[owner] = sid
        for path, node in self.nodes.items():
            if node.owner > 0 and node.owner in self.sessions:
                self.sessions[node.owner].ephemerals.add(path)
        self.next_session = snap["next_session"]
        self.last_zxid = snap["last_zxid"]
