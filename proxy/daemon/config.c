#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "pkcs11.h"
#include "sni.h"
#include "tls.h"

/* Debian's inih is built with INI_MAX_LINE=200: the reader hands it at most
 * this many characters of a line, so longer lines are rejected here instead
 * of being split. */
#define LINE_MAX_CHARS 198

void tg_errors_add(tg_errors_t *e, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  char **n = realloc(e->msgs, (e->n + 1) * sizeof(*n));
  if (!n) return;
  e->msgs = n;
  e->msgs[e->n] = strdup(buf);
  if (e->msgs[e->n]) e->n++;
}

void tg_errors_free(tg_errors_t *e) {
  for (size_t i = 0; i < e->n; i++) free(e->msgs[i]);
  free(e->msgs);
  e->msgs = NULL;
  e->n = 0;
}

/* ---- value parsers ---------------------------------------------------- */

int tg_parse_duration_ms(const char *s, uint64_t *out) {
  char *end;
  if (!isdigit((unsigned char)*s)) return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s) return -1;
  uint64_t mult;
  if (strcmp(end, "ms") == 0) mult = 1;
  else if (strcmp(end, "s") == 0) mult = 1000;
  else if (strcmp(end, "m") == 0) mult = 60000;
  else if (strcmp(end, "h") == 0) mult = 3600000;
  else return -1;
  if (v > UINT64_MAX / mult / 1000) return -1;
  *out = v * mult;
  return 0;
}

int tg_parse_bool(const char *s, int *out) {
  if (strcmp(s, "on") == 0) *out = 1;
  else if (strcmp(s, "off") == 0) *out = 0;
  else return -1;
  return 0;
}

static int parse_port(const char *s, uint16_t *port) {
  char *end;
  if (!isdigit((unsigned char)*s)) return -1;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < 1 || v > 65535) return -1;
  *port = (uint16_t)v;
  return 0;
}

int tg_parse_hostport(const char *s, tg_hostport_t *out, char *err, size_t errsize) {
  memset(out, 0, sizeof(*out));
  if (strlen(s) >= sizeof(out->text)) {
    snprintf(err, errsize, "address too long");
    return -1;
  }
  snprintf(out->text, sizeof(out->text), "%s", s);
  if (strncmp(s, "unix:", 5) == 0) {
    /* A Unix stream socket: bind = unix:/run/tlsgate.sock, backend = unix:... */
    struct sockaddr_un *u = (struct sockaddr_un *)&out->addr;
    size_t n = strlen(s + 5);
    if (n == 0) {
      snprintf(err, errsize, "unix: needs a socket path");
      return -1;
    }
    if (n >= sizeof(u->sun_path)) {
      snprintf(err, errsize, "unix socket path longer than 107 characters");
      return -1;
    }
    u->sun_family = AF_UNIX;
    memcpy(u->sun_path, s + 5, n + 1);
    out->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    out->is_literal = 1;
    snprintf(out->host, sizeof(out->host), "%s", s + 5);
    return 0;
  }
  const char *colon;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (!rb || rb[1] != ':') {
      snprintf(err, errsize, "want [v6addr]:port");
      return -1;
    }
    snprintf(out->host, sizeof(out->host), "%.*s", (int)(rb - s - 1), s + 1);
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || colon == s) {
      snprintf(err, errsize, "want host:port");
      return -1;
    }
    if (memchr(s, ':', (size_t)(colon - s))) {
      snprintf(err, errsize, "IPv6 addresses need brackets: [v6addr]:port");
      return -1;
    }
    snprintf(out->host, sizeof(out->host), "%.*s", (int)(colon - s), s);
  }
  if (parse_port(colon + 1, &out->port) != 0) {
    snprintf(err, errsize, "port must be 1-65535");
    return -1;
  }
  struct sockaddr_in *a4 = (struct sockaddr_in *)&out->addr;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->addr;
  if (inet_pton(AF_INET, out->host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(out->port);
    out->addrlen = sizeof(*a4);
    out->is_literal = 1;
  } else if (inet_pton(AF_INET6, out->host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(out->port);
    out->addrlen = sizeof(*a6);
    out->is_literal = 1;
  } else {
    for (const char *p = out->host; *p; p++) {
      if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.') {
        snprintf(err, errsize, "host is neither an IP address nor a DNS name");
        return -1;
      }
    }
    if (!out->host[0]) {
      snprintf(err, errsize, "empty host");
      return -1;
    }
  }
  return 0;
}

/* ---- schema ------------------------------------------------------------ */

typedef enum {
  T_STR,      /* char * (empty means unset) */
  T_SECRET,   /* char *, checked for env:/file:/pass: */
  T_BOOL,     /* int */
  T_DURATION, /* uint64_t ms */
  T_INT,      /* int within [min, max] */
  T_ENUM,     /* int index into names */
  T_HOSTPORT, /* tg_hostport_t */
  T_HOSTPORT_STR, /* char *, empty or a valid IP:port */
  T_BACKENDS, /* tg_hostport_t[] + count */
  T_ACL,      /* tg_acl_t */
  T_WORKERS,  /* "auto" or int */
  T_VERSION,  /* "1.2" | "1.3" -> 12 | 13 */
  T_SIZE,     /* int bytes within [min, max]; k and m suffixes */
  T_OCTAL,    /* int, octal digits within [min, max] (file modes) */
} key_type_t;

enum { F_REQUIRED = 1, F_NOT_YET = 2, F_UDP_ONLY = 4 };

typedef struct {
  const char *name;
  key_type_t type;
  size_t offset;
  const char *def;
  long min, max;
  const char *const *names; /* T_ENUM */
  int flags;
} key_spec_t;

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const transports[] = {"tcp", "udp", NULL};
static const char *const verify_modes[] = {"none", "optional", "require", NULL};
static const char *const proxy_modes[] = {"off", "v1", "v2", NULL};
static const char *const cookie_modes[] = {"auto", "on", "off", NULL};
static const char *const protocols[] = {"tcp", "http", NULL};
static const char *const check_modes[] = {"off", "connect", "tls", NULL};

#define G(field) offsetof(tg_config_t, field)
#define L(field) offsetof(tg_listener_conf_t, field)

static const key_spec_t global_keys[] = {
    {"workers", T_WORKERS, G(workers), "auto", 1, 256, NULL, 0},
    {"log_level", T_ENUM, G(log_level), "info", 0, 0, log_levels, 0},
    {"log_format", T_ENUM, G(log_format), "text", 0, 0, log_formats, 0},
    {"metrics", T_HOSTPORT_STR, G(metrics), "", 0, 0, NULL, 0},
    {"user", T_STR, G(user), "", 0, 0, NULL, 0},
    {"pid_file", T_STR, G(pid_file), "", 0, 0, NULL, 0},
    {"drain_timeout", T_DURATION, G(drain_timeout_ms), "30s", 0, 0, NULL, 0},
    {"max_connections", T_INT, G(max_connections), "0", 0, 10000000, NULL, 0},
    {"watch_files", T_BOOL, G(watch_files), "on", 0, 0, NULL, 0},
};

