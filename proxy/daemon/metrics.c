#include "metrics.h"

#include "http.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "runtime.h"

/* ---- counters ------------------------------------------------------------ */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static tg_lstats_t *registry[TG_MAX_LISTENERS * 4];
static size_t nregistry;

static atomic_ullong reloads_ok, reloads_failed;
static atomic_int last_reload_ok = 1;
static atomic_llong last_reload_time;
static atomic_uint generation = 1;
static time_t started_at;

/* The runtime whose backends the endpoint reports; set by the main thread,
 * read by the main thread (the endpoint runs on its loop). */
static tg_runtime_t *current_rt;

void tg_metrics_set_runtime(struct tg_runtime *rt) { current_rt = rt; }

tg_lstats_t *tg_stats_listener(const char *name) {
  pthread_mutex_lock(&registry_lock);
  tg_lstats_t *s = NULL;
  for (size_t i = 0; i < nregistry; i++)
    if (strcmp(registry[i]->name, name) == 0) s = registry[i];
  if (!s && nregistry < sizeof(registry) / sizeof(registry[0]) &&
      (s = calloc(1, sizeof(*s))) != NULL) {
    snprintf(s->name, sizeof(s->name), "%s", name);
    registry[nregistry++] = s;
  }
  pthread_mutex_unlock(&registry_lock);
  return s;
}

void tg_stats_cipher(tg_lstats_t *s, const char *cipher) {
  if (!cipher) return;
  for (int i = 0; i < TG_METRIC_CIPHERS; i++) {
    const char *n = atomic_load(&s->cipher_name[i]);
    if (!n) {
      const char *expected = NULL;
      /* Cipher names are static strings of the TLS library. */
      if (!atomic_compare_exchange_strong(&s->cipher_name[i], &expected, cipher))
        n = expected;
      else
        n = cipher;
    }
    if (n == cipher || strcmp(n, cipher) == 0) {
      atomic_fetch_add_explicit(&s->cipher_count[i], 1, memory_order_relaxed);
      return;
    }
  }
}

void tg_stats_reload(int ok, unsigned gen) {
  atomic_fetch_add(ok ? &reloads_ok : &reloads_failed, 1);
  atomic_store(&last_reload_ok, ok);
  atomic_store(&last_reload_time, (long long)time(NULL));
  if (ok) atomic_store(&generation, gen);
}

/* ---- exposition ---------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len, cap;
} sbuf_t;

static void add(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(sbuf_t *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n;
    char *nb = realloc(b->buf, cap);
    if (!nb) return;
    b->buf = nb;
    b->cap = cap;
  }
}

/* Label values are listener names (validated) and backend addresses, but
 * quote-escape anyway. */
static const char *esc(const char *s, char *out, size_t size) {
  size_t n = 0;
  for (; *s && n + 2 < size; s++) {
    if (*s == '"' || *s == '\\') out[n++] = '\\';
    out[n++] = *s == '\n' ? ' ' : *s;
  }
  out[n] = '\0';
  return out;
}

#define LOAD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

