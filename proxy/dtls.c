/* The UDP listener: contexts and cookie secret per service, the datagram
 * BIO, and per worker the listening socket that classifies every datagram
 * and routes it to its association (udp_assoc.c) or drops it. */
#include "dtls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <linux/sock_diag.h> /* SK_MEMINFO_DROPS */
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "psk.h"
#include "tls_compat.h"
#include "udp_assoc.h"

#define ADDR_BUCKETS 1024
#define MIN_BUCKETS 256
#define MAX_BUCKETS (1u << 20)

/* Rate-limit slots for repeated log lines (one line per second each). */
enum { RL_RECV_ERROR = 0, RL_DROP, RL_HALF_OPEN, RL_SEND, RL_MAX_CONN, RL_SOURCE,
       RL_TOTAL, RL_EVICT };

/* A source: an IPv4 address (also when IPv4-mapped) or an IPv6 /64. */
typedef struct {
  uint8_t family, len;
  uint8_t b[8];
} src_key_t;

/* This worker's half-open handshakes of one source, oldest first. */
struct addr_count {
  addr_count_t *next;
  src_key_t key;
  unsigned n;
  tg_udp_assoc_t *head, *tail;
};

/* One source's counts across the workers of a service (under src_mu). */
struct src_count {
  struct src_count *next;
  src_key_t key;
  unsigned half_open, assocs;
};

#define SRC_BUCKETS 1024

/* Associations of every udp listener of the process (each holds, or will
 * hold, a backend socket), and the cap derived from the fd limit. */
static atomic_long udp_total;
static atomic_long udp_total_cap = 1 << 20;

/* ---- helpers ---------------------------------------------------------------- */

void tg_format_peer(const struct sockaddr *sa, char *buf, size_t size) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    snprintf(buf, size, "%s:%u", ip, ntohs(a->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    snprintf(buf, size, "[%s]:%u", ip, ntohs(a->sin6_port));
  } else {
    snprintf(buf, size, "?");
  }
}

int tg_udp_rate_ok(tg_udp_listener_t *ul, int slot) {
  uint64_t now = uv_now(&ul->w->loop);
  if (ul->last_log_ms[slot] && now - ul->last_log_ms[slot] < 1000) return 0;
  ul->last_log_ms[slot] = now;
  return 1;
}

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

