/* PROXY protocol headers, checked byte for byte against the spec. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxyproto.h"
#include "unit.h"

static void v4(struct sockaddr_storage *ss, const char *ip, int port) {
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  memset(ss, 0, sizeof(*ss));
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, ip, &a->sin_addr);
}

static void v6(struct sockaddr_storage *ss, const char *ip, int port) {
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
  memset(ss, 0, sizeof(*ss));
  a->sin6_family = AF_INET6;
  a->sin6_port = htons((uint16_t)port);
  inet_pton(AF_INET6, ip, &a->sin6_addr);
}

TEST(v1_tcp4) {
  tg_proxy_info_t in;
  memset(&in, 0, sizeof(in));
  v4(&in.src, "192.0.2.1", 51234);
  v4(&in.dst, "198.51.100.2", 443);
  uint8_t out[256];
  size_t n = tg_proxy_build(1, &in, out, sizeof(out));
  out[n] = 0;
  ASSERT_STREQ((char *)out, "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\n");
}

TEST(v1_tcp6_and_unknown) {
  tg_proxy_info_t in;
  memset(&in, 0, sizeof(in));
  v6(&in.src, "2001:db8::1", 1);
  v6(&in.dst, "::1", 2);
  uint8_t out[256];
  size_t n = tg_proxy_build(1, &in, out, sizeof(out));
  out[n] = 0;
  ASSERT_STREQ((char *)out, "PROXY TCP6 2001:db8::1 ::1 1 2\r\n");
  v4(&in.dst, "127.0.0.1", 2); /* mixed families */
  n = tg_proxy_build(1, &in, out, sizeof(out));
  out[n] = 0;
  ASSERT_STREQ((char *)out, "PROXY UNKNOWN\r\n");
}

TEST(v2_tcp4_plain) {
  tg_proxy_info_t in;
  memset(&in, 0, sizeof(in));
  v4(&in.src, "192.0.2.1", 0x1234);
  v4(&in.dst, "198.51.100.2", 443);
  uint8_t out[256];
  size_t n = tg_proxy_build(2, &in, out, sizeof(out));
  static const uint8_t want[] = {
      0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
      0x21, 0x11, 0x00, 0x0C, 192,  0,    2,    1,    198,  51,   100,  2,
      0x12, 0x34, 0x01, 0xBB};
  ASSERT_EQ(n, sizeof(want));
  ASSERT(memcmp(out, want, sizeof(want)) == 0);
}

TEST(v2_ssl_tlvs) {
  tg_proxy_info_t in;
  memset(&in, 0, sizeof(in));
  v6(&in.src, "::1", 1);
  v6(&in.dst, "::1", 2);
  in.tls = 1;
  in.version = "TLSv1.3";
  in.cipher = "TLS_AES_128_GCM_SHA256";
  in.cn = "client1";
  in.cert_presented = 1;
  in.verified = 1;
  in.sni = "localhost";
  uint8_t out[512];
  size_t n = tg_proxy_build(2, &in, out, sizeof(out));
  ASSERT(n > 16 + 36);
  ASSERT_EQ(out[13], 0x21);
  ASSERT_EQ((size_t)(out[14] << 8 | out[15]), n - 16);
  /* Walk the TLVs after the addresses. */
  size_t p = 16 + 36;
  int saw_authority = 0, saw_ssl = 0;
  while (p + 3 <= n) {
    uint8_t type = out[p];
    size_t len = (size_t)(out[p + 1] << 8 | out[p + 2]);
    ASSERT(p + 3 + len <= n);
    const uint8_t *v = out + p + 3;
    if (type == 0x02) {
      saw_authority = len == 9 && memcmp(v, "localhost", 9) == 0;
    } else if (type == 0x20) {
      saw_ssl = 1;
      ASSERT_EQ(v[0], 0x07); /* SSL | CERT_CONN | CERT_SESS */
      ASSERT_EQ(v[1] | v[2] | v[3] | v[4], 0); /* verify = 0: verified */
      size_t q = 5;
      int sub_version = 0, sub_cn = 0, sub_cipher = 0;
      while (q + 3 <= len) {
        size_t sl = (size_t)(v[q + 1] << 8 | v[q + 2]);
        if (v[q] == 0x21) sub_version = sl == 7 && !memcmp(v + q + 3, "TLSv1.3", 7);
        if (v[q] == 0x22) sub_cn = sl == 7 && !memcmp(v + q + 3, "client1", 7);
        if (v[q] == 0x23) sub_cipher = sl == 22;
        q += 3 + sl;
      }
      ASSERT_EQ(q, len);
      ASSERT(sub_version && sub_cn && sub_cipher);
    }
    p += 3 + len;
  }
  ASSERT_EQ(p, n);
  ASSERT(saw_authority);
  ASSERT(saw_ssl);
}

