/* A worker: one thread, one libuv loop, one listening handle per listener.
 *
 * Workers share nothing but the runtime (read-only apart from atomics).
 * The main thread asks a worker to drain through its async handle. */
#ifndef TG_WORKER_H
#define TG_WORKER_H

#include <uv.h>

#include "runtime.h"

#define TG_READ_BUF_SIZE 65536
#define TG_PLAIN_BUF_SIZE 16384

typedef struct tg_conn tg_conn_t;
typedef struct tg_worker tg_worker_t;

typedef struct {
  uv_tcp_t tcp;
  tg_worker_t *worker;
  tg_service_t *svc;
  int open;
} tg_listener_t;

struct tg_worker {
  int index;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wakeup;    /* main -> worker: start draining */
  uv_timer_t drain_timer;
  tg_runtime_t *rt;
  tg_listener_t listeners[TG_MAX_LISTENERS];
  size_t nlisteners;
  tg_conn_t *conns;     /* every live connection, for drain and shutdown */
  size_t nconns;
  int draining;
  atomic_int stop_requested;
  uint64_t last_accept_error_log;
  /* Scratch buffers: a read callback consumes its bytes before returning,
   * so every connection of this loop can share them. */
  int readbuf_busy;
  char readbuf[TG_READ_BUF_SIZE];
  char plainbuf[TG_PLAIN_BUF_SIZE];
};

int tg_worker_start(tg_worker_t *w, int index, tg_runtime_t *rt, char *err,
                    size_t errsize);
/* Thread-safe: asks the worker to stop accepting and drain. */
void tg_worker_stop(tg_worker_t *w);
void tg_worker_join(tg_worker_t *w);

/* Called by conn.c when a connection is gone. */
void tg_worker_conn_done(tg_worker_t *w);

#endif
