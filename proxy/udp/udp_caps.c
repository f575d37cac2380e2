/* Admission caps of UDP listeners (udp_caps.h): half-open handshakes and
 * associations per source and in total. */
#include "udp_caps.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "assoc_table.h"
#include "metrics.h"

#define ADDR_BUCKETS 1024
#define SRC_BUCKETS 1024

/* A source: an IPv4 address (also when IPv4-mapped) or an IPv6 /64. */
typedef struct {
  uint8_t family, len;
  uint8_t b[8];
} src_key_t;

/* This worker's half-open handshakes of one source, oldest first. */
struct tg_addr_count {
  tg_addr_count_t *next;
  src_key_t key;
  unsigned n;
  tg_udp_assoc_t *head, *tail;
};

/* One source's counts across the workers of a service (under src_mu). */
struct tg_src_count {
  struct tg_src_count *next;
  src_key_t key;
  unsigned half_open, assocs;
};

/* Associations of every udp listener of the process (each holds, or will
 * hold, a backend socket), and the cap derived from the fd limit. */
static atomic_long udp_total;
static atomic_long udp_total_cap = 1 << 20;


static void source_key(const struct sockaddr *sa, src_key_t *k) {
  memset(k, 0, sizeof(*k));
  if (sa->sa_family == AF_INET) {
    k->family = AF_INET;
    k->len = 4;
    memcpy(k->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    return;
  }
  const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(a6)) {
    k->family = AF_INET;
    k->len = 4;
    memcpy(k->b, a6->s6_addr + 12, 4);
  } else {
    k->family = AF_INET6;
    k->len = 8; /* the /64 */
    memcpy(k->b, a6->s6_addr, 8);
  }
}

static int key_eq(const src_key_t *x, const src_key_t *y) {
  return x->family == y->family && x->len == y->len && memcmp(x->b, y->b, x->len) == 0;
}

int tg_udp_same_source(const struct sockaddr *x, const struct sockaddr *y) {
  src_key_t a, b;
  source_key(x, &a);
  source_key(y, &b);
  return key_eq(&a, &b);
}

static tg_addr_count_t **local_slot(tg_udp_listener_t *ul, const src_key_t *k,
                                 int create) {
  uint64_t h = tg_udp_hash_bytes(ul->seed ^ 0x5a5a5a5aULL ^ k->family, k->b, k->len);
  tg_addr_count_t **pp = &ul->addr_buckets[h % ADDR_BUCKETS];
  for (; *pp; pp = &(*pp)->next)
    if (key_eq(&(*pp)->key, k)) return pp;
  if (!create) return NULL;
  tg_addr_count_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->key = *k;
  *pp = c;
  return pp;
}

/* Under ds->src_mu. */
static struct tg_src_count **shared_slot(struct tg_dtls_svc *ds, const src_key_t *k,
                                      int create) {
  uint64_t h = tg_udp_hash_bytes(ds->src_seed ^ k->family, k->b, k->len);
  struct tg_src_count **pp = &ds->src_buckets[h % SRC_BUCKETS];
  for (; *pp; pp = &(*pp)->next)
    if (key_eq(&(*pp)->key, k)) return pp;
  if (!create) return NULL;
  struct tg_src_count *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->key = *k;
  *pp = c;
  return pp;
}

static void shared_put(struct tg_dtls_svc *ds, const src_key_t *k, int half_open,
                       int assoc) {
  uv_mutex_lock(&ds->src_mu);
  struct tg_src_count **pp = shared_slot(ds, k, 0);
  if (pp) {
    struct tg_src_count *c = *pp;
    if (half_open && c->half_open) c->half_open--;
    if (assoc && c->assocs) c->assocs--;
    if (!c->half_open && !c->assocs) {
      *pp = c->next;
      free(c);
    }
  }
  uv_mutex_unlock(&ds->src_mu);
}

static void count_refusal(tg_udp_listener_t *ul, const struct sockaddr *from,
                          uint64_t *counter, atomic_ullong *metric, int slot,
                          const char *what) {
  (*counter)++;
  atomic_fetch_add_explicit(metric, 1, memory_order_relaxed);
  if (tg_udp_rate_ok(ul, slot)) {
    char peer[64];
    tg_format_peer(from, peer, sizeof(peer));
    tg_log(TG_LOG_WARN, "listener %s: %s: ignoring %s (%llu such so far; at "
           "most one line a second)", ul->svc->conf->name, what, peer,
           (unsigned long long)*counter);
  }
}

/* The source with the most half-open handshakes on this worker. */
static tg_addr_count_t *local_busiest(tg_udp_listener_t *ul) {
  tg_addr_count_t *best = NULL;
  for (size_t i = 0; i < ADDR_BUCKETS; i++)
    for (tg_addr_count_t *c = ul->addr_buckets[i]; c; c = c->next)
      if (c->head && (!best || c->n > best->n)) best = c;
  return best;
}

