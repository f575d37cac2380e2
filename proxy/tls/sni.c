#include "sni.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int tg_sni_check_pattern(const char *p, size_t len, char *err, size_t errsize) {
  if (len >= 2 && p[0] == '*' && p[1] == '.') {
    p += 2;
    len -= 2;
  }
  if (len == 0 || len > TG_SNI_NAME_MAX) {
    snprintf(err, errsize, "want a DNS name or *.name of at most 253 characters");
    return -1;
  }
  size_t label = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (ch == '.') {
      if (label == 0) {
        snprintf(err, errsize, "empty label (a name is letters, digits and '-' between dots)");
        return -1;
      }
      label = 0;
    } else if (isalnum(ch) || ch == '-' || ch == '_') {
      if (++label > 63) {
        snprintf(err, errsize, "a label is at most 63 characters");
        return -1;
      }
    } else {
      snprintf(err, errsize, "%s", ch == '*' ? "'*' only as the whole leftmost label (*.example.com)"
                                             : "a name is letters, digits and '-' between dots");
      return -1;
    }
  }
  if (label == 0) {
    snprintf(err, errsize, "a name does not end with a dot");
    return -1;
  }
  return 0;
}

int tg_sni_each(const char *list, int (*fn)(const char *p, size_t len, void *arg),
                void *arg) {
  const char *s = list ? list : "";
  while (*s) {
    while (*s == ',' || isspace((unsigned char)*s)) s++;
    if (!*s) break;
    size_t len = strcspn(s, ",");
    size_t next = len;
    while (len && isspace((unsigned char)s[len - 1])) len--;
    int r = fn(s, len, arg);
    if (r) return r;
    s += next;
  }
  return 0;
}

typedef struct {
  tg_sni_table_t *t;
  int section;
} add_arg_t;

static int add_one(const char *p, size_t len, void *arg) {
  add_arg_t *a = arg;
  char why[100];
  if (tg_sni_check_pattern(p, len, why, sizeof(why)) != 0) return -1;
  tg_sni_pat_t *n = realloc(a->t->pats, (a->t->n + 1) * sizeof(*n));
  if (!n) return -1;
  a->t->pats = n;
  tg_sni_pat_t *e = &n[a->t->n++];
  e->wildcard = p[0] == '*';
  if (e->wildcard) p++, len--; /* keep ".suffix" */
  for (size_t i = 0; i < len; i++) e->pat[i] = (char)tolower((unsigned char)p[i]);
  e->pat[len] = '\0';
  e->section = a->section;
  return 0;
}

int tg_sni_table_add(tg_sni_table_t *t, const char *list, int section) {
  add_arg_t a = {t, section};
  return tg_sni_each(list, add_one, &a) ? -1 : 0;
}

void tg_sni_table_free(tg_sni_table_t *t) {
  free(t->pats);
  t->pats = NULL;
  t->n = 0;
}

int tg_sni_choose(const tg_sni_table_t *t, const char *name, size_t len) {
  if (name && len && name[len - 1] == '.') len--;
  if (name && len && len <= TG_SNI_NAME_MAX && !memchr(name, '\0', len)) {
    int wild = -1;
    const char *dot = memchr(name, '.', len);
    for (size_t i = 0; i < t->n; i++) {
      const tg_sni_pat_t *e = &t->pats[i];
      size_t pl = strlen(e->pat);
      if (!e->wildcard) {
        if (pl == len && strncasecmp(e->pat, name, len) == 0) return e->section;
      } else if (wild < 0 && dot && dot != name && (size_t)(name + len - dot) == pl &&
                 strncasecmp(e->pat, dot, pl) == 0) {
        wild = e->section; /* one label before the suffix: checked, go on for exact */
      }
    }
    if (wild >= 0) return wild;
  }
  return t->strict ? -1 : t->dflt;
}

int tg_sni_from_ext(const uint8_t *ext, size_t len, char *out, size_t size) {
  /* ServerNameList: u16 length, then entries of u8 type, u16 length, name. */
  if (len < 2) return -1;
  size_t list = (size_t)ext[0] << 8 | ext[1];
  if (list != len - 2) return -1;
  size_t o = 2;
  while (o + 3 <= len) {
    uint8_t type = ext[o];
    size_t n = (size_t)ext[o + 1] << 8 | ext[o + 2];
    o += 3;
    if (o + n > len) return -1;
    if (type == 0) { /* host_name */
      if (n == 0 || n >= size || n > TG_SNI_NAME_MAX + 1) return -1;
      memcpy(out, ext + o, n);
      out[n] = '\0';
      return (int)n;
    }
    o += n;
  }
  return o == len ? 0 : -1;
}

void tg_sni_escape(const char *name, size_t len, char *out, size_t size) {
  size_t o = 0;
  if (!size) return;
  for (size_t i = 0; i < len && o + 5 < size; i++) {
    unsigned char ch = (unsigned char)name[i];
    if (ch > 0x20 && ch < 0x7f && ch != '\\' && ch != '"')
      out[o++] = (char)ch;
    else
      o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
  }
  out[o] = '\0';
}
