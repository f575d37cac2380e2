/* Backend choice and health, shared by all workers.
 *
 * Backends are tried in turn starting at a rotating index; one that fails
 * (refused, timed out, unresolvable, TLS failure) rests with exponential
 * backoff and is tried again once its rest is over. */
#ifndef TG_BACKEND_H
#define TG_BACKEND_H

#include <stdint.h>
#include <uv.h>

#include "runtime.h"

#define TG_BACKEND_REST_MIN_MS 1000
#define TG_BACKEND_REST_MAX_MS 30000

/* Picks the next backend to try.  tried is a bitmask of indexes this
 * connection already tried (bit i); returns -1 when all were tried. */
int tg_backend_pick(tg_service_t *svc, uint64_t tried, uint64_t now_ms);

/* Records a failure; returns the rest in ms now imposed. */
uint64_t tg_backend_failed(tg_service_t *svc, int idx, uint64_t now_ms);

/* Records a success; returns 1 when the backend was resting before. */
int tg_backend_ok(tg_service_t *svc, int idx);

/* UV_EMFILE, UV_ENFILE, UV_ENOMEM, UV_ENOBUFS: this process is short of a
 * resource, which is not the backend's fault: such a failure never rests a
 * backend. */
static inline int tg_local_resource_error(int uverr) {
  return uverr == UV_EMFILE || uverr == UV_ENFILE || uverr == UV_ENOMEM ||
         uverr == UV_ENOBUFS;
}

#endif
