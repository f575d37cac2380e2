/* protocol = http: HTTP/1.1 framing and the Origin/Host guard.
 *
 * One tg_http_t per connection watches both directions:
 *
 *   client -> backend  every request head is collected (at most
 *                      max_request_head bytes), checked strictly, checked
 *                      against the guard and, with forward_headers = on,
 *                      rewritten; bodies (Content-Length or chunked) pass
 *                      through as slices of the input, never buffered.
 *   backend -> client  response heads and bodies are only observed, bytes
 *                      pass through untouched, so that tlsgate knows when a
 *                      response ends (its own refusal comes after the
 *                      responses to earlier requests) and when a 101 turns
 *                      the connection into a tunnel.
 *
 * The parser is tlsgate's own (see README, "protocol = http"): anything
 * ambiguous is refused, never guessed.  It never touches a socket: bytes
 * for the other side go out through an emit callback, and conn.c asks
 * afterwards whether to connect a backend, pause the client, or answer a
 * refusal.  Client bytes that cannot be handled yet (no backend yet, an
 * upgrade or a full pipeline waiting for responses) are held inside, and
 * conn.c stops reading the client while tg_http_blocked() says so, which
 * bounds what is held to about one read. */
#ifndef TG_HTTP_H
#define TG_HTTP_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Why tlsgate answered a request itself (metrics label, log word). */
typedef enum {
  TG_HTTP_R_MALFORMED = 0, /* 400: syntax, bad characters, bare CR/LF, obs-fold */
  TG_HTTP_R_FRAMING,       /* 400: CL+TE, duplicate CL, unknown coding, bad chunk */
  TG_HTTP_R_TOO_LARGE,     /* 400: head over max_request_head */
  TG_HTTP_R_UNSUPPORTED,   /* 400: HTTP/2 preface, CONNECT, other versions */
  TG_HTTP_R_ORIGIN,        /* 403: Origin not in allow_origins */
  TG_HTTP_R_FETCH_SITE,    /* 403: Sec-Fetch-Site cross-site/same-site without an allowed Origin */
  TG_HTTP_R_HOST,          /* 403: Host (or absolute-form authority) not in allow_hosts */
  TG_HTTP_R_SNI,           /* 421: Host does not match the TLS server name */
  TG_HTTP_NREASONS
} tg_http_reason_t;

const char *tg_http_reason_name(tg_http_reason_t r);
int tg_http_reason_status(tg_http_reason_t r);

/* The effective guard of one listener, built once per runtime. */
typedef struct tg_http_guard {
  int guarded;      /* plaintext, loopback, backend side presents an identity */
  int tls;          /* the client side is TLS */
  int forward;      /* forward_headers = on */
  size_t max_head;
  int check_origin; /* Origin and Sec-Fetch-Site are checked */
  int any_origin;   /* allow_origins = * */
  char **origins;
  size_t norigins;
  int check_host;
  char **hosts;     /* lower case, "host" or "host:port"; "*.x" suffixes */
  size_t nhosts;
} tg_http_guard_t;

/* Shape test shared with config.c: a plaintext TCP listener whose backend
 * side presents a client identity. */
int tg_http_lends_identity(const tg_listener_conf_t *l);
int tg_http_loopback(const tg_listener_conf_t *l);

/* Checks an allow_origins (origins = 1) or allow_hosts list.  0, or -1 with
 * "'ENTRY': reason" in err. */
int tg_http_check_list(const char *list, int origins, char *err, size_t errsize);
int tg_http_list_has_star(const char *list);

/* NULL when the listener is protocol = tcp.  desc gets a one-line summary
 * of the effective guard (also for protocol = tcp on a guarded shape). */
tg_http_guard_t *tg_http_guard_new(const tg_listener_conf_t *l, char *desc,
                                   size_t descsize);
void tg_http_guard_free(tg_http_guard_t *g);

typedef struct tg_http tg_http_t;

/* Returns 0, or -1 when the connection is closing (stop at once). */
typedef int (*tg_http_emit_fn)(void *ctx, const char *data, size_t len);

/* peer: the client's address as logged ("1.2.3.4:5" or "[::1]:5");
 * ssl: the client's TLS state or NULL.  Copies what it needs. */
tg_http_t *tg_http_new(const tg_http_guard_t *g, const char *peer, SSL *ssl);
void tg_http_free(tg_http_t *h);

/* Bytes from the client.  Request heads go out rewritten, bodies as they
 * are; what cannot go out now is held.  0, or -1 if emit failed. */
int tg_http_client_input(tg_http_t *h, const char *data, size_t len,
                         tg_http_emit_fn emit, void *ctx);
/* Handles held client bytes once no longer blocked.  0, or -1. */
int tg_http_resume(tg_http_t *h, tg_http_emit_fn emit, void *ctx);
/* Bytes from the backend, passed to emit unchanged (up to the end of the
 * last response a due refusal waits for).  0, or -1. */
int tg_http_backend_input(tg_http_t *h, const char *data, size_t len,
                          tg_http_emit_fn emit, void *ctx);

/* The first request head was accepted and no backend is connected yet. */
int tg_http_wants_backend(const tg_http_t *h);
/* conn.c connected the backend: held bytes may flow. */
void tg_http_backend_connected(tg_http_t *h);
/* The client must not be read now. */
int tg_http_blocked(const tg_http_t *h);
/* After a 101: plain relaying both ways. */
int tg_http_tunnel(const tg_http_t *h);

/* A refusal that is due now (every earlier response delivered), or NULL.
 * The answer (with Connection: close) goes to buf; *len its size. */
typedef struct {
  tg_http_reason_t reason;
  int status;
  char detail[400]; /* for the log: peer text escaped */
} tg_http_refusal_t;
const tg_http_refusal_t *tg_http_refusal_due(const tg_http_t *h);
size_t tg_http_refusal_answer(const tg_http_refusal_t *r, char *buf, size_t size);

/* Requests seen (accepted heads), for the close log line. */
unsigned long long tg_http_requests(const tg_http_t *h);

#endif
