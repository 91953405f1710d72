/* Exercises the asynchronous session-store calls: NULL arguments and bad
 * lengths, completions reaped through the eventfd (poll), completions
 * delivered to a callback on the library's completion thread (and what
 * that callback may and may not call), the maxAsyncOperations cap,
 * deadlines (SR_TIMEOUT) and close (SR_SHUTDOWN) against a member that
 * answers the native preface and then nothing, all on 127.0.0.1. Member
 * metadata (memberPayload) is in test_payload.c. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store_async.h"

static void test_arguments(void) {
    sr_session_store *st = open_store(NULL);
    sr_txn *txn = NULL;
    sr_completion c[2];
    uint64_t t = 7;
    size_t n = 9;
    int fd = -5;

    CHECK_RC(sr_session_store_commit_async(NULL, NULL, 0, NULL, NULL, &t), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_create_async(NULL, NULL, 0, NULL, NULL, &t), SR_NULL_PARAMETER);
    /* The txn is consumed even when the store is NULL (ASan/valgrind see a leak otherwise). */
    if (st == NULL) {
        return;
    }
    txn = txn_with(st, "a", "k", "v");
    CHECK_RC(sr_session_store_commit_async(NULL, txn, 0, NULL, NULL, &t), SR_NULL_PARAMETER);
    txn = txn_with(st, "a", "k", "v");
    CHECK_RC(sr_session_store_create_async(NULL, txn, 0, NULL, NULL, &t), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_commit_async(st, NULL, 0, NULL, NULL, &t), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_get_async(NULL, (const uint8_t *)"a", 1, 0, NULL, NULL, &t),
             SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_get_async(st, NULL, 1, 0, NULL, NULL, &t), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"a", 0, 0, NULL, NULL, &t),
             SR_INVALID_ARGUMENT);
    CHECK_RC(sr_session_store_invalidate_async(NULL, (const uint8_t *)"a", 1, 0, NULL, NULL, &t),
             SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_invalidate_async(st, NULL, 1, 0, NULL, NULL, &t),
             SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_invalidate_async(st, (const uint8_t *)"a", 0, 0, NULL, NULL, &t),
             SR_INVALID_ARGUMENT);
    CHECK(t == 7); /* untouched on failure */
    CHECK_RC(sr_session_store_completion_fd(NULL, &fd), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_completion_fd(st, NULL), SR_NULL_PARAMETER);
    CHECK(fd == -5);
    CHECK_RC(sr_session_store_reap(NULL, c, 2, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_reap(st, NULL, 2, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_reap(st, c, 2, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_reap(st, c, (size_t)-1, &n), SR_INVALID_ARGUMENT);
    CHECK(n == 9);
    /* Nothing started: nothing to reap. */
    CHECK_RC(sr_session_store_reap(st, NULL, 0, &n), SR_OK);
    CHECK(n == 0);
    CHECK_RC(sr_session_store_completion_fd(st, &fd), SR_OK);
    CHECK(fd >= 0);
    CHECK(!fd_readable(fd, 0));
    CHECK_RC(sr_session_store_close(st), SR_OK);
    /* Closed: nothing starts, the txn is still consumed. */
    txn = txn_with(st, "a", "k", "v");
    CHECK_RC(sr_session_store_commit_async(st, txn, 0, NULL, NULL, &t), SR_SHUTDOWN);
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"a", 1, 0, NULL, NULL, &t),
             SR_SHUTDOWN);
    CHECK(t == 7);
    sr_session_store_free(st);
}

