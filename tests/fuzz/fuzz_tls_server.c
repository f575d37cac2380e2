/* libFuzzer harness: a TLS server fed arbitrary bytes through tlsgate's real
 * TLS code path.
 *
 * Set-up (once): an embedded certificate and key (a self-signed CA cert,
 * valid 2020-2099, also used as client_ca) are written to memfds, a config
 * text naming them is loaded with tg_config_load, and tg_tls_server_ctx()
 * builds a context for each of its two listeners:
 *   "fuzz"     secure = on, alpn = h2, http/1.1 (verify_client = none)
 *   "fuzzmtls" verify_client = optional, client_ca = the embedded CA,
 *              allow_clients with every ACL kind -- a TLS 1.2 client
 *              Certificate message reaches verify_cb, tg_tls_peer_id and the
 *              ACL before any signature over the handshake is checked.
 *
 * Per input: byte 0 picks the listener (bit 0) and how the rest is cut
 * into reads (bits 1-7: 0 = one read, else reads of that many bytes); each
 * read is handled like conn.c's on_read, over the same stream BIO
 * (tls_bio.c) that connections use: the input window points at the stash
 * of unconsumed bytes plus the new read (tls_feed), SSL_do_handshake runs
 * until the handshake is done, then SSL_read until WANT_READ, the output
 * block is taken after every step (flush_tls), and what TLS did not
 * consume is stashed for the next read (tls_unfeed).  A failure is
 * described with tg_tls_failure(), as the log line would be.
 * If a handshake ever completes, a reply is written and shut down cleanly.
 *
 * Seeds (tests/fuzz/corpus/tls_server/) are client flights recorded from
 * real clients by tests/fuzz/gen-tls-seeds.py. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bufpool.h"
#include "config.h"
#include "tls.h"
#include "tls_bio.h"

static const char cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBtDCCAVugAwIBAgIBATAKBggqhkjOPQQDAjAcMRowGAYDVQQDDBFmdXp6LnRs\n"
    "c2dhdGUudGVzdDAgFw0yMDAxMDEwMDAwMDBaGA8yMDk5MTIzMTIzNTk1OVowHDEa\n"
    "MBgGA1UEAwwRZnV6ei50bHNnYXRlLnRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMB\n"
    "BwNCAASTOTj2z4rJOkTpuiI45nD5pDe+fCgMlUKE5VN55geKJDmSzQlIgycrzi6q\n"
    "Hm2WR+hglu4uOQ/hyJaCMqsHN01Io4GLMIGIMA8GA1UdEwEB/wQFMAMBAf8wDgYD\n"
    "VR0PAQH/BAQDAgKEMB0GA1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAnBgNV\n"
    "HREEIDAegglsb2NhbGhvc3SCEWZ1enoudGxzZ2F0ZS50ZXN0MB0GA1UdDgQWBBSC\n"
    "D3850ee5fUpphiJHttv/Xe/8OTAKBggqhkjOPQQDAgNHADBEAiBAIcRywnso6NiU\n"
    "a8wsxiQ6btaBz8Fs8mBdj/SyJ6dFYAIgTINn1gFjXdxiXAe3pQnTxbV8+aTQVFZ1\n"
    "ziWT0P5voIg=\n"
    "-----END CERTIFICATE-----\n";

static const char key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQj4mKKLuk+YXImQO\n"
    "EX6JLv+LetMZ6/WUxZvJKYYH3ROhRANCAASTOTj2z4rJOkTpuiI45nD5pDe+fCgM\n"
    "lUKE5VN55geKJDmSzQlIgycrzi6qHm2WR+hglu4uOQ/hyJaCMqsHN01I\n"
    "-----END PRIVATE KEY-----\n";

static SSL_CTX *ctxs[2];
static tg_config_t *cfg;
static int debug; /* FUZZ_TLS_DEBUG=1: say what each input did (for triage) */

/* Writes text into a new memfd (mode 0600) and returns its /proc path. */
static void memfile(const char *name, const char *text, char *path, size_t size) {
  int fd = memfd_create(name, 0);
  if (fd < 0 || fchmod(fd, 0600) != 0) {
    perror("memfd_create");
    abort();
  }
  size_t len = strlen(text);
  if (write(fd, text, len) != (ssize_t)len) abort();
  snprintf(path, size, "/proc/self/fd/%d", fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char err[256];
  debug = getenv("FUZZ_TLS_DEBUG") != NULL;
  if (tg_tls_init(err, sizeof(err)) != 0) {
    fprintf(stderr, "tg_tls_init: %s\n", err);
    abort();
  }
  char certp[64], keyp[64], confp[64], conf[2048];
  memfile("fuzz-cert", cert_pem, certp, sizeof(certp));
  memfile("fuzz-key", key_pem, keyp, sizeof(keyp));
  snprintf(conf, sizeof(conf),
           "[listener:fuzz]\n"
           "bind = 127.0.0.1:1\n"
           "cert = %s\n"
           "key = %s\n"
           "alpn = h2, http/1.1\n"
           "backend = 127.0.0.1:2\n"
           "\n"
           "[listener:fuzzmtls]\n"
           "bind = 127.0.0.1:3\n"
           "cert = %s\n"
           "key = %s\n"
           "verify_client = optional\n"
           "client_ca = %s\n"
           "allow_clients = cn:fuzz-client, san:dns:client.fuzz.test, "
           "san:ip:192.0.2.7, san:uri:spiffe://fuzz/client, "
           "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
           "backend = 127.0.0.1:4\n",
           certp, keyp, certp, keyp, certp);
  memfile("fuzz-config", conf, confp, sizeof(confp));
  tg_errors_t errs = {0};
  cfg = tg_config_load(confp, &errs);
  for (size_t i = 0; cfg && i < 2; i++) {
    char summary[512];
    ctxs[i] = tg_tls_server_ctx(cfg->listeners[i], &errs, summary, sizeof(summary));
  }
  if (!cfg || !ctxs[0] || !ctxs[1]) {
    for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "fuzz set-up: %s\n", errs.msgs[i]);
    abort();
  }
  tg_errors_free(&errs);
  return 0;
}

