/* Configuration: the INI schema (man/tlsgate.ini.5) parsed into plain values.
 *
 * tg_config_load() reads a file through inih with a reader of our own that
 * counts lines, so every error names file:line: [section] key.  It only
 * parses and validates values; identities are loaded by tls.c.  A config is
 * immutable once loaded and owned by whoever loaded it. */
#ifndef TG_CONFIG_H
#define TG_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/socket.h>

#include "acl.h"
#include "cidr.h"
#include "secret.h" /* tg_secret_read(), used with the config's secret keys */

#define TG_MAX_BACKENDS 64
#define TG_MAX_LISTENERS 64
#define TG_NAME_MAX 64

/* The error convention of every module: a function that can fail returns 0
 * on success and -1 on failure (a pointer: NULL), and writes one line saying
 * why into the caller's buffer (char *err, size_t errsize).  Loading and
 * validating a config, which goes on after an error so that one run of
 * `tlsgate -t` reports all of them, adds its lines to a tg_errors_t instead.
 * A predicate is named as a question (tg_acl_match, tg_cookie_valid) and
 * returns 1 or 0; it has no failure to explain. */
typedef struct {
  char **msgs;
  size_t n;
} tg_errors_t;

void tg_errors_add(tg_errors_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void tg_errors_free(tg_errors_t *e);

typedef enum { TG_TRANSPORT_TCP = 0, TG_TRANSPORT_UDP } tg_transport_t;
typedef enum {
  TG_VERIFY_NONE = 0,
  TG_VERIFY_OPTIONAL,
  TG_VERIFY_REQUIRE
} tg_verify_t;
typedef enum { TG_PROXY_OFF = 0, TG_PROXY_V1, TG_PROXY_V2 } tg_proxy_proto_t;
typedef enum { TG_COOKIE_AUTO = 0, TG_COOKIE_ON, TG_COOKIE_OFF } tg_cookie_t;

typedef struct {
  char text[280]; /* as written: "host:port" or "[v6]:port" */
  char host[256]; /* without brackets */
  uint16_t port;
  int is_literal; /* host is an IP literal: addr is filled in */
  struct sockaddr_storage addr;
  socklen_t addrlen;
} tg_hostport_t;

typedef struct {
  char name[TG_NAME_MAX];
  const char *file;
  int line; /* line of the [listener:NAME] header */
  int key_line[96]; /* line of each key by schema index, 0 if unset */

  tg_hostport_t bind;
  int transport;
  int secure;

  char *pfx; /* comma-separated list */
  char *pfx_password;
  char *cert;
  char *key;
  char *key_password;

  int verify_client;
  char *client_ca;
  char *crl;
  tg_acl_t allow_clients;

  char *psk;
  char *psk_identity_hint;
  int min_version; /* 12 or 13 */
  char *ciphers;
  char *alpn;
  char *ticket_key_file;
  char *ocsp;

  tg_hostport_t backends[TG_MAX_BACKENDS];
  size_t nbackends;
  int backend_secure;
  char *backend_pfx;
  char *backend_pfx_password;
  char *backend_ca;
  int backend_verify;
  char *backend_pin;
  char *backend_sni;

  int proxy_protocol;
  int accept_proxy;

  uint64_t connect_timeout_ms;
  uint64_t handshake_timeout_ms;
  uint64_t idle_timeout_ms;

  int dtls_cookie;
  int dtls_mtu;
  uint64_t session_timeout_ms;

  /* Keys added after the first ones.  Each is parsed by the schema;
   * the ones still flagged F_NOT_YET in config.c are refused when set. */
  char *backend_ciphers;
  int backend_min_version; /* 12 or 13 */
  char *accept_proxy_from; /* comma-separated addresses/CIDRs */
  tg_cidr_list_t accept_proxy_nets; /* accept_proxy_from, parsed by validation */
  char *backend_psk;       /* secret: file:PATH */
  char *backend_cert;
  char *backend_key;
  char *backend_key_password;
  char *dtls_cookie_secret_file;
  int max_half_open;
  int max_half_open_per_source;
  int max_associations_per_source; /* 0 = derived from the fd limit */
  int protocol;            /* TG_PROTOCOL_* */
  char *allow_origins;
  char *allow_hosts;
  int forward_headers;
  int max_request_head;    /* bytes */
  int unsafe_listen;
  char *server_name;       /* comma-separated names and *.patterns (sni.h) */
  int strict_sni;
  /* SNI virtual hosts, set by validation: the index of the first listener
   * with the same transport and bind (itself when none comes before), and
   * whether this section is the default of that bind (the one without
   * server_name, else the first; README "SNI virtual hosts"). */
  int bind_group;
  int sni_default;
  char *pkcs11_module;
  char *pkcs11_pin;
  char *backend_pkcs11_pin;
  int backend_check;       /* TG_CHECK_* */
  uint64_t backend_check_interval_ms;
  char *keylog_file;
  int unix_mode;

  /* List keys given on several lines: items from first_item on come from
   * line (see tg_config_item_where). */
  struct tg_item_line {
    int key, first_item, line;
  } *item_lines;
  size_t nitem_lines;
} tg_listener_conf_t;

typedef enum { TG_PROTOCOL_TCP = 0, TG_PROTOCOL_HTTP } tg_protocol_t;
typedef enum { TG_CHECK_OFF = 0, TG_CHECK_CONNECT, TG_CHECK_TLS } tg_check_t;

typedef struct {
  char *path;
  char *dir;   /* absolute directory of path: relative paths resolve here */
  int workers; /* resolved: never "auto" */
  int log_level;
  int log_format;
  char *metrics;
  char *user;
  char *pid_file;
  uint64_t drain_timeout_ms;
  int max_connections;
  int watch_files;
  int global_key_line[16];

  tg_listener_conf_t *listeners[TG_MAX_LISTENERS];
  size_t nlisteners;
  tg_errors_t warnings; /* e.g. keys that have no effect; printed by -t, logged */
} tg_config_t;

/* Parses and validates path.  Returns the config, or NULL with errs filled. */
tg_config_t *tg_config_load(const char *path, tg_errors_t *errs);
void tg_config_free(tg_config_t *cfg);

/* "file:line: [listener:NAME] key" for messages about a key's value found
 * after parsing (e.g. a PFX that fails to load). */
const char *tg_config_where(const tg_listener_conf_t *l, const char *key,
                            char *buf, size_t size);

/* Like tg_config_where for item number item (from 0) of a list key, naming
 * the line that item was written on. */
const char *tg_config_item_where(const tg_listener_conf_t *l, const char *key,
                                 size_t item, char *buf, size_t size);

/* Errors errs->msgs[from..] that name key's first line are made to name the
 * line of item instead (for code that reports through tg_config_where). */
void tg_config_errors_for_item(const tg_listener_conf_t *l, const char *key,
                               size_t item, tg_errors_t *errs, size_t from);

/* Prints every file the config names, as resolved (absolute), one per line
 * with its [section] key, for `tlsgate -t`.  Secrets are shown as file:PATH
 * only; pass: and env: values are never printed. */
void tg_config_print_paths(const tg_config_t *cfg, FILE *f);

/* Value parsers, exposed for the unit tests and for other modules. */
int tg_parse_duration_ms(const char *s, uint64_t *out);
int tg_parse_bool(const char *s, int *out);
int tg_parse_hostport(const char *s, tg_hostport_t *out, char *err, size_t errsize);

#endif
