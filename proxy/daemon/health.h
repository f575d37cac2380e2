/* Active backend health checks (backend_check = connect | tls).
 *
 * They run on the main thread's loop, which otherwise only handles signals
 * and the metrics endpoint, so a check never delays client traffic on a
 * worker and every listener is checked once per interval however many
 * workers there are.  A check is a non-blocking connect() (and for tls a
 * full handshake with the listener's backend context, verification
 * included) bounded by connect_timeout + handshake_timeout.
 *
 * A failed check marks the backend down (resting until a check succeeds);
 * a successful one marks it up again.  Transitions are logged; the state is
 * what tlsgate_backend_up and /readyz report. */
#ifndef TG_HEALTH_H
#define TG_HEALTH_H

#include <uv.h>

#include "runtime.h"

/* Checks the backends of rt from now on (main thread); NULL stops every
 * check.  Checks in flight for an older runtime finish on it. */
void tg_health_set_runtime(uv_loop_t *loop, tg_runtime_t *rt);

#endif
