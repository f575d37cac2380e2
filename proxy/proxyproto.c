#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

#include "conn.h"
#include "tls_compat.h"

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum {
  PP2_TYPE_ALPN = 0x01,
  PP2_TYPE_AUTHORITY = 0x02,
  PP2_TYPE_SSL = 0x20,
  PP2_SUBTYPE_SSL_VERSION = 0x21,
  PP2_SUBTYPE_SSL_CN = 0x22,
  PP2_SUBTYPE_SSL_CIPHER = 0x23,
  PP2_CLIENT_SSL = 0x01,
  PP2_CLIENT_CERT_CONN = 0x02,
  PP2_CLIENT_CERT_SESS = 0x04,
};

static size_t put_tlv(uint8_t *out, size_t pos, size_t size, uint8_t type,
                      const void *val, size_t len) {
  if (pos == 0 || len > 0xffff || pos + 3 + len > size) return 0;
  out[pos] = type;
  out[pos + 1] = (uint8_t)(len >> 8);
  out[pos + 2] = (uint8_t)len;
  memcpy(out + pos + 3, val, len);
  return pos + 3 + len;
}

static size_t build_v1(const tg_proxy_info_t *in, uint8_t *out, size_t size) {
  char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
  int n;
  if (in->src.ss_family == AF_INET && in->dst.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)&in->src, *b = (const void *)&in->dst;
    inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s));
    inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d));
    n = snprintf((char *)out, size, "PROXY TCP4 %s %s %u %u\r\n", s, d,
                 ntohs(a->sin_port), ntohs(b->sin_port));
  } else if (in->src.ss_family == AF_INET6 && in->dst.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)&in->src, *b = (const void *)&in->dst;
    inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s));
    inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d));
    n = snprintf((char *)out, size, "PROXY TCP6 %s %s %u %u\r\n", s, d,
                 ntohs(a->sin6_port), ntohs(b->sin6_port));
  } else {
    n = snprintf((char *)out, size, "PROXY UNKNOWN\r\n");
  }
  return (n > 0 && (size_t)n < size) ? (size_t)n : 0;
}

static size_t build_v2(const tg_proxy_info_t *in, uint8_t *out, size_t size) {
  if (size < 16 + 36) return 0;
  memcpy(out, v2_sig, 12);
  out[12] = 0x21; /* version 2, PROXY command */
  size_t pos = 16;
  if (in->src.ss_family == AF_INET && in->dst.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)&in->src, *b = (const void *)&in->dst;
    out[13] = 0x11; /* TCP over IPv4 */
    memcpy(out + pos, &a->sin_addr, 4);
    memcpy(out + pos + 4, &b->sin_addr, 4);
    memcpy(out + pos + 8, &a->sin_port, 2);
    memcpy(out + pos + 10, &b->sin_port, 2);
    pos += 12;
  } else if (in->src.ss_family == AF_INET6 && in->dst.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)&in->src, *b = (const void *)&in->dst;
    out[13] = 0x21; /* TCP over IPv6 */
    memcpy(out + pos, &a->sin6_addr, 16);
    memcpy(out + pos + 16, &b->sin6_addr, 16);
    memcpy(out + pos + 32, &a->sin6_port, 2);
    memcpy(out + pos + 34, &b->sin6_port, 2);
    pos += 36;
  } else {
    out[13] = 0x00; /* UNSPEC */
  }
  if (in->alpnlen) pos = put_tlv(out, pos, size, PP2_TYPE_ALPN, in->alpn, in->alpnlen);
  if (in->sni && *in->sni)
    pos = put_tlv(out, pos, size, PP2_TYPE_AUTHORITY, in->sni, strlen(in->sni));
  if (in->tls) {
    /* PP2_TYPE_SSL: client flags, verify result, then sub-TLVs. */
    uint8_t ssl[600];
    size_t sp = 5;
    ssl[0] = PP2_CLIENT_SSL;
    if (in->cert_presented) ssl[0] |= PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
    uint32_t verify = htonl(in->cert_presented && in->verified ? 0 : 1);
    memcpy(ssl + 1, &verify, 4);
    if (in->version)
      sp = put_tlv(ssl, sp, sizeof(ssl), PP2_SUBTYPE_SSL_VERSION, in->version,
                   strlen(in->version));
    if (in->cn && *in->cn)
      sp = put_tlv(ssl, sp, sizeof(ssl), PP2_SUBTYPE_SSL_CN, in->cn, strlen(in->cn));
    if (in->cipher)
      sp = put_tlv(ssl, sp, sizeof(ssl), PP2_SUBTYPE_SSL_CIPHER, in->cipher,
                   strlen(in->cipher));
    if (sp == 0) return 0;
    pos = put_tlv(out, pos, size, PP2_TYPE_SSL, ssl, sp);
  }
  if (pos == 0) return 0;
  size_t len = pos - 16;
  out[14] = (uint8_t)(len >> 8);
  out[15] = (uint8_t)len;
  return pos;
}

size_t tg_proxy_build(int version, const tg_proxy_info_t *info, uint8_t *out,
                      size_t size) {
  return version == 1 ? build_v1(info, out, size) : build_v2(info, out, size);
}

size_t tg_proxy_header(struct tg_conn *c, uint8_t *out, size_t size) {
  tg_proxy_info_t in;
  memset(&in, 0, sizeof(in));
  int len = sizeof(in.src);
  if (uv_tcp_getpeername(&c->client.tcp, (struct sockaddr *)&in.src, &len) != 0)
    in.src.ss_family = AF_UNSPEC;
  len = sizeof(in.dst);
  if (uv_tcp_getsockname(&c->client.tcp, (struct sockaddr *)&in.dst, &len) != 0)
    in.dst.ss_family = AF_UNSPEC;
  char cn[256] = "";
  SSL *ssl = c->client.ssl;
  if (ssl) {
    in.tls = 1;
    in.version = SSL_get_version(ssl);
    in.cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
    in.sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    const uint8_t *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    in.alpn = alpn;
    in.alpnlen = alen;
    X509 *peer = tg_get_peer_certificate(ssl);
    if (peer) {
      in.cert_presented = 1;
      in.verified = SSL_get_verify_result(ssl) == X509_V_OK;
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                                sizeof(cn));
      in.cn = cn;
      X509_free(peer);
    }
  }
  int v = c->svc->conf->proxy_protocol == TG_PROXY_V1 ? 1 : 2;
  return tg_proxy_build(v, &in, out, size);
}
