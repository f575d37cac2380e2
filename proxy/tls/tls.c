#include "tls.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "keylog.h"
#include "log.h"
#include "pkcs11.h"
#include "tickets.h"
#include "secret.h"
#include "sni.h"
#include "tls_compat.h"
#include "util.h"

static int note_index = -1;

int tg_tls_init(char *err, size_t errsize) {
  tg_compat_init();
  note_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  if (note_index < 0) {
    snprintf(err, errsize, "SSL_get_ex_new_index failed");
    return -1;
  }
  return 0;
}

/* ---- identities -------------------------------------------------------- */

typedef struct {
  EVP_PKEY *key;
  X509 *cert;
  STACK_OF(X509) *chain;
} identity_t;

static void identity_free(identity_t *id) {
  EVP_PKEY_free(id->key);
  X509_free(id->cert);
  if (id->chain) sk_X509_pop_free(id->chain, X509_free);
  memset(id, 0, sizeof(*id));
}

static void warn_if_world_readable(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && (st.st_mode & S_IROTH))
    tg_log(TG_LOG_WARN, "%s holds a private key and is readable by everyone "
           "(chmod o-r)", path);
}

static int resolve_password(const char *spec, char *buf, size_t size,
                            char *err, size_t errsize) {
  buf[0] = '\0';
  if (!spec || !*spec) return 0;
  char why[300];
  if (tg_secret_read(spec, buf, size, why, sizeof(why)) != 0) {
    snprintf(err, errsize, "password: %s", why);
    return -1;
  }
  return 0;
}

static int load_pfx(const char *path, const char *pwspec, identity_t *id,
                    char *err, size_t errsize) {
  char pw[512], tlserr[300];
  if (resolve_password(pwspec, pw, sizeof(pw), err, errsize) != 0) return -1;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errsize, "%s: %s", path, strerror(errno));
    OPENSSL_cleanse(pw, sizeof(pw));
    return -1;
  }
  warn_if_world_readable(path);
  ERR_clear_error();
  PKCS12 *p12 = d2i_PKCS12_fp(f, NULL);
  fclose(f);
  if (!p12) {
    snprintf(err, errsize, "%s: not a PKCS#12 file (%s)", path,
             tg_tls_errors(tlserr, sizeof(tlserr)));
    OPENSSL_cleanse(pw, sizeof(pw));
    return -1;
  }
  int ok = PKCS12_parse(p12, pw, &id->key, &id->cert, &id->chain);
  PKCS12_free(p12);
  OPENSSL_cleanse(pw, sizeof(pw));
  if (!ok || !id->key || !id->cert) {
    unsigned long e = ERR_peek_error();
    const char *what = "cannot load";
    if (tg_compat_bad_password(e)) what = "wrong password";
    else if (tg_compat_unsupported_algorithm(e))
      what = "encrypted with an algorithm this build cannot read; convert "
             "it with: openssl pkcs12 -legacy -in OLD.pfx -nodes | "
             "openssl pkcs12 -export -out NEW.pfx";
    else if (ok) what = "holds no private key or no certificate";
    snprintf(err, errsize, "%s: %s (%s)", path, what,
             tg_tls_errors(tlserr, sizeof(tlserr)));
    identity_free(id);
    return -1;
  }
  return 0;
}

