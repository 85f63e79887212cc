// One load-generator worker for bench/chat_fanout.py: many fans and some publishers
// over real WebSockets, speaking fandom's protocol or Socket.IO's (engine.io v4 over
// the same `ws` client, so both servers face an identical client).
//
// Control: JSON lines on stdin (commands), JSON lines on stdout (events).
//   {"cmd":"init", ...config}         -> {"ev":"ready"}
//   {"cmd":"connect"}                  -> {"ev":"connected", ...}  once every fan settled
//   {"cmd":"publish","duration_s":D}   -> {"ev":"published", ...} after D s + ack wait
//   {"cmd":"stats"}                    -> {"ev":"stats", ...}      live counters
//   {"cmd":"report","final":{room:N}}  -> {"ev":"report", ...}     per-fan accounting
//   {"cmd":"exit"}
//
// Per fan: every message offset is checked against a bitset relative to the offset
// the fan joined at, so lost (expected - unique received), duplicated (an offset
// seen twice) and out-of-order (a new offset below the highest seen) are exact.
// Latency = receive time - the publish time the publisher wrote into the text
// (same machine, same clock). Recovered messages (replayed after a reconnect, at or
// below the rejoin cursor) count as received but not as latency samples.

"use strict";

const readline = require("readline");
const { performance } = require("perf_hooks");
const WebSocket = require("ws");

const now = () => performance.timeOrigin + performance.now(); // epoch ms, sub-ms
const BUCKET_MS = 0.1;
const BUCKETS = 600001; // 0.1 ms resolution up to 60 s; the exact max is kept apart

let cfg = null;
const fans = [];
const pubs = [];
const hist = new Uint32Array(BUCKETS);
const counts = {
  latency_max_ms: 0, latency_samples: 0, failed_handshakes: 0, reconnects: 0,
  closes: {}, errors: {}, stale: 0, recovered: 0, frames: 0, presence_frames: 0, ports_skipped: 0,
};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function bump(map, key) {
  map[key] = (map[key] || 0) + 1;
}

// --- wire formats ------------------------------------------------------------------

// Message frames are the hot path (every delivery): rather than JSON.parse them, pull
// the k-th "offset" and the k-th "text" out by scanning, which does not depend on key
// order (the server's Lua cjson does not keep one). Safe because every id, user and
// text in the benchmark is ours and contains neither marker. Other frames are parsed.
const OFFSET = '"offset":';
const TEXT = '"text":"';

function scanMessages(s, from) {
  const offsets = [];
  const stamps = [];
  let i = s.indexOf(OFFSET, from);
  while (i !== -1) {
    let j = i + OFFSET.length;
    let n = 0;
    for (let c = s.charCodeAt(j); c >= 48 && c <= 57; c = s.charCodeAt(++j)) n = n * 10 + (c - 48);
    offsets.push(n);
    i = s.indexOf(OFFSET, j);
  }
  let t = s.indexOf(TEXT, from);
  while (t !== -1) {
    const a = s.indexOf(":", t + TEXT.length);
    const b = s.indexOf(":", a + 1);
    stamps.push(parseFloat(s.slice(b + 1, s.indexOf("|", b))));
    t = s.indexOf(TEXT, b);
  }
  return [offsets, stamps];
}

const fandomWire = {
  url: (tok) => `${cfg.url}?token=${tok}`,
  onOpenFrame: () => null, // fandom speaks first (welcome)
  join(conn, room) {
    const f = { op: "join", room };
    if (conn.epoch !== null && conn.last !== null) { f.since = conn.last; f.epoch = conn.epoch; }
    conn.ws.send(JSON.stringify(f));
  },
  send(conn, room, id, text) {
    conn.ws.send(JSON.stringify({ op: "send", room, id, text }));
  },
  // -> list of [kind, payload]
  decode(conn, data) {
    if (data.startsWith('{"op":"messages"')) return ["scan", scanMessages(data, 16)];
    const m = JSON.parse(data);
    switch (m.op) {
      case "messages": return ["messages", m];
      case "joined": return ["joined", m];
      case "ack": return ["ack", m];
      case "welcome": return ["welcome", m];
      case "presence": return ["presence", m];
      case "error": return ["error", m];
      default: return ["other", m];
    }
  },
};

