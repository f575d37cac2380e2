/* accept_proxy_from: address/CIDR lists, matching (IPv4, IPv6, IPv4-mapped),
 * and the config errors and warnings around the key. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#include "cidr.h"
#include "config.h"
#include "unit.h"
#include "unit_helpers.h"

static struct sockaddr_storage ss;

static const struct sockaddr *addr(const char *ip) {
  memset(&ss, 0, sizeof(ss));
  if (strchr(ip, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
  }
  return (const struct sockaddr *)&ss;
}

static tg_cidr_list_t list;

static int parse(const char *text) {
  char err[200];
  return tg_cidr_parse_list(text, &list, err, sizeof(err));
}

/* Parses text expecting an error naming entry bad with a reason containing want. */
static int parse_fails(const char *text, const char *want_bad, const char *want) {
  char err[200] = "", quoted[120];
  if (tg_cidr_parse_list(text, &list, err, sizeof(err)) == 0) {
    fprintf(stderr, "  '%s' was accepted\n", text);
    return 0;
  }
  snprintf(quoted, sizeof(quoted), "'%s': ", want_bad);
  if (strncmp(err, quoted, strlen(quoted)) != 0 || !strstr(err + strlen(quoted), want)) {
    fprintf(stderr, "  '%s': got %s\n", text, err);
    return 0;
  }
  return 1;
}

TEST(parse_and_match_v4) {
  ASSERT_EQ(parse(" 10.0.0.0/8 , 192.0.2.7,127.0.0.1/32 "), 0);
  ASSERT_EQ(list.n, 3);
  ASSERT(tg_cidr_match(&list, addr("10.200.3.4")));
  ASSERT(tg_cidr_match(&list, addr("192.0.2.7")));
  ASSERT(!tg_cidr_match(&list, addr("192.0.2.8")));
  ASSERT(!tg_cidr_match(&list, addr("11.0.0.1")));
  ASSERT(tg_cidr_match(&list, addr("127.0.0.1")));
  ASSERT(!tg_cidr_match(&list, addr("127.0.0.2")));
  /* a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d */
  ASSERT(tg_cidr_match(&list, addr("::ffff:10.1.2.3")));
  ASSERT(!tg_cidr_match(&list, addr("::ffff:11.1.2.3")));
  /* but an IPv6 address is not an IPv4 one */
  ASSERT(!tg_cidr_match(&list, addr("::a00:1")));
}

TEST(parse_and_match_v6_and_odd_prefixes) {
  ASSERT_EQ(parse("2001:db8::/32, ::1, 192.168.0.0/23, 0.0.0.0/0"), 0);
  ASSERT(tg_cidr_match(&list, addr("2001:db8:ffff::1")));
  ASSERT(!tg_cidr_match(&list, addr("2001:db9::1")));
  ASSERT(tg_cidr_match(&list, addr("::1")));
  ASSERT(!tg_cidr_match(&list, addr("::2")));
  ASSERT(tg_cidr_match(&list, addr("8.8.8.8"))); /* 0.0.0.0/0 */
  ASSERT_EQ(parse("192.168.0.0/23"), 0);
  ASSERT(tg_cidr_match(&list, addr("192.168.1.255")));
  ASSERT(!tg_cidr_match(&list, addr("192.168.2.0")));
  ASSERT_EQ(parse("fe80::/10"), 0);
  ASSERT(tg_cidr_match(&list, addr("febf::1")));
  ASSERT(!tg_cidr_match(&list, addr("fec0::1")));
}

TEST(parse_errors) {
  ASSERT(parse_fails("10.0.0.0/8, lb.example", "lb.example", "names are not allowed"));
  ASSERT(parse_fails("10.0.0.0/33", "10.0.0.0/33", "prefix length must be 0-32"));
  ASSERT(parse_fails("::/129", "::/129", "prefix length must be 0-128"));
  ASSERT(parse_fails("10.0.0.0/", "10.0.0.0/", "prefix length"));
  ASSERT(parse_fails("10.0.0.0/8x", "10.0.0.0/8x", "prefix length"));
  ASSERT(parse_fails("10.0.0.1/8", "10.0.0.1/8", "bits set beyond the prefix length"));
  ASSERT(parse_fails("1.2.3.4, /8", "/8", "not an IP address"));
  ASSERT(parse_fails(" , ", " , ", "no address given"));
  char many[64 * 16 + 32] = "";
  for (int i = 0; i < 65; i++) {
    char one[16];
    snprintf(one, sizeof(one), "10.0.0.%d,", i);
    strcat(many, one);
  }
  ASSERT(parse_fails(many, "10.0.0.64", "too many entries"));
}

