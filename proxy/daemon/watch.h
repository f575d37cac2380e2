/* watch_files: reload by itself when a file the config names changes.
 *
 * Watched: every identity (pfx, cert, key, backend_pfx), CA (client_ca,
 * backend_ca; a hashed directory as a whole), CRL, OCSP, ticket key, PSK,
 * DTLS cookie secret and file: password a listener names.  The config file
 * itself is not: an edit in progress must not go live half-written (send
 * SIGHUP when done).
 *
 * The directories holding those files are watched (inotify through
 * uv_fs_event), so a renewal by rename (certbot's symlink swap, a
 * Kubernetes secret's ..data swap, mv new.pem cert.pem) is seen as well as
 * a rewrite in place.  Any event in such a directory (re)starts a 500 ms
 * timer; when it fires the files' stat() signatures (device, inode, size,
 * mtime, ctime) are compared with the last ones seen and only a real change
 * asks for a reload.  Runs on the main thread. */
#ifndef TG_WATCH_H
#define TG_WATCH_H

#include <uv.h>

#include "config.h"

#define TG_WATCH_SETTLE_MS 500

/* Called on the main loop when watched files changed; what names the first
 * changed file (for the log). */
typedef void (*tg_watch_cb)(void *arg, const char *what);

/* Watches the files of cfg (nothing when watch_files = off), replacing
 * what was watched before.  The signatures are taken now. */
void tg_watch_set(uv_loop_t *loop, const tg_config_t *cfg, tg_watch_cb cb, void *arg);

/* A reload is about to read the files: what they are now counts as seen,
 * so a SIGHUP after a renewal is not followed by a second reload. */
void tg_watch_refresh(void);

/* Stops every watch (shutdown). */
void tg_watch_stop(void);

#endif