const sioWire = {
  url: (tok) => `${cfg.url}&token=${tok}`,
  join(conn, room) {
    const id = conn.nextAck++;
    conn.acks.set(id, "join");
    conn.ws.send(`42${id}${JSON.stringify(["join", room])}`);
  },
  send(conn, room, id, text) {
    const a = conn.nextAck++;
    conn.acks.set(a, "send");
    conn.ws.send(`42${a}${JSON.stringify(["send", { room, id, text }])}`);
  },
  decode(conn, data) {
    const s = typeof data === "string" ? data : data.toString();
    const t = s.charCodeAt(0);
    if (t === 52 /* '4' message */) {
      const k = s.charCodeAt(1);
      if (k === 50 /* '2' event */) {
        if (s.startsWith('42["messages"')) return ["scan", scanMessages(s, 13)];
        const [name, payload] = JSON.parse(s.slice(2));
        return name === "messages" ? ["messages", payload] : ["other", payload];
      }
      if (k === 51 /* '3' ack */) {
        const br = s.indexOf("[");
        const id = Number(s.slice(2, br));
        const kind = conn.acks.get(id);
        conn.acks.delete(id);
        const payload = JSON.parse(s.slice(br))[0];
        if (payload && payload.error) return ["error", { code: payload.error }];
        return kind === "join" ? ["joined", payload] : ["ack", payload];
      }
      if (k === 48 /* '0' connect */) return ["welcome", null];
      if (k === 52 /* '4' connect error */) return ["refused", s];
      return ["other", null];
    }
    if (t === 48 /* '0' engine.io open */) { conn.ws.send("40"); return ["other", null]; }
    if (t === 50 /* '2' ping */) { conn.ws.send("3"); return ["other", null]; }
    return ["other", null];
  },
};

// --- connections -------------------------------------------------------------------

let addrIndex = 0;
let queue = [];
let inflight = 0;
let pacer = null;
let settledCb = null;

function newConn(token, rooms, isPub) {
  return {
    token, rooms, isPub, ws: null, state: "idle", joinedRooms: 0, tries: 0,
    epoch: null, last: null, base: null, seen: null, received: 0, dup: 0, ooo: 0,
    replayUpTo: 0, acks: new Map(), nextAck: 0, everJoined: false,
  };
}

// Source ports are chosen here, not by the kernel: bind(addr, 0) searches the port
// space under a lock, and once every port has an owner on some address that search
// cost the generator ~0.8 of a core in system time at ~75k sockets (docs/benchmarks.md).
// bind(addr, port) is a single lookup. Each worker owns a disjoint port slice
// [port_lo, port_hi) on every source address; a port that turns out to be busy (another
// program's wildcard listener, a TIME_WAIT left by an earlier run) is skipped.
let portCursor = null;
function nextPort(a) {
  if (portCursor === null) portCursor = cfg.local_addresses.map(() => cfg.port_lo);
  const p = portCursor[a];
  portCursor[a] = p + 1 >= cfg.port_hi ? cfg.port_lo : p + 1;
  return p;
}
const PORT_BUSY = new Set(["EADDRINUSE", "EADDRNOTAVAIL"]);

function open(conn) {
  conn.state = "connecting";
  conn.tries += 1;
  conn.joinedRooms = 0;
  conn.portBusy = false;
  const a = addrIndex++ % cfg.local_addresses.length;
  const opts = { perMessageDeflate: false, skipUTF8Validation: true, localAddress: cfg.local_addresses[a],
                 handshakeTimeout: 30000 };
  if (cfg.port_lo) opts.localPort = nextPort(a);
  const ws = new WebSocket(cfg.wire.url(conn.token), opts);
  conn.ws = ws;
  ws.on("message", (data, isBinary) => onFrame(conn, isBinary ? data : data.toString()));
  ws.on("error", (e) => { if (PORT_BUSY.has(e.code)) conn.portBusy = true; });
  ws.on("close", (code) => onClose(conn, code));
}