/* Completions reaped from the eventfd, as an event loop would. */
static void test_reap_through_fd(void) {
    sr_session_store *st = open_store(NULL);
    sr_completion c;
    sr_session *s = NULL;
    uint64_t t1 = 0, t2 = 0, t3 = 0, t4 = 0;
    const uint8_t *p = NULL;
    size_t len = 0, n = 0;
    int fd = -1, tag = 0;

    if (st == NULL) {
        return;
    }
    CHECK_RC(sr_session_store_wait_ready(st, WAIT_MS), SR_OK);
    CHECK_RC(sr_session_store_completion_fd(st, &fd), SR_OK);
    CHECK_RC(sr_session_store_create_async(st, txn_with(st, "r1", "k", "v1"), 0, NULL, &tag, &t1),
             SR_OK);
    CHECK(t1 != 0);
    CHECK(fd_readable(fd, WAIT_MS));
    memset(&c, 0xab, sizeof c);
    CHECK(reap_one(st, fd, &c));
    CHECK(c.ticket == t1 && c.kind == SR_ASYNC_CREATE && c.userdata == &tag);
    CHECK_RC(c.result, SR_OK);
    CHECK(c.copies == 1 && c.session == NULL && c.moved.family == 0);
    /* Reaped empty: the fd is clear again (level-triggered). */
    CHECK(!fd_readable(fd, 0));
    CHECK_RC(sr_session_store_reap(st, &c, 1, &n), SR_OK);
    CHECK(n == 0);

    /* A read: the snapshot belongs to the reaper. */
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"r1", 2, 0, NULL, &tag, &t2), SR_OK);
    CHECK(t2 > t1);
    CHECK(reap_one(st, fd, &c));
    CHECK(c.ticket == t2 && c.kind == SR_ASYNC_GET);
    CHECK_RC(c.result, SR_OK);
    s = c.session;
    CHECK(s != NULL);
    if (s != NULL) {
        CHECK_RC(sr_session_get(s, "k", &p, &len), SR_OK);
        CHECK(len == 2 && memcmp(p, "v1", 2) == 0);
        sr_session_free(s);
    }
    /* No such session; a commit, an invalidation: two of them reaped at once. */
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"none", 4, 0, NULL, NULL, &t3), SR_OK);
    CHECK(reap_one(st, fd, &c));
    CHECK(c.ticket == t3);
    CHECK_RC(c.result, SR_NOT_FOUND);
    CHECK(c.session == NULL);
    CHECK_RC(sr_session_store_commit_async(st, txn_with(st, "r1", "k", "v2"), 0, NULL, NULL, &t4),
             SR_OK);
    CHECK_RC(sr_session_store_invalidate_async(st, (const uint8_t *)"r1", 2, 0, NULL, NULL, &t1),
             SR_OK);
    {
        sr_completion two[4];
        size_t got = 0;
        for (int i = 0; i < 300 && got < 2; i++) {
            CHECK_RC(sr_session_store_reap(st, two + got, 4 - got, &n), SR_OK);
            got += n;
            if (got < 2) {
                fd_readable(fd, 100);
            }
        }
        CHECK(got == 2);
        if (got == 2) {
            /* In order of completion; each exactly once. */
            CHECK(two[0].ticket != two[1].ticket);
            for (int i = 0; i < 2; i++) {
                CHECK(two[i].ticket == t4 || two[i].ticket == t1);
                CHECK_RC(two[i].result, SR_OK);
                CHECK(two[i].kind == (two[i].ticket == t4 ? SR_ASYNC_COMMIT : SR_ASYNC_INVALIDATE));
            }
        }
    }
    /* Commit on the invalidated session: the store's own refusal comes as a completion. */
    CHECK_RC(sr_session_store_commit_async(st, txn_with(st, "r1", "k", "v3"), 0, NULL, NULL, &t2),
             SR_OK);
    CHECK(reap_one(st, fd, &c));
    CHECK(c.ticket == t2);
    CHECK_RC(c.result, SR_NOT_FOUND);
    /* Left unreaped: freed with the store (no leak under ASan/valgrind). */
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"r2", 2, 0, NULL, NULL, NULL), SR_OK);
    CHECK_RC(sr_session_store_create_async(st, txn_with(st, "r3", "k", "v"), 0, NULL, NULL, NULL),
             SR_OK);
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"r3", 2, 0, NULL, NULL, NULL), SR_OK);
    sr_session_store_free(st);
}

