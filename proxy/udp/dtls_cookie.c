#include "dtls_cookie.h"

#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "secret.h"
#include "util.h"

/* ---- secrets -------------------------------------------------------------- */

int tg_cookie_keys_init(tg_cookie_keys_t *k, uint64_t period_ms, uint64_t now_ms) {
  memset(k, 0, sizeof(*k));
  if (RAND_bytes(k->cur, sizeof(k->cur)) != 1 ||
      RAND_bytes(k->prev, sizeof(k->prev)) != 1)
    return -1;
  k->cur_since_ms = now_ms;
  k->period_ms = period_ms ? period_ms : TG_COOKIE_PERIOD_MS;
  return uv_mutex_init(&k->mu) == 0 ? 0 : -1;
}

void tg_cookie_keys_destroy(tg_cookie_keys_t *k) {
  uv_mutex_destroy(&k->mu);
  OPENSSL_cleanse(k->cur, sizeof(k->cur));
  OPENSSL_cleanse(k->prev, sizeof(k->prev));
}

/* The secrets seen per dtls_cookie_secret_file, so that a reload after the
 * file was replaced keeps the one before as the previous secret. */
static struct {
  char *path;
  uint8_t cur[TG_COOKIE_SECRET_LEN], prev[TG_COOKIE_SECRET_LEN];
} shared[64];
static size_t nshared;

int tg_cookie_keys_load_shared(tg_cookie_keys_t *k, const char *path, char *err,
                               size_t errsize) {
  uint8_t buf[80], secret[TG_COOKIE_SECRET_LEN];
  size_t n = 0;
  /* secret.c: read without stdio copies, warns when group/others may read. */
  char *text = tg_secret_file_read(path, sizeof(buf), "the DTLS cookie secret", &n,
                                   err, errsize);
  if (!text) return -1;
  memcpy(buf, text, n);
  tg_secret_free(text, n);
  while (n > TG_COOKIE_SECRET_LEN && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
  if (n == TG_COOKIE_SECRET_LEN) {
    memcpy(secret, buf, n);
  } else if (n == 2 * TG_COOKIE_SECRET_LEN) {
    for (size_t i = 0; i < TG_COOKIE_SECRET_LEN; i++) {
      int hi = tg_hex_digit(buf[2 * i]), lo = tg_hex_digit(buf[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        OPENSSL_cleanse(buf, sizeof(buf));
        snprintf(err, errsize, "%s: 64 characters that are not all hex digits", path);
        return -1;
      }
      secret[i] = (uint8_t)(hi << 4 | lo);
    }
  } else {
    OPENSSL_cleanse(buf, sizeof(buf));
    snprintf(err, errsize, "%s: %zu bytes; want %d random bytes (openssl rand %d > "
             "FILE) or %d hex digits", path, n, TG_COOKIE_SECRET_LEN,
             TG_COOKIE_SECRET_LEN, 2 * TG_COOKIE_SECRET_LEN);
    return -1;
  }
  OPENSSL_cleanse(buf, sizeof(buf));
  if (errsize) err[0] = '\0';
  size_t i;
  for (i = 0; i < nshared; i++)
    if (strcmp(shared[i].path, path) == 0) break;
  if (i == nshared) {
    if (nshared == sizeof(shared) / sizeof(shared[0]) || !(shared[i].path = strdup(path))) {
      snprintf(err, errsize, "%s: too many cookie secret files", path);
      return -1;
    }
    nshared++;
    memcpy(shared[i].cur, secret, sizeof(secret));
    RAND_bytes(shared[i].prev, sizeof(shared[i].prev)); /* no previous one yet */
  } else if (CRYPTO_memcmp(shared[i].cur, secret, sizeof(secret)) != 0) {
    memcpy(shared[i].prev, shared[i].cur, sizeof(secret));
    memcpy(shared[i].cur, secret, sizeof(secret));
  }
  OPENSSL_cleanse(secret, sizeof(secret));
  uv_mutex_lock(&k->mu);
  memcpy(k->cur, shared[i].cur, sizeof(k->cur));
  memcpy(k->prev, shared[i].prev, sizeof(k->prev));
  k->period_ms = (uint64_t)1 << 62; /* rotated by replacing the file only */
  uv_mutex_unlock(&k->mu);
  return 0;
}

/* Rotates as many periods as have passed and copies both secrets out, so the
 * HMACs run outside the lock.  After two or more idle periods the previous
 * secret is replaced too: nothing made before then is accepted. */
static void snapshot(tg_cookie_keys_t *k, uint64_t now_ms,
                     uint8_t cur[TG_COOKIE_SECRET_LEN],
                     uint8_t prev[TG_COOKIE_SECRET_LEN]) {
  uv_mutex_lock(&k->mu);
  if (now_ms >= k->cur_since_ms + k->period_ms) {
    uint64_t periods = (now_ms - k->cur_since_ms) / k->period_ms;
    if (periods == 1) memcpy(k->prev, k->cur, sizeof(k->prev));
    else RAND_bytes(k->prev, sizeof(k->prev));
    RAND_bytes(k->cur, sizeof(k->cur));
    k->cur_since_ms += periods * k->period_ms;
  }
  memcpy(cur, k->cur, TG_COOKIE_SECRET_LEN);
  memcpy(prev, k->prev, TG_COOKIE_SECRET_LEN);
  uv_mutex_unlock(&k->mu);
}

/* family (1) | port (2) | address (4 or 16) */
static size_t peer_bytes(const struct sockaddr *sa, uint8_t out[19]) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    out[0] = 4;
    memcpy(out + 1, &a->sin_port, 2);
    memcpy(out + 3, &a->sin_addr, 4);
    return 7;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    out[0] = 6;
    memcpy(out + 1, &a->sin6_port, 2);
    memcpy(out + 3, &a->sin6_addr, 16);
    return 19;
  }
  return 0;
}