/* Reads a PEM certificate and the chain after it. */
static int load_pem_certs(const char *cert_path, identity_t *id, char *err,
                          size_t errsize) {
  char tlserr[300];
  ERR_clear_error();
  BIO *b = BIO_new_file(cert_path, "r");
  if (!b) {
    snprintf(err, errsize, "%s: %s", cert_path, strerror(errno));
    return -1;
  }
  id->cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
  if (!id->cert) {
    BIO_free(b);
    snprintf(err, errsize, "%s: no PEM certificate (%s)", cert_path,
             tg_tls_errors(tlserr, sizeof(tlserr)));
    return -1;
  }
  id->chain = sk_X509_new_null();
  X509 *x;
  while (id->chain && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
    sk_X509_push(id->chain, x);
  ERR_clear_error(); /* the loop ends on "no start line" */
  BIO_free(b);
  return 0;
}

/* which is set to the config key the failure belongs to. */
static int load_pem(const char *cert_path, const char *key_path,
                    const char *pwspec, identity_t *id, char *err,
                    size_t errsize, const char **which) {
  *which = "cert";
  char tlserr[300], pw[512];
  if (load_pem_certs(cert_path, id, err, errsize) != 0) return -1;
  BIO *b;
  *which = "key_password";
  if (resolve_password(pwspec, pw, sizeof(pw), err, errsize) != 0) return -1;
  *which = "key";
  b = BIO_new_file(key_path, "r");
  if (!b) {
    OPENSSL_cleanse(pw, sizeof(pw));
    snprintf(err, errsize, "%s: %s", key_path, strerror(errno));
    return -1;
  }
  warn_if_world_readable(key_path);
  id->key = PEM_read_bio_PrivateKey(b, NULL, NULL, pw);
  OPENSSL_cleanse(pw, sizeof(pw));
  BIO_free(b);
  if (!id->key) {
    unsigned long e = ERR_peek_error();
    tg_tls_errors(tlserr, sizeof(tlserr));
    /* The decrypt failure surfaces from PEM, EVP or (OpenSSL 3) a provider
     * depending on the library; its reason text is the common ground. */
    int badpw = tg_compat_bad_password(e) ||
                (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_BAD_DECRYPT) ||
                strcasestr(tlserr, "bad decrypt") || strcasestr(tlserr, "BAD_DECRYPT") ||
                strcasestr(tlserr, "BAD_PASSWORD_READ") || strcasestr(tlserr, "bad password read");
    if (badpw) *which = pwspec && *pwspec ? "key_password" : "key";
    snprintf(err, errsize, "%s: %s (%s)", key_path,
             badpw ? (pwspec && *pwspec ? "wrong password" : "encrypted, and no key_password given")
                   : "cannot load private key",
             tlserr);
    return -1;
  }
  return 0;
}

/* Checks an identity's certificate against its key and the clock, and
 * describes it for the -t summary. */
static int check_identity(const identity_t *id, const char *what, char *err,
                          size_t errsize, char *desc, size_t descsize) {
  char tlserr[300];
  if (id->key && !X509_check_private_key(id->cert, id->key)) {
    snprintf(err, errsize, "%s: private key does not match the certificate (%s)",
             what, tg_tls_errors(tlserr, sizeof(tlserr)));
    return -1;
  }
  char subject[256] = "", until[64] = "?";
  X509_NAME_oneline(X509_get_subject_name(id->cert), subject, sizeof(subject));
  BIO *mb = BIO_new(BIO_s_mem());
  if (mb && ASN1_TIME_print(mb, X509_get0_notAfter(id->cert))) {
    int n = BIO_read(mb, until, sizeof(until) - 1);
    until[n > 0 ? n : 0] = '\0';
  }
  BIO_free(mb);
  if (X509_cmp_current_time(X509_get0_notAfter(id->cert)) < 0) {
    snprintf(err, errsize, "%s: certificate %s expired on %s", what, subject,
             until);
    return -1;
  }
  if (X509_cmp_current_time(X509_get0_notBefore(id->cert)) > 0)
    tg_log(TG_LOG_WARN, "%s: certificate %s is not valid yet", what, subject);
  snprintf(desc, descsize, "%s (valid until %s)", subject, until);
  ERR_clear_error();
  return 0;
}

/* Adds the identity's chain certificates to ctx.  With skip_roots, a
 * self-signed certificate (a trust anchor, which the peer must hold anyway,
 * RFC 8446 4.4.2) is not sent: on DTLS it would cost a server that has not
 * yet seen its peer receive (the 3x rule) a whole round of retransmission. */
static int add_chain(SSL_CTX *ctx, identity_t *id, int skip_roots, char *err,
                     size_t errsize) {
  char tlserr[300];
  for (int i = 0; id->chain && i < (int)sk_X509_num(id->chain); i++) {
    X509 *c = sk_X509_value(id->chain, i);
    if (X509_cmp(c, id->cert) == 0) continue;
    if (skip_roots && X509_check_issued(c, c) == X509_V_OK) continue;
    if (!SSL_CTX_add1_chain_cert(ctx, c)) {
      snprintf(err, errsize, "cannot add chain certificate (%s)",
               tg_tls_errors(tlserr, sizeof(tlserr)));
      return -1;
    }
  }
  return 0;
}

static int use_identity(SSL_CTX *ctx, identity_t *id, int skip_roots, char *err,
                        size_t errsize) {
  char tlserr[300];
  if (!SSL_CTX_use_certificate(ctx, id->cert) ||
      !SSL_CTX_use_PrivateKey(ctx, id->key)) {
    snprintf(err, errsize, "cannot use identity (%s)",
             tg_tls_errors(tlserr, sizeof(tlserr)));
    return -1;
  }
  return add_chain(ctx, id, skip_roots, err, errsize);
}

/* A key on a PKCS#11 token (key = pkcs11:...): the certificate comes from a
 * PEM file (with its chain) or from the token. */
static int load_p11(const tg_listener_conf_t *l, const char *cert, const char *key,
                    const char *pin, identity_t *id, tg_p11_key_t **k, char *err,
                    size_t errsize, int *which) {
  *which = 0;
  if (tg_p11_is_uri(cert)) {
    id->cert = tg_p11_cert_load(l->pkcs11_module, cert, err, errsize);
    if (!id->cert) return -1;
  } else if (load_pem_certs(cert, id, err, errsize) != 0) {
    return -1;
  }
  *which = 1;
  *k = tg_p11_key_open(l->pkcs11_module, key, pin, err, errsize);
  return *k ? 0 : -1;
}

/* Loads the identity named by a PFX key (with password key) or by PEM
 * cert/key keys (names: the cert, key and key password keys) into ctx;
 * a key may be a PKCS#11 URI (logged into with the secret pin).  Returns 0
 * or -1 with an error added. */
static int load_identity(SSL_CTX *ctx, const tg_listener_conf_t *l,
                         const char *pfx_key, const char *pfx,
                         const char *pfx_pw, const char *cert,
                         const char *key, const char *key_pw,
                         const char *const names[3], const char *pin, int min13,
                         tg_errors_t *errs, char *desc, size_t descsize) {
  identity_t id = {0};
  char err[900], where[400];
  const char *errkey = pfx_key;
  tg_p11_key_t *p11 = NULL;
  int skip_roots = l->transport == TG_TRANSPORT_UDP;
  int rc;
  if (pfx && *pfx) {
    rc = load_pfx(pfx, pfx_pw, &id, err, sizeof(err));
  } else if (tg_p11_is_uri(key)) {
    int which = 0;
    rc = load_p11(l, cert, key, pin, &id, &p11, err, sizeof(err), &which);
    errkey = names[which];
  } else {
    rc = load_pem(cert, key, key_pw, &id, err, sizeof(err), &errkey);
    errkey = !strcmp(errkey, "cert") ? names[0] : !strcmp(errkey, "key") ? names[1] : names[2];
  }
  if (rc == 0)
    rc = check_identity(&id, pfx && *pfx ? pfx : cert, err, sizeof(err), desc,
                        descsize);
  if (rc == 0 && p11) {
    errkey = names[1];
    rc = tg_p11_use_key(ctx, p11, id.cert, min13, err, sizeof(err));
    if (rc == 0) rc = add_chain(ctx, &id, skip_roots, err, sizeof(err));
    size_t n = strlen(desc);
    if (rc == 0) snprintf(desc + n, descsize - n, ", %s", tg_p11_key_describe(p11));
  } else if (rc == 0) {
    rc = use_identity(ctx, &id, skip_roots, err, sizeof(err));
  }
  identity_free(&id);
  if (rc != 0)
    tg_errors_add(errs, "%s: %s",
                  tg_config_where(l, errkey, where, sizeof(where)), err);
  return rc;
}

static const char *const server_names[3] = {"cert", "key", "key_password"};
static const char *const backend_names[3] = {"backend_cert", "backend_key",
                                             "backend_key_password"};

/* Loads a CA file or hashed directory into ctx's verify store. */
static int load_ca(SSL_CTX *ctx, const tg_listener_conf_t *l, const char *key,
                   const char *path, int send_names, tg_errors_t *errs) {
  char tlserr[300], where[400];
  struct stat st;
  if (stat(path, &st) != 0) {
    tg_errors_add(errs, "%s: %s: %s",
                  tg_config_where(l, key, where, sizeof(where)), path,
                  strerror(errno));
    return -1;
  }
  int isdir = S_ISDIR(st.st_mode);
  ERR_clear_error();
  if (!SSL_CTX_load_verify_locations(ctx, isdir ? NULL : path,
                                     isdir ? path : NULL)) {
    tg_errors_add(errs, "%s: %s: cannot load CA certificates (%s)",
                  tg_config_where(l, key, where, sizeof(where)), path,
                  tg_tls_errors(tlserr, sizeof(tlserr)));
    return -1;
  }
  if (send_names && !isdir) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
    if (names) SSL_CTX_set_client_CA_list(ctx, names);
    ERR_clear_error();
  }
  return 0;
}

/* CRLs of a context, kept for the revocation check of resumed sessions
 * (the store's own list is not safe to walk while workers verify). */
static int crls_index = -1;

static void free_crls(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
                      long argl, void *argp) {
  if (ptr) sk_X509_CRL_pop_free(ptr, X509_CRL_free);
}

static int load_crl(SSL_CTX *ctx, const tg_listener_conf_t *l, const char *path,
                    tg_errors_t *errs) {
  char tlserr[300], where[400];
  BIO *b = BIO_new_file(path, "r");
  if (!b) {
    tg_errors_add(errs, "%s: %s: %s",
                  tg_config_where(l, "crl", where, sizeof(where)), path,
                  strerror(errno));
    return -1;
  }
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  X509_CRL *crl;
  int n = 0;
  if (crls_index < 0) crls_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_crls);
  STACK_OF(X509_CRL) *kept = crls_index < 0 ? NULL : sk_X509_CRL_new_null();
  if (kept) SSL_CTX_set_ex_data(ctx, crls_index, kept);
  while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
    X509_STORE_add_crl(store, crl);
    if (!kept || !sk_X509_CRL_push(kept, crl)) X509_CRL_free(crl);
    n++;
  }
  BIO_free(b);
  if (n == 0) {
    tg_errors_add(errs, "%s: %s: no PEM CRL found (%s)",
                  tg_config_where(l, "crl", where, sizeof(where)), path,
                  tg_tls_errors(tlserr, sizeof(tlserr)));
    return -1;
  }
  ERR_clear_error();
  /* Every level of the client's chain is checked against the CRL of its
   * issuer (a revoked intermediate refuses its leaves).  The leaf's
   * issuer's CRL is mandatory; one missing for a level above is tolerated
   * in verify_cb. */
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  return 0;
}

/* ---- peer identity and verification ------------------------------------ */

/* Copies a certificate name of len bytes for matching and logs.  A NUL
 * is kept visible as \0 (and the name is refused by the caller), so the
 * stored text is never a shorter name than the certificate's. */