/* ---- callbacks on the completion thread ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sr_session_store *st;
    pthread_t main_thread;
    int calls, on_main, bad_userdata;
    int ok, shutdown, timeout, other;
    uint64_t tickets[64];
    sr_result close_rc, nested_rc, reap_rc;
    int nested_started;
} cb_state;

static void on_done(void *userdata, const sr_completion *c) {
    cb_state *s = userdata;
    sr_result close_rc = SR_OK, nested_rc = SR_OK;
    int nest = 0;
    if (c->userdata != userdata) {
        s->bad_userdata++;
    }
    if (c->session != NULL) {
        sr_session_free(c->session);
    }
    pthread_mutex_lock(&s->mu);
    nest = c->kind == SR_ASYNC_CREATE && !s->nested_started;
    if (nest) {
        s->nested_started = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (nest) {
        /* close/free would wait for this thread: refused. Starting more is fine. */
        close_rc = sr_session_store_close(s->st);
        sr_session_store_free(s->st); /* logs and does nothing */
        nested_rc = sr_session_store_get_async(s->st, (const uint8_t *)"cb0", 3, 0, on_done, s, NULL);
    }
    pthread_mutex_lock(&s->mu);
    if (pthread_equal(pthread_self(), s->main_thread)) {
        s->on_main++;
    }
    if (c->result == SR_OK) {
        s->ok++;
    } else if (c->result == SR_SHUTDOWN) {
        s->shutdown++;
    } else if (c->result == SR_TIMEOUT) {
        s->timeout++;
    } else {
        s->other++;
    }
    if (s->calls < 64) {
        s->tickets[s->calls] = c->ticket;
    }
    s->calls++;
    if (nest) {
        s->close_rc = close_rc;
        s->nested_rc = nested_rc;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int wait_calls(cb_state *s, int want) {
    struct timespec until;
    int got;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&s->mu);
    while (s->calls < want && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0) {
    }
    got = s->calls;
    pthread_mutex_unlock(&s->mu);
    return got;
}

static void cb_init(cb_state *s, sr_session_store *st) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->st = st;
    s->main_thread = pthread_self();
}

static void test_callbacks(void) {
    sr_session_store *st = open_store(NULL);
    cb_state s;
    uint64_t t = 0;
    char id[16];

    if (st == NULL) {
        return;
    }
    cb_init(&s, st);
    CHECK_RC(sr_session_store_wait_ready(st, WAIT_MS), SR_OK);
    CHECK_RC(sr_session_store_create_async(st, txn_with(st, "cb0", "k", "v"), 0, on_done, &s, &t),
             SR_OK);
    /* The create, then the read its callback started. */
    CHECK(wait_calls(&s, 2) == 2);
    pthread_mutex_lock(&s.mu);
    CHECK_RC(s.close_rc, SR_IN_CALLBACK);
    CHECK_RC(s.nested_rc, SR_OK);
    CHECK(s.ok == 2 && s.on_main == 0 && s.bad_userdata == 0);
    CHECK(s.tickets[0] == t);
    pthread_mutex_unlock(&s.mu);
    /* The store still works after the refused close and free. */
    CHECK(sr_session_store_is_ready(st) == 1);
    /* Many at once, from this thread: each completes exactly once. */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "many%d", i);
        CHECK_RC(sr_session_store_create_async(st, txn_with(st, id, "k", "v"), 0, on_done, &s, NULL),
                 SR_OK);
        CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)id, strlen(id), 0, on_done, &s, NULL),
                 SR_OK);
    }
    CHECK(wait_calls(&s, 42) == 42);
    sleep_ms(100);
    pthread_mutex_lock(&s.mu);
    CHECK(s.calls == 42); /* none twice */
    CHECK(s.on_main == 0 && s.bad_userdata == 0);
    CHECK(s.ok + s.other == 42 && s.shutdown == 0 && s.timeout == 0);
    for (int i = 0; i < 42; i++) {
        for (int j = i + 1; j < 42; j++) {
            CHECK(s.tickets[i] != s.tickets[j]);
        }
    }
    pthread_mutex_unlock(&s.mu);
    sr_session_store_free(st);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
}

