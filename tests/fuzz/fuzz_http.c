/* libFuzzer harness: protocol = http (proxy/tcp/http.c), both directions.
 *
 * Input: FLAGS (1 byte), then client bytes, then optionally "\xff\xfe" and
 * backend bytes.  FLAGS bit 0: forward_headers; bit 1: the origin/host guard.
 * The client bytes go to tg_http_client_input(), the backend bytes to
 * tg_http_backend_input(), as conn.c does: the backend counts as connected
 * as soon as a first head is accepted, and held bytes are resumed after
 * every client piece and once after the backend bytes.  The whole run is done twice: once with every part in one
 * piece and once one byte at a time.
 *
 * Checked besides memory safety:
 *   - split invariance: the bytes emitted to either side, and the refusal
 *     (reason and status) are the same whether input comes whole or byte by
 *     byte (the parser never guesses from how the bytes were cut);
 *   - with forward_headers off, what reaches the backend is the client's
 *     bytes with at most some leading empty lines dropped: a copy of the
 *     input stream's tail-free prefix, never anything invented;
 *   - backend bytes pass through unchanged: what reaches the client is a
 *     prefix of the backend input;
 *   - a refusal builds an answer that starts with "HTTP/1.1 4" and has
 *     Connection: close; a 403/421 comes only with the guard on. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

typedef struct {
  uint8_t *buf;
  size_t len, cap;
} sink_t;

static int emit(void *ctx, const char *data, size_t len) {
  sink_t *s = ctx;
  if (s->len + len > s->cap) {
    size_t nc = (s->len + len) * 2 + 64;
    uint8_t *p = realloc(s->buf, nc);
    if (!p) abort();
    s->buf = p;
    s->cap = nc;
  }
  memcpy(s->buf + s->len, data, len);
  s->len += len;
  return 0;
}

static void must(int cond, const char *what) {
  if (!cond) {
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
  }
}

static int same(const sink_t *a, const sink_t *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0);
}

typedef struct {
  sink_t to_backend, to_client;
  int refused, status, reason;
} result_t;

static void step(tg_http_t *h, result_t *r) {
  if (tg_http_wants_backend(h)) tg_http_backend_connected(h);
  must(tg_http_resume(h, emit, &r->to_backend) == 0, "resume failed");
}

static void run(const tg_http_guard_t *g, const uint8_t *cl, size_t cn, const uint8_t *bk,
                size_t bn, size_t piece, result_t *r) {
  memset(r, 0, sizeof(*r));
  tg_http_t *h = tg_http_new(g, "127.0.0.1:4242", NULL);
  must(h != NULL, "tg_http_new failed");
  for (size_t i = 0; i < cn; i += piece) {
    size_t n = cn - i < piece ? cn - i : piece;
    /* an exact-size copy, so that ASan sees any read past the piece */
    char *copy = malloc(n);
    memcpy(copy, cl + i, n);
    must(tg_http_client_input(h, copy, n, emit, &r->to_backend) == 0, "client input failed");
    free(copy);
    step(h, r);
  }
  for (size_t i = 0; i < bn; i += piece) {
    size_t n = bn - i < piece ? bn - i : piece;
    char *copy = malloc(n);
    memcpy(copy, bk + i, n);
    must(tg_http_backend_input(h, copy, n, emit, &r->to_client) == 0, "backend input failed");
    free(copy);
  }
  /* Held client requests resume once the backend side is read: resuming
   * after every backend byte would interleave differently from one read of
   * them all, which is a different conversation, not a different cut. */
  step(h, r);
  const tg_http_refusal_t *ref = tg_http_refusal_due(h);
  if (ref) {
    char ans[600];
    size_t n = tg_http_refusal_answer(ref, ans, sizeof(ans));
    must(n > 12 && memcmp(ans, "HTTP/1.1 4", 10) == 0, "refusal answer malformed");
    must(strstr(ans, "\r\nConnection: close\r\n") != NULL, "refusal answer without Connection: close");
    must(ref->detail[0] != '\0', "refusal without a reason");
    r->refused = 1;
    r->status = ref->status;
    r->reason = (int)ref->reason;
  }
  tg_http_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 8192) return 0;
  uint8_t flags = data[0];
  const uint8_t *cl = data + 1, *bk = NULL;
  size_t cn = size - 1, bn = 0;
  for (size_t i = 0; i + 1 < cn; i++)
    if (cl[i] == 0xff && cl[i + 1] == 0xfe) {
      bk = cl + i + 2;
      bn = cn - i - 2;
      cn = i;
      break;
    }
  static char *origins[] = {"https://app.example", "*.trusted.example"};
  static char *hosts[] = {"localhost:8080", "127.0.0.1:8080"};
  tg_http_guard_t g = {.forward = flags & 1, .max_head = 1024};
  if (flags & 2) {
    g.guarded = 1;
    g.check_origin = 1;
    g.origins = origins;
    g.norigins = 2;
    g.check_host = 1;
    g.hosts = hosts;
    g.nhosts = 2;
  }
  result_t whole, bytes;
  run(&g, cl, cn, bk, bn, cn + bn + 1, &whole);
  run(&g, cl, cn, bk, bn, 1, &bytes);
  must(whole.refused == bytes.refused && whole.status == bytes.status &&
           whole.reason == bytes.reason,
       "the refusal depends on how the input was cut");
  must(same(&whole.to_backend, &bytes.to_backend),
       "bytes to the backend depend on how the input was cut");
  must(same(&whole.to_client, &bytes.to_client),
       "bytes to the client depend on how the input was cut");
  if (!(flags & 2)) must(!whole.refused || whole.status == 400, "403/421 without a guard");
  if (!(flags & 1)) {
    /* the emitted stream is the input with some empty lines dropped */
    size_t i = 0, o = 0;
    while (o < whole.to_backend.len && i < cn) {
      if (cl[i] == whole.to_backend.buf[o]) {
        i++;
        o++;
      } else if (cl[i] == '\r' && i + 1 < cn && cl[i + 1] == '\n') {
        i += 2;
      } else {
        break;
      }
    }
    must(o == whole.to_backend.len, "forward_headers off, yet the backend got bytes the client did not send");
  }
  must(whole.to_client.len <= bn &&
           (whole.to_client.len == 0 || memcmp(whole.to_client.buf, bk, whole.to_client.len) == 0),
       "the client got bytes the backend did not send");
  free(whole.to_backend.buf);
  free(whole.to_client.buf);
  free(bytes.to_backend.buf);
  free(bytes.to_client.buf);
  return 0;
}