static void copy_name(char *dst, size_t size, const uint8_t *src, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 1 < size; i++) {
    if (src[i] == 0) {
      if (o + 3 > size) break;
      dst[o++] = '\\';
      dst[o++] = '0';
    } else {
      dst[o++] = (char)src[i];
    }
  }
  dst[o] = '\0';
}

void tg_tls_peer_id(X509 *cert, tg_peer_id_t *id) {
  memset(id, 0, sizeof(*id));
  X509_NAME *subj = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
  if (idx >= 0) {
    ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    unsigned char *utf8 = NULL;
    int n = d ? ASN1_STRING_to_UTF8(&utf8, d) : -1;
    if (n >= 0) {
      copy_name(id->cn, sizeof(id->cn), utf8, (size_t)n);
      id->cnlen = (size_t)n;
      if (memchr(utf8, 0, (size_t)n)) id->bad = "CN contains a NUL byte";
    } else {
      id->bad = "CN cannot be decoded";
      ERR_clear_error();
    }
    OPENSSL_free(utf8);
    /* Which of several CNs is "the" CN differs between tools: none is. */
    if (X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0) id->cnlen = (size_t)-1;
  }
  unsigned int mdlen = 0;
  X509_digest(cert, EVP_sha256(), id->sha256, &mdlen);
  GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  for (int i = 0; gens && i < (int)sk_GENERAL_NAME_num(gens); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    if (g->type == GEN_DNS || g->type == GEN_URI) {
      const ASN1_STRING *v = g->type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
      const uint8_t *data = ASN1_STRING_get0_data(v);
      size_t len = (size_t)ASN1_STRING_length(v);
      if (memchr(data, 0, len))
        id->bad = g->type == GEN_DNS ? "a DNS SAN contains a NUL byte"
                                     : "a URI SAN contains a NUL byte";
      if (g->type == GEN_DNS && id->ndns < TG_PEER_MAX_NAMES) {
        id->dnslen[id->ndns] = len;
        copy_name(id->dns[id->ndns++], sizeof(id->dns[0]), data, len);
      } else if (g->type == GEN_URI && id->nuri < TG_PEER_MAX_NAMES) {
        id->urilen[id->nuri] = len;
        copy_name(id->uri[id->nuri++], sizeof(id->uri[0]), data, len);
      }
    } else if (g->type == GEN_IPADD && id->nip < TG_PEER_MAX_NAMES) {
      int len = ASN1_STRING_length(g->d.iPAddress);
      if (len == 4 || len == 16) {
        memcpy(id->ip[id->nip], ASN1_STRING_get0_data(g->d.iPAddress),
               (size_t)len);
        id->iplen[id->nip++] = (size_t)len;
      }
    }
  }
  GENERAL_NAMES_free(gens);
}

