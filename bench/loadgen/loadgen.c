/* One load-generator worker for bench/chat_fanout.py: many fans and some publishers
 * over real WebSockets, speaking fandom's protocol or Socket.IO's (engine.io v4), so
 * both servers face an identical client.
 *
 * Why C and not the Node `ws` client it replaces (docs/benchmarks.md, "Choosing the
 * generator"): the generator shares the machine's two cores with the server it
 * measures. At 10,000 fans x 20 msg/s the Node workers needed ~1.06 cores to receive
 * 200,000 frames/s, leaving the server less than one: both systems queued, and the
 * latency measured was the generator's. One epoll loop per process, frames parsed in
 * place, no allocation per frame.
 *
 * Usage: loadgen CONFIG   (CONFIG written by bench/loadgen.py; one setting per line)
 * Control: text commands on stdin, one JSON event per line on stdout.
 *   connect                 -> {"ev":"connected",...}  once every fan settled
 *   publish D               -> {"ev":"published",...}  after D s + ack wait
 *   stats [ROOM=N ...]      -> {"ev":"stats",...}      live counters
 *   report [ROOM=N ...]     -> {"ev":"report",...}     per-fan accounting
 *   exit
 *
 * Per fan: every message offset is checked against a bitmap relative to the offset the
 * fan joined at, so lost (expected - unique received), duplicated (an offset seen
 * twice) and out-of-order (a new offset below the highest seen) are exact. Latency =
 * receive time - the publish time the publisher wrote into the text (same machine,
 * same clock). Recovered messages (replayed after a reconnect, at or below the rejoin
 * cursor) count as received but not as latency samples.
 *
 * Shortcuts a load generator may take, none of which changes the server's work: the
 * Sec-WebSocket-Key is constant and the Accept header is not verified; client frames
 * are masked with a zero key (the server still unmasks every byte).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_MS 0.1
#define BUCKETS 600001 /* 0.1 ms resolution up to 60 s; the exact max is kept apart */
#define MAX_ADDRS 16
#define MAX_KEYS 64

enum { PROTO_FANDOM, PROTO_SIO };
enum { ST_IDLE, ST_CONNECTING, ST_UPGRADING, ST_OPEN, ST_JOINED, ST_CLOSED };

typedef struct Pub Pub;

typedef struct Conn {
    int fd, state, is_pub;
    char *token;
    int nrooms, *rooms;
    Pub *pub;
    int idx; /* position in conns[] (timers and the connect queue hold indices) */
    int tries, joined_rooms, ever_joined, settled, settled_ok, inflight, closing;
    /* fan accounting (fans have one room) */
    int has_base;
    long base, last, replay_upto, received, dup, ooo;
    char epoch[40];
    int has_epoch;
    uint8_t *seen;
    long seen_len;
    /* buffers */
    char *rbuf; long rlen, rcap;
    char *wbuf; long wlen, wcap;
    char *frag; long fraglen, fragcap; int fragop;
    /* socket.io acks: id -> 'j' (join) or 's' (send) */
    char *acks; long nacks, ackcap;
} Conn;

struct Pub {
    Conn *conn;
    int index;
    double rate, start, phase_ms; /* first message due phase_ms after publishing starts */
    long seq, sent, acked, resent, pending, low; /* low: no unacked seq below it */
    double *stamp;   /* per seq */
    int *room;       /* per seq, room index */
    uint8_t *state;  /* per seq: 0 none, 1 pending, 2 acked */
    long cap;
    long *max_offset; /* per room index */
    int room_cursor;
    /* retries after a rate-limit error: (seq, due) */
    long *retry_seq; double *retry_at; long nretry, retrycap;
};

typedef struct { double at; int conn; int kind; } Timer;
enum { T_OPEN, T_ENQUEUE };

/* --- config ------------------------------------------------------------------------ */
static int proto = PROTO_FANDOM, worker = 0, reconnect_on = 0, max_tries = 3, concurrency = 200;
static double reconnect_jitter_ms = 1000, connect_rate = 0, ack_wait_ms = 15000;
static int text_bytes = 64, port_lo = 0, port_hi = 0, poll_us = 1000;
static char host[64] = "127.0.0.1", path_prefix[512] = "/ws?token=";
static int port = 0;
static struct in_addr addrs[MAX_ADDRS];
static int naddrs = 0;
static char **room_names; static int nroom_names = 0, room_cap = 0;

static Conn **conns; static int nconns = 0, conn_cap = 0; /* publishers first, then fans */
static int nfans = 0;
static Pub **pubs; static int npubs = 0, pub_cap = 0;

/* --- counters ------------------------------------------------------------------------ */
static uint32_t *hist;
static double latency_max = 0;
static long latency_samples = 0, failed_handshakes = 0, reconnects = 0, stale = 0, recovered = 0,
            frames = 0, presence_frames = 0, ports_skipped = 0;
static long closes[5000];
typedef struct { char key[32]; long n; } Count;
static Count errors[MAX_KEYS]; static int nerrors = 0;

static int ep;
static int *port_cursor;
static int addr_index = 0;
static int *queue_; static long qhead = 0, qtail = 0, qcap = 0;
static int inflight = 0;
static double tokens_ = 0, tokens_at = 0;
static int connecting_all = 0; static long pending_settle = 0; static double t_connect0 = 0;
static Timer *timers; static long ntimers = 0, timer_cap = 0;
static int publishing = 0; static double publish_end = 0, ack_deadline = 0; static int waiting_acks = 0;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q && n) { fprintf(stderr, "out of memory\n"); exit(3); }
    return q;
}

