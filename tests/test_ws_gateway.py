"""Component: one chat replica's WebSocket server in-process (real sockets, real Redis, no Ray)."""

from __future__ import annotations

import asyncio
import struct
import threading

import httpx
import pytest
import websockets

from cluster import tokens
from cluster.embedded_redis import free_port
from cluster.settings import Settings
from serve.ws_gateway import Gateway
from tests.chat_client import Fan


def _gateway(redis_url: str, **env: str) -> Gateway:
    settings = Settings.from_env({
        "FANDOM_REDIS_URL": redis_url, "FANDOM_HOST": "127.0.0.1",
        "FANDOM_WS_PORT": str(free_port()), "FANDOM_JWT_SECRET": "g" * 40, "FANDOM_TICK_MS": "10",
        **env,
    })
    gw = Gateway(settings, replica_id="local")
    gw.start()
    return gw


@pytest.fixture
def gateway(component_redis_url):
    gw = _gateway(component_redis_url)
    yield gw
    gw.stop(drain_timeout_s=1)


@pytest.fixture
def fast_pings(component_redis_url):
    gw = _gateway(component_redis_url, FANDOM_PING_INTERVAL_S="0.3")
    yield gw
    gw.stop(drain_timeout_s=1)


def url(gw: Gateway, user: str) -> str:
    return f"ws://127.0.0.1:{gw.settings.ws_port}/ws?token={tokens.mint(gw.settings.jwt_secret, user)}"


async def test_health_and_unknown_paths(gateway):
    base = f"http://127.0.0.1:{gateway.settings.ws_port}"
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(f"{base}/healthz")).text == "ok\n"
        assert (await http.get(f"{base}/elsewhere")).status_code == 404


async def test_drain_tells_every_fan_to_reconnect_with_1012(gateway):
    fans = [await Fan.connect(url(gateway, f"u{i}")) for i in range(3)]
    for f in fans:
        await f.join("lobby")
    assert gateway.connections == 3
    stopper = threading.Thread(target=gateway.stop, kwargs={"drain_timeout_s": 5})
    stopper.start()
    closes = await asyncio.gather(*(f.wait_closed() for f in fans))
    assert {c.rcvd.code for c in closes} == {1012}
    assert "resume with since" in closes[0].rcvd.reason
    await asyncio.get_running_loop().run_in_executor(None, stopper.join)
    assert gateway.connections == 0


async def test_flooder_is_closed_promptly_even_with_frames_queued(gateway):
    fan = await Fan.connect(url(gateway, "flooder"))
    await fan.join("lobby")
    for i in range(300):  # far more than the server's incoming queue holds
        await fan.send({"op": "send", "room": "lobby", "id": f"s{i}", "text": "spam"})
    closed = await fan.wait_closed(timeout=4)  # < close timeout: no stalled handshake
    assert closed.rcvd.code == 4008


class RawPeer:
    """A WebSocket client that reads frames but never answers anything (not even pings)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, gw: Gateway, user: str) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.ws_port)
        path = url(gw, user).split(str(gw.settings.ws_port), 1)[1]
        writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; server frames are never masked."""
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)


async def test_keepalive_pings_everyone_and_cuts_only_the_silent_peer(fast_pings):
    gw = fast_pings
    # A well-behaved fan whose library answers pings but that sends nothing itself
    # (its own keepalive is off): only its pongs can keep it alive.
    fan = Fan(await websockets.connect(url(gw, "alive"), ping_interval=None, compression=None))
    await fan.next("welcome")
    await fan.join("lobby")
    silent = await RawPeer.connect(gw, "silent")
    opcodes = []
    while True:
        op, payload = await asyncio.wait_for(silent.frame(), 10)
        opcodes.append(op)
        if op == 0x8:  # close
            break
    assert opcodes[0] == 0x1 and 0x9 in opcodes  # welcome, then a ping it never answers
    assert struct.unpack("!H", payload[:2])[0] == 4011
    silent.writer.close()
    # The fan lived through the same sweeps, and more: still served.
    await asyncio.sleep(4 * 0.3)
    assert fan.closed is None
    start = len(fan.frames)
    await fan.send({"op": "ping"})
    await fan.next("pong", start=start)
    assert gw.connections == 1