static void header(sbuf_t *b, const char *name, const char *type, const char *help) {
  add(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const hs_names[TG_HS_NREASONS] = {
    "ok", "no_client_certificate", "certificate_verify_failed", "not_in_allow_clients",
    "timeout", "client_closed", "protocol_error"};

char *tg_metrics_render(size_t *len) {
  sbuf_t b = {malloc(16384), 0, 16384};
  if (!b.buf) return NULL;
  b.buf[0] = '\0';
  tg_lstats_t *snap[sizeof(registry) / sizeof(registry[0])];
  pthread_mutex_lock(&registry_lock);
  size_t n = nregistry;
  memcpy(snap, registry, n * sizeof(snap[0]));
  pthread_mutex_unlock(&registry_lock);
  char l[200], bn[600];

  header(&b, "tlsgate_connections_total", "counter", "Connections accepted.");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_connections_total{listener=\"%s\"} %llu\n", esc(snap[i]->name, l, sizeof(l)),
        LOAD(snap[i]->accepted));
  header(&b, "tlsgate_connections_active", "gauge", "Connections open now.");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_connections_active{listener=\"%s\"} %lld\n", esc(snap[i]->name, l, sizeof(l)),
        (long long)atomic_load(&snap[i]->active));
  header(&b, "tlsgate_connections_rejected_total", "counter",
         "Connections closed at once because max_connections was reached.");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_connections_rejected_total{listener=\"%s\"} %llu\n",
        esc(snap[i]->name, l, sizeof(l)), LOAD(snap[i]->rejected_max));
  header(&b, "tlsgate_handshakes_total", "counter", "Client TLS handshakes by result.");
  for (size_t i = 0; i < n; i++)
    for (int r = 0; r < TG_HS_NREASONS; r++)
      add(&b, "tlsgate_handshakes_total{listener=\"%s\",result=\"%s\"} %llu\n",
          esc(snap[i]->name, l, sizeof(l)), hs_names[r], LOAD(snap[i]->handshakes[r]));
  header(&b, "tlsgate_tls_version_total", "counter", "Completed handshakes by protocol version.");
  for (size_t i = 0; i < n; i++) {
    esc(snap[i]->name, l, sizeof(l));
    add(&b, "tlsgate_tls_version_total{listener=\"%s\",version=\"TLSv1.2\"} %llu\n", l,
        LOAD(snap[i]->tls12));
    add(&b, "tlsgate_tls_version_total{listener=\"%s\",version=\"TLSv1.3\"} %llu\n", l,
        LOAD(snap[i]->tls13));
  }
  header(&b, "tlsgate_tls_resumed_total", "counter", "Handshakes that resumed a session.");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_tls_resumed_total{listener=\"%s\"} %llu\n", esc(snap[i]->name, l, sizeof(l)),
        LOAD(snap[i]->resumed));
  header(&b, "tlsgate_tls_cipher_total", "counter", "Completed handshakes by cipher suite.");
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < TG_METRIC_CIPHERS; c++) {
      const char *name = atomic_load(&snap[i]->cipher_name[c]);
      if (name)
        add(&b, "tlsgate_tls_cipher_total{listener=\"%s\",cipher=\"%s\"} %llu\n",
            esc(snap[i]->name, l, sizeof(l)), name, LOAD(snap[i]->cipher_count[c]));
    }
  header(&b, "tlsgate_bytes_total", "counter", "Plaintext bytes relayed, by the side they came from.");
  for (size_t i = 0; i < n; i++) {
    esc(snap[i]->name, l, sizeof(l));
    add(&b, "tlsgate_bytes_total{listener=\"%s\",from=\"client\"} %llu\n", l,
        LOAD(snap[i]->bytes_from_client));
    add(&b, "tlsgate_bytes_total{listener=\"%s\",from=\"backend\"} %llu\n", l,
        LOAD(snap[i]->bytes_from_backend));
  }
  header(&b, "tlsgate_proxy_header_errors_total", "counter",
         "Connections closed for a missing or malformed PROXY header (accept_proxy).");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_proxy_header_errors_total{listener=\"%s\"} %llu\n",
        esc(snap[i]->name, l, sizeof(l)), LOAD(snap[i]->proxy_header_errors));
  header(&b, "tlsgate_http_refused_total", "counter",
         "Requests tlsgate answered itself (protocol = http), by status and reason.");
  for (size_t i = 0; i < n; i++)
    for (int r = 0; r < TG_HTTP_NREASONS; r++)
      add(&b, "tlsgate_http_refused_total{listener=\"%s\",status=\"%d\",reason=\"%s\"} %llu\n",
          esc(snap[i]->name, l, sizeof(l)), tg_http_reason_status((tg_http_reason_t)r),
          tg_http_reason_name((tg_http_reason_t)r), LOAD(snap[i]->http_refused[r]));
  header(&b, "tlsgate_proxy_refused_total", "counter",
         "Connections refused because the peer is not in accept_proxy_from.");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_proxy_refused_total{listener=\"%s\"} %llu\n",
        esc(snap[i]->name, l, sizeof(l)), LOAD(snap[i]->proxy_refused));
  header(&b, "tlsgate_backend_failures_total", "counter",
         "Failed backend attempts (refused, timed out, unresolvable, TLS failure).");
  for (size_t i = 0; i < n; i++) {
    int nb = atomic_load(&snap[i]->nbackends);
    for (int k = 0; k < nb; k++)
      add(&b, "tlsgate_backend_failures_total{listener=\"%s\",backend=\"%s\"} %llu\n",
          esc(snap[i]->name, l, sizeof(l)), esc(snap[i]->backend_names[k], bn, sizeof(bn)),
          LOAD(snap[i]->backend_failures[k]));
  }
  header(&b, "tlsgate_backend_check_failures_total", "counter",
         "Failed active health checks (backend_check).");
  for (size_t i = 0; i < n; i++) {
    int nb = atomic_load(&snap[i]->nbackends);
    for (int k = 0; k < nb; k++)
      add(&b, "tlsgate_backend_check_failures_total{listener=\"%s\",backend=\"%s\"} %llu\n",
          esc(snap[i]->name, l, sizeof(l)), esc(snap[i]->backend_names[k], bn, sizeof(bn)),
          LOAD(snap[i]->backend_check_failures[k]));
  }
  if (current_rt) {
    header(&b, "tlsgate_backend_up", "gauge", "1 when the backend is not resting after a failure (or marked down by backend_check).");
    uint64_t now = tg_now_ms();
    for (size_t i = 0; i < current_rt->nservices; i++) {
      const tg_service_t *s = current_rt->services[i];
      for (size_t k = 0; k < s->conf->nbackends; k++)
        add(&b, "tlsgate_backend_up{listener=\"%s\",backend=\"%s\"} %d\n",
            esc(s->conf->name, l, sizeof(l)), esc(s->conf->backends[k].text, bn, sizeof(bn)),
            atomic_load(&s->backends[k].rest_until_ms) <= now);
    }
  }
  header(&b, "tlsgate_certificate_expiry_seconds", "gauge",
         "Expiry (Unix time) of each listener's certificate.");
  for (size_t i = 0; i < n; i++) {
    long long t = (long long)atomic_load(&snap[i]->cert_not_after);
    if (t)
      add(&b, "tlsgate_certificate_expiry_seconds{listener=\"%s\"} %lld\n",
          esc(snap[i]->name, l, sizeof(l)), t);
  }
  header(&b, "tlsgate_dtls_hello_verify_total", "counter",
         "HelloVerifyRequests sent: stateless cookie challenges (udp listeners).");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_dtls_hello_verify_total{listener=\"%s\"} %llu\n",
        esc(snap[i]->name, l, sizeof(l)), LOAD(snap[i]->dtls_hello_verify));
  header(&b, "tlsgate_dtls_cookies_total", "counter", "ClientHello cookies checked, by result.");
  for (size_t i = 0; i < n; i++) {
    esc(snap[i]->name, l, sizeof(l));
    add(&b, "tlsgate_dtls_cookies_total{listener=\"%s\",result=\"ok\"} %llu\n", l,
        LOAD(snap[i]->dtls_cookie_ok));
    add(&b, "tlsgate_dtls_cookies_total{listener=\"%s\",result=\"bad\"} %llu\n", l,
        LOAD(snap[i]->dtls_cookie_bad));
  }
  header(&b, "tlsgate_dtls_half_open_refused_total", "counter",
         "ClientHellos refused because the half-open handshake caps were reached.");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_dtls_half_open_refused_total{listener=\"%s\"} %llu\n",
        esc(snap[i]->name, l, sizeof(l)), LOAD(snap[i]->dtls_half_open_refused));
  header(&b, "tlsgate_udp_dropped_total", "counter",
         "Datagrams dropped without reply (short, garbage, not a ClientHello, ...).");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_udp_dropped_total{listener=\"%s\"} %llu\n",
        esc(snap[i]->name, l, sizeof(l)), LOAD(snap[i]->udp_dropped));
  header(&b, "tlsgate_udp_refused_total", "counter",
         "New UDP/DTLS peers refused or cut short by a cap, by reason "
         "(half_open_evicted, amplification_limited: datagrams held back by "
         "the 3x rule, source_cap, process_cap).");
  for (size_t i = 0; i < n; i++) {
    esc(snap[i]->name, l, sizeof(l));
    add(&b, "tlsgate_udp_refused_total{listener=\"%s\",reason=\"half_open_evicted\"} %llu\n",
        l, LOAD(snap[i]->dtls_half_open_evicted));
    add(&b, "tlsgate_udp_refused_total{listener=\"%s\",reason=\"amplification_limited\"} %llu\n",
        l, LOAD(snap[i]->dtls_amplification_limited));
    add(&b, "tlsgate_udp_refused_total{listener=\"%s\",reason=\"source_cap\"} %llu\n",
        l, LOAD(snap[i]->udp_refused_source));
    add(&b, "tlsgate_udp_refused_total{listener=\"%s\",reason=\"process_cap\"} %llu\n",
        l, LOAD(snap[i]->udp_refused_total));
  }
  header(&b, "tlsgate_backend_local_errors_total", "counter",
         "Backend attempts that failed for lack of a local resource (EMFILE, "
         "ENFILE, ENOMEM, ENOBUFS): the client is refused, the backend does not rest.");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_backend_local_errors_total{listener=\"%s\"} %llu\n",
        esc(snap[i]->name, l, sizeof(l)), LOAD(snap[i]->backend_local_errors));
  header(&b, "tlsgate_udp_kernel_drops_total", "counter",
         "Datagrams the kernel dropped before tlsgate read them: a UDP listening "
         "socket's receive buffer was full (read at most once a second while "
         "datagrams arrive).");
  for (size_t i = 0; i < n; i++)
    add(&b, "tlsgate_udp_kernel_drops_total{listener=\"%s\"} %llu\n",
        esc(snap[i]->name, l, sizeof(l)), LOAD(snap[i]->udp_kernel_drops));
  header(&b, "tlsgate_reloads_total", "counter", "SIGHUP reloads by result.");
  add(&b, "tlsgate_reloads_total{result=\"ok\"} %llu\n", LOAD(reloads_ok));
  add(&b, "tlsgate_reloads_total{result=\"failed\"} %llu\n", LOAD(reloads_failed));
  header(&b, "tlsgate_last_reload_ok", "gauge", "1 if the last reload succeeded (or none was tried).");
  add(&b, "tlsgate_last_reload_ok %d\n", atomic_load(&last_reload_ok));
  header(&b, "tlsgate_last_reload_time_seconds", "gauge", "Unix time of the last reload attempt.");
  add(&b, "tlsgate_last_reload_time_seconds %lld\n", (long long)atomic_load(&last_reload_time));
  header(&b, "tlsgate_config_generation", "gauge", "1 at start, +1 per successful reload.");
  add(&b, "tlsgate_config_generation %u\n", atomic_load(&generation));
  header(&b, "tlsgate_start_time_seconds", "gauge", "Unix time the process started.");
  add(&b, "tlsgate_start_time_seconds %lld\n", (long long)started_at);
  *len = b.len;
  return b.buf;
}

/* ---- health -------------------------------------------------------------- */

/* /readyz: every listener has its socket, and each TCP listener has a
 * backend that is not resting (after a client's failure or a failed
 * backend_check).  A UDP listener is ready once bound.  One line per
 * listener, so a probe's output says what is missing. */
char *tg_health_render(size_t *len, int *ready) {
  sbuf_t b = {malloc(1024), 0, 1024};
  if (!b.buf) return NULL;
  b.buf[0] = '\0';
  *ready = current_rt != NULL;
  if (!current_rt) add(&b, "not ready: no configuration running\n");
  uint64_t now = tg_now_ms();
  for (size_t i = 0; current_rt && i < current_rt->nservices; i++) {
    const tg_service_t *s = current_rt->services[i];
    /* Read on the main thread, which is the only one that closes them. */
    if (s->front->fds[0] < 0) { /* an SNI section: its front's socket */
      add(&b, "listener %s: not ready: not bound (stopping)\n", s->conf->name);
      *ready = 0;
      continue;
    }
    if (s->conf->transport == TG_TRANSPORT_UDP) {
      add(&b, "listener %s: ready (udp, bound)\n", s->conf->name);
      continue;
    }
    size_t up = 0;
    for (size_t k = 0; k < s->conf->nbackends; k++)
      if (atomic_load(&s->backends[k].rest_until_ms) <= now) up++;
    if (up == 0) *ready = 0;
    add(&b, "listener %s: %s (%zu of %zu backends up)\n", s->conf->name,
        up ? "ready" : "not ready", up, s->conf->nbackends);
  }
  add(&b, "%s\n", *ready ? "ready" : "not ready");
  *len = b.len;
  return b.buf;
}

/* ---- the HTTP endpoint --------------------------------------------------- */

#define REQ_MAX 4096

typedef struct {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  char req[REQ_MAX];
  size_t reqlen;
  char *resp;      /* owned by the write until its callback */
  int closing;
  int pending;     /* handles not yet closed */
} scrape_t;

static uv_tcp_t server;
static int server_open;

static void scrape_closed(uv_handle_t *h) {
  scrape_t *s = h->data;
  if (--s->pending == 0) {
    free(s->resp);
    free(s);
  }
}

static void scrape_close(scrape_t *s) {
  if (s->closing) return;
  s->closing = 1;
  uv_close((uv_handle_t *)&s->timer, scrape_closed);
  uv_close((uv_handle_t *)&s->tcp, scrape_closed);
}

static void scrape_written(uv_write_t *req, int status) { scrape_close(req->data); }

static void scrape_timeout(uv_timer_t *t) { scrape_close(t->data); }

static void respond_type(scrape_t *s, const char *status, const char *type,
                         const char *body, size_t blen) {
  size_t cap = blen + 256;
  s->resp = malloc(cap);
  if (!s->resp) {
    scrape_close(s);
    return;
  }
  int h = snprintf(s->resp, cap,
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, type, blen);
  memcpy(s->resp + h, body, blen);
  uv_buf_t buf = uv_buf_init(s->resp, (unsigned)(h + (int)blen));
  s->wreq.data = s;
  uv_read_stop((uv_stream_t *)&s->tcp);
  if (uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &buf, 1, scrape_written) != 0) scrape_close(s);
}

