/* A worker: one thread, one libuv loop, one listening handle per listener.
 *
 * Workers share nothing but the runtime (read-only apart from atomics).
 * The main thread talks to a worker through its async handle: switch to a
 * new runtime (reload), or stop accepting and drain. */
#ifndef TG_WORKER_H
#define TG_WORKER_H

#include <uv.h>

#include "bufpool.h"
#include "runtime.h"

typedef struct tg_worker tg_worker_t;

/* Allocated one by one: a closing handle must not move; freed in its close
 * callback. */
typedef struct {
  uv_poll_t poll;   /* readable = connections waiting; we accept4() them */
  int fd;           /* our dup() of the runtime's socket, closed with poll */
  tg_worker_t *worker;
  tg_service_t *svc;
} tg_listener_t;

struct tg_worker {
  int index;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wakeup;    /* main -> worker: reload or drain */
  uv_timer_t drain_timer;
  tg_runtime_t *rt;     /* the runtime new connections use (a reference) */
  _Atomic(tg_runtime_t *) pending_rt; /* set by the main thread on reload */
  tg_listener_t *listeners[TG_MAX_LISTENERS];
  size_t nlisteners;
  struct tg_udp_listener *udp_listeners; /* transport = udp (udp_listener.c) */
  struct tg_conn *conns; /* every live connection, for drain and shutdown */
  size_t nconns;
  int draining;
  atomic_int stop_requested;
  uint64_t last_accept_error_log;
  unsigned long long accept_drops; /* connections shed while out of fds */
  int reserve_fd;       /* given up when out of fds, to shed the backlog */
  tg_scratch_t scratch;  /* shared by this loop's connections (bufpool.h) */
};

/* Starts the thread; takes over one reference to rt. */
int tg_worker_start(tg_worker_t *w, int index, tg_runtime_t *rt, char *err,
                    size_t errsize);
/* Thread-safe: asks the worker to stop accepting and drain. */
void tg_worker_stop(tg_worker_t *w);
/* Thread-safe: asks the worker to accept for rt from now on (takes over one
 * reference); its open connections finish on the runtime they started on. */
void tg_worker_reload(tg_worker_t *w, tg_runtime_t *rt);
void tg_worker_join(tg_worker_t *w);

/* Called by conn.c when a connection is gone. */
void tg_worker_conn_done(tg_worker_t *w);

#endif