/* "CN=x DNS:a,b IP:1.2.3.4" for log lines. */
static void describe_peer(const tg_peer_id_t *id, char *buf, size_t size) {
  size_t n = (size_t)snprintf(buf, size, "CN=%s", id->cn[0] ? id->cn : "(none)");
  for (size_t i = 0; i < id->ndns && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%sDNS:%s", i ? "," : " ", id->dns[i]);
  for (size_t i = 0; i < id->nip && n < size; i++) {
    char a[INET6_ADDRSTRLEN] = "?";
    inet_ntop(id->iplen[i] == 4 ? AF_INET : AF_INET6, id->ip[i], a, sizeof(a));
    n += (size_t)snprintf(buf + n, size - n, "%sIP:%s", i ? "," : " ", a);
  }
  for (size_t i = 0; i < id->nuri && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%sURI:%s", i ? "," : " ", id->uri[i]);
}

/* ---- backend pins -------------------------------------------------------- */

/* One entry of a backend_pin list. */
static int parse_pin(const char *tok, size_t len, int *spki, uint8_t want[32],
                     char *why, size_t whysize) {
  char buf[200];
  if (len >= sizeof(buf)) {
    snprintf(why, whysize, "'%.40s...': too long", tok);
    return -1;
  }
  memcpy(buf, tok, len);
  buf[len] = '\0';
  if (strncmp(buf, "sha256:", 7) == 0) {
    *spki = 0;
    if (tg_parse_hex(buf + 7, want, 32) == 0) return 0;
    snprintf(why, whysize, "'%s': not 64 hex digits after sha256:", buf);
    return -1;
  }
  if (strncmp(buf, "spki-sha256:", 12) == 0) {
    uint8_t dec[64];
    const char *b64 = buf + 12;
    size_t blen = strlen(b64);
    *spki = 1;
    if (blen == 44 && b64[43] == '=' && b64[42] != '=' &&
        EVP_DecodeBlock(dec, (const uint8_t *)b64, (int)blen) == 33) {
      memcpy(want, dec, 32);
      return 0;
    }
    snprintf(why, whysize, "'%s': not a base64 SHA-256 (44 characters) after spki-sha256:", buf);
    return -1;
  }
  snprintf(why, whysize, "want sha256:HEX or spki-sha256:BASE64, not '%s'", buf);
  return -1;
}

/* Calls fn for each entry of a comma/space separated pin list; stops at
 * the first that fn answers non-zero for.  -1 on a malformed entry. */
static int each_pin(const char *list, char *why, size_t whysize,
                    int (*fn)(int spki, const uint8_t want[32], void *arg), void *arg) {
  const char *p = list;
  while (*p) {
    while (*p == ',' || *p == ' ' || *p == '\t') p++;
    size_t len = strcspn(p, ", \t");
    if (len == 0) break;
    int spki;
    uint8_t want[32];
    if (parse_pin(p, len, &spki, want, why, whysize) != 0) return -1;
    int r = fn ? fn(spki, want, arg) : 0;
    if (r) return r;
    p += len;
  }
  return 0;
}

int tg_tls_pins_check(const char *list, char *why, size_t whysize) {
  int r = each_pin(list, why, whysize, NULL, NULL);
  if (r == 0 && strspn(list, ", \t") == strlen(list)) {
    snprintf(why, whysize, "no pin given");
    return -1;
  }
  return r < 0 ? -1 : 0;
}

typedef struct {
  uint8_t cert[32], spki[32];
} leaf_digests_t;

static int pin_matches(int spki, const uint8_t want[32], void *arg) {
  const leaf_digests_t *d = arg;
  return CRYPTO_memcmp(want, spki ? d->spki : d->cert, 32) == 0;
}

static void hex32(const uint8_t *b, char out[65]) {
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* The leaf against every entry of backend_pin: 0 when one matches, or -1
 * with why. */
static int check_pins(const char *pins, X509 *cert, char *why, size_t whysize) {
  leaf_digests_t d;
  unsigned int len = 0;
  uint8_t *der = NULL;
  int dlen = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
  if (dlen <= 0 || !X509_digest(cert, EVP_sha256(), d.cert, &len)) {
    OPENSSL_free(der);
    snprintf(why, whysize, "certificate verify failed: cannot digest the backend's certificate");
    return -1;
  }
  SHA256(der, (size_t)dlen, d.spki);
  OPENSSL_free(der);
  int r = each_pin(pins, why, whysize, pin_matches, &d);
  if (r == 1) return 0;
  if (r == 0) {
    char hex[65], b64[49];
    hex32(d.cert, hex);
    EVP_EncodeBlock((uint8_t *)b64, d.spki, 32);
    snprintf(why, whysize, "certificate verify failed: backend certificate does not match "
             "backend_pin (its sha256:%s, spki-sha256:%s)", hex, b64);
  }
  return -1;
}

/* ---- peer verification ------------------------------------------------------ */

/* Records why a chain failed; the decisions on the leaf are made in
 * cert_verify_cb once the library is done with the chain. */
static int verify_cb(int ok, X509_STORE_CTX *sctx) {
  SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
  tg_tls_note_t *note = ssl ? SSL_get_ex_data(ssl, note_index) : NULL;
  if (!note || ok) return ok;
  const tg_listener_conf_t *l = note->conf;
  /* backend_verify = off: the chain is not judged; the pin is (in
   * cert_verify_cb, whatever way the library walks the chain). */
  if (note->backend && !l->backend_verify) return 1;
  /* crl: no CRL for a CA above the leaf's issuer (the root's, say) does
   * not refuse; a CRL that is there is checked at every level. */
  if (X509_STORE_CTX_get_error(sctx) == X509_V_ERR_UNABLE_TO_GET_CRL &&
      X509_STORE_CTX_get_error_depth(sctx) > 0) {
    X509_STORE_CTX_set_error(sctx, X509_V_OK);
    return 1;
  }
  if (!note->reason[0]) {
    note->result = TG_HS_VERIFY;
    int e = X509_STORE_CTX_get_error(sctx);
    int depth = X509_STORE_CTX_get_error_depth(sctx);
    X509 *cert = X509_STORE_CTX_get_current_cert(sctx);
    tg_peer_id_t id;
    char desc[300] = "";
    if (cert) {
      tg_tls_peer_id(cert, &id);
      describe_peer(&id, desc, sizeof(desc));
    }
    if (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      /* note->peer holds the name we asked for until verification passes. */
      snprintf(note->reason, sizeof(note->reason),
               "certificate verify failed: %s mismatch (wanted %s, got %s)",
               e == X509_V_ERR_HOSTNAME_MISMATCH ? "hostname" : "IP address",
               note->peer, desc);
    } else {
      snprintf(note->reason, sizeof(note->reason),
               "certificate verify failed: %s (depth %d, %s)",
               X509_verify_cert_error_string(e), depth, desc);
    }
  }
  return 0;
}

/* A refusal: its kind for the counters, and -1. */
static int refused(tg_tls_note_t *note, tg_hs_result_t r) {
  note->result = r;
  return -1;
}

/* What is decided on the leaf alone, on full and resumed handshakes:
 * names with a NUL, allow_clients, backend_pin.  0, or -1 with why and
 * note->result. */
static int check_leaf(tg_tls_note_t *note, X509 *leaf, char *why, size_t whysize) {
  const tg_listener_conf_t *l = note->conf;
  tg_peer_id_t id;
  char desc[300];
  tg_tls_peer_id(leaf, &id);
  describe_peer(&id, desc, sizeof(desc));
  if (id.bad) {
    snprintf(why, whysize, "certificate verify failed: %s certificate refused: %s (%s)",
             note->backend ? "backend" : "client", id.bad, desc);
    return refused(note, TG_HS_VERIFY);
  }
  if (note->backend) {
    if (l->backend_pin[0] && check_pins(l->backend_pin, leaf, why, whysize) != 0)
      return refused(note, TG_HS_VERIFY);
  } else if (!tg_acl_match(&l->allow_clients, &id)) {
    snprintf(why, whysize, "client certificate %s is not in allow_clients", desc);
    return refused(note, TG_HS_ACL);
  }
  snprintf(note->peer, sizeof(note->peer), "%s", desc);
  return 0;
}

/* Replaces the library's chain verification (same call on both
 * libraries): the chain as the store and verify_cb judge it, then the
 * leaf checks, which therefore run however the chain walk ended. */
static int cert_verify_cb(X509_STORE_CTX *sctx, void *arg) {
  (void)arg;
  SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
  tg_tls_note_t *note = ssl ? SSL_get_ex_data(ssl, note_index) : NULL;
  int ok = X509_verify_cert(sctx);
  if (!note) return ok;
  X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
  if (note->backend && !note->conf->backend_verify) {
    ok = 1; /* verify_cb let every chain error pass; the pin decides */
    X509_STORE_CTX_set_error(sctx, X509_V_OK);
  }
  if (ok <= 0) return ok;
  char why[300];
  if (!leaf || check_leaf(note, leaf, why, sizeof(why)) != 0) {
    if (!leaf) {
      snprintf(why, sizeof(why), "certificate verify failed: no certificate");
      note->result = TG_HS_VERIFY;
    }
    snprintf(note->reason, sizeof(note->reason), "%s", why);
    X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  return 1;
}

/* 1 when a CRL of crls from cert's issuer lists it.  Only ever refuses,
 * so the CRL's signature (checked by full handshakes) is not needed. */
static int in_crls(STACK_OF(X509_CRL) *crls, X509 *cert) {
  for (size_t i = 0; crls && i < (size_t)sk_X509_CRL_num(crls); i++) {
    X509_CRL *crl = sk_X509_CRL_value(crls, i);
    X509_REVOKED *rev = NULL;
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(cert)) == 0 &&
        X509_CRL_get0_by_serial(crl, &rev, (ASN1_INTEGER *)X509_get0_serialNumber(cert)) == 1)
      return 1;
  }
  return 0;
}

/* tg_der_fn: -1 when a CRL of arg lists the certificate (or it does not
 * parse: a session's chain was parsed once already). */
static int kept_revoked(void *arg, const uint8_t *der, size_t len) {
  const uint8_t *p = der;
  X509 *x = d2i_X509(NULL, &p, (long)len);
  int rc = !x || in_crls(arg, x) ? -1 : 0;
  X509_free(x);
  return rc;
}

/* Whether a CRL of the SSL's context lists the leaf (0), or a CA
 * certificate above it (1), the levels a full handshake checks
 * (X509_V_FLAG_CRL_CHECK_ALL): the certificates of the client's chain the
 * session kept, and the issuers client_ca holds, up to a self-signed one.
 * -1 when none is listed. */
static int chain_revoked(SSL *ssl, X509 *leaf) {
  SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
  STACK_OF(X509_CRL) *crls = crls_index < 0 ? NULL : SSL_CTX_get_ex_data(ctx, crls_index);
  if (in_crls(crls, leaf)) return 0;
  if (tg_compat_each_peer_chain_cert(ssl, leaf, kept_revoked, crls) != 0) return 1;
  X509_STORE_CTX *sctx = X509_STORE_CTX_new();
  int revoked = 0;
  if (sctx && X509_STORE_CTX_init(sctx, SSL_CTX_get_cert_store(ctx), leaf, NULL)) {
    X509 *cur = leaf, *issuer = NULL;
    X509_up_ref(cur);
    for (int depth = 0; depth < 10 && !revoked && X509_check_issued(cur, cur) != X509_V_OK &&
                        X509_STORE_CTX_get1_issuer(&issuer, sctx, cur) == 1;
         depth++) {
      X509_free(cur);
      cur = issuer;
      revoked = in_crls(crls, cur);
    }
    X509_free(cur);
  }
  X509_STORE_CTX_free(sctx);
  ERR_clear_error();
  return revoked ? 1 : -1;
}

/* The session id context each server context was given (policy_digest),
 * for the check of resumed sessions. */
static int sid_index = -1;

static void free_sid(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl,
                     void *argp) {
  free(ptr);
}

/* A resumed session was made under the context the SSL is on now: the
 * library checks this before it resumes; checked again here because the
 * context may have been switched by SNI (a session of one section must
 * never resume in another). */
static int session_in_context(SSL *ssl) {
  const uint8_t *want = sid_index < 0 ? NULL : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sid_index);
  unsigned len = 0;
  const uint8_t *got = SSL_SESSION_get0_id_context(SSL_get_session(ssl), &len);
  return !want || (len == 32 && CRYPTO_memcmp(got, want, 32) == 0);
}

int tg_tls_check_session(SSL *ssl, tg_tls_note_t *note, char *why, size_t whysize) {
  const tg_listener_conf_t *l = note->conf;
  int reused = SSL_session_reused(ssl);
  X509 *peer = tg_get_peer_certificate(ssl);
  int rc = 0, revoked;
  why[0] = '\0';
  if (note->backend) {
    if (l->backend_pin[0] && !peer) {
      snprintf(why, whysize, "certificate verify failed: the backend presented no "
               "certificate, and backend_pin needs one");
      rc = refused(note, TG_HS_VERIFY);
    } else if (l->backend_pin[0]) {
      rc = check_leaf(note, peer, why, whysize);
    }
  } else if (reused && !session_in_context(ssl)) {
    snprintf(why, whysize, "resumed session refused: it was made by another listener "
             "section or under another client policy");
    rc = -1;
  } else if (l->verify_client != TG_VERIFY_NONE && !(l->psk[0] && SSL_get_psk_identity(ssl))) {
    /* (A client of the listener's psk is authenticated by its key; no
     * certificate is asked.  Only where psk is configured, so a resumption
     * PSK can never count as one.) */
    if (!peer) {
      if (l->verify_client == TG_VERIFY_REQUIRE || l->allow_clients.n) {
        snprintf(why, whysize, "certificate required (no client certificate%s%s)",
                 reused ? " in the resumed session" : " presented",
                 l->allow_clients.n ? ", and allow_clients admits only certificates" : "");
        rc = refused(note, TG_HS_NO_CERT);
      }
    } else if (check_leaf(note, peer, why, whysize) != 0) {
      rc = -1;
    } else if (reused && X509_cmp_current_time(X509_get0_notAfter(peer)) < 0) {
      snprintf(why, whysize, "certificate verify failed: client certificate %s has "
               "expired since the session began", note->peer);
      rc = refused(note, TG_HS_VERIFY);
    } else if (reused && l->crl[0] && (revoked = chain_revoked(ssl, peer)) >= 0) {
      snprintf(why, whysize, "certificate verify failed: certificate revoked (client "
               "certificate %s%s, in the current crl; resumed session)", note->peer,
               revoked ? ": a CA certificate above it" : "");
      rc = refused(note, TG_HS_VERIFY);
    }
  }
  if (rc == 0 && peer && !note->peer[0]) {
    tg_peer_id_t id;
    tg_tls_peer_id(peer, &id);
    describe_peer(&id, note->peer, sizeof(note->peer));
  }
  X509_free(peer);
  /* A refused session is not offered again from the cache. */
  if (rc != 0 && !note->backend) SSL_CTX_remove_session(SSL_get_SSL_CTX(ssl), SSL_get_session(ssl));
  return rc;
}

/* ---- contexts ------------------------------------------------------------ */

static int alpn_select(SSL *ssl, const uint8_t **out, uint8_t *outlen,
                       const uint8_t *in, unsigned inlen, void *arg) {
  const uint8_t *prefs = arg;
  uint8_t *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, prefs, (unsigned)strlen((const char *)prefs),
                            in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

/* "h2, http/1.1" -> wire format, kept for the context's lifetime. */
static uint8_t *alpn_wire(const char *list) {
  size_t n = strlen(list);
  uint8_t *w = calloc(1, n + 2);
  if (!w) return NULL;
  size_t o = 0;
  const char *p = list;
  while (*p) {
    while (*p == ',' || *p == ' ') p++;
    size_t len = strcspn(p, ", ");
    if (len == 0) break;
    if (len > 255) {
      free(w);
      return NULL;
    }
    w[o++] = (uint8_t)len;
    memcpy(w + o, p, len);
    o += len;
    p += len;
  }
  w[o] = 0;
  return w;
}

static int alpn_index = -1;

static void free_alpn(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
                      long argl, void *argp) {
  free(ptr);
}

static SSL_CTX *new_ctx(const tg_listener_conf_t *l, const char *vkey,
                        tg_errors_t *errs) {
  char tlserr[300], where[400];
  int dtls = l->transport == TG_TRANSPORT_UDP;
  SSL_CTX *ctx = SSL_CTX_new(dtls ? DTLS_method() : TLS_method());
  if (!ctx) {
    tg_errors_add(errs, "%s: SSL_CTX_new: %s",
                  tg_config_where(l, vkey, where, sizeof(where)),
                  tg_tls_errors(tlserr, sizeof(tlserr)));
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, dtls ? DTLS1_2_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | TG_SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (l->keylog_file[0] && tg_keylog_attach(ctx, l, errs) != 0) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* ---- OCSP stapling -------------------------------------------------------- */

/* Staples the DER OCSP response in path to ctx's certificate. */
static int load_ocsp(SSL_CTX *ctx, const tg_listener_conf_t *l, const char *path,
                     tg_errors_t *errs, size_t *len) {
  char where[400];
  FILE *f = fopen(path, "rb");
  if (!f) {
    tg_errors_add(errs, "%s: %s: %s", tg_config_where(l, "ocsp", where, sizeof(where)),
                  path, strerror(errno));
    return -1;
  }
  uint8_t *der = malloc(65536);
  size_t n = der ? fread(der, 1, 65536, f) : 0;
  int more = fgetc(f) != EOF;
  fclose(f);
  /* A DER OCSPResponse is a SEQUENCE: the least a file must look like. */
  if (!der || n < 8 || more || der[0] != 0x30) {
    tg_errors_add(errs, "%s: %s: not a DER OCSP response (make one with openssl ocsp "
                  "... -respout FILE)", tg_config_where(l, "ocsp", where, sizeof(where)), path);
    free(der);
    return -1;
  }
  *len = n;
  if (tg_compat_staple_ocsp(ctx, der, n) != 0) {
    char tlserr[300];
    tg_errors_add(errs, "%s: cannot staple %s (%s)", tg_config_where(l, "ocsp", where, sizeof(where)),
                  path, tg_tls_errors(tlserr, sizeof(tlserr)));
    return -1;
  }
  return 0;
}

/* The verify mode of a listener's client side.  An ACL admits
 * certificates: optional + allow_clients refuses a client without one, as
 * require does. */
static int client_verify_mode(const tg_listener_conf_t *l) {
  if (l->verify_client == TG_VERIFY_NONE) return SSL_VERIFY_NONE;
  if (l->verify_client == TG_VERIFY_REQUIRE || l->allow_clients.n)
    return SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  return SSL_VERIFY_PEER;
}

/* ---- several identities, chosen by SNI ------------------------------------ */

#define TG_MAX_IDENTITIES 16

typedef struct {
  SSL_CTX *ctx[TG_MAX_IDENTITIES]; /* [0] owns this table */
  int n;
} sni_t;

static int sni_index = -1;

static void free_sni(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
                     long argl, void *argp) {
  sni_t *t = ptr;
  if (!t) return;
  for (int i = 1; i < t->n; i++) SSL_CTX_free(t->ctx[i]);
  free(t);
}

/* Serves the first identity whose certificate names the requested server,
 * the first identity when none does or no name was sent. */
static int sni_cb(SSL *ssl, int *alert, void *arg) {
  sni_t *t = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  /* OpenSSL falls back to the first context's callback when an SNI
   * section (tg_tls_vhosts_attach) moved the SSL to one without any: the
   * identities of another section are not this section's to choose. */
  if (!name || SSL_get_SSL_CTX(ssl) != t->ctx[0]) return SSL_TLSEXT_ERR_OK;
  for (int i = 0; i < t->n; i++) {
    X509 *cert = SSL_CTX_get0_certificate(t->ctx[i]);
    if (cert && X509_check_host(cert, name, strlen(name), 0, NULL) == 1) {
      if (i > 0) SSL_set_SSL_CTX(ssl, t->ctx[i]);
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx_one(const tg_listener_conf_t *l, const char *pfx, int first,
                               tg_errors_t *errs, char *summary, size_t sumsize);

SSL_CTX *tg_tls_server_ctx(const tg_listener_conf_t *l, tg_errors_t *errs,
                           char *summary, size_t sumsize) {
  char where[400];
  if (!strchr(l->pfx, ','))
    return server_ctx_one(l, l->pfx, 1, errs, summary, sumsize);
  sni_t *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  size_t before = errs->n, n = 0, item = 0;
  const char *p = l->pfx;
  while (*p) {
    while (*p == ',' || *p == ' ') p++;
    size_t len = strcspn(p, ",");
    while (len && p[len - 1] == ' ') len--;
    if (len == 0) break;
    char path[1024], sum[1024];
    snprintf(path, sizeof(path), "%.*s", (int)len, p);
    p += strcspn(p, ",");
    if (t->n == TG_MAX_IDENTITIES) {
      tg_errors_add(errs, "%s: more than %d identities",
                    tg_config_where(l, "pfx", where, sizeof(where)), TG_MAX_IDENTITIES);
      break;
    }
    size_t mark = errs->n;
    SSL_CTX *ctx = server_ctx_one(l, path, t->n == 0, errs, sum, sizeof(sum));
    tg_config_errors_for_item(l, "pfx", item++, errs, mark); /* its own line */
    if (!ctx) continue;
    t->ctx[t->n++] = ctx;
    n += (size_t)snprintf(summary + n, n < sumsize ? sumsize - n : 0, "%s%s",
                          t->n == 1 ? "" : "; SNI alternative: ", t->n == 1 ? sum : strstr(sum, "identity ") ? strstr(sum, "identity ") + 9 : sum);
    if (n >= sumsize) n = sumsize - 1;
  }
  if (errs->n > before || t->n == 0) {
    for (int i = 0; i < t->n; i++) SSL_CTX_free(t->ctx[i]);
    free(t);
    return NULL;
  }
  if (sni_index < 0) sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_sni);
  SSL_CTX_set_ex_data(t->ctx[0], sni_index, t);
  SSL_CTX_set_tlsext_servername_callback(t->ctx[0], sni_cb);
  SSL_CTX_set_tlsext_servername_arg(t->ctx[0], t);
  return t->ctx[0];
}

/* ---- SNI virtual hosts: sections sharing a bind -------------------------- */

typedef struct {
  tg_sni_table_t names;
  size_t n;
  tg_tls_vhost_t v[];
} vhosts_t;

static int vhosts_index = -1;

static void free_vhosts(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
                        long argl, void *argp) {
  vhosts_t *t = ptr;
  if (!t) return;
  tg_sni_table_free(&t->names);
  free(t);
}

/* The ClientHello of a connection on a shared bind (see tls.h). */
static int vhost_hello(SSL *ssl, const uint8_t *ext, size_t extlen) {
  tg_tls_note_t *note = SSL_get_ex_data(ssl, note_index);
  vhosts_t *t = vhosts_index < 0 ? NULL : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), vhosts_index);
  /* A second ClientHello (after HelloRetryRequest) keeps the first choice:
   * it must name the same server (RFC 8446 4.1.2). */
  if (!t || (note && note->section)) return TG_HELLO_GO_ON;
  char name[TG_SNI_NAME_MAX + 2], esc[4 * 64 + 8];
  int len = ext ? tg_sni_from_ext(ext, extlen, name, sizeof(name)) : 0;
  if (len < 0) {
    if (note) snprintf(note->reason, sizeof(note->reason), "malformed server_name extension");
    return TG_HELLO_REFUSE;
  }
  int k = tg_sni_choose(&t->names, len ? name : NULL, (size_t)len);
  if (k < 0) {
    tg_sni_escape(name, (size_t)(len < 64 ? len : 64), esc, sizeof(esc));
    if (note)
      snprintf(note->reason, sizeof(note->reason), "strict_sni: %s%s%s matches no "
               "server_name of bind %s", len ? "server name '" : "no server name sent",
               len ? esc : "", len ? "'" : "", t->v[0].conf->bind.text);
    return TG_HELLO_REFUSE;
  }
  const tg_tls_vhost_t *v = &t->v[k];
  if (v->ctx != SSL_get_SSL_CTX(ssl) && !SSL_set_SSL_CTX(ssl, v->ctx)) return TG_HELLO_REFUSE;
  SSL_set_verify(ssl, client_verify_mode(v->conf),
                 v->conf->verify_client != TG_VERIFY_NONE ? verify_cb : NULL);
  SSL_set_min_proto_version(ssl, v->conf->min_version == 13 ? TLS1_3_VERSION
                                                            : TLS1_2_VERSION);
  if (note) {
    note->conf = v->conf;
    note->section = v->section;
    note->vhosts = &t->names;
    note->vhost = k;
  }
  /* The section signs with a token key and the step that signs must not
   * run on the loop (OpenSSL build): stop, the caller moves the next step
   * to the token's thread, where this callback goes on at once. */
  return note && tg_p11_hs_off_loop(ssl) ? TG_HELLO_AGAIN : TG_HELLO_GO_ON;
}

TG_DEFINE_HELLO_CB(vhost_hello_cb, vhost_hello)

const tg_sni_table_t *tg_tls_vhost_names(SSL *ssl, int *section) {
  tg_tls_note_t *note = ssl ? SSL_get_ex_data(ssl, note_index) : NULL;
  if (!note || !note->vhosts) return NULL;
  *section = note->vhost;
  return note->vhosts;
}

int tg_tls_vhosts_attach(SSL_CTX *front, const tg_tls_vhost_t *v, size_t n, int dflt,
                         int strict, tg_errors_t *errs) {
  char where[400];
  vhosts_t *t = calloc(1, sizeof(*t) + n * sizeof(t->v[0]));
  if (!t) {
    tg_errors_add(errs, "%s: out of memory", tg_config_where(v[0].conf, "server_name",
                                                            where, sizeof(where)));
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    t->v[i] = v[i];
    if (tg_sni_table_add(&t->names, v[i].conf->server_name, (int)i) != 0) {
      tg_errors_add(errs, "%s: cannot build the name table",
                    tg_config_where(v[i].conf, "server_name", where, sizeof(where)));
      free_vhosts(NULL, t, NULL, 0, 0, NULL);
      return -1;
    }
  }
  t->n = n;
  t->names.dflt = dflt;
  t->names.strict = strict;
  if (vhosts_index < 0)
    vhosts_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_vhosts);
  if (vhosts_index < 0 || !SSL_CTX_set_ex_data(front, vhosts_index, t)) {
    free_vhosts(NULL, t, NULL, 0, 0, NULL);
    tg_errors_add(errs, "%s: SSL_CTX_set_ex_data failed",
                  tg_config_where(v[0].conf, "server_name", where, sizeof(where)));
    return -1;
  }
  tg_ctx_set_hello_cb(front, vhost_hello_cb);
  return 0;
}

/* The session id context: a digest of what decides whether a client is
 * admitted (listener, verify_client, client_ca identity, crl path,
 * allow_clients).  Not the CRL's content: a CRL refresh does not end all
 * resumption; revocation is re-checked on each resumption instead.  The
 * same config gives the same digest on every instance (shared tickets). */
static void digest_file(EVP_MD_CTX *md, const char *path) {
  struct stat st;
  FILE *f = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? fopen(path, "rb") : NULL;
  if (!f) return;
  char buf[4096];
  size_t r;
  while ((r = fread(buf, 1, sizeof(buf), f)) > 0) EVP_DigestUpdate(md, buf, r);
  fclose(f);
}

static int policy_digest(const tg_listener_conf_t *l, uint8_t out[32]) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
    EVP_MD_CTX_free(md);
    return -1;
  }
  char head[64];
  int n = snprintf(head, sizeof(head), "tlsgate session policy 1|%d|", l->verify_client);
  EVP_DigestUpdate(md, head, (size_t)n);
  EVP_DigestUpdate(md, l->name, strlen(l->name) + 1);
  if (l->verify_client != TG_VERIFY_NONE) {
    EVP_DigestUpdate(md, l->client_ca, strlen(l->client_ca) + 1);
    /* A CA file counts by its content, a hashed directory by the names and
     * contents of its files (in name order: the same on every instance). */
    struct stat st;
    if (stat(l->client_ca, &st) == 0 && S_ISDIR(st.st_mode)) {
      struct dirent **names = NULL;
      int count = scandir(l->client_ca, &names, NULL, alphasort);
      for (int i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", l->client_ca, names[i]->d_name);
        if (names[i]->d_name[0] != '.') {
          EVP_DigestUpdate(md, names[i]->d_name, strlen(names[i]->d_name) + 1);
          digest_file(md, path);
        }
        free(names[i]);
      }
      free(names);
    } else {
      digest_file(md, l->client_ca);
    }
    EVP_DigestUpdate(md, l->crl, strlen(l->crl) + 1);
    for (size_t i = 0; i < l->allow_clients.n; i++) {
      const tg_acl_entry_t *e = &l->allow_clients.entries[i];
      n = snprintf(head, sizeof(head), "|%d:", (int)e->kind);
      EVP_DigestUpdate(md, head, (size_t)n);
      EVP_DigestUpdate(md, e->value, strlen(e->value) + 1);
    }
  }
  /* PSK clients are authenticated by the psk file: a session of an identity
   * that was removed or re-keyed must not resume.  (Only the digest of the
   * file goes into the context, never a key.) */
  if (strncmp(l->psk, "file:", 5) == 0) {
    char perr[300];
    size_t plen = 0;
    char *text = tg_secret_file_read(l->psk + 5, 1 << 20, "pre-shared keys", &plen,
                                     perr, sizeof(perr));
    EVP_DigestUpdate(md, "|psk:", 5);
    if (text) {
      EVP_DigestUpdate(md, text, plen);
      tg_secret_free(text, plen);
    }
  }
  unsigned len = 0;
  int ok = EVP_DigestFinal_ex(md, out, &len) && len == 32;
  EVP_MD_CTX_free(md);
  return ok ? 0 : -1;
}

/* One identity's context: everything of the listener's TLS settings. */
static SSL_CTX *server_ctx_one(const tg_listener_conf_t *l, const char *pfx, int first,
                               tg_errors_t *errs, char *summary, size_t sumsize) {
  char tlserr[300], where[400];
  size_t before = errs->n;
  SSL_CTX *ctx = new_ctx(l, "secure", errs);
  if (!ctx) return NULL;
  if (l->min_version == 13) SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  /* Only AEAD suites with forward secrecy unless the user says otherwise;
   * DTLS adds what CoAP devices speak (PSK, CCM_8), see tls_compat.h. */
  const char *ciphers = l->ciphers[0] ? l->ciphers
                        : l->transport == TG_TRANSPORT_UDP
                            ? TG_DTLS_DEFAULT_CIPHERS
                            : "ECDHE+AESGCM:ECDHE+CHACHA20";
  if (!tg_ctx_set_cipher_list(ctx, ciphers))
    tg_errors_add(errs, "%s: '%s': %s",
                  tg_config_where(l, "ciphers", where, sizeof(where)), ciphers,
                  tg_tls_errors(tlserr, sizeof(tlserr)));
  char desc[400] = "none (PSK only)";
  if ((pfx && pfx[0]) || l->cert[0])
    load_identity(ctx, l, "pfx", pfx, l->pfx_password, l->cert, l->key,
                  l->key_password, server_names, l->pkcs11_pin, l->min_version == 13,
                  errs, desc, sizeof(desc));
  size_t ocsp_len = 0;
  if (first && l->ocsp[0]) load_ocsp(ctx, l, l->ocsp, errs, &ocsp_len);
  /* On every server context: on a shared bind the front one's ticket
   * callbacks serve every section. */
  if (tg_compat_keep_peer_chain(ctx) != 0)
    tg_errors_add(errs, "%s: cannot keep client chains in sessions (%s)",
                  tg_config_where(l, "secure", where, sizeof(where)),
                  tg_tls_errors(tlserr, sizeof(tlserr)));
  if (l->verify_client != TG_VERIFY_NONE) {
    SSL_CTX_set_verify(ctx, client_verify_mode(l), verify_cb);
    SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, NULL);
    load_ca(ctx, l, "client_ca", l->client_ca, 1, errs);
    if (l->crl[0]) load_crl(ctx, l, l->crl, errs);
  }
  if (l->alpn[0]) {
    uint8_t *wire = alpn_wire(l->alpn);
    if (!wire || !wire[0]) {
      free(wire);
      tg_errors_add(errs, "%s: want a comma-separated list of protocol names",
                    tg_config_where(l, "alpn", where, sizeof(where)));
    } else {
      if (alpn_index < 0)
        alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_alpn);
      SSL_CTX_set_ex_data(ctx, alpn_index, wire);
      SSL_CTX_set_alpn_select_cb(ctx, alpn_select, wire);
    }
  }
  /* Sessions (cache and tickets alike) resume only under the policy they
   * were verified by; revocation is re-checked on resumption. */
  uint8_t sid_ctx[32];
  uint8_t *kept = malloc(sizeof(sid_ctx));
  if (sid_index < 0) sid_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_sid);
  if (policy_digest(l, sid_ctx) != 0 || !kept || sid_index < 0 ||
      !SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx))) {
    free(kept);
    tg_errors_add(errs, "%s: cannot compute the session context",
                  tg_config_where(l, "client_ca", where, sizeof(where)));
  } else {
    memcpy(kept, sid_ctx, sizeof(sid_ctx));
    if (!SSL_CTX_set_ex_data(ctx, sid_index, kept)) free(kept);
  }
  size_t nkeys = 0;
  if (l->ticket_key_file[0]) {
    char terr[400];
    if (tg_tickets_load(ctx, l->ticket_key_file, &nkeys, terr, sizeof(terr)) != 0)
      tg_errors_add(errs, "%s: %s",
                    tg_config_where(l, "ticket_key_file", where, sizeof(where)), terr);
  }
  if (errs->n > before) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  snprintf(summary, sumsize, "TLS >= 1.%d, identity %s, clients: %s%s%s",
           l->min_version == 13 ? 3 : 2, desc,
           l->verify_client == TG_VERIFY_REQUIRE    ? "certificate required"
           : l->verify_client == TG_VERIFY_OPTIONAL && l->allow_clients.n
               ? "certificate optional, but allow_clients admits only certificates: "
                 "a client without one is refused (as with require)"
           : l->verify_client == TG_VERIFY_OPTIONAL ? "certificate optional"
                                                    : "no certificate asked",
           l->crl[0] ? ", CRL checked (also on resumption)" : "",
           l->allow_clients.n ? ", allow_clients ACL" : "");
  if (nkeys > 0) {
    size_t n = strlen(summary);
    snprintf(summary + n, sumsize - n, ", %zu shared ticket key%s", nkeys, nkeys == 1 ? "" : "s");
  }
  if (ocsp_len) {
    size_t n = strlen(summary);
    snprintf(summary + n, sumsize - n, ", OCSP stapled (%zu bytes)", ocsp_len);
  }
  return ctx;
}