static const key_spec_t listener_keys[] = {
    {"bind", T_HOSTPORT, L(bind), NULL, 0, 0, NULL, F_REQUIRED},
    {"transport", T_ENUM, L(transport), "tcp", 0, 0, transports, 0},
    {"secure", T_BOOL, L(secure), "on", 0, 0, NULL, 0},
    {"pfx", T_STR, L(pfx), "", 0, 0, NULL, 0},
    {"pfx_password", T_SECRET, L(pfx_password), "", 0, 0, NULL, 0},
    {"cert", T_STR, L(cert), "", 0, 0, NULL, 0},
    {"key", T_STR, L(key), "", 0, 0, NULL, 0},
    {"key_password", T_SECRET, L(key_password), "", 0, 0, NULL, 0},
    {"verify_client", T_ENUM, L(verify_client), "none", 0, 0, verify_modes, 0},
    {"client_ca", T_STR, L(client_ca), "", 0, 0, NULL, 0},
    {"crl", T_STR, L(crl), "", 0, 0, NULL, 0},
    {"allow_clients", T_ACL, L(allow_clients), "", 0, 0, NULL, 0},
    {"psk", T_SECRET, L(psk), "", 0, 0, NULL, 0},
    {"psk_identity_hint", T_STR, L(psk_identity_hint), "", 0, 0, NULL, 0},
    {"min_version", T_VERSION, L(min_version), "1.2", 0, 0, NULL, 0},
    {"ciphers", T_STR, L(ciphers), "", 0, 0, NULL, 0},
    {"alpn", T_STR, L(alpn), "", 0, 0, NULL, 0},
    {"ticket_key_file", T_STR, L(ticket_key_file), "", 0, 0, NULL, 0},
    {"ocsp", T_STR, L(ocsp), "", 0, 0, NULL, 0},
    {"backend", T_BACKENDS, L(backends), NULL, 0, 0, NULL, F_REQUIRED},
    {"backend_secure", T_BOOL, L(backend_secure), "off", 0, 0, NULL, 0},
    {"backend_pfx", T_STR, L(backend_pfx), "", 0, 0, NULL, 0},
    {"backend_pfx_password", T_SECRET, L(backend_pfx_password), "", 0, 0, NULL, 0},
    {"backend_ca", T_STR, L(backend_ca), "", 0, 0, NULL, 0},
    {"backend_verify", T_BOOL, L(backend_verify), "on", 0, 0, NULL, 0},
    {"backend_pin", T_STR, L(backend_pin), "", 0, 0, NULL, 0},
    {"backend_sni", T_STR, L(backend_sni), "", 0, 0, NULL, 0},
    {"proxy_protocol", T_ENUM, L(proxy_protocol), "off", 0, 0, proxy_modes, 0},
    {"accept_proxy", T_BOOL, L(accept_proxy), "off", 0, 0, NULL, 0},
    {"connect_timeout", T_DURATION, L(connect_timeout_ms), "5s", 0, 0, NULL, 0},
    {"handshake_timeout", T_DURATION, L(handshake_timeout_ms), "10s", 0, 0, NULL, 0},
    {"idle_timeout", T_DURATION, L(idle_timeout_ms), "5m", 0, 0, NULL, 0},
    {"dtls_cookie", T_ENUM, L(dtls_cookie), "auto", 0, 0, cookie_modes, F_UDP_ONLY},
    {"dtls_mtu", T_INT, L(dtls_mtu), "1400", 256, 65535, NULL, F_UDP_ONLY},
    {"session_timeout", T_DURATION, L(session_timeout_ms), "2m", 0, 0, NULL, F_UDP_ONLY},
    /* Second round.  F_NOT_YET keys are refused when set until built. */
    {"backend_ciphers", T_STR, L(backend_ciphers), "", 0, 0, NULL, 0},
    {"backend_min_version", T_VERSION, L(backend_min_version), "1.2", 0, 0, NULL, 0},
    {"accept_proxy_from", T_STR, L(accept_proxy_from), "", 0, 0, NULL, 0},
    {"backend_psk", T_SECRET, L(backend_psk), "", 0, 0, NULL, 0},
    {"backend_cert", T_STR, L(backend_cert), "", 0, 0, NULL, 0},
    {"backend_key", T_STR, L(backend_key), "", 0, 0, NULL, 0},
    {"backend_key_password", T_SECRET, L(backend_key_password), "", 0, 0, NULL, 0},
    {"dtls_cookie_secret_file", T_STR, L(dtls_cookie_secret_file), "", 0, 0, NULL, F_UDP_ONLY},
    {"max_half_open", T_INT, L(max_half_open), "1024", 1, 1000000, NULL, F_UDP_ONLY},
    {"max_half_open_per_source", T_INT, L(max_half_open_per_source), "32", 1, 1000000, NULL, F_UDP_ONLY},
    {"max_associations_per_source", T_INT, L(max_associations_per_source), "0", 0, 1000000, NULL, F_UDP_ONLY},
    {"protocol", T_ENUM, L(protocol), "tcp", 0, 0, protocols, 0},
    {"allow_origins", T_STR, L(allow_origins), "", 0, 0, NULL, 0},
    {"allow_hosts", T_STR, L(allow_hosts), "", 0, 0, NULL, 0},
    {"forward_headers", T_BOOL, L(forward_headers), "off", 0, 0, NULL, 0},
    {"max_request_head", T_SIZE, L(max_request_head), "16k", 1024, 1048576, NULL, 0},
    {"unsafe_listen", T_BOOL, L(unsafe_listen), "off", 0, 0, NULL, 0},
    {"server_name", T_STR, L(server_name), "", 0, 0, NULL, 0},
    {"strict_sni", T_BOOL, L(strict_sni), "off", 0, 0, NULL, 0},
    {"pkcs11_module", T_STR, L(pkcs11_module), "", 0, 0, NULL, 0},
    {"pkcs11_pin", T_SECRET, L(pkcs11_pin), "", 0, 0, NULL, 0},
    {"backend_pkcs11_pin", T_SECRET, L(backend_pkcs11_pin), "", 0, 0, NULL, 0},
    {"backend_check", T_ENUM, L(backend_check), "off", 0, 0, check_modes, 0},
    {"backend_check_interval", T_DURATION, L(backend_check_interval_ms), "5s", 0, 0, NULL, 0},
    {"keylog_file", T_STR, L(keylog_file), "", 0, 0, NULL, 0},
    {"unix_mode", T_OCTAL, L(unix_mode), "0660", 0, 07777, NULL, 0},
};

#define NGLOBAL (sizeof(global_keys) / sizeof(global_keys[0]))
#define NLISTENER (sizeof(listener_keys) / sizeof(listener_keys[0]))

_Static_assert(NLISTENER <= sizeof(((tg_listener_conf_t *)0)->key_line) / sizeof(int),
               "key_line[] too small");
_Static_assert(NGLOBAL <= 16, "global_key_line[] too small");

static int find_key(const key_spec_t *keys, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(keys[i].name, name) == 0) return (int)i;
  return -1;
}

