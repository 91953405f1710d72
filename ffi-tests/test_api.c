/* Exercises the C API's plumbing: version, results and last error, config
 * (keys and files), addresses, the channel life cycle (double stop, free
 * while running), every replication mode and ack mode, send arguments,
 * listener failures and vanished members. test_send.c covers the rest of
 * the channel API. Writes its scratch files into the current directory. */
#define _POSIX_C_SOURCE 200809L
#include "channel_fixture.h"

/* ---- version, results, last error ---- */

static void test_version(void) {
    CHECK(strcmp(sr_version(), SESSIONREPL_VERSION) == 0);
    CHECK(SESSIONREPL_VERSION_MAJOR == 0 && SESSIONREPL_VERSION_MINOR >= 1);
}

static void test_result_messages(void) {
    static const int known[] = {SR_OK, SR_NULL_PARAMETER, SR_INVALID_ARGUMENT, SR_PANIC,
                                SR_INSUFFICIENT_SIZE, SR_IO, SR_IN_CALLBACK,
                                SR_UNKNOWN_CONFIG_KEY, SR_INVALID_CONFIG_VALUE,
                                SR_NOT_RUNNING, SR_ALREADY_RUNNING, SR_QUEUE_FULL, SR_TIMEOUT,
                                SR_REMOTE_FAILURE, SR_UNREACHABLE, SR_SHUTDOWN, SR_PROTOCOL,
                                SR_FRAME_TOO_LARGE, SR_DECOMPRESS, SR_PENDING, SR_NOT_FOUND,
                                SR_CONFLICT};
    size_t i;
    const char *unknown = sr_result_message(9999);
    CHECK(unknown != NULL && strcmp(unknown, "unknown result code") == 0);
    CHECK(strcmp(sr_result_message(-1), "unknown result code") == 0);
    CHECK(strcmp(sr_result_message(SR_OK), "success") == 0);
    for (i = 0; i < sizeof known / sizeof known[0]; i++) {
        const char *m = sr_result_message(known[i]);
        CHECK(m != NULL && m[0] != 0 && strcmp(m, unknown) != 0);
    }
    /* Stable numbers: these are part of the ABI. */
    CHECK(SR_NULL_PARAMETER == 1 && SR_UNKNOWN_CONFIG_KEY == 100 && SR_NOT_RUNNING == 200);
    CHECK(SR_REMOTE_FAILURE == 204 && SR_PENDING == 210 && SR_NOT_FOUND == 400);
}

static void test_last_error(void) {
    sr_config *cfg = NULL;
    char small[8];
    char big[256];
    size_t n = 0;
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set(cfg, "foo", "1"), SR_UNKNOWN_CONFIG_KEY);
    CHECK_RC(sr_last_error_message(big, sizeof big, &n), SR_OK);
    CHECK(strcmp(big, "unknown configuration key 'foo'") == 0);
    CHECK(n == strlen(big));
    /* Too small: needed length reported, buffer untouched. */
    memset(small, 'x', sizeof small);
    n = 0;
    CHECK_RC(sr_last_error_message(small, sizeof small, &n), SR_INSUFFICIENT_SIZE);
    CHECK(n == strlen("unknown configuration key 'foo'"));
    CHECK(small[0] == 'x' && small[7] == 'x');
    /* Size query, NULL arguments; none of it changes the detail. */
    CHECK_RC(sr_last_error_message(NULL, 0, &n), SR_INSUFFICIENT_SIZE);
    CHECK_RC(sr_last_error_message(NULL, 10, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_last_error_message(big, sizeof big, NULL), SR_NULL_PARAMETER);
    CHECK(strcmp(last_error(), "unknown configuration key 'foo'") == 0);
    /* Success does not clear it; the next failure replaces it. */
    CHECK_RC(sr_config_set(cfg, "compress", "true"), SR_OK);
    CHECK(contains(last_error(), "'foo'"));
    CHECK_RC(sr_config_set(NULL, "compress", "true"), SR_NULL_PARAMETER);
    CHECK(strcmp(last_error(), "argument 'cfg' is NULL") == 0);
    sr_config_free(cfg);
}

