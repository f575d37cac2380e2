#include "tickets.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "secret.h"
#include "tls_compat.h"

typedef struct {
  uint8_t name[16];
  uint8_t hmac[32];
  uint8_t aes[32];
} ticket_key_t;

typedef struct {
  ticket_key_t keys[TG_TICKET_KEYS_MAX];
  size_t n;
} ticket_keys_t;

static int keys_index = -1;

static void free_keys(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
                      long argl, void *argp) {
  if (!ptr) return;
  OPENSSL_cleanse(ptr, sizeof(ticket_keys_t));
  free(ptr);
}

/* Finds the key a ticket names, or for enc the issuing key. */
static int setup(SSL *ssl, uint8_t *name, uint8_t *iv, EVP_CIPHER_CTX *cctx,
                 int enc, const ticket_key_t **out) {
  SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
  ticket_keys_t *k = SSL_CTX_get_ex_data(ctx, keys_index);
  if (!k || k->n == 0) return -1;
  if (enc) {
    const ticket_key_t *key = &k->keys[0];
    memcpy(name, key->name, 16);
    if (RAND_bytes(iv, 16) != 1 ||
        !EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key->aes, iv))
      return -1;
    *out = key;
    return 1;
  }
  for (size_t i = 0; i < k->n; i++) {
    if (memcmp(name, k->keys[i].name, 16) != 0) continue;
    if (!EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->keys[i].aes, iv))
      return -1;
    *out = &k->keys[i];
    return i == 0 ? 1 : 2; /* 2: valid, but issue a ticket under the new key */
  }
  return 0; /* unknown key: full handshake */
}

static int ticket_cb(SSL *ssl, uint8_t *name, uint8_t *iv, EVP_CIPHER_CTX *cctx,
                     tg_ticket_mac_t *mac, int enc) {
  const ticket_key_t *key = NULL;
  int r = setup(ssl, name, iv, cctx, enc, &key);
  if (r <= 0) return r < 0 ? -1 : 0;
  if (tg_compat_ticket_mac_init(mac, key->hmac, sizeof(key->hmac)) != 0) return -1;
  return r;
}

int tg_tickets_load(SSL_CTX *ctx, const char *path, size_t *nkeys, char *err,
                    size_t errsize) {
  size_t n = 0;
  /* One byte more than the most keys, to tell a file that is too long. */
  uint8_t *buf = (uint8_t *)tg_secret_file_read(path, TG_TICKET_KEY_LEN * TG_TICKET_KEYS_MAX + 1,
                                                "session-ticket keys", &n, err, errsize);
  if (!buf) return -1;
  ticket_keys_t *k = calloc(1, sizeof(*k));
  int rc = -1;
  if (!k) {
    snprintf(err, errsize, "%s: out of memory", path);
  } else if (n == 0 || n % TG_TICKET_KEY_LEN != 0 || n > TG_TICKET_KEY_LEN * TG_TICKET_KEYS_MAX) {
    snprintf(err, errsize, "%s: %zu bytes; want 1 to %d keys of %d random bytes "
             "(make one with: openssl rand %d > FILE)", path, n, TG_TICKET_KEYS_MAX,
             TG_TICKET_KEY_LEN, TG_TICKET_KEY_LEN);
  } else {
    k->n = n / TG_TICKET_KEY_LEN;
    for (size_t i = 0; i < k->n; i++)
      memcpy(&k->keys[i], buf + i * TG_TICKET_KEY_LEN, TG_TICKET_KEY_LEN);
    if (keys_index < 0)
      keys_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_keys);
    if (keys_index < 0 || !SSL_CTX_set_ex_data(ctx, keys_index, k) || !tg_ctx_set_ticket_cb(ctx, ticket_cb)) {
      snprintf(err, errsize, "%s: cannot install the ticket keys", path);
    } else {
      *nkeys = k->n;
      rc = 0;
      k = NULL; /* owned by ctx now */
    }
  }
  tg_secret_free(buf, n);
  if (k) free_keys(NULL, k, NULL, 0, 0, NULL);
  return rc;
}