int tg_udp_total_reserve(tg_udp_listener_t *ul, const struct sockaddr *from) {
  long cap = atomic_load(&udp_total_cap);
  if (atomic_fetch_add(&udp_total, 1) < cap) return 0;
  atomic_fetch_sub(&udp_total, 1);
  char what[160];
  snprintf(what, sizeof(what), "udp associations at the process cap (%ld, "
           "derived from the fd limit)", cap);
  count_refusal(ul, from, &ul->st.drop_assoc_total,
                &ul->svc->stats->udp_refused_total, RL_TOTAL, what);
  return -1;
}

int tg_udp_total_admit(tg_udp_assoc_t *a) {
  if (a->total_counted) return 0;
  if (tg_udp_total_reserve(a->ul, (const struct sockaddr *)&a->peer) != 0) return -1;
  a->total_counted = 1;
  return 0;
}

tg_udp_assoc_t *tg_udp_caps_victim(tg_udp_listener_t *ul, const struct sockaddr *sa) {
  struct tg_dtls_svc *ds = ul->ds;
  if (atomic_load(&ds->half_open) < ds->max_half_open) return NULL;
  src_key_t k;
  source_key(sa, &k);
  tg_addr_count_t **mine = local_slot(ul, &k, 0);
  tg_addr_count_t *busy = local_busiest(ul);
  if (!busy || busy->n <= (mine ? (*mine)->n : 0)) return NULL;
  ul->st.evicted++;
  atomic_fetch_add_explicit(&ul->svc->stats->dtls_half_open_evicted, 1, memory_order_relaxed);
  if (tg_udp_rate_ok(ul, RL_EVICT)) {
    char peer[64], victim[64];
    tg_format_peer(sa, peer, sizeof(peer));
    snprintf(victim, sizeof(victim), "%s", busy->head->s.peer);
    tg_log(TG_LOG_WARN, "listener %s: max_half_open (%d) reached: the "
           "oldest half-open handshake of the busiest source (%s, %u "
           "half-open) makes room for %s (%llu evicted so far; at most "
           "one line a second)", ul->svc->conf->name, ds->max_half_open,
           victim, busy->n, peer, (unsigned long long)ul->st.evicted);
  }
  return busy->head;
}

const char *tg_udp_caps_admit(tg_udp_listener_t *ul, const struct sockaddr *sa,
                              int half_open) {
  struct tg_dtls_svc *ds = ul->ds;
  tg_lstats_t *stats = ul->svc->stats;
  src_key_t k;
  source_key(sa, &k);
  if (half_open && atomic_fetch_add(&ds->half_open, 1) >= ds->max_half_open) {
    atomic_fetch_sub(&ds->half_open, 1);
    ul->st.drop_half_open_total++;
    atomic_fetch_add_explicit(&stats->dtls_half_open_refused, 1, memory_order_relaxed);
    return "total";
  }
  const char *why = NULL;
  uv_mutex_lock(&ds->src_mu);
  struct tg_src_count **pp = shared_slot(ds, &k, 1);
  if (!pp) why = "out of memory";
  else if (half_open && (int)(*pp)->half_open >= ds->max_half_open_per_source)
    why = "per source";
  else if ((int)(*pp)->assocs >= ds->max_assoc_per_source)
    why = "associations per source";
  if (!why) {
    (*pp)->assocs++;
    if (half_open) (*pp)->half_open++;
  } else if (pp && !(*pp)->half_open && !(*pp)->assocs) {
    struct tg_src_count *c = *pp;
    *pp = c->next;
    free(c);
  }
  uv_mutex_unlock(&ds->src_mu);
  if (why && half_open) atomic_fetch_sub(&ds->half_open, 1);
  if (why && strcmp(why, "per source") == 0) {
    ul->st.drop_half_open_addr++;
    atomic_fetch_add_explicit(&stats->dtls_half_open_refused, 1, memory_order_relaxed);
  } else if (why && strcmp(why, "associations per source") == 0) {
    char what[160];
    snprintf(what, sizeof(what), "max_associations_per_source (%d) reached",
             ds->max_assoc_per_source);
    count_refusal(ul, sa, &ul->st.drop_assoc_source, &stats->udp_refused_source,
                  RL_SOURCE, what);
  }
  return why;
}

void tg_udp_caps_undo(tg_udp_listener_t *ul, const struct sockaddr *sa,
                       int half_open) {
  src_key_t k;
  source_key(sa, &k);
  if (half_open) atomic_fetch_sub(&ul->ds->half_open, 1);
  shared_put(ul->ds, &k, half_open, 1);
}

