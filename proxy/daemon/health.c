#include "health.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "tls.h"

/* One per listener with backend_check != off: its interval timer and what
 * the last check of each backend found.  Freed when its timer is closed
 * and no probe of it is in flight. */
typedef struct checker {
  uv_timer_t timer;
  tg_runtime_t *rt; /* a reference */
  tg_service_t *svc;
  int state[TG_MAX_BACKENDS]; /* -1 not checked yet, 0 down, 1 up */
  int inflight[TG_MAX_BACKENDS];
  int refs;                   /* the timer + probes in flight */
  int stopped;
  struct checker *next;
} checker_t;

/* One check of one backend. */
typedef struct probe {
  uv_getaddrinfo_t gai;
  uv_poll_t poll;
  uv_timer_t timer;
  int fd;
  int resolving, poll_open, closing, pending;
  SSL *ssl;
  tg_tls_note_t note;
  checker_t *ck;
  int idx;
  int ok;
  char why[400];
  struct probe *next, *prev;
} probe_t;

static checker_t *checkers;
static probe_t *probes;

static void checker_unref(checker_t *ck) {
  if (--ck->refs > 0) return;
  tg_runtime_unref(ck->rt);
  free(ck);
}

static void probe_release(probe_t *p) {
  if (--p->pending > 0) return;
  SSL_free(p->ssl);
  if (p->fd >= 0) close(p->fd);
  checker_t *ck = p->ck;
  ck->inflight[p->idx] = 0;
  free(p);
  checker_unref(ck);
}

static void probe_freed(uv_handle_t *h) { probe_release(h->data); }

static void report(probe_t *p) {
  checker_t *ck = p->ck;
  tg_service_t *s = ck->svc;
  const tg_listener_conf_t *l = s->conf;
  const char *name = l->backends[p->idx].text;
  tg_backend_t *b = &s->backends[p->idx];
  if (ck->stopped) return; /* a newer runtime is checked now */
  int was = ck->state[p->idx];
  if (p->ok) {
    ck->state[p->idx] = 1;
    atomic_store(&b->fails, 0);
    atomic_store(&b->rest_until_ms, 0);
    if (was == 0)
      tg_log(TG_LOG_INFO, "listener %s: backend %s is up again (backend_check %s)",
             l->name, name, l->backend_check == TG_CHECK_TLS ? "tls" : "connect");
    else if (was < 0)
      tg_log(TG_LOG_DEBUG, "listener %s: backend %s is up (backend_check)", l->name, name);
  } else {
    ck->state[p->idx] = 0;
    atomic_fetch_add(&b->fails, 1);
    /* Down until a check succeeds (or a client gets through). */
    atomic_store(&b->rest_until_ms, UINT64_MAX);
    if (s->stats) atomic_fetch_add(&s->stats->backend_check_failures[p->idx], 1);
    if (was != 0)
      tg_log(TG_LOG_WARN, "listener %s: backend %s is down (backend_check %s: %s)",
             l->name, name, l->backend_check == TG_CHECK_TLS ? "tls" : "connect",
             p->why);
  }
}

static void probe_finish(probe_t *p, int ok, const char *why) {
  if (p->closing) return;
  p->closing = 1;
  p->ok = ok;
  if (why) snprintf(p->why, sizeof(p->why), "%s", why);
  report(p);
  if (p->prev) p->prev->next = p->next;
  else probes = p->next;
  if (p->next) p->next->prev = p->prev;
  /* The timer is always open; the poll only once connecting began; a
   * name lookup in flight still calls back. */
  p->pending = 1 + p->poll_open + p->resolving;
  uv_close((uv_handle_t *)&p->timer, probe_freed);
  if (p->poll_open) uv_close((uv_handle_t *)&p->poll, probe_freed);
}

static void probe_timeout(uv_timer_t *t) {
  probe_t *p = t->data;
  probe_finish(p, 0, p->ssl ? "TLS handshake timed out" : "connect timed out");
}

static void on_poll(uv_poll_t *h, int status, int events);

static void tls_step(probe_t *p) {
  ERR_clear_error();
  int rc = SSL_do_handshake(p->ssl);
  if (rc == 1) {
    SSL_shutdown(p->ssl); /* a close_notify, so the backend logs no error */
    probe_finish(p, 1, NULL);
    return;
  }
  int e = SSL_get_error(p->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    uv_poll_start(&p->poll, e == SSL_ERROR_WANT_READ ? UV_READABLE : UV_WRITABLE,
                  on_poll);
    return;
  }
  char why[400], buf[360];
  if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
    snprintf(why, sizeof(why), "TLS handshake: connection closed");
  else
    snprintf(why, sizeof(why), "TLS handshake: %s",
             tg_tls_failure(p->ssl, &p->note, buf, sizeof(buf)));
  ERR_clear_error();
  probe_finish(p, 0, why);
}

