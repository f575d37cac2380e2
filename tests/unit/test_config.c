/* Config parsing: values, defaults and every error path, each error checked
 * for the file:line: [section] key it names. */
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

static char path[64];

/* Writes text to a temporary file and loads it; errs collects errors. */
static tg_config_t *load(const char *text, tg_errors_t *errs) {
  snprintf(path, sizeof(path), "/tmp/tg-unit-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
    close(fd);
    return NULL;
  }
  close(fd);
  tg_config_t *cfg = tg_config_load(path, errs);
  unlink(path);
  return cfg;
}

/* Loads text expecting failure; returns 1 when some error contains
 * "PATH:LINE: " followed by want. */
static int fails_with(const char *text, int line, const char *want) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(text, &errs);
  int found = 0;
  char prefix[128];
  snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
  for (size_t i = 0; i < errs.n; i++) {
    if (strncmp(errs.msgs[i], prefix, strlen(prefix)) == 0 &&
        strstr(errs.msgs[i], want))
      found = 1;
  }
  if (!found) {
    fprintf(stderr, "  wanted \"%s%s\", got:\n", prefix, want);
    for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "    %s\n", errs.msgs[i]);
  }
  if (cfg) {
    fprintf(stderr, "  config was accepted\n");
    found = 0;
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
  return found;
}

#define PLAIN_LISTENER                                                        \
  "[listener:a]\n"                                                             \
  "bind = 127.0.0.1:9000\n"                                                    \
  "secure = off\n"                                                             \
  "backend = 127.0.0.1:9001\n"

TEST(minimal_plain_listener_and_defaults) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load("[global]\nworkers = 3\n" PLAIN_LISTENER, &errs);
  ASSERT(cfg != NULL);
  ASSERT_EQ(errs.n, 0);
  if (!cfg) return;
  ASSERT_EQ(cfg->workers, 3);
  ASSERT_EQ(cfg->drain_timeout_ms, 30000);
  ASSERT_EQ(cfg->max_connections, 0);
  ASSERT_EQ(cfg->nlisteners, 1);
  tg_listener_conf_t *l = cfg->listeners[0];
  ASSERT_STREQ(l->name, "a");
  ASSERT_EQ(l->secure, 0);
  ASSERT_EQ(l->bind.port, 9000);
  ASSERT_EQ(l->nbackends, 1);
  ASSERT_EQ(l->connect_timeout_ms, 5000);
  ASSERT_EQ(l->handshake_timeout_ms, 10000);
  ASSERT_EQ(l->idle_timeout_ms, 300000);
  ASSERT_EQ(l->min_version, 12);
  ASSERT_EQ(l->backend_verify, 1);
  tg_config_free(cfg);
}

TEST(backend_list_and_inline_comments) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load("[listener:a]\n"
                          "bind = [::1]:9000   ; v6\n"
                          "secure = off\n"
                          "backend = 127.0.0.1:1, [::1]:2 ,backend.test:3\n",
                          &errs);
  ASSERT(cfg != NULL);
  if (!cfg) return;
  tg_listener_conf_t *l = cfg->listeners[0];
  ASSERT_EQ(l->nbackends, 3);
  ASSERT_STREQ(l->backends[1].host, "::1");
  ASSERT_EQ(l->backends[1].port, 2);
  ASSERT_EQ(l->backends[1].is_literal, 1);
  ASSERT_STREQ(l->backends[2].host, "backend.test");
  ASSERT_EQ(l->backends[2].is_literal, 0);
  ASSERT_EQ(l->bind.addr.ss_family, AF_INET6);
  tg_config_free(cfg);
}

TEST(durations) {
  uint64_t v = 0;
  ASSERT_EQ(tg_parse_duration_ms("500ms", &v), 0);
  ASSERT_EQ(v, 500);
  ASSERT_EQ(tg_parse_duration_ms("10s", &v), 0);
  ASSERT_EQ(v, 10000);
  ASSERT_EQ(tg_parse_duration_ms("5m", &v), 0);
  ASSERT_EQ(v, 300000);
  ASSERT_EQ(tg_parse_duration_ms("2h", &v), 0);
  ASSERT_EQ(v, 7200000);
  ASSERT_EQ(tg_parse_duration_ms("10", &v), -1);
  ASSERT_EQ(tg_parse_duration_ms("s", &v), -1);
  ASSERT_EQ(tg_parse_duration_ms("-1s", &v), -1);
  ASSERT_EQ(tg_parse_duration_ms("10x", &v), -1);
  ASSERT_EQ(tg_parse_duration_ms("1.5s", &v), -1);
  ASSERT_EQ(tg_parse_duration_ms("99999999999999999999s", &v), -1);
}

