#include "cidr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_one(const char *item, tg_cidr_t *out, char *err, size_t errsize) {
  char addr[INET6_ADDRSTRLEN + 8];
  const char *slash = strchr(item, '/');
  size_t alen = slash ? (size_t)(slash - item) : strlen(item);
  if (alen == 0 || alen >= sizeof(addr)) {
    snprintf(err, errsize, "not an IP address or CIDR block");
    return -1;
  }
  memcpy(addr, item, alen);
  addr[alen] = '\0';
  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET, addr, out->addr) == 1) {
    out->family = AF_INET;
  } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
    out->family = AF_INET6;
  } else {
    snprintf(err, errsize, "not an IP address or CIDR block (names are not allowed)");
    return -1;
  }
  int max = out->family == AF_INET ? 32 : 128;
  out->prefix = max;
  if (slash) {
    const char *p = slash + 1;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (!isdigit((unsigned char)*p) || *end || errno || v < 0 || v > max) {
      snprintf(err, errsize, "prefix length must be 0-%d", max);
      return -1;
    }
    out->prefix = (int)v;
  }
  /* Host bits set ("10.0.0.1/8") is most likely a typo: refuse it. */
  for (int bit = out->prefix; bit < max; bit++)
    if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
      snprintf(err, errsize, "address has bits set beyond the prefix length");
      return -1;
    }
  return 0;
}

int tg_cidr_parse_list(const char *text, tg_cidr_list_t *list, char *err, size_t errsize) {
  list->n = 0;
  const char *p = text;
  while (*p) {
    while (*p == ',' || isspace((unsigned char)*p)) p++;
    if (!*p) break;
    size_t len = strcspn(p, ",");
    size_t trimmed = len;
    while (trimmed && isspace((unsigned char)p[trimmed - 1])) trimmed--;
    char item[128], why[100] = "not an IP address or CIDR block";
    int bad = trimmed >= sizeof(item);
    if (!bad) {
      memcpy(item, p, trimmed);
      item[trimmed] = '\0';
      if (list->n == TG_CIDR_MAX) {
        snprintf(why, sizeof(why), "too many entries (at most %d)", TG_CIDR_MAX);
        bad = 1;
      } else {
        bad = parse_one(item, &list->e[list->n], why, sizeof(why)) != 0;
      }
    }
    if (bad) {
      snprintf(err, errsize, "'%.*s': %s", (int)trimmed, p, why);
      return -1;
    }
    list->n++;
    p += len;
  }
  if (list->n == 0) {
    snprintf(err, errsize, "'%s': no address given", text);
    return -1;
  }
  return 0;
}

static int prefix_eq(const uint8_t *a, const uint8_t *b, int bits) {
  int whole = bits / 8, rest = bits % 8;
  if (memcmp(a, b, (size_t)whole) != 0) return 0;
  if (!rest) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

int tg_cidr_match(const tg_cidr_list_t *list, const struct sockaddr *sa) {
  uint8_t v4[4], v6[16];
  int has4 = 0, has6 = 0;
  if (sa->sa_family == AF_INET) {
    memcpy(v4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    has4 = 1;
  } else if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    memcpy(v6, a, 16);
    has6 = 1;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
      memcpy(v4, v6 + 12, 4);
      has4 = 1;
    }
  }
  for (size_t i = 0; i < list->n; i++) {
    const tg_cidr_t *e = &list->e[i];
    if (e->family == AF_INET && has4 && prefix_eq(v4, e->addr, e->prefix)) return 1;
    if (e->family == AF_INET6 && has6 && prefix_eq(v6, e->addr, e->prefix)) return 1;
  }
  return 0;
}