/* Stores value into base+spec->offset.  Returns 0, or -1 with a reason. */
static int set_value(const key_spec_t *spec, void *base, const char *value,
                     char *why, size_t whysize) {
  char *field = (char *)base + spec->offset;
  char reason[300] = "";
  switch (spec->type) {
  case T_HOSTPORT_STR:
    if (*value) {
      tg_hostport_t hp;
      if (tg_parse_hostport(value, &hp, reason, sizeof(reason)) != 0 || !hp.is_literal) {
        snprintf(why, whysize, "'%s': %s", value, reason[0] ? reason : "needs an IP address");
        return -1;
      }
    }
    /* fall through */
  case T_SECRET:
    if (spec->type == T_SECRET && *value && strncmp(value, "env:", 4) && strncmp(value, "file:", 5) &&
        strncmp(value, "pass:", 5)) {
      snprintf(why, whysize, "want env:NAME, file:PATH or pass:TEXT");
      return -1;
    }
    /* fall through */
  case T_STR: {
    char **s = (char **)field;
    free(*s);
    *s = strdup(value);
    return *s ? 0 : -1;
  }
  case T_BOOL:
    if (tg_parse_bool(value, (int *)field) == 0) return 0;
    snprintf(why, whysize, "'%s' is not a boolean (want on or off)", value);
    return -1;
  case T_DURATION:
    if (tg_parse_duration_ms(value, (uint64_t *)field) == 0) return 0;
    snprintf(why, whysize,
             "'%s' is not a duration (want a number with ms, s, m or h)", value);
    return -1;
  case T_WORKERS:
    if (strcmp(value, "auto") == 0) {
      long n = sysconf(_SC_NPROCESSORS_ONLN);
      *(int *)field = n < 1 ? 1 : (n > spec->max ? (int)spec->max : (int)n);
      return 0;
    }
    /* fall through */
  case T_INT: {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (!*value || *end || errno || v < spec->min || v > spec->max) {
      snprintf(why, whysize, "'%s' is not a whole number from %ld to %ld%s",
               value, spec->min, spec->max,
               spec->type == T_WORKERS ? " or auto" : "");
      return -1;
    }
    *(int *)field = (int)v;
    return 0;
  }
  case T_ENUM: {
    size_t len = 0;
    for (int i = 0; spec->names[i]; i++) {
      if (strcmp(spec->names[i], value) == 0) {
        *(int *)field = i;
        return 0;
      }
    }
    len = (size_t)snprintf(why, whysize, "'%s' is not one of:", value);
    for (int i = 0; spec->names[i] && len < whysize; i++)
      len += (size_t)snprintf(why + len, whysize - len, " %s", spec->names[i]);
    return -1;
  }
  case T_VERSION:
    if (strcmp(value, "1.2") == 0) *(int *)field = 12;
    else if (strcmp(value, "1.3") == 0) *(int *)field = 13;
    else {
      snprintf(why, whysize, "'%s' is not a TLS version (want 1.2 or 1.3)", value);
      return -1;
    }
    return 0;
  case T_SIZE: {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    long mult = 1;
    if (*end == 'k' || *end == 'K') mult = 1024, end++;
    else if (*end == 'm' || *end == 'M') mult = 1024 * 1024, end++;
    if (!isdigit((unsigned char)*value) || *end || errno || v > spec->max / mult ||
        v * mult < spec->min || v * mult > spec->max) {
      snprintf(why, whysize, "'%s' is not a size from %ld to %ld bytes (k and m "
               "suffixes allowed)", value, spec->min, spec->max);
      return -1;
    }
    *(int *)field = (int)(v * mult);
    return 0;
  }
  case T_OCTAL: {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 8);
    if (!isdigit((unsigned char)*value) || *end || errno || v < spec->min || v > spec->max) {
      snprintf(why, whysize, "'%s' is not an octal file mode (e.g. 0660)", value);
      return -1;
    }
    *(int *)field = (int)v;
    return 0;
  }
  case T_HOSTPORT:
    if (tg_parse_hostport(value, (tg_hostport_t *)field, reason, sizeof(reason)) == 0) return 0;
    snprintf(why, whysize, "'%s': %s", value, reason);
    return -1;
  case T_BACKENDS: { /* appends: the key may be repeated */
    tg_listener_conf_t *l = base;
    size_t before = l->nbackends;
    const char *p = value;
    while (*p) {
      while (*p == ',' || isspace((unsigned char)*p)) p++;
      if (!*p) break;
      size_t len = strcspn(p, ",");
      while (len && isspace((unsigned char)p[len - 1])) len--;
      char item[300];
      snprintf(item, sizeof(item), "%.*s", (int)len, p);
      if (l->nbackends == TG_MAX_BACKENDS) {
        snprintf(why, whysize, "more than %d backends", TG_MAX_BACKENDS);
        return -1;
      }
      if (tg_parse_hostport(item, &l->backends[l->nbackends], reason, sizeof(reason)) != 0) {
        snprintf(why, whysize, "'%s': %s", item, reason);
        return -1;
      }
      l->nbackends++;
      p += strcspn(p, ",");
    }
    if (l->nbackends == before) {
      snprintf(why, whysize, "no backend address given");
      return -1;
    }
    return 0;
  }
  case T_ACL: { /* appends: the key may be repeated */
    if (!value[strspn(value, ", \t")]) return 0; /* no entries: nothing to add */
    tg_acl_t *acl = (tg_acl_t *)field, *more = malloc(sizeof(*more));
    if (!more) {
      snprintf(why, whysize, "out of memory");
      return -1;
    }
    int rc = -1;
    if (tg_acl_parse(value, more, why, whysize) != 0) {
      /* why says which entry and what is wrong with it */
    } else if (acl->n + more->n > TG_ACL_MAX) {
      snprintf(why, whysize, "more than %d entries in all", TG_ACL_MAX);
    } else {
      memcpy(&acl->entries[acl->n], more->entries, more->n * sizeof(more->entries[0]));
      acl->n += more->n;
      rc = 0;
    }
    free(more);
    return rc;
  }
  }
  return -1;
}

/* ---- the reader and the inih handler ----------------------------------- */

typedef struct {
  const char *path;
  char *text; /* the whole file */
  size_t pos, len;
  int lineno;         /* line last handed to inih */
  int section_line;   /* line of the last [section] header */
  tg_config_t *cfg;
  tg_listener_conf_t *cur; /* current listener, NULL in [global] */
  int in_global;
  int bad_section;    /* keys of an unknown section are not reported again */
  int global_seen;
  tg_errors_t *errs;
  int key_before;     /* the line before was a key line or its continuation */
  int is_cont;        /* the line handed to inih continues the previous value */
  int errline;        /* when set, errors name this line instead of lineno */
  /* The key being read: continuation lines append to its value; it is
   * stored when the next key, a section header or the end comes. */
  struct {
    int active, line;
    char section[LINE_MAX_CHARS + 1], name[LINE_MAX_CHARS + 1];
    char *value;
    size_t len, cap;
  } pend;
} parse_state_t;

static void flush_pending(parse_state_t *st);

