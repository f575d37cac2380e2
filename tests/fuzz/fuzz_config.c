/* libFuzzer harness: the INI config parser (tg_config_load + tg_config_free).
 *
 * The input is the config file.  It is written to a memfd once per run and
 * loaded through /proc/self/fd/N, so the real file-reading path (fopen,
 * read_file, the line-counting inih reader) is what gets fuzzed, with no
 * temporary files on disk.  Loading only parses and validates: identities,
 * CA files and secrets are not opened by tg_config_load.
 *
 * Checked besides memory safety (ASan/UBSan, leaks per input):
 *   - a config is returned exactly when no error was reported;
 *   - every error message starts with the file path;
 *   - an accepted config is internally consistent (listener count, backend
 *     counts, non-empty names, ports set). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static int memfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  memfd = memfd_create("tlsgate-fuzz-config", 0);
  if (memfd < 0) {
    perror("memfd_create");
    abort();
  }
  snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (ftruncate(memfd, 0) != 0) abort();
  size_t off = 0;
  while (off < size) {
    ssize_t n = pwrite(memfd, data + off, size - off, (off_t)off);
    if (n <= 0) abort();
    off += (size_t)n;
  }
  tg_errors_t errs = {0};
  tg_config_t *cfg = tg_config_load(path, &errs);
  if ((cfg != NULL) != (errs.n == 0)) {
    fprintf(stderr, "config %s but %zu error(s)\n", cfg ? "accepted" : "refused",
            errs.n);
    abort();
  }
  for (size_t i = 0; i < errs.n; i++) {
    if (!errs.msgs[i] || strncmp(errs.msgs[i], path, strlen(path)) != 0) {
      fprintf(stderr, "error message without the file name: %s\n",
              errs.msgs[i] ? errs.msgs[i] : "(null)");
      abort();
    }
  }
  if (cfg) {
    if (cfg->nlisteners == 0 || cfg->nlisteners > TG_MAX_LISTENERS) abort();
    if (cfg->workers < 1) abort();
    for (size_t i = 0; i < cfg->nlisteners; i++) {
      const tg_listener_conf_t *l = cfg->listeners[i];
      if (!l->name[0] || l->bind.port == 0 || !l->bind.is_literal) abort();
      if (l->nbackends == 0 || l->nbackends > TG_MAX_BACKENDS) abort();
      for (size_t b = 0; b < l->nbackends; b++)
        if (l->backends[b].port == 0 || !l->backends[b].host[0]) abort();
      if (l->allow_clients.n > TG_ACL_MAX) abort();
      if (l->connect_timeout_ms == 0 || l->handshake_timeout_ms == 0) abort();
    }
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
  return 0;
}
