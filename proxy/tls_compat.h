/* The few places where BoringSSL and OpenSSL 3 differ, kept together. */
#ifndef TG_TLS_COMPAT_H
#define TG_TLS_COMPAT_H

#include <openssl/ssl.h>

#ifdef OPENSSL_IS_BORINGSSL
#define TG_TLS_LIBRARY "BoringSSL"
/* BoringSSL rejects unknown names instead of skipping them. */
#define tg_ctx_set_cipher_list(ctx, list) SSL_CTX_set_strict_cipher_list(ctx, list)
#define tg_get_peer_certificate(ssl) SSL_get_peer_certificate(ssl)
/* A BoringSSL server never renegotiates; nothing to switch off. */
#define TG_SSL_OP_NO_RENEGOTIATION 0
#else
#define TG_TLS_LIBRARY "OpenSSL"
#define tg_ctx_set_cipher_list(ctx, list) SSL_CTX_set_cipher_list(ctx, list)
#define tg_get_peer_certificate(ssl) SSL_get1_peer_certificate(ssl)
#define TG_SSL_OP_NO_RENEGOTIATION SSL_OP_NO_RENEGOTIATION
#endif

#endif
