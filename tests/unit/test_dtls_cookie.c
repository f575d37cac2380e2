/* The stateless DTLS cookie (HMAC, rotation), the datagram classifier and
 * the HelloVerifyRequest builder of dtls_cookie.c. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "dtls_cookie.h"
#include "unit.h"
#include "unit_helpers.h"

#define PERIOD 1000


TEST(cookie_accepts_its_peer) {
  tg_cookie_keys_t k;
  ASSERT_EQ(tg_cookie_keys_init(&k, PERIOD, 10000), 0);
  struct sockaddr_in a = v4("192.0.2.7", 5684);
  uint8_t c[TG_COOKIE_LEN];
  ASSERT_EQ(tg_cookie_make(&k, 10000, SA(a), c), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 10000, SA(a), c, sizeof(c)), 1);
  ASSERT_EQ(tg_cookie_valid(&k, 10999, SA(a), c, sizeof(c)), 1);
  ASSERT(TG_COOKIE_LEN <= 32);
  tg_cookie_keys_destroy(&k);
}

TEST(cookie_rejects_wrong_address_port_family) {
  tg_cookie_keys_t k;
  ASSERT_EQ(tg_cookie_keys_init(&k, PERIOD, 0), 0);
  struct sockaddr_in a = v4("192.0.2.7", 5684);
  struct sockaddr_in other_ip = v4("192.0.2.8", 5684);
  struct sockaddr_in other_port = v4("192.0.2.7", 5685);
  struct sockaddr_in6 six = v6("::ffff:192.0.2.7", 5684);
  uint8_t c[TG_COOKIE_LEN];
  ASSERT_EQ(tg_cookie_make(&k, 0, SA(a), c), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(other_ip), c, sizeof(c)), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(other_port), c, sizeof(c)), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(six), c, sizeof(c)), 0);
  tg_cookie_keys_destroy(&k);
}

TEST(cookie_ipv6) {
  tg_cookie_keys_t k;
  ASSERT_EQ(tg_cookie_keys_init(&k, PERIOD, 0), 0);
  struct sockaddr_in6 a = v6("2001:db8::1", 5684), b = v6("2001:db8::2", 5684);
  uint8_t c[TG_COOKIE_LEN];
  ASSERT_EQ(tg_cookie_make(&k, 0, SA(a), c), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(a), c, sizeof(c)), 1);
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(b), c, sizeof(c)), 0);
  tg_cookie_keys_destroy(&k);
}

TEST(cookie_rejects_tampering_and_bad_length) {
  tg_cookie_keys_t k;
  ASSERT_EQ(tg_cookie_keys_init(&k, PERIOD, 0), 0);
  struct sockaddr_in a = v4("198.51.100.1", 40000);
  uint8_t c[TG_COOKIE_LEN + 1];
  ASSERT_EQ(tg_cookie_make(&k, 0, SA(a), c), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(a), c, TG_COOKIE_LEN - 1), 0);
  c[TG_COOKIE_LEN] = 0;
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(a), c, TG_COOKIE_LEN + 1), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(a), c, 0), 0);
  for (int i = 0; i < TG_COOKIE_LEN; i++) {
    c[i] ^= 0x01;
    ASSERT_EQ(tg_cookie_valid(&k, 0, SA(a), c, TG_COOKIE_LEN), 0);
    c[i] ^= 0x01;
  }
  ASSERT_EQ(tg_cookie_valid(&k, 0, SA(a), c, TG_COOKIE_LEN), 1);
  tg_cookie_keys_destroy(&k);
}

/* The secret rotates every period; the previous one is accepted for one
 * more period, then the cookie is dead. */