static void perr(parse_state_t *st, const char *section, const char *key,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void perr(parse_state_t *st, const char *section, const char *key,
                 const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  int line = st->errline ? st->errline : st->lineno;
  if (key)
    tg_errors_add(st->errs, "%s:%d: [%s] %s: %s", st->path, line, section, key, msg);
  else
    tg_errors_add(st->errs, "%s:%d: %s", st->path, line, msg);
}

static int valid_name(const char *s) {
  if (!*s || strlen(s) >= TG_NAME_MAX) return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
      return 0;
  return 1;
}

static void listener_defaults(tg_listener_conf_t *l) {
  char why[256];
  for (size_t i = 0; i < NLISTENER; i++)
    if (listener_keys[i].def)
      set_value(&listener_keys[i], l, listener_keys[i].def, why, sizeof(why));
}

/* Called by the reader for each [section] header, so that sections without
 * keys are still known and carry the line of their header. */
static void begin_section(parse_state_t *st, const char *name) {
  flush_pending(st);
  st->cur = NULL;
  st->in_global = 0;
  st->bad_section = 0;
  st->section_line = st->lineno;
  if (strcmp(name, "global") == 0) {
    if (st->global_seen) {
      perr(st, NULL, NULL, "[global] appears twice");
      st->bad_section = 1;
      return;
    }
    st->global_seen = 1;
    st->in_global = 1;
    return;
  }
  if (strncmp(name, "listener:", 9) != 0) {
    perr(st, NULL, NULL,
         "unknown section [%s] (want [global] or [listener:NAME])", name);
    st->bad_section = 1;
    return;
  }
  const char *lname = name + 9;
  if (!valid_name(lname)) {
    perr(st, NULL, NULL,
         "[%s]: a listener name is 1-63 letters, digits, '_', '-' or '.'", name);
    st->bad_section = 1;
    return;
  }
  for (size_t i = 0; i < st->cfg->nlisteners; i++) {
    if (strcmp(st->cfg->listeners[i]->name, lname) == 0) {
      perr(st, NULL, NULL, "[%s] appears twice (first at line %d)", name,
           st->cfg->listeners[i]->line);
      st->bad_section = 1;
      return;
    }
  }
  if (st->cfg->nlisteners == TG_MAX_LISTENERS) {
    perr(st, NULL, NULL, "more than %d listeners", TG_MAX_LISTENERS);
    st->bad_section = 1;
    return;
  }
  tg_listener_conf_t *l = calloc(1, sizeof(*l));
  if (!l) {
    perr(st, NULL, NULL, "out of memory");
    st->bad_section = 1;
    return;
  }
  snprintf(l->name, sizeof(l->name), "%s", lname);
  l->file = st->cfg->path;
  l->line = st->lineno;
  listener_defaults(l);
  st->cfg->listeners[st->cfg->nlisteners++] = l;
  st->cur = l;
}

/* Hands inih one line at a time, numbering them, rejecting over-long lines
 * and lines inih could not parse, and spotting sections.  An indented line
 * right after a key line (or after its continuation) continues that key's
 * value: it goes to inih with one leading blank, which makes inih call the
 * handler again for the same key.  Other indented lines lose their blanks. */
static char *reader(char *str, int num, void *stream) {
  parse_state_t *st = stream;
  if (st->pos >= st->len) return NULL;
  const char *line = st->text + st->pos;
  const char *nl = memchr(line, '\n', st->len - st->pos);
  size_t len = nl ? (size_t)(nl - line) : st->len - st->pos;
  st->pos += len + (nl ? 1 : 0);
  st->lineno++;
  if (len && line[len - 1] == '\r') len--;
  int indented = len && (*line == ' ' || *line == '\t');
  while (len && (*line == ' ' || *line == '\t')) {
    line++;
    len--;
  }
  int cont = indented && st->key_before && len && *line != ';' && *line != '#';
  st->is_cont = cont;
  st->key_before = 0;
  str[0] = '\0';
  if (len + (size_t)cont > LINE_MAX_CHARS || (int)(len + (size_t)cont) >= num) {
    perr(st, NULL, NULL, "line too long (%zu characters, at most %d)", len,
         LINE_MAX_CHARS - cont);
    return str;
  }
  if (memchr(line, '\0', len)) {
    perr(st, NULL, NULL, "NUL byte in line");
    return str;
  }
  if (cont) {
    /* inih keeps ';' comments in continuations: cut them here, as it does
     * on key lines (a ';' after a blank starts a comment). */
    for (size_t i = 1; i < len; i++)
      if (line[i] == ';' && (line[i - 1] == ' ' || line[i - 1] == '\t')) {
        len = i;
        break;
      }
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
    str[0] = ' ';
    memcpy(str + 1, line, len);
    str[len + 1] = '\0';
    st->key_before = 1;
    return str;
  }
  memcpy(str, line, len);
  str[len] = '\0';
  if (len == 0 || str[0] == ';' || str[0] == '#') return str;
  if (str[0] == '[') {
    char *rb = strchr(str, ']');
    if (!rb) {
      perr(st, NULL, NULL, "section header without ']'");
      str[0] = '\0';
      return str;
    }
    char name[LINE_MAX_CHARS + 1];
    snprintf(name, sizeof(name), "%.*s", (int)(rb - str - 1), str + 1);
    begin_section(st, name);
    return str;
  }
  if (!strchr(str, '=')) {
    perr(st, NULL, NULL, "expected 'key = value', '[section]' or a comment");
    str[0] = '\0';
    return str;
  }
  st->key_before = 1;
  return str;
}

/* Keys that hold lists: each line of such a key appends its items. */
static const char *const list_keys[] = {
    "backend", "pfx", "allow_clients", "allow_origins", "allow_hosts",
    "server_name", "backend_pin", "accept_proxy_from", NULL};

static int is_list_key(const char *name) {
  for (int i = 0; list_keys[i]; i++)
    if (strcmp(list_keys[i], name) == 0) return 1;
  return 0;
}

/* Comma-separated items in s (empty ones not counted). */
static size_t count_items(const char *s) {
  size_t n = 0;
  while (*s) {
    while (*s == ',' || isspace((unsigned char)*s)) s++;
    if (!*s) break;
    n++;
    s += strcspn(s, ",");
  }
  return n;
}

static size_t list_len(const key_spec_t *spec, const void *base) {
  const char *field = (const char *)base + spec->offset;
  switch (spec->type) {
  case T_BACKENDS: return ((const tg_listener_conf_t *)base)->nbackends;
  case T_ACL: return ((const tg_acl_t *)field)->n;
  default: return count_items(*(char *const *)field ? *(char *const *)field : "");
  }
}

static void note_item_line(tg_listener_conf_t *l, int key, size_t first, int line) {
  struct tg_item_line *n = realloc(l->item_lines, (l->nitem_lines + 1) * sizeof(*n));
  if (!n) return;
  l->item_lines = n;
  n[l->nitem_lines++] = (struct tg_item_line){key, (int)first, line};
}

/* Stores one key's whole value (all its continuation lines joined). */
static void store_key(parse_state_t *st, const char *section, const char *name,
                      const char *value) {
  if (st->bad_section) return;
  if (!st->in_global && !st->cur) {
    perr(st, NULL, NULL, "key '%s' outside any section", name);
    return;
  }
  const key_spec_t *keys = st->in_global ? global_keys : listener_keys;
  size_t nkeys = st->in_global ? NGLOBAL : NLISTENER;
  int *lines = st->in_global ? st->cfg->global_key_line : st->cur->key_line;
  void *base = st->in_global ? (void *)st->cfg : (void *)st->cur;
  int line = st->errline ? st->errline : st->lineno;

  int idx = find_key(keys, nkeys, name);
  if (idx < 0) {
    perr(st, section, name, "unknown key");
    return;
  }
  const key_spec_t *spec = &keys[idx];
  int list = !st->in_global && is_list_key(name);
  if (lines[idx] && !list) {
    perr(st, section, name, "set twice (first at line %d)", lines[idx]);
    return;
  }
  int again = lines[idx] != 0;
  if (!again) lines[idx] = line;
  if (spec->flags & F_NOT_YET) {
    if (*value && strcmp(value, "off") != 0)
      perr(st, section, name, "not supported by this version of tlsgate yet");
    return;
  }
  char why[600];
  size_t first = list ? list_len(spec, base) : 0;
  int rc;
  if (list && again && spec->type == T_STR) {
    /* A repeated string list: old, new */
    char **field = (char **)((char *)base + spec->offset);
    size_t ol = strlen(*field), vl = strlen(value);
    char *joined = malloc(ol + vl + 3);
    rc = joined ? 0 : -1;
    if (joined) {
      snprintf(joined, ol + vl + 3, "%s%s%s", *field, ol && vl ? ", " : "", value);
      free(*field);
      *field = joined;
    } else {
      snprintf(why, sizeof(why), "out of memory");
    }
  } else {
    rc = set_value(spec, base, value, why, sizeof(why));
  }
  if (rc != 0) perr(st, section, name, "%s", why);
  else if (list) note_item_line(st->cur, idx, first, line);
}

static void drop_pending(parse_state_t *st) {
  tg_secret_free(st->pend.value, st->pend.cap);
  memset(&st->pend, 0, sizeof(st->pend));
}

static void flush_pending(parse_state_t *st) {
  if (!st->pend.active) return;
  st->errline = st->pend.line;
  store_key(st, st->pend.section, st->pend.name, st->pend.value);
  st->errline = 0;
  drop_pending(st);
}

/* Values are limited so that a runaway continuation cannot eat memory. */
#define VALUE_MAX (64 * 1024)

static int pend_append(parse_state_t *st, const char *v) {
  size_t vl = strlen(v);
  if (st->pend.len + vl >= VALUE_MAX) return -1;
  if (st->pend.len + vl + 1 > st->pend.cap) {
    size_t cap = st->pend.cap ? st->pend.cap : 256;
    while (cap < st->pend.len + vl + 1) cap *= 2;
    char *n = malloc(cap);
    if (!n) return -1;
    /* Not realloc: the old copy may hold a secret and must be wiped. */
    if (st->pend.value) memcpy(n, st->pend.value, st->pend.len);
    tg_secret_free(st->pend.value, st->pend.cap);
    st->pend.value = n;
    st->pend.cap = cap;
  }
  memcpy(st->pend.value + st->pend.len, v, vl + 1);
  st->pend.len += vl;
  return 0;
}

static int handler(void *user, const char *section, const char *name,
                   const char *value) {
  parse_state_t *st = user;
  if (st->is_cont) {
    /* A continuation: joined to the value without a separator. */
    if (st->pend.active && pend_append(st, value) != 0) {
      perr(st, section, name, "value longer than %d characters", VALUE_MAX);
      drop_pending(st);
    }
    return 1;
  }
  flush_pending(st);
  if (st->bad_section) return 1;
  st->pend.active = 1;
  st->pend.line = st->lineno;
  snprintf(st->pend.section, sizeof(st->pend.section), "%s", section);
  snprintf(st->pend.name, sizeof(st->pend.name), "%s", name);
  if (pend_append(st, value) != 0) {
    perr(st, section, name, "out of memory");
    drop_pending(st);
  }
  return 1;
}

/* ---- validation across keys -------------------------------------------- */

const char *tg_config_where(const tg_listener_conf_t *l, const char *key,
                            char *buf, size_t size) {
  int idx = find_key(listener_keys, NLISTENER, key);
  int line = (idx >= 0 && l->key_line[idx]) ? l->key_line[idx] : l->line;
  snprintf(buf, size, "%s:%d: [listener:%s] %s", l->file, line, l->name, key);
  return buf;
}

const char *tg_config_item_where(const tg_listener_conf_t *l, const char *key,
                                 size_t item, char *buf, size_t size) {
  int idx = find_key(listener_keys, NLISTENER, key);
  int line = (idx >= 0 && l->key_line[idx]) ? l->key_line[idx] : l->line;
  for (size_t i = 0; i < l->nitem_lines; i++)
    if (l->item_lines[i].key == idx && (size_t)l->item_lines[i].first_item <= item)
      line = l->item_lines[i].line;
  snprintf(buf, size, "%s:%d: [listener:%s] %s", l->file, line, l->name, key);
  return buf;
}

void tg_config_errors_for_item(const tg_listener_conf_t *l, const char *key,
                               size_t item, tg_errors_t *errs, size_t from) {
  char first[400], mine[400];
  tg_config_where(l, key, first, sizeof(first));
  tg_config_item_where(l, key, item, mine, sizeof(mine));
  if (strcmp(first, mine) == 0) return;
  size_t fl = strlen(first);
  for (size_t i = from; i < errs->n; i++) {
    if (strncmp(errs->msgs[i], first, fl) != 0) continue;
    size_t ml = strlen(mine), rest = strlen(errs->msgs[i] + fl);
    char *m = malloc(ml + rest + 1);
    if (!m) continue;
    memcpy(m, mine, ml);
    memcpy(m + ml, errs->msgs[i] + fl, rest + 1);
    free(errs->msgs[i]);
    errs->msgs[i] = m;
  }
}

static int is_set(const tg_listener_conf_t *l, const char *key) {
  int idx = find_key(listener_keys, NLISTENER, key);
  return idx >= 0 && l->key_line[idx] != 0;
}

#define LERR(l, key, ...)                                                      \
  do {                                                                         \
    char w_[400], m_[600];                                                     \
    snprintf(m_, sizeof(m_), __VA_ARGS__);                                     \
    tg_errors_add(errs, "%s: %s", tg_config_where(l, key, w_, sizeof(w_)), m_); \
  } while (0)

/* A key that would do nothing is a warning, not an error, so that a side
 * can be switched between TLS and plaintext by changing one line. */
#define LWARN(l, key, ...)                                                     \
  do {                                                                         \
    char w_[400], m_[600];                                                     \
    snprintf(m_, sizeof(m_), __VA_ARGS__);                                     \
    tg_errors_add(warns, "%s: %s", tg_config_where(l, key, w_, sizeof(w_)), m_); \
  } while (0)

/* protocol = http and the guard of a listener that lends the backend
 * client identity to whoever connects (http.c, README "protocol = http"). */
static void validate_http(tg_listener_conf_t *l, tg_errors_t *errs, tg_errors_t *warns) {
  int lends = tg_http_lends_identity(l);
  if (lends && l->bind.addrlen && !tg_http_loopback(l) && !l->unsafe_listen)
    LERR(l, "bind", "%s is not a loopback address, and this plaintext listener presents "
         "the backend client identity: anyone who can reach it would use that identity. "
         "Bind 127.0.0.1 or [::1], set secure = on with verify_client = require, or set "
         "unsafe_listen = on", l->bind.text);
  if (is_set(l, "unsafe_listen") && l->unsafe_listen && !(lends && !tg_http_loopback(l)))
    LWARN(l, "unsafe_listen", "has no effect: this listener is not a non-loopback "
          "plaintext listener that presents a backend client identity");
  if (lends && tg_http_loopback(l) && !is_set(l, "protocol"))
    l->protocol = TG_PROTOCOL_HTTP; /* safe default: the guard is on */
  if (l->protocol == TG_PROTOCOL_HTTP && l->transport != TG_TRANSPORT_TCP)
    LERR(l, "protocol", "http needs transport = tcp");
  if (l->protocol == TG_PROTOCOL_HTTP && l->alpn[0] && strstr(l->alpn, "h2"))
    LERR(l, "alpn", "'%s': protocol = http relays HTTP/1.x only; offer http/1.1", l->alpn);
  if (l->protocol != TG_PROTOCOL_HTTP) {
    static const char *const http_only[] = {"allow_origins", "allow_hosts",
                                            "forward_headers", "max_request_head"};
    for (size_t i = 0; i < sizeof(http_only) / sizeof(http_only[0]); i++)
      if (is_set(l, http_only[i]))
        LWARN(l, http_only[i], "has no effect with protocol = tcp");
    return;
  }
  char why[400];
  if (tg_http_check_list(l->allow_origins, 1, why, sizeof(why)) != 0)
    LERR(l, "allow_origins", "%s", why);
  else if (tg_http_list_has_star(l->allow_origins))
    LWARN(l, "allow_origins", "* lets every web page the user opens use this listener%s",
          lends ? " and the backend client identity" : "");
  if (tg_http_check_list(l->allow_hosts, 0, why, sizeof(why)) != 0)
    LERR(l, "allow_hosts", "%s", why);
}

/* accept_proxy_from: the peers that must send a PROXY header; anyone else
 * is refused.  Setting it turns accept_proxy on. */
static void validate_accept_proxy(tg_listener_conf_t *l, tg_errors_t *errs,
                                  tg_errors_t *warns) {
  if (l->accept_proxy_from[0] && l->transport == TG_TRANSPORT_UDP) {
    LERR(l, "accept_proxy_from", "not supported with transport = udp");
  } else if (l->accept_proxy_from[0]) {
    char why[300];
    if (tg_cidr_parse_list(l->accept_proxy_from, &l->accept_proxy_nets, why, sizeof(why)) != 0) {
      /* the entries before the bad one parsed: its index names its line */
      char w[400];
      tg_errors_add(errs, "%s: %s",
                    tg_config_item_where(l, "accept_proxy_from", l->accept_proxy_nets.n,
                                         w, sizeof(w)),
                    why);
    }
    if (is_set(l, "accept_proxy") && !l->accept_proxy)
      LERR(l, "accept_proxy", "off contradicts accept_proxy_from (which turns it on)");
    l->accept_proxy = 1;
  } else if (l->accept_proxy && l->transport != TG_TRANSPORT_UDP) {
    LWARN(l, "accept_proxy", "on without accept_proxy_from: any peer may send a "
          "PROXY header and so claim any client address; list the load balancers "
          "in accept_proxy_from");
  }
}

static void validate_listener(tg_listener_conf_t *l, tg_errors_t *errs,
                              tg_errors_t *warns) {
  validate_accept_proxy(l, errs, warns);
  for (size_t i = 0; i < NLISTENER; i++)
    if ((listener_keys[i].flags & F_REQUIRED) && !l->key_line[i])
      LERR(l, listener_keys[i].name, "required key missing");
  if (l->transport == TG_TRANSPORT_UDP) {
    if (l->secure && l->min_version == 13)
      LERR(l, "min_version", "1.3: DTLS 1.3 is not supported; udp listeners "
           "speak DTLS 1.2");
    if (l->proxy_protocol != TG_PROXY_OFF)
      LERR(l, "proxy_protocol", "not supported with transport = udp");
    if (l->accept_proxy)
      LERR(l, "accept_proxy", "not supported with transport = udp");
    if (is_set(l, "idle_timeout"))
      LWARN(l, "idle_timeout", "has no effect with transport = udp (use "
           "session_timeout)");
    if (l->session_timeout_ms == 0) LERR(l, "session_timeout", "must be > 0");
    if (!l->secure && is_set(l, "dtls_cookie"))
      LWARN(l, "dtls_cookie", "has no effect with secure = off");
    if (is_set(l, "dtls_cookie_secret_file") &&
        (!l->secure || l->dtls_cookie == TG_COOKIE_OFF))
      LWARN(l, "dtls_cookie_secret_file", "has no effect with %s",
            l->secure ? "dtls_cookie = off" : "secure = off");
  } else if (l->psk[0]) {
    LERR(l, "psk", "pre-shared keys are supported with transport = udp "
         "(DTLS) only in this version of tlsgate");
  }
  for (size_t i = 0; i < NLISTENER; i++)
    if ((listener_keys[i].flags & F_UDP_ONLY) && l->key_line[i] &&
        l->transport != TG_TRANSPORT_UDP)
      LERR(l, listener_keys[i].name, "only applies to transport = udp");
  if (l->bind.addr.ss_family == AF_UNIX && l->transport != TG_TRANSPORT_TCP)
    LERR(l, "bind", "unix sockets are for transport = tcp only");
  if (is_set(l, "unix_mode") && l->bind.addr.ss_family != AF_UNIX)
    LWARN(l, "unix_mode", "has no effect unless bind = unix:PATH");
  for (size_t i = 0; i < l->nbackends; i++) {
    if (l->backends[i].addr.ss_family != AF_UNIX) continue;
    if (l->transport != TG_TRANSPORT_TCP)
      LERR(l, "backend", "%s: unix sockets are for transport = tcp only",
           l->backends[i].text);
    else if (l->backend_secure && l->backend_verify && !l->backend_sni[0])
      LERR(l, "backend", "%s: TLS to a unix socket backend needs backend_sni (the "
           "name its certificate must carry) or backend_verify = off with backend_pin",
           l->backends[i].text);
  }
  if (!l->bind.is_literal && is_set(l, "bind"))
    LERR(l, "bind", "'%s': bind needs an IP address, not a name", l->bind.text);

  int has_pfx = l->pfx[0] != 0, has_pem = l->cert[0] || l->key[0];
  if (l->secure) {
    if (!has_pfx && !has_pem && !l->psk[0])
      LERR(l, "secure", "secure = on needs an identity: pfx, cert and key, "
           "or psk (udp)");
    if (!has_pfx && !has_pem && l->verify_client != TG_VERIFY_NONE)
      LERR(l, "verify_client", "client certificates need a server "
           "certificate (pfx, or cert and key), not only psk");
    if (l->psk_identity_hint[0] && !l->psk[0])
      LWARN(l, "psk_identity_hint", "has no effect without psk");
    if (strlen(l->psk_identity_hint) > 128)
      LERR(l, "psk_identity_hint", "longer than 128 characters");
    if (has_pfx && has_pem)
      LERR(l, "pfx", "give either pfx or cert/key, not both");
    if (has_pem && (!l->cert[0] || !l->key[0]))
      LERR(l, l->cert[0] ? "key" : "cert", "cert and key go together");
    if (tg_p11_is_uri(l->key)) {
      char why[300];
      if (tg_p11_uri_check(l->key, why, sizeof(why)) != 0) LERR(l, "key", "%s", why);
      if (tg_p11_is_uri(l->cert) && tg_p11_uri_check(l->cert, why, sizeof(why)) != 0)
        LERR(l, "cert", "%s", why);
      if (l->transport == TG_TRANSPORT_UDP)
        LERR(l, "key", "pkcs11: keys are supported with transport = tcp only");
      if (l->key_password[0])
        LWARN(l, "key_password", "has no effect with a pkcs11: key (use pkcs11_pin)");
    } else if (l->pkcs11_pin[0]) {
      LWARN(l, "pkcs11_pin", "has no effect: key is not a pkcs11: URI");
    }
    if (l->verify_client != TG_VERIFY_NONE && !l->client_ca[0])
      LERR(l, "verify_client", "verify_client = %s needs client_ca",
           l->verify_client == TG_VERIFY_REQUIRE ? "require" : "optional");
  } else {
    static const char *const tls_only[] = {
        "pfx",     "pfx_password", "cert",          "key",  "key_password",
        "verify_client", "client_ca", "crl", "allow_clients", "min_version",
        "ciphers", "alpn", "psk", "psk_identity_hint"};
    for (size_t i = 0; i < sizeof(tls_only) / sizeof(tls_only[0]); i++)
      if (is_set(l, tls_only[i]))
        LWARN(l, tls_only[i], "has no effect with secure = off");
  }
  if ((l->crl[0] || l->allow_clients.n) && l->verify_client == TG_VERIFY_NONE &&
      l->secure)
    LWARN(l, l->crl[0] ? "crl" : "allow_clients",
         "has no effect with verify_client = none");

  if (l->backend_secure) {
    if (!l->backend_verify && !l->backend_pin[0])
      LERR(l, "backend_verify",
           "off is only allowed together with backend_pin");
    int has_bpem = l->backend_cert[0] || l->backend_key[0];
    if (has_bpem && l->backend_pfx[0])
      LERR(l, "backend_pfx", "give either backend_pfx or backend_cert/backend_key, not both");
    else if (has_bpem && (!l->backend_cert[0] || !l->backend_key[0]))
      LERR(l, l->backend_cert[0] ? "backend_key" : "backend_cert",
           "backend_cert and backend_key go together");
    if (tg_p11_is_uri(l->backend_key)) {
      char why[300];
      if (tg_p11_uri_check(l->backend_key, why, sizeof(why)) != 0)
        LERR(l, "backend_key", "%s", why);
      if (tg_p11_is_uri(l->backend_cert) &&
          tg_p11_uri_check(l->backend_cert, why, sizeof(why)) != 0)
        LERR(l, "backend_cert", "%s", why);
      if (l->transport == TG_TRANSPORT_UDP)
        LERR(l, "backend_key", "pkcs11: keys are supported with transport = tcp only");
      if (l->backend_key_password[0])
        LWARN(l, "backend_key_password", "has no effect with a pkcs11: key (use "
              "backend_pkcs11_pin)");
    } else if (l->backend_pkcs11_pin[0]) {
      LWARN(l, "backend_pkcs11_pin", "has no effect: backend_key is not a pkcs11: URI");
    }
  } else {
    static const char *const tls_only[] = {
        "backend_pfx", "backend_pfx_password", "backend_ca", "backend_verify",
        "backend_pin", "backend_sni", "backend_cert", "backend_key",
        "backend_key_password", "backend_pkcs11_pin", "backend_ciphers",
        "backend_min_version"};
    for (size_t i = 0; i < sizeof(tls_only) / sizeof(tls_only[0]); i++)
      if (is_set(l, tls_only[i]))
        LWARN(l, tls_only[i], "has no effect with backend_secure = off");
  }
  if (l->backend_psk[0] && l->transport != TG_TRANSPORT_UDP)
    LERR(l, "backend_psk", "pre-shared keys to backends are supported with "
         "transport = udp (DTLS) only in this version of tlsgate");
  else if (l->backend_psk[0] && !l->backend_secure)
    LWARN(l, "backend_psk", "has no effect with backend_secure = off");
  else if (l->backend_psk[0] && strncmp(l->backend_psk, "file:", 5) != 0)
    LERR(l, "backend_psk", "want file:PATH (one identity:hexkey line)");
  if (l->backend_check != TG_CHECK_OFF && l->transport == TG_TRANSPORT_UDP)
    LERR(l, "backend_check", "must be off with transport = udp (UDP backends "
         "cannot be checked in this version of tlsgate)");
  else if (l->backend_check == TG_CHECK_TLS && !l->backend_secure)
    LERR(l, "backend_check", "tls needs backend_secure = on (use connect for "
         "plaintext backends)");
  if (l->backend_check_interval_ms < 100)
    LERR(l, "backend_check_interval", "must be at least 100ms");
  if (is_set(l, "backend_check_interval") && l->backend_check == TG_CHECK_OFF)
    LWARN(l, "backend_check_interval", "has no effect with backend_check = off");
  if (l->keylog_file[0])
    LWARN(l, "keylog_file", "%s: TLS session secrets of this listener are written "
          "there: anyone who can read it can decrypt the traffic (debugging only)",
          l->keylog_file);
  char pinwhy[300];
  if (is_set(l, "backend_pin") && tg_tls_pins_check(l->backend_pin, pinwhy, sizeof(pinwhy)) != 0)
    LERR(l, "backend_pin", "%s", pinwhy);
  if (l->transport == TG_TRANSPORT_UDP && l->backend_secure && l->backend_min_version == 13)
    LERR(l, "backend_min_version", "1.3: DTLS 1.3 is not supported; udp backends "
         "speak DTLS 1.2");
  if (l->connect_timeout_ms == 0) LERR(l, "connect_timeout", "must be > 0");
  if (l->handshake_timeout_ms == 0) LERR(l, "handshake_timeout", "must be > 0");
  validate_http(l, errs, warns);
}

/* ---- sections sharing a bind (SNI virtual hosts) ---------------------- */

/* Keys that belong to the socket or to what happens before the ClientHello
 * names a section: equal in every section of a bind. */
static const char *const per_bind_keys[] = {
    "secure", "accept_proxy", "accept_proxy_from", "ticket_key_file", "strict_sni",
    "handshake_timeout", "unix_mode", NULL};

static int same_value(const tg_listener_conf_t *a, const tg_listener_conf_t *b,
                      const key_spec_t *spec) {
  const char *fa = (const char *)a + spec->offset, *fb = (const char *)b + spec->offset;
  switch (spec->type) {
  case T_STR:
  case T_SECRET: {
    const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
    return strcmp(sa ? sa : "", sb ? sb : "") == 0;
  }
  case T_DURATION: return *(const uint64_t *)fa == *(const uint64_t *)fb;
  default: return *(const int *)fa == *(const int *)fb;
  }
}

static int same_bind(const tg_listener_conf_t *a, const tg_listener_conf_t *b) {
  return a->bind.addrlen && a->transport == b->transport &&
         a->bind.addrlen == b->bind.addrlen &&
         memcmp(&a->bind.addr, &b->bind.addr, a->bind.addrlen) == 0;
}

typedef struct {
  tg_config_t *cfg;
  tg_listener_conf_t *l;
  size_t item;
  tg_errors_t *errs;
} name_check_t;

/* One server_name item: its syntax, and that no section of the bind (this
 * one included) claims it already. */
static int check_name(const char *p, size_t len, void *arg) {
  name_check_t *a = arg;
  tg_listener_conf_t *l = a->l;
  char w[400], why[100];
  size_t item = a->item++;
  if (tg_sni_check_pattern(p, len, why, sizeof(why)) != 0) {
    tg_errors_add(a->errs, "%s: '%.*s': %s",
                  tg_config_item_where(l, "server_name", item, w, sizeof(w)), (int)len, p, why);
    return 0;
  }
  for (size_t i = 0; i < a->cfg->nlisteners; i++) {
    tg_listener_conf_t *o = a->cfg->listeners[i];
    if (o->bind_group != l->bind_group) continue;
    tg_sni_table_t t = {0};
    size_t upto;
    if (tg_sni_table_add(&t, o->server_name, 0) != 0) {
      tg_sni_table_free(&t);
      continue;
    }
    /* In this section, only the items before this one count. */
    if (o == l) upto = item;
    else upto = t.n;
    int clash = 0;
    for (size_t k = 0; k < upto && k < t.n; k++) {
      size_t pl = strlen(t.pats[k].pat), off = t.pats[k].wildcard ? 1 : 0;
      if (t.pats[k].wildcard == (p[0] == '*') && pl == len - off &&
          strncasecmp(t.pats[k].pat, p + off, pl) == 0)
        clash = 1;
    }
    tg_sni_table_free(&t);
    if (clash) {
      tg_errors_add(a->errs, "%s: '%.*s' is already a server_name of [listener:%s]",
                    tg_config_item_where(l, "server_name", item, w, sizeof(w)), (int)len, p,
                    o->name);
      return 0;
    }
    if (o == l) break;
  }
  return 0;
}

/* Groups the sections by bind: several may share one with server_name
 * patterns (transport = tcp, secure = on); per-bind keys must agree; at
 * most one section without server_name, which is the default. */
static void validate_binds(tg_config_t *cfg, tg_errors_t *errs) {
  tg_errors_t *warns = &cfg->warnings;
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    tg_listener_conf_t *l = cfg->listeners[i];
    l->bind_group = (int)i;
    for (size_t j = 0; j < i; j++)
      if (same_bind(cfg->listeners[j], l)) {
        l->bind_group = (int)j;
        break;
      }
  }
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    tg_listener_conf_t *l = cfg->listeners[i], *g = cfg->listeners[l->bind_group];
    size_t members = 0;
    tg_listener_conf_t *dflt = NULL, *second = NULL;
    for (size_t j = 0; j < cfg->nlisteners; j++) {
      tg_listener_conf_t *o = cfg->listeners[j];
      if (o->bind_group != l->bind_group) continue;
      members++;
      if (!o->server_name[0] && !dflt) dflt = o;
      else if (!o->server_name[0] && o == l) second = o;
    }
    l->sni_default = l == (dflt ? dflt : g);
    if (l->server_name[0] && l->transport == TG_TRANSPORT_UDP) {
      LERR(l, "server_name", "SNI virtual hosts are for transport = tcp only in this "
           "version of tlsgate");
      continue;
    }
    if (l->server_name[0] && !l->secure) {
      LERR(l, "server_name", "needs secure = on: the name comes from the TLS ClientHello");
      continue;
    }
    if (l != g && l->transport == TG_TRANSPORT_UDP) {
      LERR(l, "bind", "%s is also bound by [listener:%s] (sections share a bind by "
           "server_name with transport = tcp only)", l->bind.text, g->name);
      continue;
    }
    if (second) {
      LERR(l, "bind", "%s is also bound by [listener:%s], and neither has server_name: "
           "at most one section of a bind is without it (the default)", l->bind.text,
           dflt->name);
      continue;
    }
    if (l != g) {
      for (int k = 0; per_bind_keys[k]; k++) {
        const key_spec_t *spec = &listener_keys[find_key(listener_keys, NLISTENER,
                                                          per_bind_keys[k])];
        if (same_value(l, g, spec)) continue;
        char w2[400];
        LERR(l, per_bind_keys[k], "differs from %s, which shares bind %s: this key "
             "must be equal in every section of a bind",
             tg_config_where(g, per_bind_keys[k], w2, sizeof(w2)), l->bind.text);
      }
    }
    if (l->strict_sni && !l->server_name[0])
      LERR(l, "strict_sni", "on refuses every name no section claims, and this section "
           "has no server_name: it could never be chosen");
    else if (l->server_name[0] && members == 1 && !l->strict_sni)
      LWARN(l, "server_name", "has no effect: no other section shares bind %s and "
            "strict_sni is off", l->bind.text);
    name_check_t nc = {cfg, l, 0, errs};
    tg_sni_each(l->server_name, check_name, &nc);
  }
}

