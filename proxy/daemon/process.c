#include "process.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int tg_drop_privileges(const char *user, char *err, size_t errsize) {
  errno = 0;
  struct passwd *pw = getpwnam(user);
  if (!pw) {
    snprintf(err, errsize, "user %s: %s", user, errno ? strerror(errno) : "no such user");
    return -1;
  }
  if (geteuid() != 0) {
    if (geteuid() == pw->pw_uid) return 0;
    snprintf(err, errsize, "user %s: only root can switch user", user);
    return -1;
  }
  if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
      setuid(pw->pw_uid) != 0) {
    snprintf(err, errsize, "user %s: %s", user, strerror(errno));
    return -1;
  }
  /* Make sure there is no way back. */
  if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
    snprintf(err, errsize, "user %s: could regain root after dropping it", user);
    return -1;
  }
  return 0;
}

int tg_write_pid_file(const char *path, char *err, size_t errsize) {
  FILE *f = fopen(path, "w");
  if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
    snprintf(err, errsize, "pid_file %s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

void tg_sd_notify(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  if (len >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) return;
  memcpy(sa.sun_path, path, len);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0'; /* abstract namespace */
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  char msg[256];
  int n = snprintf(msg, sizeof(msg), "%s\nMAINPID=%ld", state, (long)getpid());
  sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
  close(fd);
}