static tg_tls_io_t io;  /* the connection side's stream BIO state */
static uint8_t *stash; /* conn.c's tg_side_t stash */
static size_t stashlen;

/* flush_tls: the output block is handed over (to uv_write, here freed). */
static void drain(SSL *ssl) {
  (void)ssl;
  size_t n = 0, cap = 0;
  uint8_t *blk = tg_tls_io_take(&io, &n, &cap);
  if (blk) tg_buf_put(blk, cap);
}

/* tls_feed: the input window is the stash followed by the new bytes. */
static int feed(const uint8_t *p, size_t n) {
  if (stashlen) {
    uint8_t *q = realloc(stash, stashlen + n);
    if (!q) return -1;
    memcpy(q + stashlen, p, n);
    stash = q;
    stashlen += n;
    io.in = stash;
    io.inlen = stashlen;
  } else {
    io.in = p;
    io.inlen = n;
  }
  return 0;
}

/* tls_unfeed: what TLS left unread moves into the stash. */
static void unfeed(void) {
  size_t left = io.inlen;
  if (left == 0) {
    free(stash);
    stash = NULL;
    stashlen = 0;
  } else if (stashlen && io.in >= stash && io.in < stash + stashlen) {
    memmove(stash, io.in, left);
    stashlen = left;
  } else {
    uint8_t *q = malloc(left);
    if (q) memcpy(q, io.in, left);
    free(stash);
    stash = q;
    stashlen = q ? left : 0;
  }
  io.in = NULL;
  io.inlen = 0;
}

static int on_bytes_fed(SSL *ssl, tg_tls_note_t *note);

/* Returns 0 to go on reading, -1 when the connection would be closed. */
static int on_bytes(SSL *ssl, tg_tls_note_t *note, const uint8_t *p, size_t n) {
  if (feed(p, n) != 0) return -1;
  int r = on_bytes_fed(ssl, note);
  unfeed();
  return r;
}

static int on_bytes_fed(SSL *ssl, tg_tls_note_t *note) {
  char why[700];
  if (io.oom) return -1;
  if (!SSL_is_init_finished(ssl)) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
    if (r != 1 && e != SSL_ERROR_WANT_READ) {
      tg_tls_failure(ssl, note, why, sizeof(why));
      if (debug) fprintf(stderr, "handshake failed: %s\n", why);
    }
    drain(ssl);
    if (r != 1) return e == SSL_ERROR_WANT_READ ? 0 : -1;
    /* describe_tls() in conn.c */
    const uint8_t *alpn = NULL;
    unsigned alpnlen = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
    snprintf(why, sizeof(why), "%s %s %s %.*s", SSL_get_version(ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)), note->peer,
             (int)alpnlen, alpnlen ? (const char *)alpn : "");
    if (debug) fprintf(stderr, "handshake done: %s\n", why);
    ERR_clear_error();
    if (SSL_write(ssl, "HTTP/1.0 200 OK\r\n\r\n", 19) <= 0) ERR_clear_error();
    drain(ssl);
  }
  char plain[16384];
  for (;;) {
    ERR_clear_error();
    int r = SSL_read(ssl, plain, sizeof(plain));
    if (r > 0) continue;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      SSL_shutdown(ssl);
      drain(ssl);
      return -1;
    }
    tg_tls_failure(ssl, note, why, sizeof(why));
    if (debug) fprintf(stderr, "TLS error: %s\n", why);
    return -1;
  }
  drain(ssl);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int which = data[0] & 1;
  size_t chunk = data[0] >> 1;
  data++;
  size--;
  tg_tls_note_t note;
  memset(&note, 0, sizeof(note));
  note.conf = cfg->listeners[which];
  memset(&io, 0, sizeof(io));
  io.headroom = 64; /* conn.c reserves room for its write request */
  SSL *ssl = tg_tls_new_stream(ctxs[which], &note, NULL, &io);
  if (!ssl) abort();
  if (chunk == 0) chunk = size ? size : 1;
  for (size_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (on_bytes(ssl, &note, data + off, n) != 0) break;
  }
  if (debug) fprintf(stderr, "end: %s, peer '%s', reason '%s'\n", SSL_state_string_long(ssl),
                     note.peer, note.reason);
  SSL_free(ssl);
  tg_tls_io_free(&io);
  free(stash);
  stash = NULL;
  stashlen = 0;
  ERR_clear_error();
  return 0;
}
