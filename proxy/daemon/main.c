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
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "pkcs11.h"
#include "process.h"
#include "runtime.h"
#include "tls.h"
#include "tls_compat.h"
#include "watch.h"
#include "worker.h"

#define DEFAULT_CONFIG "config/tlsgate.ini"

typedef struct {
  const char *path;
  uv_loop_t *loop;
  uv_signal_t sigterm, sigint, sighup;
  tg_runtime_t *rt;     /* the current runtime (a reference) */
  tg_worker_t *workers;
  int nworkers;
  int stopping;
  unsigned reloads, reload_failures;
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
  /* Workers close their dup()s; the runtime's own copies must go too, or
   * the kernel would keep completing handshakes into a backlog nobody
   * accepts from. */
  for (int i = 0; i < app->nworkers; i++)
    atomic_store(&app->workers[i].stop_requested, 1); /* no reload applies now */
  tg_runtime_unlink_unix(app->rt);
  tg_runtime_release_sockets(app->rt);
  for (int i = 0; i < app->nworkers; i++) tg_worker_stop(&app->workers[i]);
  tg_metrics_stop();
  tg_health_set_runtime(app->loop, NULL);
  tg_watch_stop();
  tg_sd_notify("STOPPING=1");
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sighup, NULL);
}

static void on_files_changed(void *arg, const char *what);

/* One line per listener, then one per bind shared by SNI sections. */
static void log_summaries(const tg_runtime_t *rt) {
  for (size_t i = 0; i < rt->nservices; i++)
    tg_log(TG_LOG_INFO, "%s", rt->services[i]->summary);
  for (size_t i = 0; i < rt->nservices; i++)
    if (rt->services[i]->sni_summary) tg_log(TG_LOG_INFO, "%s", rt->services[i]->sni_summary);
}

/* SIGHUP or watch_files: re-reads the config file and every certificate,
 * key, CA and CRL it names.  Only a runtime that loaded and bound
 * completely replaces the running one; otherwise the errors are logged and
 * nothing changes. */
static void reload(app_t *app) {
  if (app->stopping) return;
  tg_watch_refresh();
  tg_sd_notify("RELOADING=1");
  tg_errors_t errs = {0};
  tg_config_t *cfg = tg_config_load(app->path, &errs);
  tg_runtime_t *rt = cfg ? tg_runtime_new(cfg, &errs) : NULL;
  if (!rt) tg_config_free(cfg);
  if (rt && rt->cfg->workers != app->nworkers) {
    tg_log(TG_LOG_WARN, "reload: workers = %d takes effect at the next restart; "
           "keeping %d", rt->cfg->workers, app->nworkers);
    rt->cfg->workers = app->nworkers;
  }
  if (rt && tg_runtime_bind(rt, app->nworkers, app->rt, &errs) != 0) {
    tg_runtime_unref(rt);
    rt = NULL;
  }
  app->reloads++;
  if (!rt) {
    app->reload_failures++;
    tg_stats_reload(0, app->rt->generation);
    for (size_t i = 0; i < errs.n; i++) tg_log(TG_LOG_ERROR, "reload: %s", errs.msgs[i]);
    tg_log(TG_LOG_ERROR, "reload rejected (%zu error%s); still running the previous "
           "config", errs.n, errs.n == 1 ? "" : "s");
    tg_errors_free(&errs);
    tg_sd_notify("READY=1");
    return;
  }
  tg_errors_free(&errs);
  for (size_t i = 0; i < rt->cfg->warnings.n; i++)
    tg_log(TG_LOG_WARN, "reload: %s", rt->cfg->warnings.msgs[i]);
  rt->generation = app->rt->generation + 1;
  tg_log_setup((tg_log_level_t)rt->cfg->log_level, (tg_log_format_t)rt->cfg->log_format);
  for (int i = 0; i < app->nworkers; i++) {
    tg_runtime_ref(rt);
    tg_worker_reload(&app->workers[i], rt);
  }
  tg_runtime_t *old = app->rt;
  app->rt = rt;
  tg_runtime_publish_stats(rt);
  tg_health_set_runtime(app->loop, rt);
  tg_stats_reload(1, rt->generation);
  if (strcmp(rt->cfg->metrics, old->cfg->metrics) != 0)
    tg_log(TG_LOG_WARN, "reload: metrics = %s takes effect at the next restart",
           rt->cfg->metrics);
  /* Workers listen on their own dup()s; sockets of listeners that are gone
   * close as soon as every worker has switched. */
  tg_runtime_release_sockets(old);
  tg_runtime_unref(old);
  log_summaries(rt);
  tg_watch_set(app->loop, rt->cfg, on_files_changed, app);
  tg_log(TG_LOG_INFO, "reloaded: generation %u, %zu listener%s", rt->generation,
         rt->nservices, rt->nservices == 1 ? "" : "s");
  tg_sd_notify("READY=1");
}

