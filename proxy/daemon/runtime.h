/* The running service built from one config: per listener its TLS contexts,
 * backend health and listening sockets (one per worker, SO_REUSEPORT).
 *
 * A runtime is built completely (every identity loaded, every socket bound)
 * before anything uses it, and is immutable afterwards apart from atomic
 * counters and backend health.  It is reference counted: the main thread
 * holds the current one, each worker the one it accepts for, and each
 * connection the one it was accepted under, so a reload (SIGHUP) swaps in
 * a new runtime while old connections finish on the old.
 *
 * Listening sockets belong to the runtime; workers listen on dup()s.  A
 * reload that keeps a listener's bind dup()s the old socket instead of
 * binding a new one, so the kernel socket and its backlog never go away. */
#ifndef TG_RUNTIME_H
#define TG_RUNTIME_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "config.h"
#include "util.h" /* tg_now_ms(), which every user of a runtime needs */

#define TG_MAX_WORKERS 256

typedef struct {
  const tg_hostport_t *addr;
  atomic_uint_fast64_t rest_until_ms; /* monotonic; 0 = healthy */
  atomic_int fails;                   /* consecutive failures */
} tg_backend_t;

typedef struct tg_service {
  const tg_listener_conf_t *conf;
  SSL_CTX *server_ctx;  /* NULL when secure = off */
  SSL_CTX *backend_ctx; /* NULL when backend_secure = off */
  tg_backend_t backends[TG_MAX_BACKENDS];
  atomic_uint rr;       /* round-robin start for backend choice */
  int fds[TG_MAX_WORKERS]; /* listening sockets, one per worker; -1 = none */
  struct tg_lstats *stats; /* this listener's counters (metrics.c), by name */
  struct tg_dtls_svc *dtls; /* transport = udp: cookie secret (dtls.c), caps (udp_caps.c) */
  struct tg_http_guard *http; /* protocol = http: the effective guard (http.c) */
  int inherited;        /* the socket came from systemd (LISTEN_FDS) */
  char summary[1024];
  /* SNI virtual hosts: sections sharing a bind share the socket of their
   * front, the default section (README "SNI virtual hosts"), which alone
   * has fds; its connections move to the section the ClientHello names.
   * A listener that shares its bind with no one is its own front. */
  struct tg_service *front;
  char *sni_summary;    /* on a front with sections: the bind, its sections */
} tg_service_t;

typedef struct tg_runtime {
  tg_config_t *cfg;
  tg_service_t *services[TG_MAX_LISTENERS];
  size_t nservices;
  atomic_int refs;
  unsigned generation;  /* 1 at start, +1 per successful reload */
  pthread_mutex_t fds_lock; /* workers dup() fds while main may close them */
} tg_runtime_t;

/* Loads every identity and CA of cfg.  Takes ownership of cfg on success.
 * Returns NULL with errors added; the new runtime has one reference. */
tg_runtime_t *tg_runtime_new(tg_config_t *cfg, tg_errors_t *errs);

/* Gives every listener nworkers listening sockets: dup()s of old's socket
 * for the same transport and bind when old has one, new ones otherwise. */
int tg_runtime_bind(tg_runtime_t *rt, int nworkers, const tg_runtime_t *old,
                    tg_errors_t *errs);

/* systemd socket activation: takes over the sockets of LISTEN_FDS (named
 * by LISTEN_FDNAMES) once at start-up; a listener whose name matches one
 * uses it instead of binding, at start and after every reload. */
void tg_runtime_inherit_sockets(void);
/* Warns about handed-over sockets that no listener took. */
void tg_runtime_log_unused_sockets(void);
/* Removes the socket files of unix listeners bound by us (final stop). */
void tg_runtime_unlink_unix(const tg_runtime_t *rt);

/* Closes the runtime's own listening sockets (workers keep their dup()s
 * until they switch runtime). */
void tg_runtime_release_sockets(tg_runtime_t *rt);

/* A dup() of service s's socket for worker w, or -1 once released. */
int tg_runtime_dup_socket(tg_runtime_t *rt, const tg_service_t *s, int w);

/* Makes rt the one the metrics endpoint describes (main thread). */
void tg_runtime_publish_stats(tg_runtime_t *rt);

void tg_runtime_ref(tg_runtime_t *rt);
void tg_runtime_unref(tg_runtime_t *rt);

/* Process-wide connection counters, across workers and reloads. */
extern atomic_int tg_active_connections;
unsigned long long tg_next_conn_id(void);

#endif