static void respond(scrape_t *s, const char *status, const char *body, size_t blen) {
  respond_type(s, status, "text/plain; version=0.0.4; charset=utf-8", body, blen);
}

static void scrape_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  scrape_t *s = h->data;
  buf->base = s->req + s->reqlen;
  buf->len = REQ_MAX - 1 - s->reqlen;
}

static void scrape_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  scrape_t *s = st->data;
  if (nread < 0) {
    scrape_close(s);
    return;
  }
  s->reqlen += (size_t)nread;
  s->req[s->reqlen] = '\0';
  if (!strstr(s->req, "\r\n\r\n") && !strstr(s->req, "\n\n")) {
    if (s->reqlen >= REQ_MAX - 1) respond(s, "431 Request Header Fields Too Large", "", 0);
    return;
  }
  if (strncmp(s->req, "GET /metrics ", 13) == 0 || strncmp(s->req, "GET / ", 6) == 0) {
    size_t len = 0;
    char *body = tg_metrics_render(&len);
    if (!body) {
      respond(s, "500 Internal Server Error", "", 0);
      return;
    }
    respond(s, "200 OK", body, len);
    free(body);
  } else if (strncmp(s->req, "GET /healthz ", 13) == 0) {
    /* Alive: the main loop answers. */
    static const char msg[] = "ok\n";
    respond_type(s, "200 OK", "text/plain; charset=utf-8", msg, sizeof(msg) - 1);
  } else if (strncmp(s->req, "GET /readyz ", 12) == 0) {
    size_t len = 0;
    int ready = 0;
    char *body = tg_health_render(&len, &ready);
    if (!body) {
      respond(s, "500 Internal Server Error", "", 0);
      return;
    }
    respond_type(s, ready ? "200 OK" : "503 Service Unavailable",
                 "text/plain; charset=utf-8", body, len);
    free(body);
  } else {
    static const char msg[] = "only GET /metrics, /healthz and /readyz here\n";
    respond(s, "404 Not Found", msg, sizeof(msg) - 1);
  }
}

