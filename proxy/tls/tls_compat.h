/* The places where BoringSSL and OpenSSL 3 differ, kept together: macros
 * and inline functions here, the longer ones in tls_compat.c.  Outside
 * this pair only pkcs11*.c test OPENSSL_IS_BORINGSSL (token keys plug into
 * each library in its own way). */
#ifndef TG_TLS_COMPAT_H
#define TG_TLS_COMPAT_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

/* Start-up: OpenSSL loads its legacy provider (old PFX ciphers). */
void tg_compat_init(void);
/* "BoringSSL (API version N)" or OpenSSL's version line. */
const char *tg_tls_library_version(void);

/* Whether a queued error e means a wrong PFX/key password, or a cipher this
 * build cannot decrypt. */
int tg_compat_bad_password(unsigned long e);
int tg_compat_unsupported_algorithm(unsigned long e);

/* Staples a DER OCSP response to every handshake on ctx.  Takes der (from
 * malloc) in every case.  0, or -1 with the reason in the error queue. */
int tg_compat_staple_ocsp(SSL_CTX *ctx, uint8_t *der, size_t len);

/* Calls fn with the DER of each certificate the peer sent after its leaf,
 * in the order sent (a server's view of a client chain).  Stops at the
 * first fn that returns -1.  0, or -1.  On a resumed session too, where
 * the server context keeps the chain (tg_compat_keep_peer_chain). */
typedef int (*tg_der_fn)(void *arg, const uint8_t *der, size_t len);
int tg_compat_each_peer_chain_cert(SSL *ssl, X509 *leaf, tg_der_fn fn, void *arg);

/* Makes the sessions of a server context keep the client's chain, tickets
 * included, for the revocation re-check on resumption: BoringSSL does by
 * itself; OpenSSL keeps it in memory only, so it goes into the ticket's
 * app data.  0, or -1. */
int tg_compat_keep_peer_chain(SSL_CTX *ctx);

/* Session tickets: the MAC context the ticket callback keys, and the call
 * that installs such a callback. */
#ifdef OPENSSL_IS_BORINGSSL
typedef HMAC_CTX tg_ticket_mac_t;
#define tg_ctx_set_ticket_cb(ctx, cb) SSL_CTX_set_tlsext_ticket_key_cb(ctx, cb)
#else
typedef EVP_MAC_CTX tg_ticket_mac_t;
#define tg_ctx_set_ticket_cb(ctx, cb) SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, cb)
#endif
/* Keys m as HMAC-SHA256.  0, or -1. */
int tg_compat_ticket_mac_init(tg_ticket_mac_t *m, const uint8_t *key, size_t len);

#ifdef OPENSSL_IS_BORINGSSL
#define TG_TLS_LIBRARY "BoringSSL"
/* BoringSSL rejects unknown names instead of skipping them. */
#define tg_ctx_set_cipher_list(ctx, list) SSL_CTX_set_strict_cipher_list(ctx, list)
#define tg_get_peer_certificate(ssl) SSL_get_peer_certificate(ssl)
/* A BoringSSL server never renegotiates; nothing to switch off. */
#define TG_SSL_OP_NO_RENEGOTIATION 0
/* An asynchronous private key (pkcs11.c) has not signed yet. */
#define TG_SSL_ERROR_WANT_PRIVATE_KEY SSL_ERROR_WANT_PRIVATE_KEY_OPERATION
#else
#define TG_TLS_LIBRARY "OpenSSL"
#define tg_ctx_set_cipher_list(ctx, list) SSL_CTX_set_cipher_list(ctx, list)
#define tg_get_peer_certificate(ssl) SSL_get1_peer_certificate(ssl)
#define TG_SSL_OP_NO_RENEGOTIATION SSL_OP_NO_RENEGOTIATION
#define TG_SSL_ERROR_WANT_PRIVATE_KEY (-1) /* OpenSSL signs synchronously */
#endif

