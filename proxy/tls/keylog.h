/* keylog_file: TLS secrets in the NSS key log format (what Wireshark reads
 * and what `openssl s_client -keylogfile` writes), for debugging only.
 *
 * Every context of a listener (client side and backend side, TLS and DTLS)
 * appends one line per secret to the file, opened O_APPEND so that lines
 * from several workers never interleave.  The file is created with mode
 * 0600; an existing one with any group or other permission is refused. */
#ifndef TG_KEYLOG_H
#define TG_KEYLOG_H

#include <openssl/ssl.h>

#include "config.h"

/* Opens l->keylog_file and makes ctx log to it (the descriptor is closed
 * with ctx).  0, or -1 with an error added. */
int tg_keylog_attach(SSL_CTX *ctx, const tg_listener_conf_t *l, tg_errors_t *errs);

#endif
