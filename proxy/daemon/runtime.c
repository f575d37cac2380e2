#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dtls.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

atomic_int tg_active_connections;
static atomic_ullong next_conn_id = 1;

unsigned long long tg_next_conn_id(void) { return atomic_fetch_add(&next_conn_id, 1); }

/* Backend names and certificate expiry, for the metrics endpoint. */
static void publish_stats(tg_service_t *s) {
  tg_lstats_t *st = s->stats;
  if (!st) return;
  for (size_t i = 0; i < s->conf->nbackends; i++)
    snprintf(st->backend_names[i], sizeof(st->backend_names[i]), "%s",
             s->conf->backends[i].text);
  atomic_store(&st->nbackends, (int)s->conf->nbackends);
  X509 *cert = s->server_ctx ? SSL_CTX_get0_certificate(s->server_ctx) : NULL;
  int days = 0, secs = 0;
  if (cert && ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cert)))
    atomic_store(&st->cert_not_after, (long long)time(NULL) + days * 86400LL + secs);
}

static tg_service_t *service_new(const tg_listener_conf_t *l, tg_errors_t *errs) {
  tg_service_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->conf = l;
  for (int i = 0; i < TG_MAX_WORKERS; i++) s->fds[i] = -1;
  s->stats = tg_stats_listener(l->name);
  for (size_t i = 0; i < l->nbackends; i++) s->backends[i].addr = &l->backends[i];
  char front[512] = "plaintext", back[512] = "plaintext";
  if (l->transport == TG_TRANSPORT_UDP) {
    tg_dtls_service_setup(s, errs, front, sizeof(front), back, sizeof(back));
  } else {
    if (l->secure) s->server_ctx = tg_tls_server_ctx(l, errs, front, sizeof(front));
    if (l->backend_secure)
      s->backend_ctx = tg_tls_backend_ctx(l, errs, back, sizeof(back));
  }
  size_t n = (size_t)snprintf(s->summary, sizeof(s->summary),
                              "listener %s: %s %s [%s] -> ", l->name,
                              l->transport == TG_TRANSPORT_UDP ? "udp" : "tcp",
                              l->bind.text, front);
  for (size_t i = 0; i < l->nbackends && n < sizeof(s->summary); i++)
    n += (size_t)snprintf(s->summary + n, sizeof(s->summary) - n, "%s%s",
                          i ? ", " : "", l->backends[i].text);
  if (n < sizeof(s->summary))
    n += (size_t)snprintf(s->summary + n, sizeof(s->summary) - n, " [%s]", back);
  if (l->transport == TG_TRANSPORT_TCP) {
    char guard[600];
    s->http = tg_http_guard_new(l, guard, sizeof(guard));
    if (!s->http && l->protocol == TG_PROTOCOL_HTTP)
      tg_errors_add(errs, "listener %s: out of memory building the http guard", l->name);
    if (guard[0] && n < sizeof(s->summary))
      snprintf(s->summary + n, sizeof(s->summary) - n, "; %s", guard);
  }
  return s;
}

static void service_free(tg_service_t *s) {
  if (!s) return;
  SSL_CTX_free(s->server_ctx);
  SSL_CTX_free(s->backend_ctx);
  tg_dtls_service_free(s);
  tg_http_guard_free(s->http);
  for (int i = 0; i < TG_MAX_WORKERS; i++)
    if (s->fds[i] >= 0) close(s->fds[i]);
  free(s->sni_summary);
  free(s);
}

/* Sections sharing a bind: the default one becomes the front (it owns the
 * socket; every connection starts on its context) and learns the others'
 * contexts and names.  A lone listener with strict_sni gets a table too. */
