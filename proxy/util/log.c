#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* Workers read these on every log call while a reload (main thread) sets
 * them: atomics, relaxed (a line logged with the old level or format during
 * a reload is fine; a torn or racy read is not). */
static _Atomic int log_level = TG_LOG_INFO;
static _Atomic int log_format = TG_LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void tg_log_setup(tg_log_level_t level, tg_log_format_t format) {
  atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
  atomic_store_explicit(&log_format, (int)format, memory_order_relaxed);
}

int tg_log_enabled(tg_log_level_t level) {
  return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

tg_log_format_t tg_log_get_format(void) {
  return (tg_log_format_t)atomic_load_explicit(&log_format, memory_order_relaxed);
}

static void timestamp(char *buf, size_t size) {
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, size - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

/* Length of the well-formed UTF-8 sequence at s (shortest form, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s) {
  unsigned char c = s[0];
  size_t n;
  unsigned lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return n;
}

/* JSON: quotes, backslashes and control bytes escaped; well-formed UTF-8
 * kept; any other byte becomes \u00NN, so the line is always valid JSON. */
static size_t json_escape(char *out, size_t size, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  size_t n = 0;
  while (*s && n + 7 < size) {
    unsigned char c = *s;
    size_t u = c >= 0x80 ? utf8_len(s) : 0;
    if (u) {
      memcpy(out + n, s, u);
      n += u;
      s += u;
      continue;
    }
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f) {
      n += (size_t)snprintf(out + n, size - n, "\\u%04x", c);
    } else {
      out[n++] = (char)c;
    }
    s++;
  }
  out[n] = '\0';
  return n;
}

/* Text: printable ASCII as it is, a backslash doubled, every other byte
 * (control characters, DEL, anything non-ASCII) as \xNN, so that nothing a
 * peer chose (a certificate name, SNI, ALPN, a PSK identity) can start a
 * new line or drive a terminal. */
static size_t text_escape(char *out, size_t size, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  size_t n = 0;
  for (; *s; s++) {
    unsigned char c = *s;
    size_t need = c == '\\' ? 2 : (c < 0x20 || c >= 0x7f) ? 4 : 1;
    if (n + need >= size) break; /* never half an escape */
    if (c == '\\') {
      out[n++] = '\\';
      out[n++] = '\\';
    } else if (c < 0x20 || c >= 0x7f) {
      n += (size_t)snprintf(out + n, size - n, "\\x%02x", c);
    } else {
      out[n++] = (char)c;
    }
  }
  out[n] = '\0';
  return n;
}

size_t tg_log_escape(tg_log_format_t format, char *out, size_t size, const char *s) {
  if (size == 0) return 0;
  return format == TG_LOG_JSON ? json_escape(out, size, s) : text_escape(out, size, s);
}

/* Builds the whole line in one buffer and writes it with one call, so lines
 * from several worker threads never interleave. */
static void emit(tg_log_level_t level, unsigned long long id,
                 const char *listener, const char *peer, const char *event,
                 const char *fmt, va_list ap) {
  /* Every field is escaped here, once, whatever its source. */
  char msg[1024], ts[40], line[4800];
  char m[4100], l[260], p[260], e[100];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  timestamp(ts, sizeof(ts));
  tg_log_format_t format = tg_log_get_format();
  tg_log_escape(format, m, sizeof(m), msg);
  tg_log_escape(format, l, sizeof(l), listener ? listener : (format == TG_LOG_JSON ? "" : "-"));
  tg_log_escape(format, p, sizeof(p), peer ? peer : (format == TG_LOG_JSON ? "" : "-"));
  tg_log_escape(format, e, sizeof(e), event ? event : "");
  int n;
  if (format == TG_LOG_JSON) {
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
                 ts, level_names[level], id, p, l, e, m);
  } else {
    n = snprintf(line, sizeof(line), "%s %-5s %s\n", ts, level_names[level], m);
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
