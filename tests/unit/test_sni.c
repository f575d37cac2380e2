/* SNI virtual hosts: server_name patterns, the choice of a section, the
 * ClientHello extension and log escaping (sni.h). */
#include "sni.h"
#include "unit.h"

static int pick(const tg_sni_table_t *t, const char *name) {
  return tg_sni_choose(t, name, name ? strlen(name) : 0);
}

TEST(exact_beats_wildcard_and_case_is_ignored) {
  tg_sni_table_t t = {0};
  ASSERT_EQ(tg_sni_table_add(&t, "*.apps.test", 1), 0);
  ASSERT_EQ(tg_sni_table_add(&t, "secure.test, Special.Apps.Test", 2), 0);
  t.dflt = 0;
  ASSERT_EQ(pick(&t, "x.apps.test"), 1);
  ASSERT_EQ(pick(&t, "X.APPS.TEST"), 1);
  ASSERT_EQ(pick(&t, "special.apps.test"), 2); /* exact, though the wildcard comes first */
  ASSERT_EQ(pick(&t, "SECURE.test"), 2);
  ASSERT_EQ(pick(&t, "secure.test."), 2);       /* one trailing dot */
  /* a wildcard stands for exactly one label */
  ASSERT_EQ(pick(&t, "apps.test"), 0);
  ASSERT_EQ(pick(&t, "a.b.apps.test"), 0);
  ASSERT_EQ(pick(&t, ".apps.test"), 0);
  ASSERT_EQ(pick(&t, "xapps.test"), 0);
  ASSERT_EQ(pick(&t, "nobody.test"), 0);
  ASSERT_EQ(pick(&t, NULL), 0);
  /* a name with a NUL is no name */
  ASSERT_EQ(tg_sni_choose(&t, "secure.test\0x", 13), 0);
  t.strict = 1;
  ASSERT_EQ(pick(&t, "nobody.test"), -1);
  ASSERT_EQ(pick(&t, NULL), -1);
  ASSERT_EQ(pick(&t, "x.apps.test"), 1);
  tg_sni_table_free(&t);
}

TEST(pattern_syntax) {
  char why[100];
  ASSERT_EQ(tg_sni_check_pattern("a-b.example.com", 15, why, sizeof(why)), 0);
  ASSERT_EQ(tg_sni_check_pattern("*.example.com", 13, why, sizeof(why)), 0);
  ASSERT_EQ(tg_sni_check_pattern("*", 1, why, sizeof(why)), -1);
  ASSERT_EQ(tg_sni_check_pattern("*.", 2, why, sizeof(why)), -1);
  ASSERT_EQ(tg_sni_check_pattern("a*.example.com", 14, why, sizeof(why)), -1);
  ASSERT_EQ(tg_sni_check_pattern("a b.test", 8, why, sizeof(why)), -1);
  ASSERT_EQ(tg_sni_check_pattern("x.test.", 7, why, sizeof(why)), -1);
}

TEST(server_name_extension) {
  char out[300];
  /* list of 14 bytes: host_name (0), 11 bytes */
  const uint8_t ok[] = {0, 14, 0, 0, 11, 's', 'e', 'c', 'u', 'r', 'e', '.', 't', 'e', 's', 't'};
  ASSERT_EQ(tg_sni_from_ext(ok, sizeof(ok), out, sizeof(out)), 11);
  ASSERT_STREQ(out, "secure.test");
  const uint8_t bad_len[] = {0, 15, 0, 0, 11, 's', 'e', 'c', 'u', 'r', 'e', '.', 't', 'e', 's', 't'};
  ASSERT_EQ(tg_sni_from_ext(bad_len, sizeof(bad_len), out, sizeof(out)), -1);
  const uint8_t overrun[] = {0, 5, 0, 0, 9, 'a', 'b'};
  ASSERT_EQ(tg_sni_from_ext(overrun, sizeof(overrun), out, sizeof(out)), -1);
  const uint8_t other_type[] = {0, 4, 1, 0, 1, 'x'};
  ASSERT_EQ(tg_sni_from_ext(other_type, sizeof(other_type), out, sizeof(out)), 0);
  ASSERT_EQ(tg_sni_from_ext(ok, 1, out, sizeof(out)), -1);
}

TEST(escaping_for_logs) {
  char out[64];
  tg_sni_escape("a\nb\"\\c", 6, out, sizeof(out));
  ASSERT_STREQ(out, "a\\x0ab\\x22\\x5cc");
  tg_sni_escape("x\0y", 3, out, sizeof(out));
  ASSERT_STREQ(out, "x\\x00y");
}

int main(void) {
  RUN(exact_beats_wildcard_and_case_is_ignored);
  RUN(pattern_syntax);
  RUN(server_name_extension);
  RUN(escaping_for_logs);
  return UNIT_DONE();
}
