/* The running service built from one config: per listener its TLS contexts,
 * backend health and listening sockets (one per worker, SO_REUSEPORT).
 *
 * A runtime is built completely (every identity loaded, every socket bound)
 * before anything uses it, and is immutable afterwards apart from the atomic
 * counters and backend health.  Workers hold it until they exit. */
#ifndef TG_RUNTIME_H
#define TG_RUNTIME_H

#include <openssl/ssl.h>
#include <stdatomic.h>

#include "config.h"

#define TG_MAX_WORKERS 256

typedef struct {
  const tg_hostport_t *addr;
  atomic_uint_fast64_t rest_until_ms; /* monotonic; 0 = healthy */
  atomic_int fails;                   /* consecutive failures */
} tg_backend_t;

typedef struct {
  const tg_listener_conf_t *conf;
  SSL_CTX *server_ctx;  /* NULL when secure = off */
  SSL_CTX *backend_ctx; /* NULL when backend_secure = off */
  tg_backend_t backends[TG_MAX_BACKENDS];
  atomic_uint rr;       /* round-robin start for backend choice */
  int fds[TG_MAX_WORKERS];
  char summary[1024];
} tg_service_t;

typedef struct {
  tg_config_t *cfg;
  tg_service_t *services[TG_MAX_LISTENERS];
  size_t nservices;
  atomic_int active;    /* connections across all workers */
  atomic_ullong next_id;
} tg_runtime_t;

/* Loads every identity and CA of cfg.  Takes ownership of cfg on success.
 * Returns NULL with errors added. */
tg_runtime_t *tg_runtime_new(tg_config_t *cfg, tg_errors_t *errs);

/* Opens and binds nworkers listening sockets per listener. */
int tg_runtime_bind(tg_runtime_t *rt, int nworkers, tg_errors_t *errs);

void tg_runtime_free(tg_runtime_t *rt);

/* Monotonic milliseconds, comparable across threads. */
uint64_t tg_now_ms(void);

#endif