#define GROW(ptr, cap, need) do {                                  \
        if ((need) > (cap)) {                                      \
            long _c = (cap) ? (cap) : 16;                          \
            while (_c < (need)) _c *= 2;                           \
            (ptr) = xrealloc((ptr), _c * sizeof(*(ptr)));          \
            (cap) = _c;                                            \
        }                                                          \
    } while (0)

static void bump_error(const char *key) {
    for (int i = 0; i < nerrors; i++) if (!strcmp(errors[i].key, key)) { errors[i].n++; return; }
    if (nerrors < MAX_KEYS) { snprintf(errors[nerrors].key, sizeof errors[0].key, "%s", key); errors[nerrors++].n = 1; }
}

static void bump_close(int code) { closes[code >= 0 && code < 5000 ? code : 0]++; }

/* --- output ----------------------------------------------------------------------------- */
static char *out; static size_t outlen, outcap;
static void outf(const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(out + outlen, outcap - outlen, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < outcap - outlen) { outlen += n; return; }
        outcap = outcap ? outcap * 2 : 1 << 16;
        out = xrealloc(out, outcap);
    }
}
static void out_begin(void) { outlen = 0; if (!out) { outcap = 1 << 16; out = xrealloc(NULL, outcap); } }
static void out_end(void) { outf("}\n"); fwrite(out, 1, outlen, stdout); fflush(stdout); }

static void out_maps(void) {
    outf(",\"closes\":{");
    int first = 1;
    for (int i = 0; i < 5000; i++) if (closes[i]) { outf("%s\"%d\":%ld", first ? "" : ",", i, closes[i]); first = 0; }
    outf("},\"errors\":{");
    for (int i = 0; i < nerrors; i++) outf("%s\"%s\":%ld", i ? "," : "", errors[i].key, errors[i].n);
    outf("}");
}

/* --- timers (binary min-heap) ---------------------------------------------------------- */
static void timer_add(double at, int conn, int kind) {
    GROW(timers, timer_cap, ntimers + 1);
    long i = ntimers++;
    while (i > 0) {
        long p = (i - 1) / 2;
        if (timers[p].at <= at) break;
        timers[i] = timers[p];
        i = p;
    }
    timers[i] = (Timer){at, conn, kind};
}

static Timer timer_pop(void) {
    Timer top = timers[0], last = timers[--ntimers];
    long i = 0;
    for (;;) {
        long c = 2 * i + 1;
        if (c >= ntimers) break;
        if (c + 1 < ntimers && timers[c + 1].at < timers[c].at) c++;
        if (timers[c].at >= last.at) break;
        timers[i] = timers[c];
        i = c;
    }
    if (ntimers) timers[i] = last;
    return top;
}

static double rnd(void) { return rand() / (RAND_MAX + 1.0); }

/* --- sending ------------------------------------------------------------------------------ */
static void want_write(Conn *c, int on) {
    struct epoll_event e = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = 0};
    e.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void flush_conn(Conn *c) {
    if (c->fd < 0 || !c->wlen) return;
    ssize_t n = send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) { want_write(c, 1); return; }
        c->wlen = 0; /* the read side sees the reset and closes */
        return;
    }
    if (n < c->wlen) { memmove(c->wbuf, c->wbuf + n, c->wlen - n); c->wlen -= n; want_write(c, 1); }
    else c->wlen = 0;
}

static void queue_bytes(Conn *c, const char *p, long n) {
    GROW(c->wbuf, c->wcap, c->wlen + n);
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
}

static void send_frame(Conn *c, int opcode, const char *payload, long n) {
    if (c->fd < 0) return;
    char head[14];
    int h = 0;
    int was_empty = c->wlen == 0;
    head[h++] = (char)(0x80 | opcode);
    if (n < 126) head[h++] = (char)(0x80 | n);
    else if (n < 65536) { head[h++] = (char)(0x80 | 126); head[h++] = n >> 8; head[h++] = n & 255; }
    else { head[h++] = (char)(0x80 | 127); for (int i = 7; i >= 0; i--) head[h++] = (n >> (8 * i)) & 255; }
    memset(head + h, 0, 4); /* zero masking key: the payload goes as is */
    h += 4;
    queue_bytes(c, head, h);
    queue_bytes(c, payload, n);
    if (was_empty) flush_conn(c);
}

static void send_text(Conn *c, const char *s, long n) { send_frame(c, 1, s, n); }

/* --- wire: joins and sends --------------------------------------------------------------- */
static void sio_ack_kind(Conn *c, long id, char kind) {
    GROW(c->acks, c->ackcap, id + 1);
    c->acks[id] = kind;
    if (id + 1 > c->nacks) c->nacks = id + 1;
}

static void wire_join(Conn *c, int room) {
    char buf[256];
    int n;
    if (proto == PROTO_FANDOM) {
        if (c->has_epoch && c->has_base)
            n = snprintf(buf, sizeof buf, "{\"op\":\"join\",\"room\":\"%s\",\"since\":%ld,\"epoch\":\"%s\"}",
                         room_names[room], c->last, c->epoch);
        else n = snprintf(buf, sizeof buf, "{\"op\":\"join\",\"room\":\"%s\"}", room_names[room]);
    } else {
        long id = c->nacks;
        sio_ack_kind(c, id, 'j');
        n = snprintf(buf, sizeof buf, "42%ld[\"join\",\"%s\"]", id, room_names[room]);
    }
    send_text(c, buf, n);
}

