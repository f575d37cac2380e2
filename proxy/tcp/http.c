#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tls.h"
#include "tls_compat.h"

#define PIPELINE 32          /* requests forwarded and not yet answered */
#define MAX_FIELDS 128       /* header lines in one request head */
#define HELD_MAX (1u << 20)  /* client bytes held while blocked */
#define RS_LINE_MAX 16384    /* one response head line */

/* ---- reasons -------------------------------------------------------------- */

static const char *const reason_names[TG_HTTP_NREASONS] = {
    "malformed", "framing", "head-too-large", "unsupported",
    "origin",    "fetch-site", "host", "sni-mismatch"};

const char *tg_http_reason_name(tg_http_reason_t r) { return reason_names[r]; }

int tg_http_reason_status(tg_http_reason_t r) {
  switch (r) {
  case TG_HTTP_R_ORIGIN:
  case TG_HTTP_R_FETCH_SITE:
  case TG_HTTP_R_HOST:
    return 403;
  case TG_HTTP_R_SNI:
    return 421;
  default:
    return 400;
  }
}

/* ---- characters ----------------------------------------------------------- */

/* tchar (RFC 9110 5.6.2), and the bytes the head scan stops at */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1};
static const unsigned char head_special[256] = {['\0'] = 1, ['\r'] = 1, ['\n'] = 1};

static int is_tchar(unsigned char ch) { return tchar[ch]; }

/* field-vchar / SP / HTAB / obs-text */
static int is_vchar(unsigned char ch) {
  return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* Copies at most max bytes of peer text for a log line, escaping anything
 * that is not printable ASCII and the quote. */
static void esc(char *out, size_t size, const char *s, size_t n, size_t max) {
  size_t o = 0;
  for (size_t i = 0; i < n && i < max && o + 5 < size; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') out[o++] = (char)ch;
    else o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
  }
  if (n > max && o + 4 < size) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

static int ieq(const char *a, size_t an, const char *b) {
  return strlen(b) == an && strncasecmp(a, b, an) == 0;
}

/* ---- the guard ------------------------------------------------------------ */

int tg_http_lends_identity(const tg_listener_conf_t *l) {
  return l->transport == TG_TRANSPORT_TCP && !l->secure && l->backend_secure &&
         (l->backend_pfx[0] || l->backend_cert[0] || l->backend_key[0]);
}

int tg_http_loopback(const tg_listener_conf_t *l) {
  const struct sockaddr_storage *a = &l->bind.addr;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const struct sockaddr_in *)a;
    return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
  }
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)a;
    return IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
  }
  return 0;
}

/* Splits a comma-separated list into lower-case trimmed strings. */
static char **split_list(const char *s, size_t *n) {
  *n = 0;
  size_t cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ',';
  char **v = calloc(cap, sizeof(*v));
  if (!v) return NULL;
  const char *p = s;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    const char *e = p;
    while (*e && *e != ',') e++;
    const char *t = e;
    while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
    if (t > p) {
      char *x = strndup(p, (size_t)(t - p));
      if (!x) break;
      for (char *q = x; *q; q++) *q = (char)tolower((unsigned char)*q);
      v[(*n)++] = x;
    }
    p = e;
  }
  return v;
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* Browsers leave the default port out of Origin: so do we. */
static void origin_normalise(char *o) {
  size_t n = strlen(o);
  if (strncmp(o, "https://", 8) == 0 && n > 4 && strcmp(o + n - 4, ":443") == 0)
    o[n - 4] = '\0';
  else if (strncmp(o, "http://", 7) == 0 && n > 3 && strcmp(o + n - 3, ":80") == 0)
    o[n - 3] = '\0';
}

static int host_split(const char *v, size_t n, size_t *hostlen, long *port);

static const char *check_origin_entry(const char *e) {
  if (strcmp(e, "*") == 0 || strcmp(e, "null") == 0) return NULL;
  const char *host = e;
  const char *sep = strstr(e, "://");
  if (sep) {
    if (sep == e || !isalpha((unsigned char)e[0])) return "bad scheme";
    for (const char *p = e; p < sep; p++)
      if (!isalnum((unsigned char)*p) && !strchr("+-.", *p)) return "bad scheme";
    host = sep + 3;
  } else if (e[0] != '*') {
    return "want scheme://host[:port], *.domain, null or *";
  }
  if (strchr(host, '/')) return "an origin has no path (no trailing /)";
  const char *h = host;
  if (h[0] == '*') {
    if (h[1] != '.' || !h[2]) return "a wildcard is *.domain";
    h += 2;
  }
  size_t hn;
  long port;
  if (host_split(h, strlen(h), &hn, &port) != 0) return "bad host or port";
  return NULL;
}

static const char *check_host_entry(const char *e) {
  const char *h = e;
  if (h[0] == '*') {
    if (h[1] != '.' || !h[2]) return "a wildcard is *.domain[:port]";
    h += 2;
  }
  size_t hn;
  long port;
  if (host_split(h, strlen(h), &hn, &port) != 0) return "want host[:port] or [v6]:port";
  return NULL;
}

int tg_http_check_list(const char *list, int origins, char *err, size_t errsize) {
  size_t n;
  char **v = split_list(list, &n);
  if (!v) {
    snprintf(err, errsize, "'%s': out of memory", list);
    return -1;
  }
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *w = origins ? check_origin_entry(v[i]) : check_host_entry(v[i]);
    if (w) {
      snprintf(err, errsize, "'%s': %s", v[i], w);
      rc = -1;
    }
  }
  free_list(v, n);
  return rc;
}

int tg_http_list_has_star(const char *list) {
  size_t n;
  char **v = split_list(list, &n);
  int star = 0;
  for (size_t i = 0; v && i < n; i++) star |= strcmp(v[i], "*") == 0;
  if (v) free_list(v, n);
  return star;
}

