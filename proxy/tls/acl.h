/* allow_clients: which verified client certificates a listener admits.
 *
 * An ACL is a list of entries (cn:NAME, san:dns:NAME, san:ip:ADDR,
 * san:uri:URI, sha256:FINGERPRINT); a certificate is admitted when any one
 * entry matches.  An empty ACL admits every verified certificate. */
#ifndef TG_ACL_H
#define TG_ACL_H

#include <stddef.h>
#include <stdint.h>

#define TG_ACL_MAX 256 /* allow_clients may be repeated: long lists fit */

typedef enum {
  TG_ACL_CN = 1,
  TG_ACL_DNS,
  TG_ACL_IP,
  TG_ACL_URI,
  TG_ACL_SHA256
} tg_acl_kind_t;

typedef struct {
  tg_acl_kind_t kind;
  char value[256];     /* name, URI, or the IP as written */
  uint8_t bin[32];     /* IP address bytes or SHA-256 digest */
  size_t binlen;
} tg_acl_entry_t;

typedef struct {
  tg_acl_entry_t entries[TG_ACL_MAX];
  size_t n;
} tg_acl_t;

/* What a client certificate says about its holder, extracted once. */
#define TG_PEER_MAX_NAMES 16
/* The *len fields hold a name's full length in the certificate (0: take
 * the string as it is); a name whose stored text is not its full length
 * (too long, or holding a NUL) never matches. */
typedef struct {
  char cn[256];
  size_t cnlen;
  char dns[TG_PEER_MAX_NAMES][256];
  size_t dnslen[TG_PEER_MAX_NAMES];
  size_t ndns;
  char uri[TG_PEER_MAX_NAMES][256];
  size_t urilen[TG_PEER_MAX_NAMES];
  size_t nuri;
  uint8_t ip[TG_PEER_MAX_NAMES][16];
  size_t iplen[TG_PEER_MAX_NAMES];
  size_t nip;
  uint8_t sha256[32];
  const char *bad; /* NULL, or why a name is refused ("CN contains a NUL byte") */
} tg_peer_id_t;

/* Parses a comma-separated list.  Returns 0, or -1 with "'ENTRY': reason"
 * in err. */
int tg_acl_parse(const char *text, tg_acl_t *acl, char *err, size_t errsize);

/* Returns 1 when the identity is admitted. */
int tg_acl_match(const tg_acl_t *acl, const tg_peer_id_t *id);

#endif
