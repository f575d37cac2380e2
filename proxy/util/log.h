/* Logging: one line per event, to stderr, text or JSON.
 *
 * Every line carries a level and, for connection events, the connection id,
 * listener name and peer address.  Nothing secret is ever passed here. */
#ifndef TG_LOG_H
#define TG_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
  TG_LOG_ERROR = 0,
  TG_LOG_WARN,
  TG_LOG_INFO,
  TG_LOG_DEBUG
} tg_log_level_t;

typedef enum {
  TG_LOG_TEXT = 0,
  TG_LOG_JSON
} tg_log_format_t;

/* Safe to call while other threads log (a reload changes both). */
void tg_log_setup(tg_log_level_t level, tg_log_format_t format);
int tg_log_enabled(tg_log_level_t level);
tg_log_format_t tg_log_get_format(void);

/* Escapes s for a field of a log line in the given format into out (always
 * terminated, cut at size).  Text: printable ASCII kept, '\\' doubled, any
 * other byte as \xNN.  JSON: a valid string body (quotes, backslashes and
 * control bytes escaped, well-formed UTF-8 kept, other bytes as \u00NN).
 * Every log line goes through it; exposed for the unit tests. */
size_t tg_log_escape(tg_log_format_t format, char *out, size_t size, const char *s);

/* A free-form event not tied to a connection. */
void tg_log(tg_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A connection event: id, listener, peer and event name become fields. */
void tg_log_conn(tg_log_level_t level, unsigned long long id,
                 const char *listener, const char *peer, const char *event,
                 const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