SSL_CTX *tg_tls_backend_ctx(const tg_listener_conf_t *l, tg_errors_t *errs,
                            char *summary, size_t sumsize) {
  size_t before = errs->n;
  SSL_CTX *ctx = new_ctx(l, "backend_secure", errs);
  if (!ctx) return NULL;
  char desc[400] = "none";
  if (l->backend_pfx[0] || l->backend_cert[0])
    load_identity(ctx, l, "backend_pfx", l->backend_pfx, l->backend_pfx_password,
                  l->backend_cert, l->backend_key, l->backend_key_password,
                  backend_names, l->backend_pkcs11_pin, 0, errs, desc, sizeof(desc));
  if (l->backend_ca[0]) {
    load_ca(ctx, l, "backend_ca", l->backend_ca, 0, errs);
  } else if (l->backend_verify) {
    if (!SSL_CTX_set_default_verify_paths(ctx)) ERR_clear_error();
  }
  /* Backends get what clients get: AEAD with forward secrecy (TLS), the
   * listener default for DTLS, unless backend_ciphers says otherwise. */
  char tlserr[300], where[400];
  int dtls = l->transport == TG_TRANSPORT_UDP;
  const char *ciphers = l->backend_ciphers && l->backend_ciphers[0] ? l->backend_ciphers
                        : dtls ? TG_DTLS_DEFAULT_CIPHERS
                               : "ECDHE+AESGCM:ECDHE+CHACHA20";
  if (!tg_ctx_set_cipher_list(ctx, ciphers))
    tg_errors_add(errs, "%s: '%s': %s",
                  tg_config_where(l, "backend_ciphers", where, sizeof(where)), ciphers,
                  tg_tls_errors(tlserr, sizeof(tlserr)));
  if (!dtls && l->backend_min_version == 13)
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
  SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, NULL);
  if (errs->n > before) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  snprintf(summary, sumsize, "TLS to backends, >= 1.%d, client identity %s, verify %s%s%s%s",
           !dtls && l->backend_min_version == 13 ? 3 : 2,
           desc, l->backend_verify ? "chain+name" : "off",
           l->backend_pin[0] ? ", pinned " : "",
           l->backend_pin[0] ? l->backend_pin : "",
           l->backend_ciphers && l->backend_ciphers[0] ? ", backend_ciphers set" : "");
  return ctx;
}