static int pub_text(Pub *p, long seq, char *buf, int cap) {
    int n = snprintf(buf, cap, "w%dp%d:%ld:%.3f|", worker, p->index, seq, p->stamp[seq]);
    while (n < text_bytes && n < cap - 1) buf[n++] = 'x';
    buf[n] = 0;
    return n;
}

static void wire_send(Pub *p, long seq) {
    Conn *c = p->conn;
    char text[1100], buf[1400];
    pub_text(p, seq, text, sizeof text);
    const char *room = room_names[p->room[seq]];
    int n;
    if (proto == PROTO_FANDOM)
        n = snprintf(buf, sizeof buf, "{\"op\":\"send\",\"room\":\"%s\",\"id\":\"w%dp%ds%ld\",\"text\":\"%s\"}",
                     room, worker, p->index, seq, text);
    else {
        long id = c->nacks;
        sio_ack_kind(c, id, 's');
        n = snprintf(buf, sizeof buf, "42%ld[\"send\",{\"room\":\"%s\",\"id\":\"w%dp%ds%ld\",\"text\":\"%s\"}]",
                     id, room, worker, p->index, seq, text);
    }
    send_text(c, buf, n);
}

/* --- connections ----------------------------------------------------------------------- */
static void settle(Conn *c, int ok);
static void pump(void);
static void on_close(Conn *c, int code);

static void inflight_done(Conn *c) {
    if (c->inflight) { c->inflight = 0; inflight--; pump(); }
}

static int next_port(int a) {
    int p = port_cursor[a];
    port_cursor[a] = p + 1 >= port_hi ? port_lo : p + 1;
    return p;
}


static void open_conn(Conn *c) {
    c->state = ST_CONNECTING;
    c->tries++;
    c->joined_rooms = 0;
    c->rlen = c->wlen = c->fraglen = 0;
    c->nacks = 0;
    int a = addr_index++ % naddrs;
    for (int attempt = 0; attempt < 1000; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) { bump_error(errno == EMFILE ? "EMFILE" : "socket"); break; }
        struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr = addrs[a]};
        if (port_lo) local.sin_port = htons(next_port(a));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Without it the TIME_WAIT these sockets leave behind blocks any wildcard
           listen() on the same port number for a minute: the next run's Socket.IO
           anchor, given a free port that was one of our source ports, failed with
           EADDRINUSE. (Node's client set it implicitly: libuv does on every bind.) */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
            close(fd);
            /* Source ports are chosen here, not by the kernel: bind(addr, 0) searches
               the port space under a lock, which cost ~0.8 core at ~75k sockets
               (docs/benchmarks.md). A busy port (a TIME_WAIT left by an earlier run,
               another program's listener) is skipped. */
            if ((errno == EADDRINUSE || errno == EADDRNOTAVAIL) && port_lo) { ports_skipped++; continue; }
            bump_error("bind");
            break;
        }
        struct sockaddr_in remote = {.sin_family = AF_INET, .sin_port = htons(port)};
        inet_pton(AF_INET, host, &remote.sin_addr);
        if (connect(fd, (struct sockaddr *)&remote, sizeof remote) < 0 && errno != EINPROGRESS) {
            close(fd);
            if (errno == EADDRNOTAVAIL && port_lo) { ports_skipped++; continue; }
            bump_error("connect");
            break;
        }
        c->fd = fd;
        struct epoll_event e = {.events = EPOLLOUT | EPOLLIN};
        e.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        return;
    }
    c->fd = -1;
    on_close(c, 1006);
}

static void close_fd(Conn *c) {
    if (c->fd >= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); c->fd = -1; }
}

static void on_close(Conn *c, int code) {
    close_fd(c);
    bump_close(code);
    int was_joined = c->state == ST_JOINED;
    c->state = ST_CLOSED;
    if (c->closing) return;
    if (!c->ever_joined) {
        failed_handshakes++;
        inflight_done(c);
        if (c->tries < max_tries) timer_add(now_ms() + 200 + rnd() * 800, c->idx, T_ENQUEUE);
        else settle(c, 0);
        return;
    }
    if (!reconnect_on) return;
    if (was_joined) reconnects++;
    else failed_handshakes++;
    /* Real clients jitter their reconnects; a storm of same-instant reconnects is not
       the behaviour to benchmark. */
    timer_add(now_ms() + rnd() * reconnect_jitter_ms, c->idx, T_OPEN);
}

static void emit_connected(void) {
    long ok = 0;
    for (int i = 0; i < nconns; i++) ok += conns[i]->settled_ok;
    out_begin();
    outf("{\"ev\":\"connected\",\"ok\":%ld,\"failed\":%ld,\"t0\":%.3f,\"t1\":%.3f,\"failed_handshakes\":%ld",
         ok, nconns - ok, t_connect0, now_ms(), failed_handshakes);
    out_end();
}

static void settle(Conn *c, int ok) {
    if (c->settled) return;
    c->settled = 1;
    c->settled_ok = ok;
    inflight_done(c);
    if (connecting_all && --pending_settle == 0) { connecting_all = 0; emit_connected(); }
}

static void enqueue(Conn *c) {
    GROW(queue_, qcap, qtail + 1);
    queue_[qtail++] = c->idx;
    pump();
}

