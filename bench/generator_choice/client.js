// Node `ws` client: N sockets, JSON.parse every frame; prints CPU per frame and RSS per
// connection. See docs/benchmarks.md, "Choosing the generator" (and server.py beside this).
const WebSocket=require(require("path").join(__dirname, "..", "loadgen", "node_modules", "ws"));
const N=Number(process.argv[3]); let got=0;
for(let i=0;i<N;i++){const ws=new WebSocket(`ws://127.0.0.1:${process.argv[2]}/`,{perMessageDeflate:false}); ws.on("message",(d)=>{JSON.parse(d.toString()); got++;});}
setTimeout(()=>{const c0=process.cpuUsage(); const g0=got; setTimeout(()=>{const c=process.cpuUsage(c0); const cpu=(c.user+c.system)/1e6; const rss=require("fs").readFileSync("/proc/self/statm","utf8").split(" ")[1]*4096;
console.log(JSON.stringify({client:"node ws",conns:N,frames:got-g0,cpu_s:+cpu.toFixed(2),us_per_frame:+(1e6*cpu/Math.max(1,got-g0)).toFixed(1),rss_kb_per_conn:+(rss/N/1024).toFixed(1)})); process.exit(0);},10000)},20000);