TEST(cookie_rotation_and_expiry) {
  tg_cookie_keys_t k;
  ASSERT_EQ(tg_cookie_keys_init(&k, PERIOD, 0), 0);
  struct sockaddr_in a = v4("203.0.113.9", 51234);
  uint8_t c0[TG_COOKIE_LEN], c1[TG_COOKIE_LEN];
  ASSERT_EQ(tg_cookie_make(&k, 500, SA(a), c0), 0);
  /* next period: a new secret makes a different cookie, the old one holds */
  ASSERT_EQ(tg_cookie_make(&k, 1500, SA(a), c1), 0);
  ASSERT(memcmp(c0, c1, TG_COOKIE_LEN) != 0);
  ASSERT_EQ(tg_cookie_valid(&k, 1500, SA(a), c0, TG_COOKIE_LEN), 1);
  ASSERT_EQ(tg_cookie_valid(&k, 1999, SA(a), c0, TG_COOKIE_LEN), 1);
  ASSERT_EQ(tg_cookie_valid(&k, 1999, SA(a), c1, TG_COOKIE_LEN), 1);
  /* one more rotation: c0's secret is gone, c1's is now the previous one */
  ASSERT_EQ(tg_cookie_valid(&k, 2000, SA(a), c0, TG_COOKIE_LEN), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 2000, SA(a), c1, TG_COOKIE_LEN), 1);
  ASSERT_EQ(tg_cookie_valid(&k, 3000, SA(a), c1, TG_COOKIE_LEN), 0);
  tg_cookie_keys_destroy(&k);
}

/* A long quiet time (no cookie made or checked) expires everything. */
TEST(cookie_expires_after_idle_periods) {
  tg_cookie_keys_t k;
  ASSERT_EQ(tg_cookie_keys_init(&k, PERIOD, 0), 0);
  struct sockaddr_in a = v4("203.0.113.9", 51234);
  uint8_t c[TG_COOKIE_LEN];
  ASSERT_EQ(tg_cookie_make(&k, 999, SA(a), c), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 2500, SA(a), c, TG_COOKIE_LEN), 0);
  ASSERT_EQ(tg_cookie_valid(&k, 100000, SA(a), c, TG_COOKIE_LEN), 0);
  tg_cookie_keys_destroy(&k);
}

/* Two listeners (two key sets) never accept each other's cookies. */
TEST(cookie_secret_is_per_keyset) {
  tg_cookie_keys_t k1, k2;
  ASSERT_EQ(tg_cookie_keys_init(&k1, PERIOD, 0), 0);
  ASSERT_EQ(tg_cookie_keys_init(&k2, PERIOD, 0), 0);
  struct sockaddr_in a = v4("192.0.2.1", 1);
  uint8_t c[TG_COOKIE_LEN];
  ASSERT_EQ(tg_cookie_make(&k1, 0, SA(a), c), 0);
  ASSERT_EQ(tg_cookie_valid(&k2, 0, SA(a), c, TG_COOKIE_LEN), 0);
  tg_cookie_keys_destroy(&k1);
  tg_cookie_keys_destroy(&k2);
}

/* ---- classifier ---------------------------------------------------------- */

/* A DTLS 1.2 ClientHello record: seq 5, message_seq msgseq, the cookie given. */
static size_t client_hello(uint8_t *out, const uint8_t *cookie, size_t cookielen,
                           uint16_t msgseq) {
  uint8_t body[256];
  size_t b = 0;
  body[b++] = 0xfe;
  body[b++] = 0xfd;
  for (int i = 0; i < 32; i++) body[b++] = (uint8_t)(0xa0 + i); /* random */
  body[b++] = 0;                                                 /* session id */
  body[b++] = (uint8_t)cookielen;
  if (cookielen) memcpy(body + b, cookie, cookielen);
  b += cookielen;
  body[b++] = 0;
  body[b++] = 2;
  body[b++] = 0xc0;
  body[b++] = 0x2b; /* ECDHE-ECDSA-AES128-GCM-SHA256 */
  body[b++] = 1;
  body[b++] = 0; /* null compression */
  size_t o = 0;
  uint8_t hdr[13] = {22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0};
  size_t reclen = 12 + b;
  hdr[11] = (uint8_t)(reclen >> 8);
  hdr[12] = (uint8_t)reclen;
  memcpy(out, hdr, 13);
  o = 13;
  out[o++] = 1; /* client_hello */
  out[o++] = 0;
  out[o++] = (uint8_t)(b >> 8);
  out[o++] = (uint8_t)b;
  out[o++] = (uint8_t)(msgseq >> 8);
  out[o++] = (uint8_t)msgseq;
  out[o++] = 0;
  out[o++] = 0;
  out[o++] = 0;
  out[o++] = 0;
  out[o++] = (uint8_t)(b >> 8);
  out[o++] = (uint8_t)b;
  memcpy(out + o, body, b);
  return o + b;
}