/* A read whose callback starts the commit (the chain an event loop runs). */
typedef struct {
    pthread_mutex_t mu;
    sr_session_store *st;
    sr_txn *txn;
    sr_result chained, committed;
    int done;
} chain_state;

static void on_chain(void *userdata, const sr_completion *c) {
    chain_state *s = userdata;
    sr_session_free(c->session);
    pthread_mutex_lock(&s->mu);
    if (c->kind == SR_ASYNC_GET) {
        /* The read's own place is free already: the commit fits the cap. */
        s->chained = sr_session_store_commit_async(s->st, s->txn, 0, on_chain, s, NULL);
        s->txn = NULL;
        if (s->chained != SR_OK) {
            s->done = 1;
        }
    } else {
        s->committed = c->result;
        s->done = 1;
    }
    pthread_mutex_unlock(&s->mu);
}

/* A failed completion's detail, read inside its callback. */
typedef struct {
    pthread_mutex_t mu;
    sr_result result;
    char detail[256];
    int done;
} detail_state;

static void on_detail(void *userdata, const sr_completion *c) {
    detail_state *s = userdata;
    pthread_mutex_lock(&s->mu);
    s->result = c->result;
    snprintf(s->detail, sizeof s->detail, "%s", last_error());
    s->done = 1;
    pthread_mutex_unlock(&s->mu);
}

static void test_failure_detail_in_callback(void) {
    sr_session_store *st = open_store(NULL);
    detail_state s;
    int done = 0;
    if (st == NULL) {
        return;
    }
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    CHECK_RC(sr_session_store_wait_ready(st, WAIT_MS), SR_OK);
    /* A commit to a session that does not exist. */
    CHECK_RC(sr_session_store_commit_async(st, txn_with(st, "nope", "k", "v"), 0, on_detail, &s, NULL),
             SR_OK);
    for (int i = 0; i < 300 && !done; i++) {
        pthread_mutex_lock(&s.mu);
        done = s.done;
        pthread_mutex_unlock(&s.mu);
        if (!done) {
            sleep_ms(100);
        }
    }
    CHECK(done);
    CHECK_RC(s.result, SR_NOT_FOUND);
    CHECK(s.detail[0] != 0 && strstr(s.detail, "<sr_last_error_message") == NULL);
    sr_session_store_free(st);
    pthread_mutex_destroy(&s.mu);
}

