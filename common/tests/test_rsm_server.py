"""The replicated KV service as a real TCP server (solo consensus), driven by KVClient:
every operation, bad input, and durability across a restart on the same data dir."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from giants.core.errors import LocalProtocolError, Rejected, Timeout
from giants.core.kv import KVStateMachine
from giants.core.kvclient import KVClient
from giants.core.rsm import ClientCommand, ClientQuery
from giants.core.rsm_server import serve_replicated
from giants.core.solo import solo_factory
from giants.core.transport import tcp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, port: int) -> dict[str, object]:
    addr = f"127.0.0.1:{port}"
    return {"node_id": "node-0", "listen": addr, "peers": {"node-0": addr},
            "data_dir": str(tmp_path / "node-0"), "tick_s": 0.01}


async def test_kv_operations_and_restart(tmp_path: Path) -> None:
    port = _free_port()
    config = _config(tmp_path, port)
    endpoints = [f"127.0.0.1:{port}"]
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_replicated, config, solo_factory, KVStateMachine)
        async with KVClient(endpoints) as kv:
            assert await kv.get("a") is None
            await kv.put("a", {"x": [1, 2]})
            assert await kv.get("a") == {"x": [1, 2]}
            assert await kv.cas("a", {"x": [1, 2]}, "b") is True
            assert await kv.cas("a", "zzz", "c") is False
            assert await kv.delete("a") is True
            assert await kv.delete("a") is False
            for i in range(50):
                await kv.put(f"k{i}", i)
            results = []

            async def writer(i: int) -> None:
                results.append(await kv.cas(f"c{i}", None, i))

            async with trio.open_nursery() as inner:
                for i in range(20):
                    inner.start_soon(writer, i)
            assert results == [True] * 20
        nursery.cancel_scope.cancel()
    # same data dir: every acknowledged write is still there
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_replicated, config, solo_factory, KVStateMachine)
        async with KVClient(endpoints) as kv:
            assert [await kv.get(f"k{i}") for i in range(50)] == list(range(50))
            assert await kv.get("c7") == 7
            assert await kv.get("a") is None
        nursery.cancel_scope.cancel()


async def test_bad_requests_get_clear_errors_and_server_keeps_serving(tmp_path: Path) -> None:
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_replicated, _config(tmp_path, port), solo_factory, KVStateMachine)
        async with tcp.Client("raw") as client:
            for bad in (["nope", "x"], ["put", 1, 2], ["put"], "str", ["put", "k" * 10000, 1]):
                with pytest.raises(Rejected):
                    await client.request(addr, ClientCommand("raw", 1, bad), timeout=2)
            with pytest.raises(Rejected):
                await client.request(addr, ClientQuery(["scan"]), timeout=2)
        async with KVClient([addr]) as kv:
            await kv.put("ok", 1)
            assert await kv.get("ok") == 1
        nursery.cancel_scope.cancel()


async def test_client_reports_indefinite_when_nobody_answers() -> None:
    port = _free_port()  # nothing listens there
    async with KVClient([f"127.0.0.1:{port}"], op_timeout_s=0.3) as kv:
        with pytest.raises(Timeout):
            await kv.put("a", 1)
        with pytest.raises(Timeout):
            await kv.get("a")


async def test_client_must_be_entered() -> None:
    kv = KVClient(["127.0.0.1:1"])
    with pytest.raises(LocalProtocolError):
        await kv.get("a")