/* ---- relative paths ---------------------------------------------------- */

/* Keys whose value names a file (or a directory).  Secrets given as
 * file:PATH are paths too. */
static const char *const path_keys[] = {
    "pfx", "cert", "key", "client_ca", "crl", "ocsp", "ticket_key_file",
    "backend_pfx", "backend_ca", "backend_cert", "backend_key",
    "dtls_cookie_secret_file", "keylog_file", "pkcs11_module", NULL};

static int is_path_key(const char *name) {
  for (int i = 0; path_keys[i]; i++)
    if (strcmp(path_keys[i], name) == 0) return 1;
  return 0;
}

/* dir + "/" + rel, with rel's leading "./" and "../" taken off dir (which is
 * absolute and has no symlinks, so this is what the kernel would do).  Any
 * further ".." is left to the kernel.  Returns a new string or NULL. */
static char *join_path(const char *dir, const char *rel, size_t rlen) {
  char base[PATH_MAX];
  snprintf(base, sizeof(base), "%s", dir);
  for (;;) {
    if (rlen >= 2 && rel[0] == '.' && rel[1] == '/') {
      rel += 2, rlen -= 2;
    } else if (rlen == 1 && rel[0] == '.') {
      rel += 1, rlen -= 1;
    } else if (rlen >= 2 && rel[0] == '.' && rel[1] == '.' && (rlen == 2 || rel[2] == '/')) {
      char *slash = strrchr(base, '/');
      if (slash && slash != base) *slash = '\0';
      else snprintf(base, sizeof(base), "/");
      rel += rlen == 2 ? 2 : 3, rlen -= rlen == 2 ? 2 : 3;
    } else {
      break;
    }
    while (rlen && *rel == '/') rel++, rlen--;
  }
  size_t bl = strlen(base);
  int slash = bl && base[bl - 1] == '/';
  char *out = malloc(bl + rlen + 2);
  if (!out) return NULL;
  snprintf(out, bl + rlen + 2, "%s%s%.*s", base, (slash || !rlen) ? "" : "/", (int)rlen, rel);
  return out;
}