tg_tls_note_t *tg_tls_get_note(const SSL *ssl) {
  return note_index < 0 ? NULL : SSL_get_ex_data(ssl, note_index);
}

void tg_tls_set_note(SSL *ssl, tg_tls_note_t *note) { SSL_set_ex_data(ssl, note_index, note); }

void tg_tls_handshake_step(SSL *ssl, tg_tls_note_t *note, tg_hs_step_t *out) {
  tg_tls_clear_errors();
  int r = SSL_do_handshake(ssl);
  int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
  out->why[0] = '\0';
  if (r == 1) {
    out->rc = 1;
  } else if (e == SSL_ERROR_WANT_READ || e == TG_SSL_ERROR_WANT_PRIVATE_KEY) {
    out->rc = 0;
  } else if (e == TG_SSL_ERROR_HELLO_AGAIN) {
    out->rc = 2;
  } else {
    out->rc = -1;
    tg_tls_failure(ssl, note, out->why, sizeof(out->why));
  }
}

static SSL *tls_setup(SSL *ssl, tg_tls_note_t *note, const char *host);

SSL *tg_tls_new(SSL_CTX *ctx, tg_tls_note_t *note, const char *host) {
  SSL *ssl = SSL_new(ctx);
  if (!ssl) return NULL;
  BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
  if (!rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(ssl);
    return NULL;
  }
  /* An empty memory BIO must say "retry", not "EOF". */
  BIO_set_mem_eof_return(rbio, -1);
  BIO_set_mem_eof_return(wbio, -1);
  SSL_set_bio(ssl, rbio, wbio);
  return tls_setup(ssl, note, host);
}

