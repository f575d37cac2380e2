/* The part of a proxied session that does not depend on its transport.
 *
 * A TCP connection (conn.c) and a UDP association (udp_assoc.c) each embed
 * a tg_session_t as their FIRST member (so a libuv handle's data pointer
 * points at both) and describe themselves with a table of operations, the
 * way a connection type is kept apart from what uses it.  The core holds
 * what the two have in common:
 *
 *   - identity: id, the peer's name for logs, the runtime (a reference)
 *     and service it runs on, the worker;
 *   - lifetime: refs (open handles + pending requests), freed through
 *     ops->destroy when the last one goes;
 *   - accounting: accept and close counters, the close log line, byte
 *     counts, handshake results;
 *   - backends: pick, resolve, attempt, rest a failed backend, retry the
 *     next one until none is left.
 *
 * The transport does the I/O: opening an attempt towards an address,
 * dropping a failed attempt, closing its handles. */
#ifndef TG_SESSION_H
#define TG_SESSION_H

#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "log.h"
#include "tls.h"
#include "worker.h"

typedef struct tg_session tg_session_t;

typedef struct {
  const char *const *state_names; /* indexed by the transport's states */
  int connecting;                 /* its state while a backend is tried */
  int closing;                    /* its state once it has ended */
  int socktype;                   /* SOCK_STREAM or SOCK_DGRAM, for resolving */
  tg_log_level_t oom_level;       /* how "out of memory" is logged */
  /* Ends the session with reason, logged at level (the transport's close). */
  void (*fail)(tg_session_t *s, tg_log_level_t level, const char *reason);
  /* A backend attempt starts: its deadline is ms from now. */
  void (*arm_connect)(tg_session_t *s, uint64_t ms);
  /* Opens the attempt towards backend s->backend_idx at addr. */
  void (*open_backend)(tg_session_t *s, const struct sockaddr *addr);
  /* Forgets the failed attempt.  Returns its handle, which the core closes
   * and retries from the close callback, or NULL: nothing open, retry now. */
  uv_handle_t *(*drop_backend)(tg_session_t *s);
  /* Optional: runs after the core's own callbacks have acted (resolved,
   * retried), e.g. to re-arm the transport's timer. */
  void (*settle)(tg_session_t *s);
  /* The last reference is gone: frees the transport's state and memory. */
  void (*destroy)(tg_session_t *s);
} tg_session_ops_t;

struct tg_session {
  const tg_session_ops_t *ops;
  int state;                /* the transport's state (ops->state_names) */
  unsigned long long id;
  tg_worker_t *w;
  tg_runtime_t *rt;         /* a reference: the config this session runs on */
  tg_service_t *svc;        /* belongs to rt */
  int refs;                 /* open handles + pending requests */
  int backend_idx;          /* -1 before the first attempt */
  uint64_t tried;           /* bit i: backend i tried by this session */
  unsigned attempt;         /* counts backend attempts */
  uint64_t started_ms, last_activity_ms;
  uint64_t bytes_from_client, bytes_from_backend; /* plaintext */
  char peer[64];
};

/* Formats an address for logs: "1.2.3.4:5", "[::1]:5", "unix" or "?". */
void tg_format_peer(const struct sockaddr *sa, char *buf, size_t size);

/* Starts a session of worker w on service svc of runtime rt: takes a
 * reference to rt, names the peer, counts it as accepted and active.  refs
 * starts at 0.  Returns the process-wide active count. */
int tg_session_start(tg_session_t *s, const tg_session_ops_t *ops, tg_worker_t *w,
                     tg_runtime_t *rt, tg_service_t *svc, const struct sockaddr *peer);

/* The session belongs to service to (of the same runtime) from now on, e.g.
 * the section an SNI virtual host chose: it counts as active there. */
void tg_session_switch_service(tg_session_t *s, tg_service_t *to);

/* Drops one reference; the last one frees the session (ops->destroy), then
 * the runtime reference, and tells the worker. */
void tg_session_unref(tg_session_t *s);

/* A close callback for handles whose data is the session: drops the
 * handle's reference. */
void tg_session_on_closed(uv_handle_t *h);

void tg_session_log(tg_session_t *s, tg_log_level_t level, const char *event,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

void tg_session_set_state(tg_session_t *s, int state);

/* The session ends: logs the close line (reason, backend, bytes, duration)
 * at level, moves to ops->closing and takes it off the active counts.  The
 * transport then closes its handles. */
void tg_session_closed(tg_session_t *s, tg_log_level_t level, const char *reason);

/* "host:port" of the backend being tried or used, "-" before any. */
const char *tg_session_backend_text(const tg_session_t *s);

/* ---- backends ---- */

/* Tries the next backend that is not resting and not tried yet by this
 * session; ends the session when none is left. */
void tg_session_connect_next(tg_session_t *s);

/* The current attempt failed: rests its backend, drops the attempt
 * (ops->drop_backend) and tries the next one. */
void tg_session_backend_failed(tg_session_t *s, const char *reason);

/* The backend of the current attempt answered: logged once it had rested. */
void tg_session_backend_answers(tg_session_t *s);

/* EMFILE and the like are this process's shortage, not the backend's:
 * counted, and the caller ends the session without resting the backend. */
void tg_session_count_local_error(tg_session_t *s);

/* ---- handshakes (the client side) ---- */

void tg_session_count_handshake(tg_session_t *s, tg_hs_result_t r);

/* A completed client handshake: counted with its version, resumption and
 * cipher. */
void tg_session_handshake_ok(tg_session_t *s, SSL *ssl);

#endif
