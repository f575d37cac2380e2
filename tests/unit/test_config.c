/* Config parsing: values, defaults and every error path, each error checked
 * for the file:line: [section] key it names. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tls.h"
#include "unit.h"
#include "unit_helpers.h"


/* Loads text expecting failure; returns 1 when some error contains
 * "PATH:LINE: " followed by want. */
static int fails_with(const char *text, int line, const char *want) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(text, &errs);
  int found = 0;
  char prefix[128];
  snprintf(prefix, sizeof(prefix), "%s:%d: ", unit_config_path, line);
  for (size_t i = 0; i < errs.n; i++) {
    if (strncmp(errs.msgs[i], prefix, strlen(prefix)) == 0 &&
        strstr(errs.msgs[i], want))
      found = 1;
  }
  if (!found) {
    fprintf(stderr, "  wanted \"%s%s\", got:\n", prefix, want);
    }
  if (cfg) {
    fprintf(stderr, "  config was accepted\n");
    found = 0;
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
  return found;
}

/* Writes text to path (truncating).  0 on success. */
static int write_file(const char *p, const char *text) {
  FILE *f = fopen(p, "w");
  if (!f) return -1;
  int rc = fputs(text, f) < 0 ? -1 : 0;
  return fclose(f) == 0 ? rc : -1;
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
  char why[100];
  ASSERT_EQ(tg_parse_hostport("127.0.0.1:80", &hp, why, sizeof(why)), 0);
  ASSERT_EQ(hp.is_literal, 1);
  ASSERT_EQ(tg_parse_hostport("[::1]:443", &hp, why, sizeof(why)), 0);
  ASSERT_STREQ(hp.host, "::1");
  ASSERT_EQ(tg_parse_hostport("localhost:8080", &hp, why, sizeof(why)), 0);
  ASSERT_EQ(hp.is_literal, 0);
  ASSERT_EQ(tg_parse_hostport("::1:80", &hp, why, sizeof(why)), -1);
  ASSERT_CONTAINS(why, "brackets");
  ASSERT_EQ(tg_parse_hostport("host:0", &hp, why, sizeof(why)), -1);
  ASSERT_EQ(tg_parse_hostport("host:70000", &hp, why, sizeof(why)), -1);
  ASSERT_EQ(tg_parse_hostport("host", &hp, why, sizeof(why)), -1);
  ASSERT_EQ(tg_parse_hostport(":80", &hp, why, sizeof(why)), -1);
  ASSERT_EQ(tg_parse_hostport("[::1]80", &hp, why, sizeof(why)), -1);
  ASSERT_EQ(tg_parse_hostport("bad_host!:80", &hp, why, sizeof(why)), -1);
}

