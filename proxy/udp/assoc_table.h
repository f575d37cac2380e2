/* The association table of one UDP listener on one worker: finds a
 * client's association by its address and port (a keyed hash, so a peer
 * cannot aim at one chain), and lists every association not yet closing.
 *
 * It knows only the association's link fields (hash, hnext, prev, next,
 * findable, peer) and never calls into the association: the listener looks
 * up and adds, the association takes itself out when it closes (forget)
 * and when its memory is gone (freed).  on_last_freed, set by the owner,
 * runs when the last association's memory is gone. */
#ifndef TG_ASSOC_TABLE_H
#define TG_ASSOC_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct tg_udp_assoc tg_udp_assoc_t;

typedef struct tg_assoc_table {
  uint64_t seed;                    /* key of the peer hash */
  tg_udp_assoc_t **buckets;
  size_t nbuckets;
  size_t nassoc;                    /* listed (not closing) */
  size_t nalive;                    /* not yet freed */
  tg_udp_assoc_t *all;              /* list of the listed associations */
  uint64_t created, peak;           /* for the listener's statistics */
  void (*on_last_freed)(struct tg_assoc_table *t);
  void *owner;
} tg_assoc_table_t;

/* 0, or -1 when out of memory. */
int tg_assoc_table_init(tg_assoc_table_t *t, uint64_t seed);
void tg_assoc_table_free(tg_assoc_table_t *t);

/* The keyed hash of a peer's address and port (AF_INET or AF_INET6). */
uint64_t tg_assoc_table_hash(const tg_assoc_table_t *t, const struct sockaddr *sa);
tg_udp_assoc_t *tg_assoc_table_lookup(const tg_assoc_table_t *t, const struct sockaddr *sa,
                                      uint64_t hash);

/* Lists a new association (a->hash and a->peer set); findable: also in the
 * hash table.  A successor (udp_assoc.h) is not findable until it replaces
 * its predecessor: tg_assoc_table_findable. */
void tg_assoc_table_add(tg_assoc_table_t *t, tg_udp_assoc_t *a, int findable);
void tg_assoc_table_findable(tg_assoc_table_t *t, tg_udp_assoc_t *a);
/* a starts closing: no longer listed or findable, so a new datagram from
 * the same peer starts afresh. */
void tg_assoc_table_forget(tg_assoc_table_t *t, tg_udp_assoc_t *a);
/* a's memory is gone. */
void tg_assoc_table_freed(tg_assoc_table_t *t);

/* A keyed hash of n bytes (also for the per-source caps). */
uint64_t tg_udp_hash_bytes(uint64_t seed, const uint8_t *p, size_t n);

#endif
