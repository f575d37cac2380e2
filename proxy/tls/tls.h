/* TLS glue: contexts built from a listener's config, identity loading, peer
 * verification (client ACL, backend hostname and pins) and error text.
 *
 * TLS never touches a socket: TCP connections run an SSL over the stream
 * BIO (tls_bio.h), DTLS associations over the datagram BIO, and backend
 * health checks over memory BIOs. */
#ifndef TG_TLS_H
#define TG_TLS_H

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "acl.h"
#include "config.h"
#include "metrics.h"
#include "sni.h"
#include "tls_bio.h"

/* Per-SSL notes shared with the verify callbacks.  Lives inside the
 * connection; attached by tg_tls_new() and tg_tls_new_stream(). */
typedef struct {
  const tg_listener_conf_t *conf;
  /* SNI virtual hosts: the section the ClientHello chose (its conf is
   * then in conf), NULL until one was chosen (tg_tls_vhosts_attach). */
  void *section;
  /* ... and the bind's name table with the index chosen in it, for the
   * HTTP guard's Host check (tg_tls_vhost_names). */
  const tg_sni_table_t *vhosts;
  int vhost;
  int backend;        /* 1: we are the client of a backend */
  char reason[300];   /* first verification failure, for the log */
  /* Why the handshake failed, as a value for the counters: set where the
   * failure is found (verify callbacks, PSK lookup, session checks,
   * tg_tls_failure for the library's own refusals); TG_HS_OK until then.
   * reason and the texts are for people only. */
  tg_hs_result_t result;
  char peer[300];     /* identity of the verified peer, for the log */
  /* Set by the SSL's owner when it can wait for a private-key operation
   * (PKCS#11 keys, pkcs11.c): resume(owner, note) runs on loop once the
   * signature the handshake waits for is ready. */
  void (*resume)(void *owner, void *note);
  void *owner;
  struct uv_loop_s *loop;
} tg_tls_note_t;

int tg_tls_init(char *err, size_t errsize);

/* Builds the listener-side context (secure = on).  NULL with errors added. */
SSL_CTX *tg_tls_server_ctx(const tg_listener_conf_t *l, tg_errors_t *errs,
                           char *summary, size_t sumsize);
/* Builds the backend-side context (backend_secure = on). */
SSL_CTX *tg_tls_backend_ctx(const tg_listener_conf_t *l, tg_errors_t *errs,
                            char *summary, size_t sumsize);

/* SNI virtual hosts (sni.h): the sections sharing one bind, each with its
 * own context.  Every connection of the bind starts on front (the default
 * section's context).  Its ClientHello callback runs before the library
 * decides on resumption, versions or ciphers: it moves the SSL to the
 * chosen section's context, sets that section's verification policy and
 * minimum version on the SSL (no library carries them over), and records
 * the choice in the note (conf, section); with strict, a name no section
 * claims (or none) ends the handshake.  Each context's session id context
 * digests its section, so a session resumes only in the section that
 * made it.  0, or -1 with an error added. */
typedef struct {
  const tg_listener_conf_t *conf;
  SSL_CTX *ctx;
  void *section; /* the caller's, handed back in tg_tls_note_t.section */
} tg_tls_vhost_t;

int tg_tls_vhosts_attach(SSL_CTX *front, const tg_tls_vhost_t *v, size_t n, int dflt,
                         int strict, tg_errors_t *errs);

/* The name table of the bind ssl is on, with in *section the index its
 * first ClientHello chose (compare with tg_sni_choose); NULL when ssl is
 * not on a bind shared by SNI sections.  The table lives as long as ssl
 * (it belongs to the front context, which the SSL keeps as its session
 * context). */
const tg_sni_table_t *tg_tls_vhost_names(SSL *ssl, int *section);

/* Creates an SSL over a pair of memory BIOs: a health check uses them as
 * they are, a DTLS association replaces them with its datagram BIO.  For a
 * backend, host is the name or address the certificate must match. */
SSL *tg_tls_new(SSL_CTX *ctx, tg_tls_note_t *note, const char *host);

/* The note attached by tg_tls_new (NULL if none), e.g. for callbacks that
 * record a failure reason (psk.c). */
tg_tls_note_t *tg_tls_get_note(const SSL *ssl);
/* Attaches another note (a handshake step off the loop works on a copy). */
void tg_tls_set_note(SSL *ssl, tg_tls_note_t *note);

/* What one SSL_do_handshake call did.  rc: 1 finished, 0 waits for input
 * (or, on BoringSSL, for a signature), 2 wants to be called again (an SNI
 * section's token key: see TG_HELLO_AGAIN), -1 failed with why (and
 * note->result, see tg_tls_failure).  Reads the calling thread's error
 * queue, so it runs where the call ran. */
typedef struct {
  int rc;
  char why[700];
} tg_hs_step_t;
void tg_tls_handshake_step(SSL *ssl, tg_tls_note_t *note, tg_hs_step_t *out);

/* The same over a stream BIO (tls_bio.h): TCP connections use this, so no
 * bytes are copied into or kept in a BIO's buffer. */
SSL *tg_tls_new_stream(SSL_CTX *ctx, tg_tls_note_t *note, const char *host,
                       tg_tls_io_t *io);

/* Writes the TLS library's queued errors as "reason: reason" into buf and
 * clears the queue.  Returns buf ("no error detail" when the queue is empty). */
const char *tg_tls_errors(char *buf, unsigned long size);

/* Empties this thread's error queue before a TLS call whose result goes
 * to SSL_get_error (a stale entry would turn "wants more input" into a
 * failure).  The queue is nearly always empty already, and OpenSSL 3's
 * ERR_clear_error rewrites all 16 slots (two frees each) every time: on the
 * data path, where it runs per SSL_read/SSL_write, that showed in profiles.
 * SSL_get_error looks only at ERR_peek_error, so this is the same test. */
static inline void tg_tls_clear_errors(void) {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

/* One line that says why a handshake failed: the verify reason if there is
 * one, then the library's queued errors.  Clears the error queue.  Records
 * the failure's kind in note->result (tg_tls_hs_result). */
const char *tg_tls_failure(SSL *ssl, tg_tls_note_t *note, char *buf,
                           size_t size);

/* How a failed handshake counts: note->result, or TG_HS_PROTOCOL when no
 * check recorded a reason. */
tg_hs_result_t tg_tls_hs_result(const tg_tls_note_t *note);

/* Extracts CN, SANs and the SHA-256 fingerprint of a certificate (names
 * with their full lengths; id->bad says why a name is unacceptable). */
void tg_tls_peer_id(X509 *cert, tg_peer_id_t *id);

/* The checks every completed handshake passes before its side counts as
 * connected, full or resumed: backend_pin on the backend's leaf; for
 * clients, a certificate when the policy needs one, allow_clients, names
 * without NUL, and on resumption expiry and the current crl.  0, or -1
 * with why (a full reason line) and note->result set. */
int tg_tls_check_session(SSL *ssl, tg_tls_note_t *note, char *why, size_t whysize);

/* Checks the syntax of a backend_pin list (comma- or space-separated
 * sha256:HEX / spki-sha256:BASE64 entries).  0, or -1 with why. */
int tg_tls_pins_check(const char *list, char *why, size_t whysize);

#endif
