/* PKCS#11 keys: module loading, RFC 7512 URIs, login rules, one signer
 * thread per token, and the TLS glue (see pkcs11.h). */
#include "pkcs11.h"

#include <ctype.h>
#include <dlfcn.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "tls.h"

#define TG_P11_DEFAULT_MODULE "p11-kit-proxy.so"

static int check_only;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

void tg_p11_set_check_only(int on) { check_only = on; }
const char *tg_p11_default_module(void) { return TG_P11_DEFAULT_MODULE; }

/* ---- return values -------------------------------------------------------- */

static const char *rv_name(CK_RV rv) {
  switch (rv) {
#define N(x) case x: return #x;
    N(CKR_OK) N(CKR_HOST_MEMORY) N(CKR_SLOT_ID_INVALID) N(CKR_GENERAL_ERROR)
    N(CKR_FUNCTION_FAILED) N(CKR_ARGUMENTS_BAD) N(CKR_DEVICE_ERROR)
    N(CKR_DEVICE_MEMORY) N(CKR_DEVICE_REMOVED) N(CKR_KEY_HANDLE_INVALID)
    N(CKR_KEY_TYPE_INCONSISTENT) N(CKR_KEY_FUNCTION_NOT_PERMITTED)
    N(CKR_MECHANISM_INVALID) N(CKR_MECHANISM_PARAM_INVALID)
    N(CKR_OBJECT_HANDLE_INVALID) N(CKR_OPERATION_ACTIVE) N(CKR_PIN_INCORRECT)
    N(CKR_PIN_LOCKED) N(CKR_PIN_EXPIRED) N(CKR_PIN_LEN_RANGE)
    N(CKR_SESSION_CLOSED) N(CKR_SESSION_HANDLE_INVALID) N(CKR_TOKEN_NOT_PRESENT)
    N(CKR_TOKEN_NOT_RECOGNIZED) N(CKR_USER_ALREADY_LOGGED_IN)
    N(CKR_USER_NOT_LOGGED_IN) N(CKR_USER_TYPE_INVALID) N(CKR_DATA_LEN_RANGE)
    N(CKR_BUFFER_TOO_SMALL) N(CKR_CRYPTOKI_NOT_INITIALIZED)
    N(CKR_CRYPTOKI_ALREADY_INITIALIZED) N(CKR_FUNCTION_NOT_SUPPORTED)
    N(CKR_CANCEL) N(CKR_FUNCTION_CANCELED)
#undef N
  default: {
    static __thread char buf[32];
    snprintf(buf, sizeof(buf), "CKR 0x%lx", (unsigned long)rv);
    return buf;
  }
  }
}

/* The token (or the session on it) is gone: the key may come back. */
static int rv_is_gone(CK_RV rv) {
  return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
         rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
         rv == CKR_DEVICE_ERROR || rv == CKR_OBJECT_HANDLE_INVALID ||
         rv == CKR_KEY_HANDLE_INVALID || rv == CKR_USER_NOT_LOGGED_IN ||
         rv == CKR_TOKEN_NOT_RECOGNIZED;
}

/* Blank-padded fixed-size PKCS#11 text to a C string. */
static void padded(char *out, size_t outsize, const CK_UTF8CHAR *in, size_t inlen) {
  while (inlen && (in[inlen - 1] == ' ' || in[inlen - 1] == '\0')) inlen--;
  if (inlen >= outsize) inlen = outsize - 1;
  memcpy(out, in, inlen);
  out[inlen] = '\0';
}

/* ---- modules -------------------------------------------------------------- */

typedef struct module {
  char path[512];
  void *dl;
  CK_FUNCTION_LIST_PTR f;
  struct module *next;
} module_t;

static module_t *modules;

/* ---- keeping modules on the system's libcrypto ----------------------------
 * Modules (SoftHSM, OpenSC, ...) link the system's OpenSSL.  In the
 * BoringSSL build, BoringSSL's libcrypto is already in the global scope
 * and, being unversioned, would satisfy their OpenSSL symbol references:
 * the first digest a module computes would crash.  So modules are loaded
 * with RTLD_DEEPBIND (their own dependencies first), and so are the
 * modules p11-kit's proxy loads while we initialize it: the executable
 * exports a dlopen that adds RTLD_DEEPBIND while loading_module is set
 * (main thread, during module_get).  libc's own dlopen is called directly:
 * the sanitizers' interceptor refuses RTLD_DEEPBIND. */
static int loading_module;

typedef void *(*dlopen_fn)(const char *, int);

static dlopen_fn next_dlopen(void) {
  static dlopen_fn fn;
  if (!fn) fn = (dlopen_fn)dlsym(RTLD_NEXT, "dlopen");
  return fn;
}

static dlopen_fn libc_dlopen(void) {
  static dlopen_fn fn;
  if (!fn) {
    void *libc = next_dlopen()("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    fn = libc ? (dlopen_fn)dlsym(libc, "dlopen") : NULL;
    if (!fn) fn = next_dlopen();
  }
  return fn;
}

void *dlopen(const char *file, int flags) {
  if (loading_module && file) return libc_dlopen()(file, flags | RTLD_DEEPBIND);
  return next_dlopen()(file, flags);
}

static void finalize_all(void);

/* RTLD_DEEPBIND would hand a module libc's malloc while everything else
 * uses the sanitizer's (memory libc allocates for the module, e.g. by
 * strdup, would be freed by the wrong allocator): sanitizer builds never
 * deep-bind, and the BoringSSL one cannot keep modules apart from BoringSSL
 * at all.  A link namespace of their own (dlmopen LM_ID_NEWLM) was tried
 * and fails too: the namespace gets a second libc, whose thread-exit code
 * runs the sanitizer's thread destructors (crash at exit), and glib-linked
 * modules that p11-kit's proxy loads crash in their constructors there.
 * The OpenSSL build shares the system's libcrypto with its modules and
 * needs no deep binding. */
#if defined(OPENSSL_IS_BORINGSSL) && \
    (defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__))
#define TG_P11_NO_DEEPBIND 1
#elif defined(OPENSSL_IS_BORINGSSL)
#define TG_P11_DEEPBIND 1
#endif

static module_t *module_get(const char *path, char *err, size_t errsize) {
  if (!path || !*path) path = TG_P11_DEFAULT_MODULE;
  for (module_t *m = modules; m; m = m->next)
    if (strcmp(m->path, path) == 0) return m;
#ifdef TG_P11_NO_DEEPBIND
  snprintf(err, errsize, "pkcs11_module %s: this build (BoringSSL with a sanitizer) "
           "cannot load PKCS#11 modules: they link the system's OpenSSL, whose names "
           "BoringSSL's take; use the release or the OpenSSL build", path);
  return NULL;
#endif
  dlerror();
  /* p11-kit's proxy links no libcrypto; it must not be deep-bound itself,
   * or its dlopen calls would bypass ours. */
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
#ifdef TG_P11_DEEPBIND
  loading_module = strstr(base, "p11-kit") == NULL;
#else
  (void)base;
#endif
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
#ifdef TG_P11_DEEPBIND
  loading_module = 1;
#endif
  if (!dl) {
    loading_module = 0;
    const char *e = dlerror();
    snprintf(err, errsize, "pkcs11_module %s: cannot load (%s)%s", path,
             e ? e : "?",
             strcmp(path, TG_P11_DEFAULT_MODULE) == 0
                 ? "; install p11-kit-modules or set pkcs11_module"
                 : "");
    return NULL;
  }
  CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
  CK_FUNCTION_LIST_PTR f = NULL;
  CK_RV rv = gfl ? gfl(&f) : CKR_FUNCTION_NOT_SUPPORTED;
  if (rv != CKR_OK || !f) {
    loading_module = 0;
    snprintf(err, errsize, "pkcs11_module %s: not a PKCS#11 module (C_GetFunctionList: %s)",
             path, gfl ? rv_name(rv) : "missing");
    dlclose(dl);
    return NULL;
  }
  CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
  rv = f->C_Initialize(&args); /* p11-kit's proxy loads its modules here */
  loading_module = 0;
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    snprintf(err, errsize, "pkcs11_module %s: C_Initialize: %s", path, rv_name(rv));
    dlclose(dl);
    return NULL;
  }
  module_t *m = calloc(1, sizeof(*m));
  if (!m) {
    snprintf(err, errsize, "out of memory");
    return NULL;
  }
  snprintf(m->path, sizeof(m->path), "%s", path);
  m->dl = dl;
  m->f = f;
  if (!modules) atexit(finalize_all);
  m->next = modules;
  modules = m;
  return m;
}