static void start_tls(probe_t *p) {
  tg_service_t *s = p->ck->svc;
  p->note.conf = s->conf;
  p->note.backend = 1;
  p->ssl = tg_tls_new(s->backend_ctx, &p->note, s->conf->backends[p->idx].host);
  if (!p->ssl || !SSL_set_fd(p->ssl, p->fd)) {
    probe_finish(p, 0, "cannot create TLS state");
    return;
  }
  uv_timer_start(&p->timer, probe_timeout, s->conf->handshake_timeout_ms, 0);
  tls_step(p);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  probe_t *p = h->data;
  if (p->closing) return;
  if (p->ssl) {
    tls_step(p);
    return;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  /* libuv reports POLLERR as UV_EBADF: the socket knows the real error. */
  if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (!err && status < 0) err = -status;
  if (err) {
    probe_finish(p, 0, strerror(err));
    return;
  }
  if (p->ck->svc->conf->backend_check == TG_CHECK_TLS && p->ck->svc->backend_ctx) {
    uv_poll_stop(&p->poll);
    start_tls(p);
    return;
  }
  probe_finish(p, 1, NULL);
}

static void probe_connect(probe_t *p, const struct sockaddr *sa, socklen_t salen) {
  p->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p->fd < 0) {
    probe_finish(p, 0, strerror(errno));
    return;
  }
  if (connect(p->fd, sa, salen) != 0 && errno != EINPROGRESS) {
    probe_finish(p, 0, strerror(errno));
    return;
  }
  int rc = uv_poll_init(p->timer.loop, &p->poll, p->fd);
  if (rc < 0) {
    probe_finish(p, 0, uv_strerror(rc));
    return;
  }
  p->poll.data = p;
  p->poll_open = 1;
  uv_poll_start(&p->poll, UV_WRITABLE, on_poll);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  probe_t *p = req->data;
  p->resolving = 0;
  if (p->closing) {
    uv_freeaddrinfo(res);
    probe_release(p);
    return;
  }
  if (status < 0 || !res) {
    char why[300];
    snprintf(why, sizeof(why), "cannot resolve %s: %s",
             p->ck->svc->conf->backends[p->idx].host, uv_strerror(status));
    uv_freeaddrinfo(res);
    probe_finish(p, 0, why);
    return;
  }
  probe_connect(p, res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
}

static void probe_start(checker_t *ck, int idx) {
  uv_loop_t *loop = ck->timer.loop;
  const tg_hostport_t *a = &ck->svc->conf->backends[idx];
  probe_t *p = calloc(1, sizeof(*p));
  if (!p) return;
  p->fd = -1;
  p->ck = ck;
  p->idx = idx;
  ck->refs++;
  ck->inflight[idx] = 1;
  p->next = probes;
  if (probes) probes->prev = p;
  probes = p;
  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  uv_timer_start(&p->timer, probe_timeout, ck->svc->conf->connect_timeout_ms, 0);
  if (a->is_literal) {
    probe_connect(p, (const struct sockaddr *)&a->addr, a->addrlen);
    return;
  }
  char port[8];
  snprintf(port, sizeof(port), "%u", a->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  p->gai.data = p;
  p->resolving = 1;
  int rc = uv_getaddrinfo(loop, &p->gai, on_resolved, a->host, port, &hints);
  if (rc < 0) {
    p->resolving = 0;
    probe_finish(p, 0, uv_strerror(rc));
  }
}

static void on_interval(uv_timer_t *t) {
  checker_t *ck = t->data;
  for (size_t i = 0; i < ck->svc->conf->nbackends; i++)
    if (!ck->inflight[i]) probe_start(ck, (int)i);
}

static void checker_closed(uv_handle_t *h) { checker_unref(h->data); }

void tg_health_set_runtime(uv_loop_t *loop, tg_runtime_t *rt) {
  while (checkers) {
    checker_t *ck = checkers;
    checkers = ck->next;
    ck->stopped = 1;
    uv_close((uv_handle_t *)&ck->timer, checker_closed);
  }
  if (!rt) {
    /* Stopping: abandon checks in flight so that the loop can end. */
    while (probes) {
      probe_t *p = probes;
      if (p->resolving) uv_cancel((uv_req_t *)&p->gai);
      probe_finish(p, 0, "stopping");
    }
    return;
  }
  for (size_t i = 0; i < rt->nservices; i++) {
    tg_service_t *s = rt->services[i];
    if (s->conf->backend_check == TG_CHECK_OFF || s->conf->transport != TG_TRANSPORT_TCP)
      continue;
    checker_t *ck = calloc(1, sizeof(*ck));
    if (!ck) continue;
    tg_runtime_ref(rt);
    ck->rt = rt;
    ck->svc = s;
    ck->refs = 1;
    for (int k = 0; k < TG_MAX_BACKENDS; k++) ck->state[k] = -1;
    uv_timer_init(loop, &ck->timer);
    ck->timer.data = ck;
    /* First round at once, then every interval. */
    uv_timer_start(&ck->timer, on_interval, 0, s->conf->backend_check_interval_ms);
    ck->next = checkers;
    checkers = ck;
  }
}
