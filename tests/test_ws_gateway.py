"""Component: one chat replica's WebSocket server in-process (real sockets, real Redis, no Ray)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from cluster import tokens
from cluster.embedded_redis import free_port
from cluster.settings import Settings
from serve.ws_gateway import Gateway
from tests.chat_client import Fan


@pytest.fixture
def gateway(component_redis_url):
    settings = Settings.from_env({
        "FANDOM_REDIS_URL": component_redis_url, "FANDOM_HOST": "127.0.0.1",
        "FANDOM_WS_PORT": str(free_port()), "FANDOM_JWT_SECRET": "g" * 40, "FANDOM_TICK_MS": "10",
    })
    gw = Gateway(settings, replica_id="local")
    gw.start()
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