static void on_hup(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  if (app->stopping) return;
  tg_log(TG_LOG_INFO, "SIGHUP: reloading %s", app->path);
  reload(app);
}

/* watch_files: a file the config names changed and has been quiet for
 * TG_WATCH_SETTLE_MS. */
static void on_files_changed(void *arg, const char *what) {
  app_t *app = arg;
  if (app->stopping) return;
  tg_log(TG_LOG_INFO, "watch_files: %s changed: reloading %s", what, app->path);
  reload(app);
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
  /* -t finds token keys but never logs in: a check costs no PIN attempt. */
  tg_p11_set_check_only(check);
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
  cfg = NULL; /* the runtime owns it now */
  for (size_t i = 0; i < rt->cfg->warnings.n; i++)
    fprintf(stderr, "tlsgate: warning: %s\n", rt->cfg->warnings.msgs[i]);
  if (check) {
    printf("%s: ok, %zu listener%s, %d worker%s\n", path, rt->nservices,
           rt->nservices == 1 ? "" : "s", rt->cfg->workers, rt->cfg->workers == 1 ? "" : "s");
    for (size_t i = 0; i < rt->nservices; i++) printf("  %s\n", rt->services[i]->summary);
    for (size_t i = 0; i < rt->nservices; i++)
      if (rt->services[i]->sni_summary) printf("  %s\n", rt->services[i]->sni_summary);
    tg_config_print_paths(rt->cfg, stdout);
    tg_runtime_unref(rt);
    return 0;
  }

  tg_log_setup((tg_log_level_t)rt->cfg->log_level, (tg_log_format_t)rt->cfg->log_format);
  tg_runtime_inherit_sockets();
  if (tg_runtime_bind(rt, rt->cfg->workers, NULL, &errs) != 0) {
    print_errors(&errs);
    tg_errors_free(&errs);
    tg_runtime_unref(rt);
    return 1;
  }
  tg_runtime_log_unused_sockets();
  /* The pid file is a start-up decision: a reload does not move it. */
  char *pid_file = rt->cfg->pid_file[0] ? strdup(rt->cfg->pid_file) : NULL;
  if (pid_file && tg_write_pid_file(pid_file, err, sizeof(err)) != 0) {
    tg_log(TG_LOG_ERROR, "%s", err);
    tg_runtime_unref(rt);
    return 1;
  }

  app_t app = {.path = path, .loop = uv_default_loop(), .nworkers = rt->cfg->workers, .rt = rt};
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

  tg_runtime_publish_stats(rt);
  if (rt->cfg->metrics[0]) {
    if (tg_metrics_start(app.loop, rt->cfg->metrics, err, sizeof(err)) != 0) {
      tg_log(TG_LOG_ERROR, "%s", err);
      return 1;
    }
    tg_log(TG_LOG_INFO, "metrics on http://%s/metrics", rt->cfg->metrics);
  }
  /* Every socket is bound and every key loaded: give up root before any
   * client can talk to us. */
  if (rt->cfg->user[0]) {
    if (tg_drop_privileges(rt->cfg->user, err, sizeof(err)) != 0) {
      tg_log(TG_LOG_ERROR, "%s", err);
      return 1;
    }
    tg_log(TG_LOG_INFO, "running as user %s (uid %ld)", rt->cfg->user, (long)getuid());
  }
  for (int i = 0; i < app.nworkers; i++) {
    tg_runtime_ref(rt);
    if (tg_worker_start(&app.workers[i], i, rt, err, sizeof(err)) != 0) {
      tg_log(TG_LOG_ERROR, "worker %d: %s", i, err);
      return 1;
    }
  }
  log_summaries(rt);
  tg_health_set_runtime(app.loop, rt);
  tg_watch_set(app.loop, rt->cfg, on_files_changed, &app);
  rt = NULL; /* app.rt from here on */
  tg_sd_notify("READY=1");
  tg_log(TG_LOG_INFO, "tlsgate %s (%s, libuv %s) running with %d worker%s, pid %ld",
         TG_VERSION, tg_tls_library_version(), uv_version_string(), app.nworkers,
         app.nworkers == 1 ? "" : "s", (long)getpid());

  uv_run(app.loop, UV_RUN_DEFAULT);
  for (int i = 0; i < app.nworkers; i++) tg_worker_join(&app.workers[i]);
  uv_loop_close(app.loop);
  free(app.workers);
  if (pid_file) unlink(pid_file);
  free(pid_file);
  tg_runtime_unref(app.rt);
  tg_log(TG_LOG_INFO, "stopped");
  return 0;
}