tg_http_guard_t *tg_http_guard_new(const tg_listener_conf_t *l, char *desc,
                                   size_t descsize) {
  int shape = tg_http_lends_identity(l) && tg_http_loopback(l);
  desc[0] = '\0';
  if (l->protocol != TG_PROTOCOL_HTTP) {
    if (shape)
      snprintf(desc, descsize,
               "protocol = tcp: any local process and any web page the user "
               "opens can use the backend client identity through this listener");
    return NULL;
  }
  tg_http_guard_t *g = calloc(1, sizeof(*g));
  if (!g) return NULL;
  g->guarded = shape;
  g->tls = l->secure;
  g->forward = l->forward_headers;
  g->max_head = (size_t)l->max_request_head;
  g->origins = split_list(l->allow_origins, &g->norigins);
  for (size_t i = 0; i < g->norigins; i++) {
    if (strcmp(g->origins[i], "*") == 0) g->any_origin = 1;
    origin_normalise(g->origins[i]);
  }
  g->check_origin = (g->guarded || g->norigins) && !g->any_origin;
  g->hosts = split_list(l->allow_hosts, &g->nhosts);
  if (g->guarded && g->nhosts == 0 && g->hosts) {
    free(g->hosts);
    g->hosts = calloc(3, sizeof(char *));
    if (g->hosts) {
      static const char *const names[] = {"127.0.0.1", "localhost", "[::1]"};
      for (int i = 0; i < 3; i++) {
        char b[80];
        snprintf(b, sizeof(b), "%s:%u", names[i], l->bind.port);
        g->hosts[g->nhosts++] = strdup(b);
      }
    }
  }
  g->check_host = g->nhosts > 0;
  if (!g->origins || !g->hosts) {
    tg_http_guard_free(g);
    return NULL;
  }
  size_t o = (size_t)snprintf(desc, descsize, "http guard: origins ");
  if (g->any_origin) o += (size_t)snprintf(desc + o, descsize - o, "any (*)");
  else if (!g->check_origin) o += (size_t)snprintf(desc + o, descsize - o, "not checked");
  else if (!g->norigins) o += (size_t)snprintf(desc + o, descsize - o, "own only (pages of other origins refused)");
  for (size_t i = 0; g->check_origin && i < g->norigins && o < descsize; i++)
    o += (size_t)snprintf(desc + o, descsize - o, "%s%s", i ? " " : "", g->origins[i]);
  if (o < descsize) o += (size_t)snprintf(desc + o, descsize - o, "; hosts ");
  if (!g->check_host && o < descsize) o += (size_t)snprintf(desc + o, descsize - o, "not checked");
  for (size_t i = 0; i < g->nhosts && o < descsize; i++)
    o += (size_t)snprintf(desc + o, descsize - o, "%s%s", i ? " " : "", g->hosts[i]);
  if (o < descsize)
    snprintf(desc + o, descsize - o, "; forward_headers %s; max_request_head %zu",
             g->forward ? "on" : "off", g->max_head);
  return g;
}

void tg_http_guard_free(tg_http_guard_t *g) {
  if (!g) return;
  free_list(g->origins, g->norigins);
  free_list(g->hosts, g->nhosts);
  free(g);
}

/* Host syntax: reg-name or IPv4, or [IPv6], then optional :port. */
static int host_split(const char *v, size_t n, size_t *hostlen, long *port) {
  size_t i = 0;
  if (n == 0) return -1;
  if (v[0] == '[') {
    while (i < n && v[i] != ']') {
      if (i && !isxdigit((unsigned char)v[i]) && v[i] != ':' && v[i] != '.') return -1;
      i++;
    }
    if (i == n || i < 3) return -1;
    i++;
  } else {
    while (i < n && v[i] != ':') {
      unsigned char ch = (unsigned char)v[i];
      if (!isalnum(ch) && !strchr("-._~", ch)) return -1;
      i++;
    }
    if (i == 0) return -1;
  }
  *hostlen = i;
  *port = -1;
  if (i == n) return 0;
  if (v[i] != ':' || i + 1 == n || n - i - 1 > 5) return -1;
  long p = 0;
  for (size_t k = i + 1; k < n; k++) {
    if (!isdigit((unsigned char)v[k])) return -1;
    p = p * 10 + (v[k] - '0');
  }
  if (p == 0 || p > 65535) return -1;
  *port = p;
  return 0;
}

static int suffix_match(const char *host, size_t hn, const char *pat, size_t pn) {
  /* pat is "*.example.com": any name ending in ".example.com" */
  if (pn < 3 || pat[0] != '*' || pat[1] != '.') return 0;
  size_t sn = pn - 1; /* ".example.com" */
  return hn > sn && strncasecmp(host + hn - sn, pat + 1, sn) == 0;
}

static int host_allowed(const tg_http_guard_t *g, const char *v, size_t n) {
  size_t hn;
  long port;
  if (host_split(v, n, &hn, &port) != 0) return 0;
  if (port < 0) port = g->tls ? 443 : 80;
  for (size_t i = 0; i < g->nhosts; i++) {
    const char *e = g->hosts[i];
    size_t en = strlen(e);
    size_t ehn;
    long eport;
    if (host_split(e, en, &ehn, &eport) != 0) {
      /* "*.example.com[:port]" */
      const char *colon = memchr(e, ':', en);
      ehn = colon ? (size_t)(colon - e) : en;
      eport = colon ? atol(colon + 1) : -1;
      if (!suffix_match(v, hn, e, ehn)) continue;
    } else if (!(ehn == hn && strncasecmp(v, e, hn) == 0)) {
      continue;
    }
    if (eport < 0 || eport == port) return 1;
  }
  return 0;
}

static int origin_allowed(const tg_http_guard_t *g, const char *v, size_t n) {
  char o[300];
  if (n >= sizeof(o)) return 0;
  for (size_t i = 0; i < n; i++) o[i] = (char)tolower((unsigned char)v[i]);
  o[n] = '\0';
  origin_normalise(o);
  size_t on = strlen(o);
  const char *sep = strstr(o, "://");
  for (size_t i = 0; i < g->norigins; i++) {
    const char *e = g->origins[i];
    if (strcmp(e, o) == 0) return 1;
    if (!sep) continue;
    const char *host = sep + 3;
    size_t hn = on - (size_t)(host - o);
    const char *colon = memchr(host, ':', hn);
    if (colon) hn = (size_t)(colon - host);
    const char *esep = strstr(e, "://");
    if (esep) {
      /* https wildcard entry: same scheme, any subdomain, any port */
      if ((size_t)(esep - e) != (size_t)(sep - o) || strncmp(e, o, (size_t)(sep - o)) != 0)
        continue;
      if (suffix_match(host, hn, esep + 3, strlen(esep + 3))) return 1;
    } else if (e[0] == '*' && (strncmp(o, "https://", 8) == 0 || strncmp(o, "http://", 7) == 0)) {
      if (suffix_match(host, hn, e, strlen(e))) return 1;
    }
  }
  return 0;
}

/* ---- chunked bodies -------------------------------------------------------- */

enum { CK_SIZE, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR, CK_DATA_LF,
       CK_TRAILER_START, CK_TRAILER, CK_TRAILER_LF, CK_END_LF };

typedef struct {
  int st;
  uint64_t size;
  unsigned digits;
  size_t line;    /* bytes of the current size/ext line or all trailers */
  int colon;      /* trailer line: ':' seen */
} chunk_t;

