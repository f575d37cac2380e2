/* Metrics: counters kept per listener name (so they survive reloads) and a
 * Prometheus text endpoint served from the main thread's loop.
 *
 * Workers only do relaxed atomic adds on the hot path; the endpoint reads
 * the counters when scraped.  Listener stats are created on first use and
 * never freed, so pointers to them stay valid for the life of the process. */
#ifndef TG_METRICS_H
#define TG_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "config.h"

typedef enum {
  TG_HS_OK = 0,
  TG_HS_NO_CERT,       /* client certificate required, none sent */
  TG_HS_VERIFY,        /* client certificate did not verify */
  TG_HS_ACL,           /* verified, but not in allow_clients */
  TG_HS_TIMEOUT,
  TG_HS_CLOSED,        /* client went away mid-handshake */
  TG_HS_PROTOCOL,      /* anything else the TLS library refused */
  TG_HS_NREASONS
} tg_hs_result_t;

#define TG_METRIC_CIPHERS 16

typedef struct tg_lstats {
  char name[TG_NAME_MAX];
  atomic_ullong accepted;        /* connections accepted */
  atomic_llong active;           /* connections open now */
  atomic_ullong rejected_max;    /* closed at once by max_connections */
  atomic_ullong handshakes[TG_HS_NREASONS];
  atomic_ullong tls12, tls13, resumed;
  atomic_ullong bytes_from_client, bytes_from_backend;
  atomic_ullong proxy_header_errors;
  atomic_ullong http_refused[16]; /* by tg_http_reason_t (http.h) */
  atomic_ullong proxy_refused;   /* peers not in accept_proxy_from */
  atomic_ullong backend_failures[TG_MAX_BACKENDS]; /* by backend index */
  atomic_ullong backend_check_failures[TG_MAX_BACKENDS]; /* backend_check */
  char backend_names[TG_MAX_BACKENDS][280];        /* as configured now */
  atomic_int nbackends;
  atomic_ullong cipher_count[TG_METRIC_CIPHERS];
  const char *_Atomic cipher_name[TG_METRIC_CIPHERS]; /* static strings */
  atomic_llong cert_not_after;   /* the identity's expiry, Unix time; 0 = none */
  /* UDP / DTLS listeners */
  atomic_ullong dtls_hello_verify;   /* HelloVerifyRequests sent (cookies) */
  atomic_ullong dtls_cookie_ok, dtls_cookie_bad;
  atomic_ullong dtls_half_open_refused; /* ClientHellos over the half-open caps */
  atomic_ullong udp_dropped;         /* datagrams dropped without reply */
  atomic_ullong dtls_half_open_evicted; /* half-open handshakes evicted for fairness */
  atomic_ullong dtls_amplification_limited; /* datagrams held back by the 3x rule */
  atomic_ullong udp_refused_source;  /* new peers over max_associations_per_source */
  atomic_ullong udp_refused_total;   /* new peers over the process-wide fd-derived cap */
  atomic_ullong backend_local_errors; /* EMFILE/ENFILE/ENOMEM/ENOBUFS: backend not rested */
  atomic_ullong udp_kernel_drops;    /* datagrams the kernel dropped: receive buffer full */
} tg_lstats_t;

/* The stats of listener name, created on first use.  Thread-safe. */
tg_lstats_t *tg_stats_listener(const char *name);

void tg_stats_cipher(tg_lstats_t *s, const char *cipher);

struct tg_runtime;
/* The runtime whose backend health the endpoint reports (main thread). */
void tg_metrics_set_runtime(struct tg_runtime *rt);

/* Process-wide. */
void tg_stats_reload(int ok, unsigned generation);

/* Starts the endpoint on loop at "host:port".  0 or -1 with err. */
int tg_metrics_start(uv_loop_t *loop, const char *addr, char *err, size_t errsize);
void tg_metrics_stop(void);

/* The /readyz body into a malloc'd buffer; *ready = 1 when every listener
 * is bound and each TCP listener has a backend up. */
char *tg_health_render(size_t *len, int *ready);

/* The whole text exposition into a malloc'd buffer (for tests too). */
char *tg_metrics_render(size_t *len);

#endif
