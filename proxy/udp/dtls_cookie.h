/* DTLS on the wire before any state exists: the datagram classifier, the
 * stateless cookie of RFC 6347 section 4.2.1 and the HelloVerifyRequest.
 *
 * Everything here is a pure function of its arguments (plus the rotating
 * secret), so the UDP listener can decide about a datagram from an unknown
 * peer without allocating anything for it, and the unit tests can drive it
 * without sockets.
 *
 * Cookie = HMAC-SHA256(secret, family | port | address), truncated to
 * TG_COOKIE_LEN bytes.  The secret is random and rotates every period; the
 * previous one is still accepted for one period, so a cookie lives between
 * one and two periods. */
#ifndef TG_DTLS_COOKIE_H
#define TG_DTLS_COOKIE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define TG_COOKIE_LEN 16        /* <= 32 (RFC 7925 / CoAP constrained peers) */
#define TG_COOKIE_SECRET_LEN 32
#define TG_COOKIE_PERIOD_MS 60000

#define TG_DTLS_RECORD_HEADER 13
#define TG_DTLS_HS_HEADER 12
/* record header + handshake header + server_version + cookie length byte */
#define TG_HVR_LEN (TG_DTLS_RECORD_HEADER + TG_DTLS_HS_HEADER + 3 + TG_COOKIE_LEN)

/* ---- secrets -------------------------------------------------------------- */

typedef struct {
  uv_mutex_t mu; /* workers share one secret per listener */
  uint8_t cur[TG_COOKIE_SECRET_LEN];
  uint8_t prev[TG_COOKIE_SECRET_LEN];
  uint64_t cur_since_ms; /* monotonic time the current secret was made */
  uint64_t period_ms;
} tg_cookie_keys_t;

/* Fresh random secrets.  Returns 0, or -1 when the RNG or mutex fails. */
int tg_cookie_keys_init(tg_cookie_keys_t *k, uint64_t period_ms, uint64_t now_ms);
void tg_cookie_keys_destroy(tg_cookie_keys_t *k);

/* dtls_cookie_secret_file: makes the secret of path current, shared by
 * every instance that reads the same file, with no timed rotation (the
 * instances could not agree on one).  Rotation is replacing the file: the
 * secret the process saw in path before stays valid as the previous one
 * (for one rotation).  The file holds 32 bytes (`openssl rand 32`) or 64
 * hex digits and an optional newline.  Returns 0, or -1 with a reason in
 * err (never the secret).  Process-wide memory per path; not thread-safe
 * (start-up and reloads run on the main thread). */
int tg_cookie_keys_load_shared(tg_cookie_keys_t *k, const char *path, char *err,
                               size_t errsize);

/* Writes the cookie for peer at time now into out[TG_COOKIE_LEN].
 * Returns 0, or -1 for an address family other than IPv4/IPv6. */
int tg_cookie_make(tg_cookie_keys_t *k, uint64_t now_ms,
                   const struct sockaddr *peer, uint8_t *out);

/* Returns 1 when cookie was made for peer with the current or the previous
 * secret, 0 otherwise (wrong length, address, port, or too old). */
int tg_cookie_valid(tg_cookie_keys_t *k, uint64_t now_ms,
                    const struct sockaddr *peer, const uint8_t *cookie,
                    size_t len);

/* ---- classifier ------------------------------------------------------------- */

typedef enum {
  TG_DGRAM_SHORT = 0,    /* shorter than a DTLS record header */
  TG_DGRAM_GARBAGE,      /* not DTLS, a truncated record, or a broken ClientHello */
  TG_DGRAM_RECORD,       /* a well-formed DTLS record that is not a ClientHello */
  TG_DGRAM_CLIENT_HELLO  /* an epoch-0 ClientHello whose cookie field is readable */
} tg_dgram_kind_t;

typedef struct {
  tg_dgram_kind_t kind;
  uint8_t content_type;
  uint16_t record_version;
  uint16_t epoch;
  uint8_t record_seq[8];     /* epoch (2) + sequence number (6), as sent */
  /* TG_DGRAM_CLIENT_HELLO only: */
  uint16_t msg_seq;
  uint16_t client_version;
  const uint8_t *random;     /* 32 bytes, points into the datagram */
  const uint8_t *cookie;     /* points into the datagram */
  size_t cookie_len;
} tg_dgram_info_t;

/* Classifies the first record of a datagram. */
tg_dgram_kind_t tg_dgram_classify(const uint8_t *p, size_t n,
                                  tg_dgram_info_t *info);

const char *tg_dgram_kind_name(tg_dgram_kind_t k);

/* Builds the HelloVerifyRequest answering the ClientHello described by ch
 * (record sequence number echoed, DTLS 1.0 version fields as RFC 6347
 * 4.2.1 asks).  Returns its length (TG_HVR_LEN for a TG_COOKIE_LEN cookie),
 * or 0 when out is too small. */
size_t tg_dtls_build_hvr(const tg_dgram_info_t *ch, const uint8_t *cookie,
                         size_t cookie_len, uint8_t *out, size_t size);

#endif
