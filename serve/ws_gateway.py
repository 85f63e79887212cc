"""The chat WebSocket server one replica runs: sockets in, the session core, the hub.

Why not Serve's HTTP proxy: every frame through the proxy costs a Python hop and
~60 us of ASGI work per send (docs/architecture.md has the measurements). Instead each
chat replica runs this server on its own event loop thread (uvloop) and every replica
on a node binds the same port with SO_REUSEPORT, so the kernel spreads connections
over them. Serve still owns the replica's life: start, health checks, autoscaling
and graceful drain (serve/chat_deployment.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import logging
import resource
import socket
import threading
import time
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aredis
import uvloop
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from actors.chat import keepalive, protocol
from actors.chat.broker import Broker
from actors.chat.hub import Hub
from actors.chat.keepalive import Due
from actors.chat.protocol import Join, Leave, Send
from actors.chat.session import Close, Limits, Reply, Session
from actors.chat.wsframe import PING
from cluster import keys, tokens
from cluster.codes import CloseCode, ErrorCode
from cluster.errors import AuthError, Unavailable
from cluster.redis_conn import async_client
from cluster.settings import Settings

log = logging.getLogger("fandom.chat.gateway")

WS_PATH = "/ws"
HEALTH_PATH = "/healthz"
# Frames above max_frame_bytes get close 4009 from the session core; this larger hard
# cap is where the websockets library itself stops reading (close 1009).
HARD_CAP_FACTOR = 16
# asyncio's default listen backlog is 100 per replica: a doors-open burst or a
# reconnect storm overflows it and every dropped handshake costs the fan a 1 s+ SYN
# retransmit (bench/chat_fanout.py reports ListenOverflows). The kernel caps the
# value at net.core.somaxconn.
LISTEN_BACKLOG = 4096


class FanConnection(ServerConnection):
    """websockets' connection plus the time anything last arrived from the peer.

    Feeds the replica's keepalive sweep (actors/chat/keepalive.py), which replaces
    websockets' task per socket; one attribute store per received chunk is all this
    adds on the hot path.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_rx = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        super().data_received(data)


def _raise_fd_limit(wanted_connections: int) -> None:
    """Use every file descriptor the hard limit allows; warn if that is too few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < wanted_connections + 1000:
        log.warning("RLIMIT_NOFILE hard limit %d is below FANDOM_FANS_PER_REPLICA=%d (+1000): "
                    "this replica will refuse connections before it is full; raise the "
                    "limit (docs/benchmarks.md) or lower FANDOM_FANS_PER_REPLICA", hard,
                    wanted_connections)


class Conn:
    """One fan's socket as the hub sees it: raw frame writes, slow-consumer check."""

    __slots__ = ("ws", "transport", "limit", "dead", "ping_at")

    def __init__(self, ws: FanConnection, limit: int):
        self.ws = ws
        self.transport = ws.transport
        self.limit = limit
        self.dead = False
        self.ping_at: float | None = None  # when the last keepalive ping went out

    def push(self, frame: bytes) -> bool:
        # Writing the pre-serialized frame straight to the transport is safe: the frame
        # is complete and unmasked, and the state check keeps data after a close frame
        # off the wire. It skips websockets' per-send framing (~9 us -> ~1 us).
        if self.dead or self.ws.protocol.state is not State.OPEN:
            return True
        self.transport.write(frame)
        return self.transport.get_write_buffer_size() <= self.limit

    def kill(self, code: CloseCode, reason: str) -> None:
        if not self.dead:
            self.dead = True
            asyncio.get_running_loop().create_task(self.ws.close(int(code), reason))