/* Rewrites one value in place: prefix ("file:" or "") then one path, or a
 * comma-separated list of paths.  Values that are not paths (pkcs11: URIs, a
 * module name without '/') stay as written. */
static int resolve_value(char **field, const char *dir, const char *prefix, int list,
                         const char *name) {
  const char *v = *field;
  if (!v || !*v) return 0;
  size_t pl = strlen(prefix);
  if (strncmp(v, prefix, pl) != 0) return 0;
  v += pl;
  if (strncmp(v, "pkcs11:", 7) == 0) return 0;
  if (strcmp(name, "pkcs11_module") == 0 && !strchr(v, '/')) return 0;
  size_t cap = strlen(*field) + 1, n = 0;
  char *out = malloc(cap);
  if (!out) return -1;
  memcpy(out, prefix, pl);
  n = pl;
  out[n] = '\0';
  while (*v) {
    while (list && (*v == ',' || isspace((unsigned char)*v))) v++;
    if (!*v) break;
    size_t len = list ? strcspn(v, ",") : strlen(v);
    size_t next = len;
    while (list && len && isspace((unsigned char)v[len - 1])) len--;
    char *item = v[0] == '/' ? strndup(v, len) : join_path(dir, v, len);
    if (!item) {
      free(out);
      return -1;
    }
    size_t il = strlen(item);
    char *bigger = realloc(out, n + il + 3 + cap);
    if (!bigger) {
      free(item);
      free(out);
      return -1;
    }
    out = bigger;
    n += (size_t)sprintf(out + n, "%s%s", n > pl ? ", " : "", item);
    free(item);
    v += next;
  }
  free(*field);
  *field = out;
  return 0;
}

