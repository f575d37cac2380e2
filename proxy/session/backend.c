#include "backend.h"

int tg_backend_pick(tg_service_t *svc, uint64_t tried, uint64_t now_ms) {
  int n = (int)svc->conf->nbackends;
  unsigned start = atomic_fetch_add(&svc->rr, 1);
  int soonest = -1;
  uint64_t soonest_at = UINT64_MAX;
  for (int k = 0; k < n; k++) {
    int i = (int)((start + (unsigned)k) % (unsigned)n);
    if (tried & (1ULL << i)) continue;
    uint64_t until = atomic_load(&svc->backends[i].rest_until_ms);
    if (until <= now_ms) return i;
    if (until < soonest_at) {
      soonest_at = until;
      soonest = i;
    }
  }
  /* Every untried backend is resting: try the one that wakes first rather
   * than refuse the client outright. */
  return soonest;
}

uint64_t tg_backend_failed(tg_service_t *svc, int idx, uint64_t now_ms) {
  tg_backend_t *b = &svc->backends[idx];
  int fails = atomic_fetch_add(&b->fails, 1) + 1;
  uint64_t rest = TG_BACKEND_REST_MIN_MS;
  for (int i = 1; i < fails && rest < TG_BACKEND_REST_MAX_MS; i++) rest *= 2;
  if (rest > TG_BACKEND_REST_MAX_MS) rest = TG_BACKEND_REST_MAX_MS;
  atomic_store(&b->rest_until_ms, now_ms + rest);
  return rest;
}

int tg_backend_ok(tg_service_t *svc, int idx) {
  tg_backend_t *b = &svc->backends[idx];
  if (atomic_exchange(&b->fails, 0) == 0) return 0;
  atomic_store(&b->rest_until_ms, 0);
  return 1;
}