/* ---- RFC 7512 URIs ---------------------------------------------------------- */

typedef struct {
  char token[33], manufacturer[33], serial[17], model[17];
  char slot_description[65], slot_manufacturer[33];
  char library_manufacturer[33], library_description[33];
  char object[256];
  uint8_t id[256];
  size_t idlen;
  int has_id, has_slot_id;
  CK_SLOT_ID slot_id;
  long type; /* -1: any */
  char module_path[512];
} uri_t;

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes [p, p+n) into out (size outsize, NUL-terminated unless
 * binary).  Returns the length, or -1. */
static int pct_decode(const char *p, size_t n, uint8_t *out, size_t outsize) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)p[i];
    if (c == '%') {
      if (i + 2 >= n) return -1;
      int h = hexval(p[i + 1]), l = hexval(p[i + 2]);
      if (h < 0 || l < 0) return -1;
      c = h * 16 + l;
      i += 2;
    }
    if (o + 1 >= outsize) return -1;
    out[o++] = (uint8_t)c;
  }
  out[o] = 0;
  return (int)o;
}

static int uri_parse(const char *s, uri_t *u, char *why, size_t whysize) {
  memset(u, 0, sizeof(*u));
  u->type = -1;
  if (!tg_p11_is_uri(s)) {
    snprintf(why, whysize, "not a pkcs11: URI");
    return -1;
  }
  const char *p = s + 7;
  int inquery = 0;
  while (*p) {
    size_t n = strcspn(p, inquery ? "&" : ";?");
    const char *eq = memchr(p, '=', n);
    if (n == 0) goto next;
    if (!eq) {
      snprintf(why, whysize, "'%.*s' is not attribute=value", (int)(n > 40 ? 40 : n), p);
      return -1;
    }
    {
      size_t an = (size_t)(eq - p), vn = n - an - 1;
      const char *v = eq + 1;
      char attr[40];
      snprintf(attr, sizeof(attr), "%.*s", (int)(an < 39 ? an : 39), p);
      struct { const char *name; char *dst; size_t size; } text[] = {
          {"token", u->token, sizeof(u->token)},
          {"manufacturer", u->manufacturer, sizeof(u->manufacturer)},
          {"serial", u->serial, sizeof(u->serial)},
          {"model", u->model, sizeof(u->model)},
          {"slot-description", u->slot_description, sizeof(u->slot_description)},
          {"slot-manufacturer", u->slot_manufacturer, sizeof(u->slot_manufacturer)},
          {"library-manufacturer", u->library_manufacturer, sizeof(u->library_manufacturer)},
          {"library-description", u->library_description, sizeof(u->library_description)},
          {"object", u->object, sizeof(u->object)},
          {"module-path", u->module_path, sizeof(u->module_path)},
      };
      int done = 0;
      for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
        if (strcmp(attr, text[i].name) != 0) continue;
        int isq = strcmp(attr, "module-path") == 0;
        if (isq != inquery) {
          snprintf(why, whysize, "%s belongs in the %s part", attr, isq ? "query" : "path");
          return -1;
        }
        if (pct_decode(v, vn, (uint8_t *)text[i].dst, text[i].size) < 0) {
          snprintf(why, whysize, "%s: bad percent-encoding or too long", attr);
          return -1;
        }
        done = 1;
      }
      if (done) goto next;
      if (!inquery && strcmp(attr, "id") == 0) {
        int r = pct_decode(v, vn, u->id, sizeof(u->id));
        if (r < 0) {
          snprintf(why, whysize, "id: bad percent-encoding or too long");
          return -1;
        }
        u->idlen = (size_t)r;
        u->has_id = 1;
      } else if (!inquery && strcmp(attr, "slot-id") == 0) {
        char buf[24];
        char *end;
        snprintf(buf, sizeof(buf), "%.*s", (int)(vn < 23 ? vn : 23), v);
        unsigned long long id = strtoull(buf, &end, 10);
        if (!buf[0] || *end) {
          snprintf(why, whysize, "slot-id: want a decimal number");
          return -1;
        }
        u->slot_id = (CK_SLOT_ID)id;
        u->has_slot_id = 1;
      } else if (!inquery && strcmp(attr, "type") == 0) {
        char t[16];
        snprintf(t, sizeof(t), "%.*s", (int)(vn < 15 ? vn : 15), v);
        if (!strcmp(t, "private")) u->type = CKO_PRIVATE_KEY;
        else if (!strcmp(t, "cert")) u->type = CKO_CERTIFICATE;
        else if (!strcmp(t, "public")) u->type = CKO_PUBLIC_KEY;
        else if (!strcmp(t, "secret-key") || !strcmp(t, "data")) u->type = CKO_DATA;
        else {
          snprintf(why, whysize, "type=%s: want private, cert or public", t);
          return -1;
        }
      } else if (inquery && (!strcmp(attr, "pin-value") || !strcmp(attr, "pin-source"))) {
        snprintf(why, whysize, "%s: give the PIN with pkcs11_pin / backend_pkcs11_pin "
                 "(env:NAME or file:PATH), not in the URI", attr);
        return -1;
      } else if (!strcmp(attr, "library-version") || !strcmp(attr, "module-name") ||
                 !strncmp(attr, "x-", 2)) {
        /* accepted, not used for matching */
      } else {
        snprintf(why, whysize, "unknown attribute '%s'", attr);
        return -1;
      }
    }
  next:
    p += n;
    if (*p == '?') inquery = 1;
    if (*p) p++;
  }
  return 0;
}

int tg_p11_uri_check(const char *uri, char *why, size_t whysize) {
  uri_t u;
  return uri_parse(uri, &u, why, whysize);
}

/* ---- tokens ----------------------------------------------------------------- */

typedef struct tg_p11_op tg_p11_op_t;

typedef struct token {
  module_t *mod;
  CK_SLOT_ID slot;
  char label[33], serial[17], manufacturer[33], model[17];
  pthread_mutex_t lock; /* the session: one operation at a time */
  CK_SESSION_HANDLE session;
  int have_session;
  int login_tried;  /* C_Login was called once in this process */
  int login_ok;     /* ... and it worked: re-login after re-insertion */
  char pin_spec[300];
  int has_pss, has_x509, has_pkcs1, has_ecdsa;
  /* signer thread */
  pthread_t thread;
  int thread_started, stop;
  pthread_mutex_t qlock;
  pthread_cond_t qcond, donecond;
  tg_p11_op_t *qhead, *qtail;
  int pending; /* operations queued, at most TG_P11_MAX_PENDING (qlock) */
  struct token *next;
} token_t;

