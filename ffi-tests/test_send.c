/* Exercises the channel API beyond plain sends: zero-copy (borrowed)
 * sends and their release callbacks, tickets, retained messages,
 * callbacks that call back in, logging, stats, and many threads sending
 * on one channel. */
#define _POSIX_C_SOURCE 200809L
#include "channel_fixture.h"

/* ---- zero-copy sends ---- */

typedef struct {
    pthread_mutex_t mu;
    int calls;
    const uint8_t *data;
    size_t len;
} release_state;

static void on_release(void *userdata, const uint8_t *data, size_t len) {
    release_state *r = (release_state *)userdata;
    pthread_mutex_lock(&r->mu);
    r->calls++;
    r->data = data;
    r->len = len;
    pthread_mutex_unlock(&r->mu);
}

static int release_calls(release_state *r) {
    int n;
    pthread_mutex_lock(&r->mu);
    n = r->calls;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static int wait_released(release_state *r, int want) {
    int i;
    for (i = 0; i < 20000; i++) {
        if (release_calls(r) >= want) {
            return 1;
        }
        sleep_ms(1);
    }
    return 0;
}

static void test_send_borrowed(void) {
    state rs;
    sr_channel *rx, *sync_tx, *async_tx;
    sr_addr to;
    release_state rel;
    uint8_t *heap = (uint8_t *)malloc(1000);
    static const uint8_t forever[] = "static payload";
    uint64_t id = 5;
    state_init(&rs);
    memset(&rel, 0, sizeof rel);
    pthread_mutex_init(&rel.mu, NULL);
    memset(heap, 'h', 1000);
    rx = start_channel(SR_MODE_POOLED, &rs);
    to = addr_of(rx);
    sync_tx = start_channel(SR_MODE_POOLED, NULL);
    async_tx = start_channel(SR_MODE_FASTASYNCQUEUE, NULL);

    /* Synchronous: released before the send returns. */
    CHECK_RC(sr_channel_send_borrowed(sync_tx, &to, 1, heap, 1000, NULL, on_release, &rel, &id),
             SR_OK);
    CHECK(release_calls(&rel) == 1 && rel.data == heap && rel.len == 1000);
    CHECK(wait_for(&rs, &rs.received, 1));
    CHECK(rs.last_len == 1000 && rs.last[999] == 'h');

    /* Asynchronous: released once the I/O thread is done with it. */
    CHECK_RC(sr_channel_send_borrowed(async_tx, &to, 1, heap, 1000, NULL, on_release, &rel, &id),
             SR_OK);
    CHECK_RC(sr_channel_flush(async_tx, 20000), SR_OK);
    CHECK(wait_released(&rel, 2));
    CHECK(wait_for(&rs, &rs.received, 2));

    /* Every failure path releases too, exactly once. */
    CHECK_RC(sr_channel_send_borrowed(NULL, &to, 1, heap, 1000, NULL, on_release, &rel, &id),
             SR_NULL_PARAMETER);
    CHECK(release_calls(&rel) == 3);
    CHECK_RC(sr_channel_send_borrowed(sync_tx, &to, 0, heap, 1000, NULL, on_release, &rel, &id),
             SR_INVALID_ARGUMENT);
    CHECK(release_calls(&rel) == 4);
    CHECK_RC(sr_channel_send_borrowed(sync_tx, &to, 1, NULL, 3, NULL, on_release, &rel, &id),
             SR_NULL_PARAMETER);
    CHECK(release_calls(&rel) == 5 && rel.data == NULL && rel.len == 3);

    /* No release callback: static data. */
    CHECK_RC(sr_channel_send_borrowed(sync_tx, &to, 1, forever, sizeof forever, NULL, NULL, NULL,
                                      NULL),
             SR_OK);
    CHECK(wait_for(&rs, &rs.received, 3));
    CHECK(memcmp(rs.last, forever, sizeof forever) == 0);

    sr_channel_stop(async_tx);
    CHECK_RC(sr_channel_send_borrowed(async_tx, &to, 1, heap, 10, NULL, on_release, &rel, &id),
             SR_NOT_RUNNING);
    CHECK(release_calls(&rel) == 6);
    CHECK(id != 5);
    sr_channel_free(async_tx);
    sr_channel_free(sync_tx);
    sr_channel_free(rx);
    CHECK(release_calls(&rel) == 6);
    free(heap);
    pthread_mutex_destroy(&rel.mu);
    state_destroy(&rs);
}

/* ---- tickets ---- */

static void test_tickets(void) {
    state r1, r2;
    sr_channel *rx1, *rx2, *tx, *sync_tx;
    sr_addr to[2], d, sentinel;
    sr_ticket *t = NULL;
    sr_result res = SR_PANIC;
    uint64_t id = 0;
    int ports_seen = 0;
    size_t i;
    sr_send_options o;
    o.ack = SR_ACK_DELIVERY;
    o.compress = 0;
    state_init(&r1);
    state_init(&r2);
    r1.slow_ms = 500;
    rx1 = start_channel(SR_MODE_POOLED, &r1);
    rx2 = start_channel(SR_MODE_POOLED, &r2);
    to[0] = addr_of(rx1);
    to[1] = addr_of(rx2);
    tx = start_channel(SR_MODE_FASTASYNCQUEUE, NULL);

    CHECK_RC(sr_channel_send_ticket(tx, to, 2, (const uint8_t *)"both", 4, &o, &t, &id), SR_OK);
    CHECK(t != NULL && id != 0);
    CHECK_RC(sr_ticket_wait(t, 20000), SR_OK);
    for (i = 0; i < 2; i++) {
        CHECK_RC(sr_ticket_outcome(t, i, &d, &res), SR_OK);
        CHECK(res == SR_OK);
        ports_seen |= (d.port == to[0].port ? 1 : 0) | (d.port == to[1].port ? 2 : 0);
    }
    CHECK(ports_seen == 3);
    memset(&sentinel, 0xCD, sizeof sentinel);
    d = sentinel;
    CHECK_RC(sr_ticket_outcome(t, 2, &d, &res), SR_INVALID_ARGUMENT);
    CHECK(memcmp(&d, &sentinel, sizeof d) == 0);
    CHECK_RC(sr_ticket_outcome(t, 0, NULL, &res), SR_NULL_PARAMETER);
    CHECK_RC(sr_ticket_wait(NULL, 1), SR_NULL_PARAMETER);
    sr_ticket_free(t);
    sr_ticket_free(NULL);

    /* A slow listener: the outcome is pending until it returns. */
    t = NULL;
    CHECK_RC(sr_channel_send_ticket(tx, to, 1, (const uint8_t *)"slow one", 8, &o, &t, NULL),
             SR_OK);
    CHECK_RC(sr_ticket_wait(t, 0), SR_PENDING);
    CHECK_RC(sr_ticket_outcome(t, 0, &d, &res), SR_PENDING);
    CHECK_RC(sr_ticket_wait(t, 20000), SR_OK);
    sr_ticket_free(t);

    /* Synchronous mode: the failure goes to the ticket, not the return. */
    r2.fail_code = 3;
    sync_tx = start_channel(SR_MODE_SYNCHRONOUS, NULL);
    t = NULL;
    CHECK_RC(sr_channel_send_ticket(sync_tx, &to[1], 1, (const uint8_t *)"please fail", 11, &o,
                                    &t, NULL),
             SR_OK);
    CHECK_RC(sr_ticket_wait(t, 0), SR_REMOTE_FAILURE);
    CHECK_RC(sr_ticket_outcome(t, 0, &d, &res), SR_OK);
    CHECK(res == SR_REMOTE_FAILURE && d.port == to[1].port);
    sr_ticket_free(t);
    CHECK_RC(sr_channel_send_ticket(sync_tx, to, 1, (const uint8_t *)"x", 1, &o, NULL, NULL),
             SR_NULL_PARAMETER);

    sr_channel_free(sync_tx);
    sr_channel_free(tx);
    sr_channel_free(rx2);
    sr_channel_free(rx1);
    state_destroy(&r2);
    state_destroy(&r1);
}

/* ---- messages, callbacks that call back in, logging ---- */

typedef struct {
    pthread_mutex_t mu;
    int errors;
    char last[256];
} log_state;

static void on_log(void *userdata, sr_log_level level, const char *target, const char *message) {
    log_state *l = (log_state *)userdata;
    (void)target;
    pthread_mutex_lock(&l->mu);
    if (level == SR_LOG_ERROR) {
        l->errors++;
        snprintf(l->last, sizeof l->last, "%s", message);
    }
    pthread_mutex_unlock(&l->mu);
}

static void test_messages_and_reentry(void) {
    state rs;
    sr_channel *rx, *tx;
    sr_addr to, from;
    uint64_t id = 0;
    uint8_t tx_id[16], msg_member[16];
    log_state lg;
    memset(&lg, 0, sizeof lg);
    pthread_mutex_init(&lg.mu, NULL);
    CHECK_RC(sr_set_log_callback(on_log, &lg, SR_LOG_DEBUG), SR_OK);
    CHECK_RC(sr_set_log_callback(on_log, &lg, 0), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_set_log_callback(on_log, &lg, 9), SR_INVALID_ARGUMENT);

    state_init(&rs);
    rx = start_channel(SR_MODE_POOLED, &rs);
    to = addr_of(rx);
    tx = start_channel(SR_MODE_POOLED, NULL);
    CHECK_RC(sr_channel_member_id(tx, tx_id), SR_OK);

    pthread_mutex_lock(&rs.mu);
    rs.retain_next = 1;
    rs.free_lent = 1;
    rs.reenter = 1;
    pthread_mutex_unlock(&rs.mu);
    CHECK_RC(sr_channel_send(tx, &to, 1, (const uint8_t *)"keep me", 7, NULL, &id), SR_OK);
    CHECK(wait_for(&rs, &rs.received, 1));

    pthread_mutex_lock(&rs.mu);
    CHECK(rs.reenter_stop == SR_IN_CALLBACK && rs.reenter_start == SR_IN_CALLBACK);
    CHECK(rs.retained != NULL);
    if (rs.retained) {
        CHECK(sr_message_len(rs.retained) == 7);
        CHECK(memcmp(sr_message_data(rs.retained), "keep me", 7) == 0);
        CHECK(sr_message_id(rs.retained) == id);
        CHECK_RC(sr_message_sender(rs.retained, &from, msg_member), SR_OK);
        CHECK(from.family == SR_ADDR_IPV4 && from.ip[0] == 127);
        CHECK(memcmp(msg_member, tx_id, 16) == 0);
        CHECK_RC(sr_message_sender(rs.retained, NULL, NULL), SR_NULL_PARAMETER);
        {
            sr_message *again = NULL;
            CHECK_RC(sr_message_retain(rs.retained, &again), SR_OK);
            sr_message_free(rs.retained);
            rs.retained = NULL;
            CHECK(again != NULL && sr_message_len(again) == 7);
            sr_message_free(again);
        }
    }
    pthread_mutex_unlock(&rs.mu);
    CHECK(sr_message_data(NULL) == NULL && sr_message_len(NULL) == 0 && sr_message_id(NULL) == 0);
    CHECK_RC(sr_message_retain(NULL, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_message_sender(NULL, &from, NULL), SR_NULL_PARAMETER);
    sr_message_free(NULL);

    /* The refused free-from-callback and free-of-a-lent-message were logged. */
    pthread_mutex_lock(&lg.mu);
    CHECK(lg.errors >= 2);
    pthread_mutex_unlock(&lg.mu);
    /* The channel survived the refused stop/start/free from its callback. */
    CHECK_RC(sr_channel_send(tx, &to, 1, (const uint8_t *)"still up", 8, NULL, NULL), SR_OK);
    CHECK(wait_for(&rs, &rs.received, 2));

    CHECK_RC(sr_set_log_callback(NULL, NULL, SR_LOG_WARN), SR_OK);
    sr_channel_free(tx);
    sr_channel_free(rx);
    state_destroy(&rs);
    pthread_mutex_destroy(&lg.mu);
}

/* ---- stats ---- */

static void test_stats(void) {
    sr_channel *rx, *tx;
    sr_addr to;
    sr_stats st;
    size_t n = 0;
    char *text;
    char tiny[4];
    int i;
    rx = start_channel(SR_MODE_POOLED, NULL);
    to = addr_of(rx);
    tx = start_channel(SR_MODE_POOLED, NULL);
    for (i = 0; i < 5; i++) {
        CHECK_RC(sr_channel_send(tx, &to, 1, (const uint8_t *)"count", 5, NULL, NULL), SR_OK);
    }
    CHECK_RC(sr_channel_stats(tx, &st, sizeof st), SR_OK);
    CHECK(st.msgs_sent == 5 && st.acks_received == 5 && st.failures == 0);
    CHECK_RC(sr_channel_stats(rx, &st, sizeof st), SR_OK);
    CHECK(st.msgs_received == 5);
    CHECK(st.bytes_received >= 25); /* payloads plus framing */
    CHECK(st.connections_accepted >= 1);
    /* Wrong lengths; a shorter (older) struct gets only its fields. */
    CHECK_RC(sr_channel_stats(tx, &st, 0), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_channel_stats(tx, &st, 12), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_channel_stats(tx, NULL, sizeof st), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_stats(NULL, &st, sizeof st), SR_NULL_PARAMETER);
    memset(&st, 0xFF, sizeof st);
    CHECK_RC(sr_channel_stats(tx, &st, 8), SR_OK);
    CHECK(st.msgs_sent == 5 && st.bytes_sent == UINT64_MAX);
    /* Prometheus text: size query, then the text. */
    CHECK_RC(sr_channel_stats_prometheus(tx, NULL, 0, &n), SR_INSUFFICIENT_SIZE);
    CHECK(n > 100);
    CHECK_RC(sr_channel_stats_prometheus(tx, tiny, sizeof tiny, &n), SR_INSUFFICIENT_SIZE);
    text = (char *)malloc(n + 64);
    CHECK_RC(sr_channel_stats_prometheus(tx, text, n + 64, &n), SR_OK);
    CHECK(strlen(text) == n);
    CHECK(contains(text, "sessionrepl_msgs_sent 5\n"));
    CHECK(contains(text, "# TYPE sessionrepl_queue_depth gauge"));
    CHECK_RC(sr_channel_stats_prometheus(tx, text, n + 64, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_stats_prometheus(NULL, text, n + 64, &n), SR_NULL_PARAMETER);
    free(text);
    sr_channel_free(tx);
    sr_channel_free(rx);
}

/* ---- many threads sending on one channel ---- */

typedef struct {
    sr_channel *tx;
    sr_addr to;
    int ok;
} sender_arg;

static void *sender_thread(void *p) {
    sender_arg *a = (sender_arg *)p;
    int i;
    for (i = 0; i < 50; i++) {
        if (sr_channel_send(a->tx, &a->to, 1, (const uint8_t *)"threaded", 8, NULL, NULL) ==
            SR_OK) {
            a->ok++;
        }
    }
    return NULL;
}

static void test_concurrent_senders(void) {
    state rs;
    sr_channel *rx, *tx;
    pthread_t th[4];
    sender_arg args[4];
    int i, total = 0;
    state_init(&rs);
    rx = start_channel(SR_MODE_POOLED, &rs);
    tx = start_channel(SR_MODE_POOLED, NULL);
    for (i = 0; i < 4; i++) {
        args[i].tx = tx;
        args[i].to = addr_of(rx);
        args[i].ok = 0;
        CHECK(pthread_create(&th[i], NULL, sender_thread, &args[i]) == 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += args[i].ok;
    }
    CHECK(total == 200);
    CHECK(wait_for(&rs, &rs.received, 200));
    sr_channel_free(tx);
    sr_channel_free(rx);
    state_destroy(&rs);
}

int main(void) {
    test_send_borrowed();
    test_tickets();
    test_messages_and_reentry();
    test_stats();
    test_concurrent_senders();
    return report("test_send");
}
