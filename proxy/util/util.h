/* Small helpers that several modules need and none owns: hex digits and the
 * monotonic clock. */
#ifndef TG_UTIL_H
#define TG_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The value of hex digit c (either case), or -1. */
int tg_hex_digit(int c);

/* Parses "AB:CD:..." or "abcd..." hex of exactly outlen bytes.  0 or -1. */
int tg_parse_hex(const char *s, uint8_t *out, size_t outlen);

/* Monotonic milliseconds, comparable across threads. */
uint64_t tg_now_ms(void);

#endif
