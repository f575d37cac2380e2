/* A minimal unit test kit: TEST(name) functions run in order by RUN(),
 * ASSERT_* print both operands and the line, and the program ends with
 * "N passed, N failed" and a non-zero exit on any failure. */
#ifndef TG_UNIT_H
#define TG_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failed_checks;
static int unit_passed, unit_failed;

#define FAILF(...)                                                     \
  do {                                                                 \
    fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                  \
    fprintf(stderr, __VA_ARGS__);                                      \
    fputc('\n', stderr);                                               \
    unit_failed_checks++;                                              \
  } while (0)

#define ASSERT(cond)                                                   \
  do {                                                                 \
    if (!(cond)) FAILF("ASSERT(%s) failed", #cond);                    \
  } while (0)

#define ASSERT_EQ(a, b)                                                \
  do {                                                                 \
    long long a_ = (long long)(a), b_ = (long long)(b);                \
    if (a_ != b_) FAILF("%s == %s: %lld != %lld", #a, #b, a_, b_);     \
  } while (0)

#define ASSERT_STREQ(a, b)                                             \
  do {                                                                 \
    const char *a_ = (a), *b_ = (b);                                   \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                             \
      FAILF("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",  \
            b_ ? b_ : "(null)");                                       \
  } while (0)

#define ASSERT_CONTAINS(hay, needle)                                   \
  do {                                                                 \
    const char *h_ = (hay), *n_ = (needle);                            \
    if (!h_ || !strstr(h_, n_))                                        \
      FAILF("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); \
  } while (0)

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                      \
  do {                                                                 \
    int before_ = unit_failed_checks;                                  \
    test_##name();                                                     \
    if (unit_failed_checks == before_) {                               \
      unit_passed++;                                                   \
    } else {                                                           \
      unit_failed++;                                                   \
      fprintf(stderr, "FAIL %s\n", #name);                             \
    }                                                                  \
  } while (0)

#define UNIT_DONE()                                                    \
  (printf("%d passed, %d failed\n", unit_passed, unit_failed),         \
   unit_failed ? 1 : 0)

#endif
