#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

typedef struct {
  int exists;
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime, ctime;
} fsig_t;

typedef struct {
  char *path;
  fsig_t sig;
} wfile_t;

/* A watched directory: its handle is allocated alone because a closing
 * handle must not move. */
typedef struct {
  char *path;
  uv_fs_event_t *ev;
} wdir_t;

static struct {
  uv_loop_t *loop;
  uv_timer_t timer;
  int timer_open;
  wfile_t *files;
  size_t nfiles;
  wdir_t *dirs;
  size_t ndirs;
  tg_watch_cb cb;
  void *arg;
} W;

static int ts_after(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

static void take_sig(const char *path, fsig_t *s) {
  struct stat st;
  memset(s, 0, sizeof(*s));
  if (stat(path, &st) != 0) return; /* follows symlinks: the target counts */
  s->exists = 1;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->size = st.st_size;
  s->mtime = st.st_mtim;
  s->ctime = st.st_ctim;
  if (!S_ISDIR(st.st_mode)) return;
  /* A hashed CA directory: a certificate rewritten in place changes no
   * directory time, so its entries count too (sizes summed, inodes mixed,
   * latest times). */
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *e;
  char p[PATH_MAX];
  int n = 0;
  while ((e = readdir(d)) != NULL && n++ < 4096) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
    if (stat(p, &st) != 0) continue;
    s->size += st.st_size;
    s->ino ^= st.st_ino * 2654435761u;
    if (ts_after(&st.st_mtim, &s->mtime)) s->mtime = st.st_mtim;
    if (ts_after(&st.st_ctim, &s->ctime)) s->ctime = st.st_ctim;
  }
  closedir(d);
}

static int sig_eq(const fsig_t *a, const fsig_t *b) {
  return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
         a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
         a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
         a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* ---- the set of files a config names -------------------------------------- */

typedef struct {
  char **v;
  size_t n;
} strv_t;

static void strv_add(strv_t *sv, const char *s, size_t len) {
  while (len && (*s == ' ' || *s == '\t')) s++, len--;
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
  if (!len) return;
  for (size_t i = 0; i < sv->n; i++)
    if (strlen(sv->v[i]) == len && memcmp(sv->v[i], s, len) == 0) return;
  char **nv = realloc(sv->v, (sv->n + 1) * sizeof(*nv));
  if (!nv) return;
  sv->v = nv;
  if ((sv->v[sv->n] = strndup(s, len)) != NULL) sv->n++;
}

static void add_list(strv_t *sv, const char *list) {
  while (list && *list) {
    const char *comma = strchr(list, ',');
    size_t len = comma ? (size_t)(comma - list) : strlen(list);
    strv_add(sv, list, len);
    list = comma ? comma + 1 : NULL;
  }
}

static void add_secret(strv_t *sv, const char *spec) {
  if (spec && strncmp(spec, "file:", 5) == 0) strv_add(sv, spec + 5, strlen(spec + 5));
}

static void collect(const tg_config_t *cfg, strv_t *sv) {
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    const tg_listener_conf_t *l = cfg->listeners[i];
    add_list(sv, l->pfx);
    add_secret(sv, l->pfx_password);
    add_list(sv, l->cert);
    add_list(sv, l->key);
    add_secret(sv, l->key_password);
    add_list(sv, l->client_ca);
    add_list(sv, l->crl);
    add_secret(sv, l->psk);
    add_list(sv, l->ticket_key_file);
    add_list(sv, l->ocsp);
    add_list(sv, l->backend_pfx);
    add_secret(sv, l->backend_pfx_password);
    add_list(sv, l->backend_ca);
    add_secret(sv, l->backend_psk);
    add_list(sv, l->backend_cert);
    add_list(sv, l->backend_key);
    add_secret(sv, l->backend_key_password);
    add_list(sv, l->dtls_cookie_secret_file);
  }
}

/* The directory to watch for path: itself if it is a directory (a hashed
 * CA directory), else the one that holds it. */