static uint64_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n) {
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

static uint64_t peer_hash(const tg_udp_listener_t *ul, const struct sockaddr *sa) {
  const uint8_t *a;
  size_t n = addr_bytes(sa, &a);
  uint16_t port = port_of(sa);
  return mix64(hash_bytes(ul->seed, a, n) ^ port ^ ((uint64_t)sa->sa_family << 16));
}

static int peer_eq(const struct sockaddr_storage *ss, const struct sockaddr *sa) {
  if (ss->ss_family != sa->sa_family) return 0;
  const struct sockaddr *b = (const struct sockaddr *)ss;
  const uint8_t *x, *y;
  size_t n = addr_bytes(b, &x);
  addr_bytes(sa, &y);
  return port_of(b) == port_of(sa) && memcmp(x, y, n) == 0;
}

/* ---- the association table --------------------------------------------------- */

static tg_udp_assoc_t *lookup(tg_udp_listener_t *ul, const struct sockaddr *sa,
                              uint64_t hash) {
  for (tg_udp_assoc_t *a = ul->buckets[hash & (ul->nbuckets - 1)]; a; a = a->hnext)
    if (a->hash == hash && peer_eq(&a->peer, sa)) return a;
  return NULL;
}

static void grow(tg_udp_listener_t *ul) {
  size_t n = ul->nbuckets * 2;
  if (n > MAX_BUCKETS) return;
  tg_udp_assoc_t **b = calloc(n, sizeof(*b));
  if (!b) return; /* longer chains, still correct */
  for (size_t i = 0; i < ul->nbuckets; i++) {
    tg_udp_assoc_t *a = ul->buckets[i];
    while (a) {
      tg_udp_assoc_t *next = a->hnext;
      a->hnext = b[a->hash & (n - 1)];
      b[a->hash & (n - 1)] = a;
      a = next;
    }
  }
  free(ul->buckets);
  ul->buckets = b;
  ul->nbuckets = n;
}

void tg_udp_listener_findable(tg_udp_listener_t *ul, tg_udp_assoc_t *a) {
  if (a->findable) return;
  if (ul->nassoc >= 2 * ul->nbuckets) grow(ul);
  size_t i = a->hash & (ul->nbuckets - 1);
  a->hnext = ul->buckets[i];
  ul->buckets[i] = a;
  a->findable = 1;
}

/* Called by tg_assoc_new. */
void tg_udp_listener_add(tg_udp_listener_t *ul, tg_udp_assoc_t *a, int findable) {
  if (findable) tg_udp_listener_findable(ul, a);
  a->next = ul->all;
  if (ul->all) ul->all->prev = a;
  ul->all = a;
  ul->nassoc++;
  ul->nalive++;
  ul->st.assoc_created++;
  if (ul->nassoc > ul->st.assoc_peak) ul->st.assoc_peak = ul->nassoc;
}

/* Called when an association starts closing: it is no longer findable, so
 * a new datagram from the same peer starts afresh. */
void tg_udp_listener_forget(tg_udp_listener_t *ul, tg_udp_assoc_t *a) {
  if (a->findable) {
    tg_udp_assoc_t **pp = &ul->buckets[a->hash & (ul->nbuckets - 1)];
    while (*pp && *pp != a) pp = &(*pp)->hnext;
    if (*pp) *pp = a->hnext;
    a->hnext = NULL;
    a->findable = 0;
  }
  if (a->prev) a->prev->next = a->next;
  else if (ul->all == a) ul->all = a->next;
  if (a->next) a->next->prev = a->prev;
  a->prev = a->next = NULL;
  ul->nassoc--;
}

static void close_socket(tg_udp_listener_t *ul);
static void count_kernel_drops(tg_udp_listener_t *ul);

/* Called when an association's memory is gone. */
void tg_udp_listener_assoc_freed(tg_udp_listener_t *ul) {
  ul->nalive--;
  if (ul->draining && ul->nalive == 0) close_socket(ul);
}

/* ---- caps: half-open handshakes and associations per source and in total --- */

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

static addr_count_t **local_slot(tg_udp_listener_t *ul, const src_key_t *k,
                                 int create) {
  uint64_t h = hash_bytes(ul->seed ^ 0x5a5a5a5aULL ^ k->family, k->b, k->len);
  addr_count_t **pp = &ul->addr_buckets[h % ADDR_BUCKETS];
  for (; *pp; pp = &(*pp)->next)
    if (key_eq(&(*pp)->key, k)) return pp;
  if (!create) return NULL;
  addr_count_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->key = *k;
  *pp = c;
  return pp;
}

/* Under ds->src_mu. */
static struct src_count **shared_slot(struct tg_dtls_svc *ds, const src_key_t *k,
                                      int create) {
  uint64_t h = hash_bytes(ds->src_seed ^ k->family, k->b, k->len);
  struct src_count **pp = &ds->src_buckets[h % SRC_BUCKETS];
  for (; *pp; pp = &(*pp)->next)
    if (key_eq(&(*pp)->key, k)) return pp;
  if (!create) return NULL;
  struct src_count *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->key = *k;
  *pp = c;
  return pp;
}

static void shared_put(struct tg_dtls_svc *ds, const src_key_t *k, int half_open,
                       int assoc) {
  uv_mutex_lock(&ds->src_mu);
  struct src_count **pp = shared_slot(ds, k, 0);
  if (pp) {
    struct src_count *c = *pp;
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
static addr_count_t *local_busiest(tg_udp_listener_t *ul) {
  addr_count_t *best = NULL;
  for (size_t i = 0; i < ADDR_BUCKETS; i++)
    for (addr_count_t *c = ul->addr_buckets[i]; c; c = c->next)
      if (c->head && (!best || c->n > best->n)) best = c;
  return best;
}

static int total_reserve(tg_udp_listener_t *ul, const struct sockaddr *from) {
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
  if (total_reserve(a->ul, (const struct sockaddr *)&a->peer) != 0) return -1;
  a->total_counted = 1;
  return 0;
}

/* Admits one more association from sa (half_open: a DTLS handshake that
 * starts now), or says which cap stops it (and counts it).  When the
 * half-open total is reached, the oldest half-open handshake of this
 * worker's busiest source makes room, if that source has more of them
 * than sa's. */
static const char *admit(tg_udp_listener_t *ul, const struct sockaddr *sa,
                         int half_open) {
  struct tg_dtls_svc *ds = ul->ds;
  tg_lstats_t *stats = ul->svc->stats;
  src_key_t k;
  source_key(sa, &k);
  if (half_open) {
    if (atomic_load(&ds->half_open) >= ds->max_half_open) {
      addr_count_t **mine = local_slot(ul, &k, 0);
      addr_count_t *busy = local_busiest(ul);
      if (busy && busy->n > (mine ? (*mine)->n : 0)) {
        ul->st.evicted++;
        atomic_fetch_add_explicit(&stats->dtls_half_open_evicted, 1,
                                  memory_order_relaxed);
        if (tg_udp_rate_ok(ul, RL_EVICT)) {
          char peer[64], victim[64];
          tg_format_peer(sa, peer, sizeof(peer));
          snprintf(victim, sizeof(victim), "%s", busy->head->peername);
          tg_log(TG_LOG_WARN, "listener %s: max_half_open (%d) reached: the "
                 "oldest half-open handshake of the busiest source (%s, %u "
                 "half-open) makes room for %s (%llu evicted so far; at most "
                 "one line a second)", ul->svc->conf->name, ds->max_half_open,
                 victim, busy->n, peer, (unsigned long long)ul->st.evicted);
        }
        tg_assoc_close(busy->head, TG_LOG_DEBUG, 0, "evicted: max_half_open "
                       "(%d) reached; the oldest half-open handshake of the "
                       "busiest source makes room", ds->max_half_open);
      }
    }
    if (atomic_fetch_add(&ds->half_open, 1) >= ds->max_half_open) {
      atomic_fetch_sub(&ds->half_open, 1);
      ul->st.drop_half_open_total++;
      atomic_fetch_add_explicit(&stats->dtls_half_open_refused, 1, memory_order_relaxed);
      return "total";
    }
  }
  const char *why = NULL;
  uv_mutex_lock(&ds->src_mu);
  struct src_count **pp = shared_slot(ds, &k, 1);
  if (!pp) why = "out of memory";
  else if (half_open && (int)(*pp)->half_open >= ds->max_half_open_per_source)
    why = "per source";
  else if ((int)(*pp)->assocs >= ds->max_assoc_per_source)
    why = "associations per source";
  if (!why) {
    (*pp)->assocs++;
    if (half_open) (*pp)->half_open++;
  } else if (pp && !(*pp)->half_open && !(*pp)->assocs) {
    struct src_count *c = *pp;
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

/* Gives back what admit() took, for an association never made. */
static void admit_undo(tg_udp_listener_t *ul, const struct sockaddr *sa,
                       int half_open) {
  src_key_t k;
  source_key(sa, &k);
  if (half_open) atomic_fetch_sub(&ul->ds->half_open, 1);
  shared_put(ul->ds, &k, half_open, 1);
}

/* a was admitted by admit(): it counts from now on. */
static void admitted(tg_udp_listener_t *ul, tg_udp_assoc_t *a, int half_open) {
  a->src_counted = 1;
  if (!half_open) return;
  a->half_open = 1;
  src_key_t k;
  source_key((const struct sockaddr *)&a->peer, &k);
  addr_count_t **pp = local_slot(ul, &k, 1);
  if (!pp) return; /* counted across workers, not evictable */
  addr_count_t *c = *pp;
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
  struct tg_dtls_svc *ds = a->svc->dtls;
  atomic_fetch_sub(&ds->half_open, 1);
  src_key_t k;
  source_key((const struct sockaddr *)&a->peer, &k);
  shared_put(ds, &k, 1, 0);
  addr_count_t *c = a->src;
  if (!c) return;
  a->src = NULL;
  if (a->ho_prev) a->ho_prev->ho_next = a->ho_next;
  else c->head = a->ho_next;
  if (a->ho_next) a->ho_next->ho_prev = a->ho_prev;
  else c->tail = a->ho_prev;
  a->ho_prev = a->ho_next = NULL;
  ul->half_open--;
  if (--c->n == 0) {
    addr_count_t **pp = local_slot(ul, &k, 0);
    if (pp && *pp == c) *pp = c->next;
    free(c);
  }
}

void tg_udp_assoc_release(tg_udp_assoc_t *a) {
  if (a->src_counted) {
    a->src_counted = 0;
    src_key_t k;
    source_key((const struct sockaddr *)&a->peer, &k);
    shared_put(a->svc->dtls, &k, 0, 1);
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
static void fd_caps(long *total, long *per_source) {
  struct rlimit r;
  long n = 1 << 20;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY &&
      r.rlim_cur < (rlim_t)n)
    n = (long)r.rlim_cur;
  long reserve = n / 8 < 64 ? 64 : n / 8;
  *total = n - reserve < 16 ? 16 : n - reserve;
  *per_source = *total / 4 < 8 ? 8 : *total / 4;
}

/* ---- sending ----------------------------------------------------------------- */

/* A datagram in flight owns its bytes; its callback only counts. */
typedef struct {
  uv_udp_send_t req;
  tg_udp_listener_t *ul;
  size_t len;
  uint8_t data[];
} sreq_t;

static void on_sent(uv_udp_send_t *req, int status) {
  sreq_t *r = (sreq_t *)req;
  tg_udp_listener_t *ul = r->ul;
  if (status < 0 && status != UV_ECANCELED) {
    ul->st.send_errors++;
    if (tg_udp_rate_ok(ul, RL_SEND))
      tg_log(TG_LOG_DEBUG, "listener %s: sending a datagram failed: %s",
             ul->svc->conf->name, uv_strerror(status));
  }
  free(r);
}

static int udp_send(tg_udp_listener_t *ul, uv_udp_t *h, const struct sockaddr *to,
                    const void *data, size_t len) {
  if (uv_udp_get_send_queue_size(h) > TG_UDP_SENDQ_MAX) {
    ul->st.drop_sendq++;
    return -1;
  }
  /* Straight to the kernel when nothing is queued (the common case): no
   * copy, no request, no allocation.  UV_EAGAIN: queue it below. */
  uv_buf_t direct = uv_buf_init((char *)data, (unsigned)len);
  int sent = uv_udp_try_send(h, &direct, 1, to);
  if (sent >= 0) return 0;
  if (sent != UV_EAGAIN) {
    ul->st.send_errors++;
    if (tg_udp_rate_ok(ul, RL_SEND))
      tg_log(TG_LOG_DEBUG, "listener %s: sending a datagram failed: %s",
             ul->svc->conf->name, uv_strerror(sent));
    return -1;
  }
  sreq_t *r = malloc(sizeof(*r) + len);
  if (!r) {
    ul->st.send_errors++;
    return -1;
  }
  r->ul = ul;
  r->len = len;
  memcpy(r->data, data, len);
  uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
  int rc = uv_udp_send(&r->req, h, &b, 1, to, on_sent);
  if (rc < 0) {
    free(r);
    ul->st.send_errors++;
    if (tg_udp_rate_ok(ul, RL_SEND))
      tg_log(TG_LOG_DEBUG, "listener %s: sending a datagram failed: %s",
             ul->svc->conf->name, uv_strerror(rc));
    return -1;
  }
  return 0;
}

int tg_udp_send_client(tg_udp_listener_t *ul, const struct sockaddr *to,
                       const void *data, size_t len) {
  if (udp_send(ul, &ul->udp, to, data, len) != 0) return -1;
  ul->st.dgrams_out++;
  ul->st.bytes_out += len;
  return 0;
}

int tg_udp_send_backend(tg_udp_listener_t *ul, uv_udp_t *h, const void *data,
                        size_t len) {
  if (udp_send(ul, h, NULL, data, len) != 0) return -1;
  ul->st.backend_dgrams_out++;
  return 0;
}

/* ---- the datagram BIO ----------------------------------------------------------
 * DTLS needs datagram boundaries: a memory BIO would glue a flight into one
 * blob.  This BIO hands the SSL exactly the datagram being fed, once, and
 * turns every write (one record or one packed flight packet) into one
 * datagram. */

static BIO_METHOD *dgram_method;
static int assoc_index = -1;
static uv_once_t init_once = UV_ONCE_INIT;

static int dgram_write(BIO *b, const char *data, int len) {
  tg_dgram_io_t *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (!io || len <= 0) return 0;
  tg_assoc_dgram_out(io->assoc, io->backend, (const uint8_t *)data, (size_t)len);
  return len; /* a dropped datagram is lost like any other */
}

static int dgram_read(BIO *b, char *out, int outl) {
  tg_dgram_io_t *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (!io || !io->rdata || outl <= 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = io->rlen < (size_t)outl ? io->rlen : (size_t)outl;
  memcpy(out, io->rdata, n);
  io->rdata = NULL;
  io->rlen = 0;
  return (int)n;
}

static long dgram_ctrl(BIO *b, int cmd, long num, void *ptr) {
  tg_dgram_io_t *io = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_PENDING:
    return io && io->rdata ? (long)io->rlen : 0;
  case BIO_CTRL_WPENDING:
    return 0;
  case BIO_CTRL_DGRAM_QUERY_MTU:
  case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
    return io ? (long)io->mtu : 0;
  default:
    return 0;
  }
}

static int dgram_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int dgram_destroy(BIO *b) {
  BIO_set_data(b, NULL);
  return 1;
}

static void init_once_cb(void) {
  dgram_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                              "tlsgate datagram");
  if (dgram_method) {
    BIO_meth_set_write(dgram_method, dgram_write);
    BIO_meth_set_read(dgram_method, dgram_read);
    BIO_meth_set_ctrl(dgram_method, dgram_ctrl);
    BIO_meth_set_create(dgram_method, dgram_create);
    BIO_meth_set_destroy(dgram_method, dgram_destroy);
  }
  assoc_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

BIO *tg_dgram_bio_new(tg_dgram_io_t *io) {
  uv_once(&init_once, init_once_cb);
  if (!dgram_method) return NULL;
  BIO *b = BIO_new(dgram_method);
  if (b) BIO_set_data(b, io);
  return b;
}

int tg_dtls_assoc_index(void) {
  uv_once(&init_once, init_once_cb);
  return assoc_index;
}

/* ---- cookies inside the TLS library (OpenSSL's DTLSv1_listen) ------------------ */

static tg_udp_assoc_t *assoc_of(SSL *ssl) {
  int idx = tg_dtls_assoc_index();
  return idx < 0 ? NULL : SSL_get_ex_data(ssl, idx);
}

static int cookie_generate(SSL *ssl, uint8_t *cookie, unsigned *len) {
  tg_udp_assoc_t *a = assoc_of(ssl);
  if (!a || tg_cookie_make(&a->svc->dtls->keys, tg_now_ms(),
                           (const struct sockaddr *)&a->peer, cookie) != 0)
    return 0;
  *len = TG_COOKIE_LEN;
  return 1;
}

static int cookie_verify(SSL *ssl, const uint8_t *cookie, unsigned len) {
  tg_udp_assoc_t *a = assoc_of(ssl);
  return a && tg_cookie_valid(&a->svc->dtls->keys, tg_now_ms(),
                              (const struct sockaddr *)&a->peer, cookie, len);
}

/* ---- service setup ---------------------------------------------------------------- */

int tg_dtls_service_setup(tg_service_t *s, tg_errors_t *errs, char *front,
                          size_t frontsize, char *back, size_t backsize) {
  const tg_listener_conf_t *l = s->conf;
  char where[400];
  size_t before = errs->n;
  uv_once(&init_once, init_once_cb);
  if (!dgram_method || assoc_index < 0) {
    tg_errors_add(errs, "%s: cannot set up DTLS I/O",
                  tg_config_where(l, "transport", where, sizeof(where)));
    return -1;
  }
  struct tg_dtls_svc *d = calloc(1, sizeof(*d));
  if (!d) {
    tg_errors_add(errs, "out of memory");
    return -1;
  }
  s->dtls = d;
  d->src_buckets = calloc(SRC_BUCKETS, sizeof(*d->src_buckets));
  if (!d->src_buckets || uv_mutex_init(&d->src_mu) != 0) {
    tg_errors_add(errs, "out of memory");
    return -1;
  }
  d->src_mu_ready = 1;
  if (RAND_bytes((uint8_t *)&d->src_seed, sizeof(d->src_seed)) != 1) ERR_clear_error();
  long total, per_source;
  fd_caps(&total, &per_source);
  atomic_store(&udp_total_cap, total);
  d->max_half_open = l->max_half_open > 0 ? l->max_half_open : 1024;
  d->max_half_open_per_source =
      l->max_half_open_per_source > 0 ? l->max_half_open_per_source : 32;
  d->max_assoc_per_source = l->max_associations_per_source > 0
                                ? l->max_associations_per_source
                                : (int)per_source;
  if (l->secure && l->dtls_cookie == TG_COOKIE_ON && !TG_DTLS_COOKIES)
    tg_errors_add(errs, "%s: on is not possible with %s: it removed server-side "
                  "HelloVerifyRequest (use auto or off here, or build with "
                  "make TLS=openssl)",
                  tg_config_where(l, "dtls_cookie", where, sizeof(where)),
                  TG_TLS_LIBRARY);
  d->cookies = l->secure && TG_DTLS_COOKIES && l->dtls_cookie != TG_COOKIE_OFF;
  if (d->cookies) {
    if (tg_cookie_keys_init(&d->keys, TG_COOKIE_PERIOD_MS, tg_now_ms()) != 0) {
      tg_errors_add(errs, "%s: cannot make the cookie secret",
                    tg_config_where(l, "dtls_cookie", where, sizeof(where)));
      return -1;
    }
    d->keys_ready = 1;
    char err[400];
    if (l->dtls_cookie_secret_file[0]) {
      if (tg_cookie_keys_load_shared(&d->keys, l->dtls_cookie_secret_file, err,
                                     sizeof(err)) != 0) {
        tg_errors_add(errs, "%s: %s", tg_config_where(l, "dtls_cookie_secret_file",
                      where, sizeof(where)), err);
        return -1;
      }
      if (err[0]) tg_log(TG_LOG_WARN, "listener %s: %s", l->name, err);
    }
  } else if (l->secure && l->dtls_cookie_secret_file[0] && !TG_DTLS_COOKIES) {
    tg_errors_add(errs, "%s: not possible with %s: it removed server-side "
                  "HelloVerifyRequest (build with make TLS=openssl)",
                  tg_config_where(l, "dtls_cookie_secret_file", where, sizeof(where)),
                  TG_TLS_LIBRARY);
  }

  snprintf(front, frontsize, "plaintext, %d associations per source, %ld "
           "in the process", d->max_assoc_per_source, total);
  if (l->secure) {
    char tls[900], psk[300] = "";
    SSL_CTX *ctx = tg_tls_server_ctx(l, errs, tls, sizeof(tls));
    if (!ctx) return -1;
    s->server_ctx = ctx;
    if (l->psk[0] && tg_psk_server_setup(ctx, l, errs, psk, sizeof(psk)) != 0)
      return -1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU);
    if (d->cookies) tg_dtls_set_cookie_cbs(ctx, cookie_generate, cookie_verify);
    /* "TLS >= 1.2, identity ..." -> "DTLS 1.2, identity ..." */
    const char *rest = strchr(tls, ',');
    snprintf(front, frontsize, "DTLS 1.2%s%s%s, cookies %s, mtu %d, half-open "
             "at most %d (%d per source), %d associations per source",
             rest ? rest : "", psk[0] ? ", " : "", psk,
             d->cookies                    ? "on"
             : l->dtls_cookie == TG_COOKIE_OFF ? "off: 3x rule"
                                           : "off (" TG_TLS_LIBRARY " cannot): 3x rule",
             l->dtls_mtu, d->max_half_open, d->max_half_open_per_source,
             d->max_assoc_per_source);
  }
  if (l->backend_secure) {
    char tls[600];
    s->backend_ctx = tg_tls_backend_ctx(l, errs, tls, sizeof(tls));
    if (s->backend_ctx) {
      SSL_CTX_set_options(s->backend_ctx, SSL_OP_NO_QUERY_MTU);
      snprintf(back, backsize, "D%s", tls); /* "TLS to backends" -> "DTLS ..." */
      char psk[200];
      if (l->backend_psk[0]) {
        if (tg_psk_client_setup(s->backend_ctx, l, errs, psk, sizeof(psk)) != 0) return -1;
        snprintf(back, backsize, "DTLS to backends, %s", psk);
      }
    }
  }
  return errs->n > before ? -1 : 0;
}

void tg_dtls_service_free(tg_service_t *s) {
  struct tg_dtls_svc *d = s->dtls;
  if (!d) return;
  if (d->keys_ready) tg_cookie_keys_destroy(&d->keys);
  if (d->src_mu_ready) uv_mutex_destroy(&d->src_mu);
  if (d->src_buckets)
    for (size_t i = 0; i < SRC_BUCKETS; i++) {
      struct src_count *c = d->src_buckets[i];
      while (c) {
        struct src_count *next = c->next;
        free(c);
        c = next;
      }
    }
  free(d->src_buckets);
  free(d);
  s->dtls = NULL;
}

/* ---- the listening socket ------------------------------------------------------------ */

/* Two lines (a log line holds about 1 KiB): traffic and associations,
 * then everything dropped. */
static void log_stats(tg_udp_listener_t *ul) {
  const tg_udp_stats_t *s = &ul->st;
  const char *name = ul->svc->conf->name;
  int wi = ul->w->index;
  tg_log(TG_LOG_INFO,
         "listener %s (worker %d): udp stats: from clients %llu datagrams / "
         "%llu bytes, to clients %llu datagrams / %llu bytes, hello-verify %llu "
         "(%llu held back), cookies ok %llu bad %llu, to backends %llu datagrams, from backends "
         "%llu; associations open %zu, created %llu, peak %llu, half-open peak "
         "%llu; handshakes ok %llu, failed %llu, timed out %llu, restarted %llu",
         name, wi, (unsigned long long)s->dgrams_in,
         (unsigned long long)s->bytes_in, (unsigned long long)s->dgrams_out,
         (unsigned long long)s->bytes_out, (unsigned long long)s->hvr_sent,
         (unsigned long long)s->hvr_limited, (unsigned long long)s->cookie_ok, (unsigned long long)s->cookie_bad,
         (unsigned long long)s->backend_dgrams_out,
         (unsigned long long)s->backend_dgrams_in, ul->nassoc,
         (unsigned long long)s->assoc_created, (unsigned long long)s->assoc_peak,
         (unsigned long long)s->half_open_peak, (unsigned long long)s->hs_ok,
         (unsigned long long)s->hs_failed, (unsigned long long)s->hs_timeout,
         (unsigned long long)s->restarted);
  tg_log(TG_LOG_INFO,
         "listener %s (worker %d): udp drops: short %llu, not-dtls %llu, "
         "not-hello %llu, truncated %llu, half-open cap %llu total / %llu per "
         "address, max_connections %llu, draining %llu, send queue %llu, held "
         "queue %llu, too large %llu, send errors %llu, evicted %llu, "
         "amplification-limited %llu, associations per source %llu, process "
         "cap %llu, local errors %llu, kernel (receive buffer full) %llu",
         name, wi, (unsigned long long)s->drop_short,
         (unsigned long long)s->drop_garbage,
         (unsigned long long)s->drop_not_hello,
         (unsigned long long)s->drop_truncated,
         (unsigned long long)s->drop_half_open_total,
         (unsigned long long)s->drop_half_open_addr,
         (unsigned long long)s->drop_max_conn,
         (unsigned long long)s->drop_draining, (unsigned long long)s->drop_sendq,
         (unsigned long long)s->drop_queue, (unsigned long long)s->too_large,
         (unsigned long long)s->send_errors, (unsigned long long)s->evicted,
         (unsigned long long)s->amp_held,
         (unsigned long long)s->drop_assoc_source,
         (unsigned long long)s->drop_assoc_total,
         (unsigned long long)s->local_errors, (unsigned long long)s->kernel_drops);
}

static void on_socket_closed(uv_handle_t *h) {
  tg_udp_listener_t *ul = h->data;
  log_stats(ul);
  tg_udp_listener_t **pp = &ul->w->udp_listeners;
  while (*pp && *pp != ul) pp = &(*pp)->next;
  if (*pp) *pp = ul->next;
  tg_runtime_unref(ul->rt);
  for (size_t i = 0; i < ADDR_BUCKETS; i++) {
    addr_count_t *c = ul->addr_buckets[i];
    while (c) {
      addr_count_t *next = c->next;
      free(c);
      c = next;
    }
  }
  free(ul->addr_buckets);
  free(ul->buckets);
  free(ul->mmsgbuf);
  ul->magic = 0;
  free(ul);
}

static void close_socket(tg_udp_listener_t *ul) {
  if (ul->closing) return;
  count_kernel_drops(ul);
  ul->closing = 1;
  uv_close((uv_handle_t *)&ul->udp, on_socket_closed);
}

/* One buffer for a whole recvmmsg batch: libuv cuts it into
 * TG_UDP_RECV_BUF chunks, calls on_recv with UV_UDP_MMSG_CHUNK for each
 * datagram and last with UV_UDP_MMSG_FREE (nothing to free: the listener
 * owns it). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tg_udp_listener_t *ul = h->data;
  if (ul->mmsgbuf) {
    buf->base = (char *)ul->mmsgbuf;
    buf->len = (size_t)TG_UDP_MMSG_CHUNKS * TG_UDP_RECV_BUF;
  } else {
    buf->base = (char *)ul->recvbuf;
    buf->len = sizeof(ul->recvbuf);
  }
}

/* The kernel's count of datagrams dropped on the listening socket
 * (SO_MEMINFO; 0 where the kernel does not say). */
static uint32_t kernel_drops(tg_udp_listener_t *ul) {
  uv_os_fd_t fd;
  uint32_t mi[SK_MEMINFO_VARS] = {0};
  socklen_t len = sizeof(mi);
  if (uv_fileno((uv_handle_t *)&ul->udp, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) != 0 ||
      len <= SK_MEMINFO_DROPS * sizeof(uint32_t))
    return ul->drops_seen;
  return mi[SK_MEMINFO_DROPS];
}

/* Adds the drops since the last look to the stats and the metric.  A
 * draining listener leaves it to its successor on the same socket. */
static void count_kernel_drops(tg_udp_listener_t *ul) {
  if (ul->draining || ul->closing) return;
  ul->drops_read_ms = uv_now(ul->udp.loop);
  uint32_t now = kernel_drops(ul), delta = now - ul->drops_seen;
  ul->drops_seen = now;
  if (!delta) return;
  ul->st.kernel_drops += delta;
  atomic_fetch_add_explicit(&ul->svc->stats->udp_kernel_drops, delta,
                            memory_order_relaxed);
}

/* Room for bursts (handshakes, devices waking together): SO_RCVBUFFORCE
 * when privileged, else SO_RCVBUF up to net.core.rmem_max.  Says what it
 * got once per listener. */
static void size_receive_buffer(tg_udp_listener_t *ul, int fd) {
  int want = TG_UDP_RCVBUF, got = 0;
  socklen_t len = sizeof(got);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) != 0) return;
  if (ul->w->index != 0) return;
  got /= 2; /* Linux reports twice what it accounts for the payload */
  if (got < want)
    tg_log(TG_LOG_WARN, "listener %s: receive buffer %d KiB (asked for %d KiB; "
           "raise net.core.rmem_max, or run with CAP_NET_ADMIN): a burst "
           "beyond it is dropped by the kernel (tlsgate_udp_kernel_drops_total)",
           ul->svc->conf->name, got / 1024, want / 1024);
  else
    tg_log(TG_LOG_INFO, "listener %s: receive buffer %d KiB", ul->svc->conf->name,
           got / 1024);
}

static void send_hvr(tg_udp_listener_t *ul, const struct sockaddr *to,
                     const tg_dgram_info_t *info) {
  uint8_t cookie[TG_COOKIE_LEN], out[TG_HVR_LEN];
  if (tg_cookie_make(&ul->ds->keys, tg_now_ms(), to, cookie) != 0) return;
  size_t n = tg_dtls_build_hvr(info, cookie, sizeof(cookie), out, sizeof(out));
  if (n && tg_udp_send_client(ul, to, out, n) == 0) {
    ul->st.hvr_sent++;
    atomic_fetch_add_explicit(&ul->svc->stats->dtls_hello_verify, 1, memory_order_relaxed);
  }
}

static void drop(tg_udp_listener_t *ul, const struct sockaddr *from,
                 const char *why, uint64_t *counter) {
  (*counter)++;
  atomic_fetch_add_explicit(&ul->svc->stats->udp_dropped, 1, memory_order_relaxed);
  if (tg_log_enabled(TG_LOG_DEBUG) && tg_udp_rate_ok(ul, RL_DROP)) {
    char peer[64];
    tg_format_peer(from, peer, sizeof(peer));
    tg_log(TG_LOG_DEBUG, "listener %s: dropped a datagram from %s: %s "
           "(%llu such so far; at most one line a second)",
           ul->svc->conf->name, peer, why, (unsigned long long)*counter);
  }
}

int tg_udp_over_max_connections(tg_udp_listener_t *ul, const struct sockaddr *from) {
  int max = ul->rt->cfg->max_connections;
  if (max <= 0 || atomic_load(&tg_active_connections) < max) return 0;
  ul->st.drop_max_conn++;
  atomic_fetch_add(&ul->svc->stats->rejected_max, 1);
  if (tg_udp_rate_ok(ul, RL_MAX_CONN)) {
    char peer[64];
    tg_format_peer(from, peer, sizeof(peer));
    tg_log(TG_LOG_WARN, "listener %s: max_connections (%d) reached: ignoring "
           "new client %s (%llu so far)", ul->svc->conf->name, max, peer,
           (unsigned long long)ul->st.drop_max_conn);
  }
  return 1;
}

/* A ClientHello that starts a new association (its cookie, if any, is
 * verified).  With a predecessor, the new handshake is its successor. */
static void new_dtls_assoc(tg_udp_listener_t *ul, const struct sockaddr *from,
                           uint64_t hash, const uint8_t *p, size_t n,
                           const tg_dgram_info_t *info, int cookie_checked,
                           tg_udp_assoc_t *predecessor) {
  if (tg_udp_over_max_connections(ul, from)) return;
  /* At most one parallel handshake per peer: a newer one replaces it. */
  if (predecessor && predecessor->successor)
    tg_assoc_close(predecessor->successor, TG_LOG_INFO, 0,
                   "replaced by a newer ClientHello from the same address and port");
  const char *cap = admit(ul, from, 1);
  if (cap) {
    if (strcmp(cap, "associations per source") != 0 &&
        tg_udp_rate_ok(ul, RL_HALF_OPEN)) {
      char peer[64];
      tg_format_peer(from, peer, sizeof(peer));
      tg_log(TG_LOG_WARN, "listener %s: half-open DTLS handshakes at the %s "
             "cap (max_half_open = %d, max_half_open_per_source = %d): "
             "ignoring ClientHello from %s (%llu + %llu so far, %llu evicted)",
             ul->svc->conf->name, cap, ul->ds->max_half_open,
             ul->ds->max_half_open_per_source, peer,
             (unsigned long long)ul->st.drop_half_open_total,
             (unsigned long long)ul->st.drop_half_open_addr,
             (unsigned long long)ul->st.evicted);
    }
    return;
  }
  if (predecessor && predecessor->state == TG_ASSOC_CLOSING) predecessor = NULL;
  tg_udp_assoc_t *a = tg_assoc_new(ul, from, hash, predecessor);
  if (!a) {
    admit_undo(ul, from, 1);
    return;
  }
  admitted(ul, a, 1);
  memcpy(a->hello_random, info->random, sizeof(a->hello_random));
  tg_assoc_start_dtls(a, p, n, cookie_checked);
}

/* Records for a known peer.  While a new handshake from it is pending,
 * epoch 0 belongs to the new one and later epochs are offered to both:
 * each session silently drops what it cannot decrypt. */
static void route_records(tg_udp_assoc_t *a, const uint8_t *p, size_t n,
                          const tg_dgram_info_t *info, tg_dgram_kind_t kind) {
  tg_udp_assoc_t *s = a->successor;
  if (!s || kind != TG_DGRAM_RECORD) {
    tg_assoc_client_datagram(a, p, n);
    return;
  }
  if (info->epoch != 0) tg_assoc_client_datagram(a, p, n);
  /* a may have closed and handed the peer to s: s is still valid memory
   * (freed only after its handles close) and ignores datagrams once closing */
  tg_assoc_client_datagram(s, p, n);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *from, unsigned flags) {
  tg_udp_listener_t *ul = h->data;
  if (uv_now(h->loop) - ul->drops_read_ms >= 1000) count_kernel_drops(ul);
  if (nread == 0 || !from) return; /* nothing more to read now, or batch end */
  if (nread < 0) {
    if (tg_udp_rate_ok(ul, RL_RECV_ERROR))
      tg_log(TG_LOG_WARN, "listener %s: receive failed: %s", ul->svc->conf->name,
             uv_strerror((int)nread));
    return;
  }
  if (from->sa_family != AF_INET && from->sa_family != AF_INET6) return;
  const uint8_t *p = (const uint8_t *)buf->base;
  size_t n = (size_t)nread;
  ul->st.dgrams_in++;
  ul->st.bytes_in += n;
  if (flags & UV_UDP_PARTIAL) {
    drop(ul, from, "larger than the receive buffer", &ul->st.drop_truncated);
    return;
  }
  uint64_t hash = peer_hash(ul, from);
  tg_udp_assoc_t *a = lookup(ul, from, hash);
  if (a && !a->ssl) { /* a plain relay association (secure = off) */
    tg_assoc_client_datagram(a, p, n);
    return;
  }
  if (!a && !ul->svc->server_ctx) {
    if (ul->draining) {
      drop(ul, from, "new client while draining", &ul->st.drop_draining);
      return;
    }
    if (tg_udp_over_max_connections(ul, from)) return;
    if (admit(ul, from, 0)) return;
    if (total_reserve(ul, from) != 0) {
      admit_undo(ul, from, 0);
      return;
    }
    a = tg_assoc_new(ul, from, hash, NULL);
    if (!a) {
      admit_undo(ul, from, 0);
      atomic_fetch_sub(&udp_total, 1);
      return;
    }
    admitted(ul, a, 0);
    a->total_counted = 1;
    tg_assoc_start_plain(a, p, n);
    return;
  }

  tg_dgram_info_t info;
  tg_dgram_kind_t kind = tg_dgram_classify(p, n, &info);
  if (a) {
    if (kind != TG_DGRAM_CLIENT_HELLO) {
      route_records(a, p, n, &info, kind);
      return;
    }
    /* A retransmitted ClientHello (see tg_assoc_hello_again). */
    if (memcmp(info.random, a->hello_random, sizeof(a->hello_random)) == 0) {
      tg_assoc_hello_again(a, p, n);
      return;
    }
    if (a->successor && memcmp(info.random, a->successor->hello_random,
                               sizeof(a->hello_random)) == 0) {
      tg_assoc_hello_again(a->successor, p, n);
      return;
    }
    /* Otherwise the peer starts over (or someone says so in its name). */
  }
  switch (kind) {
  case TG_DGRAM_SHORT:
    drop(ul, from, "too short for DTLS", &ul->st.drop_short);
    return;
  case TG_DGRAM_GARBAGE:
    drop(ul, from, "not DTLS", &ul->st.drop_garbage);
    return;
  case TG_DGRAM_RECORD:
    drop(ul, from, "not a ClientHello from an unknown peer", &ul->st.drop_not_hello);
    return;
  case TG_DGRAM_CLIENT_HELLO:
    break;
  }
  if (ul->draining) {
    drop(ul, from, "new handshake while draining", &ul->st.drop_draining);
    return;
  }
  /* Answering must never send more than we got. */
  if (n < TG_HVR_LEN) {
    drop(ul, from, "ClientHello smaller than a HelloVerifyRequest", &ul->st.drop_short);
    return;
  }
  if (ul->ds->cookies) {
    if (info.cookie_len == 0 ||
        !tg_cookie_valid(&ul->ds->keys, tg_now_ms(), from, info.cookie,
                         info.cookie_len)) {
      if (info.cookie_len) {
        ul->st.cookie_bad++;
        atomic_fetch_add_explicit(&ul->svc->stats->dtls_cookie_bad, 1, memory_order_relaxed);
      }
      if (a) {
        /* RFC 6347 4.2.8: keep the association until the peer proves it
         * is there; at most one HelloVerifyRequest a second towards it. */
        uint64_t now = uv_now(&ul->w->loop);
        if (a->state != TG_ASSOC_HANDSHAKE) {
          /* An established peer is not sent a HelloVerifyRequest for one
           * ClientHello in its name (a live client stalls on it): only
           * when the same ClientHello comes again TG_SUCCESSOR_WAIT_MS or
           * more later -- a rebooted client's retransmission -- and the
           * session has not heard from the peer since. */
          if (a->hvr_first_ms == 0 ||
              memcmp(info.random, a->hvr_random, sizeof(a->hvr_random)) != 0) {
            memcpy(a->hvr_random, info.random, sizeof(a->hvr_random));
            a->hvr_first_ms = now;
            ul->st.hvr_limited++;
            return;
          }
          if (now - a->hvr_first_ms < TG_SUCCESSOR_WAIT_MS ||
              a->peer_auth_ms >= a->hvr_first_ms) {
            ul->st.hvr_limited++;
            return;
          }
        }
        if (a->last_hvr_ms && now - a->last_hvr_ms < 1000) {
          ul->st.hvr_limited++;
          return;
        }
        a->last_hvr_ms = now;
      }
      send_hvr(ul, from, &info);
      return;
    }
    ul->st.cookie_ok++;
    atomic_fetch_add_explicit(&ul->svc->stats->dtls_cookie_ok, 1, memory_order_relaxed);
    if (a && a->state == TG_ASSOC_HANDSHAKE) {
      ul->st.restarted++;
      tg_assoc_close(a, TG_LOG_INFO, 0, "client started a new handshake from "
                     "the same address and port (cookie verified)");
      a = NULL;
    }
    /* An established association stays until the new handshake completes:
     * a cookie shows the sender receives at that address, not that it is
     * the peer. */
    new_dtls_assoc(ul, from, hash, p, n, &info, 1, a);
    return;
  }
  if (a && a->state == TG_ASSOC_HANDSHAKE) {
    /* Nothing established to protect: start over at once. */
    ul->st.restarted++;
    tg_assoc_close(a, TG_LOG_INFO, 0,
                   "client started a new handshake from the same address and port");
    a = NULL;
  }
  new_dtls_assoc(ul, from, hash, p, n, &info, 0, a);
}

static void warn_cookies_off(const tg_service_t *s) {
  const tg_listener_conf_t *c = s->conf;
  const struct tg_dtls_svc *d = s->dtls;
  tg_log(TG_LOG_INFO, "listener %s: udp caps: %d associations per source%s, "
         "%ld in the process (derived from the fd limit)%s", c->name,
         d->max_assoc_per_source,
         c->max_associations_per_source ? "" : " (derived from the fd limit)",
         (long)atomic_load(&udp_total_cap),
         c->secure ? "; see the half-open caps below" : "");
  if (!c->secure) return;
  if (d->cookies) {
    tg_log(TG_LOG_INFO, "listener %s: DTLS cookies on: a ClientHello without a "
           "valid cookie gets a HelloVerifyRequest no larger than itself; "
           "half-open handshakes: max_half_open = %d, max_half_open_per_source "
           "= %d", c->name, d->max_half_open, d->max_half_open_per_source);
    return;
  }
  if (c->dtls_cookie == TG_COOKIE_OFF)
    tg_log(TG_LOG_INFO, "listener %s: dtls_cookie = off: no stateless cookie "
           "check; a peer gets at most %dx the bytes it sent and nothing on a "
           "timer until its handshake completes; half-open handshakes are "
           "capped (max_half_open = %d, max_half_open_per_source = %d, the "
           "busiest source's oldest evicted first) and last at most "
           "handshake_timeout",
           c->name, TG_AMP_FACTOR, d->max_half_open, d->max_half_open_per_source);
  else
    tg_log(TG_LOG_WARN, "listener %s: DTLS cookies are off: %s removed "
           "server-side HelloVerifyRequest, so spoofed ClientHellos cannot be "
           "told apart; damage is bounded: a peer gets at most %dx the bytes "
           "it sent and nothing on a timer until its handshake completes, "
           "half-open handshakes are capped (max_half_open = %d, "
           "max_half_open_per_source = %d, the busiest source's oldest evicted "
           "first) and end at handshake_timeout "
           "(build with make TLS=openssl for RFC 6347 cookies)",
           c->name, TG_TLS_LIBRARY, TG_AMP_FACTOR, d->max_half_open,
           d->max_half_open_per_source);
}

/* Moves a listener to service s of the worker's current runtime. */
static void adopt(tg_udp_listener_t *ul, tg_service_t *s) {
  tg_runtime_t *old = ul->rt;
  ul->rt = ul->w->rt;
  tg_runtime_ref(ul->rt);
  ul->svc = s;
  ul->ds = s->dtls;
  tg_runtime_unref(old);
}

static void start_draining(tg_udp_listener_t *ul) {
  if (ul->draining) return;
  ul->draining = 1;
  if (ul->nassoc)
    tg_log(TG_LOG_INFO, "listener %s (worker %d): no new clients; %zu "
           "association(s) go on until they end or drain_timeout",
           ul->svc->conf->name, ul->w->index, ul->nassoc);
  if (ul->nalive == 0) close_socket(ul);
}

static int listener_open(tg_worker_t *w, tg_service_t *s, char *err,
                         size_t errsize) {
  tg_udp_listener_t *ul = calloc(1, sizeof(*ul));
  if (ul) {
    ul->buckets = calloc(MIN_BUCKETS, sizeof(*ul->buckets));
    ul->addr_buckets = calloc(ADDR_BUCKETS, sizeof(*ul->addr_buckets));
  }
  if (!ul || !ul->buckets || !ul->addr_buckets) {
    if (ul) {
      free(ul->buckets);
      free(ul->addr_buckets);
    }
    free(ul);
    snprintf(err, errsize, "listener %s: out of memory", s->conf->name);
    return -1;
  }
  ul->magic = TG_UDP_LISTENER_MAGIC;
  ul->nbuckets = MIN_BUCKETS;
  ul->w = w;
  ul->rt = w->rt;
  tg_runtime_ref(ul->rt);
  ul->svc = s;
  ul->ds = s->dtls;
  if (RAND_bytes((uint8_t *)&ul->seed, sizeof(ul->seed)) != 1) ERR_clear_error();
  uv_udp_init_ex(&w->loop, &ul->udp, AF_UNSPEC | UV_UDP_RECVMMSG);
  ul->udp.data = ul;
  /* Without it, one datagram per read (on_alloc falls back to recvbuf). */
  ul->mmsgbuf = malloc((size_t)TG_UDP_MMSG_CHUNKS * TG_UDP_RECV_BUF);
  ul->next = w->udp_listeners;
  w->udp_listeners = ul;
  /* Our own dup() of the runtime's socket for this worker: the runtime
   * closes its copy when it is released. */
  int fd = s->fds[w->index] >= 0 ? fcntl(s->fds[w->index], F_DUPFD_CLOEXEC, 0) : -1;
  int rc = fd < 0 ? UV_EBADF : uv_udp_open(&ul->udp, fd);
  if (rc < 0 && fd >= 0) close(fd);
  if (rc == 0) {
    size_receive_buffer(ul, fd);
    ul->drops_seen = kernel_drops(ul); /* count from now on */
    ul->drops_read_ms = uv_now(&w->loop);
    rc = uv_udp_recv_start(&ul->udp, on_alloc, on_recv);
  }
  if (rc < 0) {
    snprintf(err, errsize, "listener %s: %s", s->conf->name, uv_strerror(rc));
    ul->draining = 1;
    close_socket(ul);
    return -1;
  }
  if (w->index == 0) warn_cookies_off(s);
  return 0;
}

int tg_udp_worker_sync(tg_worker_t *w, char *err, size_t errsize) {
  tg_runtime_t *rt = w->rt;
  int claimed[TG_MAX_LISTENERS] = {0};
  for (tg_udp_listener_t *ul = w->udp_listeners; ul; ul = ul->next) {
    if (ul->draining) continue;
    if (ul->rt == rt) { /* already on this runtime */
      for (size_t i = 0; i < rt->nservices; i++)
        if (rt->services[i] == ul->svc) claimed[i] = 1;
      continue;
    }
    const tg_hostport_t *b = &ul->svc->conf->bind;
    size_t match = rt->nservices;
    for (size_t i = 0; i < rt->nservices; i++) {
      const tg_listener_conf_t *c = rt->services[i]->conf;
      if (!claimed[i] && c->transport == TG_TRANSPORT_UDP &&
          c->bind.addrlen == b->addrlen &&
          memcmp(&c->bind.addr, &b->addr, b->addrlen) == 0) {
        match = i;
        break;
      }
    }
    if (match < rt->nservices) {
      claimed[match] = 1;
      adopt(ul, rt->services[match]);
    } else {
      start_draining(ul);
    }
  }
  int rc = 0;
  for (size_t i = 0; i < rt->nservices; i++) {
    tg_service_t *s = rt->services[i];
    if (claimed[i] || s->conf->transport != TG_TRANSPORT_UDP) continue;
    if (listener_open(w, s, err, errsize) != 0) rc = -1;
  }
  return rc;
}

void tg_udp_worker_drain(tg_worker_t *w) {
  for (tg_udp_listener_t *ul = w->udp_listeners; ul; ul = ul->next)
    start_draining(ul);
}

void tg_udp_worker_close_all(tg_worker_t *w, const char *reason) {
  for (tg_udp_listener_t *ul = w->udp_listeners; ul; ul = ul->next) {
    size_t limit = ul->nassoc; /* each close takes one off the list */
    while (ul->all && limit--) tg_assoc_close(ul->all, TG_LOG_INFO, 1, "%s", reason);
  }
}