function onFrame(conn, data) {
  counts.frames += 1;
  const [kind, m] = cfg.wire.decode(conn, data);
  if (kind === "scan") {
    if (m[0].length !== m[1].length) throw new Error(`unexpected message frame: ${data.slice(0, 200)}`);
    if (!conn.isPub) onMessages(conn, m[0], m[1]);
  } else if (kind === "messages") {
    if (!conn.isPub) onMessages(conn, m.messages.map((x) => x.offset), m.messages.map((x) => stampOf(x.text)));
  } else if (kind === "welcome") {
    for (const room of conn.rooms) cfg.wire.join(conn, room);
  } else if (kind === "joined") {
    onJoined(conn, m);
  } else if (kind === "ack") {
    onAck(conn, m);
  } else if (kind === "error") {
    bump(counts.errors, String(m.code));
    if (m.code === 106 && m.id && conn.isPub) conn.pub.retry(m.id);
  } else if (kind === "presence") {
    counts.presence_frames += 1;
  } else if (kind === "refused") {
    bump(counts.errors, "refused");
  }
}

function onJoined(conn, m) {
  if (!conn.isPub) {
    if (conn.base === null) {
      conn.base = m.offset;
      conn.last = m.offset;
      conn.seen = new Uint8Array(64);
    }
    if (m.epoch !== undefined && conn.epoch !== null && m.epoch !== conn.epoch) bump(counts.errors, "epoch_changed");
    if (m.recovered === false && conn.everJoined && cfg.proto === "fandom") bump(counts.errors, "not_recovered");
    conn.epoch = m.epoch === undefined ? null : m.epoch;
    conn.replayUpTo = m.offset;
  }
  conn.joinedRooms += 1;
  if (conn.joinedRooms === conn.rooms.length) {
    const first = !conn.everJoined;
    conn.state = "joined";
    conn.everJoined = true;
    if (conn.isPub) conn.pub.flush();
    if (first) settle(conn, true);
  }
}

function stampOf(text) {
  const b = text.indexOf(":", text.indexOf(":") + 1);
  return parseFloat(text.slice(b + 1, text.indexOf("|", b)));
}

function onMessages(conn, offsets, stamps) {
  const t = now();
  for (let i = 0; i < offsets.length; i++) {
    const off = offsets[i];
    const rel = off - conn.base;
    if (rel <= 0) { counts.stale += 1; continue; }
    if (rel >= conn.seen.length) {
      let n = conn.seen.length;
      while (n <= rel) n *= 2;
      const grown = new Uint8Array(n);
      grown.set(conn.seen);
      conn.seen = grown;
    }
    if (conn.seen[rel]) { conn.dup += 1; continue; }
    conn.seen[rel] = 1;
    conn.received += 1;
    if (off < conn.last) conn.ooo += 1; else conn.last = off;
    if (off <= conn.replayUpTo) { counts.recovered += 1; continue; }
    const lat = t - stamps[i];
    if (lat > counts.latency_max_ms) counts.latency_max_ms = lat;
    counts.latency_samples += 1;
    const b = Math.floor(lat / BUCKET_MS);
    hist[b < 0 ? 0 : b >= BUCKETS ? BUCKETS - 1 : b] += 1;
  }
}

function onClose(conn, code) {
  if (conn.portBusy && !conn.closing && (conn.portSkips = (conn.portSkips || 0) + 1) < 1000) {
    // Never reached the server: same attempt, next port.
    counts.ports_skipped += 1;
    conn.tries -= 1;
    setImmediate(() => open(conn));
    return;
  }
  bump(counts.closes, String(code));
  const wasJoined = conn.state === "joined";
  conn.state = "closed";
  if (conn.closing) return;
  if (!conn.everJoined) {
    counts.failed_handshakes += 1;
    inflightDone(conn);
    if (conn.tries < cfg.max_tries) setTimeout(() => enqueue(conn), 200 + Math.random() * 800);
    else settle(conn, false);
    return;
  }
  if (!cfg.reconnect) return;
  if (wasJoined) counts.reconnects += 1;
  else counts.failed_handshakes += 1;
  // Real clients jitter their reconnects; a storm of same-instant reconnects is not the
  // behaviour to benchmark.
  setTimeout(() => open(conn), Math.random() * cfg.reconnect_jitter_ms);
}

