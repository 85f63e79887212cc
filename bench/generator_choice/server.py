"""Broadcast a 150-byte message frame every 50 ms to every connected client (generator-choice experiment).

See docs/benchmarks.md, "Choosing the generator". Run from the repository root:
    .venv/bin/python bench/generator_choice/server.py 19777 &
    node bench/generator_choice/client.js 19777 6000
    .venv/bin/python bench/generator_choice/client.py 19777 6000
"""
import asyncio, sys, uvloop
from websockets.asyncio.server import serve, broadcast
conns=set()
async def h(ws):
    conns.add(ws)
    try:
        await ws.wait_closed()
    finally:
        conns.discard(ws)
async def main():
    async with serve(h, "127.0.0.1", int(sys.argv[1]), compression=None, backlog=4096):
        i=0
        while True:
            await asyncio.sleep(0.05)
            i+=1
            broadcast(conns, '{"op":"messages","room":"r","messages":[{"offset":%d,"id":"x","user":"u","text":"w0p0:%d:0|xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","ts":0}]}' % (i, i))
uvloop.run(main())
