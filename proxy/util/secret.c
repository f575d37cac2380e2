#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

void tg_secret_wipe(void *p, size_t n) {
  if (p && n) explicit_bzero(p, n);
}

void tg_secret_free(void *p, size_t n) {
  tg_secret_wipe(p, n);
  free(p);
}

void tg_secret_free_str(char *s) {
  if (s) tg_secret_free(s, strlen(s));
}

int tg_secret_mode_warning(const char *path, unsigned mode, const char *what,
                           char *msg, size_t msgsize) {
  if (!(mode & (S_IRWXG | S_IRWXO))) return 0;
  snprintf(msg, msgsize, "%s holds %s and is %s by %s (mode %04o): chmod go-rwx",
           path, what, (mode & (S_IRGRP | S_IROTH)) ? "readable" : "accessible",
           (mode & S_IRWXO) ? "everyone" : "its group", mode & 07777);
  return 1;
}

/* Reads at most max bytes of an open file into a new NUL-terminated
 * buffer, sized from hint (the file's size) and grown as needed; a buffer
 * given up is wiped first.  Returns NULL with *too_long set when the file
 * holds more than max bytes, or with *err set. */
static char *read_fd(int fd, size_t max, size_t hint, size_t *len, int *too_long, int *err) {
  size_t cap = hint ? hint : 4096;
  if (cap > max) cap = max;
  char *buf = malloc(cap + 1);
  if (!buf) {
    *err = ENOMEM;
    return NULL;
  }
  size_t n = 0;
  for (;;) {
    if (n == cap && cap < max) {
      size_t ncap = cap * 2 > max ? max : cap * 2;
      char *nb = malloc(ncap + 1);
      if (!nb) {
        *err = ENOMEM;
        tg_secret_free(buf, n);
        return NULL;
      }
      memcpy(nb, buf, n);
      tg_secret_free(buf, n);
      buf = nb;
      cap = ncap;
    }
    if (n == max) {
      char probe;
      ssize_t r = read(fd, &probe, 1);
      if (r < 0 && errno == EINTR) continue;
      tg_secret_wipe(&probe, 1);
      if (r > 0) *too_long = 1;
      if (r < 0) *err = errno;
      if (r != 0) {
        tg_secret_free(buf, n);
        return NULL;
      }
      break;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      *err = errno;
      tg_secret_free(buf, n);
      return NULL;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

static int open_secret(const char *path, const char *what, size_t *size, char *err,
                       size_t errsize) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, errsize, "%s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  char msg[600];
  *size = 0;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    *size = (size_t)st.st_size + 1; /* + 1: EOF is seen without growing */
    if (what && tg_secret_mode_warning(path, st.st_mode, what, msg, sizeof(msg)))
      tg_log(TG_LOG_WARN, "%s", msg);
  }
  return fd;
}

char *tg_secret_file_read(const char *path, size_t max, const char *what,
                          size_t *len, char *err, size_t errsize) {
  size_t hint = 0;
  int fd = open_secret(path, what, &hint, err, errsize);
  if (fd < 0) return NULL;
  int too_long = 0, e = 0;
  char *buf = read_fd(fd, max, hint, len, &too_long, &e);
  close(fd);
  if (!buf) {
    if (too_long) snprintf(err, errsize, "%s: longer than %zu bytes", path, max);
    else snprintf(err, errsize, "%s: cannot read: %s", path, strerror(e));
  }
  return buf;
}

/* file:PATH -> one line of at most size - 1 bytes. */
static int read_secret_file(const char *path, char *out, size_t size, char *err,
                            size_t errsize) {
  size_t len = 0;
  /* Room for the secret and a trailing CR LF, so that a secret of exactly
   * size - 1 bytes written with `echo` still fits. */
  char *buf = tg_secret_file_read(path, size + 1, "a secret", &len, err, errsize);
  if (!buf) {
    if (strstr(err, "longer than"))
      snprintf(err, errsize, "%s: the secret is longer than %zu bytes", path, size - 1);
    return -1;
  }
  size_t n = len;
  if (n && buf[n - 1] == '\n') n--;
  if (n && buf[n - 1] == '\r') n--;
  int rc = -1;
  if (memchr(buf, '\n', n) || memchr(buf, '\r', n))
    snprintf(err, errsize, "%s: holds more than one line (want the secret "
             "alone on one line)", path);
  else if (memchr(buf, '\0', n))
    snprintf(err, errsize, "%s: holds a NUL byte", path);
  else if (n >= size)
    snprintf(err, errsize, "%s: the secret is longer than %zu bytes", path, size - 1);
  else {
    memcpy(out, buf, n);
    out[n] = '\0';
    rc = 0;
  }
  tg_secret_free(buf, len);
  return rc;
}

int tg_secret_read(const char *spec, char *buf, size_t size, char *err,
                   size_t errsize) {
  if (size) buf[0] = '\0';
  if (strncmp(spec, "pass:", 5) == 0) {
    if (strlen(spec + 5) >= size) {
      snprintf(err, errsize, "pass: the secret is longer than %zu bytes", size - 1);
      return -1;
    }
    memcpy(buf, spec + 5, strlen(spec + 5) + 1);
    return 0;
  }
  if (strncmp(spec, "env:", 4) == 0) {
    const char *v = getenv(spec + 4);
    if (!v) {
      snprintf(err, errsize, "environment variable %s is not set", spec + 4);
      return -1;
    }
    if (strlen(v) >= size) {
      snprintf(err, errsize, "environment variable %s: the secret is longer than "
               "%zu bytes", spec + 4, size - 1);
      return -1;
    }
    memcpy(buf, v, strlen(v) + 1);
    return 0;
  }
  if (strncmp(spec, "file:", 5) == 0)
    return read_secret_file(spec + 5, buf, size, err, errsize);
  snprintf(err, errsize, "want env:NAME, file:PATH or pass:TEXT");
  return -1;
}
