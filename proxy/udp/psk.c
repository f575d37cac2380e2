#include "psk.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "secret.h"
#include "tls.h"
#include "tls_compat.h"
#include "util.h"

typedef struct {
  char identity[PSK_MAX_IDENTITY_LEN + 1];
  uint8_t key[PSK_MAX_PSK_LEN];
  size_t keylen;
} psk_entry_t;

struct tg_psk_table {
  psk_entry_t *e;
  size_t n;
};

void tg_psk_free(tg_psk_table_t *t) {
  if (!t) return;
  if (t->e) OPENSSL_cleanse(t->e, t->n * sizeof(*t->e));
  free(t->e);
  free(t);
}

size_t tg_psk_count(const tg_psk_table_t *t) { return t ? t->n : 0; }

void tg_psk_printable(const char *in, char *out, size_t size) {
  size_t i = 0;
  for (; in[i] && i + 1 < size; i++)
    out[i] = isprint((unsigned char)in[i]) ? in[i] : '?';
  out[i] = '\0';
}

/* One "identity:hexkey" entry (trimmed).  Returns 0 or -1 with a reason. */
static int parse_entry(const char *s, size_t len, psk_entry_t *out, char *err,
                       size_t errsize) {
  const char *colon = NULL;
  for (size_t i = 0; i < len; i++)
    if (s[i] == ':') colon = s + i;
  if (!colon) {
    snprintf(err, errsize, "want identity:hexkey");
    return -1;
  }
  size_t idlen = (size_t)(colon - s), hexlen = len - idlen - 1;
  if (idlen == 0) {
    snprintf(err, errsize, "empty identity");
    return -1;
  }
  if (idlen > PSK_MAX_IDENTITY_LEN) {
    snprintf(err, errsize, "identity longer than the TLS library allows");
    return -1;
  }
  for (size_t i = 0; i < idlen; i++)
    if (!isprint((unsigned char)s[i])) {
      snprintf(err, errsize, "identity has a non-printable character");
      return -1;
    }
  if (hexlen == 0 || hexlen % 2) {
    snprintf(err, errsize, "key is not an even number of hex digits");
    return -1;
  }
  if (hexlen / 2 > PSK_MAX_PSK_LEN) {
    snprintf(err, errsize, "key longer than the TLS library allows");
    return -1;
  }
  for (size_t i = 0; i < hexlen; i += 2) {
    int hi = tg_hex_digit((unsigned char)colon[1 + i]), lo = tg_hex_digit((unsigned char)colon[2 + i]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(out->key, sizeof(out->key));
      snprintf(err, errsize, "key is not hex");
      return -1;
    }
    out->key[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  out->keylen = hexlen / 2;
  memcpy(out->identity, s, idlen);
  out->identity[idlen] = '\0';
  return 0;
}

tg_psk_table_t *tg_psk_parse(const char *text, size_t len, char sep,
                             const char *origin, char *err, size_t errsize) {
  tg_psk_table_t *t = calloc(1, sizeof(*t));
  if (!t) {
    snprintf(err, errsize, "%s: out of memory", origin);
    return NULL;
  }
  size_t cap = 0, pos = 0;
  int line = 0;
  while (pos < len) {
    const char *start = text + pos;
    const char *stop = memchr(start, sep, len - pos);
    size_t n = stop ? (size_t)(stop - start) : len - pos;
    pos += n + (stop ? 1 : 0);
    line++;
    while (n && isspace((unsigned char)*start)) start++, n--;
    while (n && isspace((unsigned char)start[n - 1])) n--;
    if (n == 0 || (sep == '\n' && start[0] == '#')) continue;
    if (t->n == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      psk_entry_t *ne = calloc(ncap, sizeof(*ne));
      if (!ne) {
        snprintf(err, errsize, "%s: out of memory", origin);
        tg_psk_free(t);
        return NULL;
      }
      if (t->e) {
        memcpy(ne, t->e, t->n * sizeof(*ne));
        OPENSSL_cleanse(t->e, t->n * sizeof(*ne));
        free(t->e);
      }
      t->e = ne;
      cap = ncap;
    }
    char why[100];
    if (parse_entry(start, n, &t->e[t->n], why, sizeof(why)) != 0) {
      if (sep == '\n') snprintf(err, errsize, "%s:%d: %s", origin, line, why);
      else snprintf(err, errsize, "%s: entry %d: %s", origin, line, why);
      tg_psk_free(t);
      return NULL;
    }
    for (size_t i = 0; i < t->n; i++) {
      if (strcmp(t->e[i].identity, t->e[t->n].identity) == 0) {
        char id[PSK_MAX_IDENTITY_LEN + 1];
        tg_psk_printable(t->e[t->n].identity, id, sizeof(id));
        snprintf(err, errsize, "%s:%d: identity '%s' appears twice", origin,
                 line, id);
        tg_psk_free(t);
        return NULL;
      }
    }
    t->n++;
  }
  if (t->n == 0) {
    snprintf(err, errsize, "%s: no identity:hexkey entry", origin);
    tg_psk_free(t);
    return NULL;
  }
  return t;
}

size_t tg_psk_lookup(const tg_psk_table_t *t, const char *identity,
                     uint8_t *key, size_t max) {
  if (!t || !identity) return 0;
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->e[i].identity, identity) != 0) continue;
    if (t->e[i].keylen > max) return 0;
    memcpy(key, t->e[i].key, t->e[i].keylen);
    return t->e[i].keylen;
  }
  return 0;
}