SSL *tg_tls_new_stream(SSL_CTX *ctx, tg_tls_note_t *note, const char *host,
                       tg_tls_io_t *io) {
  SSL *ssl = SSL_new(ctx);
  BIO *bio = ssl ? tg_tls_bio_new(io) : NULL;
  if (!bio) {
    SSL_free(ssl);
    return NULL;
  }
  SSL_set_bio(ssl, bio, bio); /* one reference serves both directions */
  return tls_setup(ssl, note, host);
}

/* Verification notes, SNI and the expected peer name for either kind. */
static SSL *tls_setup(SSL *ssl, tg_tls_note_t *note, const char *host) {
  SSL_set_ex_data(ssl, note_index, note);
  if (note->backend) {
    const tg_listener_conf_t *l = note->conf;
    const char *sni = l->backend_sni[0] ? l->backend_sni : host;
    struct in6_addr tmp;
    int host_is_ip = inet_pton(AF_INET, host, &tmp) == 1 ||
                     inet_pton(AF_INET6, host, &tmp) == 1;
    if (l->backend_sni[0] || !host_is_ip) SSL_set_tlsext_host_name(ssl, sni);
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    /* The certificate must name what we asked for: the SNI name if one is
     * configured, else the backend's host name or address. */
    if (l->backend_sni[0] || !host_is_ip) {
      X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      /* BoringSSL poisons the param (every verify fails) on length 0. */
      X509_VERIFY_PARAM_set1_host(p, sni, strlen(sni));
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(p, host);
    }
    snprintf(note->peer, sizeof(note->peer), "%s", sni);
    SSL_set_connect_state(ssl);
  } else {
    SSL_set_accept_state(ssl);
  }
  return ssl;
}

