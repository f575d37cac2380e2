/* Keys on PKCS#11 tokens (smart cards, HSMs), named by RFC 7512 URIs.
 *
 * A module (pkcs11_module, default p11-kit's proxy, which loads every
 * module the system has configured) is dlopen()ed once per process.  Every
 * token gets one session of its own and one signer thread of its own: all
 * operations on a token run on that thread, one at a time (PKCS#11 allows
 * one operation per session), and never on an event loop.  Tokens and keys
 * live until the process exits, so a reload finds the token still logged
 * in and does not log in again.
 *
 * Login rules: at most one login attempt per token and process start; no
 * attempt when the token reports its final PIN try or a locked PIN; none
 * in check mode (tlsgate -t), which finds module, token and object only.
 *
 * Keys are attached to an SSL_CTX by tg_p11_use_key(): on BoringSSL through
 * an asynchronous private-key method (the handshake returns
 * SSL_ERROR_WANT_PRIVATE_KEY_OPERATION and the note's resume callback runs
 * on the loop when the signature is ready); on OpenSSL 3 through a key whose
 * RSA/EC method signs synchronously (pkcs11_ossl.c), so there the whole
 * handshake step runs on the token's signer thread instead of the loop
 * (pkcs11_offload.c, see README). */
#ifndef TG_PKCS11_H
#define TG_PKCS11_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "tls.h"

typedef struct tg_p11_key tg_p11_key_t;

static inline int tg_p11_is_uri(const char *s) {
  return s && (s[0] == 'p' || s[0] == 'P') && !strncasecmp(s, "pkcs11:", 7);
}

/* tlsgate -t: find module, token and objects, never log in. */
void tg_p11_set_check_only(int on);

/* The module used when pkcs11_module is empty. */
const char *tg_p11_default_module(void);

/* Checks a URI's syntax (config validation).  0, or -1 with why. */
int tg_p11_uri_check(const char *uri, char *why, size_t whysize);

/* Finds the private key uri names on a token of module (empty: default),
 * logging in with the secret pin_spec (env:/file:/pass:) when the token
 * needs it and is not logged in yet.  Keys are kept until exit: a second
 * open of the same module and URI returns the same key.  NULL with err. */
tg_p11_key_t *tg_p11_key_open(const char *module, const char *uri,
                              const char *pin_spec, char *err, size_t errsize);

/* Reads the certificate uri names (no login needed).  NULL with err. */
X509 *tg_p11_cert_load(const char *module, const char *uri, char *err,
                       size_t errsize);

/* "token 'X' object 'Y' (EC P-256)" and what was done about the PIN. */
const char *tg_p11_key_describe(const tg_p11_key_t *k);

/* Makes ctx sign with k for cert (which must hold k's public key): a
 * test signature checks that they match (not in check mode).  For RSA keys
 * without PSS on the token, TLS 1.3 is switched off with a warning, and
 * min13 (min_version = 1.3) makes it an error.  0, or -1 with err. */
int tg_p11_use_key(SSL_CTX *ctx, tg_p11_key_t *k, X509 *cert, int min13,
                   char *err, size_t errsize);

/* ---- handshake steps off the loop (pkcs11_offload.c) ----------------------
 * The OpenSSL build has no asynchronous key hook short of ASYNC fibers, so
 * a connection whose SSL signs with a token key runs each SSL_do_handshake
 * on the token's signer thread, where the signature is made in place:
 *
 *   loop:   tg_p11_hs_start(ssl, io, ...)  -- stop touching ssl and io
 *   signer: SSL_do_handshake on the job's copies of input, output, note
 *   loop:   done(arg, job); tg_p11_hs_return() if the side still uses ssl;
 *           tg_p11_hs_free()
 *
 * The job holds its own reference to ssl, so the connection may free its
 * side (close, a failed backend attempt) while the step runs. */
typedef struct tg_p11_hs_job tg_p11_hs_job_t;

/* 1 when ssl's handshake steps must run off the loop (OpenSSL build, the
 * SSL's context signs with a token key); always 0 on BoringSSL. */