/* ---- config ---- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_config_api(void) {
    sr_config *cfg = (sr_config *)(uintptr_t)0x1;
    CHECK_RC(sr_config_new(NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK(cfg != NULL && cfg != (sr_config *)(uintptr_t)0x1);
    sr_config_free(NULL);

    CHECK_RC(sr_config_set(cfg, "replicationMode", "fastasyncqueue"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "ackTimeout", "250"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "tcpListenPort", "0"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "replicationMode", "turbo"), SR_INVALID_CONFIG_VALUE);
    CHECK(contains(last_error(), "replicationMode"));
    CHECK_RC(sr_config_set(cfg, "ackTimeout", "-5"), SR_INVALID_CONFIG_VALUE);
    CHECK_RC(sr_config_set(cfg, "tcpListenPort", "70000"), SR_INVALID_CONFIG_VALUE);
    CHECK(contains(last_error(), "tcpListenPort"));
    CHECK_RC(sr_config_set(cfg, "noSuchKey", "1"), SR_UNKNOWN_CONFIG_KEY);
    CHECK_RC(sr_config_set(cfg, NULL, "1"), SR_NULL_PARAMETER);
    CHECK_RC(sr_config_set(cfg, "compress", NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_config_set(cfg, "compress", "\xff\xfe"), SR_INVALID_ARGUMENT);

    CHECK_RC(sr_config_set_replication_mode(cfg, SR_MODE_POOLED), SR_OK);
    CHECK_RC(sr_config_set_replication_mode(cfg, 7), SR_INVALID_CONFIG_VALUE);
    CHECK_RC(sr_config_set_replication_mode(NULL, SR_MODE_POOLED), SR_NULL_PARAMETER);
    CHECK_RC(sr_config_set_ack_timeout_ms(cfg, 0), SR_INVALID_CONFIG_VALUE);
    CHECK(contains(last_error(), "ackTimeout"));
    CHECK_RC(sr_config_set_ack_timeout_ms(cfg, 1000), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "not-an-ip", 1), SR_INVALID_CONFIG_VALUE);
    CHECK_RC(sr_config_set_listen(cfg, NULL, 1), SR_NULL_PARAMETER);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    CHECK_RC(sr_config_set_ack_mode(cfg, SR_ACK_RECEIPT), SR_OK);
    CHECK_RC(sr_config_set_ack_mode(cfg, 3), SR_INVALID_CONFIG_VALUE);
    CHECK_RC(sr_config_set_compress(cfg, 1), SR_OK);
    CHECK_RC(sr_config_set_compress(NULL, 1), SR_NULL_PARAMETER);
    CHECK_RC(sr_config_set_worker_threads(cfg, 2), SR_OK);
    CHECK_RC(sr_config_set_worker_threads(cfg, 100000), SR_INVALID_CONFIG_VALUE);
    sr_config_free(cfg);
}

static void test_config_file(void) {
    sr_config *cfg = NULL;
    sr_channel *ch = NULL;
    uint16_t port = 0;
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    write_file("cfg-good.conf", "# comment\n\nreplicationMode = asynchronous\nackTimeout=300\n"
                                "tcpListenAddress=127.0.0.1\n");
    write_file("cfg-unknown.conf", "ackTimeout=400\nbogusKey=1\n");
    write_file("cfg-badvalue.conf", "tcpListenPort=0\nackTimeout=soon\n");
    write_file("cfg-noeq.conf", "ackTimeout\n");
    CHECK_RC(sr_config_load_file(cfg, "cfg-good.conf"), SR_OK);
    CHECK_RC(sr_config_load_file(cfg, "cfg-unknown.conf"), SR_UNKNOWN_CONFIG_KEY);
    CHECK(contains(last_error(), "cfg-unknown.conf:2") && contains(last_error(), "'bogusKey'"));
    CHECK_RC(sr_config_load_file(cfg, "cfg-badvalue.conf"), SR_INVALID_CONFIG_VALUE);
    CHECK(contains(last_error(), ":2") && contains(last_error(), "ackTimeout"));
    CHECK_RC(sr_config_load_file(cfg, "cfg-noeq.conf"), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_config_load_file(cfg, "does-not-exist.conf"), SR_IO);
    CHECK_RC(sr_config_load_file(cfg, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_config_load_file(NULL, "cfg-good.conf"), SR_NULL_PARAMETER);
    /* The config still starts: failed loads left it as the good file set it. */
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &ch), SR_OK);
    CHECK_RC(sr_channel_start(ch), SR_OK);
    CHECK_RC(sr_channel_local_port(ch, &port), SR_OK);
    CHECK(port != 0);
    sr_channel_free(ch);
    sr_config_free(cfg);
    remove("cfg-good.conf");
    remove("cfg-unknown.conf");
    remove("cfg-badvalue.conf");
    remove("cfg-noeq.conf");
}

