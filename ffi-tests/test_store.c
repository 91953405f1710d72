/* Exercises the session-store exports: NULL arguments, wrong lengths and
 * sizes, and a three-store cluster on 127.0.0.1 (multicast on 127.0.0.1,
 * TTL 1, a group of this process only) committing, fetching, renaming,
 * invalidating and draining sessions through C, with the event callback.
 * test_members.c covers the membership exports. */
#define _POSIX_C_SOURCE 200809L
#include "cluster_fixture.h"

#define cluster_config(group) cluster_config_in(252, "store", (group))

/* ---- session store ---- */

typedef struct {
    pthread_mutex_t mu;
    int events[16];
    int ready;
    char last_created[64];
    sr_session_store *self;
    sr_result reenter_get;
    size_t ready_sessions;
} store_state;

static void on_event(void *userdata, const sr_session_event *ev) {
    store_state *s = userdata;
    pthread_mutex_lock(&s->mu);
    if ((int)ev->kind >= 0 && (int)ev->kind < 16) {
        s->events[ev->kind]++;
    }
    if (ev->kind == SR_SESSION_CREATED && ev->id_len < sizeof s->last_created) {
        memcpy(s->last_created, ev->id, ev->id_len);
        s->last_created[ev->id_len] = 0;
    }
    if (ev->kind == SR_SESSION_READY) {
        s->ready = 1;
        s->ready_sessions = (size_t)ev->count;
        if (s->self != NULL) {
            sr_session *x = NULL;
            /* Blocking calls from the event callback are refused. */
            s->reenter_get = sr_session_store_get(s->self, (const uint8_t *)"x", 1, 0, &x, NULL);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static int event_count(store_state *s, sr_session_event_kind k) {
    int v;
    pthread_mutex_lock(&s->mu);
    v = s->events[k];
    pthread_mutex_unlock(&s->mu);
    return v;
}

static int wait_event(store_state *s, sr_session_event_kind k, int want) {
    int i;
    for (i = 0; i < WAIT_MS / 10; i++) {
        if (event_count(s, k) >= want) {
            return 1;
        }
        sleep_ms(10);
    }
    return 0;
}

static int wait_store_members(sr_session_store *st, size_t want) {
    int i;
    for (i = 0; i < WAIT_MS / 10; i++) {
        size_t n = 0;
        sr_session_store_members(st, NULL, 0, &n);
        if (n == want) {
            return 1;
        }
        sleep_ms(10);
    }
    return 0;
}

static int commit_value(sr_session_store *st, const char *id, const char *name, const char *v,
                        int create, size_t *copies) {
    sr_txn *txn = NULL;
    sr_result r = sr_session_store_begin(st, (const uint8_t *)id, strlen(id), &txn);
    if (r != SR_OK) {
        return r;
    }
    CHECK_RC(sr_txn_set(txn, name, (const uint8_t *)v, strlen(v)), SR_OK);
    return create ? sr_session_store_create(st, txn, WAIT_MS, copies)
                  : sr_session_store_commit(st, txn, WAIT_MS, copies);
}

/* The value of attribute `name` of `id` as `st` finds it, into out. */
static sr_result value_of(sr_session_store *st, const char *id, const char *name, char *out,
                          size_t cap) {
    sr_session *s = NULL;
    const uint8_t *v = NULL;
    size_t len = 0;
    sr_result r = sr_session_store_get(st, (const uint8_t *)id, strlen(id), WAIT_MS, &s, NULL);
    out[0] = 0;
    if (r != SR_OK) {
        return r;
    }
    r = sr_session_get(s, name, &v, &len);
    if (r == SR_OK && len < cap) {
        memcpy(out, v, len);
        out[len] = 0;
    }
    sr_session_free(s);
    return r;
}

static int same_addr(const sr_addr *a, const sr_addr *b) {
    return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

/* Checks that the three stores name the same two holders of `id`, the
   primary first, and returns the index of the store that is not one. */
static int holders_outsider(sr_session_store *st[3], const char *id) {
    sr_addr h0[4], hi[4], me;
    size_t n0 = 0, ni = 0;
    int i, outsider = -1;
    CHECK_RC(sr_session_store_holders(st[0], (const uint8_t *)id, strlen(id), h0, 1, &n0),
             SR_INSUFFICIENT_SIZE);
    CHECK(n0 == 2);
    CHECK_RC(sr_session_store_holders(st[0], (const uint8_t *)id, strlen(id), h0, 4, &n0), SR_OK);
    CHECK(n0 == 2 && !same_addr(&h0[0], &h0[1]));
    for (i = 0; i < 3; i++) {
        CHECK_RC(sr_session_store_holders(st[i], (const uint8_t *)id, strlen(id), hi, 4, &ni),
                 SR_OK);
        CHECK(ni == 2 && same_addr(&hi[0], &h0[0]) && same_addr(&hi[1], &h0[1]));
        CHECK_RC(sr_session_store_local_addr(st[i], &me), SR_OK);
        /* The primary comes first. */
        CHECK(sr_session_store_is_primary_for(st[i], (const uint8_t *)id, strlen(id)) ==
              same_addr(&me, &h0[0]));
        if (!same_addr(&me, &h0[0]) && !same_addr(&me, &h0[1])) {
            outsider = i;
        }
    }
    CHECK(outsider >= 0);
    return outsider;
}

static void test_store_arguments(void) {
    sr_config *cfg = cluster_config(next_group++);
    sr_session_store *st = NULL;
    sr_txn *txn = NULL;
    sr_session *s = (sr_session *)&txn; /* a sentinel: must stay unchanged */
    sr_session *s0 = s;
    sr_addr a, moved;
    sr_session_stats stats;
    size_t n = 99, copies = 99;
    const uint8_t *p = NULL;
    int64_t ones[2] = {-1, -1};

    CHECK_RC(sr_session_store_open(NULL, NULL, NULL, &st), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_open(cfg, NULL, NULL, NULL), SR_NULL_PARAMETER);
    CHECK(st == NULL);
    sr_session_store_free(NULL);
    sr_txn_free(NULL);
    sr_session_free(NULL);
    CHECK_RC(sr_session_store_close(NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_wait_ready(NULL, 10), SR_NULL_PARAMETER);
    CHECK(sr_session_store_is_ready(NULL) == 0);
    CHECK(sr_session_store_is_primary_for(NULL, (const uint8_t *)"a", 1) == 0);
    CHECK_RC(sr_session_store_local_addr(NULL, &a), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_members(NULL, NULL, 0, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_begin(NULL, (const uint8_t *)"a", 1, &txn), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_commit(NULL, NULL, 0, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_create(NULL, NULL, 0, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_get(NULL, (const uint8_t *)"a", 1, 0, &s, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_access(NULL, (const uint8_t *)"a", 1), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_invalidate(NULL, (const uint8_t *)"a", 1, 0, NULL),
             SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_change_id(NULL, (const uint8_t *)"a", 1, (const uint8_t *)"b", 1, 0,
                                        NULL),
             SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_drain(NULL, 10), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_stats(NULL, &stats, sizeof stats), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set(NULL, "a", (const uint8_t *)"1", 1), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_remove(NULL, "a"), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set_max_inactive(NULL, 5), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set_principal(NULL, NULL, 0), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set_auth_type(NULL, NULL, 0), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_id(NULL, &p, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_get(NULL, "a", &p, &n), SR_NULL_PARAMETER);
    CHECK(sr_session_attribute_count(NULL) == 0);
    CHECK_RC(sr_session_attribute_at(NULL, 0, &p, &n, &p, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_info_get(NULL, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_principal(NULL, &p, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_auth_type(NULL, &p, &n), SR_NULL_PARAMETER);

    /* A store alone in its group: ready at once. */
    CHECK_RC(sr_session_store_open(cfg, NULL, NULL, &st), SR_OK);
    sr_config_free(cfg);
    CHECK_RC(sr_session_store_wait_ready(st, WAIT_MS), SR_OK);
    CHECK(sr_session_store_is_ready(st) == 1);
    CHECK_RC(sr_session_store_local_addr(st, &a), SR_OK);
    CHECK(a.family == SR_ADDR_IPV4 && a.ip[0] == 127 && a.port != 0);
    CHECK_RC(sr_session_store_local_addr(st, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_members(st, NULL, 0, &n), SR_OK);
    CHECK(n == 0);
    CHECK_RC(sr_session_store_members(st, NULL, 3, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_members(st, &a, 1, NULL), SR_NULL_PARAMETER);
    CHECK(sr_session_store_is_primary_for(st, (const uint8_t *)"a", 1) == 1);
    CHECK(sr_session_store_is_primary_for(st, (const uint8_t *)"a", 0) == 0);
    CHECK(sr_session_store_is_primary_for(st, NULL, 1) == 0);

    /* Holders: a lone store holds everything; NULL and length guards. */
    {
        sr_addr h[2];
        size_t hn = 99;
        CHECK_RC(sr_session_store_holders(NULL, (const uint8_t *)"a", 1, h, 2, &hn),
                 SR_NULL_PARAMETER);
        CHECK_RC(sr_session_store_holders(st, NULL, 1, h, 2, &hn), SR_NULL_PARAMETER);
        CHECK_RC(sr_session_store_holders(st, (const uint8_t *)"a", 0, h, 2, &hn),
                 SR_INVALID_ARGUMENT);
        CHECK_RC(sr_session_store_holders(st, (const uint8_t *)"a", 1, NULL, 2, &hn),
                 SR_NULL_PARAMETER);
        CHECK_RC(sr_session_store_holders(st, (const uint8_t *)"a", 1, h, 2, NULL),
                 SR_NULL_PARAMETER);
        CHECK(hn == 99);
        CHECK_RC(sr_session_store_holders(st, (const uint8_t *)"a", 1, NULL, 0, &hn),
                 SR_INSUFFICIENT_SIZE);
        CHECK(hn == 1);
        hn = 0;
        CHECK_RC(sr_session_store_holders(st, (const uint8_t *)"a", 1, h, 2, &hn), SR_OK);
        CHECK(hn == 1 && same_addr(&h[0], &a));
    }

    /* Ids: NULL or empty refused, out-parameter untouched. */
    CHECK_RC(sr_session_store_begin(st, NULL, 1, &txn), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"a", 0, &txn), SR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "empty session id") != NULL);
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"a", 1, NULL), SR_NULL_PARAMETER);
    CHECK(txn == NULL);
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"a", 0, 0, &s, NULL), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_session_store_get(st, NULL, 1, 0, &s, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"a", 1, 0, NULL, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"nope", 4, 2000, &s, &moved), SR_NOT_FOUND);
    CHECK(s == s0);
    CHECK_RC(sr_session_store_access(st, (const uint8_t *)"nope", 4), SR_NOT_FOUND);
    CHECK_RC(sr_session_store_access(st, (const uint8_t *)"nope", 0), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_session_store_invalidate(st, (const uint8_t *)"nope", 4, 0, &copies),
             SR_NOT_FOUND);
    CHECK_RC(sr_session_store_invalidate(st, NULL, 4, 0, &copies), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_change_id(st, (const uint8_t *)"nope", 4, (const uint8_t *)"x", 0,
                                        0, &copies),
             SR_INVALID_ARGUMENT);
    CHECK(copies == 99);

    /* A txn: NULL names and values refused; NULL txn or store consumed. */
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"s1", 2, &txn), SR_OK);
    CHECK_RC(sr_txn_set(txn, NULL, (const uint8_t *)"1", 1), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set(txn, "a", NULL, 1), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set(txn, "empty", NULL, 0), SR_OK);
    CHECK_RC(sr_txn_set(txn, "a", (const uint8_t *)"1", 1), SR_OK);
    CHECK_RC(sr_txn_set(txn, "b", (const uint8_t *)"22", 2), SR_OK);
    CHECK_RC(sr_txn_set(txn, "gone", (const uint8_t *)"x", 1), SR_OK);
    CHECK_RC(sr_txn_remove(txn, "gone"), SR_OK);
    CHECK_RC(sr_txn_remove(txn, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set_max_inactive(txn, 600), SR_OK);
    CHECK_RC(sr_txn_set_principal(txn, (const uint8_t *)"alice", 5), SR_OK);
    CHECK_RC(sr_txn_set_principal(txn, NULL, 3), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set_auth_type(txn, (const uint8_t *)"FORM", 4), SR_OK);
    CHECK_RC(sr_txn_set_auth_type(txn, NULL, 2), SR_NULL_PARAMETER);
    /* Committing a session nobody created: not found, the txn consumed. */
    {
        sr_txn *other = NULL;
        CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"s2", 2, &other), SR_OK);
        CHECK_RC(sr_session_store_commit(st, other, WAIT_MS, &copies), SR_NOT_FOUND);
        CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"s2", 2, &other), SR_OK);
        CHECK_RC(sr_session_store_commit(NULL, other, 0, NULL), SR_NULL_PARAMETER);
        CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"s2", 2, &other), SR_OK);
        sr_txn_free(other); /* abandoned */
    }
    CHECK_RC(sr_session_store_create(st, txn, WAIT_MS, &copies), SR_OK);
    CHECK(copies == 1); /* alone: this node's copy */
    CHECK_RC(commit_value(st, "s1", "a", "x", 1, &copies), SR_CONFLICT);

    /* The snapshot. */
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"s1", 2, 0, &s, NULL), SR_OK);
    if (s != s0) {
        const uint8_t *name = NULL, *v = NULL;
        size_t name_len = 0, len = 0;
        sr_session_info info;
        CHECK_RC(sr_session_id(s, &p, &n), SR_OK);
        CHECK(n == 2 && memcmp(p, "s1", 2) == 0);
        CHECK_RC(sr_session_id(s, NULL, &n), SR_NULL_PARAMETER);
        CHECK(sr_session_attribute_count(s) == 3);
        CHECK_RC(sr_session_get(s, "b", &v, &len), SR_OK);
        CHECK(len == 2 && memcmp(v, "22", 2) == 0);
        CHECK_RC(sr_session_get(s, "empty", &v, &len), SR_OK);
        CHECK(len == 0);
        v = NULL;
        CHECK_RC(sr_session_get(s, "gone", &v, &len), SR_NOT_FOUND);
        CHECK(v == NULL);
        CHECK_RC(sr_session_get(s, NULL, &v, &len), SR_NULL_PARAMETER);
        CHECK_RC(sr_session_get(s, "b", NULL, &len), SR_NULL_PARAMETER);
        CHECK_RC(sr_session_get(s, "b", &v, NULL), SR_NULL_PARAMETER);
        /* Iteration in name order: a, b, empty. */
        CHECK_RC(sr_session_attribute_at(s, 0, &name, &name_len, &v, &len), SR_OK);
        CHECK(name_len == 1 && name[0] == 'a' && len == 1 && v[0] == '1');
        CHECK_RC(sr_session_attribute_at(s, 2, &name, &name_len, &v, &len), SR_OK);
        CHECK(name_len == 5 && memcmp(name, "empty", 5) == 0);
        CHECK_RC(sr_session_attribute_at(s, 3, &name, &name_len, &v, &len), SR_INVALID_ARGUMENT);
        CHECK_RC(sr_session_attribute_at(s, 0, NULL, &name_len, &v, &len), SR_NULL_PARAMETER);
        CHECK_RC(sr_session_attribute_at(s, 0, &name, &name_len, &v, NULL), SR_NULL_PARAMETER);
        CHECK_RC(sr_session_info_get(s, &info), SR_OK);
        CHECK(info.version >= 1 && info.max_inactive_secs == 600 && info.attribute_count == 3);
        CHECK(info.creation_time_ms > 1600000000000ULL);
        CHECK_RC(sr_session_info_get(s, NULL), SR_NULL_PARAMETER);
        CHECK_RC(sr_session_principal(s, &p, &n), SR_OK);
        CHECK(n == 5 && memcmp(p, "alice", 5) == 0);
        CHECK_RC(sr_session_auth_type(s, &p, &n), SR_OK);
        CHECK(n == 4 && memcmp(p, "FORM", 4) == 0);
        CHECK_RC(sr_session_auth_type(s, NULL, &n), SR_NULL_PARAMETER);
        sr_session_free(s);
        s = s0;
    }
    /* Clearing the principal; an empty txn is an access, complete at once. */
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"s1", 2, &txn), SR_OK);
    CHECK_RC(sr_txn_set_principal(txn, NULL, 0), SR_OK);
    CHECK_RC(sr_session_store_commit(st, txn, WAIT_MS, NULL), SR_OK);
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"s1", 2, &txn), SR_OK);
    CHECK_RC(sr_session_store_commit(st, txn, 0, &copies), SR_OK);
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"s1", 2, 0, &s, NULL), SR_OK);
    if (s != s0) {
        p = NULL;
        CHECK_RC(sr_session_principal(s, &p, &n), SR_NOT_FOUND);
        CHECK(p == NULL);
        sr_session_free(s);
        s = s0;
    }
    CHECK_RC(sr_session_store_access(st, (const uint8_t *)"s1", 2), SR_OK);

    /* Stats: sizes checked, a short struct gets its prefix only. */
    memset(&stats, 0, sizeof stats);
    CHECK_RC(sr_session_store_stats(st, &stats, sizeof stats), SR_OK);
    CHECK(stats.sessions == 1 && stats.commits >= 2 && stats.commits_acked >= 2);
    CHECK_RC(sr_session_store_stats(st, NULL, sizeof stats), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_stats(st, &stats, 4), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_session_store_stats(st, &stats, 12), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_session_store_stats(st, (sr_session_stats *)(void *)ones, 8), SR_OK);
    CHECK(ones[0] == 1 && ones[1] == -1);

    /* Rename, then invalidate. */
    CHECK_RC(sr_session_store_change_id(st, (const uint8_t *)"s1", 2, (const uint8_t *)"s1b", 3,
                                        WAIT_MS, &copies),
             SR_OK);
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"s1", 2, 2000, &s, NULL), SR_NOT_FOUND);
    CHECK_RC(sr_session_store_invalidate(st, (const uint8_t *)"s1b", 3, WAIT_MS, &copies), SR_OK);
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"s1b", 3, 2000, &s, NULL), SR_NOT_FOUND);
    CHECK(s == s0);

    /* Alone, draining has nobody to hand to and completes; then closed. */
    CHECK_RC(sr_session_store_drain(st, WAIT_MS), SR_OK);
    CHECK_RC(sr_session_store_close(st), SR_OK);
    CHECK_RC(sr_session_store_close(st), SR_OK);
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"s3", 2, &txn), SR_OK);
    CHECK_RC(sr_session_store_create(st, txn, WAIT_MS, &copies), SR_SHUTDOWN);
    sr_session_store_free(st);
}

