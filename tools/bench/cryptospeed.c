/* cryptospeed -- what one core can do with the primitives of a TLS 1.3
 * handshake and record layer, measured the same way against BoringSSL
 * (Debian's android-libboringssl ships no `bssl speed`) and OpenSSL 3.
 * tools/bench/run compiles this file twice:
 *   cc cryptospeed.c -I/usr/include/android -L.../android -Wl,-rpath,... -lcrypto
 *   cc cryptospeed.c -lcrypto
 * Only EVP calls that both libraries share are used.
 *
 *   cryptospeed [SECONDS_PER_TEST]     (default 1)
 * prints one "name value unit" line per test:
 *   ecdsa_p256_sign, ecdsa_p256_verify, rsa2048_sign   ops/s (SHA-256 digest-sign of 32 bytes)
 *   x25519_ecdhe, p256_ecdhe           ops/s (generate a key + derive: a server's
 *                                       share of one key exchange)
 *   aes128gcm_16k                      MB/s (seal 16 KiB records, 10^6 bytes = 1 MB)
 */
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double secs = 1.0;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define RUN(name, unit, scale, body)                                    \
  do {                                                                  \
    long n_ = 0;                                                        \
    double t0_ = now(), el_;                                            \
    do {                                                                \
      for (int k_ = 0; k_ < 8; k_++, n_++) { body; }                    \
    } while ((el_ = now() - t0_) < secs);                               \
    printf("%-20s %12.1f %s\n", name, n_ * (scale) / el_, unit);         \
    fflush(stdout);                                                     \
  } while (0)

static void die(const char *what) {
  fprintf(stderr, "cryptospeed: %s failed\n", what);
  exit(1);
}

static EVP_PKEY *keygen(int type, int param) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(type, NULL);
  EVP_PKEY *k = NULL;
  if (!c || EVP_PKEY_keygen_init(c) <= 0) die("keygen_init");
  if (type == EVP_PKEY_EC && EVP_PKEY_CTX_set_ec_paramgen_curve_nid(c, param) <= 0)
    die("set curve");
  if (type == EVP_PKEY_RSA && EVP_PKEY_CTX_set_rsa_keygen_bits(c, param) <= 0)
    die("set bits");
  if (EVP_PKEY_keygen(c, &k) <= 0) die("keygen");
  EVP_PKEY_CTX_free(c);
  return k;
}

static size_t sign(EVP_PKEY *k, const unsigned char *msg, unsigned char *sig) {
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  size_t len = 1024;
  if (EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k) <= 0 ||
      EVP_DigestSign(m, sig, &len, msg, 32) <= 0)
    die("sign");
  EVP_MD_CTX_free(m);
  return len;
}

static void verify(EVP_PKEY *k, const unsigned char *msg, const unsigned char *sig,
                   size_t len) {
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  if (EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, k) <= 0 ||
      EVP_DigestVerify(m, sig, len, msg, 32) != 1)
    die("verify");
  EVP_MD_CTX_free(m);
}

/* One ECDHE as a server does it: fresh key, derive with the peer's share. */
static void ecdhe(int type, int nid, EVP_PKEY *peer) {
  EVP_PKEY *mine = keygen(type, nid);
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(mine, NULL);
  unsigned char secret[64];
  size_t len = sizeof(secret);
  if (!c || EVP_PKEY_derive_init(c) <= 0 || EVP_PKEY_derive_set_peer(c, peer) <= 0 ||
      EVP_PKEY_derive(c, secret, &len) <= 0)
    die("derive");
  EVP_PKEY_CTX_free(c);
  EVP_PKEY_free(mine);
}

int main(int argc, char **argv) {
  if (argc > 1) secs = atof(argv[1]);
  if (secs <= 0) secs = 1;
  unsigned char msg[32] = {1, 2, 3}, sig[1024];

  EVP_PKEY *p256 = keygen(EVP_PKEY_EC, NID_X9_62_prime256v1);
  RUN("ecdsa_p256_sign", "ops/s", 1, sign(p256, msg, sig));
  size_t siglen = sign(p256, msg, sig); /* DER length varies: sign once more */
  RUN("ecdsa_p256_verify", "ops/s", 1, verify(p256, msg, sig, siglen));

  EVP_PKEY *rsa = keygen(EVP_PKEY_RSA, 2048);
  RUN("rsa2048_sign", "ops/s", 1, sign(rsa, msg, sig));

  EVP_PKEY *xpeer = keygen(EVP_PKEY_X25519, 0);
  RUN("x25519_ecdhe", "ops/s", 1, ecdhe(EVP_PKEY_X25519, 0, xpeer));
  EVP_PKEY *ppeer = keygen(EVP_PKEY_EC, NID_X9_62_prime256v1);
  RUN("p256_ecdhe", "ops/s", 1, ecdhe(EVP_PKEY_EC, NID_X9_62_prime256v1, ppeer));

  static unsigned char in[16384], out[16384 + 32];
  unsigned char key[16] = {0}, iv[12] = {0}, tag[16];
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, iv) != 1) die("gcm init");
  RUN("aes128gcm_16k", "MB/s", sizeof(in) / 1e6, {
    int l = 0;
    iv[0]++;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(c, out, &l, in, sizeof(in)) != 1 ||
        EVP_EncryptFinal_ex(c, out + l, &l) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
      die("gcm");
  });
  EVP_CIPHER_CTX_free(c);
  return 0;
}
