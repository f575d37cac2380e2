/* Only in the ThreadSanitizer build (make tsan): libuv closes descriptors
 * with syscall(SYS_close, fd), which ThreadSanitizer does not see, so a
 * descriptor number that another thread gets next (accept, dup, socket)
 * looks like a data race on the descriptor.  This syscall() takes
 * precedence over libc's for libuv too and turns that one call into an
 * intercepted close(); everything else goes to libc unchanged.  Not part of
 * any other build. */
#if defined(__SANITIZE_THREAD__)
#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

long syscall(long number, ...) {
  va_list ap;
  long a[6];
  va_start(ap, number);
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_close) return close((int)a[0]);
  static _Atomic(void *) real_sym;
  void *sym = atomic_load(&real_sym);
  if (!sym) {
    sym = dlsym(RTLD_NEXT, "syscall");
    atomic_store(&real_sym, sym);
  }
  long (*real)(long, ...);
  *(void **)&real = sym;
  return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
#else
typedef int tg_tsan_shim_unused;
#endif
