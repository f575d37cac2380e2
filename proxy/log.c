#include "log.h"

#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static tg_log_level_t log_level = TG_LOG_INFO;
static tg_log_format_t log_format = TG_LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void tg_log_setup(tg_log_level_t level, tg_log_format_t format) {
  log_level = level;
  log_format = format;
}

int tg_log_enabled(tg_log_level_t level) { return level <= log_level; }

static void timestamp(char *buf, size_t size) {
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, size - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

/* Appends s to out as a JSON string body (without quotes). */
static size_t json_escape(char *out, size_t size, const char *s) {
  size_t n = 0;
  for (; *s && n + 7 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(out + n, size - n, "\\u%04x", c);
    } else {
      out[n++] = (char)c;
    }
  }
  out[n] = '\0';
  return n;
}

/* Builds the whole line in one buffer and writes it with one call, so lines
 * from several worker threads never interleave. */
static void emit(tg_log_level_t level, unsigned long long id,
                 const char *listener, const char *peer, const char *event,
                 const char *fmt, va_list ap) {
  char msg[1024], ts[40], line[2560];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  timestamp(ts, sizeof(ts));
  int n;
  if (log_format == TG_LOG_JSON) {
    char m[1400], l[200], p[200], e[100];
    json_escape(m, sizeof(m), msg);
    json_escape(l, sizeof(l), listener ? listener : "");
    json_escape(p, sizeof(p), peer ? peer : "");
    json_escape(e, sizeof(e), event ? event : "");
    n = snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\"", ts,
                 level_names[level]);
    if (event)
      n += snprintf(line + n, sizeof(line) - (size_t)n,
                    ",\"conn\":%llu,\"listener\":\"%s\",\"peer\":\"%s\","
                    "\"event\":\"%s\"",
                    id, l, p, e);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ",\"msg\":\"%s\"}\n", m);
  } else if (event) {
    n = snprintf(line, sizeof(line), "%s %-5s [%llu] client %s on %s: %s: %s\n",
                 ts, level_names[level], id, peer ? peer : "-",
                 listener ? listener : "-", event, msg);
  } else {
    n = snprintf(line, sizeof(line), "%s %-5s %s\n", ts, level_names[level],
                 msg);
  }
  if (n >= (int)sizeof(line)) {
    n = sizeof(line) - 1;
    line[n - 1] = '\n';
  }
  fwrite(line, 1, (size_t)n, stderr);
}

void tg_log(tg_log_level_t level, const char *fmt, ...) {
  if (!tg_log_enabled(level)) return;
  va_list ap;
  va_start(ap, fmt);
  emit(level, 0, NULL, NULL, NULL, fmt, ap);
  va_end(ap);
}

void tg_log_conn(tg_log_level_t level, unsigned long long id,
                 const char *listener, const char *peer, const char *event,
                 const char *fmt, ...) {
  if (!tg_log_enabled(level)) return;
  va_list ap;
  va_start(ap, fmt);
  emit(level, id, listener, peer, event, fmt, ap);
  va_end(ap);
}

const char *tg_tls_errors(char *buf, unsigned long size) {
  size_t n = 0;
  unsigned long e;
  buf[0] = '\0';
  while ((e = ERR_get_error()) != 0) {
    const char *reason = ERR_reason_error_string(e);
    char tmp[64];
    if (!reason) {
      snprintf(tmp, sizeof(tmp), "error %lx", e);
      reason = tmp;
    }
    if (n > 0 && strstr(buf, reason)) continue; /* drop repeats */
    int w = snprintf(buf + n, size - n, "%s%s", n ? ": " : "", reason);
    if (w < 0 || (size_t)w >= size - n) break;
    n += (size_t)w;
  }
  if (n == 0) snprintf(buf, size, "no error detail");
  return buf;
}