static token_t *tokens;

struct tg_p11_key {
  token_t *tok;
  char module[512];
  char uri[1024];
  uri_t u;
  CK_OBJECT_HANDLE obj;
  int have_obj;
  CK_KEY_TYPE type;
  int usable; /* 0 in check mode */
  atomic_uint found; /* times key_find found the object (token re-inserted) */
  /* The public key (DER SubjectPublicKeyInfo) a test signature matched,
   * and found then: a reload with the same certificate key need not sign
   * again (registry_lock). */
  uint8_t *checked_spki;
  int checked_len;
  unsigned checked_found;
  char desc[600];
  struct tg_p11_key *next;
};

static tg_p11_key_t *keys;

static int token_matches(const uri_t *u, const CK_SLOT_INFO *si, const CK_TOKEN_INFO *ti,
                         const CK_INFO *li, CK_SLOT_ID slot) {
  char b[80];
#define M(field, src, len)                                  \
  if (u->field[0]) {                                        \
    padded(b, sizeof(b), src, len);                         \
    if (strcmp(b, u->field) != 0) return 0;                 \
  }
  M(token, ti->label, sizeof(ti->label));
  M(manufacturer, ti->manufacturerID, sizeof(ti->manufacturerID));
  M(serial, ti->serialNumber, sizeof(ti->serialNumber));
  M(model, ti->model, sizeof(ti->model));
  M(slot_description, si->slotDescription, sizeof(si->slotDescription));
  M(slot_manufacturer, si->manufacturerID, sizeof(si->manufacturerID));
  M(library_manufacturer, li->manufacturerID, sizeof(li->manufacturerID));
  M(library_description, li->libraryDescription, sizeof(li->libraryDescription));
#undef M
  if (u->has_slot_id && u->slot_id != slot) return 0;
  return 1;
}

static void describe_token_sel(const uri_t *u, char *buf, size_t size) {
  size_t n = 0;
  buf[0] = '\0';
#define A(name, v) if (v[0] && n < size) n += (size_t)snprintf(buf + n, size - n, "%s%s=%s", n ? ";" : "", name, v);
  A("token", u->token) A("serial", u->serial) A("manufacturer", u->manufacturer)
  A("model", u->model) A("slot-description", u->slot_description)
#undef A
  if (!n) snprintf(buf, size, "any token");
}

/* Finds the one initialized token u selects.  Returns its slot, or -1. */
static int find_slot(module_t *m, const uri_t *u, CK_SLOT_ID *out, CK_TOKEN_INFO *tout,
                     char *err, size_t errsize) {
  CK_ULONG n = 0;
  CK_RV rv = m->f->C_GetSlotList(CK_TRUE, NULL, &n);
  CK_SLOT_ID slots[64];
  if (rv == CKR_OK && n > 64) n = 64;
  if (rv == CKR_OK) rv = m->f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK) {
    snprintf(err, errsize, "%s: C_GetSlotList: %s", m->path, rv_name(rv));
    return -1;
  }
  CK_INFO li;
  memset(&li, 0, sizeof(li));
  m->f->C_GetInfo(&li);
  char sel[300], seen[400] = "";
  size_t seenlen = 0;
  int found = 0;
  describe_token_sel(u, sel, sizeof(sel));
  for (CK_ULONG i = 0; i < n; i++) {
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    if (m->f->C_GetSlotInfo(slots[i], &si) != CKR_OK) continue;
    if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) continue;
    if (!(ti.flags & CKF_TOKEN_INITIALIZED)) continue;
    char label[33];
    padded(label, sizeof(label), ti.label, sizeof(ti.label));
    if (seenlen < sizeof(seen))
      seenlen += (size_t)snprintf(seen + seenlen, sizeof(seen) - seenlen, "%s'%s'",
                                  seenlen ? ", " : "", label);
    if (!token_matches(u, &si, &ti, &li, slots[i])) continue;
    if (found++) continue;
    *out = slots[i];
    *tout = ti;
  }
  if (found == 1) return 0;
  if (found == 0)
    snprintf(err, errsize, "no token matching %s in %s (tokens present: %s)", sel, m->path,
             seen[0] ? seen : "none");
  else
    snprintf(err, errsize, "%d tokens match %s in %s (%s): add token= or serial= to the URI",
             found, sel, m->path, seen);
  return -1;
}

static token_t *token_get(module_t *m, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti) {
  char label[33], serial[17];
  padded(label, sizeof(label), ti->label, sizeof(ti->label));
  padded(serial, sizeof(serial), ti->serialNumber, sizeof(ti->serialNumber));
  for (token_t *t = tokens; t; t = t->next)
    if (t->mod == m && !strcmp(t->label, label) && !strcmp(t->serial, serial)) {
      t->slot = slot; /* slots may be renumbered on re-insertion */
      return t;
    }
  token_t *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->mod = m;
  t->slot = slot;
  snprintf(t->label, sizeof(t->label), "%s", label);
  snprintf(t->serial, sizeof(t->serial), "%s", serial);
  padded(t->manufacturer, sizeof(t->manufacturer), ti->manufacturerID, sizeof(ti->manufacturerID));
  padded(t->model, sizeof(t->model), ti->model, sizeof(ti->model));
  pthread_mutex_init(&t->lock, NULL);
  pthread_mutex_init(&t->qlock, NULL);
  pthread_cond_init(&t->qcond, NULL);
  pthread_cond_init(&t->donecond, NULL);
  CK_ULONG nm = 0;
  CK_MECHANISM_TYPE mechs[256];
  if (m->f->C_GetMechanismList(slot, NULL, &nm) == CKR_OK) {
    if (nm > 256) nm = 256;
    if (m->f->C_GetMechanismList(slot, mechs, &nm) != CKR_OK) nm = 0;
  }
  for (CK_ULONG i = 0; i < nm; i++) {
    if (mechs[i] == CKM_RSA_PKCS_PSS) t->has_pss = 1;
    if (mechs[i] == CKM_RSA_X_509) t->has_x509 = 1;
    if (mechs[i] == CKM_RSA_PKCS) t->has_pkcs1 = 1;
    if (mechs[i] == CKM_ECDSA) t->has_ecdsa = 1;
  }
  t->next = tokens;
  tokens = t;
  return t;
}

/* With t->lock held. */
static CK_RV ensure_session(token_t *t) {
  if (t->have_session) return CKR_OK;
  CK_RV rv = t->mod->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &t->session);
  if (rv == CKR_OK) t->have_session = 1;
  return rv;
}

static int logged_in(token_t *t) {
  CK_SESSION_INFO si;
  if (!t->have_session || t->mod->f->C_GetSessionInfo(t->session, &si) != CKR_OK) return 0;
  return si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS;
}

static void drop_session(token_t *t) {
  if (t->have_session) t->mod->f->C_CloseSession(t->session);
  t->have_session = 0;
}

/* Finds objects of class cls that u's object/id select.  Returns the count
 * (up to max handles in out), or -1 with why. */
static int find_objects(token_t *t, const uri_t *u, CK_OBJECT_CLASS cls,
                        CK_OBJECT_HANDLE *out, int max, CK_RV *rvout) {
  CK_ATTRIBUTE tmpl[3];
  CK_ULONG nt = 0;
  tmpl[nt++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
  if (u->object[0]) tmpl[nt++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)u->object, strlen(u->object)};
  if (u->has_id) tmpl[nt++] = (CK_ATTRIBUTE){CKA_ID, (void *)u->id, u->idlen};
  CK_FUNCTION_LIST_PTR f = t->mod->f;
  CK_RV rv = f->C_FindObjectsInit(t->session, tmpl, nt);
  CK_ULONG n = 0;
  if (rv == CKR_OK) {
    rv = f->C_FindObjects(t->session, out, (CK_ULONG)max, &n);
    f->C_FindObjectsFinal(t->session);
  }
  *rvout = rv;
  return rv == CKR_OK ? (int)n : -1;
}

