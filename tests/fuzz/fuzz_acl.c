/* libFuzzer harness: the allow_clients ACL parser (tg_acl_parse), the hex
 * fingerprint parser behind it (tg_parse_hex) and matching (tg_acl_match).
 *
 * The input is the text of an allow_clients value (a NUL-terminated copy,
 * as the config parser hands it over).  Checked besides memory safety:
 *   - success leaves 0..TG_ACL_MAX entries, each of a known kind with a
 *     non-empty, NUL-terminated value; IP entries have 4 or 16 bytes,
 *     sha256 entries 32;
 *   - failure gives a reason and names the bad entry;
 *   - parsing is deterministic (a second parse gives the same ACL);
 *   - an entry always matches a peer identity built from that entry itself
 *     (cn -> CN, san:dns -> DNS name, ...), and an empty ACL admits anyone. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "util.h"

static void must(int cond, const char *what) {
  if (!cond) {
    fprintf(stderr, "fuzz_acl: %s\n", what);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';

  static tg_acl_t acl, again;
  char err[400];
  memset(err, 0xAA, sizeof(err));
  int rc = tg_acl_parse(text, &acl, err, sizeof(err));
  if (rc != 0) {
    must(rc == -1, "tg_acl_parse returned neither 0 nor -1");
    must(memchr(err, '\0', sizeof(err)) != NULL, "reason not NUL-terminated");
    must(err[0] == '\'' && strstr(err, "': ") && err[strlen(err) - 1] != ' ',
         "failure without the entry and a reason");
  } else {
    must(acl.n <= TG_ACL_MAX, "too many entries");
    char err2[400];
    must(tg_acl_parse(text, &again, err2, sizeof(err2)) == 0 &&
             again.n == acl.n,
         "second parse differs");
    tg_peer_id_t nobody;
    memset(&nobody, 0, sizeof(nobody));
    if (acl.n == 0) must(tg_acl_match(&acl, &nobody) == 1, "empty ACL refuses");
    for (size_t i = 0; i < acl.n; i++) {
      const tg_acl_entry_t *e = &acl.entries[i];
      must(memchr(e->value, '\0', sizeof(e->value)) != NULL, "value not terminated");
      must(e->value[0] != '\0', "empty value accepted");
      must(memcmp(e, &again.entries[i], sizeof(*e)) == 0, "second parse differs");
      tg_acl_t one;
      memset(&one, 0, sizeof(one));
      one.entries[0] = *e;
      one.n = 1;
      tg_peer_id_t id;
      memset(&id, 0, sizeof(id));
      switch (e->kind) {
      case TG_ACL_CN:
        snprintf(id.cn, sizeof(id.cn), "%s", e->value);
        break;
      case TG_ACL_DNS:
        snprintf(id.dns[0], sizeof(id.dns[0]), "%s", e->value);
        id.ndns = 1;
        break;
      case TG_ACL_URI:
        snprintf(id.uri[0], sizeof(id.uri[0]), "%s", e->value);
        id.nuri = 1;
        break;
      case TG_ACL_IP:
        must(e->binlen == 4 || e->binlen == 16, "IP entry of odd length");
        memcpy(id.ip[0], e->bin, e->binlen);
        id.iplen[0] = e->binlen;
        id.nip = 1;
        break;
      case TG_ACL_SHA256:
        must(e->binlen == 32, "sha256 entry not 32 bytes");
        memcpy(id.sha256, e->bin, 32);
        break;
      default:
        must(0, "entry of unknown kind");
      }
      must(tg_acl_match(&one, &id) == 1, "an entry does not match its own identity");
      must(tg_acl_match(&acl, &id) == 1, "the ACL does not admit an entry's identity");
      (void)tg_acl_match(&acl, &nobody);
    }
  }

  uint8_t digest[32];
  (void)tg_parse_hex(text, digest, sizeof(digest));
  free(text);
  return 0;
}
