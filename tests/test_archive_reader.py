"""The archiver's stream reader on a real Redis: an idle cluster must not make it spin."""

import threading
import time

import redis

from actors.archive.redis_io import StreamReader
from cluster import keys


def _smembers_calls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_smembers", {}).get("calls", 0))


def test_poll_waits_when_there_is_no_log_to_block_on(component_redis_url):
    r = redis.Redis.from_url(component_redis_url)
    reader = StreamReader(r)
    # Fresh cluster: no rooms. Then a room that is indexed but has no log yet (no
    # message sent): XGROUP CREATE fails and there is nothing to XREADGROUP BLOCK on.
    for setup in (lambda: None, lambda: r.sadd(keys.ROOMS_INDEX, "quiet-room")):
        setup()
        before = _smembers_calls(r)
        stop = threading.Event()
        polls = []

        def loop():
            while not stop.is_set():
                polls.append(reader.poll(block_ms=100))

        t = threading.Thread(target=loop)
        t.start()
        time.sleep(1.0)
        stop.set()
        t.join(5)
        assert all(p == [] for p in polls)
        # A poll waits ~100 ms: about 10 polls in the second. A spinning loop made
        # thousands (each one an SMEMBERS round trip); 50 leaves room for slow machines.
        assert 1 <= _smembers_calls(r) - before <= 50