/* ---- the config key ------------------------------------------------------ */


#define LISTENER                                                               \
  "[listener:lb]\n"                                                            \
  "bind = 127.0.0.1:9000\n"                                                    \
  "secure = off\n"                                                             \
  "backend = 127.0.0.1:9001\n"

TEST(config_key) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(LISTENER "accept_proxy_from = 10.0.0.0/8, 2001:db8::7\n", &errs);
  ASSERT(cfg != NULL);
  ASSERT_EQ(errs.n, 0);
  if (cfg) {
    ASSERT_EQ(cfg->listeners[0]->accept_proxy, 1); /* turned on by the list */
    ASSERT_EQ(cfg->listeners[0]->accept_proxy_nets.n, 2);
    ASSERT_EQ(cfg->warnings.n, 0);
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
}

TEST(config_key_repeated) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(LISTENER "accept_proxy_from = 10.0.0.0/8\n"
                          "accept_proxy_from = 192.0.2.1,\n  2001:db8::/32\n", &errs);
  ASSERT(cfg != NULL);
  ASSERT_EQ(errs.n, 0);
  if (cfg) {
    ASSERT_EQ(cfg->listeners[0]->accept_proxy_nets.n, 3);
    ASSERT(tg_cidr_match(&cfg->listeners[0]->accept_proxy_nets, addr("2001:db8::5")));
    ASSERT(tg_cidr_match(&cfg->listeners[0]->accept_proxy_nets, addr("10.9.9.9")));
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
}

TEST(config_warns_accept_proxy_without_list) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(LISTENER "accept_proxy = on\n", &errs);
  ASSERT(cfg != NULL);
  if (cfg) {
    ASSERT_EQ(cfg->warnings.n, 1);
    char want[128];
    snprintf(want, sizeof(want), "%s:5: [listener:lb] accept_proxy: on without accept_proxy_from", unit_config_path);
    if (cfg->warnings.n) ASSERT_CONTAINS(cfg->warnings.msgs[0], want);
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
}

static int config_fails(const char *text, const char *want) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(text, &errs);
  int found = 0;
  for (size_t i = 0; i < errs.n; i++)
    if (strncmp(errs.msgs[i], unit_config_path, strlen(unit_config_path)) == 0 && strstr(errs.msgs[i], want)) found = 1;
  if (!found)
    for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "    got: %s\n", errs.msgs[i]);
  if (cfg) found = 0;
  tg_config_free(cfg);
  tg_errors_free(&errs);
  return found;
}

TEST(config_errors) {
  ASSERT(config_fails(LISTENER "accept_proxy_from = 10.0.0.1/8\n",
                      ":5: [listener:lb] accept_proxy_from: '10.0.0.1/8': address has bits set"));
  ASSERT(config_fails(LISTENER "accept_proxy_from = lb.internal\n",
                      ":5: [listener:lb] accept_proxy_from: 'lb.internal': not an IP address"));
  /* repeated lines append; an error names the line of the bad entry */
  ASSERT(config_fails(LISTENER "accept_proxy_from = 10.0.0.1\naccept_proxy_from = 10.0.0.2, ::1/200\n",
                      ":6: [listener:lb] accept_proxy_from: '::1/200': prefix length must be 0-128"));
  ASSERT(config_fails(LISTENER "accept_proxy = off\naccept_proxy_from = 10.0.0.1\n",
                      ":5: [listener:lb] accept_proxy: off contradicts accept_proxy_from"));
  ASSERT(config_fails("[listener:u]\nbind = 127.0.0.1:9000\ntransport = udp\nsecure = off\n"
                      "backend = 127.0.0.1:9001\naccept_proxy_from = 10.0.0.1\n",
                      ":6: [listener:u] accept_proxy_from: not supported with transport = udp"));
}

int main(void) {
  RUN(parse_and_match_v4);
  RUN(parse_and_match_v6_and_odd_prefixes);
  RUN(parse_errors);
  RUN(config_key);
  RUN(config_key_repeated);
  RUN(config_warns_accept_proxy_without_list);
  RUN(config_errors);
  return UNIT_DONE();
}