/* Walks a chunked body.  Returns the bytes consumed, up to and including
 * the end of the message (*done = 1), or -1 with a reason in err and the
 * bytes before the bad one in *valid (so that what passes on never depends on how the
 * input was cut). */
static long chunk_scan(chunk_t *k, const unsigned char *p, size_t n, size_t max_trailer,
                       int *done, char *err, size_t errsize, size_t *valid) {
  size_t i = 0;
  *done = 0;
  *valid = 0;
#define return_bad(text) return *valid = i, snprintf(err, errsize, "%s", text), -1
  while (i < n) {
    unsigned char ch = p[i];
    switch (k->st) {
    case CK_SIZE: {
      int v = isdigit(ch) ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                          : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
      if (v >= 0) {
        if (++k->digits > 15) return_bad("chunk size too large");
        k->size = k->size * 16 + (uint64_t)v;
      } else if (k->digits && ch == ';') {
        k->st = CK_EXT;
      } else if (k->digits && ch == '\r') {
        k->st = CK_SIZE_LF;
      } else {
        return_bad("bad chunk size line");
      }
      i++;
      break;
    }
    case CK_EXT:
      if (ch == '\r') k->st = CK_SIZE_LF;
      else if (!is_vchar(ch)) return_bad("bad character in a chunk extension");
      if (++k->line > 4096) return_bad("chunk extension too long");
      i++;
      break;
    case CK_SIZE_LF:
      if (ch != '\n') return_bad("bare CR in a chunk size line");
      k->st = k->size ? CK_DATA : CK_TRAILER_START;
      k->line = 0;
      i++;
      break;
    case CK_DATA: {
      size_t take = n - i;
      if (take > k->size) take = (size_t)k->size;
      k->size -= take;
      i += take;
      if (k->size == 0) k->st = CK_DATA_CR;
      break;
    }
    case CK_DATA_CR:
      if (ch != '\r') return_bad("chunk data longer than its size");
      k->st = CK_DATA_LF;
      i++;
      break;
    case CK_DATA_LF:
      if (ch != '\n') return_bad("bare CR after chunk data");
      k->st = CK_SIZE;
      k->digits = 0;
      k->size = 0;
      k->line = 0;
      i++;
      break;
    case CK_TRAILER_START:
      if (ch == '\r') {
        k->st = CK_END_LF;
      } else if (is_tchar(ch)) {
        k->st = CK_TRAILER;
        k->colon = 0;
      } else {
        return_bad("bad trailer field");
      }
      k->line++;
      i++;
      break;
    case CK_TRAILER:
      if (ch == '\r') {
        if (!k->colon) return_bad("trailer line without ':'");
        k->st = CK_TRAILER_LF;
      } else if (!k->colon && ch == ':') {
        k->colon = 1;
      } else if (k->colon ? !is_vchar(ch) : !is_tchar(ch)) {
        return_bad("bad character in a trailer field");
      }
      if (++k->line > max_trailer) return_bad("trailers too large");
      i++;
      break;
    case CK_TRAILER_LF:
    case CK_END_LF:
      if (ch != '\n') return_bad("bare CR in trailers");
      i++;
      if (k->st == CK_END_LF) {
        *done = 1;
        memset(k, 0, sizeof(*k));
        return (long)i;
      }
      k->st = CK_TRAILER_START;
      break;
    }
  }
  return (long)i;
#undef return_bad
}

/* ---- per connection -------------------------------------------------------- */

enum { RQ_HEAD, RQ_BODY_CL, RQ_BODY_CHUNKED, RQ_TUNNEL };
enum { RS_HEAD, RS_BODY_CL, RS_BODY_CHUNKED, RS_CLOSE, RS_RAW };
enum { Q_HEAD = 1, Q_UPGRADE = 2 };

struct tg_http {
  const tg_http_guard_t *g;
  char ip[64];         /* client address without port */
  char sni[256];
  const tg_sni_table_t *vhosts; /* a bind shared by SNI sections: its names */
  int vhost;                    /* and the section serving this connection */
  char *client_cert;   /* "Client-Cert: ...\r\n" lines, or NULL */
  size_t client_cert_len;

  /* client -> backend */
  int rq;
  char *head;
  size_t headlen;
  unsigned crlf_skipped;
  int pending_cr;      /* a CR of an empty line before a request */
  uint64_t body_left;
  chunk_t rq_chunk;
  int rq_upgrade;      /* the request in progress asks for an upgrade */
  char *held;
  size_t heldlen;
  int first;           /* the first head was accepted */
  int connected;       /* conn.c connected the backend */
  int await_upgrade;   /* an upgrade request is out, its answer not yet in */
  unsigned long long requests;

  /* requests forwarded, not yet answered (a ring) */
  uint8_t q[PIPELINE];
  unsigned qhead, qlen;

  /* backend -> client */
  int rs;
  char *line;
  size_t linelen;
  int rs_status;       /* 0 until the status line is read */
  int rs_cl_seen, rs_chunked, rs_te_seen;
  uint64_t rs_cl;
  uint64_t rs_left;
  chunk_t rs_chunk;

  int refused;         /* a refusal is waiting or was answered */
  int refuse_now;      /* it cannot wait for earlier responses */
  tg_http_refusal_t refusal;
};

