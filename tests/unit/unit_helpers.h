/* Helpers several unit tests share: socket addresses from text, and a
 * config loaded from text through a temporary file (its path stays in
 * unit_config_path for error-message checks). */
#ifndef TG_UNIT_HELPERS_H
#define TG_UNIT_HELPERS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static inline struct sockaddr_in v4(const char *ip, uint16_t port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

static inline struct sockaddr_in6 v6(const char *ip, uint16_t port) {
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &a.sin6_addr);
  return a;
}

#define SA(x) ((const struct sockaddr *)&(x))

static char unit_config_path[64];

/* Writes text to a temporary file and loads it; errs collects errors. */
static inline tg_config_t *load(const char *text, tg_errors_t *errs) {
  snprintf(unit_config_path, sizeof(unit_config_path), "/tmp/tg-unit-XXXXXX");
  int fd = mkstemp(unit_config_path);
  if (fd < 0) return NULL;
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
    close(fd);
    return NULL;
  }
  close(fd);
  tg_config_t *cfg = tg_config_load(unit_config_path, errs);
  unlink(unit_config_path);
  return cfg;
}

#endif