static double pacer_at = 0;
static void pump(void) {
    if (connect_rate > 0) {
        double t = now_ms(), cap = connect_rate / 20 > 1 ? connect_rate / 20 : 1;
        tokens_ += (t - tokens_at) * connect_rate / 1000;
        if (tokens_ > cap) tokens_ = cap;
        tokens_at = t;
    }
    while (qhead < qtail && inflight < concurrency && (connect_rate <= 0 || tokens_ >= 1)) {
        Conn *c = conns[queue_[qhead++]];
        c->inflight = 1;
        inflight++;
        tokens_ -= 1;
        open_conn(c);
    }
    if (qhead == qtail) qhead = qtail = 0;
    pacer_at = (qhead < qtail && connect_rate > 0) ? now_ms() + 5 : 0;
}

/* --- frames in ------------------------------------------------------------------------- */
static void on_joined(Conn *c, long offset, const char *epoch, int elen, int recovered) {
    if (!c->is_pub) {
        if (!c->has_base) {
            c->has_base = 1;
            c->base = c->last = offset;
            c->seen_len = 64;
            c->seen = calloc(c->seen_len, 1);
        }
        if (epoch && c->has_epoch && (elen != (int)strlen(c->epoch) || memcmp(epoch, c->epoch, elen)))
            bump_error("epoch_changed");
        if (recovered == 0 && c->ever_joined && proto == PROTO_FANDOM) bump_error("not_recovered");
        if (epoch && elen < (int)sizeof c->epoch) { memcpy(c->epoch, epoch, elen); c->epoch[elen] = 0; c->has_epoch = 1; }
        else c->has_epoch = 0;
        c->replay_upto = offset;
    }
    if (++c->joined_rooms == c->nrooms) {
        int first = !c->ever_joined;
        c->state = ST_JOINED;
        c->ever_joined = 1;
        if (c->is_pub) { /* after a (re)join: resend unacked with the same ids (dedup makes it safe) */
            Pub *p = c->pub;
            for (long s = p->low; s < p->seq; s++)
                if (p->state[s] == 1) { p->resent++; wire_send(p, s); }
        }
        if (first) settle(c, 1);
    }
}

static void on_ack(Conn *c, long seq, const char *room, int rlen, long offset) {
    Pub *p = c->pub;
    if (!p) return;
    if (seq >= 0 && seq < p->seq && p->state[seq] == 1) {
        p->state[seq] = 2; p->pending--; p->acked++;
        while (p->low < p->seq && p->state[p->low] == 2) p->low++;
    }
    if (room) for (int i = 0; i < c->nrooms; i++) {
        const char *name = room_names[c->rooms[i]];
        if ((int)strlen(name) == rlen && !memcmp(name, room, rlen)) {
            if (offset > p->max_offset[i]) p->max_offset[i] = offset;
            break;
        }
    }
}

static void record(Conn *c, long off, double stamp, double t) {
    long rel = off - c->base;
    if (rel <= 0) { stale++; return; }
    if (rel >= c->seen_len) {
        long n = c->seen_len;
        while (n <= rel) n *= 2;
        c->seen = xrealloc(c->seen, n);
        memset(c->seen + c->seen_len, 0, n - c->seen_len);
        c->seen_len = n;
    }
    if (c->seen[rel]) { c->dup++; return; }
    c->seen[rel] = 1;
    c->received++;
    if (off < c->last) c->ooo++; else c->last = off;
    if (off <= c->replay_upto) { recovered++; return; }
    double lat = t - stamp;
    if (lat > latency_max) latency_max = lat;
    latency_samples++;
    long b = (long)floor(lat / BUCKET_MS);
    hist[b < 0 ? 0 : b >= BUCKETS ? BUCKETS - 1 : b]++;
}

/* Message frames are the hot path (every delivery): rather than parse JSON, pull the
   k-th "offset" and the k-th "text" out by scanning, which does not depend on key
   order (the server's Lua cjson does not keep one). Safe because every id, user and
   text in the benchmark is ours and contains neither marker. */
static void scan_messages(Conn *c, const char *s, long n) {
    const char *end = s + n, *po = s, *pt = s;
    double t = now_ms();
    for (;;) {
        po = memmem(po, end - po, "\"offset\":", 9);
        if (!po) break;
        po += 9;
        long off = strtol(po, NULL, 10);
        pt = memmem(pt, end - pt, "\"text\":\"", 8);
        if (!pt) { bump_error("bad_messages_frame"); return; }
        pt += 8;
        const char *a = memchr(pt, ':', end - pt);
        const char *b = a ? memchr(a + 1, ':', end - a - 1) : NULL;
        if (!b) { bump_error("bad_messages_frame"); return; }
        double stamp = strtod(b + 1, NULL);
        pt = b;
        if (!c->is_pub) record(c, off, stamp, t);
    }
}

static long field_long(const char *s, long n, const char *key, long dflt) {
    size_t kl = strlen(key);
    const char *p = memmem(s, n, key, kl);
    return p ? strtol(p + kl, NULL, 10) : dflt;
}

/* "key":"value" -> pointer to value and its length, or NULL */
static const char *field_str(const char *s, long n, const char *key, int *len) {
    size_t kl = strlen(key);
    const char *p = memmem(s, n, key, kl);
    if (!p) return NULL;
    p += kl;
    const char *q = memchr(p, '"', s + n - p);
    if (!q) return NULL;
    *len = (int)(q - p);
    return p;
}

static long id_seq(const char *id, int len) { /* "w0p1s42" -> 42 */
    for (int i = len - 1; i >= 0; i--) if (id[i] == 's') return strtol(id + i + 1, NULL, 10);
    return -1;
}