static void base64(const unsigned char *in, size_t n, char *out) {
  EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Appends "Name: :b64:, :b64:\r\n"-style items; *first tracks the name. */
static int add_der(char **out, size_t *len, size_t *cap, const char *name, int *first,
                   const unsigned char *der, size_t n) {
  size_t need = *len + strlen(name) + 8 + (n + 2) / 3 * 4 + 8;
  if (need > *cap) {
    size_t nc = need * 2;
    char *p = realloc(*out, nc);
    if (!p) return -1;
    *out = p;
    *cap = nc;
  }
  *len += (size_t)snprintf(*out + *len, *cap - *len, *first ? "%s: :" : ", :", name);
  base64(der, n, *out + *len);
  *len += strlen(*out + *len);
  (*out)[(*len)++] = ':';
  *first = 0;
  return 0;
}

typedef struct {
  char **out;
  size_t *len, *cap;
  int *first;
} chain_acc_t;

static int add_chain_der(void *arg, const uint8_t *der, size_t n) {
  chain_acc_t *a = arg;
  return add_der(a->out, a->len, a->cap, "Client-Cert-Chain", a->first, der, n);
}

/* RFC 9440: Client-Cert (the verified end-entity certificate) and
 * Client-Cert-Chain (the other certificates as the client sent them), as
 * structured-field byte sequences (:base64:). */
static void client_cert_lines(tg_http_t *h, SSL *ssl) {
  X509 *leaf = tg_get_peer_certificate(ssl);
  if (!leaf) return;
  char *out = NULL;
  size_t len = 0, cap = 0;
  int first = 1, firstc = 1, fail = SSL_get_verify_result(ssl) != X509_V_OK;
  unsigned char *der = NULL;
  int n = fail ? 0 : i2d_X509(leaf, &der);
  if (n <= 0 || add_der(&out, &len, &cap, "Client-Cert", &first, der, (size_t)n) != 0) fail = 1;
  OPENSSL_free(der);
  if (!fail) len += (size_t)snprintf(out + len, cap - len, "\r\n");
  if (!fail) {
    chain_acc_t acc = {&out, &len, &cap, &firstc};
    if (tg_compat_each_peer_chain_cert(ssl, leaf, add_chain_der, &acc) != 0) fail = 1;
  }
  if (!fail && !firstc) len += (size_t)snprintf(out + len, cap - len, "\r\n");
  X509_free(leaf);
  if (fail) {
    free(out);
    return;
  }
  h->client_cert = out;
  h->client_cert_len = len;
}

tg_http_t *tg_http_new(const tg_http_guard_t *g, const char *peer, SSL *ssl) {
  tg_http_t *h = calloc(1, sizeof(*h));
  if (!h) return NULL;
  h->g = g;
  const char *p = peer;
  size_t n = strlen(peer);
  const char *colon = strrchr(peer, ':');
  if (colon) n = (size_t)(colon - peer);
  if (n >= 2 && p[0] == '[') {
    p++;
    n -= 2;
  }
  snprintf(h->ip, sizeof(h->ip), "%.*s", (int)n, p);
  if (ssl) {
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sni) snprintf(h->sni, sizeof(h->sni), "%s", sni);
    h->vhosts = tg_tls_vhost_names(ssl, &h->vhost);
    if (g->forward) client_cert_lines(h, ssl);
  }
  return h;
}

void tg_http_free(tg_http_t *h) {
  if (!h) return;
  free(h->client_cert);
  free(h->head);
  free(h->held);
  free(h->line);
  free(h);
}

unsigned long long tg_http_requests(const tg_http_t *h) { return h->requests; }
int tg_http_wants_backend(const tg_http_t *h) { return h->first && !h->connected && !h->refused; }
void tg_http_backend_connected(tg_http_t *h) { h->connected = 1; }
int tg_http_tunnel(const tg_http_t *h) { return h->rq == RQ_TUNNEL; }

int tg_http_blocked(const tg_http_t *h) {
  return h->refused || (h->first && !h->connected) || h->await_upgrade ||
         h->qlen == PIPELINE;
}

const tg_http_refusal_t *tg_http_refusal_due(const tg_http_t *h) {
  if (!h->refused) return NULL;
  if (h->refuse_now || h->qlen == 0) return &h->refusal;
  /* A response delimited by the backend's close, or one whose framing is
   * unknown, cannot be followed by an answer of ours: it waits forever and
   * the connection ends when the backend closes. */
  return NULL;
}