void tg_udp_caps_admitted(tg_udp_listener_t *ul, tg_udp_assoc_t *a, int half_open) {
  a->src_counted = 1;
  if (!half_open) return;
  a->half_open = 1;
  src_key_t k;
  source_key((const struct sockaddr *)&a->peer, &k);
  tg_addr_count_t **pp = local_slot(ul, &k, 1);
  if (!pp) return; /* counted across workers, not evictable */
  tg_addr_count_t *c = *pp;
  a->src = c;
  a->ho_prev = c->tail;
  a->ho_next = NULL;
  if (c->tail) c->tail->ho_next = a;
  else c->head = a;
  c->tail = a;
  c->n++;
  ul->half_open++;
  if (ul->half_open > ul->st.half_open_peak) ul->st.half_open_peak = ul->half_open;
}

void tg_udp_half_open_release(tg_udp_listener_t *ul, tg_udp_assoc_t *a) {
  if (!a->half_open) return;
  a->half_open = 0;
  /* The service that admitted it (a reload may have moved ul on). */
  struct tg_dtls_svc *ds = a->s.svc->dtls;
  atomic_fetch_sub(&ds->half_open, 1);
  src_key_t k;
  source_key((const struct sockaddr *)&a->peer, &k);
  shared_put(ds, &k, 1, 0);
  tg_addr_count_t *c = a->src;
  if (!c) return;
  a->src = NULL;
  if (a->ho_prev) a->ho_prev->ho_next = a->ho_next;
  else c->head = a->ho_next;
  if (a->ho_next) a->ho_next->ho_prev = a->ho_prev;
  else c->tail = a->ho_prev;
  a->ho_prev = a->ho_next = NULL;
  ul->half_open--;
  if (--c->n == 0) {
    tg_addr_count_t **pp = local_slot(ul, &k, 0);
    if (pp && *pp == c) *pp = c->next;
    free(c);
  }
}

void tg_udp_assoc_release(tg_udp_assoc_t *a) {
  if (a->src_counted) {
    a->src_counted = 0;
    src_key_t k;
    source_key((const struct sockaddr *)&a->peer, &k);
    shared_put(a->s.svc->dtls, &k, 0, 1);
  }
  if (a->total_counted) {
    a->total_counted = 0;
    atomic_fetch_sub(&udp_total, 1);
  }
}

/* Caps derived from the fd limit: the process keeps an eighth of its
 * descriptors (at least 64) for everything that is not a UDP association
 * (TCP clients and backends, listeners, the loop); one source may take a
 * quarter of the rest. */
void tg_udp_caps_from_fd_limit(long *total, long *per_source) {
  struct rlimit r;
  long n = 1 << 20;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY &&
      r.rlim_cur < (rlim_t)n)
    n = (long)r.rlim_cur;
  long reserve = n / 8 < 64 ? 64 : n / 8;
  *total = n - reserve < 16 ? 16 : n - reserve;
  *per_source = *total / 4 < 8 ? 8 : *total / 4;
  atomic_store(&udp_total_cap, *total);
}

long tg_udp_total_cap(void) { return atomic_load(&udp_total_cap); }

void tg_udp_total_unreserve(void) { atomic_fetch_sub(&udp_total, 1); }

int tg_udp_caps_local_init(tg_udp_listener_t *ul) {
  ul->addr_buckets = calloc(ADDR_BUCKETS, sizeof(*ul->addr_buckets));
  return ul->addr_buckets ? 0 : -1;
}

void tg_udp_caps_local_free(tg_udp_listener_t *ul) {
  if (!ul->addr_buckets) return;
  for (size_t i = 0; i < ADDR_BUCKETS; i++) {
    tg_addr_count_t *c = ul->addr_buckets[i];
    while (c) {
      tg_addr_count_t *next = c->next;
      free(c);
      c = next;
    }
  }
  free(ul->addr_buckets);
  ul->addr_buckets = NULL;
}

int tg_udp_caps_shared_init(struct tg_dtls_svc *d) {
  d->src_buckets = calloc(SRC_BUCKETS, sizeof(*d->src_buckets));
  if (!d->src_buckets || uv_mutex_init(&d->src_mu) != 0) return -1;
  d->src_mu_ready = 1;
  return 0;
}

void tg_udp_caps_shared_free(struct tg_dtls_svc *d) {
  if (d->src_mu_ready) uv_mutex_destroy(&d->src_mu);
  if (d->src_buckets)
    for (size_t i = 0; i < SRC_BUCKETS; i++) {
      struct tg_src_count *c = d->src_buckets[i];
      while (c) {
        struct tg_src_count *next = c->next;
        free(c);
        c = next;
      }
    }
  free(d->src_buckets);
  d->src_buckets = NULL;
}