/* ---- the server callback ---------------------------------------------------- */

static int table_index = -1;

static void free_table(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
                       long argl, void *argp) {
  tg_psk_free(ptr);
}

static unsigned psk_server_cb(SSL *ssl, const char *identity, uint8_t *psk,
                              unsigned max_psk_len) {
  const tg_psk_table_t *t =
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), table_index);
  size_t n = tg_psk_lookup(t, identity, psk, max_psk_len);
  if (n == 0) {
    tg_tls_note_t *note = tg_tls_get_note(ssl);
    if (note && !note->reason[0]) {
      char id[PSK_MAX_IDENTITY_LEN + 1];
      tg_psk_printable(identity ? identity : "", id, sizeof(id));
      snprintf(note->reason, sizeof(note->reason), "unknown PSK identity '%s'",
               id);
      note->result = TG_HS_PROTOCOL; /* counted with the library's refusals */
    }
  }
  return (unsigned)n;
}

int tg_psk_server_setup(SSL_CTX *ctx, const tg_listener_conf_t *l,
                        tg_errors_t *errs, char *desc, size_t descsize) {
  char err[600], where[400];
  tg_psk_table_t *t = NULL;
  if (strncmp(l->psk, "file:", 5) == 0) {
    size_t len = 0;
    char *text = tg_secret_file_read(l->psk + 5, 1 << 20, "pre-shared keys", &len,
                                     err, sizeof(err));
    if (text) {
      t = tg_psk_parse(text, len, '\n', l->psk + 5, err, sizeof(err));
      tg_secret_free(text, len);
    }
  } else {
    char *value = malloc(8192);
    if (!value) {
      snprintf(err, sizeof(err), "out of memory");
    } else {
      if (tg_secret_read(l->psk, value, 8192, err, sizeof(err)) == 0)
        t = tg_psk_parse(value, strlen(value), ',',
                         strncmp(l->psk, "env:", 4) == 0 ? l->psk : "pass:",
                         err, sizeof(err));
      OPENSSL_cleanse(value, 8192);
      free(value);
    }
  }
  if (!t) {
    tg_errors_add(errs, "%s: %s", tg_config_where(l, "psk", where, sizeof(where)),
                  err);
    return -1;
  }
  if (table_index < 0)
    table_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_table);
  if (table_index < 0 || !SSL_CTX_set_ex_data(ctx, table_index, t)) {
    tg_psk_free(t);
    tg_errors_add(errs, "%s: cannot attach the key table",
                  tg_config_where(l, "psk", where, sizeof(where)));
    return -1;
  }
  SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
  if (l->psk_identity_hint[0] &&
      !SSL_CTX_use_psk_identity_hint(ctx, l->psk_identity_hint)) {
    char tlserr[300];
    tg_errors_add(errs, "%s: cannot use the hint (%s)",
                  tg_config_where(l, "psk_identity_hint", where, sizeof(where)),
                  tg_tls_errors(tlserr, sizeof(tlserr)));
    return -1;
  }
  snprintf(desc, descsize, "PSK (%zu identit%s%s%s%s)", t->n,
           t->n == 1 ? "y" : "ies", l->psk_identity_hint[0] ? ", hint \"" : "",
           l->psk_identity_hint, l->psk_identity_hint[0] ? "\"" : "");
  return 0;
}