static void describe_object(const uri_t *u, char *buf, size_t size) {
  char id[80] = "";
  for (size_t i = 0; i < u->idlen && i < 32; i++)
    snprintf(id + 2 * i, sizeof(id) - 2 * i, "%02x", u->id[i]);
  snprintf(buf, size, "%s%s%s%s%s%s", u->object[0] ? "object=" : "", u->object,
           u->object[0] && u->has_id ? ";" : "", u->has_id ? "id=" : "",
           u->has_id ? id : "", !u->object[0] && !u->has_id ? "any object" : "");
}

/* Logs in once, by the rules of pkcs11.h.  With t->lock held.  0 or -1. */
static int token_login(token_t *t, const char *pin_spec, int relogin, char *err,
                       size_t errsize) {
  if (logged_in(t)) return 0;
  if (t->login_tried && !(relogin && t->login_ok)) {
    snprintf(err, errsize, "token '%s': a login was already tried once since tlsgate "
             "started and failed; restart tlsgate to try another PIN", t->label);
    return -1;
  }
  CK_TOKEN_INFO ti;
  CK_RV rv = t->mod->f->C_GetTokenInfo(t->slot, &ti);
  if (rv != CKR_OK) {
    snprintf(err, errsize, "token '%s': C_GetTokenInfo: %s", t->label, rv_name(rv));
    return -1;
  }
  if (ti.flags & CKF_USER_PIN_LOCKED) {
    snprintf(err, errsize, "token '%s': the user PIN is locked; unblock it with the SO PIN "
             "first (not trying to log in)", t->label);
    return -1;
  }
  if (ti.flags & CKF_USER_PIN_FINAL_TRY) {
    snprintf(err, errsize, "token '%s' reports its final PIN try (CKF_USER_PIN_FINAL_TRY): "
             "tlsgate does not risk locking it; log in once by hand (e.g. pkcs11-tool "
             "--login --test) to reset the counter", t->label);
    return -1;
  }
  char pin[256] = "", why[300];
  int pinpad = (ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH) && !(pin_spec && *pin_spec);
  if (!pinpad) {
    if (!pin_spec || !*pin_spec) {
      snprintf(err, errsize, "token '%s' needs a login: set pkcs11_pin (or backend_pkcs11_pin) "
               "to env:NAME or file:PATH", t->label);
      return -1;
    }
    if (tg_secret_read(pin_spec, pin, sizeof(pin), why, sizeof(why)) != 0) {
      snprintf(err, errsize, "PIN for token '%s': %s", t->label, why);
      return -1;
    }
  }
  t->login_tried = 1;
  rv = t->mod->f->C_Login(t->session, CKU_USER, pinpad ? NULL : (CK_UTF8CHAR_PTR)pin,
                          pinpad ? 0 : strlen(pin));
  OPENSSL_cleanse(pin, sizeof(pin));
  if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
    t->login_ok = 1;
    snprintf(t->pin_spec, sizeof(t->pin_spec), "%s", pin_spec ? pin_spec : "");
    return 0;
  }
  if (rv == CKR_PIN_INCORRECT)
    snprintf(err, errsize, "token '%s': wrong PIN (C_Login: CKR_PIN_INCORRECT); one attempt "
             "used, tlsgate does not try again", t->label);
  else
    snprintf(err, errsize, "token '%s': login failed (C_Login: %s)", t->label, rv_name(rv));
  return -1;
}

/* Finds k's private key object.  With t->lock held and a session. */
static int key_find(tg_p11_key_t *k, char *err, size_t errsize) {
  CK_OBJECT_HANDLE h[4];
  CK_RV rv;
  char what[400];
  describe_object(&k->u, what, sizeof(what));
  int n = find_objects(k->tok, &k->u, CKO_PRIVATE_KEY, h, 4, &rv);
  if (n < 0) {
    snprintf(err, errsize, "token '%s': C_FindObjects: %s", k->tok->label, rv_name(rv));
    return -1;
  }
  if (n == 0) {
    snprintf(err, errsize, "token '%s' has no private key %s", k->tok->label, what);
    return -1;
  }
  if (n > 1) {
    snprintf(err, errsize, "token '%s': %d private keys match %s; add object= or id= to the URI",
             k->tok->label, n, what);
    return -1;
  }
  CK_KEY_TYPE type = 0;
  CK_ATTRIBUTE a = {CKA_KEY_TYPE, &type, sizeof(type)};
  rv = k->tok->mod->f->C_GetAttributeValue(k->tok->session, h[0], &a, 1);
  if (rv != CKR_OK || (type != CKK_RSA && type != CKK_EC)) {
    snprintf(err, errsize, "token '%s': private key %s is %s, want RSA or EC", k->tok->label,
             what, rv == CKR_OK ? "of another type" : "of unknown type");
    return -1;
  }
  k->obj = h[0];
  k->type = type;
  k->have_obj = 1;
  atomic_fetch_add(&k->found, 1);
  return 0;
}

/* Without a login: is there any trace (public key, certificate) of the
 * object?  1 yes, 0 no. */
static int object_trace(token_t *t, const uri_t *u) {
  CK_OBJECT_HANDLE h[2];
  CK_RV rv;
  return find_objects(t, u, CKO_PRIVATE_KEY, h, 2, &rv) > 0 ||
         find_objects(t, u, CKO_PUBLIC_KEY, h, 2, &rv) > 0 ||
         find_objects(t, u, CKO_CERTIFICATE, h, 2, &rv) > 0;
}

static void *signer_main(void *arg);

