/* A BIO between libuv's buffers and a TLS stream, with no copies kept.
 *
 * Reading: the connection points `in` at the bytes libuv just delivered
 * (or at its stash of unconsumed bytes) before calling into TLS; the BIO
 * reads from that window and says "retry" when it is empty.
 *
 * Writing: TLS output is appended to `out`, a block (bufpool.h) that starts
 * with `headroom` bytes reserved for the caller's write request, so the
 * block goes to uv_write as it is and is freed in the write callback.
 *
 * An idle connection holds neither: no memory BIO keeps a grown buffer. */
#ifndef TG_TLS_BIO_H
#define TG_TLS_BIO_H

#include <openssl/bio.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  const uint8_t *in;  /* not owned */
  size_t inlen;
  uint8_t *out;       /* owned until taken; data starts at out + headroom */
  size_t outlen, outcap;
  size_t headroom;
  int oom;            /* an append failed: the connection must close */
} tg_tls_io_t;

/* A new BIO over io (one BIO serves both directions: SSL_set_bio(s, b, b)). */
BIO *tg_tls_bio_new(tg_tls_io_t *io);

/* Makes room for n more output bytes.  0 or -1. */
int tg_tls_io_reserve(tg_tls_io_t *io, size_t n);

/* Hands the output block to the caller (NULL if empty) and resets; *cap is
 * the block's size for tg_buf_put() (bufpool.h). */
uint8_t *tg_tls_io_take(tg_tls_io_t *io, size_t *len, size_t *cap);

void tg_tls_io_free(tg_tls_io_t *io);

#endif