/* ---- DTLS ------------------------------------------------------------------
 * TG_DTLS_COOKIES: the library can answer a ClientHello statelessly
 * (HelloVerifyRequest, DTLSv1_listen).  BoringSSL removed that in 2015 and
 * its fresh DTLS server only accepts a ClientHello with message_seq 0.
 *
 * Default DTLS 1.2 suites (used when `ciphers` is empty).  PSK suites only
 * take effect when `psk` is set.  BoringSSL has no CCM and no plain-PSK
 * AEAD suites, so its plain-PSK choice is CBC.
 *
 * tg_dtls_data_mtu: the most plaintext one datagram of `mtu` bytes can
 * carry with the negotiated suite.
 *
 * tg_dtls_set_cookie_cbs / tg_dtls_listen: OpenSSL's cookie callbacks and
 * DTLSv1_listen (1: a ClientHello with a valid cookie was taken and the
 * session continues after the HelloVerifyRequest); no-ops / -1 on
 * BoringSSL, where TG_DTLS_COOKIES keeps them from being used.
 *
 * tg_dtls_shed_when_established: an idle association is mostly its SSL;
 * BoringSSL can drop the certificate, key and other handshake-only
 * configuration once the handshake completes (nothing renegotiates).
 *
 * TG_DTLS_IDLE_BUFFERS: the library keeps its record buffers (OpenSSL: two
 * of about 17 KiB) for the life of the SSL.  tg_dtls_free_buffers releases
 * them (1; 0 when data is pending), tg_dtls_alloc_buffers takes them back
 * (1, or 0 out of memory) -- needed before any further SSL call, as
 * OpenSSL 3.0's DTLS write path writes into the released buffer. */
typedef int (*tg_cookie_gen_cb)(SSL *ssl, uint8_t *cookie, unsigned *len);
typedef int (*tg_cookie_verify_cb)(SSL *ssl, const uint8_t *cookie, unsigned len);
#ifdef OPENSSL_IS_BORINGSSL
#define TG_DTLS_COOKIES 0
#define TG_DTLS_DEFAULT_CIPHERS                                              \
  "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE-PSK-AES128-CBC-SHA:"                     \
  "ECDHE-PSK-AES256-CBC-SHA:PSK-AES128-CBC-SHA:PSK-AES256-CBC-SHA"
static inline size_t tg_dtls_data_mtu(SSL *ssl, unsigned mtu) {
  size_t overhead = SSL_max_seal_overhead(ssl);
  return mtu > overhead ? mtu - overhead : 0;
}
static inline void tg_dtls_set_cookie_cbs(SSL_CTX *ctx, tg_cookie_gen_cb gen,
                                          tg_cookie_verify_cb verify) {
  (void)ctx;
  (void)gen;
  (void)verify;
}
static inline int tg_dtls_listen(SSL *ssl) {
  (void)ssl;
  return -1;
}
static inline void tg_dtls_shed_when_established(SSL *ssl) {
  SSL_set_shed_handshake_config(ssl, 1);
}
#define TG_DTLS_IDLE_BUFFERS 0 /* BoringSSL releases empty buffers itself */
static inline int tg_dtls_free_buffers(SSL *ssl) {
  (void)ssl;
  return 0;
}
static inline int tg_dtls_alloc_buffers(SSL *ssl) {
  (void)ssl;
  return 1;
}
#else
#define TG_DTLS_COOKIES 1
#define TG_DTLS_DEFAULT_CIPHERS                                              \
  "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE-ECDSA-AES128-CCM8:"                      \
  "ECDHE-ECDSA-AES128-CCM:ECDHE-PSK-CHACHA20-POLY1305:"                       \
  "ECDHE-PSK-AES128-CBC-SHA256:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:"  \
  "PSK-CHACHA20-POLY1305:PSK-AES128-CCM8:PSK-AES128-CCM:PSK-AES128-CBC-SHA256"
