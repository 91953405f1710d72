/* Shared by the channel tests (test_api.c, test_send.c): a `state` that
 * records what a channel's listener and outcome callbacks saw, and helpers
 * to start a loopback channel in a given mode and wait for counts. */
#ifndef SR_CHANNEL_FIXTURE_H
#define SR_CHANNEL_FIXTURE_H

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

static inline void state_init(state *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static inline void state_destroy(state *s) {
    if (s->retained) {
        sr_message_free(s->retained);
    }
    pthread_mutex_destroy(&s->mu);
}

static inline int on_message(void *userdata, const sr_message *msg) {
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

static inline void on_outcome(void *userdata, uint64_t id, const sr_addr *dest, sr_result result) {
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

static inline int get_int(state *s, const int *field) {
    int v;
    pthread_mutex_lock(&s->mu);
    v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* Waits (generously) until *field reaches want; returns whether it did. */
static inline int wait_for(state *s, const int *field, int want) {
    int i;
    for (i = 0; i < 20000; i++) {
        if (get_int(s, field) >= want) {
            return 1;
        }
        sleep_ms(1);
    }
    return 0;
}

static inline sr_config *test_config(int mode) {
    sr_config *cfg = NULL;
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    CHECK_RC(sr_config_set_replication_mode(cfg, mode), SR_OK);
    CHECK_RC(sr_config_set_ack_timeout_ms(cfg, 5000), SR_OK);
    CHECK_RC(sr_config_set(cfg, "connectTimeout", "2000"), SR_OK);
    return cfg;
}

static inline sr_channel *start_channel(int mode, state *s) {
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

static inline sr_addr addr_of(sr_channel *ch) {
    sr_addr a;
    memset(&a, 0, sizeof a);
    CHECK_RC(sr_channel_local_addr(ch, &a), SR_OK);
    return a;
}

static inline int contains(const char *hay, const char *needle) {
    return strstr(hay, needle) != NULL;
}

#endif
