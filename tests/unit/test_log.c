/* Log lines: nothing a peer chose can forge a line or drive a terminal
 * (text), and every JSON line stays valid JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

static const char *esc(tg_log_format_t f, const char *s) {
  static char out[512];
  tg_log_escape(f, out, sizeof(out), s);
  return out;
}

TEST(text_escapes_controls_and_non_ascii) {
  ASSERT_STREQ(esc(TG_LOG_TEXT, "CN=client1"), "CN=client1");
  ASSERT_STREQ(esc(TG_LOG_TEXT, "evil\n2026-01-01T00:00:00.000Z info forged"),
               "evil\\x0a2026-01-01T00:00:00.000Z info forged");
  ASSERT_STREQ(esc(TG_LOG_TEXT, "a\rb\tc\x1b[31md\x7f"), "a\\x0db\\x09c\\x1b[31md\\x7f");
  /* non-ASCII, valid UTF-8 or not, and C1 controls (U+009B CSI) */
  ASSERT_STREQ(esc(TG_LOG_TEXT, "caf\xc3\xa9 \xc2\x9b \xff"), "caf\\xc3\\xa9 \\xc2\\x9b \\xff");
  /* a literal backslash cannot pass for an escape */
  ASSERT_STREQ(esc(TG_LOG_TEXT, "a\\x0ab"), "a\\\\x0ab");
}

TEST(text_escape_never_splits_an_escape) {
  char out[8];
  /* "ab" + "\x0a" needs 6 + NUL: with room for 6 no partial "\x" appears */
  tg_log_escape(TG_LOG_TEXT, out, 6, "ab\n\n\n");
  ASSERT_STREQ(out, "ab");
  tg_log_escape(TG_LOG_TEXT, out, 7, "ab\n\n\n");
  ASSERT_STREQ(out, "ab\\x0a");
  tg_log_escape(TG_LOG_TEXT, out, sizeof(out), "abcdefghij");
  ASSERT_STREQ(out, "abcdefg");
  tg_log_escape(TG_LOG_TEXT, out, 3, "a\\b");
  ASSERT_STREQ(out, "a");
  tg_log_escape(TG_LOG_TEXT, out, 0, "x"); /* no write at all */
}

TEST(json_escapes) {
  ASSERT_STREQ(esc(TG_LOG_JSON, "say \"hi\"\\"), "say \\\"hi\\\"\\\\");
  ASSERT_STREQ(esc(TG_LOG_JSON, "a\nb\x01\x7f"), "a\\u000ab\\u0001\\u007f");
  /* well-formed UTF-8 kept as it is */
  ASSERT_STREQ(esc(TG_LOG_JSON, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92"),
               "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92");
  /* bytes that are not well-formed UTF-8: lone continuation, truncated
   * sequence, overlong form, surrogate, beyond U+10FFFF */
  ASSERT_STREQ(esc(TG_LOG_JSON, "\x80"), "\\u0080");
  ASSERT_STREQ(esc(TG_LOG_JSON, "\xc3"), "\\u00c3");
  ASSERT_STREQ(esc(TG_LOG_JSON, "\xc0\xaf"), "\\u00c0\\u00af");
  ASSERT_STREQ(esc(TG_LOG_JSON, "\xed\xa0\x80"), "\\u00ed\\u00a0\\u0080");
  ASSERT_STREQ(esc(TG_LOG_JSON, "\xf4\x90\x80\x80"), "\\u00f4\\u0090\\u0080\\u0080");
}

/* Runs fn with stderr captured; returns what was written (static). */
static const char *captured(void (*fn)(void)) {
  static char buf[8192];
  fflush(stderr);
  int saved = dup(2);
  FILE *tmp = tmpfile();
  if (saved < 0 || !tmp) return "";
  dup2(fileno(tmp), 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  rewind(tmp);
  size_t n = fread(buf, 1, sizeof(buf) - 1, tmp);
  buf[n] = '\0';
  fclose(tmp);
  return buf;
}

static void log_evil(void) {
  tg_log_conn(TG_LOG_WARN, 7, "wss", "203.0.113.9:1234", "close",
              "handshake failed: not in allow_clients (CN=%s)",
              "x\n2026-01-01T00:00:00.000Z info forged line");
  tg_log(TG_LOG_INFO, "SNI %s", "a\r\nb");
}

static int count(const char *s, char c) {
  int n = 0;
  for (; *s; s++) n += *s == c;
  return n;
}

TEST(whole_lines_text) {
  tg_log_setup(TG_LOG_DEBUG, TG_LOG_TEXT);
  const char *out = captured(log_evil);
  ASSERT_EQ(count(out, '\n'), 2);
  ASSERT_EQ(count(out, '\r'), 0);
  ASSERT_CONTAINS(out, "[7] client 203.0.113.9:1234 on wss: close: handshake failed: "
                       "not in allow_clients (CN=x\\x0a2026-01-01T00:00:00.000Z info forged line)\n");
  ASSERT_CONTAINS(out, "info  SNI a\\x0d\\x0ab\n");
}

TEST(whole_lines_json) {
  tg_log_setup(TG_LOG_DEBUG, TG_LOG_JSON);
  const char *out = captured(log_evil);
  ASSERT_EQ(count(out, '\n'), 2);
  ASSERT_CONTAINS(out, "\"msg\":\"handshake failed: not in allow_clients "
                       "(CN=x\\u000a2026-01-01T00:00:00.000Z info forged line)\"}\n");
  ASSERT_CONTAINS(out, "\"msg\":\"SNI a\\u000d\\u000ab\"}\n");
  tg_log_setup(TG_LOG_INFO, TG_LOG_TEXT);
}

TEST(level) {
  tg_log_setup(TG_LOG_WARN, TG_LOG_TEXT);
  ASSERT(tg_log_enabled(TG_LOG_ERROR));
  ASSERT(tg_log_enabled(TG_LOG_WARN));
  ASSERT(!tg_log_enabled(TG_LOG_INFO));
  ASSERT_EQ(tg_log_get_format(), TG_LOG_TEXT);
  tg_log_setup(TG_LOG_INFO, TG_LOG_JSON);
  ASSERT_EQ(tg_log_get_format(), TG_LOG_JSON);
  tg_log_setup(TG_LOG_INFO, TG_LOG_TEXT);
}

int main(void) {
  RUN(text_escapes_controls_and_non_ascii);
  RUN(text_escape_never_splits_an_escape);
  RUN(json_escapes);
  RUN(whole_lines_text);
  RUN(whole_lines_json);
  RUN(level);
  return UNIT_DONE();
}
