/* SNI virtual hosts: the server_name patterns of the sections sharing one
 * bind, and the choice of a section for the name a ClientHello carries.
 *
 * A pattern is a DNS name ("app.example.com") or a wildcard for exactly
 * one leftmost label ("*.example.com" matches a.example.com, not
 * example.com nor a.b.example.com).  Matching ignores case and one
 * trailing dot of the client's name.  An exact name beats a wildcard.
 * A ClientHello without a name, or with one no section claims, goes to
 * the default section, or is refused when the table is strict.
 *
 * Pure functions, no TLS: tls.c parses the ClientHello extension with
 * tg_sni_from_ext and asks tg_sni_choose. */
#ifndef TG_SNI_H
#define TG_SNI_H

#include <stddef.h>
#include <stdint.h>

#define TG_SNI_NAME_MAX 253

typedef struct {
  char pat[TG_SNI_NAME_MAX + 1]; /* lower case; a wildcard is kept as ".suffix" */
  int wildcard;
  int section; /* the caller's index */
} tg_sni_pat_t;

typedef struct {
  tg_sni_pat_t *pats;
  size_t n;
  int dflt;   /* section for no name or an unclaimed one */
  int strict; /* refuse those instead */
} tg_sni_table_t;

/* Checks one pattern of len bytes.  0, or -1 with the reason in err. */
int tg_sni_check_pattern(const char *p, size_t len, char *err, size_t errsize);

/* Calls fn for each item of a comma-separated server_name list (blanks
 * trimmed); stops at the first non-zero answer and returns it. */
int tg_sni_each(const char *list, int (*fn)(const char *p, size_t len, void *arg),
                void *arg);

/* Adds every pattern of list for section.  0, or -1 (bad pattern or out of
 * memory; validation has refused bad patterns before). */
int tg_sni_table_add(tg_sni_table_t *t, const char *list, int section);
void tg_sni_table_free(tg_sni_table_t *t);

/* The section for name (len bytes; NULL for a ClientHello without one), or
 * -1 to refuse the handshake. */
int tg_sni_choose(const tg_sni_table_t *t, const char *name, size_t len);

/* The host_name of a raw server_name extension body (RFC 6066 3).  Returns
 * its length with the name in out (NUL-terminated, as sent), 0 when there
 * is none, -1 when the extension is malformed or the name too long. */
int tg_sni_from_ext(const uint8_t *ext, size_t len, char *out, size_t size);

/* A peer's name made safe for a log line: printable ASCII kept, every
 * other byte as \xNN. */
void tg_sni_escape(const char *name, size_t len, char *out, size_t size);

#endif
