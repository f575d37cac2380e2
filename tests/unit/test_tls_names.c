/* Certificate names as tg_tls_peer_id sees them (NUL bytes, full lengths)
 * and the backend_pin list syntax.  Certificates are built in memory. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acl.h"
#include "tls.h"
#include "unit.h"

/* An unsigned certificate with a CN of cnlen bytes and one DNS SAN of
 * dnslen bytes (either may hold a NUL). */
static X509 *make_cert(const char *cn, size_t cnlen, const char *dns, size_t dnslen) {
  X509 *x = X509_new();
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                             (int)cnlen, -1, 0);
  if (dns) {
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    ASN1_STRING_set(s, dns, (int)dnslen);
    GENERAL_NAME_set0_value(g, GEN_DNS, s);
    sk_GENERAL_NAME_push(gens, g);
    X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0);
    GENERAL_NAMES_free(gens);
  }
  return x;
}

static int admits(const char *text, const tg_peer_id_t *id) {
  tg_acl_t acl;
  char err[400];
  if (tg_acl_parse(text, &acl, err, sizeof(err)) != 0) return -1;
  return tg_acl_match(&acl, id);
}

TEST(plain_names) {
  X509 *x = make_cert("client1", 7, "client1.test", 12);
  tg_peer_id_t id;
  tg_tls_peer_id(x, &id);
  ASSERT_STREQ(id.cn, "client1");
  ASSERT_EQ(id.cnlen, 7);
  ASSERT(id.bad == NULL);
  ASSERT_EQ(admits("cn:client1", &id), 1);
  ASSERT_EQ(admits("san:dns:client1.test", &id), 1);
  X509_free(x);
}

TEST(nul_in_cn_is_refused_and_visible) {
  static const char cn[] = "client1\0.attacker.example";
  X509 *x = make_cert(cn, sizeof(cn) - 1, NULL, 0);
  tg_peer_id_t id;
  tg_tls_peer_id(x, &id);
  ASSERT(id.bad != NULL);
  ASSERT_CONTAINS(id.bad, "NUL");
  ASSERT_STREQ(id.cn, "client1\\0.attacker.example"); /* logged as such, never "client1" */
  ASSERT_EQ(id.cnlen, sizeof(cn) - 1);
  ASSERT_EQ(admits("cn:client1", &id), 0);
  X509_free(x);
}

TEST(nul_in_dns_san_is_refused) {
  static const char dns[] = "client1.test\0.attacker.example";
  X509 *x = make_cert("x", 1, dns, sizeof(dns) - 1);
  tg_peer_id_t id;
  tg_tls_peer_id(x, &id);
  ASSERT(id.bad != NULL);
  ASSERT_EQ(admits("san:dns:client1.test", &id), 0);
  X509_free(x);
}

TEST(long_name_never_matches_its_prefix) {
  char cn[400];
  memset(cn, 'a', sizeof(cn));
  X509 *x = make_cert(cn, sizeof(cn), NULL, 0);
  tg_peer_id_t id;
  tg_tls_peer_id(x, &id);
  char acl[300];
  snprintf(acl, sizeof(acl), "cn:%.255s", cn);
  ASSERT_EQ(admits(acl, &id), 0);
  X509_free(x);
}

TEST(several_cns_match_no_cn_entry) {
  X509 *x = make_cert("client1", 7, NULL, 0);
  X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                             (const unsigned char *)"attacker", 8, -1, 0);
  tg_peer_id_t id;
  tg_tls_peer_id(x, &id);
  ASSERT_EQ(admits("cn:client1", &id), 0);
  ASSERT_EQ(admits("cn:attacker", &id), 0);
  X509_free(x);
}

TEST(pin_lists) {
  char why[300];
  const char *hex = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  const char *b64 = "spki-sha256:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  char both[300];
  snprintf(both, sizeof(both), "%s, %s", hex, b64);
  ASSERT_EQ(tg_tls_pins_check(hex, why, sizeof(why)), 0);
  ASSERT_EQ(tg_tls_pins_check(b64, why, sizeof(why)), 0);
  ASSERT_EQ(tg_tls_pins_check(both, why, sizeof(why)), 0);
  ASSERT_EQ(tg_tls_pins_check("sha256:abcd", why, sizeof(why)), -1);
  ASSERT_CONTAINS(why, "64 hex digits");
  snprintf(both, sizeof(both), "%s, md5:00", hex);
  ASSERT_EQ(tg_tls_pins_check(both, why, sizeof(why)), -1);
  ASSERT_CONTAINS(why, "md5:00");
  ASSERT_EQ(tg_tls_pins_check("spki-sha256:AAEC", why, sizeof(why)), -1);
  ASSERT_EQ(tg_tls_pins_check(" , ", why, sizeof(why)), -1);
}

int main(void) {
  RUN(plain_names);
  RUN(nul_in_cn_is_refused_and_visible);
  RUN(nul_in_dns_san_is_refused);
  RUN(long_name_never_matches_its_prefix);
  RUN(several_cns_match_no_cn_entry);
  RUN(pin_lists);
  return UNIT_DONE();
}