const char *tg_tls_errors(char *buf, unsigned long size) {
  size_t n = 0;
  unsigned long e;
  buf[0] = '\0';
  while ((e = ERR_get_error()) != 0) {
    const char *reason = ERR_reason_error_string(e);
    char tmp[64];
    if (!reason) {
      snprintf(tmp, sizeof(tmp), "error %lx", e);
      reason = tmp;
    }
    if (n > 0 && strstr(buf, reason)) continue; /* drop repeats */
    int w = snprintf(buf + n, size - n, "%s%s", n ? ": " : "", reason);
    if (w < 0 || (size_t)w >= size - n) break;
    n += (size_t)w;
  }
  if (n == 0) snprintf(buf, size, "no error detail");
  return buf;
}

const char *tg_tls_failure(SSL *ssl, tg_tls_note_t *note, char *buf,
                           size_t size) {
  char tlserr[400];
  unsigned long first = ERR_peek_error();
  tg_tls_errors(tlserr, sizeof(tlserr));
  tg_hs_result_t r = TG_HS_PROTOCOL;
  char p11[300];
  if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
      ERR_GET_REASON(first) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    snprintf(buf, size, "certificate required (no client certificate presented)");
    r = TG_HS_NO_CERT;
  } else if (tg_p11_take_failure(p11, sizeof(p11))) {
    snprintf(buf, size, "PKCS#11 signature failed: %s (%s)", p11, tlserr);
  } else if (note && note->reason[0]) {
    snprintf(buf, size, "%s (%s)", note->reason, tlserr);
    r = tg_tls_hs_result(note);
  } else {
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    /* BoringSSL answers INVALID_CALL before any certificate was verified
     * (e.g. no shared cipher): not a verification failure. */
    if (vr != X509_V_OK && vr != X509_V_ERR_INVALID_CALL) {
      snprintf(buf, size, "certificate verify failed: %s (%s)",
               X509_verify_cert_error_string(vr), tlserr);
      r = TG_HS_VERIFY;
    } else {
      snprintf(buf, size, "%s", tlserr);
    }
  }
  if (note) note->result = r;
  return buf;
}

tg_hs_result_t tg_tls_hs_result(const tg_tls_note_t *note) {
  return note && note->result != TG_HS_OK ? note->result : TG_HS_PROTOCOL;
}
