/* Exercises every export of the C API: NULL arguments, wrong lengths,
 * life cycle (double stop, free while running), every replication mode and
 * ack mode, listener failures, vanished members, zero-copy sends, tickets,
 * retained messages, stats, logging, callbacks that call back in.
 * Writes its scratch files into the current directory. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include "check.h"

#define MAX_OUTCOMES 64

typedef struct {
    pthread_mutex_t mu;
    /* receiving side */
    int received;
    uint64_t last_id;
    size_t last_len;
    unsigned char last[8192];
    sr_addr last_from;
    int retain_next;
    sr_message *retained;
    int fail_code;       /* returned for payloads starting "please fail" */
    long slow_ms;        /* slept for payloads starting "slow" */
    int reenter;         /* call stop/start/free of `self` from the callback */
    sr_channel *self;
    sr_result reenter_stop, reenter_start;
    int free_lent;       /* call sr_message_free on the lent message */
    /* sending side */
    int outcomes;
    uint64_t out_ids[MAX_OUTCOMES];
    sr_result out_codes[MAX_OUTCOMES];
    sr_addr out_dests[MAX_OUTCOMES];
    char out_detail[MAX_OUTCOMES][128];
} state;

static void state_init(state *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static void state_destroy(state *s) {
    if (s->retained) {
        sr_message_free(s->retained);
    }
    pthread_mutex_destroy(&s->mu);
}

static int on_message(void *userdata, const sr_message *msg) {
    state *s = (state *)userdata;
    const uint8_t *data = sr_message_data(msg);
    size_t len = sr_message_len(msg);
    int rc = 0;
    if (len >= 11 && memcmp(data, "please fail", 11) == 0) {
        rc = s->fail_code;
    }
    if (len >= 4 && memcmp(data, "slow", 4) == 0) {
        sleep_ms(s->slow_ms);
    }
    pthread_mutex_lock(&s->mu);
    s->last_id = sr_message_id(msg);
    s->last_len = len;
    if (len <= sizeof s->last) {
        if (len > 0) {
            memcpy(s->last, data, len);
        }
    }
    sr_message_sender(msg, &s->last_from, NULL);
    if (s->retain_next) {
        sr_message *kept = NULL;
        if (sr_message_retain(msg, &kept) == SR_OK) {
            s->retained = kept;
        }
        s->retain_next = 0;
    }
    if (s->reenter) {
        s->reenter_stop = sr_channel_stop(s->self);
        s->reenter_start = sr_channel_start(s->self);
        sr_channel_free(s->self); /* refused: logged and ignored */
        s->reenter = 0;
    }
    if (s->free_lent) {
        sr_message_free((sr_message *)msg); /* refused: logged and ignored */
        s->free_lent = 0;
    }
    s->received++;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void on_outcome(void *userdata, uint64_t id, const sr_addr *dest, sr_result result) {
    state *s = (state *)userdata;
    pthread_mutex_lock(&s->mu);
    if (s->outcomes < MAX_OUTCOMES) {
        int i = s->outcomes;
        size_t n = 0;
        s->out_ids[i] = id;
        s->out_codes[i] = result;
        s->out_dests[i] = *dest;
        s->out_detail[i][0] = 0;
        if (result != SR_OK) {
            /* The detail of a failed outcome is this thread's last error; a
             * long one is cut, which is fine here. */
            if (sr_last_error_message(s->out_detail[i], sizeof s->out_detail[i], &n) ==
                SR_INSUFFICIENT_SIZE) {
                snprintf(s->out_detail[i], sizeof s->out_detail[i], "<%zu bytes>", n);
            }
        }
    }
    s->outcomes++;
    pthread_mutex_unlock(&s->mu);
}

static int get_int(state *s, const int *field) {
    int v;
    pthread_mutex_lock(&s->mu);
    v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* Waits (generously) until *field reaches want; returns whether it did. */
static int wait_for(state *s, const int *field, int want) {
    int i;
    for (i = 0; i < 20000; i++) {
        if (get_int(s, field) >= want) {
            return 1;
        }
        sleep_ms(1);
    }
    return 0;
}

static sr_config *test_config(int mode) {
    sr_config *cfg = NULL;
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    CHECK_RC(sr_config_set_replication_mode(cfg, mode), SR_OK);
    CHECK_RC(sr_config_set_ack_timeout_ms(cfg, 5000), SR_OK);
    CHECK_RC(sr_config_set(cfg, "connectTimeout", "2000"), SR_OK);
    return cfg;
}

static sr_channel *start_channel(int mode, state *s) {
    sr_config *cfg = test_config(mode);
    sr_channel *ch = NULL;
    /* Without a state to record into, no callbacks. */
    CHECK_RC(sr_channel_new(cfg, s ? on_message : NULL, s ? on_outcome : NULL, s, &ch), SR_OK);
    sr_config_free(cfg);
    CHECK_RC(sr_channel_start(ch), SR_OK);
    if (s) {
        s->self = ch;
    }
    return ch;
}

static sr_addr addr_of(sr_channel *ch) {
    sr_addr a;
    memset(&a, 0, sizeof a);
    CHECK_RC(sr_channel_local_addr(ch, &a), SR_OK);
    return a;
}

static int contains(const char *hay, const char *needle) {
    return strstr(hay, needle) != NULL;
}

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
    test_send_borrowed();
    test_tickets();
    test_messages_and_reentry();
    test_stats();
    test_concurrent_senders();
    return report("test_api");
}
