"""``KVClient``: the client of every replicated KV service (solo, Raft, Paxos).

One client for all of them, re-exported by each consensus package. Operations are
async; every command runs in a client session ``(client_id, seq)`` and is retried with
the same ``seq`` after a timeout or a lost connection, so it is applied at most once.
``NotLeader`` replies are followed to the hinted leader.

Errors: a ``DefiniteError`` (``Rejected`` for a malformed request, ...) when the
operation certainly did not happen; an ``IndefiniteError`` (``Timeout``) when it may
have, after ``op_timeout_s`` of retrying. Concurrent calls on one ``KVClient`` use
separate sessions (a session carries one command at a time).
"""

from __future__ import annotations

import uuid
from typing import Any

import trio

from giants.core.errors import (
    ConnectionLost,
    DefiniteError,
    IndefiniteError,
    LocalProtocolError,
    NotLeader,
    Timeout,
)
from giants.core.rsm import (
    ClientCommand,
    ClientQuery,
    CommandResult,
    LeaderInfo,
    QueryResult,
    WhoIsLeader,
)
from giants.core.transport import tcp

__all__ = ["KVClient"]

# One attempt's wait; a leader election takes a few hundred ms at default timeouts.
ATTEMPT_TIMEOUT_S = 1.0
# Back-off when no node knows a leader (an election is under way).
NO_LEADER_BACKOFF_S = 0.05


class KVClient:
    """``async with KVClient(["127.0.0.1:7000", ...]) as kv: await kv.put("a", 1)``."""

    def __init__(self, endpoints: list[str], *, op_timeout_s: float = 10.0,
                 client_id: str | None = None) -> None:
        if not endpoints:
            raise LocalProtocolError("KVClient needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.op_timeout_s = op_timeout_s
        self.client_id = client_id or f"kv-{uuid.uuid4().hex[:12]}"
        self._client = tcp.Client(self.client_id)
        self._addresses: dict[str, str] = {}
        self._leader: str | None = None
        self._free_sessions: list[tuple[str, int]] = []
        self._session_count = 0
        self._entered = False

    async def __aenter__(self) -> KVClient:
        await self._client.__aenter__()
        self._entered = True
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._entered = False
        await self._client.__aexit__(*exc)

    # -- operations -------------------------------------------------------------------

    async def put(self, key: str, value: Any) -> None:
        await self._command(["put", key, value])

    async def get(self, key: str) -> Any:
        """The value, or None when the key is absent (a linearizable read)."""
        return await self._query(["get", key])

    async def delete(self, key: str) -> bool:
        """True if the key existed."""
        return bool(await self._command(["delete", key]))

    async def cas(self, key: str, expected: Any, new: Any) -> bool:
        """Set ``key`` to ``new`` if it holds ``expected`` (None: absent). True if swapped."""
        return bool(await self._command(["cas", key, expected, new]))

    async def leader(self) -> str | None:
        """The leader's address, as the cluster reports it."""
        for address in self._order():
            try:
                info = await self._client.request(address, WhoIsLeader(), timeout=ATTEMPT_TIMEOUT_S)
            except IndefiniteError:
                continue
            if isinstance(info, LeaderInfo):
                self._addresses.update(info.voters)
                if info.leader is not None:
                    return self._addresses.get(info.leader)
        return None

    # -- machinery --------------------------------------------------------------------

    def _session(self) -> tuple[str, int]:
        if self._free_sessions:
            return self._free_sessions.pop()
        self._session_count += 1
        return (f"{self.client_id}/{self._session_count}", 0)

    def _order(self) -> list[str]:
        first = [self._leader] if self._leader else []
        return first + [e for e in self.endpoints if e != self._leader]

    async def _command(self, command: list[Any]) -> Any:
        session, seq = self._session()
        seq += 1
        body = ClientCommand(session, seq, command)
        try:
            reply = await self._retrying(body)
        except DefiniteError:
            # the command certainly did not run: this seq may be reused
            self._free_sessions.append((session, seq - 1))
            raise
        except BaseException:
            # in doubt: retire the session so a late apply can never alias a new command
            raise
        self._free_sessions.append((session, seq))
        assert isinstance(reply, CommandResult)
        return reply.result

    async def _query(self, query: list[Any]) -> Any:
        reply = await self._retrying(ClientQuery(query))
        assert isinstance(reply, QueryResult)
        return reply.result

    async def _retrying(self, body: Any) -> Any:
        if not self._entered:
            raise LocalProtocolError("use KVClient in 'async with'")
        last: Exception | None = None
        with trio.move_on_after(self.op_timeout_s):
            while True:
                for address in self._order():
                    try:
                        reply = await self._client.request(address, body, timeout=ATTEMPT_TIMEOUT_S)
                    except NotLeader as exc:
                        last = exc
                        hinted = self._addresses.get(exc.hint) if exc.hint else None
                        if hinted is None and exc.hint is not None:
                            await self.leader()
                            hinted = self._addresses.get(exc.hint)
                        if hinted is not None and hinted != address:
                            self._leader = hinted
                            break
                        continue
                    except (Timeout, ConnectionLost) as exc:
                        last = exc
                        if self._leader == address:
                            self._leader = None
                        continue
                    self._leader = address
                    if isinstance(reply, (CommandResult, QueryResult)):
                        return reply
                    raise LocalProtocolError(f"unexpected reply {type(reply).__name__}")
                else:
                    await trio.sleep(NO_LEADER_BACKOFF_S)
        if isinstance(body, ClientQuery):
            raise Timeout(f"read not answered within {self.op_timeout_s}s (last: {last})")
        raise Timeout(f"command may or may not have happened: no answer within "
                      f"{self.op_timeout_s}s (last: {last})")
