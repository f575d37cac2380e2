#include "bufpool.h"

#include <stdlib.h>

typedef struct block {
  struct block *next;
} block_t;

static __thread block_t *pool;
static __thread int pooled;

void *tg_buf_get(size_t need, size_t *cap) {
  if (need > TG_BUF_SMALL && need <= TG_BUF_BLOCK) {
    *cap = TG_BUF_BLOCK;
    if (pool) {
      block_t *b = pool;
      pool = b->next;
      pooled--;
      return b;
    }
    return malloc(TG_BUF_BLOCK);
  }
  *cap = need;
  return malloc(need);
}

void tg_buf_put(void *p, size_t cap) {
  if (!p) return;
  if (cap == TG_BUF_BLOCK && pooled < TG_BUF_POOL_MAX) {
    block_t *b = p;
    b->next = pool;
    pool = b;
    pooled++;
    return;
  }
  free(p);
}

void tg_buf_pool_drain(void) {
  while (pool) {
    block_t *b = pool;
    pool = b->next;
    free(b);
  }
  pooled = 0;
}
