"""A real WebSocket chat client for tests: records every frame, waits on conditions."""

from __future__ import annotations

import asyncio
import json
import time

import websockets
from websockets.asyncio.client import ClientConnection


class Fan:
    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.frames: list[dict] = []
        self.welcome: dict = {}
        self.closed: websockets.ConnectionClosed | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> Fan:
        fan = cls(await websockets.connect(url, max_size=None, compression=None))
        fan.welcome = await fan.next("welcome")
        return fan

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self._changed.set()
        except websockets.ConnectionClosed as e:
            self.closed = e
        else:
            self.closed = self.ws.protocol.close_exc
        self._changed.set()

    async def wait(self, pred, timeout: float = 10.0, what: str = "condition"):
        """Poll ``pred()`` on every frame until truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; last frames: {self.frames[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def next(self, op: str, timeout: float = 10.0, start: int = 0, **match) -> dict:
        """The first frame at index >= start with this op (and matching fields)."""
        def find():
            for f in self.frames[start:]:
                if f.get("op") == op and all(f.get(k) == v for k, v in match.items()):
                    return f
            return None
        return await self.wait(find, timeout, f"op={op} {match}")

    async def send(self, obj: dict | str | bytes) -> None:
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def join(self, room: str, **kw) -> dict:
        start = len(self.frames)
        await self.send({"op": "join", "room": room, **kw})
        return await self.next("joined", start=start, room=room)

    async def wait_closed(self, timeout: float = 10.0) -> websockets.ConnectionClosed:
        await self.wait(lambda: self._reader.done(), timeout, "close")
        return self.closed

    def messages(self, room: str) -> list[dict]:
        return [m for f in self.frames if f.get("op") == "messages" and f["room"] == room
                for m in f["messages"]]

    def offsets(self, room: str) -> list[int]:
        return [m["offset"] for m in self.messages(room)]

    def errors(self) -> list[dict]:
        return [f for f in self.frames if f.get("op") == "error"]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def paced_sends(fan: Fan, room: str, items: list[tuple[str, str]], per_s: float) -> None:
    """Send (id, text) pairs no faster than per_s (under the server's rate limit)."""
    for cid, text in items:
        await fan.send({"op": "send", "room": room, "id": cid, "text": text})
        await asyncio.sleep(1 / per_s)
