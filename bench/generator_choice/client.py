"""Python websockets+uvloop client: N sockets, json.loads every frame; prints CPU per frame and RSS per connection.

See docs/benchmarks.md, "Choosing the generator". Run from the repository root:
    .venv/bin/python bench/generator_choice/server.py 19777 &
    node bench/generator_choice/client.js 19777 6000
    .venv/bin/python bench/generator_choice/client.py 19777 6000
"""
import asyncio, sys, time, uvloop, json
from websockets.asyncio.client import connect
N=int(sys.argv[2]); got=0; TASKS=[]
async def one(i):
    global got
    async with connect(f"ws://127.0.0.1:{sys.argv[1]}/", compression=None, open_timeout=60) as ws:
        async for m in ws:
            json.loads(m); got+=1
async def main():
    TASKS.extend(asyncio.create_task(one(i)) for i in range(N))  # held so they are not collected
    await asyncio.sleep(20)
    t0=time.process_time(); g0=got; await asyncio.sleep(10); t1=time.process_time()
    rss=int(open('/proc/self/statm').read().split()[1])*4096
    print(json.dumps({"client":"python websockets+uvloop","conns":N,"frames":got-g0,"cpu_s":round(t1-t0,2),"us_per_frame":round(1e6*(t1-t0)/max(1,got-g0),1),"rss_kb_per_conn":round(rss/N/1024,1)}))
    import os; os._exit(0)
uvloop.run(main())