/* ---- addresses ---- */

static void test_addr(void) {
    sr_addr a, untouched;
    char buf[64];
    size_t n = 0;
    memset(&untouched, 0xAB, sizeof untouched);
    CHECK_RC(sr_addr_parse("127.0.0.1:4000", &a), SR_OK);
    CHECK(a.family == SR_ADDR_IPV4 && a.port == 4000 && a.ip[0] == 127 && a.ip[3] == 1);
    CHECK_RC(sr_addr_format(&a, buf, sizeof buf, &n), SR_OK);
    CHECK(strcmp(buf, "127.0.0.1:4000") == 0 && n == 14);
    CHECK_RC(sr_addr_format(&a, buf, 14, &n), SR_INSUFFICIENT_SIZE);
    CHECK(n == 14);
    CHECK_RC(sr_addr_parse("[::1]:5", &a), SR_OK);
    CHECK(a.family == SR_ADDR_IPV6 && a.port == 5 && a.ip[15] == 1);
    CHECK_RC(sr_addr_format(&a, buf, sizeof buf, &n), SR_OK);
    CHECK(strcmp(buf, "[::1]:5") == 0);
    a = untouched;
    CHECK_RC(sr_addr_parse("garbage", &a), SR_INVALID_ARGUMENT);
    CHECK(memcmp(&a, &untouched, sizeof a) == 0);
    CHECK_RC(sr_addr_parse("127.0.0.1:99999", &a), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_addr_parse(NULL, &a), SR_NULL_PARAMETER);
    CHECK_RC(sr_addr_parse("127.0.0.1:1", NULL), SR_NULL_PARAMETER);
    a.family = 5;
    CHECK_RC(sr_addr_format(&a, buf, sizeof buf, &n), SR_INVALID_ARGUMENT);
    CHECK_RC(sr_addr_format(NULL, buf, sizeof buf, &n), SR_NULL_PARAMETER);
}

/* ---- channel life cycle ---- */

