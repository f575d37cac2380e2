/* The data path's small modules: the write-block pool, the stream BIO
 * between libuv's buffers and TLS, and backend rest with backoff. */
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend.h"
#include "bufpool.h"
#include "tls_bio.h"
#include "unit.h"

/* ---- bufpool ------------------------------------------------------------- */

TEST(bufpool_small_blocks_are_exact) {
  size_t cap = 0;
  void *p = tg_buf_get(100, &cap);
  ASSERT(p != NULL);
  ASSERT_EQ(cap, 100);
  tg_buf_put(p, cap);
}

TEST(bufpool_large_blocks_recycle) {
  size_t cap1 = 0, cap2 = 0;
  void *a = tg_buf_get(TG_BUF_SMALL + 1, &cap1);
  ASSERT_EQ(cap1, TG_BUF_BLOCK);
  memset(a, 0xab, TG_BUF_BLOCK); /* the whole block is usable */
  tg_buf_put(a, cap1);
  void *b = tg_buf_get(TG_BUF_BLOCK, &cap2);
  ASSERT_EQ(cap2, TG_BUF_BLOCK);
  ASSERT(a == b); /* the freed block came back from this thread's pool */
  tg_buf_put(b, cap2);
  tg_buf_pool_drain();
}

TEST(bufpool_keeps_at_most_pool_max) {
  void *blocks[TG_BUF_POOL_MAX + 8];
  size_t cap = 0;
  for (int i = 0; i < TG_BUF_POOL_MAX + 8; i++) blocks[i] = tg_buf_get(TG_BUF_BLOCK, &cap);
  for (int i = 0; i < TG_BUF_POOL_MAX + 8; i++) tg_buf_put(blocks[i], cap);
  /* Take them all back: the first POOL_MAX come from the pool (LIFO: the
   * last ones put), the rest are new mallocs. */
  int from_pool = 0;
  void *again[TG_BUF_POOL_MAX + 8];
  for (int i = 0; i < TG_BUF_POOL_MAX + 8; i++) {
    again[i] = tg_buf_get(TG_BUF_BLOCK, &cap);
    for (int j = 8; j < TG_BUF_POOL_MAX + 8; j++)
      if (again[i] == blocks[j]) from_pool++;
  }
  ASSERT(from_pool <= TG_BUF_POOL_MAX);
  ASSERT(from_pool >= TG_BUF_POOL_MAX - 8); /* malloc may reuse a freed one */
  for (int i = 0; i < TG_BUF_POOL_MAX + 8; i++) tg_buf_put(again[i], cap);
  tg_buf_pool_drain();
  tg_buf_put(NULL, 0); /* a no-op */
}

/* ---- stream BIO ---------------------------------------------------------- */

TEST(bio_reads_window_then_retries) {
  tg_tls_io_t io = {0};
  BIO *b = tg_tls_bio_new(&io);
  ASSERT(b != NULL);
  char buf[16];
  ASSERT_EQ(BIO_read(b, buf, sizeof(buf)), -1);
  ASSERT(BIO_should_retry(b) && BIO_should_read(b)); /* empty: retry, not EOF */
  static const uint8_t data[] = "hello, world";
  io.in = data;
  io.inlen = 12;
  ASSERT_EQ(BIO_pending(b), 12);
  ASSERT_EQ(BIO_read(b, buf, 5), 5);
  ASSERT(memcmp(buf, "hello", 5) == 0);
  ASSERT_EQ(io.inlen, 7);   /* the window moved */
  ASSERT_EQ(BIO_read(b, buf, sizeof(buf)), 7);
  ASSERT(memcmp(buf, ", world", 7) == 0);
  ASSERT_EQ(BIO_read(b, buf, sizeof(buf)), -1);
  ASSERT(BIO_should_retry(b));
  BIO_free(b);
  tg_tls_io_free(&io);
}

TEST(bio_writes_after_headroom_and_hands_over_block) {
  tg_tls_io_t io = {.headroom = 48};
  BIO *b = tg_tls_bio_new(&io);
  ASSERT_EQ(BIO_write(b, "abc", 3), 3);
  ASSERT_EQ(BIO_write(b, "defg", 4), 4);
  ASSERT_EQ(BIO_wpending(b), 7);
  size_t len = 0, cap = 0;
  uint8_t *blk = tg_tls_io_take(&io, &len, &cap);
  ASSERT(blk != NULL);
  ASSERT_EQ(len, 7);
  ASSERT(cap >= 48 + 7);
  ASSERT(memcmp(blk + 48, "abcdefg", 7) == 0); /* data starts after headroom */
  ASSERT(io.out == NULL && io.outlen == 0);    /* the block is the caller's now */
  tg_buf_put(blk, cap);
  ASSERT(tg_tls_io_take(&io, &len, &cap) == NULL); /* nothing pending */
  ASSERT_EQ(len, 0);
  BIO_free(b);
  tg_tls_io_free(&io);
}