function settle(conn, ok) {
  if (conn.settled) return;
  conn.settled = true;
  conn.settledOk = ok;
  inflightDone(conn);
  if (settledCb) settledCb();
}

function inflightDone(conn) {
  if (conn.inflight) { conn.inflight = false; inflight -= 1; pump(); }
}

function enqueue(conn) {
  queue.push(conn);
  pump();
}

let tokens = 0;
let tokensAt = 0;
function pump() {
  if (cfg.connect_rate > 0) {
    const t = now();
    tokens = Math.min(tokens + (t - tokensAt) * cfg.connect_rate / 1000, Math.max(1, cfg.connect_rate / 20));
    tokensAt = t;
  }
  while (queue.length && inflight < cfg.concurrency && (cfg.connect_rate <= 0 || tokens >= 1)) {
    const conn = queue.shift();
    conn.inflight = true;
    inflight += 1;
    tokens -= 1;
    open(conn);
  }
  if (queue.length && cfg.connect_rate > 0 && !pacer) {
    pacer = setTimeout(() => { pacer = null; pump(); }, 5);
  }
}

// --- publishers ----------------------------------------------------------------------

function makePublisher(conn, index) {
  const pub = {
    conn, index, seq: 0, sent: 0, acked: 0, resent: 0, pending: new Map(), maxOffset: {},
    timer: null, start: 0, rate: 0, roomIdx: 0,
    tick() {
      const due = Math.floor((now() - pub.start) * pub.rate / 1000) - pub.seq;
      for (let i = 0; i < due; i++) pub.sendNew();
    },
    sendNew() {
      const room = conn.rooms[pub.roomIdx++ % conn.rooms.length];
      const s = pub.seq++;
      const id = `w${cfg.worker}p${index}s${s}`;
      const head = `w${cfg.worker}p${index}:${s}:${now().toFixed(3)}|`;
      const text = head.length < cfg.text_bytes ? head + "x".repeat(cfg.text_bytes - head.length) : head;
      pub.pending.set(id, [room, text]);
      pub.sent += 1;
      if (conn.state === "joined") cfg.wire.send(conn, room, id, text);
    },
    retry(id) {
      const p = pub.pending.get(id);
      if (!p) return;
      pub.resent += 1;
      setTimeout(() => { if (conn.state === "joined" && pub.pending.has(id)) cfg.wire.send(conn, p[0], id, p[1]); }, 100);
    },
    flush() { // after a (re)join: resend unacked with the same ids (dedup makes this safe)
      for (const [id, [room, text]] of pub.pending) { pub.resent += 1; cfg.wire.send(conn, room, id, text); }
    },
  };
  conn.pub = pub;
  return pub;
}

function onAck(conn, m) {
  const pub = conn.pub;
  if (!pub) return;
  if (m.id !== undefined && pub.pending.delete(m.id)) pub.acked += 1;
  if (m.room !== undefined && !(m.offset <= (pub.maxOffset[m.room] || 0))) pub.maxOffset[m.room] = m.offset;
}

function publish(durationS) {
  for (const p of pubs) {
    p.rate = p.conn.ratePerS;
    p.start = now();
    p.timer = setInterval(() => p.tick(), 10);
  }
  setTimeout(() => {
    for (const p of pubs) clearInterval(p.timer);
    const deadline = now() + cfg.ack_wait_ms;
    const waitAcks = () => {
      const unacked = pubs.reduce((a, p) => a + p.pending.size, 0);
      if (unacked && now() < deadline) return setTimeout(waitAcks, 20);
      const rooms = {};
      for (const p of pubs) for (const [r, o] of Object.entries(p.maxOffset)) rooms[r] = Math.max(rooms[r] || 0, o);
      emit({ ev: "published", sent: pubs.reduce((a, p) => a + p.sent, 0),
             acked: pubs.reduce((a, p) => a + p.acked, 0), resent: pubs.reduce((a, p) => a + p.resent, 0),
             unacked, rooms });
    };
    waitAcks();
  }, durationS * 1000);
}