tg_p11_key_t *tg_p11_key_open(const char *module, const char *uristr,
                              const char *pin_spec, char *err, size_t errsize) {
  uri_t u;
  char why[400];
  if (uri_parse(uristr, &u, why, sizeof(why)) != 0) {
    snprintf(err, errsize, "%s", why);
    return NULL;
  }
  if (u.type != -1 && u.type != CKO_PRIVATE_KEY) {
    snprintf(err, errsize, "the URI names a %s, not a private key (type=private)",
             u.type == CKO_CERTIFICATE ? "certificate" : "public key");
    return NULL;
  }
  if (u.module_path[0]) module = u.module_path;
  pthread_mutex_lock(&registry_lock);
  const char *mpath = module && *module ? module : TG_P11_DEFAULT_MODULE;
  for (tg_p11_key_t *k = keys; k; k = k->next)
    if (!strcmp(k->module, mpath) && !strcmp(k->uri, uristr) && k->usable) {
      pthread_mutex_lock(&k->tok->lock);
      int ok = logged_in(k->tok) || !k->tok->login_tried;
      pthread_mutex_unlock(&k->tok->lock);
      if (ok) {
        pthread_mutex_unlock(&registry_lock);
        return k; /* reload: the token is still logged in, no new login */
      }
    }
  tg_p11_key_t *k = NULL;
  module_t *m = module_get(mpath, err, errsize);
  CK_SLOT_ID slot;
  CK_TOKEN_INFO ti;
  if (!m || find_slot(m, &u, &slot, &ti, err, errsize) != 0) goto out;
  token_t *t = token_get(m, slot, &ti);
  k = calloc(1, sizeof(*k));
  if (!t || !k) {
    snprintf(err, errsize, "out of memory");
    goto fail;
  }
  k->tok = t;
  k->u = u;
  snprintf(k->module, sizeof(k->module), "%s", mpath);
  snprintf(k->uri, sizeof(k->uri), "%s", uristr);
  char what[400];
  describe_object(&u, what, sizeof(what));
  pthread_mutex_lock(&t->lock);
  CK_RV rv = ensure_session(t);
  int rc = -1;
  const char *pinnote = "no login needed";
  if (rv != CKR_OK) {
    snprintf(err, errsize, "token '%s': C_OpenSession: %s", t->label, rv_name(rv));
  } else if (check_only) {
    if (!object_trace(t, &u)) {
      snprintf(err, errsize, "token '%s' has no object %s%s", t->label, what,
               (ti.flags & CKF_LOGIN_REQUIRED) && !logged_in(t)
                   ? " visible without a login (no public key or certificate with that name)"
                   : "");
    } else {
      rc = 0;
      pinnote = (ti.flags & CKF_LOGIN_REQUIRED) && !logged_in(t)
                    ? "PIN not tried: tlsgate -t does not log in"
                    : "no login needed";
    }
  } else {
    int need = (ti.flags & CKF_LOGIN_REQUIRED) && !logged_in(t);
    if (need && token_login(t, pin_spec, 0, err, errsize) != 0) {
      /* err says why */
    } else if (key_find(k, err, errsize) == 0) {
      rc = 0;
      k->usable = 1;
      pinnote = need ? "logged in" : logged_in(t) ? "already logged in" : "no login needed";
    }
  }
  pthread_mutex_unlock(&t->lock);
  if (rc != 0) goto fail;
  snprintf(k->desc, sizeof(k->desc), "%s key %s on token '%s' (%s)",
           k->usable ? (k->type == CKK_RSA ? "RSA" : "EC") : "PKCS#11", what, t->label, pinnote);
  if (k->usable && !t->thread_started) {
    if (pthread_create(&t->thread, NULL, signer_main, t) != 0) {
      snprintf(err, errsize, "token '%s': cannot start its signer thread", t->label);
      goto fail;
    }
    t->thread_started = 1;
  }
  k->next = keys;
  keys = k;
  goto out;
fail:
  free(k);
  k = NULL;
out:
  pthread_mutex_unlock(&registry_lock);
  return k;
}

X509 *tg_p11_cert_load(const char *module, const char *uristr, char *err, size_t errsize) {
  uri_t u;
  char why[400];
  if (uri_parse(uristr, &u, why, sizeof(why)) != 0) {
    snprintf(err, errsize, "%s", why);
    return NULL;
  }
  if (u.module_path[0]) module = u.module_path;
  pthread_mutex_lock(&registry_lock);
  X509 *x = NULL;
  CK_SLOT_ID slot;
  CK_TOKEN_INFO ti;
  module_t *m = module_get(module, err, errsize);
  token_t *t = NULL;
  if (!m || find_slot(m, &u, &slot, &ti, err, errsize) != 0 ||
      !(t = token_get(m, slot, &ti))) {
    pthread_mutex_unlock(&registry_lock);
    return NULL;
  }
  char what[400];
  describe_object(&u, what, sizeof(what));
  pthread_mutex_lock(&t->lock);
  CK_RV rv = ensure_session(t);
  CK_OBJECT_HANDLE h[2];
  int n = rv == CKR_OK ? find_objects(t, &u, CKO_CERTIFICATE, h, 2, &rv) : -1;
  if (n < 0) {
    snprintf(err, errsize, "token '%s': %s", t->label, rv_name(rv));
  } else if (n != 1) {
    snprintf(err, errsize, n ? "token '%s': several certificates match %s" :
             "token '%s' has no certificate %s", t->label, what);
  } else {
    CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0};
    rv = m->f->C_GetAttributeValue(t->session, h[0], &a, 1);
    uint8_t *der = rv == CKR_OK && a.ulValueLen < 65536 ? malloc(a.ulValueLen) : NULL;
    if (der) {
      a.pValue = der;
      rv = m->f->C_GetAttributeValue(t->session, h[0], &a, 1);
      const uint8_t *p = der;
      if (rv == CKR_OK) x = d2i_X509(NULL, &p, (long)a.ulValueLen);
      free(der);
    }
    if (!x) snprintf(err, errsize, "token '%s': certificate %s cannot be read (%s)", t->label,
                     what, rv_name(rv));
  }
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&registry_lock);
  ERR_clear_error();
  return x;
}

const char *tg_p11_key_describe(const tg_p11_key_t *k) { return k->desc; }
int tg_p11_key_is_rsa(const tg_p11_key_t *k) { return k->type == CKK_RSA; }
int tg_p11_key_usable(const tg_p11_key_t *k) { return k->usable; }

/* ---- the signer thread ------------------------------------------------------- */

struct tg_p11_op {
  uv_async_t async;      /* loop side: signals completion */
  tg_p11_key_t *key;
  CK_MECHANISM_TYPE mech;
  CK_RSA_PKCS_PSS_PARAMS pss;
  int has_pss;
  uint8_t in[512];
  size_t inlen;
  uint8_t sig[1024];
  size_t siglen;
  CK_RV rv;
  char why[300];
  int sync, done;        /* sync: the caller waits on donecond */
  /* Set by the loop when nobody waits for the signature any more (the
   * SSL was freed): the signer thread then drops it without C_Sign. */
  atomic_int gone;
  /* A job instead of a signature (tg_p11_run_on_signer): run(arg) on the
   * signer thread, then done(arg) on the loop. */
  void (*run)(void *arg);
  void (*job_done)(void *arg);
  void *arg;
  struct tg_p11_op *next;
  /* loop side only */
  int fired, abandoned;
  tg_tls_note_t *note;
};

/* Re-finds the token after it was removed and put back.  t->lock held. */
static CK_RV reattach(tg_p11_key_t *k, char *why, size_t whysize) {
  token_t *t = k->tok;
  CK_SLOT_ID slot;
  CK_TOKEN_INFO ti;
  char err[400];
  uri_t sel = k->u;
  snprintf(sel.serial, sizeof(sel.serial), "%s", t->serial);
  snprintf(sel.token, sizeof(sel.token), "%s", t->label);
  if (find_slot(t->mod, &sel, &slot, &ti, err, sizeof(err)) != 0) {
    snprintf(why, whysize, "token '%s' is not present (%s)", t->label, err);
    return CKR_TOKEN_NOT_PRESENT;
  }
  t->slot = slot;
  CK_RV rv = ensure_session(t);
  if (rv != CKR_OK) {
    snprintf(why, whysize, "token '%s': C_OpenSession: %s", t->label, rv_name(rv));
    return rv;
  }
  if ((ti.flags & CKF_LOGIN_REQUIRED) &&
      token_login(t, t->pin_spec, 1, err, sizeof(err)) != 0) {
    snprintf(why, whysize, "%s", err);
    drop_session(t);
    return CKR_USER_NOT_LOGGED_IN;
  }
  if (key_find(k, err, sizeof(err)) != 0) {
    snprintf(why, whysize, "%s", err);
    return CKR_KEY_HANDLE_INVALID;
  }
  tg_log(TG_LOG_INFO, "pkcs11: token '%s' is back; key found again", t->label);
  return CKR_OK;
}

