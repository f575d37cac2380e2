/* TLS glue: contexts built from a listener's config, identity loading, peer
 * verification (client ACL, backend hostname and pins) and error text.
 *
 * Connections use these contexts with memory BIOs (see conn.c): TLS never
 * touches a socket. */
#ifndef TG_TLS_H
#define TG_TLS_H

#include <openssl/ssl.h>

#include "acl.h"
#include "config.h"
#include "tls_bio.h"

/* Per-SSL notes shared with the verify callbacks.  Lives inside the
 * connection; attached with tg_tls_attach(). */
typedef struct {
  const tg_listener_conf_t *conf;
  /* SNI virtual hosts: the section the ClientHello chose (its conf is
   * then in conf), NULL until one was chosen (tg_tls_vhosts_attach). */
  void *section;
  int backend;        /* 1: we are the client of a backend */
  char reason[300];   /* first verification failure, for the log */
  char peer[300];     /* identity of the verified peer, for the log */
  /* Set by the SSL's owner when it can wait for a private-key operation
   * (PKCS#11 keys, pkcs11.c): resume(owner, note) runs on loop once the
   * signature the handshake waits for is ready. */
  void (*resume)(void *owner, void *note);
  void *owner;
  struct uv_loop_s *loop;
} tg_tls_note_t;

int tg_tls_init(char *err, size_t errsize);
const char *tg_tls_library_version(void);

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

/* Creates an SSL with memory BIOs for one side of a connection.  For a
 * backend, host is the name or address the certificate must match. */
SSL *tg_tls_new(SSL_CTX *ctx, tg_tls_note_t *note, const char *host);

/* The note attached by tg_tls_new (NULL if none), e.g. for callbacks that
 * record a failure reason (psk.c). */
tg_tls_note_t *tg_tls_get_note(const SSL *ssl);
/* Attaches another note (a handshake step off the loop works on a copy). */
void tg_tls_set_note(SSL *ssl, tg_tls_note_t *note);

/* What one SSL_do_handshake call did.  rc: 1 finished, 0 waits for input
 * (or, on BoringSSL, for a signature), -1 failed with why.  Reads the
 * calling thread's error queue, so it runs where the call ran. */
typedef struct {
  int rc;
  char why[700];
} tg_hs_step_t;
void tg_tls_handshake_step(SSL *ssl, const tg_tls_note_t *note, tg_hs_step_t *out);

/* The same over a stream BIO (tls_bio.h): TCP connections use this, so no
 * bytes are copied into or kept in memory BIOs. */
SSL *tg_tls_new_stream(SSL_CTX *ctx, tg_tls_note_t *note, const char *host,
                       tg_tls_io_t *io);

/* One line that says why a handshake failed: the verify reason if there is
 * one, then the library's queued errors.  Clears the error queue. */
const char *tg_tls_failure(SSL *ssl, const tg_tls_note_t *note, char *buf,
                           size_t size);

/* Extracts CN, SANs and the SHA-256 fingerprint of a certificate (names
 * with their full lengths; id->bad says why a name is unacceptable). */
void tg_tls_peer_id(X509 *cert, tg_peer_id_t *id);

/* The checks every completed handshake passes before its side counts as
 * connected, full or resumed: backend_pin on the backend's leaf; for
 * clients, a certificate when the policy needs one, allow_clients, names
 * without NUL, and on resumption expiry and the current crl.  0, or -1
 * with why (a full reason line). */
int tg_tls_check_session(SSL *ssl, tg_tls_note_t *note, char *why, size_t whysize);

/* Checks the syntax of a backend_pin list (comma- or space-separated
 * sha256:HEX / spki-sha256:BASE64 entries).  0, or -1 with why. */
int tg_tls_pins_check(const char *list, char *why, size_t whysize);

#endif