TEST(classify_client_hello) {
  uint8_t p[512];
  tg_dgram_info_t info;
  size_t n = client_hello(p, NULL, 0, 0);
  ASSERT_EQ(tg_dgram_classify(p, n, &info), TG_DGRAM_CLIENT_HELLO);
  ASSERT_EQ(info.cookie_len, 0);
  ASSERT_EQ(info.msg_seq, 0);
  ASSERT_EQ(info.epoch, 0);
  ASSERT_EQ(info.client_version, 0xfefd);
  ASSERT(info.random == p + 13 + 12 + 2);
  ASSERT_EQ(info.record_seq[7], 5);

  uint8_t cookie[TG_COOKIE_LEN];
  for (int i = 0; i < TG_COOKIE_LEN; i++) cookie[i] = (uint8_t)i;
  n = client_hello(p, cookie, sizeof(cookie), 1);
  ASSERT_EQ(tg_dgram_classify(p, n, &info), TG_DGRAM_CLIENT_HELLO);
  ASSERT_EQ(info.cookie_len, TG_COOKIE_LEN);
  ASSERT_EQ(info.msg_seq, 1);
  ASSERT(info.cookie && memcmp(info.cookie, cookie, sizeof(cookie)) == 0);
}

TEST(classify_short_and_garbage) {
  uint8_t p[512];
  tg_dgram_info_t info;
  memset(p, 0x16, sizeof(p));
  ASSERT_EQ(tg_dgram_classify(p, 0, &info), TG_DGRAM_SHORT);
  ASSERT_EQ(tg_dgram_classify(p, 12, &info), TG_DGRAM_SHORT);
  /* not a DTLS content type / version */
  const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(tg_dgram_classify((const uint8_t *)http, strlen(http), &info),
            TG_DGRAM_GARBAGE);
  size_t n = client_hello(p, NULL, 0, 0);
  p[1] = 0x03; /* a TLS record version */
  ASSERT_EQ(tg_dgram_classify(p, n, &info), TG_DGRAM_GARBAGE);
  /* record longer than the datagram */
  n = client_hello(p, NULL, 0, 0);
  ASSERT_EQ(tg_dgram_classify(p, n - 1, &info), TG_DGRAM_GARBAGE);
  /* the session id length runs past the end */
  n = client_hello(p, NULL, 0, 0);
  p[13 + 12 + 34] = 200;
  ASSERT_EQ(tg_dgram_classify(p, n, &info), TG_DGRAM_GARBAGE);
  /* the cookie length runs past the end */
  n = client_hello(p, NULL, 0, 0);
  p[13 + 12 + 35] = 250;
  ASSERT_EQ(tg_dgram_classify(p, n, &info), TG_DGRAM_GARBAGE);
  /* a later fragment of a ClientHello */
  n = client_hello(p, NULL, 0, 0);
  p[13 + 8] = 1;
  ASSERT_EQ(tg_dgram_classify(p, n, &info), TG_DGRAM_GARBAGE);
  /* a handshake record too short for a handshake header */
  uint8_t tiny[16] = {22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0, 0};
  ASSERT_EQ(tg_dgram_classify(tiny, sizeof(tiny), &info), TG_DGRAM_GARBAGE);
  /* never reads beyond n: every prefix of a ClientHello is handled */
  n = client_hello(p, NULL, 0, 0);
  for (size_t k = 0; k < n; k++) {
    tg_dgram_kind_t kind = tg_dgram_classify(p, k, &info);
    ASSERT(kind == TG_DGRAM_SHORT || kind == TG_DGRAM_GARBAGE);
  }
}

