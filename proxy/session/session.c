/* The transport-independent session core (session.h). */
#include "session.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "metrics.h"

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
  } else if (sa->sa_family == AF_UNIX) {
    snprintf(buf, size, "unix");
  } else {
    snprintf(buf, size, "?");
  }
}

/* ---- identity and lifetime ------------------------------------------------ */

int tg_session_start(tg_session_t *s, const tg_session_ops_t *ops, tg_worker_t *w,
                     tg_runtime_t *rt, tg_service_t *svc, const struct sockaddr *peer) {
  s->ops = ops;
  s->w = w;
  s->svc = svc;
  s->rt = rt;
  tg_runtime_ref(s->rt);
  s->id = tg_next_conn_id();
  s->backend_idx = -1;
  s->started_ms = s->last_activity_ms = uv_now(&w->loop);
  tg_format_peer(peer, s->peer, sizeof(s->peer));
  w->nconns++;
  int active = atomic_fetch_add(&tg_active_connections, 1) + 1;
  atomic_fetch_add_explicit(&svc->stats->accepted, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&svc->stats->active, 1, memory_order_relaxed);
  return active;
}

void tg_session_switch_service(tg_session_t *s, tg_service_t *to) {
  atomic_fetch_sub_explicit(&s->svc->stats->active, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&to->stats->active, 1, memory_order_relaxed);
  s->svc = to;
}

void tg_session_unref(tg_session_t *s) {
  assert(s->refs > 0);
  if (--s->refs > 0) return;
  tg_worker_t *w = s->w;
  tg_runtime_t *rt = s->rt;
  s->ops->destroy(s);
  tg_runtime_unref(rt);
  tg_worker_conn_done(w);
}

void tg_session_on_closed(uv_handle_t *h) { tg_session_unref(h->data); }

void tg_session_log(tg_session_t *s, tg_log_level_t level, const char *event,
                    const char *fmt, ...) {
  if (!tg_log_enabled(level)) return;
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  tg_log_conn(level, s->id, s->svc->conf->name, s->peer, event, "%s", msg);
}

void tg_session_set_state(tg_session_t *s, int state) {
  if (s->state == state) return;
  tg_session_log(s, TG_LOG_DEBUG, "state", "%s -> %s", s->ops->state_names[s->state],
                 s->ops->state_names[state]);
  s->state = state;
}

const char *tg_session_backend_text(const tg_session_t *s) {
  return s->backend_idx >= 0 ? s->svc->conf->backends[s->backend_idx].text : "-";
}

