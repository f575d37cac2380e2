/* Pre-shared key tables (psk.c): parsing, lookup, and error messages that
 * name the place but never the key. */
#include <openssl/ssl.h>

#include "psk.h"
#include "unit.h"

static tg_psk_table_t *parse(const char *text, char sep, char *err, size_t size) {
  return tg_psk_parse(text, strlen(text), sep, "psk.txt", err, size);
}

TEST(parse_and_lookup) {
  char err[300] = "";
  tg_psk_table_t *t = parse("# devices\n"
                            "client1:00112233445566778899aabbccddeeff\n"
                            "\n"
                            "  urn:dev:ops:32473-Refrigerator-5002:C0FFEE  \r\n"
                            "Qt DTLS example client:1a2b3c4d5e6f\n",
                            '\n', err, sizeof(err));
  ASSERT(t != NULL);
  if (!t) {
    FAILF("%s", err);
    return;
  }
  ASSERT_EQ(tg_psk_count(t), 3);
  uint8_t key[64];
  ASSERT_EQ(tg_psk_lookup(t, "client1", key, sizeof(key)), 16);
  ASSERT_EQ(key[0], 0x00);
  ASSERT_EQ(key[15], 0xff);
  /* the last ':' separates: identities may contain ':' */
  ASSERT_EQ(tg_psk_lookup(t, "urn:dev:ops:32473-Refrigerator-5002", key, sizeof(key)), 3);
  ASSERT_EQ(key[0], 0xc0);
  ASSERT_EQ(key[2], 0xee);
  ASSERT_EQ(tg_psk_lookup(t, "Qt DTLS example client", key, sizeof(key)), 6);
  ASSERT_EQ(tg_psk_lookup(t, "nobody", key, sizeof(key)), 0);
  ASSERT_EQ(tg_psk_lookup(t, "client", key, sizeof(key)), 0);
  ASSERT_EQ(tg_psk_lookup(t, NULL, key, sizeof(key)), 0);
  /* a key that does not fit the library's buffer is not handed out */
  ASSERT_EQ(tg_psk_lookup(t, "client1", key, 8), 0);
  tg_psk_free(t);
}

TEST(comma_separated) {
  char err[300] = "";
  tg_psk_table_t *t = parse("a:0102, b:0304", ',', err, sizeof(err));
  ASSERT(t != NULL);
  uint8_t key[8];
  if (t) {
    ASSERT_EQ(tg_psk_lookup(t, "b", key, sizeof(key)), 2);
    ASSERT_EQ(key[1], 4);
  }
  tg_psk_free(t);
}

TEST(errors_name_the_line_not_the_key) {
  char err[300];
  struct {
    const char *text, *want;
  } cases[] = {
      {"client1:00112233\nbroken-line-without-colon\n", "psk.txt:2: want identity:hexkey"},
      {"client1:0011223\n", "psk.txt:1: key is not an even number of hex digits"},
      {"client1:00zz\n", "psk.txt:1: key is not hex"},
      {":0011\n", "psk.txt:1: empty identity"},
      {"client1:\n", "psk.txt:1: key is not an even number of hex digits"},
      {"a:0011\nb:2233\na:4455\n", "psk.txt:3: identity 'a' appears twice"},
      {"# only comments\n\n", "psk.txt: no identity:hexkey entry"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    err[0] = '\0';
    tg_psk_table_t *t = parse(cases[i].text, '\n', err, sizeof(err));
    ASSERT(t == NULL);
    tg_psk_free(t);
    ASSERT_STREQ(err, cases[i].want);
    ASSERT(strstr(err, "0011") == NULL && strstr(err, "4455") == NULL);
  }
  /* too long an identity */
  char longid[400];
  memset(longid, 'x', PSK_MAX_IDENTITY_LEN + 1);
  snprintf(longid + PSK_MAX_IDENTITY_LEN + 1, 20, ":0011\n");
  err[0] = '\0';
  ASSERT(parse(longid, '\n', err, sizeof(err)) == NULL);
  ASSERT_CONTAINS(err, "identity longer than");
}

TEST(printable) {
  char out[16];
  tg_psk_printable("ab\x01\x7f" "c", out, sizeof(out));
  ASSERT_STREQ(out, "ab??c");
  tg_psk_printable("0123456789abcdefXYZ", out, sizeof(out));
  ASSERT_STREQ(out, "0123456789abcde");
}

int main(void) {
  RUN(parse_and_lookup);
  RUN(comma_separated);
  RUN(errors_name_the_line_not_the_key);
  RUN(printable);
  return UNIT_DONE();
}