static void pub_retry(Pub *p, long seq) {
    if (seq < 0 || seq >= p->seq || p->state[seq] != 1) return;
    p->resent++;
    GROW(p->retry_seq, p->retrycap, p->nretry + 1);
    p->retry_at = xrealloc(p->retry_at, p->retrycap * sizeof(double));
    p->retry_seq[p->nretry] = seq;
    p->retry_at[p->nretry++] = now_ms() + 100;
}

static void fandom_frame(Conn *c, const char *s, long n) {
    if (n > 16 && !memcmp(s, "{\"op\":\"messages\"", 16)) { scan_messages(c, s + 16, n - 16); return; }
    int oplen;
    const char *op = field_str(s, n, "\"op\":\"", &oplen);
    if (!op) { bump_error("bad_frame"); return; }
#define OP(name) (oplen == (int)sizeof(name) - 1 && !memcmp(op, name, oplen))
    if (OP("messages")) scan_messages(c, s, n);
    else if (OP("welcome")) { for (int i = 0; i < c->nrooms; i++) wire_join(c, c->rooms[i]); c->state = ST_OPEN; }
    else if (OP("joined")) {
        int elen = 0;
        const char *epoch = field_str(s, n, "\"epoch\":\"", &elen);
        int recovered = memmem(s, n, "\"recovered\":true", 16) ? 1 : memmem(s, n, "\"recovered\":false", 17) ? 0 : -1;
        on_joined(c, field_long(s, n, "\"offset\":", 0), epoch, elen, recovered);
    } else if (OP("ack")) {
        int idlen = 0, rlen = 0;
        const char *id = field_str(s, n, "\"id\":\"", &idlen);
        const char *room = field_str(s, n, "\"room\":\"", &rlen);
        on_ack(c, id ? id_seq(id, idlen) : -1, room, rlen, field_long(s, n, "\"offset\":", 0));
    } else if (OP("error")) {
        char key[24];
        long code = field_long(s, n, "\"code\":", 0);
        snprintf(key, sizeof key, "%ld", code);
        bump_error(key);
        int idlen = 0;
        const char *id = field_str(s, n, "\"id\":\"", &idlen);
        if (code == 106 && id && c->is_pub) pub_retry(c->pub, id_seq(id, idlen));
    } else if (OP("presence")) presence_frames++;
#undef OP
}

static void sio_frame(Conn *c, const char *s, long n) {
    if (n < 1) return;
    if (s[0] == '4' && n >= 2) {
        if (s[1] == '2') {
            if (n > 13 && !memcmp(s, "42[\"messages\"", 13)) scan_messages(c, s + 13, n - 13);
            return;
        }
        if (s[1] == '3') { /* ack: 43<id>[payload] */
            char *br;
            long id = strtol(s + 2, &br, 10);
            char kind = id >= 0 && id < c->nacks ? c->acks[id] : 0;
            int elen = 0;
            const char *err = field_str(s, n, "\"error\":\"", &elen);
            if (err) {
                char key[32];
                snprintf(key, sizeof key, "%.*s", elen < 31 ? elen : 31, err);
                bump_error(key);
                return;
            }
            if (kind == 'j') on_joined(c, field_long(s, n, "\"offset\":", 0), NULL, 0, -1);
            else {
                int idlen = 0, rlen = 0;
                const char *mid = field_str(s, n, "\"id\":\"", &idlen);
                const char *room = field_str(s, n, "\"room\":\"", &rlen);
                on_ack(c, mid ? id_seq(mid, idlen) : -1, room, rlen, field_long(s, n, "\"offset\":", 0));
            }
            return;
        }
        if (s[1] == '0') { for (int i = 0; i < c->nrooms; i++) wire_join(c, c->rooms[i]); c->state = ST_OPEN; return; }
        if (s[1] == '4') { bump_error("refused"); return; }
        return;
    }
    if (s[0] == '0') { send_text(c, "40", 2); return; }  /* engine.io open -> connect */
    if (s[0] == '2') { send_text(c, "3", 1); return; }   /* engine.io ping -> pong */
}

static void on_message(Conn *c, const char *s, long n) {
    frames++;
    if (proto == PROTO_FANDOM) fandom_frame(c, s, n);
    else sio_frame(c, s, n);
}

/* Parse every complete frame in rbuf; returns -1 once the connection is closed. */
static int parse_frames(Conn *c) {
    long i = 0;
    while (c->rlen - i >= 2) {
        const uint8_t *b = (const uint8_t *)c->rbuf + i;
        int fin = b[0] & 0x80, op = b[0] & 0x0f, masked = b[1] & 0x80;
        long len = b[1] & 0x7f, h = 2;
        if (len == 126) { if (c->rlen - i < 4) break; len = (b[2] << 8) | b[3]; h = 4; }
        else if (len == 127) {
            if (c->rlen - i < 10) break;
            len = 0;
            for (int k = 2; k < 10; k++) len = (len << 8) | b[k];
            h = 10;
        }
        if (masked) h += 4; /* servers never mask; tolerated */
        if (c->rlen - i < h + len) break;
        const char *p = c->rbuf + i + h;
        i += h + len;
        if (op == 8) { /* close: answer it and count the code */
            int code = len >= 2 ? ((uint8_t)p[0] << 8) | (uint8_t)p[1] : 1005;
            char reply[2] = {p[0], p[1]};
            send_frame(c, 8, reply, len >= 2 ? 2 : 0);
            on_close(c, code);
            return -1;
        }
        if (op == 9) { send_frame(c, 10, p, len); continue; }
        if (op == 10) continue;
        if (op == 0 || !fin) { /* fragmented message: collect until FIN */
            if (op) c->fragop = op;
            GROW(c->frag, c->fragcap, c->fraglen + len);
            memcpy(c->frag + c->fraglen, p, len);
            c->fraglen += len;
            if (fin) { on_message(c, c->frag, c->fraglen); c->fraglen = 0; }
        } else on_message(c, p, len);
        if (c->fd < 0) return -1;
    }
    if (i) { memmove(c->rbuf, c->rbuf + i, c->rlen - i); c->rlen -= i; }
    return 0;
}

