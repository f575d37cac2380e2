/* A proxied connection: a client side and a backend side, each plaintext or
 * TLS over the stream BIO (tls_bio.h), and one explicit state.  What it
 * shares with a UDP association (identity, lifetime, accounting, backend
 * attempts) is its session core (session.h).
 *
 *   PROXY_HEADER  reading a PROXY v1/v2 header (accept_proxy = on)
 *   HANDSHAKE   client TLS handshake (skipped when secure = off)
 *   CONNECTING  picking a backend, connecting, backend TLS handshake;
 *               a failed attempt rests that backend and tries the next
 *   PROXYING    both directions flow
 *   DRAINING    one direction has ended (EOF / close_notify), the other
 *               still flows
 *   CLOSING     handles are closing; the memory is freed in the last close
 *               callback
 *   REQUEST     protocol = http: reading the first request head; no backend
 *               is connected until it passes the checks (http.h)
 *
 * Ownership: the worker owns the connection from accept until the last
 * close callback (refs == 0).  Every uv_write owns its bytes until its
 * callback.  Backpressure: a side stops being read while the opposite
 * side has more than TG_HIGH_WATER bytes queued, and resumes below
 * TG_LOW_WATER. */
#ifndef TG_CONN_H
#define TG_CONN_H

#include <openssl/ssl.h>
#include <uv.h>

#include "session.h"
#include "tls.h"
#include "worker.h"

#define TG_HIGH_WATER (128 * 1024)
#define TG_LOW_WATER (32 * 1024)
#define TG_CONN_MAGIC 0x7467636eu

typedef struct tg_conn tg_conn_t;

typedef enum {
  TG_CONN_PROXY_HEADER = 0,
  TG_CONN_HANDSHAKE,
  TG_CONN_CONNECTING,
  TG_CONN_PROXYING,
  TG_CONN_DRAINING,
  TG_CONN_CLOSING,
  TG_CONN_REQUEST
} tg_conn_state_t;

typedef struct {
  uv_tcp_t tcp;
  SSL *ssl;         /* NULL when this side is plaintext */
  tg_tls_note_t *note;
  int open;         /* tcp initialised and not yet closed */
  int reading;      /* uv_read_start is in effect */
  int paused;       /* not read because the other side's queue is full */
  int eof;          /* this side will send nothing more */
  int shut;         /* we have shut our sending half towards it */
  int shut_done;    /* ... and that shutdown completed */
  size_t queued;    /* bytes handed to uv_write and not yet written */
  tg_tls_io_t io;   /* TLS input window and pending output (tls_bio.h) */
  uint8_t *stash;   /* received bytes TLS has not consumed yet, rarely any */
  size_t stashlen;
} tg_side_t;

struct tg_conn {
  tg_session_t s;         /* first: id, peer, runtime, refs, backend attempts,
                           * state (tg_conn_state_t); session.h */
  uint32_t magic;
  tg_conn_t *prev, *next; /* the worker's list */
  tg_side_t client, backend;
  uv_timer_t timer;       /* handshake, connect or idle deadline */
  uv_connect_t connect_req;
  uint8_t *hdr;           /* PROXY header bytes so far (PROXY_HEADER only) */
  size_t hdrlen;
  uint8_t *early;         /* plaintext that came with the PROXY header */
  size_t earlylen;
  int proxied;            /* src/dst below came from a PROXY header */
  struct sockaddr_storage src, dst;
  struct tg_http *http;   /* protocol = http: framing and guard (http.h) */
  int http_closing;       /* tlsgate answered a refusal: draining, then close */
  int http_eof_held;      /* client EOF waits until held requests are out */
};

/* Takes over fd, a connection the listener's worker just accepted. */
void tg_conn_accept(tg_listener_t *l, int fd, const struct sockaddr_storage *peer);

/* Closes a connection (no-op when already closing). */
void tg_conn_close(tg_conn_t *c, const char *reason);

const char *tg_conn_state_name(tg_conn_state_t s);

#endif
