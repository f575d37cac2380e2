/* Shared session-ticket keys (ticket_key_file), so that several tlsgate
 * instances behind a balancer resume each other's sessions.
 *
 * The file holds 1 to 16 keys of 80 random bytes each (`openssl rand 80`),
 * laid out as nginx's ssl_session_ticket_key files are: 16 bytes of key
 * name, 32 of HMAC-SHA256 secret, 32 of AES-256 key.  The first key issues
 * tickets; every key is accepted, and a ticket under an older key is
 * renewed.  Rotate by writing a new key first, keeping the old ones, then
 * reloading every instance. */
#ifndef TG_TICKETS_H
#define TG_TICKETS_H

#include <openssl/ssl.h>
#include <stddef.h>

#define TG_TICKET_KEY_LEN 80
#define TG_TICKET_KEYS_MAX 16

/* Loads path and installs the keys in ctx.  Returns 0 with the number of
 * keys in *nkeys, or -1 with a reason in err. */
int tg_tickets_load(SSL_CTX *ctx, const char *path, size_t *nkeys, char *err,
                    size_t errsize);

#endif
