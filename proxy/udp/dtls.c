/* DTLS contexts of `transport = udp` listeners: per service the server
 * context (identity, PSK, client verification, cookies inside the TLS
 * library), the backend context and the cookie secret.  The listening
 * socket is udp_listener.c. */
#include "dtls.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dgram_bio.h"
#include "psk.h"
#include "tls_compat.h"
#include "udp_assoc.h"
#include "udp_caps.h"

/* ---- cookies inside the TLS library (OpenSSL's DTLSv1_listen) ------------------ */

static int assoc_index = -1;
static uv_once_t index_once = UV_ONCE_INIT;

static void index_once_cb(void) {
  assoc_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int tg_dtls_assoc_index(void) {
  uv_once(&index_once, index_once_cb);
  return assoc_index;
}

static tg_udp_assoc_t *assoc_of(SSL *ssl) {
  int idx = tg_dtls_assoc_index();
  return idx < 0 ? NULL : SSL_get_ex_data(ssl, idx);
}

static int cookie_generate(SSL *ssl, uint8_t *cookie, unsigned *len) {
  tg_udp_assoc_t *a = assoc_of(ssl);
  if (!a || tg_cookie_make(&a->s.svc->dtls->keys, tg_now_ms(),
                           (const struct sockaddr *)&a->peer, cookie) != 0)
    return 0;
  *len = TG_COOKIE_LEN;
  return 1;
}

static int cookie_verify(SSL *ssl, const uint8_t *cookie, unsigned len) {
  tg_udp_assoc_t *a = assoc_of(ssl);
  return a && tg_cookie_valid(&a->s.svc->dtls->keys, tg_now_ms(),
                              (const struct sockaddr *)&a->peer, cookie, len);
}

/* ---- service setup ---------------------------------------------------------------- */

int tg_dtls_service_setup(tg_service_t *s, tg_errors_t *errs, char *front,
                          size_t frontsize, char *back, size_t backsize) {
  const tg_listener_conf_t *l = s->conf;
  char where[400];
  size_t before = errs->n;
  if (tg_dgram_bio_init() != 0 || tg_dtls_assoc_index() < 0) {
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
  if (tg_udp_caps_shared_init(d) != 0) {
    tg_errors_add(errs, "out of memory");
    return -1;
  }
  if (RAND_bytes((uint8_t *)&d->src_seed, sizeof(d->src_seed)) != 1) ERR_clear_error();
  long total, per_source;
  tg_udp_caps_from_fd_limit(&total, &per_source);
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
  tg_udp_caps_shared_free(d);
  free(d);
  s->dtls = NULL;
}