/* maxAsyncOperations: completed but unreaped operations count too. */
static void test_cap(void) {
    const char *kv[] = {"maxAsyncOperations", "2", NULL};
    sr_session_store *st = open_store(kv);
    sr_completion c[4];
    sr_txn *txn = NULL;
    uint64_t t = 0;
    size_t n = 0;
    int fd = -1;
    sr_config *cfg = NULL;

    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set(cfg, "maxAsyncOperations", "0"), SR_INVALID_CONFIG_VALUE);
    CHECK_RC(sr_config_set(cfg, "maxAsyncOperations", "x"), SR_INVALID_CONFIG_VALUE);
    sr_config_free(cfg);
    if (st == NULL) {
        return;
    }
    CHECK_RC(sr_session_store_wait_ready(st, WAIT_MS), SR_OK);
    CHECK_RC(sr_session_store_completion_fd(st, &fd), SR_OK);
    CHECK_RC(sr_session_store_create_async(st, txn_with(st, "c1", "k", "v"), 0, NULL, NULL, &t),
             SR_OK);
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"c1", 2, 0, NULL, NULL, &t), SR_OK);
    txn = txn_with(st, "c2", "k", "v");
    CHECK_RC(sr_session_store_create_async(st, txn, 0, NULL, NULL, &t), SR_QUEUE_FULL);
    CHECK(strstr(last_error(), "maxAsyncOperations") != NULL);
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"c1", 2, 0, NULL, NULL, &t),
             SR_QUEUE_FULL);
    /* Still full once both completed: they wait to be reaped. */
    sleep_ms(200);
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"c1", 2, 0, NULL, NULL, &t),
             SR_QUEUE_FULL);
    CHECK(reap_one(st, fd, &c[0]));
    sr_session_free(c[0].session);
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"c1", 2, 0, NULL, NULL, &t), SR_OK);
    /* The other of the first two, and this one: both reaped, the cap is free. */
    {
        size_t reaped = 0;
        for (int i = 0; i < 300 && reaped < 2; i++) {
            CHECK_RC(sr_session_store_reap(st, c, 4, &n), SR_OK);
            for (size_t j = 0; j < n; j++) {
                sr_session_free(c[j].session);
            }
            reaped += n;
            if (reaped < 2) {
                fd_readable(fd, 100);
            }
        }
        CHECK(reaped == 2);
        CHECK(!fd_readable(fd, 0));
    }
    /* Cap 2: one reap-mode read waits unreaped, the chain uses the other place. */
    {
        chain_state ch;
        int done = 0;
        memset(&ch, 0, sizeof ch);
        pthread_mutex_init(&ch.mu, NULL);
        ch.st = st;
        ch.txn = txn_with(st, "c1", "k", "chained");
        ch.chained = SR_PANIC;
        ch.committed = SR_PANIC;
        CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"c1", 2, 0, NULL, NULL, NULL),
                 SR_OK);
        CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)"c1", 2, 0, on_chain, &ch, NULL),
                 SR_OK);
        for (int i = 0; i < 300 && !done; i++) {
            pthread_mutex_lock(&ch.mu);
            done = ch.done;
            pthread_mutex_unlock(&ch.mu);
            if (!done) {
                sleep_ms(100);
            }
        }
        CHECK(done);
        CHECK_RC(ch.chained, SR_OK);
        CHECK_RC(ch.committed, SR_OK);
        sr_txn_free(ch.txn); /* NULL unless the chain broke */
        pthread_mutex_destroy(&ch.mu);
    }
    sr_session_store_free(st);
}

/* A hung member: it answers each connection's native preface (so the store
 * takes it for a sessionrepl node, docs/PROTOCOL.md) and then nothing. */
typedef struct {
    int lfd;
    volatile int stop;
    int fds[64];
    int nfds;
} hung_member;

static void *hung_member_run(void *arg) {
    hung_member *h = arg;
    /* SRPL, version 1, reply flag, domain 0, id, auth 0, listen port 0, caps 0. */
    uint8_t reply[32] = {'S', 'R', 'P', 'L', 1, 1, 0, 0};
    memset(reply + 8, 0x5a, 16);
    while (!h->stop) {
        struct pollfd p;
        uint8_t in[512];
        int fd;
        p.fd = h->lfd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 50) != 1) {
            continue;
        }
        fd = accept(h->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        /* Its preface (32 bytes and the domain; none is set here). */
        if (read(fd, in, sizeof in) > 0 && write(fd, reply, sizeof reply) == (ssize_t)sizeof reply &&
            h->nfds < 64) {
            h->fds[h->nfds++] = fd; /* kept open, never read again */
        } else {
            close(fd);
        }
    }
    return NULL;
}

/* A member that answers the preface and then nothing: reads from it time
 * out at their deadline, and close completes what is still in flight. */
