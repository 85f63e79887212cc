"""The chat replica floor moves in place: connected fans keep their sockets.

Proves the path serve/deploy.py relies on: re-applying fandom's declarative Serve
config with only the chat floor changed adds replicas without replacing the running
ones, and lowering it lets the extra replica go after the downscale delay (which
Serve's wrapper around our policy must actually honour).
"""

import asyncio
import json

import pytest
import websockets

from cluster.errors import ConfigError
from serve.config import CHAT_APP, CHAT_DEPLOYMENT, serve_config
from serve.deploy import chat_state, config_drift, set_chat_floor
from tests.serve_waits import chat_with, until

pytestmark = pytest.mark.e2e


def serve_running_replicas() -> int:
    from ray import serve

    dep = serve.status().applications[CHAT_APP].deployments[CHAT_DEPLOYMENT]
    return dep.replica_states.get("RUNNING", 0)


async def test_raising_the_floor_keeps_a_connected_websocket(stack):
    base = stack.settings.chat_replicas
    await until(lambda: len(chat_state().running) == base, 60, "the everyday chat replicas")
    before = await asyncio.to_thread(chat_state)
    async with websockets.connect(stack.ws_url("floor-fan")) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["op"] == "welcome" and welcome["replica"] in before.running
        try:
            assert await asyncio.to_thread(set_chat_floor, stack.settings, base + 1)
            after = await until(lambda: chat_with(base + 1),
                                120, "the extra chat replica", ws)
            assert after.floor == base + 1
            assert set(before.running) < set(after.running), "running replicas were replaced"
            assert await asyncio.to_thread(serve_running_replicas) == base + 1
            # Applying the same floor again is a no-op, not a redeploy.
            assert not await asyncio.to_thread(set_chat_floor, stack.settings, base + 1)
            await ws.send('{"op":"ping"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"op": "pong"}
        finally:
            await asyncio.to_thread(set_chat_floor, stack.settings, base)
        # Lowering the floor keeps the current target (no initial_replicas reset); the
        # extra replica leaves after the downscale delay, the old ones and our socket stay.
        # The controller applies a config asynchronously: wait for the live floor.
        await until(lambda: chat_state().floor == base, 60, "the floor to be lowered", ws)
        final = await until(lambda: chat_with(base),
                            120, "the extra replica to be released", ws)
        assert set(final.running) == set(before.running)
        await ws.send('{"op":"ping"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"op": "pong"}


def test_drift_is_refused_instead_of_restarting_replicas(stack):
    from ray import serve

    details = serve.context._get_global_client().get_serve_details()
    assert config_drift(details, serve_config(stack.settings, chat_min_replicas=9)) == ""
    other = stack.settings.replace(tick_ms=stack.settings.tick_ms + 1)  # changes the app args
    assert config_drift(details, serve_config(other)) == "api.args"
    with pytest.raises(ConfigError) as e:
        set_chat_floor(other, stack.settings.chat_replicas)
    assert e.value.code == "serve_config_drift"
    assert (chat_state()).floor == stack.settings.chat_replicas  # nothing was applied
