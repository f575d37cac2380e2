#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cidr.h"
#include "bufpool.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pkcs11.h"
#include "proxyproto.h"
#include "tls_compat.h"

/* One write request owns the bytes it writes until its callback.  The
 * block comes from bufpool.c and goes back there (cap is its size). */
typedef struct {
  uv_write_t req;
  tg_conn_t *conn;
  tg_side_t *side;
  size_t len;
  size_t cap;
  char data[];
} wreq_t;

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void pump_tls(tg_conn_t *c, tg_side_t *s);
static void proxy_header_input(tg_conn_t *c, const uint8_t *data, size_t len);

static const char *const state_names[] = {"proxy-header", "handshake", "connecting",
                                          "proxying", "draining", "closing",
                                          "request"};

const char *tg_conn_state_name(tg_conn_state_t s) { return state_names[s]; }

static tg_side_t *other(tg_conn_t *c, tg_side_t *s) {
  return s == &c->client ? &c->backend : &c->client;
}

static const char *side_name(tg_conn_t *c, tg_side_t *s) {
  return s == &c->client ? "client" : "backend";
}

/* ---- lifetime ----------------------------------------------------------- */

/* The last reference is gone (session.h). */
static void conn_destroy(tg_session_t *sess) {
  tg_conn_t *c = (tg_conn_t *)sess;
  assert(c->magic == TG_CONN_MAGIC);
  SSL_free(c->client.ssl);
  SSL_free(c->backend.ssl);
  tg_tls_io_free(&c->client.io);
  tg_tls_io_free(&c->backend.io);
  free(c->client.stash);
  free(c->backend.stash);
  free(c->hdr);
  free(c->early);
  free(c->client.note);
  free(c->backend.note);
  tg_http_free(c->http);
  c->magic = 0;
  free(c);
}

static void close_side(tg_side_t *s, uv_close_cb cb) {
  if (!s->open) return;
  s->open = 0;
  s->reading = 0;
  uv_close((uv_handle_t *)&s->tcp, cb);
}

static void conn_close_level(tg_conn_t *c, tg_log_level_t level,
                             const char *reason) {
  if (c->s.state == TG_CONN_CLOSING) return;
  tg_session_closed(&c->s, level, reason);
  tg_worker_t *w = c->s.w;
  if (c->prev) c->prev->next = c->next;
  else w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  uv_close((uv_handle_t *)&c->timer, tg_session_on_closed);
  close_side(&c->client, tg_session_on_closed);
  close_side(&c->backend, tg_session_on_closed);
}

void tg_conn_close(tg_conn_t *c, const char *reason) {
  conn_close_level(c, TG_LOG_INFO, reason);
}

