/* Exercises member metadata (memberPayload): announced in multicast
 * heartbeats, read back by address through a channel
 * (sr_channel_member_payload, sr_member.payload in member events) and a
 * session store (sr_session_store_member_payload, SR_SESSION_MEMBER_ADDED
 * and _REMOVED events), bounded, refused without multicast membership, and
 * the redirect target of SR_MOVED (blocking and asynchronous reads), all on
 * 127.0.0.1 in multicast groups of this process only. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <unistd.h>

#include "store_async.h"

/* A config in multicast group `group` of this process only (127.0.0.1,
 * TTL 1) announcing `payload`. */
static sr_config *mcast_config(unsigned group, const char *payload) {
    char addr[32], port[16], domain[64];
    unsigned pid = (unsigned)getpid();
    const char *kv[] = {"membershipType", "multicast", "mcastAddr", addr, "mcastPort", port,
                        "mcastBindAddress", "127.0.0.1", "mcastTTL", "1", "mcastFrequency", "100",
                        "mcastDropTime", "2000", "domain", domain, "memberPayload", payload,
                        NULL};
    sr_config *cfg = NULL;
    snprintf(addr, sizeof addr, "239.254.%u.%u", pid % 250, group + 1);
    snprintf(port, sizeof port, "%u", 43000 + (pid + group * 97) % 20000);
    snprintf(domain, sizeof domain, "ffi-async-%u-%u", pid, group);
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    for (const char *const *p = kv; p[0] != NULL; p += 2) {
        CHECK_RC(sr_config_set(cfg, p[0], p[1]), SR_OK);
    }
    return cfg;
}

static sr_session_store *open_mcast_store(const char *payload, sr_session_event_callback cb,
                                          void *userdata) {
    sr_config *cfg = mcast_config(0, payload);
    sr_session_store *st = NULL;
    CHECK_RC(sr_session_store_open(cfg, cb, userdata, &st), SR_OK);
    sr_config_free(cfg);
    return st;
}

/* The store's member events: the last added and removed members' payloads. */
typedef struct {
    pthread_mutex_t mu;
    char added[SR_MEMBER_PAYLOAD_MAX + 1], removed[SR_MEMBER_PAYLOAD_MAX + 1];
    uint16_t added_port;
    int reason, n_added, n_removed;
} store_members_seen;