static void op_run(tg_p11_op_t *op) {
  tg_p11_key_t *k = op->key;
  token_t *t = k->tok;
  CK_FUNCTION_LIST_PTR f = t->mod->f;
  pthread_mutex_lock(&t->lock);
  CK_RV rv = CKR_OK;
  if (!t->have_session || !k->have_obj) rv = reattach(k, op->why, sizeof(op->why));
  if (rv == CKR_OK) {
    CK_MECHANISM mech = {op->mech, op->has_pss ? &op->pss : NULL,
                         op->has_pss ? sizeof(op->pss) : 0};
    CK_ULONG len = sizeof(op->sig);
    rv = f->C_SignInit(t->session, &mech, k->obj);
    if (rv == CKR_OK) rv = f->C_Sign(t->session, op->in, op->inlen, op->sig, &len);
    op->siglen = len;
    if (rv != CKR_OK) {
      snprintf(op->why, sizeof(op->why), "token '%s': C_Sign: %s%s", t->label, rv_name(rv),
               rv_is_gone(rv) ? " (token removed? the key is looked for again at the next "
                                "handshake)" : "");
      if (rv_is_gone(rv)) {
        drop_session(t);
        k->have_obj = 0;
      }
    }
  }
  op->rv = rv;
  pthread_mutex_unlock(&t->lock);
}

/* Set on signer threads: a signature wanted by a job running there (a
 * handshake step, OpenSSL build) is made in place, not queued behind the
 * job itself. */
static __thread int on_signer_thread;

static void *signer_main(void *arg) {
  token_t *t = arg;
  on_signer_thread = 1;
  pthread_mutex_lock(&t->qlock);
  for (;;) {
    while (!t->qhead && !t->stop) pthread_cond_wait(&t->qcond, &t->qlock);
    if (!t->qhead) break;
    tg_p11_op_t *op = t->qhead;
    t->qhead = op->next;
    if (!t->qhead) t->qtail = NULL;
    t->pending--;
    int stop = t->stop;
    pthread_mutex_unlock(&t->qlock);
    if (op->run) {
      op->run(op->arg); /* takes t->lock itself when it signs; drops its
                         * own job when the connection has gone */
    } else if (stop || atomic_load(&op->gone)) {
      /* Nobody wants this signature any more: the token's time is for
       * the clients that are still there. */
      op->rv = CKR_FUNCTION_CANCELED;
      snprintf(op->why, sizeof(op->why), "token '%s': signature dropped (%s)", t->label,
               stop ? "shutting down" : "its connection has gone");
    } else {
      op_run(op);
    }
    pthread_mutex_lock(&t->qlock);
    if (op->sync) {
      op->done = 1;
      pthread_cond_broadcast(&t->donecond);
    } else {
      /* Last touch of op on this thread: the loop owns it from here. */
      uv_async_send(&op->async);
    }
  }
  pthread_mutex_unlock(&t->qlock);
  return NULL;
}

/* Queues op for the token's signer thread.  A synchronous one (a test
 * signature, made while the caller waits) goes first, so it waits for at
 * most the operation in progress, never for the queue; any other one is
 * refused when TG_P11_MAX_PENDING are queued already: 0, or -1 with why. */
static int op_queue(tg_p11_op_t *op, char *why, size_t whysize) {
  token_t *t = op->key->tok;
  pthread_mutex_lock(&t->qlock);
  if (!op->sync && t->pending >= TG_P11_MAX_PENDING) {
    int n = t->pending;
    pthread_mutex_unlock(&t->qlock);
    snprintf(why, whysize, "token '%s' busy: %d signatures pending", t->label, n);
    return -1;
  }
  if (op->sync) {
    op->next = t->qhead;
    t->qhead = op;
    if (!t->qtail) t->qtail = op;
  } else {
    op->next = NULL;
    if (t->qtail) t->qtail->next = op;
    else t->qhead = op;
    t->qtail = op;
  }
  t->pending++;
  pthread_cond_signal(&t->qcond);
  pthread_mutex_unlock(&t->qlock);
  return 0;
}

int tg_p11_sign_wait(tg_p11_key_t *k, unsigned long mech, const void *param,
                     unsigned long paramlen, const uint8_t *in, size_t inlen,
                     uint8_t *out, size_t outsize, char *why, size_t whysize) {
  if (!k->usable || inlen > sizeof(((tg_p11_op_t *)0)->in)) {
    snprintf(why, whysize, "%s", k->usable ? "input too long" : "key not usable (check mode)");
    return -1;
  }
  tg_p11_op_t *op = calloc(1, sizeof(*op));
  if (!op) {
    snprintf(why, whysize, "out of memory");
    return -1;
  }
  op->key = k;
  op->mech = mech;
  if (param && paramlen == sizeof(op->pss)) {
    memcpy(&op->pss, param, sizeof(op->pss));
    op->has_pss = 1;
  }
  memcpy(op->in, in, inlen);
  op->inlen = inlen;
  if (on_signer_thread) {
    /* Inside a job on a signer thread: sign here, under the token's
     * session lock (the key may be on another token than the job's). */
    op_run(op);
  } else {
    op->sync = 1;
    op_queue(op, why, whysize); /* never refused */
    token_t *t = k->tok;
    pthread_mutex_lock(&t->qlock);
    while (!op->done) pthread_cond_wait(&t->donecond, &t->qlock);
    pthread_mutex_unlock(&t->qlock);
  }
  int r = -1;
  if (op->rv != CKR_OK) snprintf(why, whysize, "%s", op->why);
  else if (op->siglen > outsize) snprintf(why, whysize, "signature too long");
  else {
    memcpy(out, op->sig, op->siglen);
    r = (int)op->siglen;
  }
  free(op);
  return r;
}

static void op_free_cb(uv_handle_t *h) { free(h->data); }

static void on_job_done(uv_async_t *a) {
  tg_p11_op_t *op = a->data;
  /* Orders our reads after the job's writes (see on_sig_ready). */
  pthread_mutex_lock(&op->key->tok->qlock);
  pthread_mutex_unlock(&op->key->tok->qlock);
  op->job_done(op->arg);
  uv_close((uv_handle_t *)&op->async, op_free_cb);
}

int tg_p11_run_on_signer(tg_p11_key_t *k, struct uv_loop_s *loop, void (*run)(void *),
                         void (*done)(void *), void *arg, char *why, size_t whysize) {
  snprintf(why, whysize, "token '%s': cannot start a job on its signer thread", k->tok->label);
  if (!k->tok->thread_started) return -1;
  tg_p11_op_t *op = calloc(1, sizeof(*op));
  if (!op) return -1;
  if (uv_async_init(loop, &op->async, on_job_done) != 0) {
    free(op);
    return -1;
  }
  op->async.data = op;
  op->key = k;
  op->run = run;
  op->job_done = done;
  op->arg = arg;
  if (op_queue(op, why, whysize) != 0) {
    uv_close((uv_handle_t *)&op->async, op_free_cb);
    return -1;
  }
  return 0;
}

static void finalize_all(void) {
  for (token_t *t = tokens; t; t = t->next) {
    if (!t->thread_started) continue;
    pthread_mutex_lock(&t->qlock);
    t->stop = 1;
    pthread_cond_signal(&t->qcond);
    pthread_mutex_unlock(&t->qlock);
    pthread_join(t->thread, NULL);
  }
  while (keys) {
    tg_p11_key_t *k = keys;
    keys = k->next;
    free(k->checked_spki);
    free(k);
  }
  while (tokens) {
    token_t *t = tokens;
    tokens = t->next;
    drop_session(t);
    free(t);
  }
  while (modules) {
    module_t *m = modules;
    modules = m->next;
    m->f->C_Finalize(NULL);
    free(m);
  }
}

/* ---- signatures as TLS wants them ------------------------------------------- */