static void fail(tg_conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Closes on an error, logged at warn. */
static void fail(tg_conn_t *c, const char *fmt, ...) {
  char reason[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  conn_close_level(c, TG_LOG_WARN, reason);
}

/* ---- writing -------------------------------------------------------------- */

static void start_reading(tg_conn_t *c, tg_side_t *s);

static void on_write(uv_write_t *req, int status) {
  wreq_t *wr = (wreq_t *)req;
  tg_conn_t *c = wr->conn;
  tg_side_t *s = wr->side;
  s->queued -= wr->len;
  tg_buf_put(wr, wr->cap);
  if (c->s.state == TG_CONN_CLOSING) return;
  if (status < 0) {
    fail(c, "write to %s failed: %s", side_name(c, s), uv_strerror(status));
    return;
  }
  /* A slow reader that is still taking our bytes is not idle. */
  c->s.last_activity_ms = uv_now(&c->s.w->loop);
  tg_side_t *o = other(c, s);
  if (o->paused && s->queued <= TG_LOW_WATER) {
    o->paused = 0;
    start_reading(c, o);
  }
}

/* Sends n bytes of wr->data to s.  With nothing queued on s it first tries
 * a synchronous write (no request, no epoll re-arm), and queues only what
 * the socket did not take.  Takes over wr.  0, or -1 after closing. */
static int send_block(tg_conn_t *c, tg_side_t *s, wreq_t *wr, size_t n) {
  size_t off = 0;
  if (s->queued == 0) {
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
    if (r >= 0) {
      off = (size_t)r;
    } else if (r != UV_EAGAIN) {
      tg_buf_put(wr, wr->cap);
      fail(c, "write to %s failed: %s", side_name(c, s), uv_strerror(r));
      return -1;
    }
    if (off == n) {
      tg_buf_put(wr, wr->cap);
      return 0;
    }
  }
  wr->conn = c;
  wr->side = s;
  wr->len = n - off;
  uv_buf_t b = uv_buf_init(wr->data + off, (unsigned)(n - off));
  int rc = uv_write(&wr->req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
  if (rc < 0) {
    tg_buf_put(wr, wr->cap);
    fail(c, "write to %s failed: %s", side_name(c, s), uv_strerror(rc));
    return -1;
  }
  s->queued += wr->len;
  return 0;
}

/* Copies len bytes into a write block and sends them. */
static int side_write(tg_conn_t *c, tg_side_t *s, const void *data,
                      size_t len) {
  size_t cap;
  wreq_t *wr = tg_buf_get(sizeof(*wr) + len, &cap);
  if (!wr) {
    fail(c, "out of memory");
    return -1;
  }
  wr->cap = cap;
  memcpy(wr->data, data, len);
  return send_block(c, s, wr, len);
}

/* Sends whatever TLS produced for this side (records, alerts, tickets):
 * the stream BIO built it inside a block with room for the write request,
 * so it goes out without another copy. */
static int flush_tls(tg_conn_t *c, tg_side_t *s) {
  if (s->io.oom) {
    fail(c, "out of memory");
    return -1;
  }
  size_t n = 0, cap = 0;
  wreq_t *wr = (wreq_t *)tg_tls_io_take(&s->io, &n, &cap);
  if (!wr) return 0;
  wr->cap = cap;
  if (!s->open) {
    tg_buf_put(wr, cap);
    return 0;
  }
  return send_block(c, s, wr, n);
}

/* The TLS library has ended the connection: sends what it wrote for s
 * before that (the alert that tells the peer why, and anything queued
 * before it, such as tickets), best effort and without a write request,
 * since the connection closes right after.  Bytes the socket does not take
 * at once, or that would go behind earlier queued writes, are dropped with
 * the connection. */
static void send_final(tg_conn_t *c, tg_side_t *s) {
  size_t n = 0, cap = 0;
  uint8_t *blk = tg_tls_io_take(&s->io, &n, &cap);
  if (!blk) return;
  if (s->open && s->queued == 0) {
    uv_buf_t b = uv_buf_init((char *)blk + s->io.headroom, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
    if (r != (int)n)
      tg_session_log(&c->s, TG_LOG_DEBUG, "alert", "%zu of %zu final TLS bytes not sent to %s",
               n - (r > 0 ? (size_t)r : 0), n, side_name(c, s));
  }
  tg_buf_put(blk, cap);
}

/* Sends plaintext read from one side to the other, encrypting if needed,
 * and stops reading the source while the destination is backed up. */
static int forward(tg_conn_t *c, tg_side_t *from, const char *data,
                   size_t len) {
  tg_side_t *to = other(c, from);
  *(from == &c->client ? &c->s.bytes_from_client : &c->s.bytes_from_backend) += len;
  if (to->ssl) {
    /* Room for the records: 64 bytes of framing per 16 KiB covers both
     * TLS 1.2 and 1.3. */
    tg_tls_io_reserve(&to->io, len + (len / 16384 + 1) * 64);
    while (len > 0) {
      tg_tls_clear_errors();
      int n = SSL_write(to->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
      if (n <= 0) {
        char why[500];
        tg_tls_failure(to->ssl, to->note, why, sizeof(why));
        send_final(c, to);
        fail(c, "TLS write to %s failed: %s", side_name(c, to), why);
        return -1;
      }
      data += n;
      len -= (size_t)n;
    }
    if (flush_tls(c, to) != 0) return -1;
  } else if (side_write(c, to, data, len) != 0) {
    return -1;
  }
  if (to->queued > TG_HIGH_WATER && from->reading) {
    uv_read_stop((uv_stream_t *)&from->tcp);
    from->reading = 0;
    from->paused = 1;
  }
  return 0;
}

/* ---- protocol = http (http.c) ------------------------------------------------ */

static void stop_reading(tg_side_t *s);
static void shut_side(tg_conn_t *c, tg_side_t *s);
static void arm_timer(tg_conn_t *c, uint64_t ms);
static void on_eof(tg_conn_t *c, tg_side_t *s);

/* Request bytes for the backend; before it is connected they wait in
 * c->early, which backend_ready() sends first. */
static int http_to_backend(void *ctx, const char *data, size_t len) {
  tg_conn_t *c = ctx;
  if (c->s.state == TG_CONN_CLOSING) return -1;
  if (c->s.state == TG_CONN_REQUEST || c->s.state == TG_CONN_CONNECTING) {
    uint8_t *p = realloc(c->early, c->earlylen + len);
    if (!p) {
      fail(c, "out of memory");
      return -1;
    }
    memcpy(p + c->earlylen, data, len);
    c->early = p;
    c->earlylen += len;
    return 0;
  }
  return forward(c, &c->client, data, len);
}

static int http_to_client(void *ctx, const char *data, size_t len) {
  tg_conn_t *c = ctx;
  if (c->s.state == TG_CONN_CLOSING) return -1;
  return forward(c, &c->backend, data, len);
}

/* tlsgate's own answer (a refusal) to the client, then a drained close:
 * the client's further bytes are read and dropped until it closes or two
 * seconds pass, so that our answer is not lost to a reset. */
static void http_refuse(tg_conn_t *c, const tg_http_refusal_t *r) {
  char buf[600];
  size_t n = tg_http_refusal_answer(r, buf, sizeof(buf));
  atomic_fetch_add_explicit(&c->s.svc->stats->http_refused[r->reason], 1, memory_order_relaxed);
  tg_session_log(&c->s, r->status == 400 ? TG_LOG_INFO : TG_LOG_WARN, "http-refused", "%d %s: %s",
           r->status, tg_http_reason_name(r->reason), r->detail);
  c->http_closing = 1;
  if (c->backend.open) stop_reading(&c->backend);
  tg_side_t *s = &c->client;
  if (s->ssl) {
    tg_tls_io_reserve(&s->io, n + 64);
    tg_tls_clear_errors();
    if (SSL_write(s->ssl, buf, (int)n) != (int)n) {
      fail(c, "TLS write to client failed");
      return;
    }
    if (flush_tls(c, s) != 0) return;
  } else if (side_write(c, s, buf, n) != 0) {
    return;
  }
  shut_side(c, s);
  if (c->s.state == TG_CONN_CLOSING) return;
  arm_timer(c, 2000);
  s->paused = 0;
  start_reading(c, s);
}

/* After http.c had bytes: answer a due refusal, connect the backend for
 * a first accepted request, or pause/resume reading the client. */
static void http_after(tg_conn_t *c) {
  for (int round = 0; round < 2; round++) {
    if (c->s.state == TG_CONN_CLOSING || c->http_closing) return;
    const tg_http_refusal_t *r = tg_http_refusal_due(c->http);
    if (r) {
      http_refuse(c, r);
      return;
    }
    if (c->s.state == TG_CONN_REQUEST) {
      if (!tg_http_wants_backend(c->http)) return;
      stop_reading(&c->client);
      tg_session_set_state(&c->s, TG_CONN_CONNECTING);
      tg_session_connect_next(&c->s);
      return;
    }
    if (c->s.state != TG_CONN_PROXYING && c->s.state != TG_CONN_DRAINING) return;
    if (tg_http_blocked(c->http)) {
      stop_reading(&c->client);
      return;
    }
    if (round == 0 && tg_http_resume(c->http, http_to_backend, c) != 0) {
      if (c->s.state != TG_CONN_CLOSING) fail(c, "out of memory");
      return;
    }
  }
  if (c->s.state == TG_CONN_CLOSING || c->http_closing) return;
  if (c->http_eof_held && !tg_http_blocked(c->http)) {
    c->http_eof_held = 0;
    on_eof(c, &c->client);
    return;
  }
  start_reading(c, &c->client);
}

/* Plaintext from one side: relayed as is, or through http.c. */
static int deliver(tg_conn_t *c, tg_side_t *from, const char *data, size_t len) {
  if (!c->http) return forward(c, from, data, len);
  if (c->http_closing) return 0;
  int rc = from == &c->client
               ? tg_http_client_input(c->http, data, len, http_to_backend, c)
               : tg_http_backend_input(c->http, data, len, http_to_client, c);
  if (rc != 0) {
    if (c->s.state != TG_CONN_CLOSING) fail(c, "out of memory");
    return -1;
  }
  http_after(c);
  return c->s.state == TG_CONN_CLOSING ? -1 : 0;
}

/* protocol = http: no backend until the first request head is accepted. */
static void http_begin(tg_conn_t *c, const uint8_t *data, size_t len) {
  c->http = tg_http_new(c->s.svc->http, c->s.peer, c->client.ssl);
  if (!c->http) {
    fail(c, "out of memory");
    return;
  }
  tg_session_set_state(&c->s, TG_CONN_REQUEST);
  arm_timer(c, c->s.svc->conf->handshake_timeout_ms);
  start_reading(c, &c->client);
  if (c->client.ssl) pump_tls(c, &c->client); /* what came with the handshake */
  else if (len) deliver(c, &c->client, (const char *)data, len);
}

/* ---- reading -------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tg_conn_t *c = h->data;
  buf->base = c->s.w->scratch.read;
  buf->len = sizeof(c->s.w->scratch.read);
}

static void start_reading(tg_conn_t *c, tg_side_t *s) {
  if (s->reading || s->eof || s->paused || !s->open) return;
  if (s == &c->client && c->http && !c->http_closing && tg_http_blocked(c->http)) return;
  int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  if (rc < 0) {
    fail(c, "cannot read from %s: %s", side_name(c, s), uv_strerror(rc));
    return;
  }
  s->reading = 1;
}

static void stop_reading(tg_side_t *s) {
  if (!s->reading) return;
  uv_read_stop((uv_stream_t *)&s->tcp);
  s->reading = 0;
}

static void on_shutdown(uv_shutdown_t *req, int status);

/* Ends our sending half towards s: close_notify for TLS, then a TCP FIN
 * once everything queued is written. */
static void shut_side(tg_conn_t *c, tg_side_t *s) {
  if (s->shut || !s->open) return;
  s->shut = 1;
  if (s->ssl) {
    tg_tls_clear_errors();
    SSL_shutdown(s->ssl);
    tg_tls_clear_errors();
    if (flush_tls(c, s) != 0) return;
  }
  uv_shutdown_t *req = malloc(sizeof(*req));
  if (!req) {
    fail(c, "out of memory");
    return;
  }
  req->data = s;
  int rc = uv_shutdown(req, (uv_stream_t *)&s->tcp, on_shutdown);
  if (rc < 0) {
    free(req);
    fail(c, "shutdown of %s failed: %s", side_name(c, s), uv_strerror(rc));
  }
}

static void check_done(tg_conn_t *c) {
  if (c->client.eof && c->backend.eof && c->client.shut_done &&
      c->backend.shut_done)
    tg_conn_close(c, "closed by both sides");
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  tg_side_t *s = req->data;
  tg_conn_t *c = s->tcp.data;
  free(req);
  if (c->s.state == TG_CONN_CLOSING) return;
  if (status == UV_ENOTCONN || status == UV_EPIPE || status == UV_ECONNRESET) {
    /* The peer is already gone: nothing more can be delivered either way. */
    char reason[100];
    snprintf(reason, sizeof(reason), "%s closed the connection", side_name(c, s));
    tg_conn_close(c, reason);
    return;
  }
  if (status < 0) {
    fail(c, "shutdown of %s failed: %s", side_name(c, s), uv_strerror(status));
    return;
  }
  s->shut_done = 1;
  check_done(c);
}

/* The side will send nothing more: pass the end on to the other side. */
static void on_eof(tg_conn_t *c, tg_side_t *s) {
  s->eof = 1;
  stop_reading(s);
  if (c->http_closing) {
    if (s == &c->client) tg_conn_close(c, "refused request answered");
    return;
  }
  switch (c->s.state) {
  case TG_CONN_REQUEST:
    tg_conn_close(c, "client closed the connection before a complete request head");
    return;
  case TG_CONN_PROXY_HEADER:
    atomic_fetch_add(&c->s.svc->stats->proxy_header_errors, 1);
    fail(c, "client closed the connection before a complete PROXY header");
    return;
  case TG_CONN_HANDSHAKE:
    tg_session_count_handshake(&c->s, TG_HS_CLOSED);
    fail(c, "client closed the connection during the TLS handshake");
    return;
  case TG_CONN_CONNECTING:
    /* A client end is passed on once the backend is ready. */
    if (s == &c->backend)
      tg_session_backend_failed(&c->s, "closed the connection during the TLS handshake");
    return;
  case TG_CONN_PROXYING:
  case TG_CONN_DRAINING:
    if (s == &c->client && c->http && tg_http_blocked(c->http) && !tg_http_refusal_due(c->http)) {
      /* held requests go out first; http_after() passes the end on */
      c->http_eof_held = 1;
      return;
    }
    tg_session_log(&c->s, TG_LOG_DEBUG, "eof", "%s finished sending", side_name(c, s));
    tg_session_set_state(&c->s, TG_CONN_DRAINING);
    shut_side(c, other(c, s));
    check_done(c);
    return;
  case TG_CONN_CLOSING:
    return;
  }
}

static void handshake_done(tg_conn_t *c, tg_side_t *s);


/* SNI virtual hosts: the ClientHello chose a section of this bind
 * (tg_tls_vhosts_attach); from here on the connection is that section's:
 * backends, HTTP guard, timeouts, metrics and log name. */
static void adopt_section(tg_conn_t *c) {
  tg_service_t *to = c->client.note ? c->client.note->section : NULL;
  if (!to || to == c->s.svc) return;
  const char *from = c->s.svc->conf->name;
  tg_session_switch_service(&c->s, to);
  tg_session_log(&c->s, TG_LOG_DEBUG, "sni", "section chosen by server name (accepted on %s)", from);
}

static int tls_feed(tg_conn_t *c, tg_side_t *s, const void *data, size_t len);
static void tls_unfeed(tg_conn_t *c, tg_side_t *s);
static void handshake_step_off_loop(tg_conn_t *c, tg_side_t *s);
static void handshake_step(tg_conn_t *c, tg_side_t *s);

/* Goes on after a handshake step: sends its output, then done, waiting or
 * failed. */
static void handshake_stepped(tg_conn_t *c, tg_side_t *s, const tg_hs_step_t *st) {
  if (s == &c->client) adopt_section(c); /* on the loop, after any step */
  /* Our flight, or the alert that tells the peer why it failed. */
  if (flush_tls(c, s) != 0) return;
  if (st->rc == 1) {
    handshake_done(c, s);
  } else if (st->rc == 0) {
    /* Waits for input, or (BoringSSL) for a token's signature:
     * resume_handshake runs when it is ready. */
    return;
  } else if (st->rc == 2) {
    handshake_step(c, s); /* the section chosen needs the next step off the loop */
  } else if (s == &c->client) {
    tg_session_count_handshake(&c->s, tg_tls_hs_result(s->note));
    fail(c, "handshake failed: %s", st->why);
  } else {
    char reason[800];
    snprintf(reason, sizeof(reason), "TLS handshake failed: %s", st->why);
    tg_session_backend_failed(&c->s, reason);
  }
}

/* Advances a TLS handshake with whatever arrived. */
static void handshake_step(tg_conn_t *c, tg_side_t *s) {
  if (tg_p11_hs_off_loop(s->ssl)) {
    handshake_step_off_loop(c, s);
    return;
  }
  tg_hs_step_t st;
  tg_tls_handshake_step(s->ssl, s->note, &st);
  handshake_stepped(c, s, &st);
}

/* ---- handshake steps off the loop (OpenSSL build, token keys) -------------
 * pkcs11_offload.c runs the step on the token's signer thread.  Meanwhile
 * the side is not read and its SSL and TLS buffers belong to the step;
 * the step holds a reference on c, which may close, or drop a backend
 * attempt, meanwhile (timers, the other side): then the result is
 * dropped. */
static void handshake_back_on_loop(void *arg, tg_p11_hs_job_t *job);

static void handshake_step_off_loop(tg_conn_t *c, tg_side_t *s) {
  uv_os_fd_t fd = -1;
  char why[200];
  if (uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0) fd = -1;
  if (!tg_p11_hs_start(s->ssl, &s->io, fd, &c->s.w->loop, handshake_back_on_loop, s, why,
                       sizeof(why))) {
    fail(c, "TLS handshake refused: %s", why);
    return;
  }
  c->s.refs++;
  stop_reading(s);
}

static void handshake_back_on_loop(void *arg, tg_p11_hs_job_t *job) {
  tg_side_t *s = arg;
  tg_conn_t *c = s->tcp.data;
  if (c->s.state != TG_CONN_CLOSING && s->ssl == tg_p11_hs_ssl(job)) {
    tg_p11_hs_return(job, &s->io, s->note);
    const uint8_t *left = s->io.in;
    size_t leftlen = s->io.inlen;
    if (tls_feed(c, s, left, leftlen) == 0) {
      start_reading(c, s);
      if (c->s.state != TG_CONN_CLOSING) handshake_stepped(c, s, tg_p11_hs_result(job));
      tls_unfeed(c, s); /* keeps what the step did not read */
    }
  }
  tg_p11_hs_free(job);
  tg_session_unref(&c->s);
}

/* The signature a handshake waited for is ready (called on our loop). */
static void resume_handshake(void *owner, void *note) {
  tg_conn_t *c = owner;
  tg_side_t *s = note == c->client.note ? &c->client : &c->backend;
  if (c->s.state == TG_CONN_CLOSING || !s->ssl || SSL_is_init_finished(s->ssl)) return;
  if (tls_feed(c, s, NULL, 0) != 0) return;
  handshake_step(c, s);
  tls_unfeed(c, s);
}

static void set_resume(tg_conn_t *c, tg_tls_note_t *note) {
  note->resume = resume_handshake;
  note->owner = c;
  note->loop = &c->s.w->loop;
}

static void describe_tls(SSL *ssl, const tg_tls_note_t *note, char *buf,
                         size_t size) {
  const uint8_t *alpn = NULL;
  unsigned alpnlen = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
  snprintf(buf, size, "%s %s%s%s%s%.*s%s", SSL_get_version(ssl),
           SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)),
           SSL_session_reused(ssl) ? " resumed" : "",
           note->peer[0] ? ", peer " : "", note->peer,
           (int)alpnlen, alpnlen ? (const char *)alpn : "", "");
}

static void backend_ready(tg_conn_t *c);

static void handshake_done(tg_conn_t *c, tg_side_t *s) {
  char desc[600];
  /* Pins, ACL, revocation: on every handshake, resumed ones included,
   * before the side counts as connected. */
  char why[700];
  if (tg_tls_check_session(s->ssl, s->note, why, sizeof(why)) != 0) {
    if (s == &c->client) {
      tg_session_count_handshake(&c->s, tg_tls_hs_result(s->note));
      fail(c, "handshake failed: %s", why);
    } else {
      char reason[800];
      snprintf(reason, sizeof(reason), "TLS handshake failed: %s", why);
      tg_session_backend_failed(&c->s, reason);
    }
    return;
  }
  if (!s->note->peer[0] && SSL_session_reused(s->ssl)) {
    /* No verification ran: the identity comes with the resumed session. */
    X509 *peer = tg_get_peer_certificate(s->ssl);
    if (peer) {
      tg_peer_id_t id;
      tg_tls_peer_id(peer, &id);
      snprintf(s->note->peer, sizeof(s->note->peer), "CN=%s", id.cn[0] ? id.cn : "(none)");
      X509_free(peer);
    }
  }
  desc[0] = '\0'; /* only for the log lines below: not formatted when they are off */
  if (tg_log_enabled(s == &c->client ? TG_LOG_INFO : TG_LOG_DEBUG))
    describe_tls(s->ssl, s->note, desc, sizeof(desc));
  if (s == &c->client) {
    tg_session_handshake_ok(&c->s, s->ssl);
    tg_session_log(&c->s, TG_LOG_INFO, "handshake", "%s", desc);
    if (c->s.svc->http) {
      http_begin(c, NULL, 0);
      return;
    }
    /* Hold the client's data until a backend is ready for it. */
    stop_reading(s);
    tg_session_set_state(&c->s, TG_CONN_CONNECTING);
    tg_session_connect_next(&c->s);
  } else {
    tg_session_log(&c->s, TG_LOG_DEBUG, "backend-tls", "%s: %s", tg_session_backend_text(&c->s), desc);
    backend_ready(c);
  }
}

/* Decrypts everything buffered on a TLS side and forwards it. */
static void pump_tls(tg_conn_t *c, tg_side_t *s) {
  char *buf = c->s.w->scratch.plain;
  for (;;) {
    tg_tls_clear_errors();
    int n = SSL_read(s->ssl, buf, (int)sizeof(c->s.w->scratch.plain));
    if (n > 0) {
      if (deliver(c, s, buf, (size_t)n) != 0) return;
      continue;
    }
    int e = SSL_get_error(s->ssl, n);
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      if (flush_tls(c, s) != 0) return;
      on_eof(c, s);
      return;
    }
    char why[700];
    tg_tls_failure(s->ssl, s->note, why, sizeof(why));
    send_final(c, s);
    fail(c, "TLS error from %s: %s", side_name(c, s), why);
    return;
  }
  flush_tls(c, s);
}

/* Points the side's TLS input at data (after anything stashed before). */
static int tls_feed(tg_conn_t *c, tg_side_t *s, const void *data, size_t len) {
  if (s->stashlen && len) {
    uint8_t *p = realloc(s->stash, s->stashlen + len);
    if (!p) {
      fail(c, "out of memory");
      return -1;
    }
    memcpy(p + s->stashlen, data, len);
    s->stash = p;
    s->stashlen += len;
  }
  if (s->stashlen) {
    s->io.in = s->stash;
    s->io.inlen = s->stashlen;
  } else {
    s->io.in = data;
    s->io.inlen = len;
  }
  return 0;
}

/* After TLS had its go: keeps what it did not consume (for instance data
 * that came with the handshake while no backend is ready), and never
 * leaves the window pointing at the shared read buffer. */
static void tls_unfeed(tg_conn_t *c, tg_side_t *s) {
  size_t left = s->io.inlen;
  if (left == 0) {
    free(s->stash);
    s->stash = NULL;
    s->stashlen = 0;
  } else if (s->stashlen && s->io.in >= s->stash && s->io.in < s->stash + s->stashlen) {
    memmove(s->stash, s->io.in, left);
    s->stashlen = left;
  } else {
    uint8_t *p = malloc(left);
    if (!p) {
      s->io.in = NULL;
      s->io.inlen = 0;
      fail(c, "out of memory");
      return;
    }
    memcpy(p, s->io.in, left);
    free(s->stash);
    s->stash = p;
    s->stashlen = left;
  }
  s->io.in = NULL;
  s->io.inlen = 0;
}

/* Decrypts and forwards what a TLS side received before it could be
 * forwarded.  Called from on_read (the backend's handshake just finished in
 * this very read), the side's input window is still open on the rest of
 * that read: TLS goes on from there and on_read closes the window.
 * Otherwise the leftovers are in the stash. */
static void pump_pending(tg_conn_t *c, tg_side_t *s) {
  if (!s->ssl) return;
  if (s->io.in) {
    pump_tls(c, s);
    return;
  }
  if (tls_feed(c, s, NULL, 0) != 0) return;
  pump_tls(c, s);
  tls_unfeed(c, s);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  tg_conn_t *c = stream->data;
  assert(c->magic == TG_CONN_MAGIC);
  tg_side_t *s = stream == (uv_stream_t *)&c->client.tcp ? &c->client
                                                          : &c->backend;
  if (c->s.state == TG_CONN_CLOSING || nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF) on_eof(c, s);
    else if (nread == UV_ECONNRESET && c->s.state != TG_CONN_CONNECTING) {
      char reason[100];
      snprintf(reason, sizeof(reason), "%s reset the connection", side_name(c, s));
      tg_conn_close(c, reason);
    }
    else if (c->s.state == TG_CONN_CONNECTING && s == &c->backend)
      tg_session_backend_failed(&c->s, uv_strerror((int)nread));
    else
      fail(c, "%s read error: %s", side_name(c, s), uv_strerror((int)nread));
    return;
  }
  c->s.last_activity_ms = uv_now(&c->s.w->loop);
  if (c->s.state == TG_CONN_PROXY_HEADER) {
    proxy_header_input(c, (const uint8_t *)buf->base, (size_t)nread);
    return;
  }
  if (c->http_closing && s == &c->client) return; /* drained, not relayed */
  if (!s->ssl) {
    deliver(c, s, buf->base, (size_t)nread);
    return;
  }
  if (tls_feed(c, s, buf->base, (size_t)nread) != 0) return;
  if (!SSL_is_init_finished(s->ssl)) handshake_step(c, s);
  else if (c->s.state == TG_CONN_PROXYING || c->s.state == TG_CONN_DRAINING ||
           c->s.state == TG_CONN_REQUEST)
    pump_tls(c, s);
  tls_unfeed(c, s);
}

/* ---- timers --------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void arm_timer(tg_conn_t *c, uint64_t ms) {
  if (ms == 0) uv_timer_stop(&c->timer);
  else uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t) {
  tg_conn_t *c = t->data;
  const tg_listener_conf_t *l = c->s.svc->conf;
  if (c->http_closing) {
    tg_conn_close(c, "refused request answered");
    return;
  }
  switch (c->s.state) {
  case TG_CONN_REQUEST:
    fail(c, "no complete request head within handshake_timeout (%llu ms)",
         (unsigned long long)l->handshake_timeout_ms);
    return;
  case TG_CONN_PROXY_HEADER:
    atomic_fetch_add(&c->s.svc->stats->proxy_header_errors, 1);
    fail(c, "no complete PROXY header within handshake_timeout (%llu ms)",
         (unsigned long long)l->handshake_timeout_ms);
    return;
  case TG_CONN_HANDSHAKE:
    tg_session_count_handshake(&c->s, TG_HS_TIMEOUT);
    fail(c, "handshake timeout (%llu ms)",
         (unsigned long long)l->handshake_timeout_ms);
    return;
  case TG_CONN_CONNECTING: {
    char reason[100];
    snprintf(reason, sizeof(reason), "no connection within connect_timeout (%llu ms)",
             (unsigned long long)l->connect_timeout_ms);
    tg_session_backend_failed(&c->s, reason);
    return;
  }
  case TG_CONN_PROXYING:
  case TG_CONN_DRAINING: {
    uint64_t idle = uv_now(&c->s.w->loop) - c->s.last_activity_ms;
    if (idle >= l->idle_timeout_ms) {
      tg_conn_close(c, "idle timeout");
      return;
    }
    arm_timer(c, l->idle_timeout_ms - idle);
    return;
  }
  case TG_CONN_CLOSING:
    return;
  }
}

/* ---- backends ------------------------------------------------------------- */

/* Forgets a failed backend attempt (session.h): nothing of its TLS stream
 * may reach the next one. */
static uv_handle_t *conn_drop_backend(tg_session_t *sess) {
  tg_conn_t *c = (tg_conn_t *)sess;
  SSL_free(c->backend.ssl);
  c->backend.ssl = NULL;
  free(c->backend.note); /* the next attempt makes its own */
  c->backend.note = NULL;
  c->backend.eof = 0;
  tg_tls_io_free(&c->backend.io);
  c->backend.io.in = NULL;
  c->backend.io.inlen = 0;
  c->backend.io.oom = 0;
  free(c->backend.stash);
  c->backend.stash = NULL;
  c->backend.stashlen = 0;
  if (!c->backend.open) return NULL;
  c->backend.open = 0;
  c->backend.reading = 0;
  return (uv_handle_t *)&c->backend.tcp;
}

static void on_connect(uv_connect_t *req, int status) {
  tg_conn_t *c = req->data;
  if (status == UV_ECANCELED || c->s.state != TG_CONN_CONNECTING) return;
  if (status < 0) {
    tg_session_backend_failed(&c->s, uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->backend.tcp, 1);
  start_reading(c, &c->backend);
  if (c->s.state != TG_CONN_CONNECTING) return;
  if (!c->s.svc->backend_ctx) {
    backend_ready(c);
    return;
  }
  c->backend.note = calloc(1, sizeof(*c->backend.note));
  if (!c->backend.note) {
    fail(c, "out of memory");
    return;
  }
  c->backend.note->conf = c->s.svc->conf;
  c->backend.note->backend = 1;
  set_resume(c, c->backend.note);
  c->backend.io.headroom = offsetof(wreq_t, data);
  c->backend.ssl = tg_tls_new_stream(c->s.svc->backend_ctx, c->backend.note,
                                     c->s.svc->conf->backends[c->s.backend_idx].host,
                                     &c->backend.io);
  if (!c->backend.ssl) {
    fail(c, "cannot create TLS state for the backend");
    return;
  }
  handshake_step(c, &c->backend);
}

/* backend = unix:PATH.  libuv's TCP connect takes only IP addresses, so
 * the socket is connected here (a local connect completes or fails at
 * once) and handed to the TCP handle; on_connect runs from the loop, as
 * for TCP, through a no-op threadpool request. */
typedef struct {
  uv_work_t req;
  tg_conn_t *conn;
  unsigned attempt;
} unix_connect_t;

static void unix_connect_nop(uv_work_t *req) {}

static void unix_connected(uv_work_t *req, int status) {
  unix_connect_t *u = (unix_connect_t *)req;
  tg_conn_t *c = u->conn;
  if (c->s.state == TG_CONN_CONNECTING && u->attempt == c->s.attempt)
    on_connect(&c->connect_req, 0);
  free(u);
  tg_session_unref(&c->s);
}

static int unix_connect(tg_conn_t *c, const struct sockaddr *sa) {
  const tg_hostport_t *a = &c->s.svc->conf->backends[c->s.backend_idx];
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  if (connect(fd, (const struct sockaddr *)&a->addr, a->addrlen) != 0) {
    int e = errno; /* EAGAIN: the backend's backlog is full */
    close(fd);
    return uv_translate_sys_error(e);
  }
  int rc = uv_tcp_open(&c->backend.tcp, fd);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  unix_connect_t *u = malloc(sizeof(*u));
  if (!u) return UV_ENOMEM;
  u->conn = c;
  u->attempt = c->s.attempt;
  c->s.refs++;
  rc = uv_queue_work(&c->s.w->loop, &u->req, unix_connect_nop, unix_connected);
  if (rc < 0) {
    c->s.refs--;
    free(u);
  }
  return rc;
}

static void conn_open_backend(tg_session_t *sess, const struct sockaddr *sa) {
  tg_conn_t *c = (tg_conn_t *)sess;
  int rc = uv_tcp_init(&c->s.w->loop, &c->backend.tcp);
  if (rc < 0) {
    tg_session_backend_failed(&c->s, uv_strerror(rc));
    return;
  }
  c->backend.tcp.data = c;
  c->backend.open = 1;
  c->s.refs++;
  c->connect_req.data = c;
  if (sa->sa_family == AF_UNIX) {
    rc = unix_connect(c, sa);
    if (rc < 0) tg_session_backend_failed(&c->s, uv_strerror(rc));
    return;
  }
  rc = uv_tcp_connect(&c->connect_req, &c->backend.tcp, sa, on_connect);
  if (rc < 0 && tg_local_resource_error(rc)) { /* ours, not the backend's */
    tg_session_count_local_error(&c->s);
    fail(c, "cannot connect to backend %s: %s (a local limit: the backend "
         "does not rest)", tg_session_backend_text(&c->s), uv_strerror(rc));
    return;
  }
  if (rc < 0) tg_session_backend_failed(&c->s, uv_strerror(rc));
}

static void backend_ready(tg_conn_t *c) {
  tg_session_backend_answers(&c->s);
  tg_session_log(&c->s, TG_LOG_INFO, "backend", "connected to %s%s%s", tg_session_backend_text(&c->s),
       c->backend.ssl ? " over " : "",
       c->backend.ssl ? SSL_get_version(c->backend.ssl) : "");
  if (c->s.svc->conf->proxy_protocol != TG_PROXY_OFF) {
    uint8_t hdr[TG_PROXY_HDR_MAX];
    size_t n = tg_proxy_header(c, hdr, sizeof(hdr));
    if (n == 0) {
      fail(c, "cannot build the PROXY header");
      return;
    }
    int rc = c->backend.ssl ? (SSL_write(c->backend.ssl, hdr, (int)n) == (int)n
                                   ? flush_tls(c, &c->backend)
                                   : -1)
                            : side_write(c, &c->backend, hdr, n);
    if (rc != 0) {
      if (c->backend.ssl && c->s.state != TG_CONN_CLOSING) send_final(c, &c->backend);
      if (c->s.state != TG_CONN_CLOSING) fail(c, "cannot send the PROXY header");
      return;
    }
  }
  if (c->earlylen) {
    int rc = forward(c, &c->client, (const char *)c->early, c->earlylen);
    free(c->early);
    c->early = NULL;
    c->earlylen = 0;
    if (rc != 0) return;
  }
  tg_session_set_state(&c->s, TG_CONN_PROXYING);
  c->s.last_activity_ms = uv_now(&c->s.w->loop);
  arm_timer(c, c->s.svc->conf->idle_timeout_ms);
  if (c->http) {
    /* Requests that came after the first one wait inside http.c. */
    tg_http_backend_connected(c->http);
    http_after(c);
    if (c->s.state != TG_CONN_PROXYING || c->http_closing) return;
  }
  /* Data that arrived with the handshakes waits in the stashes, or, for a
   * backend whose last handshake flight came with its first records, in
   * the read that finished the handshake. */
  pump_pending(c, &c->client);
  if (c->s.state == TG_CONN_CLOSING) return;
  pump_pending(c, &c->backend);
  /* Draining (one side's end came with its first data) still reads the
   * other side. */
  if (c->s.state == TG_CONN_CLOSING) return;
  if (c->client.eof) {
    on_eof(c, &c->client);
    if (c->s.state == TG_CONN_CLOSING) return;
  }
  start_reading(c, &c->client);
}

/* ---- accept --------------------------------------------------------------- */

/* Starts the client side proper: a TLS handshake, or straight to the
 * backend for plaintext.  data is what arrived after a PROXY header. */
static void start_client(tg_conn_t *c, const uint8_t *data, size_t len) {
  tg_service_t *svc = c->s.svc;
  if (!svc->server_ctx && svc->http) {
    http_begin(c, data, len);
    return;
  }
  if (!svc->server_ctx) {
    if (len) {
      c->early = malloc(len);
      if (!c->early) {
        fail(c, "out of memory");
        return;
      }
      memcpy(c->early, data, len);
      c->earlylen = len;
    }
    stop_reading(&c->client);
    tg_session_set_state(&c->s, TG_CONN_CONNECTING);
    tg_session_connect_next(&c->s);
    return;
  }
  c->client.note = calloc(1, sizeof(*c->client.note));
  if (c->client.note) {
    c->client.note->conf = svc->conf;
    set_resume(c, c->client.note);
    c->client.io.headroom = offsetof(wreq_t, data);
    c->client.ssl = tg_tls_new_stream(svc->server_ctx, c->client.note, NULL, &c->client.io);
  }
  if (!c->client.ssl) {
    fail(c, "cannot create TLS state");
    return;
  }
  tg_session_set_state(&c->s, TG_CONN_HANDSHAKE);
  arm_timer(c, svc->conf->handshake_timeout_ms);
  start_reading(c, &c->client);
  if (len && tls_feed(c, &c->client, data, len) == 0) {
    handshake_step(c, &c->client);
    tls_unfeed(c, &c->client);
  }
}

/* Collects and parses the PROXY header a load balancer sends first; its
 * source address then names the client in logs and onward PROXY headers. */
static void proxy_header_input(tg_conn_t *c, const uint8_t *data, size_t len) {
  size_t room = TG_PROXY_PARSE_MAX - c->hdrlen;
  size_t take = len < room ? len : room;
  if (!c->hdr && !(c->hdr = malloc(TG_PROXY_PARSE_MAX))) {
    fail(c, "out of memory");
    return;
  }
  memcpy(c->hdr + c->hdrlen, data, take);
  c->hdrlen += take;
  tg_proxy_info_t info;
  size_t used = 0;
  char why[64];
  int r = tg_proxy_parse(c->hdr, c->hdrlen, &info, &used, why, sizeof(why));
  if (r < 0 || (r == 0 && c->hdrlen == TG_PROXY_PARSE_MAX)) {
    atomic_fetch_add(&c->s.svc->stats->proxy_header_errors, 1);
    fail(c, "bad PROXY header: %s", r < 0 ? why : "too long");
    return;
  }
  if (r == 0) return;
  if (info.src.ss_family != AF_UNSPEC) {
    char was[64];
    snprintf(was, sizeof(was), "%s", c->s.peer);
    c->src = info.src;
    c->dst = info.dst;
    c->proxied = 1;
    tg_format_peer((const struct sockaddr *)&c->src, c->s.peer, sizeof(c->s.peer));
    tg_session_log(&c->s, TG_LOG_DEBUG, "proxy", "PROXY header from %s", was);
  }
  /* Bytes after the header, in this read and (beyond take) unread. */
  size_t rest_hdr = c->hdrlen - used;
  uint8_t *buf = malloc(rest_hdr + (len - take) + 1);
  if (!buf) {
    fail(c, "out of memory");
    return;
  }
  memcpy(buf, c->hdr + used, rest_hdr);
  memcpy(buf + rest_hdr, data + take, len - take);
  free(c->hdr);
  c->hdr = NULL;
  c->hdrlen = 0;
  start_client(c, buf, rest_hdr + (len - take));
  free(buf);
}

/* ---- the session core's view (session.h) ------------------------------------ */

static void conn_fail(tg_session_t *sess, tg_log_level_t level, const char *reason) {
  conn_close_level((tg_conn_t *)sess, level, reason);
}

static void conn_arm_connect(tg_session_t *sess, uint64_t ms) {
  arm_timer((tg_conn_t *)sess, ms);
}

static const tg_session_ops_t conn_ops = {
    .state_names = state_names, .connecting = TG_CONN_CONNECTING, .closing = TG_CONN_CLOSING,
    .socktype = SOCK_STREAM, .oom_level = TG_LOG_WARN,
    .fail = conn_fail, .arm_connect = conn_arm_connect,
    .open_backend = conn_open_backend, .drop_backend = conn_drop_backend,
    .destroy = conn_destroy,
};

void tg_conn_accept(tg_listener_t *l, int fd, const struct sockaddr_storage *ss) {
  tg_worker_t *w = l->worker;
  tg_service_t *svc = l->svc;
  tg_conn_t *c = calloc(1, sizeof(*c));
  if (!c) {
    tg_log(TG_LOG_ERROR, "listener %s: out of memory accepting a connection",
           svc->conf->name);
    close(fd);
    return;
  }
  c->magic = TG_CONN_MAGIC;
  int active = tg_session_start(&c->s, &conn_ops, w, w->rt, svc, (const struct sockaddr *)ss);
  uv_tcp_init(&w->loop, &c->client.tcp);
  c->client.tcp.data = c;
  c->client.open = 1;
  uv_timer_init(&w->loop, &c->timer);
  c->timer.data = c;
  c->s.refs = 2;
  /* On the list before anything can close it. */
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  int rc = uv_tcp_open(&c->client.tcp, fd);
  if (rc < 0) {
    close(fd);
    fail(c, "cannot use the accepted socket: %s", uv_strerror(rc));
    return;
  }
  int max = c->s.rt->cfg->max_connections;
  if (max > 0 && active > max) {
    atomic_fetch_add(&svc->stats->rejected_max, 1);
    fail(c, "max_connections (%d) reached", max);
    return;
  }
  /* With accept_proxy_from, only the listed load balancers may connect: a
   * direct client could otherwise claim any address in a PROXY header. */
  if (svc->conf->accept_proxy_nets.n &&
      !tg_cidr_match(&svc->conf->accept_proxy_nets, (const struct sockaddr *)ss)) {
    atomic_fetch_add(&svc->stats->proxy_refused, 1);
    fail(c, "refused: not in accept_proxy_from");
    return;
  }
  tg_session_log(&c->s, TG_LOG_INFO, "accept", "new connection (worker %d, %d active)", w->index, active);
  uv_tcp_nodelay(&c->client.tcp, 1);
  if (svc->conf->accept_proxy) {
    tg_session_set_state(&c->s, TG_CONN_PROXY_HEADER);
    arm_timer(c, svc->conf->handshake_timeout_ms);
    start_reading(c, &c->client);
    return;
  }
  start_client(c, NULL, 0);
}
