/* allow_clients parsing and matching. */
#include <arpa/inet.h>

#include "acl.h"
#include "util.h"
#include "unit.h"

static tg_peer_id_t client1(void) {
  tg_peer_id_t id;
  memset(&id, 0, sizeof(id));
  snprintf(id.cn, sizeof(id.cn), "client1");
  snprintf(id.dns[id.ndns++], sizeof(id.dns[0]), "client1.test");
  snprintf(id.uri[id.nuri++], sizeof(id.uri[0]), "spiffe://tlsgate.test/client1");
  inet_pton(AF_INET, "10.1.2.3", id.ip[id.nip]);
  id.iplen[id.nip++] = 4;
  inet_pton(AF_INET6, "2001:db8::7", id.ip[id.nip]);
  id.iplen[id.nip++] = 16;
  for (int i = 0; i < 32; i++) id.sha256[i] = (uint8_t)i;
  return id;
}

static int admits(const char *text, const tg_peer_id_t *id) {
  tg_acl_t acl;
  char err[400];
  if (tg_acl_parse(text, &acl, err, sizeof(err)) != 0) {
    fprintf(stderr, "  parse of '%s' failed: %s\n", text, err);
    return -1;
  }
  return tg_acl_match(&acl, id);
}

TEST(empty_acl_admits_everyone) {
  tg_peer_id_t id = client1();
  ASSERT_EQ(admits("", &id), 1);
}

TEST(each_kind_matches) {
  tg_peer_id_t id = client1();
  ASSERT_EQ(admits("cn:client1", &id), 1);
  ASSERT_EQ(admits("san:dns:CLIENT1.test", &id), 1); /* DNS is case-blind */
  ASSERT_EQ(admits("san:uri:spiffe://tlsgate.test/client1", &id), 1);
  ASSERT_EQ(admits("san:ip:10.1.2.3", &id), 1);
  ASSERT_EQ(admits("san:ip:2001:db8:0::7", &id), 1); /* compared as bytes */
  ASSERT_EQ(admits("sha256:000102030405060708090a0b0c0d0e0f"
                   "101112131415161718191a1b1c1d1e1f", &id), 1);
  ASSERT_EQ(admits("sha256:00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:"
                   "10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F", &id), 1);
}

TEST(each_kind_rejects) {
  tg_peer_id_t id = client1();
  ASSERT_EQ(admits("cn:client2", &id), 0);
  ASSERT_EQ(admits("cn:CLIENT1", &id), 0); /* CN is exact */
  ASSERT_EQ(admits("san:dns:client2.test", &id), 0);
  ASSERT_EQ(admits("san:uri:spiffe://tlsgate.test/client2", &id), 0);
  ASSERT_EQ(admits("san:ip:10.1.2.4", &id), 0);
  ASSERT_EQ(admits("sha256:ff0102030405060708090a0b0c0d0e0f"
                   "101112131415161718191a1b1c1d1e1f", &id), 0);
  /* A CN is not a DNS SAN and the other way round. */
  ASSERT_EQ(admits("san:dns:client1", &id), 0);
  ASSERT_EQ(admits("cn:client1.test", &id), 0);
}

TEST(any_entry_admits) {
  tg_peer_id_t id = client1();
  ASSERT_EQ(admits("cn:nobody, san:dns:nope.test,  san:ip:10.1.2.3", &id), 1);
  ASSERT_EQ(admits("cn:nobody, san:dns:nope.test", &id), 0);
}

TEST(peer_without_cn) {
  tg_peer_id_t id;
  memset(&id, 0, sizeof(id));
  ASSERT_EQ(admits("cn:client1", &id), 0);
}

TEST(parse_errors) {
  tg_acl_t acl;
  char err[400];
  ASSERT_EQ(tg_acl_parse("cn:", &acl, err, sizeof(err)), -1);
  ASSERT_STREQ(err, "'cn:': empty value");
  ASSERT_EQ(tg_acl_parse("cn:a, ou:b", &acl, err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "'ou:b': unknown kind");
  ASSERT_EQ(tg_acl_parse("san:ip:300.1.1.1", &acl, err, sizeof(err)), -1);
  ASSERT_EQ(tg_acl_parse("sha256:abcd", &acl, err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "SHA-256");
  ASSERT_EQ(tg_acl_parse("cn:a,,cn:b,", &acl, err, sizeof(err)), 0);
  ASSERT_EQ(acl.n, 2);
}

TEST(hex) {
  uint8_t out[2];
  ASSERT_EQ(tg_parse_hex("abCD", out, 2), 0);
  ASSERT_EQ(out[0], 0xab);
  ASSERT_EQ(out[1], 0xcd);
  ASSERT_EQ(tg_parse_hex("ab:cd", out, 2), 0);
  ASSERT_EQ(tg_parse_hex("abc", out, 2), -1);
  ASSERT_EQ(tg_parse_hex("abcdef", out, 2), -1);
  ASSERT_EQ(tg_parse_hex("a:bcd", out, 2), -1);
  ASSERT_EQ(tg_parse_hex("zz00", out, 2), -1);
}

/* A name whose stored text is shorter than the certificate's (cut at a NUL
 * or at the buffer) never matches, whatever the prefix. */
TEST(full_length_compared) {
  tg_peer_id_t id = client1();
  id.cnlen = strlen("client1") + 18; /* "client1\0.attacker.example" */
  ASSERT_EQ(admits("cn:client1", &id), 0);
  id = client1();
  id.dnslen[0] = 300; /* longer than what was stored */
  ASSERT_EQ(admits("san:dns:client1.test", &id), 0);
  id = client1();
  id.urilen[0] = strlen(id.uri[0]) + 1;
  ASSERT_EQ(admits("san:uri:spiffe://tlsgate.test/client1", &id), 0);
  id = client1();
  id.cnlen = strlen("client1");
  id.dnslen[0] = strlen("client1.test");
  ASSERT_EQ(admits("cn:client1", &id), 1);
  ASSERT_EQ(admits("san:dns:client1.test", &id), 1);
}

TEST(bad_names_match_no_name_entry) {
  tg_peer_id_t id = client1();
  id.bad = "CN contains a NUL byte";
  ASSERT_EQ(admits("cn:client1", &id), 0);
  ASSERT_EQ(admits("san:dns:client1.test", &id), 0);
  ASSERT_EQ(admits("san:uri:spiffe://tlsgate.test/client1", &id), 0);
}

int main(void) {
  RUN(full_length_compared);
  RUN(bad_names_match_no_name_entry);
  RUN(empty_acl_admits_everyone);
  RUN(each_kind_matches);
  RUN(each_kind_rejects);
  RUN(any_entry_admits);
  RUN(peer_without_cn);
  RUN(parse_errors);
  RUN(hex);
  return UNIT_DONE();
}
