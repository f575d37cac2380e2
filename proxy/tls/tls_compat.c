/* The BoringSSL / OpenSSL differences that need a function body (the
 * macros and inline ones are in tls_compat.h). */
#include "tls_compat.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pkcs12.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef OPENSSL_IS_BORINGSSL
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#endif

#ifdef OPENSSL_IS_BORINGSSL

void tg_compat_init(void) {}

const char *tg_tls_library_version(void) {
  static char buf[64];
  snprintf(buf, sizeof(buf), "BoringSSL (API version %d)", BORINGSSL_API_VERSION);
  return buf;
}

int tg_compat_bad_password(unsigned long e) {
  return ERR_GET_LIB(e) == ERR_LIB_PKCS8 && ERR_GET_REASON(e) == PKCS8_R_INCORRECT_PASSWORD;
}

int tg_compat_unsupported_algorithm(unsigned long e) {
  int reason = ERR_GET_REASON(e);
  return ERR_GET_LIB(e) == ERR_LIB_PKCS8 &&
         (reason == PKCS8_R_UNKNOWN_ALGORITHM || reason == PKCS8_R_UNSUPPORTED_CIPHER ||
          reason == PKCS8_R_UNKNOWN_CIPHER);
}

/* BoringSSL keeps its own copy and staples it to every handshake. */
int tg_compat_staple_ocsp(SSL_CTX *ctx, uint8_t *der, size_t len) {
  int ok = SSL_CTX_set_ocsp_response(ctx, der, len);
  free(der);
  return ok ? 0 : -1;
}

/* BoringSSL keeps the certificates as sent, the leaf first. */
int tg_compat_each_peer_chain_cert(SSL *ssl, X509 *leaf, tg_der_fn fn, void *arg) {
  (void)leaf;
  const STACK_OF(CRYPTO_BUFFER) *sent = SSL_get0_peer_certificates(ssl);
  for (size_t i = 1; sent && i < sk_CRYPTO_BUFFER_num(sent); i++) {
    const CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(sent, i);
    if (fn(arg, CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_len(b)) != 0) return -1;
  }
  return 0;
}

int tg_compat_keep_peer_chain(SSL_CTX *ctx) {
  (void)ctx;
  return 0;
}

int tg_compat_ticket_mac_init(tg_ticket_mac_t *m, const uint8_t *key, size_t len) {
  return HMAC_Init_ex(m, key, len, EVP_sha256(), NULL) ? 0 : -1;
}

#else

static OSSL_PROVIDER *legacy_provider;

static void unload_legacy(void) {
  if (legacy_provider) OSSL_PROVIDER_unload(legacy_provider);
  legacy_provider = NULL;
}

/* PFX files written by older tools and Windows use RC2-40, which OpenSSL 3
 * keeps in its legacy provider.  Without it those files cannot load, so
 * the error for them says how to convert instead. */
void tg_compat_init(void) {
  static int registered;
  legacy_provider = OSSL_PROVIDER_try_load(NULL, "legacy", 1);
  ERR_clear_error();
  /* Registered after OpenSSL's own exit handler, so it runs first. */
  if (!registered++) atexit(unload_legacy);
}

const char *tg_tls_library_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

int tg_compat_bad_password(unsigned long e) {
  int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
  return (lib == ERR_LIB_PKCS12 && reason == PKCS12_R_MAC_VERIFY_FAILURE) ||
         (lib == ERR_LIB_EVP && reason == EVP_R_BAD_DECRYPT);
}

int tg_compat_unsupported_algorithm(unsigned long e) {
  int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
  return (lib == ERR_LIB_EVP && reason == EVP_R_UNSUPPORTED_ALGORITHM) ||
         lib == ERR_LIB_PROV || (lib == ERR_LIB_EVP && reason == ERR_R_UNSUPPORTED);
}

typedef struct {
  uint8_t *der;
  size_t len;
} ocsp_t;

static int ocsp_index = -1;

static void free_ocsp(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
                      long argl, void *argp) {
  ocsp_t *o = ptr;
  if (o) free(o->der);
  free(o);
}

/* OpenSSL asks per handshake; it takes ownership of the copy it is given. */
static int ocsp_status_cb(SSL *ssl, void *arg) {
  ocsp_t *o = arg;
  if (SSL_get_tlsext_status_type(ssl) != TLSEXT_STATUSTYPE_ocsp) return SSL_TLSEXT_ERR_NOACK;
  uint8_t *copy = OPENSSL_malloc(o->len);
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  memcpy(copy, o->der, o->len);
  if (!SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)o->len)) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