static inline size_t tg_dtls_data_mtu(SSL *ssl, unsigned mtu) {
  (void)mtu; /* SSL_set_mtu already told it */
  return DTLS_get_data_mtu(ssl);
}
static inline void tg_dtls_set_cookie_cbs(SSL_CTX *ctx, tg_cookie_gen_cb gen,
                                          tg_cookie_verify_cb verify) {
  SSL_CTX_set_cookie_generate_cb(ctx, gen);
  SSL_CTX_set_cookie_verify_cb(ctx, verify);
}
static inline int tg_dtls_listen(SSL *ssl) {
  BIO_ADDR *peer = BIO_ADDR_new();
  if (!peer) return -1;
  int r = DTLSv1_listen(ssl, peer);
  BIO_ADDR_free(peer);
  return r;
}
static inline void tg_dtls_shed_when_established(SSL *ssl) {
  (void)ssl; /* OpenSSL keeps its configuration; buffers: see below */
}
#define TG_DTLS_IDLE_BUFFERS 1
static inline int tg_dtls_free_buffers(SSL *ssl) { return SSL_free_buffers(ssl); }
static inline int tg_dtls_alloc_buffers(SSL *ssl) { return SSL_alloc_buffers(ssl); }
#endif

/* ---- the earliest server callback (SNI virtual hosts, tls.c) ---------------
 * TG_DEFINE_HELLO_CB(name, fn) defines a callback called name that hands
 * fn(ssl, ext, extlen) the raw server_name extension of the ClientHello
 * (ext NULL when absent) before the library looks at sessions, versions or
 * ciphers; fn answers TG_HELLO_GO_ON, TG_HELLO_REFUSE, or TG_HELLO_AGAIN:
 * stop here, SSL_do_handshake fails with TG_SSL_ERROR_HELLO_AGAIN, and the
 * next call runs the callback again (OpenSSL: so that a step whose section
 * signs with a token key can move to the token's thread, pkcs11_offload.c).
 * tg_ctx_set_hello_cb(ctx, name) installs it.  OpenSSL calls it the
 * client_hello callback, BoringSSL the select_certificate callback.
 *
 * Neither library carries the verify mode, its callback or the version
 * range over SSL_set_SSL_CTX (they are copied into the SSL when it is
 * made); the caller sets those on the SSL itself (tg_tls_vhosts_attach). */
enum { TG_HELLO_REFUSE = 0, TG_HELLO_GO_ON = 1, TG_HELLO_AGAIN = 2 };
#ifdef OPENSSL_IS_BORINGSSL
#define TG_SSL_ERROR_HELLO_AGAIN SSL_ERROR_PENDING_CERTIFICATE
#define TG_DEFINE_HELLO_CB(name, fn)                                              \
  static enum ssl_select_cert_result_t name(const SSL_CLIENT_HELLO *hello) {      \
    const uint8_t *ext = NULL;                                                    \
    size_t extlen = 0;                                                            \
    if (!SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_server_name,     \
                                              &ext, &extlen))                     \
      ext = NULL;                                                                 \
    switch (fn(hello->ssl, ext, extlen)) {                                        \
    case TG_HELLO_GO_ON: return ssl_select_cert_success;                          \
    case TG_HELLO_AGAIN: return ssl_select_cert_retry;                            \
    default: return ssl_select_cert_error;                                        \
    }                                                                             \
  }
#define tg_ctx_set_hello_cb(ctx, name) SSL_CTX_set_select_certificate_cb(ctx, name)
#else
#define TG_SSL_ERROR_HELLO_AGAIN SSL_ERROR_WANT_CLIENT_HELLO_CB
#define TG_DEFINE_HELLO_CB(name, fn)                                              \
  static int name(SSL *ssl, int *alert, void *arg) {                              \
    const unsigned char *ext = NULL;                                              \
    size_t extlen = 0;                                                            \
    (void)arg;                                                                    \
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &extlen))  \
      ext = NULL;                                                                 \
    switch (fn(ssl, ext, extlen)) {                                               \
    case TG_HELLO_GO_ON: return SSL_CLIENT_HELLO_SUCCESS;                         \
    case TG_HELLO_AGAIN: return SSL_CLIENT_HELLO_RETRY;                           \
    default: *alert = SSL_AD_UNRECOGNIZED_NAME; return SSL_CLIENT_HELLO_ERROR;    \
    }                                                                             \
  }
#define tg_ctx_set_hello_cb(ctx, name) SSL_CTX_set_client_hello_cb(ctx, name, NULL)
#endif

#endif
