/* The datagram BIO (dgram_bio.h): DTLS needs datagram boundaries, which a
 * memory BIO would glue a flight into one blob.  This BIO hands the SSL
 * exactly the datagram being fed, once, and turns every write (one record
 * or one packed flight packet) into one datagram. */
#include "dgram_bio.h"

#include <string.h>
#include <uv.h>

static BIO_METHOD *dgram_method;
static uv_once_t init_once = UV_ONCE_INIT;

static int dgram_write(BIO *b, const char *data, int len) {
  tg_dgram_io_t *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (!io || len <= 0) return 0;
  io->out(io->ctx, (const uint8_t *)data, (size_t)len);
  return len; /* a dropped datagram is lost like any other */
}

static int dgram_read(BIO *b, char *out, int outl) {
  tg_dgram_io_t *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (!io || !io->rdata || outl <= 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = io->rlen < (size_t)outl ? io->rlen : (size_t)outl;
  memcpy(out, io->rdata, n);
  io->rdata = NULL;
  io->rlen = 0;
  return (int)n;
}

static long dgram_ctrl(BIO *b, int cmd, long num, void *ptr) {
  tg_dgram_io_t *io = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_PENDING:
    return io && io->rdata ? (long)io->rlen : 0;
  case BIO_CTRL_WPENDING:
    return 0;
  case BIO_CTRL_DGRAM_QUERY_MTU:
  case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
    return io ? (long)io->mtu : 0;
  default:
    return 0;
  }
}

static int dgram_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int dgram_destroy(BIO *b) {
  BIO_set_data(b, NULL);
  return 1;
}

static void init_once_cb(void) {
  dgram_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                              "tlsgate datagram");
  if (dgram_method) {
    BIO_meth_set_write(dgram_method, dgram_write);
    BIO_meth_set_read(dgram_method, dgram_read);
    BIO_meth_set_ctrl(dgram_method, dgram_ctrl);
    BIO_meth_set_create(dgram_method, dgram_create);
    BIO_meth_set_destroy(dgram_method, dgram_destroy);
  }
}

int tg_dgram_bio_init(void) {
  uv_once(&init_once, init_once_cb);
  return dgram_method ? 0 : -1;
}

BIO *tg_dgram_bio_new(tg_dgram_io_t *io) {
  uv_once(&init_once, init_once_cb);
  if (!dgram_method) return NULL;
  BIO *b = BIO_new(dgram_method);
  if (b) BIO_set_data(b, io);
  return b;
}
