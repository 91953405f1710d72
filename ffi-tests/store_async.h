/* Helpers shared by the C tests of the asynchronous session-store calls
 * (test_async.c) and of member metadata (test_payload.c). */
#ifndef SR_STORE_ASYNC_H
#define SR_STORE_ASYNC_H

#include <poll.h>

#include "check.h"

#define WAIT_MS 30000

/* A store on 127.0.0.1 with extra key/value pairs (NULL-terminated). */
static inline sr_session_store *open_store(const char *const *kv) {
    sr_config *cfg = NULL;
    sr_session_store *st = NULL;
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    for (; kv != NULL && kv[0] != NULL; kv += 2) {
        CHECK_RC(sr_config_set(cfg, kv[0], kv[1]), SR_OK);
    }
    CHECK_RC(sr_session_store_open(cfg, NULL, NULL, &st), SR_OK);
    sr_config_free(cfg);
    return st;
}

static inline sr_txn *txn_with(sr_session_store *st, const char *id, const char *name, const char *v) {
    sr_txn *txn = NULL;
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)id, strlen(id), &txn), SR_OK);
    CHECK_RC(sr_txn_set(txn, name, (const uint8_t *)v, strlen(v)), SR_OK);
    return txn;
}

/* Polls the completion fd until readable (1) or `ms` passed (0). */
static inline int fd_readable(int fd, int ms) {
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Reaps one completion, waiting for the fd (bounded). */
static inline int reap_one(sr_session_store *st, int fd, sr_completion *c) {
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        CHECK_RC(sr_session_store_reap(st, c, 1, &n), SR_OK);
        if (n == 1) {
            return 1;
        }
        fd_readable(fd, 100);
    }
    return 0;
}

#endif