static void test_lifecycle(void) {
    sr_config *cfg = test_config(SR_MODE_POOLED);
    sr_channel *ch = (sr_channel *)(uintptr_t)0x1;
    uint16_t port = 0, port2 = 0;
    sr_addr a;
    uint8_t id[16], zero[16];
    sr_stats st;
    sr_send_options o;
    memset(zero, 0, sizeof zero);

    CHECK_RC(sr_channel_new(NULL, NULL, NULL, NULL, &ch), SR_NULL_PARAMETER);
    CHECK(ch == (sr_channel *)(uintptr_t)0x1); /* out written only on success */
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_config_set(cfg, "reconnectBackoffMin", "5000"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "reconnectBackoffMax", "10"), SR_OK);
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &ch), SR_INVALID_CONFIG_VALUE);
    CHECK_RC(sr_config_set(cfg, "reconnectBackoffMin", "10"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "reconnectBackoffMax", "2000"), SR_OK);
    CHECK_RC(sr_config_set_ack_mode(cfg, SR_ACK_RECEIPT), SR_OK);
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &ch), SR_OK);
    sr_config_free(cfg); /* the channel has its own copy */

    CHECK_RC(sr_send_options_default(ch, &o), SR_OK);
    CHECK(o.ack == SR_ACK_RECEIPT && o.compress == 0);
    CHECK_RC(sr_send_options_default(ch, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_send_options_default(NULL, &o), SR_NULL_PARAMETER);

    CHECK_RC(sr_channel_local_port(ch, &port), SR_NOT_RUNNING);
    CHECK_RC(sr_channel_stats(ch, &st, sizeof st), SR_NOT_RUNNING);
    CHECK_RC(sr_channel_flush(ch, 10), SR_NOT_RUNNING);
    CHECK_RC(sr_channel_stop(ch), SR_OK); /* never started: nothing to do */
    CHECK_RC(sr_channel_start(ch), SR_OK);
    CHECK_RC(sr_channel_start(ch), SR_ALREADY_RUNNING);
    CHECK_RC(sr_channel_local_port(ch, &port), SR_OK);
    CHECK(port != 0);
    CHECK_RC(sr_channel_local_port(ch, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_local_port(NULL, &port), SR_NULL_PARAMETER);
    a = addr_of(ch);
    CHECK(a.family == SR_ADDR_IPV4 && a.ip[0] == 127 && a.ip[3] == 1 && a.port == port);
    CHECK_RC(sr_channel_local_addr(ch, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_member_id(ch, id), SR_OK);
    CHECK(memcmp(id, zero, 16) != 0);
    CHECK_RC(sr_channel_member_id(ch, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_flush(ch, 1000), SR_OK);
    CHECK_RC(sr_channel_flush(NULL, 1000), SR_NULL_PARAMETER);

    CHECK_RC(sr_channel_stop(ch), SR_OK);
    CHECK_RC(sr_channel_stop(ch), SR_OK); /* double stop */
    CHECK_RC(sr_channel_local_port(ch, &port2), SR_NOT_RUNNING);
    CHECK_RC(sr_channel_stats(ch, &st, sizeof st), SR_OK); /* final counters */
    CHECK_RC(sr_channel_start(ch), SR_OK);                  /* restart */
    CHECK_RC(sr_channel_local_port(ch, &port2), SR_OK);
    sr_channel_free(ch); /* free while running: stops first */
    sr_channel_free(NULL);
    CHECK_RC(sr_channel_start(NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_stop(NULL), SR_NULL_PARAMETER);
}

/* ---- sends in every mode ---- */

static const char *mode_name(int m) {
    switch (m) {
    case SR_MODE_SYNCHRONOUS: return "synchronous";
    case SR_MODE_POOLED: return "pooled";
    case SR_MODE_ASYNCHRONOUS: return "asynchronous";
    default: return "fastasyncqueue";
    }
}

static void test_send_modes(void) {
    state rs;
    sr_channel *rx;
    sr_addr to;
    int mode, ack, compress;
    state_init(&rs);
    rx = start_channel(SR_MODE_POOLED, &rs);
    to = addr_of(rx);
    for (mode = SR_MODE_SYNCHRONOUS; mode <= SR_MODE_FASTASYNCQUEUE; mode++) {
        state ss;
        sr_channel *tx;
        int async = mode >= SR_MODE_ASYNCHRONOUS;
        state_init(&ss);
        tx = start_channel(mode, &ss);
        for (ack = SR_ACK_NONE; ack <= SR_ACK_DELIVERY; ack++) {
            for (compress = 0; compress <= 1; compress++) {
                char payload[4096];
                size_t len;
                uint64_t id = 0;
                int before_rx = get_int(&rs, &rs.received);
                int before_out = get_int(&ss, &ss.outcomes);
                sr_send_options o;
                o.ack = ack;
                o.compress = compress;
                memset(payload, 'z', sizeof payload);
                len = (size_t)snprintf(payload, 64, "%s ack=%d compress=%d", mode_name(mode),
                                       ack, compress);
                if (compress) {
                    len = sizeof payload; /* above compressionMinSize */
                }
                CHECK_RC(sr_channel_send(tx, &to, 1, (const uint8_t *)payload, len, &o, &id),
                         SR_OK);
                CHECK(id != 0);
                if (async) {
                    CHECK(wait_for(&ss, &ss.outcomes, before_out + 1));
                    pthread_mutex_lock(&ss.mu);
                    CHECK(ss.out_codes[before_out] == SR_OK);
                    CHECK(ss.out_ids[before_out] == id);
                    CHECK(ss.out_dests[before_out].port == to.port);
                    pthread_mutex_unlock(&ss.mu);
                }
                CHECK(wait_for(&rs, &rs.received, before_rx + 1));
                pthread_mutex_lock(&rs.mu);
                CHECK(rs.last_len == len && memcmp(rs.last, payload, len) == 0);
                CHECK(rs.last_id == id);
                CHECK(rs.last_from.family == SR_ADDR_IPV4 && rs.last_from.ip[0] == 127);
                pthread_mutex_unlock(&rs.mu);
            }
        }
        /* NULL options: the channel's defaults (ack after delivery). */
        CHECK_RC(sr_channel_send(tx, &to, 1, (const uint8_t *)"defaults", 8, NULL, NULL), SR_OK);
        CHECK_RC(sr_channel_flush(tx, 20000), SR_OK);
        sr_channel_free(tx);
        state_destroy(&ss);
    }
    sr_channel_free(rx);
    state_destroy(&rs);
}

static void test_send_arguments(void) {
    state rs;
    sr_channel *rx = NULL, *tx;
    sr_addr to, bad;
    uint64_t id = 777;
    sr_send_options o;
    sr_config *cfg;
    static uint8_t big[2048];
    state_init(&rs);
    rx = start_channel(SR_MODE_POOLED, &rs);
    to = addr_of(rx);
    cfg = test_config(SR_MODE_POOLED);
    CHECK_RC(sr_config_set(cfg, "maxFrameSize", "1024"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "maxDecompressedSize", "1024"), SR_OK);
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &tx), SR_OK);
    sr_config_free(cfg);
    CHECK_RC(sr_channel_send(tx, &to, 1, (const uint8_t *)"x", 1, NULL, &id), SR_NOT_RUNNING);
    CHECK_RC(sr_channel_start(tx), SR_OK);

    CHECK_RC(sr_channel_send(NULL, &to, 1, (const uint8_t *)"x", 1, NULL, &id),
             SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_send(tx, NULL, 1, (const uint8_t *)"x", 1, NULL, &id), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_send(tx, &to, 0, (const uint8_t *)"x", 1, NULL, &id),
             SR_INVALID_ARGUMENT);
    CHECK_RC(sr_channel_send(tx, &to, 1, NULL, 5, NULL, &id), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_send(tx, &to, 1, big, sizeof big, NULL, &id), SR_INVALID_ARGUMENT);
    CHECK(contains(last_error(), "maxFrameSize"));
    bad = to;
    bad.family = 9;
    CHECK_RC(sr_channel_send(tx, &bad, 1, (const uint8_t *)"x", 1, NULL, &id),
             SR_INVALID_ARGUMENT);
    o.ack = 42;
    o.compress = 0;
    CHECK_RC(sr_channel_send(tx, &to, 1, (const uint8_t *)"x", 1, &o, &id), SR_INVALID_ARGUMENT);
    CHECK(id == 777); /* never written on failure */
    /* An empty payload is a message too; NULL is fine with length 0. */
    CHECK_RC(sr_channel_send(tx, &to, 1, NULL, 0, NULL, &id), SR_OK);
    CHECK(id != 777);
    CHECK(wait_for(&rs, &rs.received, 1));
    CHECK(rs.last_len == 0);
    /* Same destination twice: two deliveries. */
    {
        sr_addr two[2];
        two[0] = to;
        two[1] = to;
        CHECK_RC(sr_channel_send(tx, two, 2, (const uint8_t *)"twice", 5, NULL, NULL), SR_OK);
        CHECK(wait_for(&rs, &rs.received, 3));
    }
    sr_channel_stop(tx);
    CHECK_RC(sr_channel_send(tx, &to, 1, (const uint8_t *)"x", 1, NULL, &id), SR_NOT_RUNNING);
    sr_channel_free(tx);
    sr_channel_free(rx);
    state_destroy(&rs);
}

/* ---- listener failure, vanished member ---- */

static void test_listener_failure(void) {
    state rs, ss;
    sr_channel *rx, *sync_tx, *async_tx;
    sr_addr to;
    sr_send_options o;
    sr_stats st;
    const char *msg = "please fail me";
    state_init(&rs);
    state_init(&ss);
    rs.fail_code = 7;
    rx = start_channel(SR_MODE_POOLED, &rs);
    to = addr_of(rx);
    sync_tx = start_channel(SR_MODE_SYNCHRONOUS, NULL);
    async_tx = start_channel(SR_MODE_FASTASYNCQUEUE, &ss);
    o.compress = 0;

    o.ack = SR_ACK_DELIVERY;
    CHECK_RC(sr_channel_send(sync_tx, &to, 1, (const uint8_t *)msg, strlen(msg), &o, NULL),
             SR_REMOTE_FAILURE);
    CHECK(contains(last_error(), "listener returned 7"));
    o.ack = SR_ACK_RECEIPT; /* acked before the listener ran */
    CHECK_RC(sr_channel_send(sync_tx, &to, 1, (const uint8_t *)msg, strlen(msg), &o, NULL),
             SR_OK);

    o.ack = SR_ACK_DELIVERY;
    CHECK_RC(sr_channel_send(async_tx, &to, 1, (const uint8_t *)msg, strlen(msg), &o, NULL),
             SR_OK);
    CHECK(wait_for(&ss, &ss.outcomes, 1));
    pthread_mutex_lock(&ss.mu);
    CHECK(ss.out_codes[0] == SR_REMOTE_FAILURE);
    CHECK(contains(ss.out_detail[0], "listener returned 7"));
    pthread_mutex_unlock(&ss.mu);

    CHECK(wait_for(&rs, &rs.received, 3));
    CHECK_RC(sr_channel_stats(rx, &st, sizeof st), SR_OK);
    CHECK(st.listener_errors == 3);
    sr_channel_free(async_tx);
    sr_channel_free(sync_tx);
    sr_channel_free(rx);
    state_destroy(&ss);
    state_destroy(&rs);
}

static void test_vanished_member(void) {
    state rs, ss;
    sr_channel *rx, *sync_tx, *async_tx;
    sr_addr to;
    sr_send_options o;
    sr_result r;
    state_init(&rs);
    state_init(&ss);
    rx = start_channel(SR_MODE_POOLED, &rs);
    to = addr_of(rx);
    sync_tx = start_channel(SR_MODE_SYNCHRONOUS, NULL);
    async_tx = start_channel(SR_MODE_ASYNCHRONOUS, &ss);
    o.ack = SR_ACK_DELIVERY;
    o.compress = 0;
    /* Both senders are connected... */
    CHECK_RC(sr_channel_send(sync_tx, &to, 1, (const uint8_t *)"hi", 2, &o, NULL), SR_OK);
    CHECK_RC(sr_channel_send(async_tx, &to, 1, (const uint8_t *)"hi", 2, &o, NULL), SR_OK);
    CHECK(wait_for(&ss, &ss.outcomes, 1));
    CHECK(ss.out_codes[0] == SR_OK);
    /* ...then the member goes away. */
    sr_channel_free(rx);
    r = sr_channel_send(sync_tx, &to, 1, (const uint8_t *)"gone?", 5, &o, NULL);
    CHECK(r == SR_UNREACHABLE || r == SR_TIMEOUT);
    CHECK_RC(sr_channel_send(async_tx, &to, 1, (const uint8_t *)"gone?", 5, &o, NULL), SR_OK);
    CHECK(wait_for(&ss, &ss.outcomes, 2));
    pthread_mutex_lock(&ss.mu);
    CHECK(ss.out_codes[1] == SR_UNREACHABLE || ss.out_codes[1] == SR_TIMEOUT);
    CHECK(ss.out_detail[1][0] != 0);
    pthread_mutex_unlock(&ss.mu);
    sr_channel_free(async_tx);
    sr_channel_free(sync_tx);
    state_destroy(&ss);
    state_destroy(&rs);
}

int main(void) {
    test_version();
    test_result_messages();
    test_last_error();
    test_config_api();
    test_config_file();
    test_addr();
    test_lifecycle();
    test_send_modes();
    test_send_arguments();
    test_listener_failure();
    test_vanished_member();
    return report("test_api");
}
