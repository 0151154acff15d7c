"""Jute reply bodies for each operation, and reads served from the local data tree
(ZooKeeper paper section 4: "read requests are processed locally at each server").

``read(tree, op, body, auth_ids)`` returns ``(err, body_bytes, watch)`` where ``watch``
is ``"data"``/``"child"``/None: which watch to register (exists on a missing node
still registers a data watch, as ZooKeeper does).
"""

from __future__ import annotations

from typing import Any

from giants.zookeeper._jute import STAT, Err, Op, Perm, Writer, reply_header
from giants.zookeeper._tree import DataTree, ZkError, allowed, validate_path

__all__ = ["read", "write_body", "reply"]


def reply(xid: int, zxid: int, err: int, body: bytes = b"") -> bytes:
    """A whole reply frame (length prefix, ReplyHeader, body only when ``err == 0``)."""
    payload = reply_header(xid, zxid, err) + (body if err == 0 else b"")
    return len(payload).to_bytes(4, "big") + payload


def read(tree: DataTree, op: int, body: list[Any],
         auth_ids: list[list[str]]) -> tuple[int, bytes, str | None]:
    path = body[0]
    try:
        validate_path(path)
    except ZkError as exc:
        return exc.code, b"", None
    node = tree.get(path)
    watch = bool(body[1]) if len(body) > 1 else False
    if op == Op.EXISTS:
        if node is None:
            return Err.NO_NODE, b"", "data" if watch else None
        return Err.OK, STAT.pack(*node.stat()), "data" if watch else None
    if node is None:
        return Err.NO_NODE, b"", None
    if op == Op.GET_ACL:
        return Err.OK, Writer().acls(node.acl).raw(STAT.pack(*node.stat())).payload(), None
    if not allowed(node.acl, Perm.READ, auth_ids):
        return Err.NO_AUTH, b"", None
    if op == Op.GET_DATA:
        w = Writer().buffer(node.data).raw(STAT.pack(*node.stat()))
        return Err.OK, w.payload(), "data" if watch else None
    w = Writer().strings(tree.children(path))
    if op == Op.GET_CHILDREN2:
        w.raw(STAT.pack(*node.stat()))
    return Err.OK, w.payload(), "child" if watch else None


def _sub_body(op: int, resp: Any) -> bytes:
    if op == Op.CREATE:
        return Writer().ustring(resp).payload()
    if op in (Op.CREATE2, Op.CREATE_CONTAINER):
        return Writer().ustring(resp[0]).raw(STAT.pack(*resp[1])).payload()
    if op in (Op.SET_DATA, Op.SET_ACL):
        return STAT.pack(*resp)
    if op == Op.SYNC:
        return Writer().ustring(resp).payload()
    return b""


def write_body(op: int, resp: Any) -> bytes:
    """The reply body of an applied write (``resp`` as ``DataTree.apply`` returned it)."""
    if op != Op.MULTI:
        return _sub_body(op, resp)
    w = Writer()
    for sub_op, err, sub in resp:
        if err == Err.OK and sub_op != -1:
            w.int(sub_op).bool(False).int(0).raw(_sub_body(sub_op, sub))
        else:
            w.int(-1).bool(False).int(err).int(err)
    w.int(-1).bool(True).int(-1)
    return w.payload()