static void group_sections(tg_runtime_t *rt, tg_errors_t *errs) {
  for (size_t i = 0; i < rt->nservices; i++) rt->services[i]->front = rt->services[i];
  for (size_t g = 0; g < rt->nservices; g++) {
    const tg_listener_conf_t *lead = rt->services[g]->conf;
    if (lead->bind_group != (int)g) continue;
    tg_tls_vhost_t v[TG_MAX_LISTENERS];
    size_t n = 0;
    int dflt = 0;
    tg_service_t *front = rt->services[g];
    for (size_t i = g; i < rt->nservices; i++) {
      tg_service_t *s = rt->services[i];
      if (s->conf->bind_group != (int)g) continue;
      if (s->conf->sni_default) dflt = (int)n, front = s;
      v[n++] = (tg_tls_vhost_t){s->conf, s->server_ctx, s};
    }
    if (n == 1 && !lead->strict_sni) continue;
    char *sum = malloc(4096);
    size_t o = sum ? (size_t)snprintf(sum, 4096, "bind %s: %zu SNI section%s, strict_sni %s:",
                                      lead->bind.text, n, n == 1 ? "" : "s",
                                      lead->strict_sni ? "on (unclaimed names refused)" : "off")
                   : 0;
    for (size_t k = 0; k < n; k++) {
      tg_service_t *s = v[k].section;
      s->front = front;
      if (sum && o < 4096)
        o += (size_t)snprintf(sum + o, 4096 - o, "%s [listener:%s] %s%s", k ? ";" : "",
                              s->conf->name,
                              s->conf->server_name[0] ? s->conf->server_name : "(no server_name)",
                              (int)k != dflt ? ""
                              : lead->strict_sni ? " (default)"
                                                 : " (default: no or unclaimed name)");
    }
    front->sni_summary = sum;
    if (front->server_ctx)
      tg_tls_vhosts_attach(front->server_ctx, v, n, dflt, lead->strict_sni, errs);
  }
}

tg_runtime_t *tg_runtime_new(tg_config_t *cfg, tg_errors_t *errs) {
  tg_runtime_t *rt = calloc(1, sizeof(*rt));
  if (!rt) return NULL;
  size_t before = errs->n;
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    tg_service_t *s = service_new(cfg->listeners[i], errs);
    if (s) rt->services[rt->nservices++] = s;
    else tg_errors_add(errs, "listener %s: out of memory", cfg->listeners[i]->name);
  }
  if (errs->n == before) group_sections(rt, errs);
  if (errs->n > before) {
    for (size_t i = 0; i < rt->nservices; i++) service_free(rt->services[i]);
    free(rt);
    return NULL;
  }
  rt->cfg = cfg;
  rt->generation = 1;
  atomic_init(&rt->refs, 1);
  pthread_mutex_init(&rt->fds_lock, NULL);
  return rt;
}

/* ---- systemd socket activation ------------------------------------------ */

#define SD_LISTEN_FDS_START 3

static struct {
  int fd;
  char name[TG_NAME_MAX];
  int used;
} inherited[TG_MAX_LISTENERS];
static size_t ninherited;

void tg_runtime_inherit_sockets(void) {
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  const char *names = getenv("LISTEN_FDNAMES");
  if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid()) return;
  long n = strtol(fds, NULL, 10);
  if (n <= 0) return;
  if (n > TG_MAX_LISTENERS) n = TG_MAX_LISTENERS;
  const char *p = names ? names : "";
  for (long i = 0; i < n; i++) {
    int fd = SD_LISTEN_FDS_START + (int)i;
    size_t len = strcspn(p, ":");
    inherited[ninherited].fd = fd;
    snprintf(inherited[ninherited].name, sizeof(inherited[ninherited].name), "%.*s",
             (int)(len < TG_NAME_MAX ? len : TG_NAME_MAX - 1), p);
    p += len + (p[len] == ':');
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    ninherited++;
  }
  /* As sd_listen_fds(unset_environment = 1): not for our children. */
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
}

/* The socket systemd handed over for front s: named after s or, for a
 * shared bind, after any section of it. */