TEST(classify_other_records) {
  tg_dgram_info_t info;
  /* application data, epoch 1 */
  uint8_t app[13 + 20] = {23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 20};
  ASSERT_EQ(tg_dgram_classify(app, sizeof(app), &info), TG_DGRAM_RECORD);
  ASSERT_EQ(info.epoch, 1);
  ASSERT_EQ(info.content_type, 23);
  /* an alert */
  uint8_t alert[15] = {21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0};
  ASSERT_EQ(tg_dgram_classify(alert, sizeof(alert), &info), TG_DGRAM_RECORD);
  /* a ServerHello (handshake type 2) is a record, not a ClientHello */
  uint8_t big[512];
  size_t n = client_hello(big, NULL, 0, 0);
  big[13] = 2;
  ASSERT_EQ(tg_dgram_classify(big, n, &info), TG_DGRAM_RECORD);
  /* an epoch-1 handshake record (encrypted Finished) */
  n = client_hello(big, NULL, 0, 0);
  big[4] = 1;
  ASSERT_EQ(tg_dgram_classify(big, n, &info), TG_DGRAM_RECORD);
  ASSERT_STREQ(tg_dgram_kind_name(TG_DGRAM_RECORD), "not a ClientHello");
}

/* ---- HelloVerifyRequest --------------------------------------------------- */

TEST(hello_verify_request) {
  uint8_t p[512], out[TG_HVR_LEN], cookie[TG_COOKIE_LEN];
  tg_dgram_info_t info;
  size_t n = client_hello(p, NULL, 0, 0);
  ASSERT_EQ(tg_dgram_classify(p, n, &info), TG_DGRAM_CLIENT_HELLO);
  for (int i = 0; i < TG_COOKIE_LEN; i++) cookie[i] = (uint8_t)(0x40 + i);
  size_t len = tg_dtls_build_hvr(&info, cookie, sizeof(cookie), out, sizeof(out));
  ASSERT_EQ(len, TG_HVR_LEN);
  ASSERT(len <= n); /* no amplification */
  ASSERT_EQ(out[0], 22);
  ASSERT_EQ(out[1], 0xfe);
  ASSERT_EQ(out[2], 0xff);                    /* DTLS 1.0 record version */
  ASSERT(memcmp(out + 3, p + 3, 8) == 0);      /* epoch + sequence echoed */
  ASSERT_EQ((out[11] << 8) | out[12], len - 13);
  ASSERT_EQ(out[13], 3);                       /* hello_verify_request */
  ASSERT_EQ(out[13 + 12], 0xfe);
  ASSERT_EQ(out[13 + 13], 0xff);
  ASSERT_EQ(out[13 + 14], TG_COOKIE_LEN);
  ASSERT(memcmp(out + 13 + 15, cookie, sizeof(cookie)) == 0);
  /* the client would answer with the cookie: it classifies back */
  size_t n2 = client_hello(p, out + 13 + 15, TG_COOKIE_LEN, 1);
  ASSERT_EQ(tg_dgram_classify(p, n2, &info), TG_DGRAM_CLIENT_HELLO);
  ASSERT_EQ(info.cookie_len, TG_COOKIE_LEN);
  /* too small a buffer */
  ASSERT_EQ(tg_dtls_build_hvr(&info, cookie, sizeof(cookie), out, 20), 0);
}