TEST(v2_unverified_client) {
  tg_proxy_info_t in;
  memset(&in, 0, sizeof(in));
  v4(&in.src, "127.0.0.1", 1);
  v4(&in.dst, "127.0.0.1", 2);
  in.tls = 1;
  in.version = "TLSv1.2";
  uint8_t out[256];
  size_t n = tg_proxy_build(2, &in, out, sizeof(out));
  size_t p = 16 + 12;
  ASSERT_EQ(out[p], 0x20);
  ASSERT_EQ(out[p + 3], 0x01);     /* SSL only, no certificate */
  ASSERT_EQ(out[p + 3 + 4], 0x01); /* verify != 0 */
  ASSERT(n > p);
}

TEST(too_small_buffer) {
  tg_proxy_info_t in;
  memset(&in, 0, sizeof(in));
  v4(&in.src, "127.0.0.1", 1);
  v4(&in.dst, "127.0.0.1", 2);
  uint8_t out[20];
  ASSERT_EQ(tg_proxy_build(2, &in, out, sizeof(out)), 0);
  ASSERT_EQ(tg_proxy_build(1, &in, out, 10), 0);
}


static int parse(const char *text, size_t len, tg_proxy_info_t *in, char *why) {
  size_t used = 0;
  memset(in, 0, sizeof(*in));
  return tg_proxy_parse((const uint8_t *)text, len, in, &used, why, 100);
}

TEST(parse_v1) {
  tg_proxy_info_t in;
  char why[100] = "";
  const char *h = "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\nGET /";
  ASSERT_EQ(parse(h, strlen(h), &in, why), 45);
  struct sockaddr_in *a = (struct sockaddr_in *)&in.src;
  ASSERT_EQ(a->sin_family, AF_INET);
  ASSERT_EQ(ntohs(a->sin_port), 51234);
  ASSERT_EQ(ntohl(a->sin_addr.s_addr), 0xC0000201);
  h = "PROXY TCP6 2001:db8::1 ::1 1 2\r\n";
  ASSERT_EQ(parse(h, strlen(h), &in, why), (int)strlen(h));
  ASSERT_EQ(in.src.ss_family, AF_INET6);
  h = "PROXY UNKNOWN whatever\r\n";
  ASSERT_EQ(parse(h, strlen(h), &in, why), (int)strlen(h));
  ASSERT_EQ(in.src.ss_family, AF_UNSPEC);
}

TEST(parse_v1_incomplete) {
  tg_proxy_info_t in;
  char why[100] = "";
  const char *h = "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\n";
  for (size_t n = 0; n < strlen(h); n++) ASSERT_EQ(parse(h, n, &in, why), 0);
}

TEST(parse_v1_malformed) {
  static const char *const bad[] = {
      "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\n",   /* no CR */
      "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\rX",   /* CR not CRLF */
      "PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",       /* double space */
      "PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",          /* five fields */
      "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",      /* seven fields */
      "PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
      "PROXY TCP4 ::1 ::1 1 2\r\n",                       /* family mismatch */
      "PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
      "PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",       /* leading zero */
      "PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
      "GET / HTTP/1.1\r\n",
      "\x16\x03\x01\x02\x00",                            /* a ClientHello */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tg_proxy_info_t in;
    char why[100] = "";
    int r = parse(bad[i], strlen(bad[i]), &in, why);
    if (r != -1) FAILF("accepted (%d): %s", r, bad[i]);
    ASSERT(why[0] != '\0');
  }
  char longline[200];
  memset(longline, 'x', sizeof(longline));
  memcpy(longline, "PROXY TCP4 ", 11);
  tg_proxy_info_t in;
  char why[100] = "";
  ASSERT_EQ(parse(longline, sizeof(longline), &in, why), -1);
  ASSERT_CONTAINS(why, "107");
  /* The limit includes the CRLF: 107 bytes pass, 108 do not. */
  char line[110];
  memset(line, 'x', sizeof(line));
  memcpy(line, "PROXY UNKNOWN ", 14);
  memcpy(line + 105, "\r\n", 2);
  ASSERT_EQ(parse(line, 107, &in, why), 107);
  memset(line, 'x', sizeof(line));
  memcpy(line, "PROXY UNKNOWN ", 14);
  memcpy(line + 106, "\r\n", 2);
  ASSERT_EQ(parse(line, 108, &in, why), -1);
}