static void send_upgrade(Conn *c) {
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     path_prefix, c->token, host, port);
    c->state = ST_UPGRADING;
    queue_bytes(c, req, n);
    flush_conn(c);
}

static void on_readable(Conn *c) {
    for (;;) {
        if (c->rcap - c->rlen < 4096) { GROW(c->rbuf, c->rcap, c->rlen + 8192); }
        long room = c->rcap - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, room, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            on_close(c, 1006);
            return;
        }
        if (n < 0) return;
        c->rlen += n;
        if (c->state == ST_UPGRADING) {
            char *e = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
            if (!e) continue;
            if (c->rlen < 12 || memcmp(c->rbuf + 9, "101", 3)) { /* refused upgrade */
                char key[32];
                snprintf(key, sizeof key, "http_%.3s", c->rlen >= 12 ? c->rbuf + 9 : "???");
                bump_error(key);
                on_close(c, 1006);
                return;
            }
            long hl = e + 4 - c->rbuf;
            memmove(c->rbuf, c->rbuf + hl, c->rlen - hl);
            c->rlen -= hl;
            c->state = ST_OPEN;
        }
        if (parse_frames(c) < 0) return;
        if (n < room) return; /* drained (level-triggered: more wakes us again) */
    }
}

static void on_event(Conn *c, uint32_t ev) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) { on_close(c, 1006); return; }
        want_write(c, 0);
        send_upgrade(c);
        return;
    }
    if (ev & EPOLLOUT) { flush_conn(c); if (!c->wlen && c->fd >= 0) want_write(c, 0); }
    if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c);
}


/* --- publishers ------------------------------------------------------------------------- */
static void pub_send_new(Pub *p) {
    Conn *c = p->conn;
    long s = p->seq;
    if (s + 1 > p->cap) {
        long n = p->cap ? p->cap * 2 : 1024;
        p->stamp = xrealloc(p->stamp, n * sizeof(double));
        p->room = xrealloc(p->room, n * sizeof(int));
        p->state = xrealloc(p->state, n);
        p->cap = n;
    }
    p->stamp[s] = now_ms();
    p->room[s] = c->rooms[p->room_cursor++ % c->nrooms];
    p->state[s] = 1;
    p->seq++;
    p->sent++;
    p->pending++;
    if (c->state == ST_JOINED) wire_send(p, s);
}

static void pubs_tick(double t) {
    for (int i = 0; i < npubs; i++) {
        Pub *p = pubs[i];
        if (publishing && t < publish_end) {
            /* message k is due at start + phase + k / rate */
            long due = t < p->start + p->phase_ms ? 0
                     : (long)floor((t - p->start - p->phase_ms) * p->rate / 1000) + 1 - p->seq;
            for (long k = 0; k < due; k++) pub_send_new(p);
        }
        long keep = 0;
        for (long k = 0; k < p->nretry; k++) {
            if (p->retry_at[k] <= t) {
                long s = p->retry_seq[k];
                if (p->conn->state == ST_JOINED && p->state[s] == 1) wire_send(p, s);
            } else { p->retry_seq[keep] = p->retry_seq[k]; p->retry_at[keep++] = p->retry_at[k]; }
        }
        p->nretry = keep;
    }
}

static void emit_published(void) {
    long sent = 0, acked = 0, resent = 0, unacked = 0;
    for (int i = 0; i < npubs; i++) { sent += pubs[i]->sent; acked += pubs[i]->acked; resent += pubs[i]->resent; unacked += pubs[i]->pending; }
    out_begin();
    outf("{\"ev\":\"published\",\"sent\":%ld,\"acked\":%ld,\"resent\":%ld,\"unacked\":%ld,\"rooms\":{", sent, acked, resent, unacked);
    long *best = calloc(nroom_names ? nroom_names : 1, sizeof(long));
    for (int i = 0; i < npubs; i++)
        for (int r = 0; r < pubs[i]->conn->nrooms; r++) {
            int room = pubs[i]->conn->rooms[r];
            if (pubs[i]->max_offset[r] > best[room]) best[room] = pubs[i]->max_offset[r];
        }
    int first = 1;
    for (int r = 0; r < nroom_names; r++)
        if (best[r]) { outf("%s\"%s\":%ld", first ? "" : ",", room_names[r], best[r]); first = 0; }
    free(best);
    outf("}");
    out_end();
}

/* --- reports ---------------------------------------------------------------------------- */
static long *final_; /* per room index; 0 = not given */

static void parse_final(char *args) {
    memset(final_, 0, sizeof(long) * (nroom_names ? nroom_names : 1));
    for (char *tok = strtok(args, " \t\n"); tok; tok = strtok(NULL, " \t\n")) {
        char *eq = strrchr(tok, '=');
        if (!eq) continue;
        *eq = 0;
        for (int r = 0; r < nroom_names; r++) if (!strcmp(room_names[r], tok)) { final_[r] = atol(eq + 1); break; }
    }
}

