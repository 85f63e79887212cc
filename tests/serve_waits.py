"""Waits shared by the tests that move Serve's chat replicas under a connected fan."""

import asyncio
import json
import time

from serve.deploy import chat_state


def chat_with(running: int):
    """The chat deployment's state once exactly ``running`` replicas run, else None."""
    state = chat_state()
    return state if len(state.running) == running else None


async def until(check, timeout_s, what, ws=None, invariant=None):
    """Poll ``check`` (blocking, in a thread) until truthy. Meanwhile keep ``ws`` talking
    (a ping must be answered: the socket survived) and assert ``invariant``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if invariant is not None:
            await asyncio.to_thread(invariant)
        value = await asyncio.to_thread(check)
        if value:
            return value
        if ws is not None:
            await ws.send('{"op":"ping"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 15)) == {"op": "pong"}
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.5)
