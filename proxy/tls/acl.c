#include "acl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static int parse_entry(const char *e, tg_acl_entry_t *out, char *err, size_t errsize) {
  static const struct {
    const char *prefix;
    tg_acl_kind_t kind;
  } kinds[] = {{"cn:", TG_ACL_CN},         {"san:dns:", TG_ACL_DNS},
               {"san:ip:", TG_ACL_IP},     {"san:uri:", TG_ACL_URI},
               {"sha256:", TG_ACL_SHA256}};
  memset(out, 0, sizeof(*out));
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    size_t pl = strlen(kinds[i].prefix);
    if (strncasecmp(e, kinds[i].prefix, pl) != 0) continue;
    const char *v = e + pl;
    if (!*v) {
      snprintf(err, errsize, "empty value");
      return -1;
    }
    if (strlen(v) >= sizeof(out->value)) {
      snprintf(err, errsize, "value too long");
      return -1;
    }
    out->kind = kinds[i].kind;
    snprintf(out->value, sizeof(out->value), "%s", v);
    if (out->kind == TG_ACL_IP) {
      if (inet_pton(AF_INET, v, out->bin) == 1) {
        out->binlen = 4;
      } else if (inet_pton(AF_INET6, v, out->bin) == 1) {
        out->binlen = 16;
      } else {
        snprintf(err, errsize, "not an IPv4 or IPv6 address");
        return -1;
      }
    } else if (out->kind == TG_ACL_SHA256) {
      if (tg_parse_hex(v, out->bin, 32) != 0) {
        snprintf(err, errsize, "not a SHA-256 fingerprint (64 hex digits, colons allowed)");
        return -1;
      }
      out->binlen = 32;
    }
    return 0;
  }
  snprintf(err, errsize, "unknown kind (want cn:, san:dns:, san:ip:, san:uri: or sha256:)");
  return -1;
}

int tg_acl_parse(const char *text, tg_acl_t *acl, char *err, size_t errsize) {
  memset(acl, 0, sizeof(*acl));
  const char *p = text;
  while (*p) {
    while (*p == ',' || isspace((unsigned char)*p)) p++;
    if (!*p) break;
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len > 0 && isspace((unsigned char)p[len - 1])) len--;
    char item[300];
    snprintf(item, sizeof(item), "%.*s", (int)len, p);
    char why[100] = "too many entries";
    if (acl->n == TG_ACL_MAX || parse_entry(item, &acl->entries[acl->n], why, sizeof(why)) != 0) {
      snprintf(err, errsize, "'%s': %s", item, why);
      return -1;
    }
    acl->n++;
    p += end ? (size_t)(end - p) : strlen(p);
  }
  return 0;
}

/* The stored name is the whole name: as long as the certificate says. */
static int whole(const char *name, size_t fulllen) {
  return fulllen == 0 || fulllen == strlen(name);
}

static int entry_matches(const tg_acl_entry_t *e, const tg_peer_id_t *id) {
  size_t i;
  if (id->bad && e->kind != TG_ACL_SHA256 && e->kind != TG_ACL_IP) return 0;
  switch (e->kind) {
  case TG_ACL_CN:
    return id->cn[0] && whole(id->cn, id->cnlen) && strcmp(e->value, id->cn) == 0;
  case TG_ACL_DNS:
    for (i = 0; i < id->ndns; i++)
      if (whole(id->dns[i], id->dnslen[i]) && strcasecmp(e->value, id->dns[i]) == 0)
        return 1;
    return 0;
  case TG_ACL_URI:
    for (i = 0; i < id->nuri; i++)
      if (whole(id->uri[i], id->urilen[i]) && strcmp(e->value, id->uri[i]) == 0) return 1;
    return 0;
  case TG_ACL_IP:
    for (i = 0; i < id->nip; i++)
      if (id->iplen[i] == e->binlen && memcmp(id->ip[i], e->bin, e->binlen) == 0)
        return 1;
    return 0;
  case TG_ACL_SHA256:
    return memcmp(id->sha256, e->bin, 32) == 0;
  }
  return 0;
}

int tg_acl_match(const tg_acl_t *acl, const tg_peer_id_t *id) {
  if (acl->n == 0) return 1;
  for (size_t i = 0; i < acl->n; i++)
    if (entry_matches(&acl->entries[i], id)) return 1;
  return 0;
}