void tg_session_closed(tg_session_t *s, tg_log_level_t level, const char *reason) {
  uint64_t ms = uv_now(&s->w->loop) - s->started_ms;
  tg_session_log(s, level, "close",
                 "%s; backend %s; %llu bytes from client, %llu bytes from backend, "
                 "%llu.%03llus",
                 reason, tg_session_backend_text(s),
                 (unsigned long long)s->bytes_from_client,
                 (unsigned long long)s->bytes_from_backend,
                 (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
  tg_session_set_state(s, s->ops->closing);
  tg_lstats_t *st = s->svc->stats;
  atomic_fetch_sub_explicit(&st->active, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&st->bytes_from_client, s->bytes_from_client,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&st->bytes_from_backend, s->bytes_from_backend,
                            memory_order_relaxed);
  atomic_fetch_sub(&tg_active_connections, 1);
}

/* ---- handshakes ------------------------------------------------------------- */

void tg_session_count_handshake(tg_session_t *s, tg_hs_result_t r) {
  atomic_fetch_add_explicit(&s->svc->stats->handshakes[r], 1, memory_order_relaxed);
}

void tg_session_handshake_ok(tg_session_t *s, SSL *ssl) {
  tg_lstats_t *st = s->svc->stats;
  tg_session_count_handshake(s, TG_HS_OK);
  /* DTLS 1.2 counts as 1.2 */
  atomic_fetch_add_explicit(SSL_version(ssl) == TLS1_3_VERSION ? &st->tls13 : &st->tls12,
                            1, memory_order_relaxed);
  if (SSL_session_reused(ssl))
    atomic_fetch_add_explicit(&st->resumed, 1, memory_order_relaxed);
  tg_stats_cipher(st, SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}

/* ---- backends ------------------------------------------------------------------ */

typedef struct {
  uv_getaddrinfo_t req;
  tg_session_t *s;
  unsigned attempt; /* a late answer for an abandoned attempt is dropped */
} gai_t;

static void settle(tg_session_t *s) {
  if (s->ops->settle) s->ops->settle(s);
}

static void resolve_failed(tg_session_t *s, const char *host, int status) {
  char reason[300];
  snprintf(reason, sizeof(reason), "cannot resolve %s: %s", host, uv_strerror(status));
  tg_session_backend_failed(s, reason);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  gai_t *g = (gai_t *)req;
  tg_session_t *s = g->s;
  unsigned attempt = g->attempt;
  free(g);
  if (s->state == s->ops->connecting && attempt == s->attempt) {
    if (status < 0 || !res)
      resolve_failed(s, s->svc->conf->backends[s->backend_idx].host, status);
    else
      s->ops->open_backend(s, res->ai_addr);
    settle(s);
  }
  uv_freeaddrinfo(res);
  tg_session_unref(s);
}

void tg_session_connect_next(tg_session_t *s) {
  const tg_listener_conf_t *l = s->svc->conf;
  int idx = tg_backend_pick(s->svc, s->tried, tg_now_ms());
  if (idx < 0) {
    char reason[100];
    snprintf(reason, sizeof(reason), "no backend available (%zu tried)", l->nbackends);
    s->ops->fail(s, TG_LOG_WARN, reason);
    return;
  }
  s->tried |= 1ULL << idx;
  s->backend_idx = idx;
  s->attempt++;
  s->ops->arm_connect(s, l->connect_timeout_ms);
  const tg_hostport_t *b = &l->backends[idx];
  if (b->is_literal) {
    s->ops->open_backend(s, (const struct sockaddr *)&b->addr);
    return;
  }
  gai_t *g = malloc(sizeof(*g));
  if (!g) {
    s->ops->fail(s, s->ops->oom_level, "out of memory");
    return;
  }
  g->s = s;
  g->attempt = s->attempt;
  char port[8];
  snprintf(port, sizeof(port), "%u", b->port);
  struct addrinfo hints = {.ai_socktype = s->ops->socktype};
  int rc = uv_getaddrinfo(&s->w->loop, &g->req, on_resolved, b->host, port, &hints);
  if (rc < 0) {
    free(g);
    resolve_failed(s, b->host, rc);
    return;
  }
  s->refs++;
}

static void on_backend_closed_retry(uv_handle_t *h) {
  tg_session_t *s = h->data;
  if (s->state == s->ops->connecting) {
    tg_session_connect_next(s);
    settle(s);
  }
  tg_session_unref(s);
}

void tg_session_backend_failed(tg_session_t *s, const char *reason) {
  if (s->state == s->ops->closing) return;
  uint64_t rest = tg_backend_failed(s->svc, s->backend_idx, tg_now_ms());
  atomic_fetch_add(&s->svc->stats->backend_failures[s->backend_idx], 1);
  tg_session_log(s, TG_LOG_WARN, "backend", "backend %s: %s; resting it for %llu ms",
                 tg_session_backend_text(s), reason, (unsigned long long)rest);
  tg_session_set_state(s, s->ops->connecting);
  uv_handle_t *h = s->ops->drop_backend(s);
  if (h) {
    /* The handle's own ref keeps s alive until the callback retries. */
    uv_close(h, on_backend_closed_retry);
    return;
  }
  tg_session_connect_next(s);
}

void tg_session_backend_answers(tg_session_t *s) {
  if (tg_backend_ok(s->svc, s->backend_idx))
    tg_session_log(s, TG_LOG_INFO, "backend", "backend %s is answering again",
                   tg_session_backend_text(s));
}

void tg_session_count_local_error(tg_session_t *s) {
  atomic_fetch_add_explicit(&s->svc->stats->backend_local_errors, 1, memory_order_relaxed);
}
