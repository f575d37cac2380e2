#include "tls_bio.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

int tg_tls_io_reserve(tg_tls_io_t *io, size_t n) {
  if (io->outlen + n <= io->outcap) return 0;
  size_t cap = io->outcap ? io->outcap * 2 : 4096;
  while (cap < io->outlen + n) cap *= 2;
  uint8_t *p = realloc(io->out, io->headroom + cap);
  if (!p) {
    io->oom = 1;
    return -1;
  }
  io->out = p;
  io->outcap = cap;
  return 0;
}

uint8_t *tg_tls_io_take(tg_tls_io_t *io, size_t *len) {
  uint8_t *p = io->outlen ? io->out : NULL;
  *len = io->outlen;
  if (p) {
    io->out = NULL;
    io->outlen = io->outcap = 0;
  }
  return p;
}

void tg_tls_io_free(tg_tls_io_t *io) {
  free(io->out);
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