TEST(hostports) {
  tg_hostport_t hp;
  const char *why = NULL;
  ASSERT_EQ(tg_parse_hostport("127.0.0.1:80", &hp, &why), 0);
  ASSERT_EQ(hp.is_literal, 1);
  ASSERT_EQ(tg_parse_hostport("[::1]:443", &hp, &why), 0);
  ASSERT_STREQ(hp.host, "::1");
  ASSERT_EQ(tg_parse_hostport("localhost:8080", &hp, &why), 0);
  ASSERT_EQ(hp.is_literal, 0);
  ASSERT_EQ(tg_parse_hostport("::1:80", &hp, &why), -1);
  ASSERT_CONTAINS(why, "brackets");
  ASSERT_EQ(tg_parse_hostport("host:0", &hp, &why), -1);
  ASSERT_EQ(tg_parse_hostport("host:70000", &hp, &why), -1);
  ASSERT_EQ(tg_parse_hostport("host", &hp, &why), -1);
  ASSERT_EQ(tg_parse_hostport(":80", &hp, &why), -1);
  ASSERT_EQ(tg_parse_hostport("[::1]80", &hp, &why), -1);
  ASSERT_EQ(tg_parse_hostport("bad_host!:80", &hp, &why), -1);
}

TEST(unix_socket_addresses) {
  tg_hostport_t hp;
  const char *why = NULL;
  ASSERT_EQ(tg_parse_hostport("unix:/run/app.sock", &hp, &why), 0);
  ASSERT_EQ(hp.is_literal, 1);
  ASSERT_EQ(hp.addr.ss_family, AF_UNIX);
  ASSERT_STREQ(hp.host, "/run/app.sock");
  ASSERT_STREQ(hp.text, "unix:/run/app.sock");
  ASSERT_EQ(tg_parse_hostport("unix:", &hp, &why), -1);
  ASSERT_CONTAINS(why, "path");
  char longpath[200] = "unix:/";
  memset(longpath + 6, 'x', 110);
  longpath[116] = '\0';
  ASSERT_EQ(tg_parse_hostport(longpath, &hp, &why), -1);
  ASSERT_CONTAINS(why, "107");
}

TEST(bools) {
  int v = -1;
  ASSERT_EQ(tg_parse_bool("on", &v), 0);
  ASSERT_EQ(v, 1);
  ASSERT_EQ(tg_parse_bool("off", &v), 0);
  ASSERT_EQ(v, 0);
  ASSERT_EQ(tg_parse_bool("yes", &v), -1);
  ASSERT_EQ(tg_parse_bool("", &v), -1);
}

TEST(error_unknown_key) {
  ASSERT(fails_with(PLAIN_LISTENER "frobnicate = 1\n", 5,
                    "[listener:a] frobnicate: unknown key"));
}

TEST(error_unknown_global_key) {
  ASSERT(fails_with("[global]\nworkerz = 2\n" PLAIN_LISTENER, 2,
                    "[global] workerz: unknown key"));
}

TEST(error_unknown_section) {
  ASSERT(fails_with(PLAIN_LISTENER "[frontend]\nx = 1\n", 5,
                    "unknown section [frontend]"));
}

TEST(error_bad_listener_name) {
  ASSERT(fails_with("[listener:a b]\n", 1, "a listener name is"));
}

TEST(error_line_too_long) {
  char text[600];
  char value[260];
  memset(value, 'x', sizeof(value) - 1);
  value[sizeof(value) - 1] = '\0';
  snprintf(text, sizeof(text), PLAIN_LISTENER "alpn = %s\n", value);
  ASSERT(fails_with(text, 5, "line too long"));
}