static int inherited_for(const tg_runtime_t *rt, const tg_service_t *s) {
  for (size_t i = 0; i < ninherited; i++)
    for (size_t k = 0; k < rt->nservices; k++)
      if (rt->services[k]->front == s &&
          strcmp(inherited[i].name, rt->services[k]->conf->name) == 0)
        return (int)i;
  return -1;
}

void tg_runtime_log_unused_sockets(void) {
  for (size_t i = 0; i < ninherited; i++)
    if (!inherited[i].used)
      tg_log(TG_LOG_WARN, "socket %d from systemd (name '%s') matches no listener: "
             "unused (FileDescriptorName= must equal a [listener:NAME])",
             inherited[i].fd, inherited[i].name);
}

/* The socket systemd handed over for l, checked against its transport. */
static int use_inherited(const tg_listener_conf_t *l, int k, int nworkers, char *err,
                         size_t errsize) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(inherited[k].fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    snprintf(err, errsize, "socket '%s' from systemd: %s", inherited[k].name,
             strerror(errno));
    return -1;
  }
  int udp = l->transport == TG_TRANSPORT_UDP;
  if (type != (udp ? SOCK_DGRAM : SOCK_STREAM)) {
    snprintf(err, errsize, "socket '%s' from systemd is a %s socket, the listener is "
             "transport = %s", inherited[k].name, type == SOCK_DGRAM ? "datagram" : "stream",
             udp ? "udp" : "tcp");
    return -1;
  }
  /* Datagrams of one client must reach one worker: the kernel spreads
   * them only over SO_REUSEPORT sockets, not over one shared socket. */
  if (udp && nworkers > 1) {
    snprintf(err, errsize, "a udp socket from systemd needs workers = 1");
    return -1;
  }
  inherited[k].used = 1;
  return 0;
}

/* ---- listening sockets ----------------------------------------------------- */

/* bind = unix:PATH.  A stale socket file from an earlier run is replaced;
 * anything else at PATH is left alone and refused. */
