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

/* ---- parsing ------------------------------------------------------------ */

static int parse_port(const char *s, uint16_t *port) {
  if (!*s || strlen(s) > 5 || (s[0] == '0' && s[1])) return -1;
  unsigned v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (unsigned)(*s - '0');
  }
  if (v > 65535) return -1;
  *port = (uint16_t)v;
  return 0;
}

static int set_addr(struct sockaddr_storage *ss, int family, const char *ip,
                    const char *port) {
  uint16_t p;
  memset(ss, 0, sizeof(*ss));
  if (parse_port(port, &p) != 0) return -1;
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) return -1;
    a->sin_family = AF_INET;
    a->sin_port = htons(p);
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1) return -1;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(p);
  }
  return 0;
}

/* "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\n", at most 107 bytes. */
static int parse_v1(const uint8_t *buf, size_t len, tg_proxy_info_t *out,
                    size_t *consumed, char *err, size_t errsize) {
  /* At most 107 bytes including the CRLF: the CR is at offset 105 or less. */
  const size_t max = 106;
  const uint8_t *cr = memchr(buf, '\r', len < max ? len : max);
  const uint8_t *lf = memchr(buf, '\n', len < max ? len : max);
  if (lf && (!cr || lf < cr)) {
    snprintf(err, errsize, "PROXY v1 line not ended by CRLF");
    return -1;
  }
  if (!cr) {
    if (len >= max) {
      snprintf(err, errsize, "PROXY v1 line longer than 107 bytes");
      return -1;
    }
    return 0;
  }
  size_t linelen = (size_t)(cr - buf);
  if (linelen + 1 >= len) return 0; /* the \n has not arrived */
  if (cr[1] != '\n') {
    snprintf(err, errsize, "PROXY v1 line not ended by CRLF");
    return -1;
  }
  char line[108];
  memcpy(line, buf, linelen);
  line[linelen] = '\0';
  if (memchr(buf, '\0', linelen)) {
    snprintf(err, errsize, "NUL in PROXY v1 line");
    return -1;
  }
  *consumed = linelen + 2;
  if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' ')) {
    out->src.ss_family = out->dst.ss_family = AF_UNSPEC;
    return (int)*consumed;
  }
  /* Exactly six fields separated by single spaces. */
  char *f[6];
  int n = 0;
  char *p = line;
  while (n < 6) {
    f[n++] = p;
    p = strchr(p, ' ');
    if (!p) break;
    *p++ = '\0';
  }
  if (n != 6 || p) {
    snprintf(err, errsize, "PROXY v1 line does not have six fields");
    return -1;
  }
  int family;
  if (strcmp(f[1], "TCP4") == 0) family = AF_INET;
  else if (strcmp(f[1], "TCP6") == 0) family = AF_INET6;
  else {
    snprintf(err, errsize, "PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN");
    return -1;
  }
  if (strcmp(f[0], "PROXY") != 0 || set_addr(&out->src, family, f[2], f[4]) != 0 ||
      set_addr(&out->dst, family, f[3], f[5]) != 0) {
    snprintf(err, errsize, "bad address or port in PROXY v1 line");
    return -1;
  }
  return (int)*consumed;
}

