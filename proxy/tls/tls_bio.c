#include "tls_bio.h"

#include "bufpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

int tg_tls_io_reserve(tg_tls_io_t *io, size_t n) {
  if (io->out && io->outlen + n <= io->outcap) return 0;
  size_t want = io->headroom + io->outlen + n;
  if (io->out && want < 2 * (io->headroom + io->outcap)) want = 2 * (io->headroom + io->outcap);
  size_t cap;
  uint8_t *p = tg_buf_get(want, &cap);
  if (!p) {
    io->oom = 1;
    return -1;
  }
  if (io->out) {
    memcpy(p, io->out, io->headroom + io->outlen);
    tg_buf_put(io->out, io->headroom + io->outcap);
  }
  io->out = p;
  io->outcap = cap - io->headroom;
  return 0;
}

uint8_t *tg_tls_io_take(tg_tls_io_t *io, size_t *len, size_t *cap) {
  uint8_t *p = io->outlen ? io->out : NULL;
  *len = io->outlen;
  *cap = io->headroom + io->outcap;
  if (p) {
    io->out = NULL;
    io->outlen = io->outcap = 0;
  }
  return p;
}

void tg_tls_io_free(tg_tls_io_t *io) {
  if (io->out) tg_buf_put(io->out, io->headroom + io->outcap);
  io->out = NULL;
  io->outlen = io->outcap = 0;
}

static int bio_write(BIO *b, const char *data, int len) {
  tg_tls_io_t *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  if (tg_tls_io_reserve(io, (size_t)len) != 0) return -1;
  memcpy(io->out + io->headroom + io->outlen, data, (size_t)len);
  io->outlen += (size_t)len;
  return len;
}

static int bio_read(BIO *b, char *buf, int len) {
  tg_tls_io_t *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  if (io->inlen == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = io->inlen < (size_t)len ? io->inlen : (size_t)len;
  memcpy(buf, io->in, n);
  io->in += n;
  io->inlen -= n;
  return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  tg_tls_io_t *io = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_PENDING:
    return (long)io->inlen;
  case BIO_CTRL_WPENDING:
    return (long)io->outlen;
  default:
    return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int bio_destroy(BIO *b) {
  BIO_set_data(b, NULL); /* io belongs to the connection */
  return 1;
}

static void make_method(void) {
  method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tlsgate stream");
  if (!method) return;
  BIO_meth_set_write(method, bio_write);
  BIO_meth_set_read(method, bio_read);
  BIO_meth_set_ctrl(method, bio_ctrl);
  BIO_meth_set_create(method, bio_create);
  BIO_meth_set_destroy(method, bio_destroy);
}

BIO *tg_tls_bio_new(tg_tls_io_t *io) {
  pthread_once(&method_once, make_method);
  if (!method) return NULL;
  BIO *b = BIO_new(method);
  if (b) BIO_set_data(b, io);
  return b;
}