/* ---- the client callback (backend_psk) --------------------------------------- */

static unsigned psk_client_cb(SSL *ssl, const char *hint, char *identity,
                              unsigned max_identity_len, uint8_t *psk,
                              unsigned max_psk_len) {
  const tg_psk_table_t *t =
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), table_index);
  if (!t || t->n != 1) return 0;
  const psk_entry_t *e = &t->e[0];
  if (strlen(e->identity) + 1 > max_identity_len || e->keylen > max_psk_len) return 0;
  memcpy(identity, e->identity, strlen(e->identity) + 1);
  memcpy(psk, e->key, e->keylen);
  return (unsigned)e->keylen;
}

int tg_psk_client_setup(SSL_CTX *ctx, const tg_listener_conf_t *l,
                        tg_errors_t *errs, char *desc, size_t descsize) {
  char err[600], where[400];
  tg_config_where(l, "backend_psk", where, sizeof(where));
  if (strncmp(l->backend_psk, "file:", 5) != 0) {
    tg_errors_add(errs, "%s: want file:PATH (a file with one identity:hexkey line)",
                  where);
    return -1;
  }
  tg_psk_table_t *t = NULL;
  size_t len = 0;
  char *text = tg_secret_file_read(l->backend_psk + 5, 1 << 20, "a pre-shared key",
                                   &len, err, sizeof(err));
  if (text) {
    t = tg_psk_parse(text, len, '\n', l->backend_psk + 5, err, sizeof(err));
    tg_secret_free(text, len);
  }
  if (t && t->n != 1) {
    snprintf(err, sizeof(err), "%s: %zu identity:hexkey lines, want exactly one",
             l->backend_psk + 5, t->n);
    tg_psk_free(t);
    t = NULL;
  }
  if (!t) {
    tg_errors_add(errs, "%s: %s", where, err);
    return -1;
  }
  if (table_index < 0)
    table_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_table);
  if (table_index < 0 || !SSL_CTX_set_ex_data(ctx, table_index, t)) {
    tg_psk_free(t);
    tg_errors_add(errs, "%s: cannot attach the key", where);
    return -1;
  }
  SSL_CTX_set_psk_client_callback(ctx, psk_client_cb);
  /* Only suites the key authenticates: the DTLS defaults minus those that
   * need a certificate. */
  const char *ciphers = TG_DTLS_DEFAULT_CIPHERS ":!aRSA:!aECDSA";
  if (!tg_ctx_set_cipher_list(ctx, ciphers)) {
    char tlserr[300];
    tg_errors_add(errs, "%s: cannot select PSK cipher suites (%s)", where,
                  tg_tls_errors(tlserr, sizeof(tlserr)));
    return -1;
  }
  char id[PSK_MAX_IDENTITY_LEN + 1];
  tg_psk_printable(t->e[0].identity, id, sizeof(id));
  snprintf(desc, descsize, "PSK identity \"%s\"", id);
  return 0;
}