static int parse_v2(const uint8_t *buf, size_t len, tg_proxy_info_t *out,
                    size_t *consumed, char *err, size_t errsize) {
  if (len < 16) return 0;
  if ((buf[12] & 0xF0) != 0x20) {
    snprintf(err, errsize, "PROXY v2 version is not 2");
    return -1;
  }
  size_t body = (size_t)buf[14] << 8 | buf[15];
  if (16 + body > TG_PROXY_PARSE_MAX) {
    snprintf(err, errsize, "PROXY v2 header too long");
    return -1;
  }
  if (len < 16 + body) return 0;
  int cmd = buf[12] & 0x0F, fam = buf[13];
  if (cmd > 1) {
    snprintf(err, errsize, "PROXY v2 command is neither LOCAL nor PROXY");
    return -1;
  }
  const uint8_t *a = buf + 16;
  size_t alen = 0;
  memset(&out->src, 0, sizeof(out->src));
  memset(&out->dst, 0, sizeof(out->dst));
  if (fam == 0x11 || fam == 0x12) { /* TCP or UDP over IPv4 */
    alen = 12;
    if (body < alen) goto short_body;
    struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
    s->sin_family = d->sin_family = AF_INET;
    memcpy(&s->sin_addr, a, 4);
    memcpy(&d->sin_addr, a + 4, 4);
    memcpy(&s->sin_port, a + 8, 2);
    memcpy(&d->sin_port, a + 10, 2);
  } else if (fam == 0x21 || fam == 0x22) { /* TCP or UDP over IPv6 */
    alen = 36;
    if (body < alen) goto short_body;
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src, *d = (struct sockaddr_in6 *)&out->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, a, 16);
    memcpy(&d->sin6_addr, a + 16, 16);
    memcpy(&s->sin6_port, a + 32, 2);
    memcpy(&d->sin6_port, a + 34, 2);
  } else if (fam == 0x00 || fam == 0x31 || fam == 0x32) {
    /* UNSPEC or UNIX: nothing we can use, keep the socket's addresses. */
    alen = fam == 0x00 ? 0 : 216;
    if (body < alen) goto short_body;
  } else {
    snprintf(err, errsize, "PROXY v2 address family unknown");
    return -1;
  }
  /* The TLVs must tile the rest of the header exactly. */
  size_t p = alen;
  while (p < body) {
    if (body - p < 3) goto bad_tlv;
    size_t tl = (size_t)a[p + 1] << 8 | a[p + 2];
    if (body - p - 3 < tl) goto bad_tlv;
    p += 3 + tl;
  }
  if (cmd == 0 || fam == 0x00 || fam == 0x31 || fam == 0x32)
    out->src.ss_family = out->dst.ss_family = AF_UNSPEC; /* LOCAL: health check */
  *consumed = 16 + body;
  return (int)*consumed;
short_body:
  snprintf(err, errsize, "PROXY v2 header shorter than its addresses");
  return -1;
bad_tlv:
  snprintf(err, errsize, "PROXY v2 TLVs do not fit the header");
  return -1;
}

int tg_proxy_parse(const uint8_t *buf, size_t len, tg_proxy_info_t *out,
                   size_t *consumed, char *err, size_t errsize) {
  static const char v1_sig[6] = "PROXY ";
  size_t n = len < 12 ? len : 12;
  if (memcmp(buf, v2_sig, n) == 0) {
    if (len < 12) return 0;
    return parse_v2(buf, len, out, consumed, err, errsize);
  }
  n = len < 6 ? len : 6;
  if (memcmp(buf, v1_sig, n) == 0) {
    if (len < 6) return 0;
    return parse_v1(buf, len, out, consumed, err, errsize);
  }
  snprintf(err, errsize, "not a PROXY protocol header");
  return -1;
}

size_t tg_proxy_build(int version, const tg_proxy_info_t *info, uint8_t *out,
                      size_t size) {
  return version == 1 ? build_v1(info, out, size) : build_v2(info, out, size);
}

size_t tg_proxy_header(struct tg_conn *c, uint8_t *out, size_t size) {
  tg_proxy_info_t in;
  memset(&in, 0, sizeof(in));
  int len = sizeof(in.src);
  if (c->proxied) {
    in.src = c->src; /* what the load balancer in front of us said */
    in.dst = c->dst;
  } else {
    if (uv_tcp_getpeername(&c->client.tcp, (struct sockaddr *)&in.src, &len) != 0)
      in.src.ss_family = AF_UNSPEC;
    len = sizeof(in.dst);
    if (uv_tcp_getsockname(&c->client.tcp, (struct sockaddr *)&in.dst, &len) != 0)
      in.dst.ss_family = AF_UNSPEC;
  }
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
  int v = c->s.svc->conf->proxy_protocol == TG_PROXY_V1 ? 1 : 2;
  return tg_proxy_build(v, &in, out, size);
}
