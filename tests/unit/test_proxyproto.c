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

int main(void) {
  RUN(v1_tcp4);
  RUN(v1_tcp6_and_unknown);
  RUN(v2_tcp4_plain);
  RUN(v2_ssl_tlvs);
  RUN(v2_unverified_client);
  RUN(too_small_buffer);
  return UNIT_DONE();
}
