/* OpenSSL 3.0 only: a token key as an EVP_PKEY.
 *
 * OpenSSL 3.0 has no asynchronous private-key hook short of ASYNC jobs
 * (fibers, which the sanitizer builds cannot follow) and Debian ships no
 * pkcs11 provider, so the key is a "foreign" legacy RSA / EC_KEY whose
 * RSA_METHOD / EC_KEY_METHOD signs synchronously with the token.  The
 * handshakes that use it run on the token's signer thread
 * (pkcs11_offload.c), where the signature is made in place; elsewhere (the
 * start-up test signature) it is queued to that thread and waited for.
 * OpenSSL keeps foreign keys on its legacy code path and never tries to
 * export them to a provider.  The deprecated API this needs is confined to
 * this file. */
#define OPENSSL_SUPPRESS_DEPRECATED 1 /* this file only */
#include "pkcs11.h"

#ifndef OPENSSL_IS_BORINGSSL
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <p11-kit/pkcs11.h>
#include <stdio.h>

#include "log.h"

static RSA_METHOD *rsa_meth;
static EC_KEY_METHOD *ec_meth;
static int rsa_idx = -1, ec_idx = -1;

/* Signing runs on the thread that drives the handshake (the signer
 * thread), so the reason of a failed signature waits here for
 * tg_tls_failure (tls.c), which runs on the same thread. */
static __thread char last_failure[300];

const char *tg_p11_take_failure(char *buf, size_t size) {
  if (!last_failure[0]) return NULL;
  snprintf(buf, size, "%s", last_failure);
  last_failure[0] = '\0';
  return buf;
}

static int rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
                        int padding) {
  tg_p11_key_t *k = RSA_get_ex_data(rsa, rsa_idx);
  char why[300];
  unsigned long mech = padding == RSA_PKCS1_PADDING ? CKM_RSA_PKCS
                       : padding == RSA_NO_PADDING  ? CKM_RSA_X_509
                                                    : 0;
  if (!k || !mech || flen < 0) return -1;
  int n = tg_p11_sign_wait(k, mech, NULL, 0, from, (size_t)flen, to, (size_t)RSA_size(rsa),
                           why, sizeof(why));
  if (n < 0) {
    tg_log(TG_LOG_WARN, "pkcs11: RSA signature failed: %s", why);
    snprintf(last_failure, sizeof(last_failure), "%s", why);
  }
  return n;
}

static ECDSA_SIG *ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
                              const BIGNUM *r, EC_KEY *eckey) {
  tg_p11_key_t *k = EC_KEY_get_ex_data(eckey, ec_idx);
  uint8_t rs[200];
  char why[300];
  if (!k || dlen < 0) return NULL;
  int n = tg_p11_sign_wait(k, CKM_ECDSA, NULL, 0, dgst, (size_t)dlen, rs, sizeof(rs), why,
                           sizeof(why));
  if (n <= 0 || n % 2) {
    tg_log(TG_LOG_WARN, "pkcs11: ECDSA signature failed: %s", n < 0 ? why : "odd length");
    snprintf(last_failure, sizeof(last_failure), "%s", n < 0 ? why : "odd length");
    return NULL;
  }
  ECDSA_SIG *s = ECDSA_SIG_new();
  BIGNUM *br = BN_bin2bn(rs, n / 2, NULL), *bs = BN_bin2bn(rs + n / 2, n / 2, NULL);
  if (!s || !br || !bs || !ECDSA_SIG_set0(s, br, bs)) {
    BN_free(br);
    BN_free(bs);
    ECDSA_SIG_free(s);
    return NULL;
  }
  return s;
}

static int ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig,
                   unsigned int *siglen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey) {
  ECDSA_SIG *s = ec_sign_sig(dgst, dlen, kinv, r, eckey);
  if (!s) return 0;
  unsigned char *p = sig;
  int n = i2d_ECDSA_SIG(s, &p);
  ECDSA_SIG_free(s);
  if (n <= 0) return 0;
  *siglen = (unsigned)n;
  return 1;
}

EVP_PKEY *tg_p11_ossl_pkey(tg_p11_key_t *k, EVP_PKEY *pub, char *err, size_t errsize) {
  if (!rsa_meth) {
    rsa_meth = RSA_meth_dup(RSA_get_default_method());
    ec_meth = EC_KEY_METHOD_new(EC_KEY_get_default_method());
    rsa_idx = RSA_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ec_idx = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (!rsa_meth || !ec_meth) {
      snprintf(err, errsize, "out of memory");
      return NULL;
    }
    RSA_meth_set1_name(rsa_meth, "tlsgate PKCS#11");
    RSA_meth_set_priv_enc(rsa_meth, rsa_priv_enc);
    EC_KEY_METHOD_set_sign(ec_meth, ec_sign, NULL, ec_sign_sig);
  }
  EVP_PKEY *pk = EVP_PKEY_new();
  if (!pk) return NULL;
  if (EVP_PKEY_id(pub) == EVP_PKEY_RSA) {
    const RSA *pr = EVP_PKEY_get0_RSA(pub);
    RSA *r = RSA_new();
    const BIGNUM *n = NULL, *e = NULL;
    RSA_get0_key(pr, &n, &e, NULL);
    if (r && RSA_set_method(r, rsa_meth) && RSA_set0_key(r, BN_dup(n), BN_dup(e), NULL) &&
        RSA_set_ex_data(r, rsa_idx, k) && EVP_PKEY_assign_RSA(pk, r))
      return pk;
    RSA_free(r);
  } else if (EVP_PKEY_id(pub) == EVP_PKEY_EC) {
    const EC_KEY *pe = EVP_PKEY_get0_EC_KEY(pub);
    EC_KEY *ec = EC_KEY_new();
    if (ec && EC_KEY_set_method(ec, ec_meth) && EC_KEY_set_group(ec, EC_KEY_get0_group(pe)) &&
        EC_KEY_set_public_key(ec, EC_KEY_get0_public_key(pe)) &&
        EC_KEY_set_ex_data(ec, ec_idx, k) && EVP_PKEY_assign_EC_KEY(pk, ec))
      return pk;
    EC_KEY_free(ec);
  }
  EVP_PKEY_free(pk);
  snprintf(err, errsize, "cannot wrap the token key (want an RSA or EC certificate)");
  return NULL;
}
#endif
