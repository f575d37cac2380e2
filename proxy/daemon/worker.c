#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bufpool.h"
#include "conn.h"
#include "dtls.h"
#include "log.h"

/* Out of descriptors: closing our reserve descriptor makes room to accept
 * and at once close what waits in the backlog, so the listener does not
 * stay readable and spin the loop; those clients see a reset. */
static void shed_backlog(tg_listener_t *l, int err) {
  tg_worker_t *w = l->worker;
  unsigned long long shed = 0;
  if (w->reserve_fd >= 0) {
    close(w->reserve_fd);
    w->reserve_fd = -1;
  }
  for (int i = 0; i < 1024; i++) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) break;
    close(fd);
    shed++;
  }
  w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  w->accept_drops += shed;
  uint64_t now = uv_now(&w->loop);
  if (now - w->last_accept_error_log >= 1000) {
    w->last_accept_error_log = now;
    tg_log(TG_LOG_ERROR, "listener %s: accept failed: %s (out of file descriptors: "
           "%llu waiting connection(s) closed so far; raise the fd limit)",
           l->svc->conf->name, strerror(err), w->accept_drops);
  }
}

static void on_listener_readable(uv_poll_t *h, int status, int events) {
  tg_listener_t *l = h->data;
  tg_worker_t *w = l->worker;
  if (status < 0) {
    tg_log(TG_LOG_ERROR, "listener %s: %s", l->svc->conf->name, uv_strerror(status));
    return;
  }
  /* A bounded batch per wakeup keeps other work on this loop moving. */
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      tg_conn_accept(l, fd, &ss);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EMFILE || errno == ENFILE) {
      shed_backlog(l, errno);
      return;
    }
    uint64_t now = uv_now(&w->loop);
    if (now - w->last_accept_error_log >= 1000) {
      w->last_accept_error_log = now;
      tg_log(TG_LOG_ERROR, "listener %s: accept failed: %s", l->svc->conf->name,
             strerror(errno));
    }
    return;
  }
}

static void on_listener_closed(uv_handle_t *h) {
  tg_listener_t *l = h->data;
  close(l->fd);
  free(l);
}

static void close_listeners(tg_worker_t *w) {
  for (size_t i = 0; i < w->nlisteners; i++)
    uv_close((uv_handle_t *)&w->listeners[i]->poll, on_listener_closed);
  w->nlisteners = 0;
}

/* Listens on a dup() of each of the runtime's sockets for this worker. */
static int open_listeners(tg_worker_t *w, char *err, size_t errsize) {
  tg_runtime_t *rt = w->rt;
  for (size_t i = 0; i < rt->nservices; i++) {
    tg_service_t *s = rt->services[i];
    /* An SNI section is reached through its front's socket. */
    if (s->conf->transport != TG_TRANSPORT_TCP || s->front != s) continue;
    tg_listener_t *l = calloc(1, sizeof(*l));
    if (!l) {
      snprintf(err, errsize, "listener %s: out of memory", s->conf->name);
      return -1;
    }
    l->worker = w;
    l->svc = s;
    l->fd = tg_runtime_dup_socket(rt, s, w->index);
    if (l->fd < 0) {
      free(l);
      snprintf(err, errsize, "listener %s: no listening socket", s->conf->name);
      return -1;
    }
    int rc = uv_poll_init(&w->loop, &l->poll, l->fd);
    if (rc < 0) {
      close(l->fd);
      free(l);
      snprintf(err, errsize, "listener %s: %s", s->conf->name, uv_strerror(rc));
      return -1;
    }
    l->poll.data = l;
    w->listeners[w->nlisteners++] = l;
    rc = uv_poll_start(&l->poll, UV_READABLE, on_listener_readable);
    if (rc < 0) {
      snprintf(err, errsize, "listener %s: %s", s->conf->name, uv_strerror(rc));
      return -1;
    }
  }
  return 0;
}

static void finish_if_idle(tg_worker_t *w) {
  if (!w->draining || w->nconns > 0) return;
  if (!uv_is_closing((uv_handle_t *)&w->wakeup)) {
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_close((uv_handle_t *)&w->drain_timer, NULL);
  }
}

