/* libFuzzer harness: the PROXY protocol v1/v2 header parser (accept_proxy),
 *
 *   int tg_proxy_parse(const uint8_t *buf, size_t len, tg_proxy_info_t *out,
 *                      size_t *consumed, char *err, size_t errsize);
 *
 * > 0: a complete header of that many bytes (also in *consumed); 0: more
 * bytes needed; < 0: malformed, with a reason in err.  tests/fuzz/fuzz.mk
 * builds this harness only when proxy/tcp/proxyproto.h declares tg_proxy_parse.
 *
 * The input is what a load balancer sent first, as received so far.
 * Checked besides memory safety (the parser is also run on an exact-size
 * heap copy of every prefix, so ASan sees any read past len):
 *   - the result is -1, 0, or a length in 1..len equal to *consumed;
 *   - a complete header is at most TG_PROXY_PARSE_MAX bytes, a v1 line at
 *     most 107 bytes including CRLF (proxy-protocol.txt, section 2.1);
 *   - "need more" is bounded: never with TG_PROXY_PARSE_MAX bytes in hand;
 *   - prefixes are consistent, as conn.c calls the parser again each time
 *     bytes arrive: 0 for every prefix shorter than a complete header, then
 *     the same length for every longer input; once malformed, every longer
 *     input is malformed too (no prefix of a valid header is rejected);
 *   - a malformed header comes with a reason;
 *   - the addresses are AF_INET, AF_INET6 or AF_UNSPEC. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxyproto.h"

static void must(int cond, const char *what, size_t k, int r) {
  if (!cond) {
    fprintf(stderr, "fuzz_proxy_parse: %s (prefix of %zu bytes, result %d)\n",
            what, k, r);
    abort();
  }
}

/* Parses the first k bytes from an exact-size heap copy. */
static int parse_prefix(const uint8_t *data, size_t k, tg_proxy_info_t *out,
                        size_t *consumed, char *why, size_t whysize) {
  uint8_t *copy = malloc(k ? k : 1);
  if (!copy) abort();
  memcpy(copy, data, k);
  memset(out, 0, sizeof(*out));
  *consumed = 0;
  why[0] = '\0';
  int r = tg_proxy_parse(copy, k, out, consumed, why, whysize);
  free(copy);
  return r;
}

static int check_one(const uint8_t *data, size_t k) {
  tg_proxy_info_t info;
  size_t consumed;
  char why[100];
  int r = parse_prefix(data, k, &info, &consumed, why, sizeof(why));
  must(r >= -1, "result below -1", k, r);
  if (r < 0) must(why[0] != '\0', "malformed without a reason", k, r);
  if (r == 0) must(k < TG_PROXY_PARSE_MAX, "still 'need more' with a full buffer", k, r);
  if (r > 0) {
    must((size_t)r <= k, "header longer than the input", k, r);
    must(consumed == (size_t)r, "*consumed differs from the result", k, r);
    must(r <= TG_PROXY_PARSE_MAX, "header longer than TG_PROXY_PARSE_MAX", k, r);
    if (k >= 6 && memcmp(data, "PROXY ", 6) == 0)
      must(r <= 107, "PROXY v1 line longer than 107 bytes accepted", k, r);
    int fs = info.src.ss_family, fd = info.dst.ss_family;
    must(fs == AF_INET || fs == AF_INET6 || fs == AF_UNSPEC, "odd source family", k, r);
    must(fd == fs, "source and destination families differ", k, r);
  }
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4 * TG_PROXY_PARSE_MAX) return 0;
  int full = check_one(data, size);
  /* Prefixes: all of the first 128, then a sample, plus the neighbourhood
   * of the header's end. */
  int state = 0;          /* 0: need more so far; >0: complete at that length; -1 */
  size_t last_zero = 0;   /* longest prefix that still needed more */
  for (size_t k = 0; k <= size; k++) {
    int near_end = full > 0 && (k + 1 == (size_t)full || k == (size_t)full);
    if (k > 128 && k % 13 != 0 && k != size && !near_end) continue;
    int r = k == size ? full : check_one(data, k);
    if (state == 0) {
      if (r == 0) last_zero = k;
      if (r > 0)
        must((size_t)r > last_zero,
             "complete, but a prefix at least that long needed more", k, r);
      state = r;
    } else if (state > 0) {
      must(r == state, "a longer input changed a complete header's length", k, r);
    } else {
      must(r == -1, "a longer input made a malformed header acceptable", k, r);
    }
  }
  return 0;
}
