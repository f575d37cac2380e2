#include "runtime.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tls.h"

uint64_t tg_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static tg_service_t *service_new(const tg_listener_conf_t *l, tg_errors_t *errs) {
  tg_service_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->conf = l;
  for (int i = 0; i < TG_MAX_WORKERS; i++) s->fds[i] = -1;
  for (size_t i = 0; i < l->nbackends; i++) s->backends[i].addr = &l->backends[i];
  char front[512] = "plaintext", back[512] = "plaintext";
  if (l->secure) s->server_ctx = tg_tls_server_ctx(l, errs, front, sizeof(front));
  if (l->backend_secure)
    s->backend_ctx = tg_tls_backend_ctx(l, errs, back, sizeof(back));
  size_t n = (size_t)snprintf(s->summary, sizeof(s->summary),
                              "listener %s: %s %s [%s] -> ", l->name,
                              l->transport == TG_TRANSPORT_UDP ? "udp" : "tcp",
                              l->bind.text, front);
  for (size_t i = 0; i < l->nbackends && n < sizeof(s->summary); i++)
    n += (size_t)snprintf(s->summary + n, sizeof(s->summary) - n, "%s%s",
                          i ? ", " : "", l->backends[i].text);
  if (n < sizeof(s->summary))
    snprintf(s->summary + n, sizeof(s->summary) - n, " [%s]", back);
  return s;
}

static void service_free(tg_service_t *s) {
  if (!s) return;
  SSL_CTX_free(s->server_ctx);
  SSL_CTX_free(s->backend_ctx);
  for (int i = 0; i < TG_MAX_WORKERS; i++)
    if (s->fds[i] >= 0) close(s->fds[i]);
  free(s);
}

tg_runtime_t *tg_runtime_new(tg_config_t *cfg, tg_errors_t *errs) {
  tg_runtime_t *rt = calloc(1, sizeof(*rt));
  if (!rt) return NULL;
  size_t before = errs->n;
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    tg_service_t *s = service_new(cfg->listeners[i], errs);
    if (s) rt->services[rt->nservices++] = s;
  }
  if (errs->n > before) {
    for (size_t i = 0; i < rt->nservices; i++) service_free(rt->services[i]);
    free(rt);
    return NULL;
  }
  rt->cfg = cfg;
  atomic_init(&rt->next_id, 1);
  return rt;
}

static int open_listen_socket(const tg_hostport_t *a, int udp, char *err,
                              size_t errsize) {
  int fd = socket(a->addr.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) |
                                         SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    snprintf(err, errsize, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  /* One socket per worker: the kernel spreads new connections over them. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    snprintf(err, errsize, "SO_REUSEPORT: %s", strerror(errno));
    close(fd);
    return -1;
  }
  if (a->addr.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) != 0) {
    snprintf(err, errsize, "bind %s: %s", a->text, strerror(errno));
    close(fd);
    return -1;
  }
  if (!udp && listen(fd, 1024) != 0) {
    snprintf(err, errsize, "listen %s: %s", a->text, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

int tg_runtime_bind(tg_runtime_t *rt, int nworkers, tg_errors_t *errs) {
  size_t before = errs->n;
  for (size_t i = 0; i < rt->nservices; i++) {
    tg_service_t *s = rt->services[i];
    for (int w = 0; w < nworkers; w++) {
      char err[300], where[400];
      s->fds[w] = open_listen_socket(&s->conf->bind,
                                     s->conf->transport == TG_TRANSPORT_UDP,
                                     err, sizeof(err));
      if (s->fds[w] < 0) {
        tg_errors_add(errs, "%s: %s",
                      tg_config_where(s->conf, "bind", where, sizeof(where)), err);
        break;
      }
    }
  }
  return errs->n > before ? -1 : 0;
}

void tg_runtime_free(tg_runtime_t *rt) {
  if (!rt) return;
  for (size_t i = 0; i < rt->nservices; i++) service_free(rt->services[i]);
  tg_config_free(rt->cfg);
  free(rt);
}
