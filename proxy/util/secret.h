/* Secrets: passwords, PINs, pre-shared keys, ticket keys, cookie secrets.
 *
 * A secret reference is env:NAME, file:PATH or pass:TEXT.  Files are read
 * with open/read (no stdio buffer keeps a copy), every temporary copy is
 * wiped, an over-long secret is refused instead of cut, and a file that
 * group or others may read draws a warning each time it is read. */
#ifndef TG_SECRET_H
#define TG_SECRET_H

#include <stddef.h>

/* Resolves a secret reference into buf (NUL-terminated).  A file holds one
 * line; one trailing newline is dropped.  Returns 0, or -1 with a reason in
 * err that never contains the secret. */
int tg_secret_read(const char *spec, char *buf, size_t size, char *err,
                   size_t errsize);

/* Reads a whole secret-bearing file of at most max bytes into a new
 * NUL-terminated buffer (*len bytes, the NUL not counted); what names the
 * contents for the permission warning ("pre-shared keys"; NULL: no check).  Free it with
 * tg_secret_free(buf, len).  Returns NULL with a reason in err. */
char *tg_secret_file_read(const char *path, size_t max, const char *what,
                          size_t *len, char *err, size_t errsize);

/* Overwrites n bytes in a way the compiler cannot drop. */
void tg_secret_wipe(void *p, size_t n);
/* Wipes n bytes of p and frees it (p may be NULL). */
void tg_secret_free(void *p, size_t n);
/* Wipes a NUL-terminated string and frees it (s may be NULL). */
void tg_secret_free_str(char *s);

/* When mode gives group or others any access, writes a warning about path
 * ("PATH holds WHAT and is readable by ...") into msg and returns 1. */
int tg_secret_mode_warning(const char *path, unsigned mode, const char *what,
                           char *msg, size_t msgsize);

#endif
