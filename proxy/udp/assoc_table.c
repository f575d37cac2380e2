/* The association table of a UDP listener (assoc_table.h). */
#include "assoc_table.h"

#include <stdlib.h>
#include <string.h>

#include "udp_assoc.h"

#define MIN_BUCKETS 256
#define MAX_BUCKETS (1u << 20)

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

uint64_t tg_udp_hash_bytes(uint64_t seed, const uint8_t *p, size_t n) {
  uint64_t h = seed ^ n;
  while (n > 0) {
    uint64_t w = 0;
    size_t k = n < 8 ? n : 8;
    memcpy(&w, p, k);
    h = mix64(h ^ w);
    p += k;
    n -= k;
  }
  return h;
}

/* The address bytes of a peer (without the port). */
static size_t addr_bytes(const struct sockaddr *sa, const uint8_t **out) {
  if (sa->sa_family == AF_INET) {
    *out = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    return 4;
  }
  *out = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
  return 16;
}

static uint16_t port_of(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                  : ((const struct sockaddr_in6 *)sa)->sin6_port;
}

uint64_t tg_assoc_table_hash(const tg_assoc_table_t *t, const struct sockaddr *sa) {
  const uint8_t *a;
  size_t n = addr_bytes(sa, &a);
  uint16_t port = port_of(sa);
  return mix64(tg_udp_hash_bytes(t->seed, a, n) ^ port ^ ((uint64_t)sa->sa_family << 16));
}

static int peer_eq(const struct sockaddr_storage *ss, const struct sockaddr *sa) {
  if (ss->ss_family != sa->sa_family) return 0;
  const struct sockaddr *b = (const struct sockaddr *)ss;
  const uint8_t *x, *y;
  size_t n = addr_bytes(b, &x);
  addr_bytes(sa, &y);
  return port_of(b) == port_of(sa) && memcmp(x, y, n) == 0;
}

/* ---- the table ---------------------------------------------------------------- */

int tg_assoc_table_init(tg_assoc_table_t *t, uint64_t seed) {
  memset(t, 0, sizeof(*t));
  t->buckets = calloc(MIN_BUCKETS, sizeof(*t->buckets));
  if (!t->buckets) return -1;
  t->nbuckets = MIN_BUCKETS;
  t->seed = seed;
  return 0;
}

void tg_assoc_table_free(tg_assoc_table_t *t) {
  free(t->buckets);
  t->buckets = NULL;
  t->nbuckets = 0;
}

tg_udp_assoc_t *tg_assoc_table_lookup(const tg_assoc_table_t *t, const struct sockaddr *sa,
                                      uint64_t hash) {
  for (tg_udp_assoc_t *a = t->buckets[hash & (t->nbuckets - 1)]; a; a = a->hnext)
    if (a->hash == hash && peer_eq(&a->peer, sa)) return a;
  return NULL;
}

static void grow(tg_assoc_table_t *t) {
  size_t n = t->nbuckets * 2;
  if (n > MAX_BUCKETS) return;
  tg_udp_assoc_t **b = calloc(n, sizeof(*b));
  if (!b) return; /* longer chains, still correct */
  for (size_t i = 0; i < t->nbuckets; i++) {
    tg_udp_assoc_t *a = t->buckets[i];
    while (a) {
      tg_udp_assoc_t *next = a->hnext;
      a->hnext = b[a->hash & (n - 1)];
      b[a->hash & (n - 1)] = a;
      a = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

void tg_assoc_table_findable(tg_assoc_table_t *t, tg_udp_assoc_t *a) {
  if (a->findable) return;
  if (t->nassoc >= 2 * t->nbuckets) grow(t);
  size_t i = a->hash & (t->nbuckets - 1);
  a->hnext = t->buckets[i];
  t->buckets[i] = a;
  a->findable = 1;
}

void tg_assoc_table_add(tg_assoc_table_t *t, tg_udp_assoc_t *a, int findable) {
  if (findable) tg_assoc_table_findable(t, a);
  a->next = t->all;
  if (t->all) t->all->prev = a;
  t->all = a;
  t->nassoc++;
  t->nalive++;
  t->created++;
  if (t->nassoc > t->peak) t->peak = t->nassoc;
}

void tg_assoc_table_forget(tg_assoc_table_t *t, tg_udp_assoc_t *a) {
  if (a->findable) {
    tg_udp_assoc_t **pp = &t->buckets[a->hash & (t->nbuckets - 1)];
    while (*pp && *pp != a) pp = &(*pp)->hnext;
    if (*pp) *pp = a->hnext;
    a->hnext = NULL;
    a->findable = 0;
  }
  if (a->prev) a->prev->next = a->next;
  else if (t->all == a) t->all = a->next;
  if (a->next) a->next->prev = a->prev;
  a->prev = a->next = NULL;
  t->nassoc--;
}

void tg_assoc_table_freed(tg_assoc_table_t *t) {
  if (--t->nalive == 0 && t->on_last_freed) t->on_last_freed(t);
}