static char *dir_of(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return strdup(path);
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

/* ---- events ------------------------------------------------------------------ */

static void on_settled(uv_timer_t *t) {
  const char *changed = NULL;
  for (size_t i = 0; i < W.nfiles; i++) {
    fsig_t now;
    take_sig(W.files[i].path, &now);
    if (!sig_eq(&now, &W.files[i].sig)) {
      if (!changed) changed = W.files[i].path;
      W.files[i].sig = now; /* a broken file is not retried until it changes */
    }
  }
  if (changed && W.cb) W.cb(W.arg, changed);
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status) {
  if (status < 0) {
    tg_log(TG_LOG_WARN, "watch_files: %s: %s", ((wdir_t *)h->data)->path,
           uv_strerror(status));
    return;
  }
  /* Whatever moved in the directory, compare once things are quiet. */
  if (W.timer_open) uv_timer_start(&W.timer, on_settled, TG_WATCH_SETTLE_MS, 0);
}

static void free_handle(uv_handle_t *h) { free(h); }

static void drop_dir(wdir_t *d) {
  if (d->ev) uv_close((uv_handle_t *)d->ev, free_handle);
  free(d->path);
}

void tg_watch_set(uv_loop_t *loop, const tg_config_t *cfg, tg_watch_cb cb, void *arg) {
  strv_t sv = {0};
  if (cfg && cfg->watch_files) collect(cfg, &sv);
  W.loop = loop;
  W.cb = cb;
  W.arg = arg;
  if (!W.timer_open && sv.n) {
    uv_timer_init(loop, &W.timer);
    W.timer_open = 1;
  }

  /* Files: a path watched before keeps the signature seen before, so a
   * change during the reload that built cfg is still noticed. */
  wfile_t *files = calloc(sv.n ? sv.n : 1, sizeof(*files));
  for (size_t i = 0; files && i < sv.n; i++) {
    files[i].path = sv.v[i];
    sv.v[i] = NULL;
    size_t k;
    for (k = 0; k < W.nfiles; k++)
      if (W.files[k].path && strcmp(W.files[k].path, files[i].path) == 0) break;
    if (k < W.nfiles) files[i].sig = W.files[k].sig;
    else take_sig(files[i].path, &files[i].sig);
  }
  size_t nfiles = files ? sv.n : 0;

  /* Directories: keep the handles of those still needed, so no event
   * queued meanwhile is lost. */
  wdir_t *dirs = calloc(nfiles ? nfiles : 1, sizeof(*dirs));
  size_t ndirs = 0;
  for (size_t i = 0; dirs && i < nfiles; i++) {
    char *d = dir_of(files[i].path);
    if (!d) continue;
    size_t k;
    for (k = 0; k < ndirs; k++)
      if (strcmp(dirs[k].path, d) == 0) break;
    if (k < ndirs) {
      free(d);
      continue;
    }
    dirs[ndirs].path = d;
    for (k = 0; k < W.ndirs; k++)
      if (W.dirs[k].ev && strcmp(W.dirs[k].path, d) == 0) {
        dirs[ndirs].ev = W.dirs[k].ev; /* moved over */
        W.dirs[k].ev = NULL;
        break;
      }
    if (!dirs[ndirs].ev) {
      uv_fs_event_t *ev = calloc(1, sizeof(*ev));
      int rc = ev ? uv_fs_event_init(loop, ev) : UV_ENOMEM;
      if (rc == 0) {
        rc = uv_fs_event_start(ev, on_event, d, 0);
        if (rc != 0) uv_close((uv_handle_t *)ev, free_handle);
      } else {
        free(ev);
      }
      if (rc != 0) {
        tg_log(TG_LOG_WARN, "watch_files: cannot watch directory %s: %s (changes there "
               "need SIGHUP)", d, uv_strerror(rc));
        ev = NULL;
      }
      dirs[ndirs].ev = ev;
    }
    ndirs++;
  }
  for (size_t i = 0; i < ndirs; i++)
    if (dirs[i].ev) dirs[i].ev->data = &dirs[i];

  for (size_t k = 0; k < W.ndirs; k++) drop_dir(&W.dirs[k]);
  free(W.dirs);
  for (size_t k = 0; k < W.nfiles; k++) free(W.files[k].path);
  free(W.files);
  for (size_t i = 0; i < sv.n; i++) free(sv.v[i]);
  free(sv.v);
  W.files = files;
  W.nfiles = nfiles;
  W.dirs = dirs;
  W.ndirs = dirs ? ndirs : 0;
  if (W.ndirs)
    tg_log(TG_LOG_DEBUG, "watch_files: %zu file%s in %zu director%s", W.nfiles,
           W.nfiles == 1 ? "" : "s", W.ndirs, W.ndirs == 1 ? "y" : "ies");
  if (!W.nfiles && W.timer_open) {
    uv_timer_stop(&W.timer);
  }
}

void tg_watch_refresh(void) {
  for (size_t i = 0; i < W.nfiles; i++) take_sig(W.files[i].path, &W.files[i].sig);
}

void tg_watch_stop(void) {
  tg_watch_set(W.loop, NULL, NULL, NULL);
  if (W.timer_open) {
    W.timer_open = 0;
    uv_close((uv_handle_t *)&W.timer, NULL);
  }
  free(W.files);
  free(W.dirs);
  W.files = NULL;
  W.dirs = NULL;
}
