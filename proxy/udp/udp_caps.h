/* Admission caps of UDP listeners, counted when an association is admitted
 * or ends, never per datagram:
 *
 *   - half-open DTLS handshakes: max_half_open across the workers of a
 *     service and max_half_open_per_source; when the total is reached, the
 *     oldest half-open handshake of this worker's busiest source makes room
 *     (tg_udp_caps_victim);
 *   - associations per source (max_associations_per_source, or derived
 *     from the fd limit);
 *   - associations of the whole process (derived from the fd limit), each
 *     of which holds or will hold a backend socket.
 *
 * A source is an IPv4 address (also when IPv4-mapped) or an IPv6 /64.  The
 * listener admits (tg_udp_caps_admit, then tg_udp_caps_admitted on the new
 * association); the association gives back what it holds as its handshake
 * completes and when it closes.  Nothing here calls an association. */
#ifndef TG_UDP_CAPS_H
#define TG_UDP_CAPS_H

#include "udp_assoc.h"

/* When the half-open total is reached and this worker's busiest source has
 * more half-open handshakes than sa's: its oldest, to be closed to make
 * room (counted and logged here).  NULL otherwise. */
tg_udp_assoc_t *tg_udp_caps_victim(tg_udp_listener_t *ul, const struct sockaddr *sa);

/* Admits one more association from sa (half_open: a DTLS handshake that
 * starts now).  NULL, or which cap stops it ("total", "per source",
 * "associations per source", "out of memory"; counted). */
const char *tg_udp_caps_admit(tg_udp_listener_t *ul, const struct sockaddr *sa,
                              int half_open);
/* Gives back what tg_udp_caps_admit took, for an association never made. */
void tg_udp_caps_undo(tg_udp_listener_t *ul, const struct sockaddr *sa, int half_open);
/* a was admitted: it counts from now on. */
void tg_udp_caps_admitted(tg_udp_listener_t *ul, tg_udp_assoc_t *a, int half_open);

/* a's handshake is no longer half-open (completed or ended). */
void tg_udp_half_open_release(tg_udp_listener_t *ul, tg_udp_assoc_t *a);
/* Ends a's share of the per-source and process-wide association counts. */
void tg_udp_assoc_release(tg_udp_assoc_t *a);

/* The process-wide association count: reserves one (0), or refuses (-1,
 * counted and logged) at the cap. */
int tg_udp_total_reserve(tg_udp_listener_t *ul, const struct sockaddr *from);
void tg_udp_total_unreserve(void);
/* Counts a in the process-wide total (it is about to open its backend
 * socket).  0, or -1 (refused and counted) at the cap. */
int tg_udp_total_admit(tg_udp_assoc_t *a);

/* The caps derived from the fd limit: the process keeps an eighth of its
 * descriptors (at least 64) for everything else; one source may take a
 * quarter of the rest.  Sets the process-wide cap. */
void tg_udp_caps_from_fd_limit(long *total, long *per_source);
long tg_udp_total_cap(void);

/* A listener's per-worker half-open lists, and a service's counts across
 * workers.  init: 0 or -1 (out of memory). */
int tg_udp_caps_local_init(tg_udp_listener_t *ul);
void tg_udp_caps_local_free(tg_udp_listener_t *ul);
int tg_udp_caps_shared_init(struct tg_dtls_svc *d);
void tg_udp_caps_shared_free(struct tg_dtls_svc *d);

#endif