static int mac(const uint8_t *secret, const uint8_t *msg, size_t len,
               uint8_t out[TG_COOKIE_LEN]) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (!HMAC(EVP_sha256(), secret, TG_COOKIE_SECRET_LEN, msg, len, md, &mdlen) ||
      mdlen < TG_COOKIE_LEN)
    return -1;
  memcpy(out, md, TG_COOKIE_LEN);
  OPENSSL_cleanse(md, sizeof(md));
  return 0;
}

int tg_cookie_make(tg_cookie_keys_t *k, uint64_t now_ms,
                   const struct sockaddr *peer, uint8_t *out) {
  uint8_t msg[19], cur[TG_COOKIE_SECRET_LEN], prev[TG_COOKIE_SECRET_LEN];
  size_t len = peer_bytes(peer, msg);
  if (len == 0) return -1;
  snapshot(k, now_ms, cur, prev);
  int rc = mac(cur, msg, len, out);
  OPENSSL_cleanse(cur, sizeof(cur));
  OPENSSL_cleanse(prev, sizeof(prev));
  return rc;
}

int tg_cookie_valid(tg_cookie_keys_t *k, uint64_t now_ms,
                    const struct sockaddr *peer, const uint8_t *cookie,
                    size_t len) {
  uint8_t msg[19], cur[TG_COOKIE_SECRET_LEN], prev[TG_COOKIE_SECRET_LEN];
  uint8_t want[TG_COOKIE_LEN];
  size_t mlen = peer_bytes(peer, msg);
  if (mlen == 0 || len != TG_COOKIE_LEN) return 0;
  snapshot(k, now_ms, cur, prev);
  int ok = (mac(cur, msg, mlen, want) == 0 &&
            CRYPTO_memcmp(want, cookie, TG_COOKIE_LEN) == 0) ||
           (mac(prev, msg, mlen, want) == 0 &&
            CRYPTO_memcmp(want, cookie, TG_COOKIE_LEN) == 0);
  OPENSSL_cleanse(cur, sizeof(cur));
  OPENSSL_cleanse(prev, sizeof(prev));
  return ok;
}

/* ---- classifier ------------------------------------------------------------- */

#define CT_CHANGE_CIPHER_SPEC 20
#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPLICATION_DATA 23
#define HS_CLIENT_HELLO 1
#define HS_HELLO_VERIFY_REQUEST 3
#define DTLS1_0 0xfeff
#define DTLS1_2 0xfefd