TEST(unix_socket_addresses) {
  tg_hostport_t hp;
  char why[100];
  ASSERT_EQ(tg_parse_hostport("unix:/run/app.sock", &hp, why, sizeof(why)), 0);
  ASSERT_EQ(hp.is_literal, 1);
  ASSERT_EQ(hp.addr.ss_family, AF_UNIX);
  ASSERT_STREQ(hp.host, "/run/app.sock");
  ASSERT_STREQ(hp.text, "unix:/run/app.sock");
  ASSERT_EQ(tg_parse_hostport("unix:", &hp, why, sizeof(why)), -1);
  ASSERT_CONTAINS(why, "path");
  char longpath[200] = "unix:/";
  memset(longpath + 6, 'x', 110);
  longpath[116] = '\0';
  ASSERT_EQ(tg_parse_hostport(longpath, &hp, why, sizeof(why)), -1);
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
  snprintf(want, sizeof(want), "%s:5: [listener:a] client_ca: has no effect with secure = off", unit_config_path);
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

TEST(backend_cipher_keys) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(PLAIN_LISTENER "backend_secure = on\nbackend_ciphers = ECDHE+AESGCM\n"
                          "backend_min_version = 1.3\n", &errs);
  ASSERT(cfg != NULL);
  if (cfg) {
    ASSERT_STREQ(cfg->listeners[0]->backend_ciphers, "ECDHE+AESGCM");
    ASSERT_EQ(cfg->listeners[0]->backend_min_version, 13);
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
  ASSERT(fails_with(PLAIN_LISTENER "backend_secure = on\nbackend_min_version = 1.1\n", 6,
                    "backend_min_version: '1.1' is not a TLS version"));
}

TEST(backend_pin_lines_append) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(PLAIN_LISTENER "backend_secure = on\n"
                          "backend_pin = sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
                          "backend_pin = spki-sha256:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", &errs);
  ASSERT(cfg != NULL);
  if (cfg) {
    char why[300];
    ASSERT_CONTAINS(cfg->listeners[0]->backend_pin, ", spki-sha256:");
    ASSERT_EQ(tg_tls_pins_check(cfg->listeners[0]->backend_pin, why, sizeof(why)), 0);
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
}

TEST(error_bad_pin_in_list) {
  ASSERT(fails_with(PLAIN_LISTENER "backend_secure = on\nbackend_pin = sha256:"
                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff, sha256:12\n", 6,
                    "backend_pin: 'sha256:12': not 64 hex digits"));
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
  ASSERT_EQ(write(fd, "s3cret\n", 7), 7);
  close(fd);
  char spec[80];
  snprintf(spec, sizeof(spec), "file:%s", fpath);
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), 0);
  ASSERT_STREQ(buf, "s3cret");
  /* A second line is refused rather than silently dropped. */
  ASSERT(write_file(fpath, "s3cret\nsecond line\n") == 0);
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "more than one line");
  ASSERT(strstr(err, "s3cret") == NULL);
  unlink(fpath);
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), -1);
  ASSERT_EQ(tg_secret_read("plain", buf, sizeof(buf), err, sizeof(err)), -1);
  /* The reason never echoes the secret itself. */
  ASSERT(strstr(err, "plain") == NULL);
}

/* Secrets are never cut: a file, pass: or env: value that does not fit is
 * refused, and exactly size - 1 bytes (with or without a newline) fit. */