int tg_p11_hs_off_loop(const SSL *ssl);

/* Starts one handshake step of ssl on its token's signer thread.  Takes
 * over io's state (the unread input window, copied, and the output block)
 * and works on a copy of the SSL's note; until done(arg, job) runs on
 * loop the caller must not use ssl.  fd is the peer's socket (-1: none):
 * when the peer has closed it by the step's turn, the step is not run and
 * fails.  NULL with why when it could not start (io and ssl untouched),
 * e.g. "token 'X' busy: N signatures pending". */
tg_p11_hs_job_t *tg_p11_hs_start(SSL *ssl, tg_tls_io_t *io, int fd, struct uv_loop_s *loop,
                                 void (*done)(void *arg, tg_p11_hs_job_t *job), void *arg,
                                 char *why, size_t whysize);
SSL *tg_p11_hs_ssl(const tg_p11_hs_job_t *job);
/* What the step did. */
const tg_hs_step_t *tg_p11_hs_result(const tg_p11_hs_job_t *job);
/* Gives ssl back to its side: output and the unread input go back to io
 * (io->in stays valid until tg_p11_hs_free), note receives the step's
 * findings and is attached again. */
void tg_p11_hs_return(tg_p11_hs_job_t *job, tg_tls_io_t *io, tg_tls_note_t *note);
/* On the loop: frees the job and drops its reference to ssl. */
void tg_p11_hs_free(tg_p11_hs_job_t *job);

/* At most this many operations (signatures, or handshake steps on the
 * OpenSSL build) wait for one token; beyond, a handshake that needs the
 * token fails at once ("token 'X' busy: N signatures pending") instead of
 * queueing (see README, PKCS#11).  A queued operation whose connection has
 * gone is dropped without touching the token. */
#define TG_P11_MAX_PENDING 64

/* ---- shared with pkcs11_ossl.c and pkcs11_offload.c ----------------------- */

/* The token key ssl's context signs with, or NULL. */
tg_p11_key_t *tg_p11_ssl_key(const SSL *ssl);

/* Runs run(arg) on k's signer thread, after what is queued there, then
 * done(arg) on loop.  A signature wanted by run is made in place.  0, or -1
 * with why (neither runs), e.g. when TG_P11_MAX_PENDING are queued. */
int tg_p11_run_on_signer(tg_p11_key_t *k, struct uv_loop_s *loop, void (*run)(void *arg),
                         void (*done)(void *arg), void *arg, char *why, size_t whysize);

/* Signs in (a digest, DigestInfo or padded block, per the mechanism) with k
 * on the token's signer thread and waits for the answer (called on a
 * signer thread, e.g. inside a handshake step there: signs in place).  For ECDSA the
 * result is r||s.  Returns the signature length, or -1 with why. */
int tg_p11_sign_wait(tg_p11_key_t *k, unsigned long mech, const void *param,
                     unsigned long paramlen, const uint8_t *in, size_t inlen,
                     uint8_t *out, size_t outsize, char *why, size_t whysize);

int tg_p11_key_is_rsa(const tg_p11_key_t *k);
/* 0 in check mode (tlsgate -t), where keys are found but never used. */
int tg_p11_key_usable(const tg_p11_key_t *k);

#ifndef OPENSSL_IS_BORINGSSL
/* An EVP_PKEY holding pub's public half whose private operations go to k
 * (deprecated RSA_METHOD / EC_KEY_METHOD API, confined to pkcs11_ossl.c). */
EVP_PKEY *tg_p11_ossl_pkey(tg_p11_key_t *k, EVP_PKEY *pub, char *err,
                           size_t errsize);
/* Why the last signature on this thread failed (then forgotten), or NULL. */
const char *tg_p11_take_failure(char *buf, size_t size);
#else
/* BoringSSL's token keys sign asynchronously and report failures on the
 * connection; there is never a thread-local failure to take. */
static inline const char *tg_p11_take_failure(char *buf, size_t size) {
  (void)buf;
  (void)size;
  return (const char *)0;
}
#endif

#endif