static void emit_stats(void) {
    long joined = 0, missing = 0;
    for (int i = 0; i < nconns; i++) {
        Conn *f = conns[i];
        if (f->is_pub) continue;
        if (f->state == ST_JOINED) joined++;
        if (f->has_base) {
            long fin = final_[f->rooms[0]] ? final_[f->rooms[0]] : f->base;
            long m = fin - f->base - f->received;
            if (m > 0) missing += m;
        }
    }
    out_begin();
    outf("{\"ev\":\"stats\",\"fans\":%d,\"joined\":%ld,\"missing\":%ld,\"reconnects\":%ld,\"failed_handshakes\":%ld,"
         "\"frames\":%ld,\"latency_samples\":%ld", nfans, joined, missing, reconnects, failed_handshakes, frames, latency_samples);
    out_maps();
    out_end();
}

static void emit_report(void) {
    long expected = 0, received = 0, dup = 0, ooo = 0, lost = 0, joined = 0, never = 0;
    for (int i = 0; i < nconns; i++) {
        Conn *f = conns[i];
        if (f->is_pub) continue;
        if (f->state == ST_JOINED) joined++;
        if (!f->has_base) { never++; continue; }
        long fin = final_[f->rooms[0]] ? final_[f->rooms[0]] : f->base;
        long exp = fin - f->base > 0 ? fin - f->base : 0, uniq = 0;
        long upto = exp < f->seen_len - 1 ? exp : f->seen_len - 1;
        for (long r = 1; r <= upto; r++) uniq += f->seen[r];
        expected += exp; received += f->received; lost += exp - uniq; dup += f->dup; ooo += f->ooo;
    }
    out_begin();
    outf("{\"ev\":\"report\",\"fans\":%d,\"joined\":%ld,\"never_joined\":%ld,\"expected\":%ld,\"received\":%ld,"
         "\"lost\":%ld,\"duplicated\":%ld,\"out_of_order\":%ld,\"bucket_ms\":%g,\"hist\":[",
         nfans, joined, never, expected, received, lost, dup, ooo, BUCKET_MS);
    int first = 1;
    for (long i = 0; i < BUCKETS; i++) if (hist[i]) { outf("%s[%ld,%u]", first ? "" : ",", i, hist[i]); first = 0; }
    outf("],\"latency_max_ms\":%.3f,\"latency_samples\":%ld,\"failed_handshakes\":%ld,\"reconnects\":%ld,"
         "\"stale\":%ld,\"recovered\":%ld,\"frames\":%ld,\"presence_frames\":%ld,\"ports_skipped\":%ld,\"publishers\":%d",
         latency_max, latency_samples, failed_handshakes, reconnects, stale, recovered, frames, presence_frames,
         ports_skipped, npubs);
    out_maps();
    out_end();
}

/* --- config and control ----------------------------------------------------------------- */
static int room_index(const char *name) {
    for (int r = 0; r < nroom_names; r++) if (!strcmp(room_names[r], name)) return r;
    GROW(room_names, room_cap, nroom_names + 1);
    room_names[nroom_names] = strdup(name);
    return nroom_names++;
}

static Conn *new_conn(const char *token, int is_pub) {
    Conn *c = calloc(1, sizeof(Conn));
    c->fd = -1;
    c->token = strdup(token);
    c->is_pub = is_pub;
    GROW(conns, conn_cap, nconns + 1);
    c->idx = nconns;
    conns[nconns++] = c;
    return c;
}

static void load_config(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(2); }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *key = strtok(line, " "), *v = strtok(NULL, " ");
        if (!key || !v) continue;
        if (!strcmp(key, "proto")) proto = !strcmp(v, "sio") ? PROTO_SIO : PROTO_FANDOM;
        else if (!strcmp(key, "host")) snprintf(host, sizeof host, "%s", v);
        else if (!strcmp(key, "port")) port = atoi(v);
        else if (!strcmp(key, "path")) snprintf(path_prefix, sizeof path_prefix, "%s", v);
        else if (!strcmp(key, "worker")) worker = atoi(v);
        else if (!strcmp(key, "reconnect")) reconnect_on = atoi(v);
        else if (!strcmp(key, "reconnect_jitter_ms")) reconnect_jitter_ms = atof(v);
        else if (!strcmp(key, "max_tries")) max_tries = atoi(v);
        else if (!strcmp(key, "concurrency")) concurrency = atoi(v);
        else if (!strcmp(key, "connect_rate")) connect_rate = atof(v);
        else if (!strcmp(key, "text_bytes")) text_bytes = atoi(v);
        else if (!strcmp(key, "ack_wait_ms")) ack_wait_ms = atof(v);
        else if (!strcmp(key, "port_lo")) port_lo = atoi(v);
        else if (!strcmp(key, "poll_us")) poll_us = atoi(v);
        else if (!strcmp(key, "port_hi")) port_hi = atoi(v);
        else if (!strcmp(key, "addr") && naddrs < MAX_ADDRS) inet_pton(AF_INET, v, &addrs[naddrs++]);
        else if (!strcmp(key, "fan")) {
            char *room = strtok(NULL, " ");
            Conn *c = new_conn(v, 0);
            c->nrooms = 1;
            c->rooms = malloc(sizeof(int));
            c->rooms[0] = room_index(room);
            nfans++;
        } else if (!strcmp(key, "pub")) { /* pub RATE PHASE_S TOKEN ROOM... */
            char *phase = strtok(NULL, " "), *token = strtok(NULL, " ");
            Conn *c = new_conn(token, 1);
            Pub *p = calloc(1, sizeof(Pub));
            p->conn = c;
            p->index = npubs;
            p->rate = atof(v);
            p->phase_ms = atof(phase) * 1000;
            for (char *r = strtok(NULL, " "); r; r = strtok(NULL, " ")) {
                c->rooms = xrealloc(c->rooms, (c->nrooms + 1) * sizeof(int));
                c->rooms[c->nrooms++] = room_index(r);
            }
            p->max_offset = calloc(c->nrooms, sizeof(long));
            c->pub = p;
            GROW(pubs, pub_cap, npubs + 1);
            pubs[npubs++] = p;
        }
    }
    free(line);
    fclose(f);
    if (!naddrs) { inet_pton(AF_INET, "127.0.0.1", &addrs[0]); naddrs = 1; }
    port_cursor = malloc(sizeof(int) * naddrs);
    for (int a = 0; a < naddrs; a++) port_cursor[a] = port_lo;
    final_ = calloc(nroom_names ? nroom_names : 1, sizeof(long));
}

