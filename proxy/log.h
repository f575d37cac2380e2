/* Logging: one line per event, to stderr, text or JSON.
 *
 * Every line carries a level and, for connection events, the connection id,
 * listener name and peer address.  Nothing secret is ever passed here. */
#ifndef TG_LOG_H
#define TG_LOG_H

#include <stdarg.h>

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

void tg_log_setup(tg_log_level_t level, tg_log_format_t format);
int tg_log_enabled(tg_log_level_t level);

/* A free-form event not tied to a connection. */
void tg_log(tg_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A connection event: id, listener, peer and event name become fields. */
void tg_log_conn(tg_log_level_t level, unsigned long long id,
                 const char *listener, const char *peer, const char *event,
                 const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Writes the TLS library's queued errors as "reason: reason" into buf and
 * clears the queue.  Returns buf ("no error detail" when the queue is empty). */
const char *tg_tls_errors(char *buf, unsigned long size);

#endif
