/* A BIO between one DTLS session and the datagrams of a UDP association,
 * beside the stream BIO (tls_bio.h) that TCP connections use.
 *
 * Reading: the association points rdata at the datagram it just received
 * before calling into the session; the BIO hands it over exactly once (one
 * datagram, its boundary kept) and says "retry" afterwards.
 *
 * Writing: every write of the session (one record, or one packed flight
 * packet) becomes one datagram, handed to out(ctx, ...) at once. */
#ifndef TG_DGRAM_BIO_H
#define TG_DGRAM_BIO_H

#include <openssl/bio.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  const uint8_t *rdata;     /* the datagram being fed, not owned */
  size_t rlen;
  unsigned mtu;             /* what BIO_CTRL_DGRAM_QUERY_MTU answers */
  /* Sends one datagram the session wrote (a dropped one is lost like any
   * other datagram). */
  void (*out)(void *ctx, const uint8_t *p, size_t n);
  void *ctx;
} tg_dgram_io_t;

/* Sets the BIO method up once.  0, or -1 when the library refused. */
int tg_dgram_bio_init(void);

/* A new BIO over io (one BIO serves both directions: SSL_set_bio(s, b, b)). */
BIO *tg_dgram_bio_new(tg_dgram_io_t *io);

#endif
