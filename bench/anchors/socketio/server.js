// Socket.IO 4.8 chat server: the anchor bench/chat_fanout.py measures fandom against.
//
// Same workload semantics as fandom's protocol (docs/protocol.md), done the way a
// Socket.IO user would write it: a fan connects with an HS256 token (same secret and
// claims), emits "join" with a room name and gets an ack; a publisher emits "send"
// {room, id, text} and gets an ack with the message's offset; the server broadcasts
// {"room", "messages": [{offset, id, user, text, ts}]} to the room as event
// "messages". Offsets are per-room counters in memory, so the load generator checks
// loss, duplicates and order exactly as it does for fandom.
//
// Websocket transport only, no per-message compression. What this anchor does NOT do
// that fandom does: no Redis (no persistence, history, recovery or cross-process
// fan-out), no dedup of retried sends, no rate limiting, no batching. It is the
// lightest honest Socket.IO chat server; fandom carries strictly more work per send.
//
// Usage: node server.js PORT SECRET   (prints "listening PORT" when ready)

"use strict";

const crypto = require("crypto");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 0);
const secret = process.argv[3] || process.env.FANDOM_JWT_SECRET || "";

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

// HS256 verification with the same claims fandom checks (sub, exp). Returns the user
// or null; the cost per handshake is comparable to pyjwt's on the fandom side.
function verify(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const mac = crypto.createHmac("sha256", secret).update(parts[0] + "." + parts[1]).digest();
  const sig = Buffer.from(parts[2], "base64url");
  if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac)) return null;
  try {
    const header = b64urlJson(parts[0]);
    const claims = b64urlJson(parts[1]);
    if (header.alg !== "HS256" || typeof claims.sub !== "string") return null;
    if (typeof claims.exp !== "number" || claims.exp * 1000 <= Date.now()) return null;
    return claims.sub;
  } catch (e) {
    return null;
  }
}

const io = new Server(port, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: 8192,
});

const seq = new Map(); // room -> last offset

io.use((socket, next) => {
  const user = verify(socket.handshake.query.token || (socket.handshake.auth || {}).token);
  if (!user) return next(new Error("unauthorized"));
  socket.data.user = user;
  next();
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    if (typeof room !== "string" || typeof ack !== "function") return;
    socket.join(room);
    ack({ room, offset: seq.get(room) || 0 });
  });
  socket.on("send", (msg, ack) => {
    if (!msg || typeof msg.room !== "string" || typeof msg.text !== "string" ||
        typeof ack !== "function") return;
    if (!socket.rooms.has(msg.room)) return ack({ error: "not_joined" });
    const offset = (seq.get(msg.room) || 0) + 1;
    seq.set(msg.room, offset);
    const m = { offset, id: msg.id, user: socket.data.user, text: msg.text, ts: Date.now() };
    io.to(msg.room).emit("messages", { room: msg.room, messages: [m] });
    ack({ room: msg.room, id: msg.id, offset });
  });
});

// The constructor may already have bound the port by the time we get here.
const announce = () => process.stdout.write(`listening ${io.httpServer.address().port}\n`);
if (io.httpServer.listening) announce(); else io.httpServer.once("listening", announce);
process.on("SIGTERM", () => process.exit(0));
