/* The association table of a UDP listener (assoc_table.c): lookup by
 * address and port, growth, successors that are listed but not findable,
 * forgetting on close, and the owner's call when the last one is freed. */
#include <stdlib.h>
#include <string.h>

#include "assoc_table.h"
#include "udp_assoc.h"
#include "unit.h"
#include "unit_helpers.h"

/* An association as the table sees it: only its peer and link fields. */
static tg_udp_assoc_t *fake(tg_assoc_table_t *t, const struct sockaddr *sa) {
  tg_udp_assoc_t *a = calloc(1, sizeof(*a));
  memcpy(&a->peer, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                 : sizeof(struct sockaddr_in6));
  a->hash = tg_assoc_table_hash(t, sa);
  return a;
}

static tg_udp_assoc_t *find(tg_assoc_table_t *t, const struct sockaddr *sa) {
  return tg_assoc_table_lookup(t, sa, tg_assoc_table_hash(t, sa));
}

TEST(finds_by_address_and_port) {
  tg_assoc_table_t t;
  ASSERT_EQ(tg_assoc_table_init(&t, 42), 0);
  struct sockaddr_in a = v4("192.0.2.1", 1000), b = v4("192.0.2.1", 1001),
                     c = v4("192.0.2.2", 1000);
  struct sockaddr_in6 d = v6("2001:db8::1", 1000);
  tg_udp_assoc_t *x = fake(&t, SA(a)), *y = fake(&t, SA(d));
  tg_assoc_table_add(&t, x, 1);
  tg_assoc_table_add(&t, y, 1);
  ASSERT(find(&t, SA(a)) == x);
  ASSERT(find(&t, SA(d)) == y);
  ASSERT(find(&t, SA(b)) == NULL); /* another port is another peer */
  ASSERT(find(&t, SA(c)) == NULL);
  ASSERT_EQ(t.nassoc, 2);
  ASSERT_EQ(t.nalive, 2);
  ASSERT_EQ(t.created, 2);
  ASSERT_EQ(t.peak, 2);
  tg_assoc_table_forget(&t, x);
  tg_assoc_table_forget(&t, y);
  free(x);
  free(y);
  tg_assoc_table_free(&t);
}

TEST(the_hash_is_keyed) {
  tg_assoc_table_t t1, t2;
  ASSERT_EQ(tg_assoc_table_init(&t1, 1), 0);
  ASSERT_EQ(tg_assoc_table_init(&t2, 2), 0);
  struct sockaddr_in a = v4("192.0.2.1", 1000);
  ASSERT(tg_assoc_table_hash(&t1, SA(a)) == tg_assoc_table_hash(&t1, SA(a)));
  ASSERT(tg_assoc_table_hash(&t1, SA(a)) != tg_assoc_table_hash(&t2, SA(a)));
  tg_assoc_table_free(&t1);
  tg_assoc_table_free(&t2);
}

TEST(grows_and_still_finds_everyone) {
  tg_assoc_table_t t;
  ASSERT_EQ(tg_assoc_table_init(&t, 7), 0);
  size_t before = t.nbuckets;
  enum { N = 3000 };
  static tg_udp_assoc_t *all[N];
  for (int i = 0; i < N; i++) {
    struct sockaddr_in a = v4("198.51.100.1", 0);
    a.sin_port = htons((uint16_t)(1000 + i));
    all[i] = fake(&t, SA(a));
    tg_assoc_table_add(&t, all[i], 1);
  }
  ASSERT(t.nbuckets > before);
  ASSERT_EQ(t.nassoc, N);
  int found = 0;
  for (int i = 0; i < N; i++)
    if (find(&t, (const struct sockaddr *)&all[i]->peer) == all[i]) found++;
  ASSERT_EQ(found, N);
  /* every one is on the list once */
  size_t listed = 0;
  for (tg_udp_assoc_t *a = t.all; a; a = a->next) listed++;
  ASSERT_EQ(listed, N);
  for (int i = 0; i < N; i++) {
    tg_assoc_table_forget(&t, all[i]);
    free(all[i]);
  }
  ASSERT_EQ(t.nassoc, 0);
  ASSERT(t.all == NULL);
  tg_assoc_table_free(&t);
}

TEST(a_successor_is_listed_but_found_only_once_findable) {
  tg_assoc_table_t t;
  ASSERT_EQ(tg_assoc_table_init(&t, 3), 0);
  struct sockaddr_in a = v4("192.0.2.9", 4433);
  tg_udp_assoc_t *old = fake(&t, SA(a)), *succ = fake(&t, SA(a));
  tg_assoc_table_add(&t, old, 1);
  tg_assoc_table_add(&t, succ, 0);
  ASSERT_EQ(t.nassoc, 2);
  ASSERT(find(&t, SA(a)) == old);
  /* the old one closes: its successor takes the peer over */
  tg_assoc_table_forget(&t, old);
  ASSERT(find(&t, SA(a)) == NULL);
  tg_assoc_table_findable(&t, succ);
  tg_assoc_table_findable(&t, succ); /* twice is once */
  ASSERT(find(&t, SA(a)) == succ);
  ASSERT_EQ(t.nassoc, 1);
  tg_assoc_table_forget(&t, succ);
  tg_assoc_table_forget(&t, succ); /* forgetting twice changes nothing more */
  ASSERT(find(&t, SA(a)) == NULL);
  free(old);
  free(succ);
  tg_assoc_table_free(&t);
}

static int last_freed_calls;
static void on_last(tg_assoc_table_t *t) { last_freed_calls++; }

TEST(the_owner_hears_when_the_last_one_is_freed) {
  tg_assoc_table_t t;
  ASSERT_EQ(tg_assoc_table_init(&t, 5), 0);
  t.on_last_freed = on_last;
  last_freed_calls = 0;
  struct sockaddr_in a = v4("192.0.2.1", 1), b = v4("192.0.2.1", 2);
  tg_udp_assoc_t *x = fake(&t, SA(a)), *y = fake(&t, SA(b));
  tg_assoc_table_add(&t, x, 1);
  tg_assoc_table_add(&t, y, 1);
  /* closing takes them off the table; memory goes later */
  tg_assoc_table_forget(&t, x);
  tg_assoc_table_forget(&t, y);
  ASSERT_EQ(t.nassoc, 0);
  ASSERT_EQ(t.nalive, 2);
  ASSERT_EQ(t.peak, 2);
  tg_assoc_table_freed(&t);
  ASSERT_EQ(last_freed_calls, 0);
  tg_assoc_table_freed(&t);
  ASSERT_EQ(last_freed_calls, 1);
  free(x);
  free(y);
  tg_assoc_table_free(&t);
}

int main(void) {
  RUN(finds_by_address_and_port);
  RUN(the_hash_is_keyed);
  RUN(grows_and_still_finds_everyone);
  RUN(a_successor_is_listed_but_found_only_once_findable);
  RUN(the_owner_hears_when_the_last_one_is_freed);
  return UNIT_DONE();
}
