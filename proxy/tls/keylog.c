#include "keylog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int keylog_index = -1;

static void free_fd(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl,
                    void *argp) {
  if (ptr) {
    close((int)(intptr_t)ptr - 1);
  }
}

static void keylog_line(const SSL *ssl, const char *line) {
  void *p = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), keylog_index);
  if (!p) return;
  char buf[1024];
  size_t n = strlen(line);
  if (n >= sizeof(buf)) return;
  memcpy(buf, line, n);
  buf[n++] = '\n';
  /* One write per line: O_APPEND keeps lines of several threads whole. */
  ssize_t w = write((int)(intptr_t)p - 1, buf, n);
  (void)w;
}

/* The same message twice (a listener has a client-side and a backend-side
 * context) is reported once. */
static void add_once(tg_errors_t *errs, const char *msg) {
  for (size_t i = 0; i < errs->n; i++)
    if (strcmp(errs->msgs[i], msg) == 0) return;
  tg_errors_add(errs, "%s", msg);
}

int tg_keylog_attach(SSL_CTX *ctx, const tg_listener_conf_t *l, tg_errors_t *errs) {
  char where[400], msg[1200];
  const char *path = l->keylog_file;
  tg_config_where(l, "keylog_file", where, sizeof(where));
  if (keylog_index < 0)
    keylog_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_fd);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    snprintf(msg, sizeof(msg), "%s: %s: cannot open: %s", where, path, strerror(errno));
    add_once(errs, msg);
    return -1;
  }
  struct stat st;
  const char *why = NULL;
  if (fstat(fd, &st) != 0) why = strerror(errno);
  else if (!S_ISREG(st.st_mode)) why = "not a regular file";
  else if (st.st_uid != geteuid() && st.st_uid != 0) why = "owned by another user";
  if (!why && (st.st_mode & 077)) {
    snprintf(msg, sizeof(msg), "%s: %s: mode %04o gives group/other access to TLS "
             "secrets; chmod 600 it or remove it", where, path,
             (unsigned)(st.st_mode & 07777));
    add_once(errs, msg);
    close(fd);
    return -1;
  }
  if (why) {
    snprintf(msg, sizeof(msg), "%s: %s: %s", where, path, why);
    add_once(errs, msg);
    close(fd);
    return -1;
  }
  /* fd + 1: a NULL ex_data means "none". */
  SSL_CTX_set_ex_data(ctx, keylog_index, (void *)(intptr_t)(fd + 1));
  SSL_CTX_set_keylog_callback(ctx, keylog_line);
  return 0;
}