TEST(bio_output_grows_and_keeps_bytes) {
  tg_tls_io_t io = {.headroom = 16};
  BIO *b = tg_tls_bio_new(&io);
  uint8_t chunk[1000];
  size_t total = 0;
  for (int i = 0; i < 300; i++) { /* 300 KB: past one pool block */
    memset(chunk, (uint8_t)i, sizeof(chunk));
    ASSERT_EQ(BIO_write(b, chunk, sizeof(chunk)), (int)sizeof(chunk));
    total += sizeof(chunk);
  }
  size_t len = 0, cap = 0;
  uint8_t *blk = tg_tls_io_take(&io, &len, &cap);
  ASSERT_EQ(len, total);
  int ok = 1;
  for (size_t i = 0; i < total && ok; i++)
    if (blk[16 + i] != (uint8_t)(i / 1000)) ok = 0;
  ASSERT(ok);
  tg_buf_put(blk, cap);
  BIO_free(b);
  tg_buf_pool_drain();
}

/* ---- backend rest and backoff ----------------------------------------- */

static tg_listener_conf_t conf3;
static tg_service_t svc3;

static void setup3(void) {
  memset(&conf3, 0, sizeof(conf3));
  memset(&svc3, 0, sizeof(svc3));
  conf3.nbackends = 3;
  svc3.conf = &conf3;
}

TEST(backend_pick_rotates_and_skips_tried) {
  setup3();
  int a = tg_backend_pick(&svc3, 0, 1000);
  int b = tg_backend_pick(&svc3, 0, 1000);
  ASSERT(a != b); /* round robin */
  uint64_t tried = (1ULL << 0) | (1ULL << 1);
  ASSERT_EQ(tg_backend_pick(&svc3, tried, 1000), 2);
  ASSERT_EQ(tg_backend_pick(&svc3, 7, 1000), -1); /* all tried */
}

TEST(backend_rest_doubles_to_max_and_ok_clears) {
  setup3();
  uint64_t now = 10000;
  ASSERT_EQ(tg_backend_failed(&svc3, 1, now), TG_BACKEND_REST_MIN_MS);
  ASSERT_EQ(tg_backend_failed(&svc3, 1, now), 2 * TG_BACKEND_REST_MIN_MS);
  ASSERT_EQ(tg_backend_failed(&svc3, 1, now), 4 * TG_BACKEND_REST_MIN_MS);
  uint64_t r = 0;
  for (int i = 0; i < 20; i++) r = tg_backend_failed(&svc3, 1, now);
  ASSERT_EQ(r, TG_BACKEND_REST_MAX_MS);
  /* A resting backend is skipped while others are healthy. */
  for (int i = 0; i < 6; i++) ASSERT(tg_backend_pick(&svc3, 0, now + 1) != 1);
  /* After its rest it is tried again. */
  ASSERT_EQ(tg_backend_pick(&svc3, (1ULL << 0) | (1ULL << 2), now + TG_BACKEND_REST_MAX_MS), 1);
  ASSERT_EQ(tg_backend_ok(&svc3, 1), 1); /* was resting */
  ASSERT_EQ(tg_backend_ok(&svc3, 1), 0);
  ASSERT_EQ(tg_backend_failed(&svc3, 1, now), TG_BACKEND_REST_MIN_MS); /* backoff reset */
}

TEST(backend_all_resting_picks_soonest) {
  setup3();
  uint64_t now = 50000;
  tg_backend_failed(&svc3, 0, now);
  tg_backend_failed(&svc3, 0, now); /* rests 2 s */
  tg_backend_failed(&svc3, 1, now); /* rests 1 s: wakes first */
  tg_backend_failed(&svc3, 2, now);
  tg_backend_failed(&svc3, 2, now);
  tg_backend_failed(&svc3, 2, now); /* rests 4 s */
  ASSERT_EQ(tg_backend_pick(&svc3, 0, now + 10), 1);
  ASSERT_EQ(tg_backend_pick(&svc3, 1ULL << 1, now + 10), 0);
}

int main(void) {
  RUN(bufpool_small_blocks_are_exact);
  RUN(bufpool_large_blocks_recycle);
  RUN(bufpool_keeps_at_most_pool_max);
  RUN(bio_reads_window_then_retries);
  RUN(bio_writes_after_headroom_and_hands_over_block);
  RUN(bio_output_grows_and_keeps_bytes);
  RUN(backend_pick_rotates_and_skips_tried);
  RUN(backend_rest_doubles_to_max_and_ok_clears);
  RUN(backend_all_resting_picks_soonest);
  return UNIT_DONE();
}
