"""Fake systems for the launcher and CLI tests, registered through ``--plugin``.

``fake-echo``: each ``echo-i`` serves TCP on its endpoint and answers every chunk it
reads with ``b"<name>:<greeting>:" + chunk``. ``fake-front``: one ``front-0`` that
forwards each chunk to the first endpoint of the service bound as its ``lock`` and
relays the answer (so a spec test sees the binding really passed). ``fake-broken``:
roles that crash at start (``crash``) or never listen (``mute``).
"""

from __future__ import annotations

import sys
from typing import Any

import trio

from giants.core.plugins import Instance, Registry, Role, System, UpOptions, hookimpl


async def _serve(listen: str, answer: Any) -> None:
    host, _, port = listen.rpartition(":")

    async def handler(stream: trio.SocketStream) -> None:
        try:
            async for chunk in stream:
                await stream.send_all(await answer(chunk))
        except trio.BrokenResourceError:
            pass

    await trio.serve_tcp(handler, int(port), host=host)


async def echo_main(config: dict[str, Any]) -> None:
    prefix = f"{config['name']}:{config.get('greeting', '')}:".encode()

    async def answer(chunk: bytes) -> bytes:
        return prefix + chunk

    await _serve(config["listen"], answer)


async def front_main(config: dict[str, Any]) -> None:
    host, _, port = config["upstream"].rpartition(":")

    async def answer(chunk: bytes) -> bytes:
        async with await trio.open_tcp_stream(host, int(port)) as up:
            await up.send_all(chunk)
            return b"front>" + await up.receive_some(65536)

    await _serve(config["listen"], answer)


async def crash_main(config: dict[str, Any]) -> None:
    print("fake-broken: refusing to start (on purpose)", file=sys.stderr, flush=True)
    raise SystemExit(3)


async def mute_main(config: dict[str, Any]) -> None:
    await trio.sleep_forever()


def _plan(role: str, default: int, opts: UpOptions, extra_config: dict[str, Any]
          ) -> list[Instance]:
    out = []
    for i in range(opts.nodes or default):
        ep = f"{opts.host}:{opts.base_port + i}"
        out.append(Instance(role, f"{role}-{i}", {"listen": ep, **extra_config}, ep))
    return out


def echo_plan(opts: UpOptions) -> list[Instance]:
    return _plan("echo", 2, opts, {"greeting": opts.extra.get("greeting", "")})


def front_plan(opts: UpOptions) -> list[Instance]:
    upstream = opts.extra["lock_endpoints"]["echo"][0]
    return _plan("front", 1, opts, {"upstream": upstream, "bound_to": opts.extra["lock"]})


def broken_plan(opts: UpOptions) -> list[Instance]:
    return _plan(str(opts.extra.get("role", "crash")), 1, opts, {})


def echo_sim(args: Any) -> int:
    """Writes a two-event trace; fails when asked to (``--nemesis fail``)."""
    from pathlib import Path

    from giants.core.trace import TraceWriter

    tw = TraceWriter()
    tw.event(0.0, "echo-0", "send", src="echo-0", dst="echo-1", id=1, msg="Ping", body="")
    tw.event(0.1, "echo-1", "recv", src="echo-0", dst="echo-1", id=1, msg="Ping")
    Path(args.trace_dir).mkdir(parents=True, exist_ok=True)
    path = Path(args.trace_dir) / f"fake-echo-seed{args.seed}.trace.jsonl"
    tw.save(str(path))
    failed = args.nemesis == "fail"
    print(f"{'FAIL' if failed else 'PASS'} fake-echo seed={args.seed} ops={args.ops}")
    return 1 if failed else 0


def echo_demo(args: Any) -> int:
    print("fake-echo demo ran")
    return 0


def front_demo(args: Any) -> int:
    raise RuntimeError("front demo broke")


class FakeSystems:
    @hookimpl
    def giants_register_services(self, registry: Registry) -> None:
        registry.add_system(System("fake-echo", "echo servers for launcher tests",
                                   {"echo": Role("echo", echo_main)}, echo_plan,
                                   default_nodes=2, demo=echo_demo, sim=echo_sim))
        registry.add_system(System("fake-front", "forwards to its bound 'lock' service",
                                   {"front": Role("front", front_main)}, front_plan,
                                   default_nodes=1, demo=front_demo))
        registry.add_system(System("fake-broken", "roles that fail to come up",
                                   {"crash": Role("crash", crash_main),
                                    "mute": Role("mute", mute_main)}, broken_plan))


plugin = FakeSystems()
