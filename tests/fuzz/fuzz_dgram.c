/* libFuzzer harness: the DTLS datagram classifier (tg_dgram_classify) that
 * every datagram from an unknown peer meets before any state is spent, and
 * the HelloVerifyRequest built from what it found.
 *
 * The input is one datagram.  Checked besides memory safety:
 *   - the kind returned equals info->kind and is one of the four kinds;
 *   - a ClientHello's random and cookie point inside the datagram, and the
 *     cookie fits in it;
 *   - classifying is deterministic;
 *   - a HelloVerifyRequest answering a ClientHello is built, fits the
 *     buffer, is no larger than 3 times the datagram (the anti-amplification
 *     bound) and classifies as a DTLS record itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtls_cookie.h"

static void must(int cond, const char *what) {
  if (!cond) {
    fprintf(stderr, "fuzz_dgram: %s\n", what);
    abort();
  }
}

static int inside(const uint8_t *p, size_t len, const uint8_t *base, size_t n) {
  return p >= base && p + len <= base + n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  /* A copy of exactly the datagram's size, so ASan sees any overread. */
  uint8_t *d = malloc(size ? size : 1);
  if (!d) return 0;
  memcpy(d, data, size);
  tg_dgram_info_t info, again;
  memset(&info, 0, sizeof(info));
  tg_dgram_kind_t k = tg_dgram_classify(d, size, &info);
  must(k == info.kind, "returned kind differs from info->kind");
  must(k >= TG_DGRAM_SHORT && k <= TG_DGRAM_CLIENT_HELLO, "unknown kind");
  must(tg_dgram_kind_name(k) != NULL, "kind without a name");
  memset(&again, 0, sizeof(again));
  must(tg_dgram_classify(d, size, &again) == k, "not deterministic");
  if (k == TG_DGRAM_CLIENT_HELLO) {
    must(info.random && inside(info.random, 32, d, size), "random outside the datagram");
    must(info.cookie_len <= 255, "cookie longer than 255");
    must(info.cookie_len == 0 || (info.cookie && inside(info.cookie, info.cookie_len, d, size)),
         "cookie outside the datagram");
    uint8_t cookie[32], hvr[256];
    memset(cookie, 0x5a, sizeof(cookie));
    size_t n = tg_dtls_build_hvr(&info, cookie, 16, hvr, sizeof(hvr));
    must(n > 0 && n <= sizeof(hvr), "no HelloVerifyRequest for a ClientHello");
    must(n <= 3 * size, "HelloVerifyRequest larger than 3x the ClientHello");
    tg_dgram_info_t h;
    memset(&h, 0, sizeof(h));
    must(tg_dgram_classify(hvr, n, &h) == TG_DGRAM_RECORD, "HelloVerifyRequest is not a record");
    must(tg_dtls_build_hvr(&info, cookie, 16, hvr, 10) == 0, "HVR built into a too-small buffer");
  }
  free(d);
  return 0;
}