class Gateway:
    """Runs the WebSocket server and hub of one replica on a dedicated uvloop thread."""

    def __init__(self, settings: Settings, replica_id: str):
        self.settings = settings
        self.replica_id = replica_id
        self.limits = Limits.from_settings(settings)
        self._limits_json = json.dumps(dataclasses.asdict(self.limits), separators=(",", ":"))
        self.hub: Hub | None = None
        self.draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._hub_task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._thread_main, name="fandom-ws", daemon=True)

    # --- control, from any thread -----------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise Unavailable(f"chat gateway did not start within {timeout_s}s")
        if self._error is not None:
            raise self._error

    def check(self) -> None:
        """Raise if this replica cannot serve (Serve's health check)."""
        if not self._thread.is_alive():
            raise Unavailable(f"chat gateway thread died: {self._error!r}")
        if self._hub_task is not None and self._hub_task.done():
            raise Unavailable("chat hub loops stopped; replica must restart")
        if self.hub is not None and not self.hub.subscriber.healthy and self.hub.rooms:
            raise Unavailable("chat gateway lost its Redis subscription")

    @property
    def connections(self) -> int:
        return self.hub.connections if self.hub else 0

    def stats(self) -> dict:
        hub = self.hub
        return {"replica": self.replica_id, "connections": self.connections,
                "rooms": len(hub.rooms) if hub else 0, "draining": self.draining}

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Drain (close 1012 to every fan, who reconnects elsewhere) and stop."""
        if self._loop is None or not self._thread.is_alive():
            return
        timeout = self.settings.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        fut = asyncio.run_coroutine_threadsafe(self._drain(timeout), self._loop)
        try:
            fut.result(timeout + 10)
        except Exception:
            log.exception("drain did not finish cleanly")
        self._thread.join(10)

    # --- the loop thread --------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = self._loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported through start()/check()
            self._error = e
            log.exception("chat gateway stopped")
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        s = self.settings
        _raise_fd_limit(s.fans_per_replica)
        redis = async_client(s.redis_url, name=f"fandom-chat-{self.replica_id}")
        await redis.ping()
        broker = Broker(redis, history_len=s.history_len, dedup_ttl_s=s.dedup_ttl_s)
        self.hub = Hub(broker, replica_id=self.replica_id, tick_s=s.tick_ms / 1000,
                       presence_interval_s=s.presence_interval_s)
        self._stop = asyncio.Event()
        self._server = await serve(
            self._handler, s.host, s.ws_port,
            reuse_port=True,            # every chat replica on the node shares the port
            backlog=LISTEN_BACKLOG,
            compression=None,           # encode-once fan-out needs plain frames
            max_size=s.max_frame_bytes * HARD_CAP_FACTOR,
            ping_interval=None,         # one keepalive sweep per replica instead
            create_connection=FanConnection,
            process_request=self._process_request,
            server_header=None,
            close_timeout=5,            # then a peer that never answers our close is cut
        )
        hub_task = self._hub_task = asyncio.create_task(self.hub.run())
        beat_task = asyncio.create_task(self._heartbeat(redis))
        keepalive_task = asyncio.create_task(self._keepalive())
        self._ready.set()
        log.info("chat replica %s listening on ws://%s:%d%s", self.replica_id, s.host,
                 s.ws_port, WS_PATH)
        await self._stop.wait()
        self.hub.stop()
        beat_task.cancel()
        keepalive_task.cancel()
        await asyncio.wait([hub_task], timeout=5)
        await self.hub.settle(timeout_s=2)  # room unsubscribes still in flight
        await redis.hdel(keys.CHAT_REPLICAS, self.replica_id)
        await redis.aclose()

    async def _heartbeat(self, redis: aredis.Redis) -> None:
        """Advertise this replica (ops API, capacity report) every third of the TTL."""
        host = socket.gethostname()
        while True:
            try:
                await redis.hset(keys.CHAT_REPLICAS, self.replica_id, json.dumps(
                    {**self.stats(), "host": host, "at": time.time()}))
            except (aredis.RedisError, OSError):
                log.warning("heartbeat failed", exc_info=True)
            await asyncio.sleep(keys.CHAT_REPLICA_TTL_S / 3)

    async def _keepalive(self) -> None:
        """Apply the keepalive rule to every connection, SWEEPS_PER_INTERVAL times per interval.

        A ping is one pre-encoded frame written raw (as fan-out writes messages); the
        client's pong only has to arrive, websockets drops it after FanConnection
        noted the time.
        """
        interval = self.settings.ping_interval_s
        while True:
            await asyncio.sleep(interval / keepalive.SWEEPS_PER_INTERVAL)
            try:
                self._sweep(interval)
            except Exception:  # a bug here must not end keepalive for every fan
                log.exception("keepalive sweep failed")

    def _sweep(self, interval: float) -> None:
        hub = self.hub
        assert hub is not None
        now = time.monotonic()
        for conn in list(hub.member_rooms):
            if conn.dead:
                continue
            what = keepalive.due(now, conn.ws.last_rx, conn.ping_at, interval)
            if what is Due.PING:
                conn.ping_at = now
                if not conn.push(PING):
                    hub.drop_slow([conn])
            elif what is Due.CUT:
                hub.cut(conn, CloseCode.PEER_SILENT,
                        "ping not answered: reconnect and resume with since")

    async def _drain(self, timeout_s: float) -> None:
        self.draining = True
        assert self._server is not None and self.hub is not None and self._stop is not None
        self._server.close(close_connections=False)  # stop accepting; keep open sockets
        for conn in list(self.hub.member_rooms):
            conn.kill(CloseCode.SERVICE_RESTART, "replica draining: reconnect and resume with since")
        deadline = time.monotonic() + timeout_s
        while self.hub.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        self._stop.set()

    # --- per connection ---------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request):
        path = urlsplit(request.path).path
        if path == HEALTH_PATH:
            status = http.HTTPStatus.SERVICE_UNAVAILABLE if self.draining else http.HTTPStatus.OK
            return conn.respond(status, "draining\n" if self.draining else "ok\n")
        if path != WS_PATH:
            return conn.respond(http.HTTPStatus.NOT_FOUND, "chat lives at /ws?token=...\n")
        return None

    async def _handler(self, ws: FanConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        try:
            claims = tokens.verify(self.settings.jwt_secret, (query.get("token") or [None])[0])
        except AuthError as e:
            await _close_and_drain(ws, CloseCode.UNAUTHORIZED, e.message[:120])
            return
        hub = self.hub
        assert hub is not None
        conn = Conn(ws, self.settings.max_buffer_bytes)
        session = Session(claims, self.limits, time.time())
        hub.attach(conn)
        hub.write(conn, protocol.welcome(claims.user, self.replica_id, self._limits_json))
        try:
            async for frame in ws:
                for action in session.receive(frame, time.time()):
                    if not await self._act(conn, session, action):
                        return
        except ConnectionClosed:
            pass
        finally:
            hub.detach(conn)

    async def _act(self, conn: Conn, session: Session, action) -> bool:
        """Carry out one action; False once the connection is being closed."""
        hub = self.hub
        assert hub is not None
        kind = type(action)
        if kind is Reply:
            hub.write(conn, action.frame)
        elif kind is Send:
            try:
                hub.write(conn, await hub.send(session.user, action.room, action.id, action.text))
            except (aredis.RedisError, OSError):
                log.warning("send failed", exc_info=True)
                hub.write(conn, protocol.error(ErrorCode.UNAVAILABLE, action.id))
        elif kind is Join:
            try:
                await hub.join(conn, action.room, action.since, action.epoch)
            except (aredis.RedisError, OSError):
                log.warning("join failed", exc_info=True)
                session.join_failed(action.room)
                hub.write(conn, protocol.error(ErrorCode.UNAVAILABLE))
        elif kind is Leave:
            hub.leave(conn, action.room)
        elif kind is Close:
            hub.detach(conn)
            conn.dead = True
            await _close_and_drain(conn.ws, action.code, action.reason)
            return False
        return True


async def _close_and_drain(ws: ServerConnection, code: CloseCode, reason: str) -> None:
    """Close with ``code`` and read (discard) until the peer's close frame arrives.

    Awaiting ``ws.close()`` alone can stall for the whole close timeout: a flooding
    client's close reply sits behind frames it already sent, and websockets stops
    reading once its incoming queue is full. Returning early instead would let the
    library close first with a plain 1000.
    """
    closing = asyncio.get_running_loop().create_task(ws.close(int(code), reason))
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass
    await closing