// --- reports -----------------------------------------------------------------------------

function liveStats(final) {
  let joined = 0, missing = 0;
  for (const f of fans) {
    if (f.state === "joined") joined += 1;
    if (final && f.base !== null) missing += Math.max(0, (final[f.rooms[0]] || f.base) - f.base - f.received);
  }
  return { ev: "stats", fans: fans.length, joined, missing, reconnects: counts.reconnects,
           failed_handshakes: counts.failed_handshakes, frames: counts.frames,
           latency_samples: counts.latency_samples, closes: counts.closes };
}

function report(final) {
  let expected = 0, received = 0, dup = 0, ooo = 0, lost = 0, joined = 0, never = 0;
  for (const f of fans) {
    if (f.state === "joined") joined += 1;
    if (f.base === null) { never += 1; continue; }
    const fin = final[f.rooms[0]] || f.base;
    const exp = Math.max(0, fin - f.base);
    let uniq = 0;
    const upto = Math.min(exp, f.seen.length - 1);
    for (let r = 1; r <= upto; r++) uniq += f.seen[r];
    expected += exp;
    received += f.received;
    lost += exp - uniq;
    dup += f.dup;
    ooo += f.ooo;
  }
  const sparse = [];
  for (let i = 0; i < BUCKETS; i++) if (hist[i]) sparse.push([i, hist[i]]);
  emit({ ev: "report", fans: fans.length, joined, never_joined: never, expected, received,
         lost, duplicated: dup, out_of_order: ooo, bucket_ms: BUCKET_MS, hist: sparse,
         ...counts, publishers: pubs.length });
}

// --- control -----------------------------------------------------------------------------

function init(c) {
  cfg = Object.assign({
    concurrency: 200, connect_rate: 0, reconnect: false, reconnect_jitter_ms: 1000,
    max_tries: 3, text_bytes: 64, ack_wait_ms: 15000, local_addresses: ["127.0.0.1"],
  }, c);
  cfg.wire = cfg.proto === "sio" ? sioWire : fandomWire;
  for (const [token, room] of cfg.fans) fans.push(newConn(token, [room], false));
  cfg.publishers.forEach((p, i) => {
    const conn = newConn(p.token, p.rooms, true);
    conn.ratePerS = p.rate;
    pubs.push(makePublisher(conn, i));
  });
  cfg.fans = null; // tokens are not needed twice
  emit({ ev: "ready", fans: fans.length, publishers: pubs.length });
}

function connectAll() {
  const all = [...pubs.map((p) => p.conn), ...fans];
  const t0 = now();
  let pending = all.length;
  settledCb = () => {
    pending -= 1;
    if (pending === 0) {
      settledCb = null;
      const ok = all.filter((c) => c.settledOk).length;
      emit({ ev: "connected", ok, failed: all.length - ok, t0, t1: now(),
             failed_handshakes: counts.failed_handshakes });
    }
  };
  tokensAt = t0;
  for (const c of all) queue.push(c);
  pump();
  if (all.length === 0) emit({ ev: "connected", ok: 0, failed: 0, t0, t1: now(), failed_handshakes: 0 });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const c = JSON.parse(line);
  if (c.cmd === "init") init(c);
  else if (c.cmd === "connect") connectAll();
  else if (c.cmd === "publish") publish(c.duration_s);
  else if (c.cmd === "stats") emit(liveStats(c.final));
  else if (c.cmd === "report") report(c.final || {});
  else if (c.cmd === "exit") {
    for (const f of [...fans, ...pubs.map((p) => p.conn)]) { f.closing = true; if (f.ws) f.ws.terminate(); }
    setTimeout(() => process.exit(0), 50);
  }
});
rl.on("close", () => process.exit(0));