TEST(parse_v2_roundtrip) {
  tg_proxy_info_t out, in;
  memset(&out, 0, sizeof(out));
  v6(&out.src, "2001:db8::5", 4321);
  v6(&out.dst, "2001:db8::6", 443);
  out.tls = 1;
  out.version = "TLSv1.3";
  out.cn = "client1";
  uint8_t buf[512];
  size_t n = tg_proxy_build(2, &out, buf, sizeof(buf));
  ASSERT(n > 0);
  size_t used = 0;
  char why[100] = "";
  ASSERT_EQ(tg_proxy_parse(buf, n, &in, &used, why, sizeof(why)), (int)n);
  ASSERT_EQ(used, n);
  ASSERT(memcmp(&in.src, &out.src, sizeof(struct sockaddr_in6)) == 0);
  ASSERT(memcmp(&in.dst, &out.dst, sizeof(struct sockaddr_in6)) == 0);
  for (size_t k = 0; k < n; k++) ASSERT_EQ(tg_proxy_parse(buf, k, &in, &used, why, sizeof(why)), 0);
  v4(&out.src, "10.0.0.1", 1);
  v4(&out.dst, "10.0.0.2", 2);
  n = tg_proxy_build(2, &out, buf, sizeof(buf));
  ASSERT_EQ(tg_proxy_parse(buf, n, &in, &used, why, sizeof(why)), (int)n);
  ASSERT(memcmp(&in.src, &out.src, sizeof(struct sockaddr_in)) == 0);
}

TEST(parse_v2_local_and_malformed) {
  uint8_t h[64] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                   0x20, 0x00, 0x00, 0x00};
  tg_proxy_info_t in;
  size_t used = 0;
  char why[100] = "";
  ASSERT_EQ(tg_proxy_parse(h, 16, &in, &used, why, sizeof(why)), 16); /* LOCAL */
  ASSERT_EQ(in.src.ss_family, AF_UNSPEC);
  h[12] = 0x31; /* version 3 */
  ASSERT_EQ(tg_proxy_parse(h, 16, &in, &used, why, sizeof(why)), -1);
  h[12] = 0x22; /* command 2 */
  ASSERT_EQ(tg_proxy_parse(h, 16, &in, &used, why, sizeof(why)), -1);
  h[12] = 0x21;
  h[13] = 0x11; /* TCP4 but body too short for addresses */
  h[15] = 4;
  ASSERT_EQ(tg_proxy_parse(h, 20, &in, &used, why, sizeof(why)), -1);
  h[15] = 12 + 3; /* addresses + a TLV header claiming 5 bytes it lacks */
  h[28] = 0x01;
  h[29] = 0x00;
  h[30] = 0x05;
  ASSERT_EQ(tg_proxy_parse(h, 31, &in, &used, why, sizeof(why)), -1);
  ASSERT_CONTAINS(why, "TLV");
  h[13] = 0x99; /* unknown family */
  h[15] = 0;
  ASSERT_EQ(tg_proxy_parse(h, 16, &in, &used, why, sizeof(why)), -1);
  h[13] = 0x11; /* declared length over the cap */
  h[14] = 0x10;
  ASSERT_EQ(tg_proxy_parse(h, 16, &in, &used, why, sizeof(why)), -1);
}

int main(void) {
  RUN(v1_tcp4);
  RUN(v1_tcp6_and_unknown);
  RUN(v2_tcp4_plain);
  RUN(v2_ssl_tlvs);
  RUN(v2_unverified_client);
  RUN(too_small_buffer);
  RUN(parse_v1);
  RUN(parse_v1_incomplete);
  RUN(parse_v1_malformed);
  RUN(parse_v2_roundtrip);
  RUN(parse_v2_local_and_malformed);
  return UNIT_DONE();
}
