#include "util.h"

#include <time.h>

int tg_hex_digit(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int tg_parse_hex(const char *s, uint8_t *out, size_t outlen) {
  size_t n = 0;
  int hi = -1;
  for (; *s; s++) {
    int c = (unsigned char)*s, v;
    if (c == ':' && hi < 0) continue;
    if ((v = tg_hex_digit(c)) < 0) return -1;
    if (hi < 0) {
      hi = v;
    } else {
      if (n == outlen) return -1;
      out[n++] = (uint8_t)(hi << 4 | v);
      hi = -1;
    }
  }
  return (hi < 0 && n == outlen) ? 0 : -1;
}

uint64_t tg_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
