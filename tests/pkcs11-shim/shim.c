/* A PKCS#11 module for tests: forwards every call to a real module
 * (TG_SHIM_TARGET, default SoftHSM2) and changes a few on request.
 *
 *   TG_SHIM_SIGN_DELAY_MS  sleep this long in every C_Sign (a slow card)
 *   TG_SHIM_LOG            append "login rv=0x.." / "sign-start MS" /
 *                          "sign-end MS" lines (CLOCK_REALTIME ms)
 *   TG_SHIM_REMOVED        while this file exists the token is "removed":
 *                          C_Sign/C_SignInit answer CKR_DEVICE_REMOVED,
 *                          C_OpenSession CKR_TOKEN_NOT_PRESENT and
 *                          C_GetSlotList lists no token.
 *   TG_SHIM_FINAL_TRY      set: C_GetTokenInfo adds CKF_USER_PIN_FINAL_TRY
 *   TG_SHIM_NO_PSS         set: C_GetMechanismList hides CKM_RSA_PKCS_PSS and
 *                          CKM_RSA_X_509 (a card that cannot do TLS 1.3 RSA)
 *   TG_SHIM_DEEPBIND       set: load the target with RTLD_DEEPBIND (a host
 *                          linked with BoringSSL; never under ASan)
 *
 * Build: cc -shared -fPIC -I/usr/include/p11-kit-1 -o shim.so shim.c */
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static CK_FUNCTION_LIST real, mine;
static int loaded;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logline(const char *fmt, long long v) {
  const char *path = getenv("TG_SHIM_LOG");
  if (!path) return;
  FILE *f = fopen(path, "a");
  if (!f) return;
  fprintf(f, fmt, v);
  fputc('\n', f);
  fclose(f);
}

static int removed(void) {
  const char *p = getenv("TG_SHIM_REMOVED");
  return p && access(p, F_OK) == 0;
}

static CK_RV shim_Login(CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
  CK_RV rv = real.C_Login(s, u, pin, len);
  logline("login rv=0x%llx", (long long)rv);
  return rv;
}

static CK_RV shim_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
  if (removed()) return CKR_DEVICE_REMOVED;
  return real.C_SignInit(s, m, k);
}

static CK_RV shim_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig,
                       CK_ULONG_PTR siglen) {
  if (removed()) return CKR_DEVICE_REMOVED;
  const char *d = getenv("TG_SHIM_SIGN_DELAY_MS");
  logline("sign-start %lld", now_ms());
  if (d && sig) usleep((useconds_t)atoi(d) * 1000);
  CK_RV rv = real.C_Sign(s, in, inlen, sig, siglen);
  logline("sign-end %lld", now_ms());
  return rv;
}

static CK_RV shim_OpenSession(CK_SLOT_ID slot, CK_FLAGS fl, CK_VOID_PTR app, CK_NOTIFY n,
                              CK_SESSION_HANDLE_PTR s) {
  if (removed()) return CKR_TOKEN_NOT_PRESENT;
  return real.C_OpenSession(slot, fl, app, n, s);
}

static CK_RV shim_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n) {
  if (removed() && present) {
    *n = 0;
    return CKR_OK;
  }
  return real.C_GetSlotList(present, list, n);
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
  CK_RV rv = real.C_GetTokenInfo(slot, info);
  if (rv == CKR_OK && getenv("TG_SHIM_FINAL_TRY")) info->flags |= CKF_USER_PIN_FINAL_TRY;
  return rv;
}

static CK_RV shim_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n) {
  CK_RV rv = real.C_GetMechanismList(slot, list, n);
  if (rv != CKR_OK || !list || !getenv("TG_SHIM_NO_PSS")) return rv;
  CK_ULONG o = 0;
  for (CK_ULONG i = 0; i < *n; i++)
    if (list[i] != CKM_RSA_PKCS_PSS && list[i] != CKM_RSA_X_509) list[o++] = list[i];
  *n = o;
  return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out);
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
  if (!loaded) {
    const char *target = getenv("TG_SHIM_TARGET");
    if (!target) target = "/usr/lib/softhsm/libsofthsm2.so";
    /* A BoringSSL host: the target's own libcrypto before the host's. */
    void *dl = dlopen(target, RTLD_NOW | RTLD_LOCAL |
                                  (getenv("TG_SHIM_DEEPBIND") ? RTLD_DEEPBIND : 0));
    if (!dl) return CKR_GENERAL_ERROR;
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    CK_FUNCTION_LIST_PTR f = NULL;
    if (!gfl || gfl(&f) != CKR_OK || !f) return CKR_GENERAL_ERROR;
    real = *f;
    mine = *f;
    mine.C_GetFunctionList = C_GetFunctionList;
    mine.C_Login = shim_Login;
    mine.C_SignInit = shim_SignInit;
    mine.C_Sign = shim_Sign;
    mine.C_OpenSession = shim_OpenSession;
    mine.C_GetSlotList = shim_GetSlotList;
    mine.C_GetTokenInfo = shim_GetTokenInfo;
    mine.C_GetMechanismList = shim_GetMechanismList;
    loaded = 1;
  }
  *out = &mine;
  return CKR_OK;
}
