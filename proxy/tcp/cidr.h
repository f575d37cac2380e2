/* Address lists for accept_proxy_from: IPv4 and IPv6 addresses and CIDR
 * blocks ("10.0.0.5", "10.0.0.0/8", "2001:db8::/32", "::1").  An IPv4
 * entry also matches the IPv4-mapped form (::ffff:a.b.c.d) of a peer on a
 * dual-stack socket. */
#ifndef TG_CIDR_H
#define TG_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define TG_CIDR_MAX 64

typedef struct {
  int family;        /* AF_INET or AF_INET6 */
  uint8_t addr[16];  /* network bytes (4 used for AF_INET) */
  int prefix;        /* 0-32 or 0-128 */
} tg_cidr_t;

typedef struct {
  tg_cidr_t e[TG_CIDR_MAX];
  size_t n;
} tg_cidr_list_t;

/* Parses a comma-separated list (blanks around entries allowed) into list.
 * Returns 0, or -1 with "'ENTRY': reason" in err. */
int tg_cidr_parse_list(const char *text, tg_cidr_list_t *list, char *err, size_t errsize);

/* 1 when the address (AF_INET or AF_INET6 sockaddr) is in the list. */
int tg_cidr_match(const tg_cidr_list_t *list, const struct sockaddr *sa);

#endif