static void test_deadline_and_close(void) {
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    char members[64], id[32];
    const char *kv[] = {"membershipType", "static", "staticMembers", members,
                        "stateTransferTimeout", "0.2", "memberDiscoveryTime", "0", NULL};
    sr_session_store *st = NULL;
    sr_addr me, holders[4];
    cb_state s;
    uint64_t t = 0;
    size_t n = 0;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), found = 0;
    hung_member hung;
    pthread_t hung_thread;

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 64) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0);
    snprintf(members, sizeof members, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    memset(&hung, 0, sizeof hung);
    hung.lfd = lfd;
    CHECK(pthread_create(&hung_thread, NULL, hung_member_run, &hung) == 0);
    st = open_store(kv);
    if (st == NULL) {
        hung.stop = 1;
        pthread_join(hung_thread, NULL);
        close(lfd);
        return;
    }
    cb_init(&s, st);
    CHECK_RC(sr_session_store_local_addr(st, &me), SR_OK);
    /* An id whose primary is the silent member, once its probe has made it
     * a member (the probe runs on its own thread: wait for it, generously). */
    for (int tries = 0; tries < 400 && !found; tries++) {
        for (int i = 0; i < 200 && !found; i++) {
            snprintf(id, sizeof id, "silent%d", i);
            if (sr_session_store_holders(st, (const uint8_t *)id, strlen(id), holders, 4, &n) ==
                    SR_OK &&
                n >= 1 && holders[0].port != me.port) {
                found = 1;
            }
        }
        if (!found) {
            sleep_ms(50);
        }
    }
    CHECK(found);
    CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)id, strlen(id), 300, on_done, &s, &t),
             SR_OK);
    CHECK(wait_calls(&s, 1) == 1);
    pthread_mutex_lock(&s.mu);
    CHECK(s.timeout == 1 && s.tickets[0] == t);
    pthread_mutex_unlock(&s.mu);
    /* A create whose backup is the hung member: never acknowledged, so it
     * completes with SR_TIMEOUT at its deadline. */
    {
        char mine[32];
        sr_completion c;
        int fd = -1, have = 0;
        for (int i = 0; i < 200 && !have; i++) {
            snprintf(mine, sizeof mine, "mine%d", i);
            have = sr_session_store_holders(st, (const uint8_t *)mine, strlen(mine), holders, 4,
                                            &n) == SR_OK &&
                   n == 2 && holders[0].port == me.port;
        }
        CHECK(have);
        CHECK_RC(sr_session_store_completion_fd(st, &fd), SR_OK);
        CHECK_RC(sr_session_store_create_async(st, txn_with(st, mine, "k", "v"), 300, NULL, NULL,
                                               NULL),
                 SR_OK);
        CHECK(reap_one(st, fd, &c));
        CHECK_RC(c.result, SR_TIMEOUT);
    }
    /* Long deadlines, then close: each completes once, with SR_SHUTDOWN. */
    for (int i = 0; i < 3; i++) {
        CHECK_RC(sr_session_store_get_async(st, (const uint8_t *)id, strlen(id), 600000, on_done, &s,
                                            NULL),
                 SR_OK);
    }
    sleep_ms(100);
    CHECK(wait_calls(&s, 1) == 1);
    CHECK_RC(sr_session_store_close(st), SR_OK);
    /* The callbacks ran before close returned. */
    pthread_mutex_lock(&s.mu);
    CHECK(s.calls == 4 && s.shutdown == 3 && s.on_main == 0);
    pthread_mutex_unlock(&s.mu);
    sleep_ms(100);
    CHECK(wait_calls(&s, 4) == 4);
    sr_session_store_free(st);
    hung.stop = 1;
    pthread_join(hung_thread, NULL);
    for (int i = 0; i < hung.nfds; i++) {
        close(hung.fds[i]);
    }
    close(lfd);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
}

int main(void) {
    test_arguments();
    test_reap_through_fd();
    test_callbacks();
    test_failure_detail_in_callback();
    test_cap();
    test_deadline_and_close();
    return report("test_async");
}