void tg_worker_conn_done(tg_worker_t *w) {
  w->nconns--;
  finish_if_idle(w);
}

static void on_drain_timeout(uv_timer_t *t) {
  tg_worker_t *w = t->data;
  if (w->nconns)
    tg_log(TG_LOG_WARN, "worker %d: drain_timeout reached, closing %zu "
           "connection(s)", w->index, w->nconns);
  tg_conn_t *c = w->conns;
  while (c) {
    tg_conn_t *next = c->next;
    tg_conn_close(c, "drain timeout");
    c = next;
  }
  tg_udp_worker_close_all(w, "drain timeout");
}

/* Switches to a new runtime: the old listening handles close and new ones
 * open within this callback, on the same kernel sockets where the bind
 * did not change, so no connection waiting in a backlog is lost. */
static void apply_reload(tg_worker_t *w) {
  tg_runtime_t *rt = atomic_exchange(&w->pending_rt, NULL);
  if (!rt) return;
  if (w->draining || atomic_load(&w->stop_requested)) {
    tg_runtime_unref(rt);
    return;
  }
  close_listeners(w);
  tg_runtime_t *old = w->rt;
  w->rt = rt;
  char err[300];
  if (open_listeners(w, err, sizeof(err)) != 0)
    tg_log(TG_LOG_ERROR, "worker %d: after reload: %s", w->index, err);
  if (tg_udp_worker_sync(w, err, sizeof(err)) != 0)
    tg_log(TG_LOG_ERROR, "worker %d: after reload: %s", w->index, err);
  tg_runtime_unref(old);
}

static void on_wakeup(uv_async_t *a) {
  tg_worker_t *w = a->data;
  apply_reload(w);
  if (!atomic_load(&w->stop_requested) || w->draining) return;
  w->draining = 1;
  close_listeners(w);
  tg_udp_worker_drain(w);
  if (w->nconns)
    tg_log(TG_LOG_INFO, "worker %d: draining %zu connection(s) for up to %llu ms",
           w->index, w->nconns, (unsigned long long)w->rt->cfg->drain_timeout_ms);
  uv_timer_start(&w->drain_timer, on_drain_timeout, w->rt->cfg->drain_timeout_ms, 0);
  finish_if_idle(w);
}

static void run(void *arg) {
  tg_worker_t *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
  tg_buf_pool_drain();
  int rc = uv_loop_close(&w->loop);
  if (rc != 0) tg_log(TG_LOG_ERROR, "worker %d: loop closed with open handles", w->index);
}

int tg_worker_start(tg_worker_t *w, int index, tg_runtime_t *rt, char *err,
                    size_t errsize) {
  w->index = index;
  w->rt = rt;
  int rc = uv_loop_init(&w->loop);
  if (rc < 0) {
    snprintf(err, errsize, "uv_loop_init: %s", uv_strerror(rc));
    return -1;
  }
  uv_async_init(&w->loop, &w->wakeup, on_wakeup);
  w->wakeup.data = w;
  uv_timer_init(&w->loop, &w->drain_timer);
  w->drain_timer.data = w;
  w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (open_listeners(w, err, errsize) != 0) return -1;
  if (tg_udp_worker_sync(w, err, errsize) != 0) return -1;
  rc = uv_thread_create(&w->thread, run, w);
  if (rc < 0) {
    snprintf(err, errsize, "uv_thread_create: %s", uv_strerror(rc));
    return -1;
  }
  return 0;
}

void tg_worker_stop(tg_worker_t *w) {
  atomic_store(&w->stop_requested, 1);
  uv_async_send(&w->wakeup);
}

void tg_worker_reload(tg_worker_t *w, tg_runtime_t *rt) {
  tg_runtime_t *old = atomic_exchange(&w->pending_rt, rt);
  tg_runtime_unref(old); /* a reload the worker had not applied yet */
  uv_async_send(&w->wakeup);
}

void tg_worker_join(tg_worker_t *w) {
  uv_thread_join(&w->thread);
  if (w->reserve_fd >= 0) close(w->reserve_fd);
  w->reserve_fd = -1;
  tg_runtime_unref(atomic_exchange(&w->pending_rt, NULL));
  tg_runtime_unref(w->rt);
  w->rt = NULL;
}