TEST(error_missing_bind) {
  ASSERT(fails_with("\n[listener:a]\nsecure = off\nbackend = 127.0.0.1:1\n", 2,
                    "[listener:a] bind: required key missing"));
}

TEST(error_missing_backend) {
  ASSERT(fails_with("[listener:a]\nbind = 127.0.0.1:1\nsecure = off\n", 1,
                    "[listener:a] backend: required key missing"));
}

TEST(error_bad_bool) {
  ASSERT(fails_with("[listener:a]\nbind = 127.0.0.1:1\nsecure = yes\n", 3,
                    "[listener:a] secure: 'yes' is not a boolean"));
}

TEST(error_bad_duration) {
  ASSERT(fails_with(PLAIN_LISTENER "idle_timeout = 10\n", 5,
                    "[listener:a] idle_timeout: '10' is not a duration"));
}

TEST(error_bad_enum) {
  ASSERT(fails_with(PLAIN_LISTENER "verify_client = maybe\n", 5,
                    "verify_client: 'maybe' is not one of: none optional require"));
}

TEST(error_bad_workers) {
  ASSERT(fails_with("[global]\nworkers = 0\n" PLAIN_LISTENER, 2,
                    "[global] workers: '0' is not a whole number from 1 to 256 or auto"));
}

TEST(error_duplicate_key) {
  ASSERT(fails_with(PLAIN_LISTENER "secure = on\n", 5,
                    "[listener:a] secure: set twice (first at line 3)"));
}

TEST(error_duplicate_listener) {
  ASSERT(fails_with(PLAIN_LISTENER "[listener:a]\n", 5, "appears twice"));
}

TEST(error_same_bind_twice) {
  ASSERT(fails_with(PLAIN_LISTENER "[listener:b]\nbind = 127.0.0.1:9000\n"
                                   "secure = off\nbackend = 127.0.0.1:2\n",
                    6, "[listener:b] bind: 127.0.0.1:9000 is also bound by"));
}

TEST(error_key_outside_section) {
  ASSERT(fails_with("bind = 127.0.0.1:1\n" PLAIN_LISTENER, 1,
                    "key 'bind' outside any section"));
}

TEST(error_not_key_value) {
  ASSERT(fails_with(PLAIN_LISTENER "just words\n", 5, "expected 'key = value'"));
}

TEST(error_no_listener) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load("[global]\n", &errs);
  ASSERT(cfg == NULL);
  ASSERT(errs.n == 1);
  if (errs.n) ASSERT_CONTAINS(errs.msgs[0], "no [listener:NAME] section");
  tg_errors_free(&errs);
}

TEST(error_secure_without_identity) {
  ASSERT(fails_with("[listener:a]\nbind = 127.0.0.1:1\nbackend = 127.0.0.1:2\n", 1,
                    "[listener:a] secure: secure = on needs an identity"));
}

TEST(error_verify_without_ca) {
  ASSERT(fails_with("[listener:a]\nbind = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
                    "pfx = x.pfx\nverify_client = require\n",
                    5, "verify_client: verify_client = require needs client_ca"));
}

/* Keys without effect warn (so one line flips a side), they do not fail. */
TEST(warning_tls_key_on_plain_listener) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(PLAIN_LISTENER "client_ca = ca.pem\nbackend_ca = ca.pem\n", &errs);
  ASSERT(cfg != NULL);
  ASSERT_EQ(errs.n, 0);
  if (!cfg) return;
  ASSERT_EQ(cfg->warnings.n, 2);
  char want[128];
  snprintf(want, sizeof(want), "%s:5: [listener:a] client_ca: has no effect with secure = off", path);
  if (cfg->warnings.n > 0) ASSERT_STREQ(cfg->warnings.msgs[0], want);
  if (cfg->warnings.n > 1)
    ASSERT_CONTAINS(cfg->warnings.msgs[1], ":6: [listener:a] backend_ca: has no effect with backend_secure = off");
  tg_config_free(cfg);
}

TEST(error_backend_verify_off_without_pin) {
  ASSERT(fails_with(PLAIN_LISTENER "backend_secure = on\nbackend_verify = off\n", 6,
                    "backend_verify: off is only allowed together with backend_pin"));
}