/* Optimistic concurrency through C: the base version read from a snapshot,
 * set on a txn; a commit on a stale base is SR_CONFLICT and changes nothing. */
static void test_store_base_version(void) {
    sr_config *cfg = cluster_config(next_group++);
    sr_session_store *st = NULL;
    sr_txn *a = NULL, *b = NULL, *c = NULL;
    sr_session *s = NULL;
    sr_session_info info;
    uint64_t bv = 0;
    uint8_t w[16], w2[16];
    size_t copies = 0;
    char v[32];

    CHECK_RC(sr_session_store_open(cfg, NULL, NULL, &st), SR_OK);
    sr_config_free(cfg);
    if (st == NULL) {
        return;
    }
    CHECK_RC(sr_session_store_wait_ready(st, WAIT_MS), SR_OK);
    CHECK_RC(commit_value(st, "occ", "k", "v0", 1, &copies), SR_OK);
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"occ", 3, WAIT_MS, &s, NULL), SR_OK);
    if (s == NULL) {
        sr_session_store_free(st);
        return;
    }
    CHECK_RC(sr_session_info_get(s, &info), SR_OK);
    /* Two requests read the same version. */
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"occ", 3, &a), SR_OK);
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"occ", 3, &b), SR_OK);
    CHECK_RC(sr_txn_base(a, &bv, w), SR_NOT_FOUND);
    CHECK_RC(sr_txn_set_base_from(a, s), SR_OK);
    CHECK_RC(sr_txn_base(a, &bv, w), SR_OK);
    CHECK(bv == info.version && memcmp(w, info.writer, 16) == 0);
    CHECK_RC(sr_txn_set_base(b, info.version, info.writer), SR_OK);
    CHECK_RC(sr_txn_base(b, &bv, w2), SR_OK);
    CHECK(bv == info.version && memcmp(w2, info.writer, 16) == 0);
    CHECK_RC(sr_txn_set_base(b, 1, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set_base(NULL, 1, w), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set_base_from(NULL, s), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_set_base_from(a, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_base(a, NULL, w), SR_NULL_PARAMETER);
    CHECK_RC(sr_txn_base(a, &bv, NULL), SR_NULL_PARAMETER);
    sr_session_free(s);
    CHECK_RC(sr_txn_set(a, "k", (const uint8_t *)"a", 1), SR_OK);
    CHECK_RC(sr_txn_set(b, "k", (const uint8_t *)"b", 1), SR_OK);
    CHECK_RC(sr_session_store_commit(st, a, WAIT_MS, &copies), SR_OK);
    CHECK_RC(sr_session_store_commit(st, b, WAIT_MS, &copies), SR_CONFLICT);
    CHECK_RC(value_of(st, "occ", "k", v, sizeof v), SR_OK);
    CHECK(strcmp(v, "a") == 0);
    /* A base that is current applies. */
    CHECK_RC(sr_session_store_get(st, (const uint8_t *)"occ", 3, WAIT_MS, &s, NULL), SR_OK);
    CHECK_RC(sr_session_store_begin(st, (const uint8_t *)"occ", 3, &c), SR_OK);
    if (s != NULL) {
        CHECK_RC(sr_txn_set_base_from(c, s), SR_OK);
        sr_session_free(s);
    }
    CHECK_RC(sr_txn_set(c, "k", (const uint8_t *)"c", 1), SR_OK);
    CHECK_RC(sr_session_store_commit(st, c, WAIT_MS, &copies), SR_OK);
    CHECK_RC(value_of(st, "occ", "k", v, sizeof v), SR_OK);
    CHECK(strcmp(v, "c") == 0);
    CHECK_RC(sr_session_store_close(st), SR_OK);
    sr_session_store_free(st);
}

/* Three stores on 127.0.0.1 committing and reading sessions through C. */
static void test_store_cluster(void) {
    sr_config *cfg = cluster_config(next_group++);
    sr_session_store *st[3] = {NULL, NULL, NULL};
    store_state ev[3];
    char v[64], id[32];
    size_t copies = 0, n = 0;
    int i, created = 0;
    sr_addr addrs[4];

    CHECK_RC(sr_config_set(cfg, "backupCount", "1"), SR_OK);
    for (i = 0; i < 3; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        pthread_mutex_init(&ev[i].mu, NULL);
        CHECK_RC(sr_session_store_open(cfg, on_event, &ev[i], &st[i]), SR_OK);
        if (st[i] == NULL) {
            sr_config_free(cfg);
            return;
        }
        CHECK_RC(sr_session_store_wait_ready(st[i], WAIT_MS), SR_OK);
    }
    sr_config_free(cfg);
    for (i = 0; i < 3; i++) {
        CHECK(wait_store_members(st[i], 2));
        CHECK(wait_event(&ev[i], SR_SESSION_READY, 1));
        /* Membership changes report the cluster's health. */
        CHECK(wait_event(&ev[i], SR_SESSION_HEALTH, 1));
    }
    {
        sr_session_stats stats;
        memset(&stats, 0, sizeof stats);
        CHECK_RC(sr_session_store_stats(st[0], &stats, sizeof stats), SR_OK);
        CHECK(stats.under_replicated == 0); /* three members, two copies */
    }
    CHECK_RC(sr_session_store_members(st[0], addrs, 1, &n), SR_INSUFFICIENT_SIZE);
    CHECK(n == 2);
    CHECK_RC(sr_session_store_members(st[0], addrs, 4, &n), SR_OK);
    CHECK(n == 2 && addrs[0].ip[0] == 127 && addrs[1].ip[0] == 127);

    /* A session primary on store 0, with one backup. */
    for (i = 0; i < 1000 && !created; i++) {
        snprintf(id, sizeof id, "c-session-%d", i);
        created = sr_session_store_is_primary_for(st[0], (const uint8_t *)id, strlen(id));
    }
    CHECK(created);
    CHECK_RC(commit_value(st[0], id, "cart", "1 item", 1, &copies), SR_OK);
    CHECK(copies == 2);
    CHECK(holders_outsider(st, id) > 0); /* store 0 is the primary */

    /* Logout from a store without a copy: access and invalidate reach the
       holders, without a get first. */
    {
        int out;
        CHECK_RC(commit_value(st[0], "c-logout", "user", "alice", 1, &copies), SR_OK);
        out = holders_outsider(st, "c-logout");
        if (out >= 0) {
            CHECK_RC(sr_session_store_access(st[out], (const uint8_t *)"c-logout", 8), SR_OK);
            copies = 0;
            CHECK_RC(sr_session_store_invalidate(st[out], (const uint8_t *)"c-logout", 8, WAIT_MS,
                                                 &copies),
                     SR_OK);
            CHECK(copies >= 2);
        }
        for (i = 0; i < 3; i++) {
            CHECK_RC(value_of(st[i], "c-logout", "user", v, sizeof v), SR_NOT_FOUND);
        }
    }
    CHECK_RC(commit_value(st[0], id, "cart", "2 items", 0, &copies), SR_OK);
    CHECK(copies == 2);
    /* Every store reads the latest value (a non-holder fetches it). */
    for (i = 0; i < 3; i++) {
        CHECK_RC(value_of(st[i], id, "cart", v, sizeof v), SR_OK);
        CHECK(strcmp(v, "2 items") == 0);
    }
    /* A commit on another store, then read back on store 0. */
    CHECK_RC(commit_value(st[2], id, "cart", "3 items", 0, &copies), SR_OK);
    CHECK_RC(value_of(st[0], id, "cart", v, sizeof v), SR_OK);
    CHECK(strcmp(v, "3 items") == 0);
    CHECK_RC(sr_session_store_get(st[1], (const uint8_t *)"no-such", 7, 5000, NULL, NULL),
             SR_NULL_PARAMETER);
    {
        sr_session *s = NULL;
        CHECK_RC(sr_session_store_get(st[1], (const uint8_t *)"no-such", 7, 5000, &s, NULL),
                 SR_NOT_FOUND);
        CHECK(s == NULL);
    }
    /* A holder other than store 0 heard of the creation. */
    CHECK(event_count(&ev[1], SR_SESSION_CREATED) + event_count(&ev[2], SR_SESSION_CREATED) >= 1);
    /* Store 0, the primary, heard of store 2's commit. */
    CHECK(wait_event(&ev[0], SR_SESSION_UPDATED, 1));

    /* Store 0 drains: the others keep the session; store 0 says moved. */
    CHECK_RC(sr_session_store_drain(st[0], WAIT_MS), SR_OK);
    CHECK(wait_event(&ev[0], SR_SESSION_DRAINED, 1));
    {
        sr_session *s = NULL;
        sr_addr moved;
        memset(&moved, 0, sizeof moved);
        CHECK_RC(sr_session_store_get(st[0], (const uint8_t *)id, strlen(id), 5000, &s, &moved),
                 SR_MOVED);
        CHECK(s == NULL && moved.family == SR_ADDR_IPV4 && moved.port != 0);
    }
    sr_session_store_free(st[0]);
    for (i = 1; i < 3; i++) {
        CHECK(wait_store_members(st[i], 1));
        CHECK_RC(value_of(st[i], id, "cart", v, sizeof v), SR_OK);
        CHECK(strcmp(v, "3 items") == 0);
    }
    CHECK_RC(commit_value(st[1], id, "cart", "4 items", 0, &copies), SR_OK);
    CHECK(copies == 2);
    CHECK_RC(value_of(st[2], id, "cart", v, sizeof v), SR_OK);
    CHECK(strcmp(v, "4 items") == 0);

    /* The event callback may not block on its own store. */
    {
        store_state late;
        sr_config *c2 = cluster_config(next_group++);
        sr_session_store *solo = NULL;
        memset(&late, 0, sizeof late);
        pthread_mutex_init(&late.mu, NULL);
        late.reenter_get = SR_OK;
        /* The callback reads `self` under the lock; set it before ready. */
        pthread_mutex_lock(&late.mu);
        CHECK_RC(sr_session_store_open(c2, on_event, &late, &solo), SR_OK);
        late.self = solo;
        pthread_mutex_unlock(&late.mu);
        CHECK_RC(sr_session_store_wait_ready(solo, WAIT_MS), SR_OK);
        CHECK(wait_event(&late, SR_SESSION_READY, 1));
        pthread_mutex_lock(&late.mu);
        CHECK(late.reenter_get == SR_IN_CALLBACK);
        pthread_mutex_unlock(&late.mu);
        sr_session_store_free(solo);
        sr_config_free(c2);
        pthread_mutex_destroy(&late.mu);
    }

    for (i = 1; i < 3; i++) {
        sr_session_store_free(st[i]);
    }
    for (i = 0; i < 3; i++) {
        pthread_mutex_destroy(&ev[i].mu);
    }
}

int main(void) {
    test_store_arguments();
    test_store_base_version();
    test_store_cluster();
    return report("test_store");
}
