/* Process-level duties: dropping privileges after binding, the pid file,
 * and systemd's notify protocol (READY/RELOADING/STOPPING). */
#ifndef TG_PROCESS_H
#define TG_PROCESS_H

#include <stddef.h>

/* Switches to user (and its groups) for good.  0, or -1 with err. */
int tg_drop_privileges(const char *user, char *err, size_t errsize);

int tg_write_pid_file(const char *path, char *err, size_t errsize);

/* Sends a state line to $NOTIFY_SOCKET when systemd started us with
 * Type=notify; a no-op otherwise.  Never fails the caller. */
void tg_sd_notify(const char *state);

#endif