TEST(secrets_over_long_refused) {
  char buf[16], err[200];
  char fpath[] = "/tmp/tg-secret-XXXXXX";
  int fd = mkstemp(fpath);
  ASSERT(fd >= 0);
  close(fd);
  char spec[80];
  snprintf(spec, sizeof(spec), "file:%s", fpath);
  ASSERT(write_file(fpath, "123456789012345\n") == 0); /* 15 + newline */
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), 0);
  ASSERT_STREQ(buf, "123456789012345");
  ASSERT(write_file(fpath, "123456789012345\r\n") == 0);
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), 0);
  ASSERT_STREQ(buf, "123456789012345");
  ASSERT(write_file(fpath, "123456789012345") == 0);
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), 0);
  ASSERT(write_file(fpath, "1234567890123456\n") == 0); /* 16: one too many */
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "longer than 15 bytes");
  /* A long file (far beyond the buffer) is refused the same way. */
  char big[3000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  ASSERT(write_file(fpath, big) == 0);
  ASSERT_EQ(tg_secret_read(spec, buf, sizeof(buf), err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "longer than 15 bytes");
  ASSERT(strstr(err, "xxxx") == NULL);
  unlink(fpath);
  ASSERT_EQ(tg_secret_read("pass:1234567890123456", buf, sizeof(buf), err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "longer than 15 bytes");
  ASSERT(strstr(err, "123456") == NULL);
  setenv("TG_UNIT_LONG", "1234567890123456", 1);
  ASSERT_EQ(tg_secret_read("env:TG_UNIT_LONG", buf, sizeof(buf), err, sizeof(err)), -1);
  ASSERT_CONTAINS(err, "longer than 15 bytes");
  /* tg_secret_file_read: whole files, bounded. */
  size_t len = 0;
  char fp2[] = "/tmp/tg-secret-XXXXXX";
  fd = mkstemp(fp2);
  ASSERT(fd >= 0);
  close(fd);
  ASSERT(write_file(fp2, "a:0102\nb:0304\n") == 0);
  char *t = tg_secret_file_read(fp2, 14, "keys", &len, err, sizeof(err));
  ASSERT(t != NULL);
  ASSERT_EQ(len, 14);
  if (t) ASSERT_STREQ(t, "a:0102\nb:0304\n");
  tg_secret_free(t, len);
  t = tg_secret_file_read(fp2, 13, "keys", &len, err, sizeof(err));
  ASSERT(t == NULL);
  ASSERT_CONTAINS(err, "longer than 13 bytes");
  unlink(fp2);
}

TEST(secret_mode_warnings) {
  char msg[300];
  ASSERT_EQ(tg_secret_mode_warning("/x/pw", 0100600, "a password", msg, sizeof(msg)), 0);
  ASSERT_EQ(tg_secret_mode_warning("/x/pw", 0100400, "a password", msg, sizeof(msg)), 0);
  ASSERT_EQ(tg_secret_mode_warning("/x/pw", 0100640, "a password", msg, sizeof(msg)), 1);
  ASSERT_CONTAINS(msg, "/x/pw holds a password and is readable by its group (mode 0640)");
  ASSERT_EQ(tg_secret_mode_warning("/x/pw", 0100644, "a password", msg, sizeof(msg)), 1);
  ASSERT_CONTAINS(msg, "readable by everyone (mode 0644)");
  ASSERT_EQ(tg_secret_mode_warning("/x/pw", 0100602, "a password", msg, sizeof(msg)), 1);
  ASSERT_CONTAINS(msg, "accessible by everyone");
}

/* pass: in a config that others may read draws a warning naming the key. */
TEST(pass_secret_in_readable_config_warns) {
  static const char text[] =
      "[listener:a]\nbind = 127.0.0.1:9000\nsecure = off\nbackend = 127.0.0.1:1\n"
      "backend_secure = on\nbackend_ca = /x/ca.pem\nbackend_pfx = /x/c.pfx\n"
      "backend_pfx_password = pass:hunter2\n";
  for (int loose = 0; loose < 2; loose++) {
    char p[] = "/tmp/tg-unit-XXXXXX";
    int fd = mkstemp(p);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    chmod(p, loose ? 0644 : 0600);
    tg_errors_t errs = {0};
    tg_config_t *cfg = tg_config_load(p, &errs);
    unlink(p);
    ASSERT(cfg != NULL);
    if (!cfg) continue;
    int found = 0;
    for (size_t i = 0; i < cfg->warnings.n; i++) {
      if (strstr(cfg->warnings.msgs[i], ":8: [listener:a] backend_pfx_password: ") &&
          strstr(cfg->warnings.msgs[i], "readable by everyone"))
        found = 1;
      ASSERT(strstr(cfg->warnings.msgs[i], "hunter2") == NULL);
    }
    ASSERT_EQ(found, loose);
    tg_config_free(cfg);
  }
}

/* Relative paths resolve against the config file's directory (/tmp here). */
TEST(relative_paths_resolve_against_config_dir) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load("[global]\npid_file = run/tg.pid\n"
                          "[listener:a]\n"
                          "bind = 127.0.0.1:9000\n"
                          "transport = udp\n"
                          "pfx = a.pfx, ./sub/b.pfx ,/abs/c.pfx\n"
                          "pfx_password = file:../etc/pw\n"
                          "client_ca = ca-dir\n"
                          "verify_client = require\n"
                          "crl = /abs/crl.pem\n"
                          "ticket_key_file = t/keys\n"
                          "ocsp = ocsp.der\n"
                          "psk = file:psk.txt\n"
                          "backend = 127.0.0.1:1\n"
                          "backend_secure = on\n"
                          "backend_ca = ../../ca.pem\n"
                          "backend_pfx = c.pfx\n"
                          "backend_pfx_password = pass:rel/not-a-path\n",
                          &errs);
  ASSERT(cfg != NULL);
  if (!cfg) return;
  tg_listener_conf_t *l = cfg->listeners[0];
  ASSERT_STREQ(cfg->dir, "/tmp");
  ASSERT_STREQ(cfg->pid_file, "/tmp/run/tg.pid");
  ASSERT_STREQ(l->pfx, "/tmp/a.pfx, /tmp/sub/b.pfx, /abs/c.pfx");
  ASSERT_STREQ(l->pfx_password, "file:/etc/pw");
  ASSERT_STREQ(l->client_ca, "/tmp/ca-dir");
  ASSERT_STREQ(l->crl, "/abs/crl.pem");
  ASSERT_STREQ(l->ticket_key_file, "/tmp/t/keys");
  ASSERT_STREQ(l->ocsp, "/tmp/ocsp.der");
  ASSERT_STREQ(l->psk, "file:/tmp/psk.txt");
  ASSERT_STREQ(l->backend_ca, "/ca.pem");
  ASSERT_STREQ(l->backend_pfx, "/tmp/c.pfx");
  ASSERT_STREQ(l->backend_pfx_password, "pass:rel/not-a-path");
  tg_config_free(cfg);
  tg_errors_free(&errs);
}

/* List keys may be repeated (each line appends) and every item keeps the
 * line it was written on; other keys set twice stay an error. */
TEST(list_keys_repeat_and_keep_their_lines) {
  char text[8192];
  size_t n = (size_t)snprintf(text, sizeof(text),
                              "[listener:a]\nbind = 127.0.0.1:9000\nsecure = off\n"
                              "backend = 127.0.0.1:1, 127.0.0.1:2\n"
                              "backend = 127.0.0.1:3\n");
  /* 50 fingerprints, one per line: lines 6..55 */
  for (int i = 0; i < 50; i++)
    n += (size_t)snprintf(text + n, sizeof(text) - n,
                          "allow_clients = sha256:%064x\n", i + 1);
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(text, &errs);
  ASSERT(cfg != NULL);
  if (!cfg) return;
  tg_listener_conf_t *l = cfg->listeners[0];
  ASSERT_EQ(l->nbackends, 3);
  ASSERT_EQ(l->backends[2].port, 3);
  ASSERT_EQ(l->allow_clients.n, 50);
  ASSERT_EQ(l->allow_clients.entries[49].kind, TG_ACL_SHA256);
  ASSERT_EQ(l->allow_clients.entries[49].bin[31], 50);
  char w[300];
  ASSERT_CONTAINS(tg_config_item_where(l, "backend", 1, w, sizeof(w)), ":4: [listener:a] backend");
  ASSERT_CONTAINS(tg_config_item_where(l, "backend", 2, w, sizeof(w)), ":5: [listener:a] backend");
  ASSERT_CONTAINS(tg_config_item_where(l, "allow_clients", 49, w, sizeof(w)), ":55: [listener:a] allow_clients");
  /* errors reported under the first line move to the item's own line */
  tg_errors_t e2 = {0};
  tg_errors_add(&e2, "%s: cannot load", tg_config_where(l, "backend", w, sizeof(w)));
  tg_config_errors_for_item(l, "backend", 2, &e2, 0);
  ASSERT_CONTAINS(e2.msgs[0], ":5: [listener:a] backend: cannot load");
  tg_errors_free(&e2);
  tg_config_free(cfg);

  /* A bad item names its own line, not the key's first. */
  ASSERT(fails_with("[listener:a]\nbind = 127.0.0.1:9000\nsecure = off\n"
                    "allow_clients = cn:a\nbackend = 127.0.0.1:1\n"
                    "allow_clients = cn:b, sha256:zz\n", 6, "allow_clients: 'sha256:zz'"));
  ASSERT(fails_with("[listener:a]\nbind = 127.0.0.1:9000\nsecure = off\n"
                    "backend = 127.0.0.1:1\nbackend = nohost\n", 5, "backend: 'nohost'"));
  /* Not a list: still an error. */
  ASSERT(fails_with(PLAIN_LISTENER "secure = on\n", 5, "secure: set twice (first at line 3)"));
  ASSERT(fails_with("[global]\nworkers = 1\nworkers = 2\n" PLAIN_LISTENER, 3,
                    "workers: set twice (first at line 2)"));
}

/* An indented line right after a key continues its value, joined without a
 * separator (a 230-character value on three lines here). */
TEST(continuation_lines) {
  char value[231];
  for (int i = 0; i < 230; i++) value[i] = (char)('a' + i % 26);
  value[230] = '\0';
  char text[2048];
  snprintf(text, sizeof(text),
           "[listener:a]\nbind = 127.0.0.1:9000\n"
           "psk_identity_hint = x\n"
           "ciphers = %.100s\n"
           "    %.100s   ; a comment\n"
           "\t%.30s\n"
           "; a comment ends the value\n"
           "  secure = off\n"
           "backend = 127.0.0.1:1,\n"
           "   127.0.0.1:2\n"
           "\n"
           "   backend = 127.0.0.1:3\n",
           value, value + 100, value + 200);
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(text, &errs);
  ASSERT(cfg != NULL);
  if (!cfg) return;
  tg_listener_conf_t *l = cfg->listeners[0];
  ASSERT_EQ(strlen(l->ciphers), 230);
  ASSERT_STREQ(l->ciphers, value);
  ASSERT_EQ(l->secure, 0); /* indented after a comment: an ordinary key */
  ASSERT_EQ(l->nbackends, 3);
  char w[300];
  ASSERT_CONTAINS(tg_config_where(l, "ciphers", w, sizeof(w)), ":4: [listener:a] ciphers");
  tg_config_free(cfg);
  /* A bad continued value is reported at the key's line. */
  ASSERT(fails_with(PLAIN_LISTENER "idle_timeout = 5\n  x\n", 5,
                    "idle_timeout: '5x' is not a duration"));
  /* Non-list keys cannot be continued into a second value either. */
  ASSERT(fails_with(PLAIN_LISTENER "connect_timeout = 5s\n  5s\n", 5,
                    "connect_timeout: '5s5s' is not a duration"));
}

/* ---- SNI virtual hosts: sections sharing a bind --------------------------- */

#define SNI_SECTION(name, extra)                                              \
  "[listener:" name "]\n"                                                      \
  "bind = 127.0.0.1:9443\n"                                                    \
  "pfx = x.pfx\n"                                                              \
  "backend = 127.0.0.1:9001\n" extra

TEST(sni_sections_group_by_bind) {
  tg_errors_t errs = {0};
  tg_config_t *cfg = load(SNI_SECTION("a", "server_name = a.test\n")
                          SNI_SECTION("b", "")
                          SNI_SECTION("c", "server_name = *.c.test, C.example\n")
                          "[listener:p]\nbind = 127.0.0.1:9000\nsecure = off\n"
                          "backend = 127.0.0.1:9001\n", &errs);
  ASSERT(cfg != NULL);
  ASSERT_EQ(errs.n, 0);
  if (!cfg) return;
  ASSERT_EQ(cfg->nlisteners, 4);
  ASSERT_EQ(cfg->listeners[0]->bind_group, 0);
  ASSERT_EQ(cfg->listeners[1]->bind_group, 0);
  ASSERT_EQ(cfg->listeners[2]->bind_group, 0);
  ASSERT_EQ(cfg->listeners[3]->bind_group, 3); /* another bind: a group of its own */
  /* the section without server_name is the default, wherever it stands */
  ASSERT_EQ(cfg->listeners[0]->sni_default, 0);
  ASSERT_EQ(cfg->listeners[1]->sni_default, 1);
  ASSERT_EQ(cfg->listeners[2]->sni_default, 0);
  ASSERT_EQ(cfg->listeners[3]->sni_default, 1);
  tg_config_free(cfg);
  /* without one, the first section is the default */
  cfg = load(SNI_SECTION("a", "server_name = a.test\n") SNI_SECTION("b", "server_name = b.test\n"),
             &errs);
  ASSERT(cfg != NULL);
  if (cfg) {
    ASSERT_EQ(cfg->listeners[0]->sni_default, 1);
    ASSERT_EQ(cfg->listeners[1]->sni_default, 0);
  }
  tg_config_free(cfg);
  tg_errors_free(&errs);
}

TEST(sni_errors) {
  /* two sections without server_name on one bind (lines: a 1-4, b 5-8) */
  ASSERT(fails_with(SNI_SECTION("a", "") SNI_SECTION("b", ""), 6,
                    "[listener:b] bind: 127.0.0.1:9443 is also bound by [listener:a], and "
                    "neither has server_name"));
  /* a per-bind key that differs names both places */
  ASSERT(fails_with(SNI_SECTION("a", "") SNI_SECTION("b", "server_name = b.test\n"
                                                         "ticket_key_file = /t.key\n"),
                    10, "[listener:b] ticket_key_file: differs from "));
  ASSERT(fails_with(SNI_SECTION("a", "accept_proxy = on\n") SNI_SECTION("b", "server_name = b.test\n"),
                    6, "[listener:b] accept_proxy: differs from "));
  ASSERT(fails_with(SNI_SECTION("a", "") SNI_SECTION("b", "server_name = b.test\n"
                                                         "handshake_timeout = 3s\n"),
                    10, "[listener:b] handshake_timeout: differs from "));
  /* strict_sni on every section, but one has no name: never chosen */
  ASSERT(fails_with(SNI_SECTION("a", "strict_sni = on\n")
                    SNI_SECTION("b", "server_name = b.test\nstrict_sni = on\n"),
                    5, "[listener:a] strict_sni: on refuses every name"));
  /* the same name twice, in two sections or in one */
  ASSERT(fails_with(SNI_SECTION("a", "server_name = x.test\n")
                    SNI_SECTION("b", "server_name = y.test\nserver_name = X.TEST\n"),
                    11, "[listener:b] server_name: 'X.TEST' is already a server_name of "
                        "[listener:a]"));
  ASSERT(fails_with(SNI_SECTION("a", "server_name = *.x.test, *.x.test\n"), 5,
                    "'*.x.test' is already a server_name of [listener:a]"));
  /* bad patterns */
  ASSERT(fails_with(SNI_SECTION("a", "server_name = a.*.test\n"), 5, "'a.*.test': '*' only"));
  ASSERT(fails_with(SNI_SECTION("a", "server_name = a..test\n"), 5, "'a..test': empty label"));
  ASSERT(fails_with(SNI_SECTION("a", "server_name = a.test.\n"), 5, "does not end with a dot"));
  /* udp and plaintext listeners have no ClientHello name to dispatch on */
  ASSERT(fails_with("[listener:u]\nbind = 127.0.0.1:9443\ntransport = udp\npfx = x.pfx\n"
                    "backend = 127.0.0.1:9001\nserver_name = u.test\n",
                    6, "[listener:u] server_name: SNI virtual hosts are for transport = tcp"));
  ASSERT(fails_with(PLAIN_LISTENER "server_name = p.test\n", 5,
                    "[listener:a] server_name: needs secure = on"));
  /* a udp listener still cannot share its bind */
  ASSERT(fails_with("[listener:u]\nbind = 127.0.0.1:9443\ntransport = udp\npfx = x.pfx\n"
                    "backend = 127.0.0.1:9001\n"
                    "[listener:v]\nbind = 127.0.0.1:9443\ntransport = udp\npfx = x.pfx\n"
                    "backend = 127.0.0.1:9001\n",
                    7, "[listener:v] bind: 127.0.0.1:9443 is also bound by [listener:u]"));
}

TEST(sni_lone_section) {
  tg_errors_t errs = {0};
  /* server_name on a bind nobody shares does nothing unless strict: a warning */
  tg_config_t *cfg = load(SNI_SECTION("a", "server_name = a.test\n"), &errs);
  ASSERT(cfg != NULL);
  if (cfg) {
    ASSERT_EQ(cfg->warnings.n, 1);
    if (cfg->warnings.n) ASSERT_CONTAINS(cfg->warnings.msgs[0], "server_name: has no effect");
  }
  tg_config_free(cfg);
  cfg = load(SNI_SECTION("a", "server_name = a.test\nstrict_sni = on\n"), &errs);
  ASSERT(cfg != NULL);
  if (cfg) ASSERT_EQ(cfg->warnings.n, 0);
  tg_config_free(cfg);
  ASSERT_EQ(errs.n, 0);
  tg_errors_free(&errs);
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
  RUN(backend_cipher_keys);
  RUN(backend_pin_lines_append);
  RUN(error_bad_pin_in_list);
  RUN(error_bad_acl);
  RUN(error_bad_secret_reference);
  RUN(error_bind_needs_ip);
  RUN(error_udp_key_on_tcp_listener);
  RUN(error_reports_every_error);
  RUN(secrets);
  RUN(secrets_over_long_refused);
  RUN(secret_mode_warnings);
  RUN(pass_secret_in_readable_config_warns);
  RUN(relative_paths_resolve_against_config_dir);
  RUN(list_keys_repeat_and_keep_their_lines);
  RUN(continuation_lines);
  RUN(sni_sections_group_by_bind);
  RUN(sni_errors);
  RUN(sni_lone_section);
  return UNIT_DONE();
}