static void on_scrape(uv_stream_t *srv, int status) {
  if (status < 0) return;
  scrape_t *s = calloc(1, sizeof(*s));
  if (!s) return;
  uv_tcp_init(srv->loop, &s->tcp);
  uv_timer_init(srv->loop, &s->timer);
  s->tcp.data = s->timer.data = s;
  s->pending = 2;
  if (uv_accept(srv, (uv_stream_t *)&s->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&s->tcp, scrape_alloc, scrape_read) != 0) {
    scrape_close(s);
    return;
  }
  uv_timer_start(&s->timer, scrape_timeout, 5000, 0);
}

int tg_metrics_start(uv_loop_t *loop, const char *addr, char *err, size_t errsize) {
  tg_hostport_t hp;
  char why[100] = "";
  started_at = time(NULL);
  if (tg_parse_hostport(addr, &hp, why, sizeof(why)) != 0 || !hp.is_literal) {
    snprintf(err, errsize, "metrics = %s: %s", addr, why[0] ? why : "needs an IP address");
    return -1;
  }
  uv_tcp_init(loop, &server);
  server_open = 1;
  int rc = uv_tcp_bind(&server, (const struct sockaddr *)&hp.addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&server, 64, on_scrape);
  if (rc != 0) {
    snprintf(err, errsize, "metrics = %s: %s", addr, uv_strerror(rc));
    tg_metrics_stop();
    return -1;
  }
  return 0;
}

void tg_metrics_stop(void) {
  if (!server_open) return;
  server_open = 0;
  uv_close((uv_handle_t *)&server, NULL);
}