TEST(error_bad_pin) {
  ASSERT(fails_with(PLAIN_LISTENER "backend_secure = on\nbackend_pin = md5:00\n", 6,
                    "backend_pin: want sha256:HEX or spki-sha256:BASE64"));
}

TEST(error_bad_acl) {
  ASSERT(fails_with("[listener:a]\nbind = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
                    "pfx = x.pfx\nverify_client = require\nclient_ca = ca.pem\n"
                    "allow_clients = cn:ok, ou:bad\n",
                    7, "allow_clients: 'ou:bad': unknown kind"));
}

TEST(error_bad_secret_reference) {
  ASSERT(fails_with("[listener:a]\nbind = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
                    "pfx = x.pfx\npfx_password = hunter2\n",
                    5, "pfx_password: want env:NAME, file:PATH or pass:TEXT"));
}

TEST(error_bind_needs_ip) {
  ASSERT(fails_with("[listener:a]\nbind = localhost:1\nsecure = off\n"
                    "backend = 127.0.0.1:2\n",
                    2, "bind: 'localhost:1': bind needs an IP address"));
}

TEST(error_udp_key_on_tcp_listener) {
  ASSERT(fails_with(PLAIN_LISTENER "dtls_mtu = 1200\n", 5,
                    "dtls_mtu: only applies to transport = udp"));
}

TEST(error_reports_every_error) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load("[listener:a]\nbind = 127.0.0.1:1\nsecure = maybe\n"
                          "idle_timeout = x\nbackend = 127.0.0.1:2\nnope = 1\n",
                          &errs);
  ASSERT(cfg == NULL);
  ASSERT(errs.n >= 3);
  tg_errors_free(&errs);
}

TEST(secrets) {
  char buf[64], err[128];
  ASSERT_EQ(tg_secret_read("pass:abc", buf, sizeof(buf), err, sizeof(err)), 0);
  ASSERT_STREQ(buf, "abc");
  setenv("TG_UNIT_SECRET", "from-env", 1);
  ASSERT_EQ(tg_secret_read("env:TG_UNIT_SECRET", buf, sizeof(buf), err, sizeof(err)), 0);
  ASSERT_STREQ(buf, "from-env");
  ASSERT_EQ(tg_secret_read("env:TG_UNIT_MISSING", buf, sizeof(buf), err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "TG_UNIT_MISSING is not set");
  char fpath[] = "/tmp/tg-secret-XXXXXX";
  int fd = mkstemp(fpath);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, "s3cret\nsecond line\n", 19), 19);
  close(fd);
  char spec[80];
  snprintf(spec, sizeof(spec), "file:%s", fpath);
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), 0);
  ASSERT_STREQ(buf, "s3cret");
  unlink(fpath);
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), -1);
  ASSERT_EQ(tg_secret_read("plain", buf, sizeof(buf), err, sizeof(err)), -1);
  /* The reason never echoes the secret itself. */
  ASSERT(strstr(err, "plain") == NULL);
}

int main(void) {
  RUN(minimal_plain_listener_and_defaults);
  RUN(backend_list_and_inline_comments);
  RUN(durations);
  RUN(hostports);
  RUN(unix_socket_addresses);
  RUN(bools);
  RUN(error_unknown_key);
  RUN(error_unknown_global_key);
  RUN(error_unknown_section);
  RUN(error_bad_listener_name);
  RUN(error_line_too_long);
  RUN(error_missing_bind);
  RUN(error_missing_backend);
  RUN(error_bad_bool);
  RUN(error_bad_duration);
  RUN(error_bad_enum);
  RUN(error_bad_workers);
  RUN(error_duplicate_key);
  RUN(error_duplicate_listener);
  RUN(error_same_bind_twice);
  RUN(error_key_outside_section);
  RUN(error_not_key_value);
  RUN(error_no_listener);
  RUN(error_secure_without_identity);
  RUN(error_verify_without_ca);
  RUN(warning_tls_key_on_plain_listener);
  RUN(error_backend_verify_off_without_pin);
  RUN(error_bad_pin);
  RUN(error_bad_acl);
  RUN(error_bad_secret_reference);
  RUN(error_bind_needs_ip);
  RUN(error_udp_key_on_tcp_listener);
  RUN(error_reports_every_error);
  RUN(secrets);
  return UNIT_DONE();
}