/* The response lives in ctx's ex_data and goes with ctx. */
int tg_compat_staple_ocsp(SSL_CTX *ctx, uint8_t *der, size_t len) {
  ocsp_t *o = calloc(1, sizeof(*o));
  if (!o) {
    free(der);
    return -1;
  }
  o->der = der;
  o->len = len;
  if (ocsp_index < 0) ocsp_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_ocsp);
  if (ocsp_index < 0 || !SSL_CTX_set_ex_data(ctx, ocsp_index, o)) {
    free_ocsp(NULL, o, NULL, 0, 0, NULL);
    return -1;
  }
  SSL_CTX_set_tlsext_status_cb(ctx, ocsp_status_cb);
  SSL_CTX_set_tlsext_status_arg(ctx, o);
  return 0;
}

/* At most this much of a client's chain goes into a ticket; a longer one
 * is not kept (the resumption re-check then sees client_ca's part). */
#define CHAIN_APPDATA_MAX 16384

/* On a server OpenSSL's chain is the certificates as sent, without the leaf;
 * a client that repeats its leaf in the chain has it skipped.  A session
 * from a ticket has no chain: it is in the ticket's app data, DER after
 * DER (chain_to_ticket). */
int tg_compat_each_peer_chain_cert(SSL *ssl, X509 *leaf, tg_der_fn fn, void *arg) {
  STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
  if (!sent || sk_X509_num(sent) == 0) {
    void *data = NULL;
    size_t len = 0;
    SSL_SESSION *sess = SSL_get_session(ssl);
    if (!sess || !SSL_SESSION_get0_ticket_appdata(sess, &data, &len) || !data) return 0;
    const unsigned char *p = data, *end = p + len;
    while (p < end) {
      const unsigned char *start = p;
      X509 *x = d2i_X509(NULL, &p, (long)(end - p));
      if (!x) {
        ERR_clear_error();
        return -1;
      }
      int rc = X509_cmp(x, leaf) == 0 ? 0 : fn(arg, start, (size_t)(p - start));
      X509_free(x);
      if (rc != 0) return -1;
    }
    return 0;
  }
  for (int i = 0; i < sk_X509_num(sent); i++) {
    X509 *x = sk_X509_value(sent, i);
    if (X509_cmp(x, leaf) == 0) continue;
    unsigned char *d = NULL;
    int m = i2d_X509(x, &d);
    int rc = m <= 0 ? -1 : fn(arg, d, (size_t)m);
    OPENSSL_free(d);
    if (rc != 0) return -1;
  }
  return 0;
}

/* A new ticket: the client's chain of a full handshake into its app data
 * (a renewed ticket keeps the app data of the session it renews). */
static int chain_to_ticket(SSL *ssl, void *arg) {
  (void)arg;
  STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
  SSL_SESSION *sess = SSL_get_session(ssl);
  if (!sent || sk_X509_num(sent) == 0 || !sess) return 1;
  unsigned char *buf = malloc(CHAIN_APPDATA_MAX);
  size_t len = 0;
  for (int i = 0; buf && i < sk_X509_num(sent); i++) {
    int m = i2d_X509(sk_X509_value(sent, i), NULL);
    if (m <= 0 || (size_t)m > CHAIN_APPDATA_MAX - len) {
      len = 0;
      break;
    }
    unsigned char *p = buf + len;
    i2d_X509(sk_X509_value(sent, i), &p);
    len += (size_t)m;
  }
  if (len) SSL_SESSION_set1_ticket_appdata(sess, buf, len);
  free(buf);
  ERR_clear_error();
  return 1;
}

/* The library's own answers to a ticket's status. */
static SSL_TICKET_RETURN ticket_as_is(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
                                      size_t namelen, SSL_TICKET_STATUS status, void *arg) {
  (void)ssl, (void)sess, (void)name, (void)namelen, (void)arg;
  switch (status) {
  case SSL_TICKET_EMPTY:
  case SSL_TICKET_NO_DECRYPT:
    return SSL_TICKET_RETURN_IGNORE_RENEW;
  case SSL_TICKET_SUCCESS:
    return SSL_TICKET_RETURN_USE;
  case SSL_TICKET_SUCCESS_RENEW:
    return SSL_TICKET_RETURN_USE_RENEW;
  default:
    return SSL_TICKET_RETURN_ABORT;
  }
}

int tg_compat_keep_peer_chain(SSL_CTX *ctx) {
  return SSL_CTX_set_session_ticket_cb(ctx, chain_to_ticket, ticket_as_is, NULL) ? 0 : -1;
}

int tg_compat_ticket_mac_init(tg_ticket_mac_t *m, const uint8_t *key, size_t len) {
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_end()};
  return EVP_MAC_init(m, key, len, params) ? 0 : -1;
}

#endif