static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t get24(const uint8_t *p) {
  return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

const char *tg_dgram_kind_name(tg_dgram_kind_t k) {
  switch (k) {
  case TG_DGRAM_SHORT: return "too short";
  case TG_DGRAM_GARBAGE: return "not DTLS";
  case TG_DGRAM_RECORD: return "not a ClientHello";
  case TG_DGRAM_CLIENT_HELLO: return "ClientHello";
  }
  return "?";
}

tg_dgram_kind_t tg_dgram_classify(const uint8_t *p, size_t n,
                                  tg_dgram_info_t *info) {
  memset(info, 0, sizeof(*info));
  info->kind = TG_DGRAM_SHORT;
  if (n < TG_DTLS_RECORD_HEADER) return info->kind;
  info->kind = TG_DGRAM_GARBAGE;
  uint8_t ct = p[0];
  uint16_t version = (uint16_t)get16(p + 1);
  size_t rlen = get16(p + 11);
  if (ct < CT_CHANGE_CIPHER_SPEC || ct > CT_APPLICATION_DATA) return info->kind;
  /* DTLS 1.0 and 1.2 record versions; a ClientHello may use either. */
  if (version != DTLS1_0 && version != DTLS1_2) return info->kind;
  if (rlen == 0 || rlen > n - TG_DTLS_RECORD_HEADER) return info->kind;
  info->content_type = ct;
  info->record_version = version;
  info->epoch = (uint16_t)get16(p + 3);
  memcpy(info->record_seq, p + 3, 8);
  info->kind = TG_DGRAM_RECORD;
  if (ct != CT_HANDSHAKE || info->epoch != 0) return info->kind;

  const uint8_t *m = p + TG_DTLS_RECORD_HEADER;
  if (rlen < TG_DTLS_HS_HEADER) {
    info->kind = TG_DGRAM_GARBAGE;
    return info->kind;
  }
  if (m[0] != HS_CLIENT_HELLO) return info->kind;
  /* From here on it claims to be a ClientHello: broken ones are garbage. */
  info->kind = TG_DGRAM_GARBAGE;
  size_t msglen = get24(m + 1), fragoff = get24(m + 6), fraglen = get24(m + 9);
  /* The cookie must be in the first fragment; later ones need state. */
  if (fragoff != 0 || fraglen > msglen || fraglen != rlen - TG_DTLS_HS_HEADER)
    return info->kind;
  const uint8_t *b = m + TG_DTLS_HS_HEADER, *end = b + fraglen;
  if (end - b < 2 + 32 + 1) return info->kind;
  uint16_t cv = (uint16_t)get16(b);
  if ((cv >> 8) != 0xfe) return info->kind;
  const uint8_t *random = b + 2;
  b += 2 + 32;
  size_t sidlen = *b++;
  if (sidlen > 32 || (size_t)(end - b) < sidlen + 1) return info->kind;
  b += sidlen;
  size_t cookielen = *b++;
  if ((size_t)(end - b) < cookielen) return info->kind;
  info->msg_seq = (uint16_t)get16(m + 4);
  info->client_version = cv;
  info->random = random;
  info->cookie = b;
  info->cookie_len = cookielen;
  info->kind = TG_DGRAM_CLIENT_HELLO;
  return info->kind;
}

size_t tg_dtls_build_hvr(const tg_dgram_info_t *ch, const uint8_t *cookie,
                         size_t cookie_len, uint8_t *out, size_t size) {
  size_t body = 3 + cookie_len;
  size_t total = TG_DTLS_RECORD_HEADER + TG_DTLS_HS_HEADER + body;
  if (cookie_len > 255 || total > size) return 0;
  uint8_t *o = out;
  *o++ = CT_HANDSHAKE;
  *o++ = DTLS1_0 >> 8;
  *o++ = DTLS1_0 & 0xff;
  memcpy(o, ch->record_seq, 8); /* RFC 6347 4.2.1: echo the record sequence */
  o += 8;
  *o++ = (uint8_t)((TG_DTLS_HS_HEADER + body) >> 8);
  *o++ = (uint8_t)((TG_DTLS_HS_HEADER + body) & 0xff);
  *o++ = HS_HELLO_VERIFY_REQUEST;
  *o++ = 0;
  *o++ = (uint8_t)(body >> 8);
  *o++ = (uint8_t)body;
  *o++ = 0; /* message_seq 0 */
  *o++ = 0;
  *o++ = 0; /* fragment_offset 0 */
  *o++ = 0;
  *o++ = 0;
  *o++ = 0; /* fragment_length = length */
  *o++ = (uint8_t)(body >> 8);
  *o++ = (uint8_t)body;
  *o++ = DTLS1_0 >> 8; /* server_version: DTLS 1.0 whatever gets negotiated */
  *o++ = DTLS1_0 & 0xff;
  *o++ = (uint8_t)cookie_len;
  memcpy(o, cookie, cookie_len);
  return total;
}