/* DigestInfo prefixes (RFC 8017 section 9.2, note 1). */
static const uint8_t di_sha1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                                  0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
static const uint8_t di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
static const uint8_t di_sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
static const uint8_t di_sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

/* ECDSA r||s from a token to DER.  Returns the length or -1. */
static int rs_to_der(const uint8_t *rs, size_t len, uint8_t *out, size_t outsize) {
  if (len == 0 || len % 2) return -1;
  ECDSA_SIG *s = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(rs, (int)(len / 2), NULL), *ss = BN_bin2bn(rs + len / 2, (int)(len / 2), NULL);
  if (!s || !r || !ss || !ECDSA_SIG_set0(s, r, ss)) {
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(s);
    return -1;
  }
  int n = i2d_ECDSA_SIG(s, NULL);
  uint8_t *p = out;
  if (n <= 0 || (size_t)n > outsize) n = -1;
  else n = i2d_ECDSA_SIG(s, &p);
  ECDSA_SIG_free(s);
  return n;
}

/* Sets op->mech, params and input for a TLS signature algorithm over msg. */
static int prepare_tls_sig(tg_p11_op_t *op, const EVP_MD *md, int pss, const uint8_t *msg,
                           size_t msglen) {
  uint8_t dg[EVP_MAX_MD_SIZE];
  unsigned dl = 0;
  if (!md || !EVP_Digest(msg, msglen, dg, &dl, md, NULL)) return -1;
  tg_p11_key_t *k = op->key;
  if (k->type == CKK_EC) {
    op->mech = CKM_ECDSA;
  } else if (pss) {
    int nid = EVP_MD_type(md);
    op->mech = CKM_RSA_PKCS_PSS;
    op->has_pss = 1;
    op->pss.hashAlg = nid == NID_sha256 ? CKM_SHA256 : nid == NID_sha384 ? CKM_SHA384 : CKM_SHA512;
    op->pss.mgf = nid == NID_sha256 ? CKG_MGF1_SHA256 : nid == NID_sha384 ? CKG_MGF1_SHA384
                                                                        : CKG_MGF1_SHA512;
    op->pss.sLen = dl;
  } else {
    int nid = EVP_MD_type(md);
    const uint8_t *pre = nid == NID_sha1 ? di_sha1 : nid == NID_sha256 ? di_sha256
                         : nid == NID_sha384 ? di_sha384 : nid == NID_sha512 ? di_sha512 : NULL;
    size_t prelen = nid == NID_sha1 ? sizeof(di_sha1) : sizeof(di_sha256);
    if (!pre) return -1;
    op->mech = CKM_RSA_PKCS;
    memcpy(op->in, pre, prelen);
    memcpy(op->in + prelen, dg, dl);
    op->inlen = prelen + dl;
    return 0;
  }
  memcpy(op->in, dg, dl);
  op->inlen = dl;
  return 0;
}

/* A signature of op to out as TLS wants it (DER for ECDSA). */
static int finish_tls_sig(const tg_p11_op_t *op, uint8_t *out, size_t *outlen, size_t max) {
  if (op->key->type == CKK_EC) {
    int n = rs_to_der(op->sig, op->siglen, out, max);
    if (n < 0) return -1;
    *outlen = (size_t)n;
    return 0;
  }
  if (op->siglen > max) return -1;
  memcpy(out, op->sig, op->siglen);
  *outlen = op->siglen;
  return 0;
}

static int ctx_key_index = -1;

tg_p11_key_t *tg_p11_ssl_key(const SSL *ssl) {
  return ctx_key_index < 0 ? NULL : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_key_index);
}

#ifdef OPENSSL_IS_BORINGSSL
static int ssl_op_index = -1;

/* The SSL no longer waits for op (it finished, or the SSL is freed). */
static void op_release(tg_p11_op_t *op) {
  if (op->fired) {
    uv_close((uv_handle_t *)&op->async, op_free_cb);
  } else {
    op->abandoned = 1;              /* on_sig_ready frees it */
    atomic_store(&op->gone, 1);     /* the signer thread drops it if queued */
  }
}

static void free_ssl_op(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl,
                        void *argp) {
  if (ptr) op_release(ptr);
}

static void on_sig_ready(uv_async_t *a) {
  tg_p11_op_t *op = a->data;
  /* The signer wrote the result before taking qlock to send this wake-up:
   * taking it here orders our reads after its writes in the thread
   * sanitizer's eyes too (it does not see inside libuv). */
  pthread_mutex_lock(&op->key->tok->qlock);
  op->fired = 1;
  pthread_mutex_unlock(&op->key->tok->qlock);
  if (op->abandoned) {
    uv_close((uv_handle_t *)&op->async, op_free_cb);
    return;
  }
  tg_tls_note_t *note = op->note;
  if (note && note->resume) note->resume(note->owner, note);
}

static enum ssl_private_key_result_t key_sign(SSL *ssl, uint8_t *out, size_t *out_len,
                                              size_t max_out, uint16_t sigalg,
                                              const uint8_t *in, size_t in_len) {
  tg_p11_key_t *k = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_key_index);
  tg_tls_note_t *note = tg_tls_get_note(ssl);
  if (!k || !k->usable) return ssl_private_key_failure;
  tg_p11_op_t *op = calloc(1, sizeof(*op));
  if (!op) return ssl_private_key_failure;
  op->key = k;
  op->note = note;
  if (prepare_tls_sig(op, SSL_get_signature_algorithm_digest(sigalg),
                      SSL_is_signature_algorithm_rsa_pss(sigalg), in, in_len) != 0) {
    free(op);
    return ssl_private_key_failure;
  }
  if (!note || !note->resume || !note->loop) {
    /* No loop to wake (e.g. a DTLS association): sign in place. */
    char why[300];
    int n = tg_p11_sign_wait(k, op->mech, op->has_pss ? &op->pss : NULL,
                             op->has_pss ? sizeof(op->pss) : 0, op->in, op->inlen, op->sig,
                             sizeof(op->sig), why, sizeof(why));
    int ok = n >= 0;
    if (ok) {
      op->siglen = (size_t)n;
      ok = finish_tls_sig(op, out, out_len, max_out) == 0;
    } else if (note) {
      snprintf(note->reason, sizeof(note->reason), "PKCS#11 signature failed: %s", why);
    }
    free(op);
    return ok ? ssl_private_key_success : ssl_private_key_failure;
  }
  if (uv_async_init(note->loop, &op->async, on_sig_ready) != 0) {
    free(op);
    return ssl_private_key_failure;
  }
  op->async.data = op;
  char why[200];
  if (op_queue(op, why, sizeof(why)) != 0) {
    snprintf(note->reason, sizeof(note->reason), "PKCS#11 signature refused: %s", why);
    uv_close((uv_handle_t *)&op->async, op_free_cb);
    return ssl_private_key_failure;
  }
  SSL_set_ex_data(ssl, ssl_op_index, op);
  return ssl_private_key_retry;
}

static enum ssl_private_key_result_t key_complete(SSL *ssl, uint8_t *out, size_t *out_len,
                                                  size_t max_out) {
  tg_p11_op_t *op = SSL_get_ex_data(ssl, ssl_op_index);
  if (!op) return ssl_private_key_failure;
  if (!op->fired) return ssl_private_key_retry;
  SSL_set_ex_data(ssl, ssl_op_index, NULL);
  int ok = op->rv == CKR_OK && finish_tls_sig(op, out, out_len, max_out) == 0;
  if (!ok && op->note)
    snprintf(op->note->reason, sizeof(op->note->reason), "PKCS#11 signature failed: %s",
             op->rv != CKR_OK ? op->why : "bad signature from the token");
  op_release(op);
  return ok ? ssl_private_key_success : ssl_private_key_failure;
}