static int open_unix_socket(const tg_hostport_t *a, int mode, char *err, size_t errsize) {
  const struct sockaddr_un *u = (const struct sockaddr_un *)&a->addr;
  struct stat st;
  if (lstat(u->sun_path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      snprintf(err, errsize, "bind %s: exists and is not a socket", a->text);
      return -1;
    }
    unlink(u->sun_path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    snprintf(err, errsize, "socket: %s", strerror(errno));
    return -1;
  }
  if (bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) != 0) {
    snprintf(err, errsize, "bind %s: %s", a->text, strerror(errno));
    close(fd);
    return -1;
  }
  /* Before listen(): nobody can connect while the mode is still wrong. */
  if (chmod(u->sun_path, (mode_t)mode) != 0 || listen(fd, 1024) != 0) {
    snprintf(err, errsize, "bind %s: %s", a->text, strerror(errno));
    close(fd);
    unlink(u->sun_path);
    return -1;
  }
  return fd;
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

static const tg_service_t *same_socket(const tg_runtime_t *old,
                                       const tg_listener_conf_t *l) {
  for (size_t i = 0; old && i < old->nservices; i++) {
    const tg_service_t *o = old->services[i];
    if (o->conf->transport == l->transport && o->conf->bind.addrlen == l->bind.addrlen &&
        memcmp(&o->conf->bind.addr, &l->bind.addr, l->bind.addrlen) == 0 &&
        o->fds[0] >= 0)
      return o;
  }
  return NULL;
}

int tg_runtime_bind(tg_runtime_t *rt, int nworkers, const tg_runtime_t *old,
                    tg_errors_t *errs) {
  size_t before = errs->n;
  for (size_t i = 0; i < rt->nservices; i++) {
    tg_service_t *s = rt->services[i];
    if (s->front != s) continue; /* an SNI section: its front has the socket */
    const tg_service_t *o = same_socket(old, s->conf);
    int k = inherited_for(rt, s);
    if (k >= 0) {
      char err[300], where[400];
      if (use_inherited(s->conf, k, nworkers, err, sizeof(err)) != 0) {
        tg_errors_add(errs, "%s: %s",
                      tg_config_where(s->conf, "bind", where, sizeof(where)), err);
        continue;
      }
      s->inherited = 1;
      size_t n = strlen(s->summary);
      snprintf(s->summary + n, sizeof(s->summary) - n, " (socket '%s' from systemd, "
               "not bind)", inherited[k].name);
      for (int w = 0; w < nworkers; w++)
        s->fds[w] = fcntl(inherited[k].fd, F_DUPFD_CLOEXEC, 0);
      continue;
    }
    int is_unix = s->conf->bind.addr.ss_family == AF_UNIX;
    for (int w = 0; w < nworkers; w++) {
      char err[300], where[400];
      if (is_unix && w > 0 && s->fds[0] >= 0) {
        /* No SO_REUSEPORT for unix sockets: the workers share one. */
        s->fds[w] = fcntl(s->fds[0], F_DUPFD_CLOEXEC, 0);
        continue;
      }
      if (is_unix && !(o && o->fds[w] >= 0)) {
        s->fds[w] = open_unix_socket(&s->conf->bind, s->conf->unix_mode, err, sizeof(err));
        if (s->fds[w] < 0) {
          tg_errors_add(errs, "%s: %s",
                        tg_config_where(s->conf, "bind", where, sizeof(where)), err);
          break;
        }
        continue;
      }
      if (o && o->fds[w] >= 0) {
        s->fds[w] = fcntl(o->fds[w], F_DUPFD_CLOEXEC, 0);
        if (s->fds[w] >= 0) continue;
        snprintf(err, sizeof(err), "dup of the listening socket: %s", strerror(errno));
        tg_errors_add(errs, "%s: %s",
                      tg_config_where(s->conf, "bind", where, sizeof(where)), err);
        break;
      }
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

int tg_runtime_dup_socket(tg_runtime_t *rt, const tg_service_t *s, int w) {
  pthread_mutex_lock(&rt->fds_lock);
  int fd = s->fds[w] >= 0 ? fcntl(s->fds[w], F_DUPFD_CLOEXEC, 0) : -1;
  pthread_mutex_unlock(&rt->fds_lock);
  return fd;
}

void tg_runtime_release_sockets(tg_runtime_t *rt) {
  pthread_mutex_lock(&rt->fds_lock);
  for (size_t i = 0; i < rt->nservices; i++)
    for (int w = 0; w < TG_MAX_WORKERS; w++)
      if (rt->services[i]->fds[w] >= 0) {
        close(rt->services[i]->fds[w]);
        rt->services[i]->fds[w] = -1;
      }
  pthread_mutex_unlock(&rt->fds_lock);
}

void tg_runtime_unlink_unix(const tg_runtime_t *rt) {
  for (size_t i = 0; i < rt->nservices; i++) {
    const tg_service_t *s = rt->services[i];
    if (s->conf->bind.addr.ss_family == AF_UNIX && !s->inherited && s->front == s)
      unlink(((const struct sockaddr_un *)&s->conf->bind.addr)->sun_path);
  }
}

void tg_runtime_publish_stats(tg_runtime_t *rt) {
  for (size_t i = 0; i < rt->nservices; i++) publish_stats(rt->services[i]);
  tg_metrics_set_runtime(rt);
}

void tg_runtime_ref(tg_runtime_t *rt) { atomic_fetch_add(&rt->refs, 1); }

static void runtime_free(tg_runtime_t *rt) {
  if (!rt) return;
  for (size_t i = 0; i < rt->nservices; i++) service_free(rt->services[i]);
  tg_config_free(rt->cfg);
  pthread_mutex_destroy(&rt->fds_lock);
  free(rt);
}

void tg_runtime_unref(tg_runtime_t *rt) {
  if (rt && atomic_fetch_sub(&rt->refs, 1) == 1) runtime_free(rt);
}