/* bind = unix:PATH and backend = unix:PATH: a relative socket path names a
 * socket next to the config too. */
static void resolve_unix(tg_hostport_t *hp, const char *dir, const tg_listener_conf_t *l,
                         const char *key, tg_errors_t *errs) {
  if (hp->addr.ss_family != AF_UNIX || hp->host[0] == '/') return;
  char *abs = join_path(dir, hp->host, strlen(hp->host));
  if (!abs) return;
  char text[PATH_MAX + 8];
  char why[100];
  snprintf(text, sizeof(text), "unix:%s", abs);
  free(abs);
  tg_hostport_t r;
  if (tg_parse_hostport(text, &r, why, sizeof(why)) == 0) {
    *hp = r;
  } else {
    char w[400];
    tg_errors_add(errs, "%s: %s: %s", tg_config_where(l, key, w, sizeof(w)), text, why);
  }
}

static void resolve_keys(const key_spec_t *keys, size_t nkeys, void *base,
                         const char *dir, int global) {
  for (size_t i = 0; i < nkeys; i++) {
    if (keys[i].flags & F_NOT_YET) continue;
    char **field = (char **)((char *)base + keys[i].offset);
    if (keys[i].type == T_SECRET)
      resolve_value(field, dir, "file:", 0, keys[i].name);
    else if (keys[i].type == T_STR &&
             (global ? strcmp(keys[i].name, "pid_file") == 0 : is_path_key(keys[i].name)))
      resolve_value(field, dir, "", strcmp(keys[i].name, "pfx") == 0, keys[i].name);
  }
}

