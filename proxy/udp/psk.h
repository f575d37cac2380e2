/* Pre-shared keys (TLS/DTLS 1.2 PSK cipher suites), e.g. for CoAP devices.
 *
 * `psk = file:PATH` names a file of "identity:hexkey" lines (blank lines and
 * lines starting with '#' are skipped; the last ':' separates, so identities
 * may contain ':').  env:NAME and pass:TEXT give the same entries separated
 * by ','.  Keys never appear in any message: errors name the file, line and
 * identity only.  The table belongs to the SSL_CTX it is installed in. */
#ifndef TG_PSK_H
#define TG_PSK_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct tg_psk_table tg_psk_table_t;

/* Parses entries from text (origin names it in errors, e.g. the path).
 * sep is '\n' for files, ',' for env:/pass: values.  Returns the table, or
 * NULL with a reason in err. */
tg_psk_table_t *tg_psk_parse(const char *text, size_t len, char sep,
                             const char *origin, char *err, size_t errsize);
void tg_psk_free(tg_psk_table_t *t);
size_t tg_psk_count(const tg_psk_table_t *t);

/* Copies the key of identity into key (at most max bytes).  Returns its
 * length, or 0 when the identity is unknown or the key does not fit. */
size_t tg_psk_lookup(const tg_psk_table_t *t, const char *identity,
                     uint8_t *key, size_t max);

/* Printable copy of an identity for log lines (non-printables become '?'). */
void tg_psk_printable(const char *in, char *out, size_t size);

/* Loads l->psk, installs the server callback and psk_identity_hint on ctx
 * (which then owns the table).  Returns 0, or -1 with an error added. */
int tg_psk_server_setup(SSL_CTX *ctx, const tg_listener_conf_t *l,
                        tg_errors_t *errs, char *desc, size_t descsize);

/* backend_psk = file:PATH (one "identity:hexkey" line): installs the client
 * callback on a backend context (which then owns the key) and limits it to
 * PSK suites, so the backend is authenticated by the key.  Returns 0, or
 * -1 with an error added. */
int tg_psk_client_setup(SSL_CTX *ctx, const tg_listener_conf_t *l,
                        tg_errors_t *errs, char *desc, size_t descsize);

#endif
