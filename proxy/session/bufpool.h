/* Buffers of the data path, per worker thread.
 *
 * Scratch: every connection of a worker reads into one buffer and decrypts
 * into another; a read callback consumes its bytes before it returns, so
 * nothing is left in them between callbacks and an idle connection holds
 * no read buffer.
 *
 * Write blocks: bulk transfers hand 64 KiB+ blocks to uv_write and free them in the
 * callback; straight malloc/free of such sizes makes glibc trim and refault
 * pages on every cycle (measured: a third of the proxy's CPU in bulk).
 * Blocks above TG_BUF_SMALL come from a short per-thread free list instead;
 * small ones stay plain malloc, and an idle connection holds no block. */
#ifndef TG_BUFPOOL_H
#define TG_BUFPOOL_H

#include <stddef.h>

#define TG_BUF_SMALL 4096
#define TG_BUF_BLOCK (96 * 1024)
#define TG_BUF_POOL_MAX 32 /* blocks kept per thread: at most 3 MiB */

typedef struct {
  char read[65536];  /* what libuv just read from a socket */
  char plain[16384]; /* what SSL_read just decrypted */
} tg_scratch_t;

/* A block of at least need bytes; *cap receives its real size. */
void *tg_buf_get(size_t need, size_t *cap);
/* Returns a block obtained from tg_buf_get with its cap. */
void tg_buf_put(void *p, size_t cap);
/* Frees this thread's pool (at thread exit). */
void tg_buf_pool_drain(void);

#endif
