#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern void __libc_free(void *);
static const char *needle;
static size_t nlen;
static int ready;
void free(void *p) {
  if (p) {
    if (!ready) {
      needle = getenv("TG_FREE_NEEDLE");
      nlen = needle ? strlen(needle) : 0;
      ready = 1;
    }
    if (nlen && memmem(p, malloc_usable_size(p), needle, nlen)) {
      const char *r = getenv("TG_FREE_REPORT");
      int fd = r ? open(r, O_WRONLY | O_APPEND | O_CREAT, 0600) : -1;
      if (fd >= 0) {
        (void)!write(fd, "freed a buffer holding the secret\n", 34);
        close(fd);
      }
    }
  }
  __libc_free(p);
}