/* The directory of path, absolute and without symlinks (the file itself
 * may be a symlink; its own directory is what the user sees). */
static char *config_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[PATH_MAX], real[PATH_MAX];
  if (!slash) snprintf(dir, sizeof(dir), ".");
  else if (slash == path) snprintf(dir, sizeof(dir), "/");
  else snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
  if (realpath(dir, real)) return strdup(real);
  return NULL;
}

void tg_config_print_paths(const tg_config_t *cfg, FILE *f) {
  fprintf(f, "  relative paths resolve against %s\n", cfg->dir ? cfg->dir : "?");
  if (cfg->pid_file[0]) fprintf(f, "  [global] pid_file = %s\n", cfg->pid_file);
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    const tg_listener_conf_t *l = cfg->listeners[i];
    for (size_t k = 0; k < NLISTENER; k++) {
      if ((listener_keys[k].flags & F_NOT_YET) ||
          (listener_keys[k].type != T_SECRET && listener_keys[k].type != T_STR))
        continue;
      const char *v = *(char *const *)((const char *)l + listener_keys[k].offset);
      if (listener_keys[k].type == T_SECRET && v && strncmp(v, "file:", 5) == 0)
        fprintf(f, "  [listener:%s] %s = %s\n", l->name, listener_keys[k].name, v);
      else if (listener_keys[k].type == T_STR && is_path_key(listener_keys[k].name) && v &&
               v[0])
        fprintf(f, "  [listener:%s] %s = %s\n", l->name, listener_keys[k].name, v);
    }
  }
}

/* pass: puts a secret in the config file itself: worth a warning when the
 * file is readable by more than its owner. */
static void warn_pass_secrets(tg_config_t *cfg, unsigned mode) {
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    tg_listener_conf_t *l = cfg->listeners[i];
    for (size_t k = 0; k < NLISTENER; k++) {
      if (listener_keys[k].type != T_SECRET || (listener_keys[k].flags & F_NOT_YET)) continue;
      const char *v = *(char **)((char *)l + listener_keys[k].offset);
      char msg[600];
      if (v && strncmp(v, "pass:", 5) == 0 &&
          tg_secret_mode_warning(cfg->path, mode, "a pass: secret", msg, sizeof(msg))) {
        char w[400];
        tg_errors_add(&cfg->warnings, "%s: %s; prefer file: or env:",
                      tg_config_where(l, listener_keys[k].name, w, sizeof(w)), msg);
      }
    }
  }
}

/* The config text may hold pass: secrets: read without a stdio buffer,
 * wiped by the caller (tg_secret_free). */
static int read_file(const char *path, char **out, size_t *len,
                     tg_errors_t *errs) {
  char err[600];
  *out = tg_secret_file_read(path, 1u << 24, NULL, len, err, sizeof(err));
  if (!*out) {
    if (strstr(err, "longer than")) tg_errors_add(errs, "%s: larger than 16 MiB", path);
    else tg_errors_add(errs, "cannot open %s", err);
    return -1;
  }
  return 0;
}

/* inih reads each line into a buffer on its stack; the lines may hold
 * pass: secrets.  Overwrite that stretch of stack once parsing is done. */
static void __attribute__((noinline)) scrub_stack(void) {
  char pad[4096];
  explicit_bzero(pad, sizeof(pad));
  __asm__ __volatile__("" : : "r"(pad) : "memory");
}

tg_config_t *tg_config_load(const char *path, tg_errors_t *errs) {
  tg_config_t *cfg = calloc(1, sizeof(*cfg));
  if (!cfg) return NULL;
  cfg->path = strdup(path);
  char why[256];
  for (size_t i = 0; i < NGLOBAL; i++)
    set_value(&global_keys[i], cfg, global_keys[i].def, why, sizeof(why));

  parse_state_t st = {.path = path, .cfg = cfg, .errs = errs};
  size_t before = errs->n;
  if (read_file(path, &st.text, &st.len, errs) != 0) {
    tg_config_free(cfg);
    return NULL;
  }
  /* Until the first header, keys belong to no section. */
  int rc = ini_parse_stream(reader, &st, handler, &st);
  scrub_stack();
  flush_pending(&st);
  tg_secret_free(st.text, st.len);
  if (rc < 0) tg_errors_add(errs, "%s: cannot parse (error %d)", path, rc);
  else if (rc > 0 && errs->n == before)
    tg_errors_add(errs, "%s:%d: syntax error", path, rc);

  if (cfg->nlisteners == 0)
    tg_errors_add(errs, "%s: no [listener:NAME] section", path);
  /* Relative paths name files next to the config, wherever tlsgate was
   * started from; every consumer sees absolute paths. */
  cfg->dir = config_dir(path);
  if (!cfg->dir) {
    tg_errors_add(errs, "%s: cannot resolve its directory: %s", path, strerror(errno));
  } else {
    resolve_keys(global_keys, NGLOBAL, cfg, cfg->dir, 1);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
      tg_listener_conf_t *l = cfg->listeners[i];
      resolve_keys(listener_keys, NLISTENER, l, cfg->dir, 0);
      resolve_unix(&l->bind, cfg->dir, l, "bind", errs);
      for (size_t k = 0; k < l->nbackends; k++)
        resolve_unix(&l->backends[k], cfg->dir, l, "backend", errs);
    }
  }
  struct stat cst;
  if (stat(path, &cst) == 0) warn_pass_secrets(cfg, cst.st_mode);
  for (size_t i = 0; i < cfg->nlisteners; i++)
    validate_listener(cfg->listeners[i], errs, &cfg->warnings);
  validate_binds(cfg, errs);
  if (errs->n > before) {
    tg_config_free(cfg);
    return NULL;
  }
  return cfg;
}

static void free_strings(const key_spec_t *keys, size_t n, void *base) {
  for (size_t i = 0; i < n; i++) {
    char **v = (char **)((char *)base + keys[i].offset);
    if (keys[i].type == T_SECRET) tg_secret_free_str(*v); /* pass: values */
    else if (keys[i].type == T_STR || keys[i].type == T_HOSTPORT_STR) free(*v);
  }
}

void tg_config_free(tg_config_t *cfg) {
  if (!cfg) return;
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    free_strings(listener_keys, NLISTENER, cfg->listeners[i]);
    free(cfg->listeners[i]->item_lines);
    free(cfg->listeners[i]);
  }
  free_strings(global_keys, NGLOBAL, cfg);
  tg_errors_free(&cfg->warnings);
  free(cfg->path);
  free(cfg->dir);
  free(cfg);
}
