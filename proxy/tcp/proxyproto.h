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

/* Parses a PROXY v1 or v2 header from an upstream load balancer, strictly.
 * Returns the header's length (> 0, also stored in *consumed) when it is
 * complete, 0 when more bytes are needed, -1 with a reason in err when it
 * is malformed.  Only out->src and out->dst are set;
 * AF_UNSPEC means "keep the socket's addresses" (LOCAL, UNKNOWN). */
#define TG_PROXY_PARSE_MAX 1024
int tg_proxy_parse(const uint8_t *buf, size_t len, tg_proxy_info_t *out,
                   size_t *consumed, char *err, size_t errsize);

struct tg_conn;
/* Builds the header for a connection from its sockets and TLS session. */
size_t tg_proxy_header(struct tg_conn *c, uint8_t *out, size_t size);

#endif
