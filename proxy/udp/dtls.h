/* The UDP half of tlsgate: `transport = udp` listeners.  DTLS contexts are
 * dtls.c; the listening socket udp_listener.c, its association table
 * assoc_table.c, the caps udp_caps.c, one association udp_assoc.c.
 *
 * One bound UDP socket per listener and worker serves many clients.  Each
 * client address:port gets its own association (udp_assoc.c): a DTLS 1.2
 * server session when secure = on, and its own UDP socket towards the
 * backend (plain, or DTLS when backend_secure = on), so replies find their
 * way back to the right client.
 *
 * Before any state is spent on an unknown peer, its datagram is classified
 * (dtls_cookie.c); only a ClientHello can create an association.  On the
 * OpenSSL build (dtls_cookie = auto|on) a ClientHello without a valid
 * cookie is answered with a HelloVerifyRequest no larger than itself and
 * forgotten.  On BoringSSL (which cannot do that) and with dtls_cookie =
 * off, a peer gets at most 3x the bytes it sent and nothing on a timer
 * until its handshake completes, and half-open handshakes are capped in
 * total and per source (IPv4 address, IPv6 /64), the busiest source's
 * oldest evicted first, and live at most handshake_timeout.  Associations
 * (DTLS and plain) are capped per source and, derived from the fd limit,
 * for the whole process. */
#ifndef TG_DTLS_H
#define TG_DTLS_H

#include <openssl/ssl.h>

#include "config.h"
#include "runtime.h"
#include "worker.h"

/* 1 when x and y count as one source for the per-source caps: the same
 * IPv4 address (an IPv4-mapped IPv6 address counts as IPv4), or IPv6
 * addresses in the same /64; ports never matter. */
int tg_udp_same_source(const struct sockaddr *x, const struct sockaddr *y);

/* Builds the UDP parts of a service: the DTLS server context (secure =
 * on: identity, PSK, client verification, cookies), the DTLS backend
 * context (backend_secure = on) and the cookie secret.  front and back
 * receive the summary texts.  Returns 0, or -1 with errors added. */
int tg_dtls_service_setup(tg_service_t *s, tg_errors_t *errs, char *front,
                          size_t frontsize, char *back, size_t backsize);
void tg_dtls_service_free(tg_service_t *s);

/* Makes the worker's UDP listeners match w->rt: at start-up, and after a
 * reload has switched w->rt.  A listener whose bind is still configured
 * keeps its socket and associations (these finish on the runtime they
 * started on) and takes new clients for the new config; one whose bind is
 * gone stops taking new clients and closes with its last association; new
 * binds get a listener on a dup() of the runtime's socket for this worker.
 * Returns 0, or -1 with a reason in err. */
int tg_udp_worker_sync(tg_worker_t *w, char *err, size_t errsize);

/* Stops creating associations; each socket closes (and logs its
 * statistics) once the last association on it is gone. */
void tg_udp_worker_drain(tg_worker_t *w);

/* Ends every association of the worker now (close_notify to DTLS peers). */
void tg_udp_worker_close_all(tg_worker_t *w, const char *reason);

#endif