static void connect_all(void) {
    t_connect0 = now_ms();
    tokens_at = t_connect0;
    pending_settle = nconns;
    connecting_all = nconns > 0;
    /* publishers first: they were created first */
    for (int i = 0; i < nconns; i++) { GROW(queue_, qcap, qtail + 1); queue_[qtail++] = i; }
    if (!nconns) emit_connected();
    else pump();
}

static void start_publish(double duration_s) {
    double t = now_ms();
    for (int i = 0; i < npubs; i++) pubs[i]->start = t;
    publishing = 1;
    publish_end = t + duration_s * 1000;
}

static void quit(void) {
    for (int i = 0; i < nconns; i++) { conns[i]->closing = 1; close_fd(conns[i]); }
    exit(0);
}

static char cmdbuf[1 << 20];
static long cmdlen = 0;

static void on_stdin(void) {
    ssize_t n = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
    if (n <= 0) quit();
    cmdlen += n;
    char *nl;
    while ((nl = memchr(cmdbuf, '\n', cmdlen))) {
        *nl = 0;
        char *line = cmdbuf, *args = strchr(line, ' ');
        if (args) *args++ = 0; else args = "";
        if (!strcmp(line, "connect")) connect_all();
        else if (!strcmp(line, "publish")) start_publish(atof(args));
        else if (!strcmp(line, "stats")) { parse_final(args); emit_stats(); }
        else if (!strcmp(line, "report")) { parse_final(args); emit_report(); }
        else if (!strcmp(line, "exit")) quit();
        long used = nl + 1 - cmdbuf;
        memmove(cmdbuf, nl + 1, cmdlen - used);
        cmdlen -= used;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: loadgen CONFIG\n"); return 2; }
    srand((unsigned)getpid());
    hist = calloc(BUCKETS, sizeof(uint32_t));
    load_config(argv[1]);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e);
    out_begin();
    outf("{\"ev\":\"ready\",\"fans\":%d,\"publishers\":%d", nfans, npubs);
    out_end();
    struct epoll_event evs[512];
    int last_n = 0;
    for (;;) {
        double t = now_ms(), wake = t + 1000;
        if (ntimers && timers[0].at < wake) wake = timers[0].at;
        if (pacer_at && pacer_at < wake) wake = pacer_at;
        if (publishing || waiting_acks) { if (t + 10 < wake) wake = t + 10; }
        for (int i = 0; i < npubs; i++) if (pubs[i]->nretry && t + 10 < wake) wake = t + 10;
        int timeout = wake <= t ? 0 : (int)ceil(wake - t);
        /* Poll at most every POLL_US: a receiver blocked in epoll_wait is woken once per
           frame the server writes, and on loopback the server's send() pays for that
           wake-up (try_to_wake_up, an IPI): a cost a server with remote clients never
           has. Waking at most every POLL_US lets frames pile up and be read in batches.
           The receive time is taken when a frame is read, so this can only add to the
           latency measured, by at most POLL_US. */
        if (poll_us && last_n > 0) {
            struct timespec ts = {0, poll_us * 1000L};
            nanosleep(&ts, NULL);
        }
        int n = epoll_wait(ep, evs, 512, timeout);
        last_n = n;
        for (int i = 0; i < n; i++) {
            Conn *c = evs[i].data.ptr;
            if (!c) on_stdin();
            else if (c->fd >= 0) on_event(c, evs[i].events);
        }
        t = now_ms();
        while (ntimers && timers[0].at <= t) {
            Timer tm = timer_pop();
            Conn *c = conns[tm.conn];
            if (c->closing) continue;
            if (tm.kind == T_OPEN) open_conn(c);
            else enqueue(c);
        }
        if (pacer_at && pacer_at <= t) pump();
        pubs_tick(t);
        if (publishing && t >= publish_end) {
            publishing = 0;
            waiting_acks = 1;
            ack_deadline = t + ack_wait_ms;
        }
        if (waiting_acks) {
            long unacked = 0;
            for (int i = 0; i < npubs; i++) unacked += pubs[i]->pending;
            if (!unacked || t >= ack_deadline) { waiting_acks = 0; emit_published(); }
        }
    }
}
