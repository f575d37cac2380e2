/* What one "source" is for the per-source caps of udp listeners
 * (max_half_open_per_source, max_associations_per_source): an IPv4
 * address, or an IPv6 /64. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "dtls.h"
#include "unit.h"
#include "unit_helpers.h"


TEST(ipv4_address_is_the_source) {
  struct sockaddr_in a = v4("192.0.2.7", 1000), b = v4("192.0.2.7", 2000),
                     c = v4("192.0.2.8", 1000);
  ASSERT_EQ(tg_udp_same_source(SA(a), SA(b)), 1);  /* ports do not matter */
  ASSERT_EQ(tg_udp_same_source(SA(a), SA(c)), 0);  /* the next address is another */
}

TEST(ipv6_slash_64_is_the_source) {
  struct sockaddr_in6 a = v6("2001:db8:1:2::1", 1000),
                      b = v6("2001:db8:1:2:ffff:ffff:ffff:ffff", 2000),
                      c = v6("2001:db8:1:3::1", 1000),
                      d = v6("2001:db8:1:2::1", 3000);
  ASSERT_EQ(tg_udp_same_source(SA(a), SA(b)), 1);  /* anywhere in the /64 */
  ASSERT_EQ(tg_udp_same_source(SA(a), SA(d)), 1);
  ASSERT_EQ(tg_udp_same_source(SA(a), SA(c)), 0);  /* the next /64 */
}

TEST(ipv4_mapped_counts_as_ipv4) {
  struct sockaddr_in a = v4("198.51.100.1", 1000);
  struct sockaddr_in6 m = v6("::ffff:198.51.100.1", 2000),
                      o = v6("::ffff:198.51.100.2", 2000);
  ASSERT_EQ(tg_udp_same_source(SA(a), SA(m)), 1);
  /* not one /64 for all of IPv4-mapped space */
  ASSERT_EQ(tg_udp_same_source(SA(m), SA(o)), 0);
}

TEST(families_do_not_mix) {
  struct sockaddr_in a = v4("0.0.0.0", 1);
  struct sockaddr_in6 b = v6("::", 1);
  ASSERT_EQ(tg_udp_same_source(SA(a), SA(b)), 0);
}

int main(void) {
  RUN(ipv4_address_is_the_source);
  RUN(ipv6_slash_64_is_the_source);
  RUN(ipv4_mapped_counts_as_ipv4);
  RUN(families_do_not_mix);
  return UNIT_DONE();
}
