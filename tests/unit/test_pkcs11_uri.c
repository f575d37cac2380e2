/* RFC 7512 URI checks of pkcs11.c (what config validation accepts). */
#include "pkcs11.h"
#include "unit.h"

static int ok(const char *uri) {
  char why[300];
  int r = tg_p11_uri_check(uri, why, sizeof(why));
  if (r != 0) fprintf(stderr, "  '%s': %s\n", uri, why);
  return r == 0;
}

static const char *why_of(const char *uri) {
  static char why[300];
  why[0] = '\0';
  return tg_p11_uri_check(uri, why, sizeof(why)) == 0 ? "(accepted)" : why;
}

TEST(is_uri) {
  ASSERT(tg_p11_is_uri("pkcs11:token=a"));
  ASSERT(tg_p11_is_uri("PKCS11:token=a"));
  ASSERT(!tg_p11_is_uri("/etc/key.pem"));
  ASSERT(!tg_p11_is_uri("pkcs12:x"));
  ASSERT(!tg_p11_is_uri(NULL));
}

TEST(accepted) {
  ASSERT(ok("pkcs11:"));
  ASSERT(ok("pkcs11:token=tlsgate-dev;object=server"));
  ASSERT(ok("pkcs11:token=My%20Card;id=%01%02;type=private"));
  ASSERT(ok("pkcs11:serial=1234;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;slot-id=3"));
  ASSERT(ok("pkcs11:object=a;type=cert?module-path=/usr/lib/softhsm/libsofthsm2.so"));
  ASSERT(ok("pkcs11:library-manufacturer=OpenSC;library-version=0.23;x-vendor=1"));
}

TEST(refused) {
  ASSERT_CONTAINS(why_of("pkcs11:token=a;color=blue"), "unknown attribute 'color'");
  ASSERT_CONTAINS(why_of("pkcs11:token=a?pin-value=1234"), "pkcs11_pin");
  ASSERT_CONTAINS(why_of("pkcs11:token=a?pin-source=file:/x"), "pkcs11_pin");
  ASSERT_CONTAINS(why_of("pkcs11:id=%zz"), "percent-encoding");
  ASSERT_CONTAINS(why_of("pkcs11:id=%0"), "percent-encoding");
  ASSERT_CONTAINS(why_of("pkcs11:type=secret"), "want private, cert or public");
  ASSERT_CONTAINS(why_of("pkcs11:slot-id=x1"), "decimal");
  ASSERT_CONTAINS(why_of("pkcs11:token"), "not attribute=value");
  ASSERT_CONTAINS(why_of("pkcs11:module-path=/x.so"), "query part");
  ASSERT_CONTAINS(why_of("pkcs11:token=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "too long");
}

int main(void) {
  RUN(is_uri);
  RUN(accepted);
  RUN(refused);
  return UNIT_DONE();
}