/* End to end: HVR cookie made for a peer verifies for that peer only. */
TEST(cookie_round_trip_through_hvr) {
  tg_cookie_keys_t k;
  ASSERT_EQ(tg_cookie_keys_init(&k, PERIOD, 0), 0);
  struct sockaddr_in peer = v4("127.0.0.2", 40001), spoof = v4("127.0.0.3", 40001);
  uint8_t p[512], hvr[TG_HVR_LEN], cookie[TG_COOKIE_LEN];
  tg_dgram_info_t info;
  size_t n = client_hello(p, NULL, 0, 0);
  tg_dgram_classify(p, n, &info);
  ASSERT_EQ(tg_cookie_make(&k, 10, SA(peer), cookie), 0);
  ASSERT_EQ(tg_dtls_build_hvr(&info, cookie, sizeof(cookie), hvr, sizeof(hvr)),
            TG_HVR_LEN);
  n = client_hello(p, hvr + 13 + 15, TG_COOKIE_LEN, 1);
  ASSERT_EQ(tg_dgram_classify(p, n, &info), TG_DGRAM_CLIENT_HELLO);
  ASSERT_EQ(tg_cookie_valid(&k, 20, SA(peer), info.cookie, info.cookie_len), 1);
  ASSERT_EQ(tg_cookie_valid(&k, 20, SA(spoof), info.cookie, info.cookie_len), 0);
  tg_cookie_keys_destroy(&k);
}

static void write_secret(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

/* dtls_cookie_secret_file: two "instances" reading one file agree; after
 * one rotation of the file the old secret still verifies, after two not. */
TEST(shared_secret_file_and_rotation) {
  char path[] = "/tmp/tg-cookie-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  close(fd);
  char err[300];
  struct sockaddr_in a = v4("192.0.2.7", 5684);
  uint8_t c[TG_COOKIE_LEN];
  tg_cookie_keys_t k1, k2, k3, k4;
  write_secret(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
  ASSERT_EQ(tg_cookie_keys_init(&k1, PERIOD, 0), 0);
  ASSERT_EQ(tg_cookie_keys_load_shared(&k1, path, err, sizeof(err)), 0);
  ASSERT_EQ(tg_cookie_make(&k1, 5 * PERIOD, SA(a), c), 0); /* no timed rotation */
  ASSERT_EQ(tg_cookie_keys_init(&k2, PERIOD, 0), 0);
  ASSERT_EQ(tg_cookie_keys_load_shared(&k2, path, err, sizeof(err)), 0);
  ASSERT_EQ(tg_cookie_valid(&k2, 99 * PERIOD, SA(a), c, sizeof(c)), 1);
  write_secret(path, "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100");
  ASSERT_EQ(tg_cookie_keys_init(&k3, PERIOD, 0), 0);
  ASSERT_EQ(tg_cookie_keys_load_shared(&k3, path, err, sizeof(err)), 0);
  ASSERT_EQ(tg_cookie_valid(&k3, 0, SA(a), c, sizeof(c)), 1);
  write_secret(path, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  ASSERT_EQ(tg_cookie_keys_init(&k4, PERIOD, 0), 0);
  ASSERT_EQ(tg_cookie_keys_load_shared(&k4, path, err, sizeof(err)), 0);
  ASSERT_EQ(tg_cookie_valid(&k4, 0, SA(a), c, sizeof(c)), 0);
  write_secret(path, "too short");
  ASSERT_EQ(tg_cookie_keys_load_shared(&k4, path, err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "9 bytes");
  write_secret(path, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeZ");
  ASSERT_EQ(tg_cookie_keys_load_shared(&k4, path, err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "hex");
  tg_cookie_keys_destroy(&k1);
  tg_cookie_keys_destroy(&k2);
  tg_cookie_keys_destroy(&k3);
  tg_cookie_keys_destroy(&k4);
  unlink(path);
}

int main(void) {
  RUN(cookie_accepts_its_peer);
  RUN(cookie_rejects_wrong_address_port_family);
  RUN(cookie_ipv6);
  RUN(cookie_rejects_tampering_and_bad_length);
  RUN(cookie_rotation_and_expiry);
  RUN(cookie_expires_after_idle_periods);
  RUN(cookie_secret_is_per_keyset);
  RUN(classify_client_hello);
  RUN(classify_short_and_garbage);
  RUN(classify_other_records);
  RUN(hello_verify_request);
  RUN(cookie_round_trip_through_hvr);
  RUN(shared_secret_file_and_rotation);
  return UNIT_DONE();
}
