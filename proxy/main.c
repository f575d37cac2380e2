/* tlsgate: command line, start-up, signals.
 *
 *   tlsgate [-c FILE]       run
 *   tlsgate -t -c FILE      check the config and every identity, then exit
 *   tlsgate -V              versions
 *
 * The main thread binds every socket, starts the workers and then only
 * waits for signals. */
#include <errno.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "runtime.h"
#include "tls.h"
#include "worker.h"

#define DEFAULT_CONFIG "config/tlsgate.ini"

typedef struct {
  uv_loop_t *loop;
  uv_signal_t sigterm, sigint, sighup;
  tg_worker_t *workers;
  int nworkers;
  int stopping;
} app_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: tlsgate [-c FILE]       run (default config: %s)\n"
          "       tlsgate -t [-c FILE]    check the config, load every identity,"
          " print a summary\n"
          "       tlsgate -V              print versions\n",
          DEFAULT_CONFIG);
}

static void print_errors(const tg_errors_t *errs) {
  for (size_t i = 0; i < errs->n; i++) fprintf(stderr, "tlsgate: %s\n", errs->msgs[i]);
}

static void on_stop_signal(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  if (app->stopping) {
    tg_log(TG_LOG_INFO, "%s again: still draining",
           signum == SIGTERM ? "SIGTERM" : "SIGINT");
    return;
  }
  app->stopping = 1;
  tg_log(TG_LOG_INFO, "%s: no longer accepting, draining open connections",
         signum == SIGTERM ? "SIGTERM" : "SIGINT");
  for (int i = 0; i < app->nworkers; i++) tg_worker_stop(&app->workers[i]);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sighup, NULL);
}

static void on_hup(uv_signal_t *h, int signum) {
  tg_log(TG_LOG_WARN, "SIGHUP: reloading is not supported by this version yet; "
         "the running config stays");
}

static int write_pid_file(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) {
    tg_log(TG_LOG_ERROR, "pid_file %s: %s", path, strerror(errno));
    return -1;
  }
  fprintf(f, "%ld\n", (long)getpid());
  fclose(f);
  return 0;
}

int main(int argc, char **argv) {
  const char *path = DEFAULT_CONFIG;
  int check = 0, opt;
  while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
    switch (opt) {
    case 'c':
      path = optarg;
      break;
    case 't':
      check = 1;
      break;
    case 'V':
      printf("tlsgate %s\nTLS library: %s\nlibuv: %s\n", TG_VERSION,
             tg_tls_library_version(), uv_version_string());
      return 0;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "tlsgate: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);

  char err[512];
  if (tg_tls_init(err, sizeof(err)) != 0) {
    fprintf(stderr, "tlsgate: %s\n", err);
    return 1;
  }
  tg_errors_t errs = {0};
  tg_config_t *cfg = tg_config_load(path, &errs);
  tg_runtime_t *rt = cfg ? tg_runtime_new(cfg, &errs) : NULL;
  if (!rt) {
    print_errors(&errs);
    fprintf(stderr, "tlsgate: %s: %zu error%s\n", path, errs.n, errs.n == 1 ? "" : "s");
    tg_errors_free(&errs);
    tg_config_free(cfg);
    return 1;
  }
  if (check) {
    printf("%s: ok, %zu listener%s, %d worker%s\n", path, rt->nservices,
           rt->nservices == 1 ? "" : "s", cfg->workers, cfg->workers == 1 ? "" : "s");
    for (size_t i = 0; i < rt->nservices; i++) printf("  %s\n", rt->services[i]->summary);
    tg_runtime_free(rt);
    return 0;
  }

  tg_log_setup((tg_log_level_t)cfg->log_level, (tg_log_format_t)cfg->log_format);
  if (tg_runtime_bind(rt, cfg->workers, &errs) != 0) {
    print_errors(&errs);
    tg_errors_free(&errs);
    tg_runtime_free(rt);
    return 1;
  }
  if (cfg->pid_file[0] && write_pid_file(cfg->pid_file) != 0) {
    tg_runtime_free(rt);
    return 1;
  }

  app_t app = {.loop = uv_default_loop(), .nworkers = cfg->workers};
  app.workers = calloc((size_t)app.nworkers, sizeof(*app.workers));
  if (!app.workers) {
    tg_log(TG_LOG_ERROR, "out of memory");
    return 1;
  }
  uv_signal_init(app.loop, &app.sigterm);
  uv_signal_init(app.loop, &app.sigint);
  uv_signal_init(app.loop, &app.sighup);
  app.sigterm.data = app.sigint.data = app.sighup.data = &app;
  uv_signal_start(&app.sigterm, on_stop_signal, SIGTERM);
  uv_signal_start(&app.sigint, on_stop_signal, SIGINT);
  uv_signal_start(&app.sighup, on_hup, SIGHUP);

  for (int i = 0; i < app.nworkers; i++) {
    if (tg_worker_start(&app.workers[i], i, rt, err, sizeof(err)) != 0) {
      tg_log(TG_LOG_ERROR, "worker %d: %s", i, err);
      return 1;
    }
  }
  for (size_t i = 0; i < rt->nservices; i++)
    tg_log(TG_LOG_INFO, "%s", rt->services[i]->summary);
  tg_log(TG_LOG_INFO, "tlsgate %s (%s, libuv %s) running with %d worker%s, pid %ld",
         TG_VERSION, tg_tls_library_version(), uv_version_string(), app.nworkers,
         app.nworkers == 1 ? "" : "s", (long)getpid());

  uv_run(app.loop, UV_RUN_DEFAULT);
  for (int i = 0; i < app.nworkers; i++) tg_worker_join(&app.workers[i]);
  uv_loop_close(app.loop);
  free(app.workers);
  if (cfg->pid_file[0]) unlink(cfg->pid_file);
  tg_runtime_free(rt);
  tg_log(TG_LOG_INFO, "stopped");
  return 0;
}