size_t tg_http_refusal_answer(const tg_http_refusal_t *r, char *buf, size_t size) {
  const char *status = r->status == 403 ? "403 Forbidden"
                       : r->status == 421 ? "421 Misdirected Request"
                                          : "400 Bad Request";
  const char *body;
  switch (r->reason) {
  case TG_HTTP_R_ORIGIN: body = "tlsgate: this Origin is not allowed here (allow_origins)\n"; break;
  case TG_HTTP_R_FETCH_SITE: body = "tlsgate: cross-site browser request refused (Sec-Fetch-Site without an allowed Origin)\n"; break;
  case TG_HTTP_R_HOST: body = "tlsgate: this Host is not allowed here (allow_hosts)\n"; break;
  case TG_HTTP_R_SNI: body = "tlsgate: Host does not match the TLS server name\n"; break;
  case TG_HTTP_R_TOO_LARGE: body = "tlsgate: request head too large (max_request_head)\n"; break;
  case TG_HTTP_R_FRAMING: body = "tlsgate: ambiguous or malformed message framing\n"; break;
  case TG_HTTP_R_UNSUPPORTED: body = "tlsgate: protocol or method not supported here (HTTP/1.x only, no CONNECT)\n"; break;
  default: body = "tlsgate: malformed request\n"; break;
  }
  int n = snprintf(buf, size,
                   "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n%s",
                   status, strlen(body), body);
  return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

static void refuse(tg_http_t *h, tg_http_reason_t r, int now, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void refuse(tg_http_t *h, tg_http_reason_t r, int now, const char *fmt, ...) {
  if (h->refused) return;
  h->refused = 1;
  h->refuse_now = now;
  h->refusal.reason = r;
  h->refusal.status = tg_http_reason_status(r);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->refusal.detail, sizeof(h->refusal.detail), fmt, ap);
  va_end(ap);
  free(h->held);
  h->held = NULL;
  h->heldlen = 0;
}

/* ---- request heads ---------------------------------------------------------- */

typedef struct {
  const char *name, *value;
  size_t namelen, valuelen;
  const char *line; /* the whole line with its CRLF */
  size_t linelen;
} field_t;

static int drop_on_forward(const field_t *f) {
  static const char *const names[] = {"x-forwarded-for", "x-forwarded-proto",
                                      "x-forwarded-host", "forwarded",
                                      "client-cert",     "client-cert-chain"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (ieq(f->name, f->namelen, names[i])) return 1;
  return 0;
}

/* Is token tok in a comma-separated value (case-insensitive)? */
static int list_has(const char *v, size_t n, const char *tok) {
  size_t i = 0, tn = strlen(tok);
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    size_t s = i;
    while (i < n && v[i] != ',') i++;
    size_t e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
    if (e - s == tn && strncasecmp(v + s, tok, tn) == 0) return 1;
  }
  return 0;
}

/* A page served through this listener itself (Origin = our scheme + Host):
 * not cross-origin.  Host is checked on its own against allow_hosts, so a
 * rebinding name is still refused. */
static int same_origin(const tg_http_guard_t *g, const field_t *origin, const field_t *host) {
  if (!host) return 0;
  char a[300], b[300];
  if (origin->valuelen >= sizeof(a) || host->valuelen + 9 >= sizeof(b)) return 0;
  for (size_t i = 0; i < origin->valuelen; i++) a[i] = (char)tolower((unsigned char)origin->value[i]);
  a[origin->valuelen] = '\0';
  int n = snprintf(b, sizeof(b), "%s://", g->tls ? "https" : "http");
  for (size_t i = 0; i < host->valuelen; i++) b[n++] = (char)tolower((unsigned char)host->value[i]);
  b[n] = '\0';
  origin_normalise(a);
  origin_normalise(b);
  return strcmp(a, b) == 0;
}

/* Checks one complete head (ending in CRLF CRLF) and sends it on.
 * 0: accepted and emitted; 1: refused; -1: emit failed. */
static int handle_head(tg_http_t *h, const char *hd, size_t n, tg_http_emit_fn emit,
                       void *ctx) {
  const tg_http_guard_t *g = h->g;
  char e1[220], e2[220];
  /* request-line = method SP request-target SP HTTP-version CRLF */
  const char *end = memchr(hd, '\r', n);
  size_t ll = (size_t)(end - hd);
  const char *sp1 = memchr(hd, ' ', ll);
  if (!sp1 || sp1 == hd) {
    esc(e1, sizeof(e1), hd, ll, 60);
    refuse(h, TG_HTTP_R_MALFORMED, 0, "bad request line \"%s\"", e1);
    return 1;
  }
  const char *method = hd;
  size_t ml = (size_t)(sp1 - hd);
  for (size_t i = 0; i < ml; i++)
    if (!is_tchar((unsigned char)method[i])) {
      esc(e1, sizeof(e1), hd, ll, 60);
      refuse(h, TG_HTTP_R_MALFORMED, 0, "bad method in \"%s\"", e1);
      return 1;
    }
  const char *target = sp1 + 1;
  const char *sp2 = memchr(target, ' ', (size_t)(end - target));
  if (!sp2 || sp2 == target) {
    esc(e1, sizeof(e1), hd, ll, 60);
    refuse(h, TG_HTTP_R_MALFORMED, 0, "bad request line \"%s\"", e1);
    return 1;
  }
  size_t tl = (size_t)(sp2 - target);
  for (size_t i = 0; i < tl; i++)
    if (target[i] <= 0x20 || target[i] >= 0x7f) {
      esc(e1, sizeof(e1), target, tl, 60);
      refuse(h, TG_HTTP_R_MALFORMED, 0, "bad character in request target \"%s\"", e1);
      return 1;
    }
  const char *ver = sp2 + 1;
  size_t vl = (size_t)(end - ver);
  if (vl == 8 && memcmp(ver, "HTTP/2.0", 8) == 0 && ml == 3 && memcmp(method, "PRI", 3) == 0) {
    refuse(h, TG_HTTP_R_UNSUPPORTED, 0,
           "HTTP/2 prior-knowledge preface: protocol = http speaks HTTP/1.x only");
    return 1;
  }
  if (vl != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1')) {
    esc(e1, sizeof(e1), ver, vl, 40);
    refuse(h, vl == 8 && memcmp(ver, "HTTP/", 5) == 0 ? TG_HTTP_R_UNSUPPORTED
                                                       : TG_HTTP_R_MALFORMED,
           0, "unsupported or bad HTTP version \"%s\"", e1);
    return 1;
  }
  int http10 = ver[7] == '0';
  if (ml == 7 && memcmp(method, "CONNECT", 7) == 0) {
    refuse(h, TG_HTTP_R_UNSUPPORTED, 0, "CONNECT is not relayed");
    return 1;
  }
  /* the authority of an absolute-form target */
  const char *auth = NULL;
  size_t authlen = 0;
  if (target[0] != '/') {
    if (tl == 1 && target[0] == '*' && ml == 7 && memcmp(method, "OPTIONS", 7) == 0) {
      /* asterisk-form */
    } else if ((tl > 7 && strncasecmp(target, "http://", 7) == 0) ||
               (tl > 8 && strncasecmp(target, "https://", 8) == 0)) {
      auth = target + (target[4] == ':' ? 7 : 8);
      const char *p = auth;
      while (p < sp2 && *p != '/' && *p != '?' && *p != '#') p++;
      authlen = (size_t)(p - auth);
      if (memchr(auth, '@', authlen) || authlen == 0) {
        esc(e1, sizeof(e1), target, tl, 80);
        refuse(h, TG_HTTP_R_MALFORMED, 0, "bad authority in \"%s\"", e1);
        return 1;
      }
    } else {
      esc(e1, sizeof(e1), target, tl, 80);
      refuse(h, TG_HTTP_R_MALFORMED, 0, "bad request target \"%s\"", e1);
      return 1;
    }
  }

  /* header fields */
  field_t f[MAX_FIELDS];
  size_t nf = 0;
  const field_t *host = NULL, *origin = NULL, *fetch_site = NULL, *cl = NULL, *te = NULL;
  int upgrade = 0, conn_upgrade = 0;
  const char *p = end + 2;
  const char *stop = hd + n - 2; /* the final empty line */
  while (p < stop) {
    const char *eol = memchr(p, '\r', (size_t)(stop - p));
    if (!eol) eol = stop;
    if (*p == ' ' || *p == '\t') {
      refuse(h, TG_HTTP_R_MALFORMED, 0, "obsolete line folding (obs-fold)");
      return 1;
    }
    if (nf == MAX_FIELDS) {
      refuse(h, TG_HTTP_R_TOO_LARGE, 0, "more than %d header fields", MAX_FIELDS);
      return 1;
    }
    field_t *x = &f[nf++];
    x->line = p;
    x->linelen = (size_t)(eol - p) + 2;
    const char *c = p;
    while (c < eol && *c != ':') {
      if (!is_tchar((unsigned char)*c)) {
        esc(e1, sizeof(e1), p, (size_t)(eol - p), 60);
        refuse(h, TG_HTTP_R_MALFORMED, 0, "bad field name in \"%s\"", e1);
        return 1;
      }
      c++;
    }
    if (c == eol || c == p) {
      esc(e1, sizeof(e1), p, (size_t)(eol - p), 60);
      refuse(h, TG_HTTP_R_MALFORMED, 0, "header line without a field name and ':' \"%s\"", e1);
      return 1;
    }
    x->name = p;
    x->namelen = (size_t)(c - p);
    const char *v = c + 1;
    for (const char *q = v; q < eol; q++)
      if (!is_vchar((unsigned char)*q)) {
        esc(e1, sizeof(e1), p, x->namelen, 60);
        refuse(h, TG_HTTP_R_MALFORMED, 0, "bad character 0x%02x in field %s", (unsigned char)*q, e1);
        return 1;
      }
    while (v < eol && (*v == ' ' || *v == '\t')) v++;
    const char *ve = eol;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    x->value = v;
    x->valuelen = (size_t)(ve - v);
    p = eol + 2;

    const field_t **slot = NULL;
    const char *dup_reason = NULL;
    tg_http_reason_t dup_kind = TG_HTTP_R_MALFORMED;
    if (ieq(x->name, x->namelen, "host")) slot = &host, dup_reason = "more than one Host";
    else if (ieq(x->name, x->namelen, "origin")) slot = &origin, dup_reason = "more than one Origin";
    else if (ieq(x->name, x->namelen, "sec-fetch-site")) slot = &fetch_site, dup_reason = "more than one Sec-Fetch-Site";
    else if (ieq(x->name, x->namelen, "content-length"))
      slot = &cl, dup_reason = "more than one Content-Length", dup_kind = TG_HTTP_R_FRAMING;
    else if (ieq(x->name, x->namelen, "transfer-encoding"))
      slot = &te, dup_reason = "more than one Transfer-Encoding", dup_kind = TG_HTTP_R_FRAMING;
    else if (ieq(x->name, x->namelen, "upgrade")) upgrade = 1;
    else if (ieq(x->name, x->namelen, "connection"))
      conn_upgrade |= list_has(x->value, x->valuelen, "upgrade");
    if (slot) {
      if (*slot) {
        refuse(h, dup_kind, 0, "%s", dup_reason);
        return 1;
      }
      *slot = x;
    }
  }

  /* framing */
  uint64_t body = 0;
  int chunked = 0;
  if (cl && te) {
    refuse(h, TG_HTTP_R_FRAMING, 0, "both Content-Length and Transfer-Encoding");
    return 1;
  }
  if (cl) {
    if (cl->valuelen == 0 || cl->valuelen > 18) {
      esc(e1, sizeof(e1), cl->value, cl->valuelen, 40);
      refuse(h, TG_HTTP_R_FRAMING, 0, "bad Content-Length \"%s\"", e1);
      return 1;
    }
    for (size_t i = 0; i < cl->valuelen; i++) {
      if (!isdigit((unsigned char)cl->value[i])) {
        esc(e1, sizeof(e1), cl->value, cl->valuelen, 40);
        refuse(h, TG_HTTP_R_FRAMING, 0, "bad Content-Length \"%s\"", e1);
        return 1;
      }
      body = body * 10 + (uint64_t)(cl->value[i] - '0');
    }
  }
  if (te) {
    if (http10 || !ieq(te->value, te->valuelen, "chunked")) {
      esc(e1, sizeof(e1), te->value, te->valuelen, 40);
      refuse(h, TG_HTTP_R_FRAMING, 0, "Transfer-Encoding \"%s\"%s: only chunked is relayed",
             e1, http10 ? " in HTTP/1.0" : "");
      return 1;
    }
    chunked = 1;
  }

  /* Host, authority and the guard */
  if (!host && !http10) {
    refuse(h, TG_HTTP_R_MALFORMED, 0, "HTTP/1.1 request without Host");
    return 1;
  }
  size_t hn;
  long hport;
  if (host && host_split(host->value, host->valuelen, &hn, &hport) != 0) {
    esc(e1, sizeof(e1), host->value, host->valuelen, 80);
    refuse(h, TG_HTTP_R_MALFORMED, 0, "bad Host \"%s\"", e1);
    return 1;
  }
  if (auth) {
    size_t an;
    long aport;
    if (host_split(auth, authlen, &an, &aport) != 0 || !host ||
        !(host->valuelen == authlen && strncasecmp(host->value, auth, authlen) == 0)) {
      esc(e1, sizeof(e1), auth, authlen, 80);
      esc(e2, sizeof(e2), host ? host->value : "", host ? host->valuelen : 0, 80);
      refuse(h, TG_HTTP_R_MALFORMED, 0,
             "absolute-form authority \"%s\" differs from Host \"%s\"", e1, e2);
      return 1;
    }
  }
  if (g->check_origin && origin && !origin_allowed(g, origin->value, origin->valuelen) &&
      !same_origin(g, origin, host)) {
    esc(e1, sizeof(e1), origin->value, origin->valuelen, 100);
    refuse(h, TG_HTTP_R_ORIGIN, 0, "Origin \"%s\" not in allow_origins", e1);
    return 1;
  }
  if (g->check_origin && fetch_site && !origin &&
      (ieq(fetch_site->value, fetch_site->valuelen, "cross-site") ||
       ieq(fetch_site->value, fetch_site->valuelen, "same-site"))) {
    esc(e1, sizeof(e1), fetch_site->value, fetch_site->valuelen, 40);
    refuse(h, TG_HTTP_R_FETCH_SITE, 0, "Sec-Fetch-Site \"%s\" without an allowed Origin", e1);
    return 1;
  }
  if (g->check_host && (!host || !host_allowed(g, host->value, host->valuelen))) {
    esc(e1, sizeof(e1), host ? host->value : "", host ? host->valuelen : 0, 100);
    refuse(h, TG_HTTP_R_HOST, 0, "Host \"%s\" not in allow_hosts", e1);
    return 1;
  }
  if (g->tls && host) {
    const char *hv = host->value;
    size_t hl = hn;
    if (hl >= 2 && hv[0] == '[') hv++, hl -= 2;
    /* On a bind shared by SNI sections, Host must not name another
     * section's server_name: a client of one policy (none asked, say)
     * would reach a section that asks a certificate.  With or without an
     * SNI; also a second ClientHello naming another server. */
    if (h->vhosts && tg_sni_choose(h->vhosts, hv, hl) != h->vhost) {
      esc(e1, sizeof(e1), host->value, host->valuelen, 100);
      refuse(h, TG_HTTP_R_SNI, 0, "Host \"%s\" chooses another section of this bind than "
             "the connection's TLS server name did", e1);
      return 1;
    }
    size_t sl = strlen(h->sni);
    if (sl && h->sni[sl - 1] == '.') sl--;
    if (hl && hv[hl - 1] == '.') hl--;
    if (h->sni[0] && !(sl == hl && strncasecmp(h->sni, hv, hl) == 0)) {
      esc(e1, sizeof(e1), host->value, host->valuelen, 100);
      esc(e2, sizeof(e2), h->sni, strlen(h->sni), 100);
      refuse(h, TG_HTTP_R_SNI, 0, "Host \"%s\" does not match the TLS server name \"%s\"", e1, e2);
      return 1;
    }
  }

  /* accepted: send it on, rewritten when forward_headers = on */
  h->requests++;
  h->first = 1;
  uint8_t qf = (ml == 4 && memcmp(method, "HEAD", 4) == 0) ? Q_HEAD : 0;
  if (upgrade && conn_upgrade) qf |= Q_UPGRADE;
  h->q[(h->qhead + h->qlen) % PIPELINE] = qf;
  h->qlen++;
  h->rq_upgrade = (qf & Q_UPGRADE) != 0;
  if (chunked) {
    h->rq = RQ_BODY_CHUNKED;
    memset(&h->rq_chunk, 0, sizeof(h->rq_chunk));
  } else if (body) {
    h->rq = RQ_BODY_CL;
    h->body_left = body;
  } else {
    h->rq = RQ_HEAD;
  }
  if (!g->forward) return emit(ctx, hd, n) != 0 ? -1 : 0;

  size_t cap = n + 512 + h->client_cert_len + (host ? host->valuelen : 0);
  char *out = malloc(cap);
  if (!out) return -1;
  size_t o = ll + 2;
  memcpy(out, hd, o);
  for (size_t i = 0; i < nf; i++) {
    if (drop_on_forward(&f[i])) continue;
    memcpy(out + o, f[i].line, f[i].linelen);
    o += f[i].linelen;
  }
  int v6 = strchr(h->ip, ':') != NULL;
  const char *proto = g->tls ? "https" : "http";
  o += (size_t)snprintf(out + o, cap - o,
                        "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n"
                        "Forwarded: for=%s%s%s;proto=%s",
                        h->ip, proto, v6 ? "\"[" : "", h->ip, v6 ? "]\"" : "", proto);
  if (host) o += (size_t)snprintf(out + o, cap - o, ";host=\"%.*s\"", (int)host->valuelen, host->value);
  o += (size_t)snprintf(out + o, cap - o, "\r\n");
  if (h->client_cert) {
    memcpy(out + o, h->client_cert, h->client_cert_len);
    o += h->client_cert_len;
  }
  memcpy(out + o, "\r\n", 2);
  o += 2;
  int rc = emit(ctx, out, o);
  free(out);
  return rc != 0 ? -1 : 0;
}

/* One request finished (head and body): wait for an upgrade's answer. */
static void request_done(tg_http_t *h) {
  h->rq = RQ_HEAD;
  if (h->rq_upgrade) h->await_upgrade = 1;
  h->rq_upgrade = 0;
}

static int hold(tg_http_t *h, const char *data, size_t len) {
  if (len == 0 || h->refused) return 0;
  if (h->heldlen + len > HELD_MAX) {
    refuse(h, TG_HTTP_R_TOO_LARGE, 1, "more than %u bytes sent while waiting for responses",
           HELD_MAX);
    return 0;
  }
  char *p = realloc(h->held, h->heldlen + len);
  if (!p) return -1;
  memcpy(p + h->heldlen, data, len);
  h->held = p;
  h->heldlen += len;
  return 0;
}

static int process(tg_http_t *h, const char *data, size_t len, tg_http_emit_fn emit,
                   void *ctx) {
  while (len > 0) {
    if (h->refused) return 0;
    if (tg_http_blocked(h)) return hold(h, data, len);
    switch (h->rq) {
    case RQ_TUNNEL:
      return emit(ctx, data, len);
    case RQ_BODY_CL: {
      size_t take = len < h->body_left ? len : (size_t)h->body_left;
      if (emit(ctx, data, take) != 0) return -1;
      h->body_left -= take;
      data += take;
      len -= take;
      if (h->body_left == 0) request_done(h);
      break;
    }
    case RQ_BODY_CHUNKED: {
      int done;
      char why[64];
      size_t valid;
      long used = chunk_scan(&h->rq_chunk, (const unsigned char *)data, len,
                             h->g->max_head, &done, why, sizeof(why), &valid);
      if (used < 0) {
        if (valid && emit(ctx, data, valid) != 0) return -1;
        refuse(h, TG_HTTP_R_FRAMING, 1, "chunked request body: %s", why);
        return 0;
      }
      if (emit(ctx, data, (size_t)used) != 0) return -1;
      data += used;
      len -= (size_t)used;
      if (done) request_done(h);
      break;
    }
    case RQ_HEAD: {
      /* Empty lines before a request are skipped (RFC 9112, 2.2). */
      if (h->headlen == 0 && (h->pending_cr || data[0] == '\r' || data[0] == '\n')) {
        char ch = data[0];
        data++;
        len--;
        if (h->pending_cr) {
          h->pending_cr = 0;
          if (ch != '\n') {
            refuse(h, TG_HTTP_R_MALFORMED, 0, "bare CR before a request");
            return 0;
          }
          continue;
        }
        if (ch == '\n' || ++h->crlf_skipped > 8) {
          refuse(h, TG_HTTP_R_MALFORMED, 0, "stray CR or LF before a request");
          return 0;
        }
        h->pending_cr = 1;
        continue;
      }
      h->crlf_skipped = 0;
      size_t max = h->g->max_head;
      if (!h->head && !(h->head = malloc(max))) return -1;
      size_t i = 0, endpos = 0;
      while (i < len) {
        if (h->headlen == max) break;
        char prev = h->headlen ? h->head[h->headlen - 1] : 0;
        if (prev != '\r') {
          /* a run of ordinary bytes goes in at once */
          size_t avail = len - i, room = max - h->headlen, k = 0;
          if (avail > room) avail = room;
          const unsigned char *p = (const unsigned char *)data + i;
          while (k < avail && !head_special[p[k]]) k++;
          memcpy(h->head + h->headlen, p, k);
          h->headlen += k;
          i += k;
          if (k == avail) continue;
          prev = k ? (char)p[k - 1] : prev;
        }
        char ch = data[i++];
        h->head[h->headlen++] = ch;
        if (prev == '\r' && ch != '\n') {
          refuse(h, TG_HTTP_R_MALFORMED, 0, "bare CR in the request head");
          return 0;
        }
        if (ch == '\n' && prev != '\r') {
          refuse(h, TG_HTTP_R_MALFORMED, 0, "bare LF in the request head");
          return 0;
        }
        if (ch == '\0') {
          refuse(h, TG_HTTP_R_MALFORMED, 0, "NUL in the request head");
          return 0;
        }
        if (ch == '\n' && h->headlen >= 4 && memcmp(h->head + h->headlen - 4, "\r\n\r\n", 4) == 0) {
          endpos = h->headlen;
          break;
        }
      }
      if (!endpos) {
        if (h->headlen == max) {
          refuse(h, TG_HTTP_R_TOO_LARGE, 0, "request head larger than max_request_head (%zu bytes)", max);
          return 0;
        }
        return 0; /* all consumed, head incomplete */
      }
      data += i;
      len -= i;
      size_t hl = h->headlen;
      h->headlen = 0;
      int r = handle_head(h, h->head, hl, emit, ctx);
      /* an idle keep-alive connection holds no head buffer */
      free(h->head);
      h->head = NULL;
      if (r < 0) return -1;
      if (r > 0) return 0;
      if (h->rq == RQ_HEAD) request_done(h);
      break;
    }
    }
  }
  return 0;
}

int tg_http_client_input(tg_http_t *h, const char *data, size_t len,
                         tg_http_emit_fn emit, void *ctx) {
  if (h->heldlen) return hold(h, data, len); /* keep the order */
  return process(h, data, len, emit, ctx);
}

int tg_http_resume(tg_http_t *h, tg_http_emit_fn emit, void *ctx) {
  if (!h->heldlen || tg_http_blocked(h)) return 0;
  char *held = h->held;
  size_t n = h->heldlen;
  h->held = NULL;
  h->heldlen = 0;
  int rc = process(h, held, n, emit, ctx);
  free(held);
  return rc;
}

/* ---- responses ------------------------------------------------------------- */

static void rs_reset(tg_http_t *h) {
  h->rs = RS_HEAD;
  h->rs_status = 0;
  h->rs_cl_seen = h->rs_chunked = h->rs_te_seen = 0;
  h->rs_cl = 0;
  h->linelen = 0;
}

/* One response completed: the request at the head of the queue is answered. */
static void response_done(tg_http_t *h) {
  if (h->qlen) {
    h->qhead = (h->qhead + 1) % PIPELINE;
    h->qlen--;
  }
  if (h->qlen == 0) h->await_upgrade = 0;
  rs_reset(h);
}

/* A response line (without its line end).  0, or -1: framing unknown. */
static int rs_line(tg_http_t *h, const char *s, size_t n) {
  if (!h->rs_status) {
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ' || !isdigit((unsigned char)s[9]) ||
        !isdigit((unsigned char)s[10]) || !isdigit((unsigned char)s[11]))
      return -1;
    h->rs_status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (h->rs_status < 100) return -1;
    return 0;
  }
  const char *c = memchr(s, ':', n);
  if (!c) return -1;
  const char *v = c + 1, *e = s + n;
  while (v < e && (*v == ' ' || *v == '\t')) v++;
  while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
  size_t nl = (size_t)(c - s), vl = (size_t)(e - v);
  if (ieq(s, nl, "content-length")) {
    uint64_t x = 0;
    if (vl == 0 || vl > 18) return -1;
    for (size_t i = 0; i < vl; i++) {
      if (!isdigit((unsigned char)v[i])) return -1;
      x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (h->rs_cl_seen && x != h->rs_cl) return -1;
    h->rs_cl_seen = 1;
    h->rs_cl = x;
  } else if (ieq(s, nl, "transfer-encoding")) {
    h->rs_te_seen = 1;
    /* chunked must be the last coding */
    const char *last = v + vl;
    const char *p = last;
    while (p > v && p[-1] != ',') p--;
    while (p < last && (*p == ' ' || *p == '\t')) p++;
    h->rs_chunked = ieq(p, (size_t)(last - p), "chunked");
  }
  return 0;
}

/* The response head is complete: work out its body. */
static void rs_head_done(tg_http_t *h) {
  uint8_t qf = h->qlen ? h->q[h->qhead] : 0;
  int st = h->rs_status;
  if (st == 101) {
    if (qf & Q_UPGRADE) {
      h->rs = RS_RAW;
      h->rq = RQ_TUNNEL;
      h->await_upgrade = 0;
      if (h->qlen) {
        h->qhead = (h->qhead + 1) % PIPELINE;
        h->qlen--;
      }
    } else {
      h->rs = RS_RAW;
    }
    return;
  }
  if (st < 200) { /* 100, 102, 103: the final response follows */
    h->rs_status = 0;
    h->rs_cl_seen = h->rs_chunked = h->rs_te_seen = 0;
    return;
  }
  if ((qf & Q_HEAD) || st == 204 || st == 304) {
    response_done(h);
  } else if (h->rs_te_seen) {
    if (h->rs_chunked) {
      h->rs = RS_BODY_CHUNKED;
      memset(&h->rs_chunk, 0, sizeof(h->rs_chunk));
    } else {
      h->rs = RS_CLOSE;
    }
  } else if (h->rs_cl_seen) {
    if (h->rs_cl == 0) response_done(h);
    else {
      h->rs = RS_BODY_CL;
      h->rs_left = h->rs_cl;
    }
  } else {
    h->rs = RS_CLOSE;
  }
}

int tg_http_backend_input(tg_http_t *h, const char *data, size_t len,
                          tg_http_emit_fn emit, void *ctx) {
  size_t i = 0;
  while (i < len) {
    if (h->rs == RS_RAW || h->rs == RS_CLOSE) {
      i = len;
      break;
    }
    if (h->refused && tg_http_refusal_due(h)) {
      /* the answers the refusal waited for are complete: nothing more */
      return i ? emit(ctx, data, i) : 0;
    }
    if (h->qlen == 0) { /* a response nobody asked for: framing unknown */
      h->rs = RS_RAW;
      continue;
    }
    switch (h->rs) {
    case RS_HEAD: {
      char ch = data[i++];
      if (ch == '\n') {
        size_t n = h->linelen;
        if (n && h->line[n - 1] == '\r') n--;
        if (n == 0 && h->rs_status) {
          free(h->line);
          h->line = NULL;
          rs_head_done(h);
        } else if (n == 0 || rs_line(h, h->line, n) != 0) {
          h->rs = RS_RAW;
        }
        h->linelen = 0;
      } else {
        /* the rest of the line at once */
        i--;
        const char *nl = memchr(data + i, '\n', len - i);
        size_t run = (nl ? (size_t)(nl - data) : len) - i;
        if (!h->line && !(h->line = malloc(RS_LINE_MAX))) return -1;
        if (run > RS_LINE_MAX - h->linelen) {
          i += RS_LINE_MAX - h->linelen;
          h->rs = RS_RAW;
          break;
        }
        memcpy(h->line + h->linelen, data + i, run);
        h->linelen += run;
        i += run;
      }
      break;
    }
    case RS_BODY_CL: {
      size_t take = len - i;
      if (take > h->rs_left) take = (size_t)h->rs_left;
      i += take;
      h->rs_left -= take;
      if (h->rs_left == 0) response_done(h);
      break;
    }
    case RS_BODY_CHUNKED: {
      int done;
      char why[64];
      size_t valid;
      long used = chunk_scan(&h->rs_chunk, (const unsigned char *)data + i, len - i,
                             1u << 20, &done, why, sizeof(why), &valid);
      if (used < 0) {
        i += valid;
        h->rs = RS_RAW;
        break;
      }
      i += (size_t)used;
      if (done) response_done(h);
      break;
    }
    }
  }
  return i ? emit(ctx, data, i) : 0;
}
