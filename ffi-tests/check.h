/* A minimal test harness for the C API tests: CHECK counts and reports,
 * and main() ends with the plain "N passed, N failed" line. */
#ifndef SR_CHECK_H
#define SR_CHECK_H

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sessionrepl.h"

static int checks_passed;
static int checks_failed;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            checks_passed++;                                                          \
        } else {                                                                      \
            checks_failed++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)

/* CHECK that an sr_result is what was expected, printing both on failure. */
#define CHECK_RC(expr, want)                                                          \
    do {                                                                              \
        sr_result rc_ = (expr);                                                       \
        if (rc_ == (want)) {                                                          \
            checks_passed++;                                                          \
        } else {                                                                      \
            char d_[256];                                                             \
            size_t n_ = 0;                                                            \
            d_[0] = 0;                                                                \
            sr_last_error_message(d_, sizeof d_, &n_);                                \
            checks_failed++;                                                          \
            fprintf(stderr, "%s:%d: %s returned %d (%s: %s), expected %s\n", __FILE__, \
                    __LINE__, #expr, (int)rc_, sr_result_message(rc_), d_, #want);    \
        }                                                                             \
    } while (0)

static inline void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* The thread's last error detail, as a static string (tests only). */
static inline const char *last_error(void) {
    static char buf[512];
    size_t n = 0;
    buf[0] = 0;
    if (sr_last_error_message(buf, sizeof buf, &n) != SR_OK) {
        return "<sr_last_error_message failed>";
    }
    return buf;
}

static inline int report(const char *name) {
    printf("%s: %d passed, %d failed\n", name, checks_passed, checks_failed);
    return checks_failed == 0 ? 0 : 1;
}

#endif
