/* PROXY protocol v1 and v2 headers (HAProxy's proxy-protocol.txt) sent to
 * backends, with v2's SSL TLVs describing the client's TLS session. */
#ifndef TG_PROXYPROTO_H
#define TG_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define TG_PROXY_HDR_MAX 1024

typedef struct {
  struct sockaddr_storage src; /* the client */
  struct sockaddr_storage dst; /* the address it connected to */
  int tls;                     /* the client side is TLS */
  const char *version;         /* e.g. "TLSv1.3" */
  const char *cipher;
  const char *cn;              /* client certificate CN, NULL if none */
  const char *sni;             /* server name the client asked for */
  const uint8_t *alpn;
  size_t alpnlen;
  int cert_presented;          /* a client certificate was sent ... */
  int verified;                /* ... and verified */
} tg_proxy_info_t;

/* Writes a header of the given version (1 or 2).  Returns its length, or 0
 * when it does not fit. */
size_t tg_proxy_build(int version, const tg_proxy_info_t *info, uint8_t *out,
                      size_t size);

struct tg_conn;
/* Builds the header for a connection from its sockets and TLS session. */
size_t tg_proxy_header(struct tg_conn *c, uint8_t *out, size_t size);

#endif