static enum ssl_private_key_result_t key_decrypt(SSL *ssl, uint8_t *out, size_t *out_len,
                                                 size_t max_out, const uint8_t *in,
                                                 size_t in_len) {
  return ssl_private_key_failure; /* RSA key exchange is not offered */
}

static const SSL_PRIVATE_KEY_METHOD key_method = {key_sign, key_decrypt, key_complete};
#endif

/* A test signature with k checked against cert's public key. */
static int check_pair(tg_p11_key_t *k, EVP_PKEY *pub, char *err, size_t errsize) {
  uint8_t msg[32], sig[1024], der[1100];
  RAND_bytes(msg, sizeof(msg));
  tg_p11_op_t op;
  memset(&op, 0, sizeof(op));
  op.key = k;
  char why[300];
  if (prepare_tls_sig(&op, EVP_sha256(), 0, msg, sizeof(msg)) != 0) {
    snprintf(err, errsize, "cannot prepare a test signature");
    return -1;
  }
  int n = tg_p11_sign_wait(k, op.mech, NULL, 0, op.in, op.inlen, sig, sizeof(sig), why,
                           sizeof(why));
  if (n < 0) {
    snprintf(err, errsize, "test signature failed: %s", why);
    return -1;
  }
  memcpy(op.sig, sig, (size_t)n);
  op.siglen = (size_t)n;
  size_t dl = 0;
  int ok = finish_tls_sig(&op, der, &dl, sizeof(der)) == 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  ok = ok && md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
       EVP_DigestVerifyUpdate(md, msg, sizeof(msg)) == 1 &&
       EVP_DigestVerifyFinal(md, der, dl) == 1;
  EVP_MD_CTX_free(md);
  ERR_clear_error();
  if (!ok) {
    snprintf(err, errsize, "the private key on the token does not match the certificate "
             "(a test signature did not verify)");
    return -1;
  }
  return 0;
}

/* check_pair, unless k already matched pub with the object found now: a
 * reload that keeps the certificate makes no test signature, so the main
 * loop never waits for the token there (a new certificate's test
 * signature goes ahead of the queue, waiting for at most the signature in
 * progress). */
static int check_pair_once(tg_p11_key_t *k, EVP_PKEY *pub, char *err, size_t errsize) {
  uint8_t *spki = NULL;
  int len = i2d_PUBKEY(pub, &spki);
  unsigned found = atomic_load(&k->found);
  pthread_mutex_lock(&registry_lock);
  int known = len > 0 && k->checked_spki && k->checked_len == len &&
              k->checked_found == found && memcmp(k->checked_spki, spki, (size_t)len) == 0;
  pthread_mutex_unlock(&registry_lock);
  if (known) {
    OPENSSL_free(spki);
    return 0;
  }
  int rc = check_pair(k, pub, err, errsize);
  pthread_mutex_lock(&registry_lock);
  if (rc == 0 && len > 0) {
    free(k->checked_spki);
    k->checked_spki = malloc((size_t)len);
    if (k->checked_spki) memcpy(k->checked_spki, spki, (size_t)len);
    k->checked_len = len;
    k->checked_found = found;
  }
  pthread_mutex_unlock(&registry_lock);
  OPENSSL_free(spki);
  return rc;
}

int tg_p11_use_key(SSL_CTX *ctx, tg_p11_key_t *k, X509 *cert, int min13, char *err,
                   size_t errsize) {
  EVP_PKEY *pub = X509_get_pubkey(cert);
  int rc = -1;
  if (!pub) {
    snprintf(err, errsize, "the certificate has no usable public key");
    return -1;
  }
  int pubtype = EVP_PKEY_id(pub);
  if (k->usable && ((k->type == CKK_RSA) != (pubtype == EVP_PKEY_RSA))) {
    snprintf(err, errsize, "the certificate holds %s key but the token key is %s",
             pubtype == EVP_PKEY_RSA ? "an RSA" : "a non-RSA", k->type == CKK_RSA ? "RSA" : "EC");
    goto out;
  }
  if (k->usable && check_pair_once(k, pub, err, errsize) != 0) goto out;
  int rsa = pubtype == EVP_PKEY_RSA;
#ifdef OPENSSL_IS_BORINGSSL
  int pss_ok = !rsa || k->tok->has_pss;
#else
  int pss_ok = !rsa || k->tok->has_x509;
#endif
  if (!pss_ok) {
    if (min13) {
      snprintf(err, errsize, "token '%s' cannot sign RSA-PSS (no %s), which TLS 1.3 needs; "
               "min_version = 1.3 is impossible with this key", k->tok->label,
#ifdef OPENSSL_IS_BORINGSSL
               "CKM_RSA_PKCS_PSS"
#else
               "CKM_RSA_X_509"
#endif
               );
      goto out;
    }
    tg_log(TG_LOG_WARN, "pkcs11: token '%s' cannot sign RSA-PSS, which TLS 1.3 needs: "
           "TLS 1.3 is off for %s", k->tok->label, k->uri);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  }
  if (ctx_key_index < 0) ctx_key_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  SSL_CTX_set_ex_data(ctx, ctx_key_index, k);
  char tlserr[300];
#ifdef OPENSSL_IS_BORINGSSL
  if (ssl_op_index < 0) ssl_op_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_ssl_op);
  static const uint16_t ec_prefs[] = {SSL_SIGN_ECDSA_SECP256R1_SHA256,
                                      SSL_SIGN_ECDSA_SECP384R1_SHA384,
                                      SSL_SIGN_ECDSA_SECP521R1_SHA512};
  static const uint16_t rsa_prefs[] = {SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PSS_RSAE_SHA384,
                                       SSL_SIGN_RSA_PSS_RSAE_SHA512, SSL_SIGN_RSA_PKCS1_SHA256,
                                       SSL_SIGN_RSA_PKCS1_SHA384, SSL_SIGN_RSA_PKCS1_SHA512};
  const uint16_t *prefs = rsa ? rsa_prefs : ec_prefs;
  size_t np = rsa ? 6 : 3;
  if (rsa && !pss_ok) {
    prefs += 3;
    np = 3;
  }
  if (!SSL_CTX_use_certificate(ctx, cert) ||
      !SSL_CTX_set_signing_algorithm_prefs(ctx, prefs, np)) {
    snprintf(err, errsize, "cannot use the certificate (%s)", tg_tls_errors(tlserr, sizeof(tlserr)));
    goto out;
  }
  SSL_CTX_set_private_key_method(ctx, &key_method);
#else
  /* Without raw RSA the token can only do PKCS#1 v1.5 signatures. */
  if (!pss_ok && !SSL_CTX_set1_sigalgs_list(ctx, "RSA+SHA256:RSA+SHA384:RSA+SHA512")) {
    snprintf(err, errsize, "cannot limit signature algorithms (%s)",
             tg_tls_errors(tlserr, sizeof(tlserr)));
    goto out;
  }
  EVP_PKEY *pk = tg_p11_ossl_pkey(k, pub, err, errsize);
  if (!pk) goto out;
  int ok = SSL_CTX_use_certificate(ctx, cert) && SSL_CTX_use_PrivateKey(ctx, pk);
  EVP_PKEY_free(pk);
  if (!ok) {
    snprintf(err, errsize, "cannot use the token key (%s)", tg_tls_errors(tlserr, sizeof(tlserr)));
    goto out;
  }
#endif
  rc = 0;
out:
  EVP_PKEY_free(pub);
  return rc;
}