static void on_store_member(void *userdata, const sr_session_event *ev) {
    store_members_seen *s = userdata;
    char *into = NULL;
    if (ev->kind != SR_SESSION_MEMBER_ADDED && ev->kind != SR_SESSION_MEMBER_REMOVED) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (ev->kind == SR_SESSION_MEMBER_ADDED) {
        into = s->added;
        s->added_port = ev->by.port;
        s->n_added++;
    } else {
        into = s->removed;
        s->reason = ev->flag;
        s->n_removed++;
    }
    if (ev->payload_len <= SR_MEMBER_PAYLOAD_MAX) {
        memcpy(into, ev->payload, ev->payload_len);
        into[ev->payload_len] = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

/* What the member callback saw: the last added member's payload. */
typedef struct {
    pthread_mutex_t mu;
    char payload[SR_MEMBER_PAYLOAD_MAX + 1];
    int added;
} payload_seen;

static void on_member_payload(void *userdata, const sr_member_event *ev) {
    payload_seen *s = userdata;
    pthread_mutex_lock(&s->mu);
    if (ev->kind == SR_MEMBER_ADDED && ev->member.payload_len <= SR_MEMBER_PAYLOAD_MAX) {
        memcpy(s->payload, ev->member.payload, ev->member.payload_len);
        s->payload[ev->member.payload_len] = 0;
        s->added++;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Channels: the payload in member events and sr_channel_member_payload. */
static void test_channel_member_payload(void) {
    sr_config *c1 = mcast_config(1, "route-one"), *c2 = mcast_config(1, "route-two");
    sr_channel *a = NULL, *b = NULL;
    payload_seen seen;
    sr_addr aa, ba;
    uint8_t buf[64];
    size_t n = 0;
    int ok = 0;

    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.mu, NULL);
    CHECK_RC(sr_channel_new(c1, NULL, NULL, NULL, &a), SR_OK);
    CHECK_RC(sr_channel_new(c2, NULL, NULL, NULL, &b), SR_OK);
    sr_config_free(c1);
    sr_config_free(c2);
    if (a == NULL || b == NULL) {
        sr_channel_free(a);
        sr_channel_free(b);
        return;
    }
    memset(&aa, 0, sizeof aa);
    aa.family = SR_ADDR_IPV4;
    CHECK_RC(sr_channel_member_payload(a, &aa, buf, sizeof buf, &n), SR_NOT_RUNNING);
    CHECK_RC(sr_channel_set_member_callback(a, on_member_payload, &seen), SR_OK);
    CHECK_RC(sr_channel_start(a), SR_OK);
    CHECK_RC(sr_channel_start(b), SR_OK);
    CHECK_RC(sr_channel_local_addr(a, &aa), SR_OK);
    CHECK_RC(sr_channel_local_addr(b, &ba), SR_OK);
    for (int i = 0; i < 300 && !ok; i++) {
        pthread_mutex_lock(&seen.mu);
        ok = seen.added > 0;
        pthread_mutex_unlock(&seen.mu);
        if (!ok) {
            sleep_ms(100);
        }
    }
    CHECK(ok);
    CHECK(strcmp(seen.payload, "route-two") == 0);
    n = 0;
    CHECK_RC(sr_channel_member_payload(a, &ba, buf, sizeof buf, &n), SR_OK);
    CHECK(n == 9 && memcmp(buf, "route-two", 9) == 0);
    CHECK_RC(sr_channel_member_payload(a, &aa, buf, sizeof buf, &n), SR_OK);
    CHECK(n == 9 && memcmp(buf, "route-one", 9) == 0);
    CHECK_RC(sr_channel_member_payload(a, &ba, buf, 3, &n), SR_INSUFFICIENT_SIZE);
    CHECK(n == 9);
    CHECK_RC(sr_channel_member_payload(NULL, &ba, buf, sizeof buf, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_member_payload(a, NULL, buf, sizeof buf, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_member_payload(a, &ba, NULL, 1, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_member_payload(a, &ba, buf, sizeof buf, NULL), SR_NULL_PARAMETER);
    ba.port = 1;
    CHECK_RC(sr_channel_member_payload(a, &ba, buf, sizeof buf, &n), SR_NOT_FOUND);
    sr_channel_free(a);
    sr_channel_free(b);
    pthread_mutex_destroy(&seen.mu);
}

static int payload_is(sr_session_store *st, const sr_addr *a, const char *want) {
    uint8_t buf[SR_MEMBER_PAYLOAD_MAX];
    size_t n = 0;
    if (sr_session_store_member_payload(st, a, buf, sizeof buf, &n) != SR_OK) {
        return 0;
    }
    return n == strlen(want) && memcmp(buf, want, n) == 0;
}

/* memberPayload: announced in heartbeats, read back by address, and the
 * way to build a redirect from SR_MOVED (sync and async). */
static void test_member_payload(void) {
    sr_session_store *a = NULL, *b = NULL;
    sr_addr aa, ba, other, moved;
    sr_session *s = NULL;
    sr_completion c;
    uint8_t small[4];
    size_t n = 0;
    int fd = -1, seen = 0;
    char big[SR_MEMBER_PAYLOAD_MAX + 2], id[32];
    sr_config *cfg = NULL;
    store_members_seen members_a;

    /* Bounded, and refused where nothing would carry it. */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set(cfg, "memberPayload", big), SR_INVALID_CONFIG_VALUE);
    CHECK(strstr(last_error(), "1024") != NULL);
    big[SR_MEMBER_PAYLOAD_MAX] = 0;
    CHECK_RC(sr_config_set(cfg, "memberPayload", big), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    CHECK_RC(sr_session_store_open(cfg, NULL, NULL, &a), SR_INVALID_CONFIG_VALUE);
    CHECK(strstr(last_error(), "membershipType=multicast") != NULL);
    CHECK(a == NULL);
    sr_config_free(cfg);

    memset(&members_a, 0, sizeof members_a);
    pthread_mutex_init(&members_a.mu, NULL);
    a = open_mcast_store("http://127.0.0.1:8081/a", on_store_member, &members_a);
    b = open_mcast_store("http://127.0.0.1:8082/b", NULL, NULL);
    if (a == NULL || b == NULL) {
        sr_session_store_free(a);
        sr_session_store_free(b);
        return;
    }
    CHECK_RC(sr_session_store_local_addr(a, &aa), SR_OK);
    CHECK_RC(sr_session_store_local_addr(b, &ba), SR_OK);
    for (int i = 0; i < 300 && !seen; i++) {
        seen = payload_is(a, &ba, "http://127.0.0.1:8082/b") &&
               payload_is(b, &aa, "http://127.0.0.1:8081/a");
        if (!seen) {
            sleep_ms(100);
        }
    }
    CHECK(seen);
    CHECK(payload_is(a, &aa, "http://127.0.0.1:8081/a"));
    /* Arguments. */
    CHECK_RC(sr_session_store_member_payload(NULL, &ba, small, sizeof small, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_member_payload(a, NULL, small, sizeof small, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_member_payload(a, &ba, NULL, 4, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_session_store_member_payload(a, &ba, small, sizeof small, NULL), SR_NULL_PARAMETER);
    n = 0;
    memset(small, 0, sizeof small);
    CHECK_RC(sr_session_store_member_payload(a, &ba, small, sizeof small, &n), SR_INSUFFICIENT_SIZE);
    CHECK(n == strlen("http://127.0.0.1:8082/b") && small[0] == 0);
    CHECK_RC(sr_session_store_member_payload(a, &ba, NULL, 0, &n), SR_INSUFFICIENT_SIZE);
    other = ba;
    other.port = (uint16_t)(ba.port == 1 ? 2 : 1);
    CHECK_RC(sr_session_store_member_payload(a, &other, small, sizeof small, &n), SR_NOT_FOUND);
    other.family = 9;
    CHECK_RC(sr_session_store_member_payload(a, &other, small, sizeof small, &n),
             SR_INVALID_ARGUMENT);

    /* A session whose primary is a; a drains; a read on a is SR_MOVED to b. */
    CHECK_RC(sr_session_store_wait_ready(a, WAIT_MS), SR_OK);
    CHECK_RC(sr_session_store_wait_ready(b, WAIT_MS), SR_OK);
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof id, "mv%d", i);
        if (sr_session_store_is_primary_for(a, (const uint8_t *)id, strlen(id))) {
            break;
        }
    }
    CHECK(sr_session_store_is_primary_for(a, (const uint8_t *)id, strlen(id)));
    {
        sr_txn *txn = txn_with(a, id, "k", "v");
        CHECK_RC(sr_session_store_create(a, txn, WAIT_MS, &n), SR_OK);
    }
    /* Fetched from its primary (a) by b, asynchronously. */
    {
        int bfd = -1;
        const uint8_t *v = NULL;
        size_t vlen = 0;
        CHECK_RC(sr_session_store_completion_fd(b, &bfd), SR_OK);
        CHECK_RC(sr_session_store_get_async(b, (const uint8_t *)id, strlen(id), 0, NULL, NULL, NULL),
                 SR_OK);
        CHECK(reap_one(b, bfd, &c));
        CHECK_RC(c.result, SR_OK);
        CHECK(c.session != NULL);
        if (c.session != NULL) {
            CHECK_RC(sr_session_get(c.session, "k", &v, &vlen), SR_OK);
            CHECK(vlen == 1 && v[0] == 'v');
            sr_session_free(c.session);
        }
    }
    CHECK_RC(sr_session_store_drain(a, WAIT_MS), SR_OK);
    memset(&moved, 0, sizeof moved);
    CHECK_RC(sr_session_store_get(a, (const uint8_t *)id, strlen(id), WAIT_MS, &s, &moved), SR_MOVED);
    CHECK(moved.port == ba.port && payload_is(a, &moved, "http://127.0.0.1:8082/b"));
    CHECK_RC(sr_session_store_completion_fd(a, &fd), SR_OK);
    CHECK_RC(sr_session_store_get_async(a, (const uint8_t *)id, strlen(id), 0, NULL, NULL, NULL),
             SR_OK);
    CHECK(reap_one(a, fd, &c));
    CHECK_RC(c.result, SR_MOVED);
    CHECK(c.session == NULL && c.moved.port == ba.port);
    CHECK(payload_is(a, &c.moved, "http://127.0.0.1:8082/b"));
    /* a's member events: b added, then removed when b shuts down. */
    pthread_mutex_lock(&members_a.mu);
    CHECK(members_a.n_added >= 1 && members_a.added_port == ba.port);
    CHECK(strcmp(members_a.added, "http://127.0.0.1:8082/b") == 0);
    pthread_mutex_unlock(&members_a.mu);
    sr_session_store_free(b);
    seen = 0;
    for (int i = 0; i < 300 && !seen; i++) {
        pthread_mutex_lock(&members_a.mu);
        seen = members_a.n_removed > 0;
        pthread_mutex_unlock(&members_a.mu);
        if (!seen) {
            sleep_ms(100);
        }
    }
    CHECK(seen);
    CHECK(members_a.reason == SR_REMOVE_SHUTDOWN);
    CHECK(strcmp(members_a.removed, "http://127.0.0.1:8082/b") == 0);
    sr_session_store_free(a);
    pthread_mutex_destroy(&members_a.mu);
}

int main(void) {
    test_member_payload();
    test_channel_member_payload();
    return report("test_payload");
}
