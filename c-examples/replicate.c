/* replicate.c: two channels in one process, a receiver and a sender,
 * replicating a session attribute in each replication mode and showing
 * each ack outcome, including a receiver that refuses a message.
 *
 * Build:  cc replicate.c $(pkg-config --cflags --libs sessionrepl) -lpthread
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sessionrepl.h>

/* What the receiver saw; its callback runs on a library thread. */
struct receiver {
    pthread_mutex_t mu;
    int messages;
};

/* The message callback: the payload is valid only during the call. */
static int on_message(void *userdata, const sr_message *msg) {
    struct receiver *r = userdata;
    const char *text = (const char *)sr_message_data(msg);
    int len = (int)sr_message_len(msg);
    pthread_mutex_lock(&r->mu);
    r->messages++;
    pthread_mutex_unlock(&r->mu);
    printf("  receiver: got message %llu: %.*s\n", (unsigned long long)sr_message_id(msg),
           len > 60 ? 60 : len, text);
    /* Refuse what we cannot apply: the sender sees SR_REMOTE_FAILURE if it
     * asked for SR_ACK_DELIVERY. */
    return (len >= 7 && memcmp(text, "corrupt", 7) == 0) ? 1 : 0;
}

/* The outcome callback of the asynchronous modes. */
static void on_outcome(void *userdata, uint64_t id, const sr_addr *dest, sr_result result) {
    char where[64], detail[128];
    size_t n;
    (void)userdata;
    sr_addr_format(dest, where, sizeof where, &n);
    detail[0] = 0;
    if (result != SR_OK) {
        sr_last_error_message(detail, sizeof detail, &n);
    }
    printf("  sender: message %llu to %s: %s %s\n", (unsigned long long)id, where,
           sr_result_message(result), detail);
}

/* Prints the failure and its detail; returns non-zero on failure. */
static int failed(const char *what, sr_result r) {
    char detail[256];
    size_t n;
    if (r == SR_OK) {
        return 0;
    }
    detail[0] = 0;
    sr_last_error_message(detail, sizeof detail, &n);
    fprintf(stderr, "%s: %s (%s)\n", what, sr_result_message(r), detail);
    return 1;
}

static sr_channel *make_channel(const char *mode, struct receiver *r) {
    sr_config *cfg = NULL;
    sr_channel *ch = NULL;
    if (failed("sr_config_new", sr_config_new(&cfg))) {
        return NULL;
    }
    /* Tomcat's attribute names work as keys. */
    if (failed("replicationMode", sr_config_set(cfg, "replicationMode", mode)) ||
        failed("ackTimeout", sr_config_set(cfg, "ackTimeout", "5000")) ||
        failed("listen", sr_config_set_listen(cfg, "127.0.0.1", 0)) ||
        failed("sr_channel_new", sr_channel_new(cfg, r ? on_message : NULL, on_outcome, r, &ch))) {
        sr_config_free(cfg);
        return NULL;
    }
    sr_config_free(cfg); /* the channel keeps its own copy */
    if (failed("sr_channel_start", sr_channel_start(ch))) {
        sr_channel_free(ch);
        return NULL;
    }
    return ch;
}

int main(void) {
    static const char *modes[] = {"synchronous", "pooled", "asynchronous", "fastasyncqueue"};
    static const char *ack_names[] = {"no ack", "ack on receipt", "ack after delivery"};
    struct receiver r;
    sr_channel *receiver;
    sr_addr to;
    char where[64];
    size_t n;
    int m, ack, errors = 0, expected_messages = 0;

    if (strcmp(sr_version(), SESSIONREPL_VERSION) != 0) {
        fprintf(stderr, "header %s, library %s\n", SESSIONREPL_VERSION, sr_version());
        return 1;
    }
    pthread_mutex_init(&r.mu, NULL);
    r.messages = 0;
    receiver = make_channel("pooled", &r);
    if (!receiver || failed("local_addr", sr_channel_local_addr(receiver, &to))) {
        return 1;
    }
    sr_addr_format(&to, where, sizeof where, &n);
    printf("receiver listening on %s (libsessionrepl %s)\n", where, sr_version());

    for (m = 0; m < 4; m++) {
        sr_channel *sender = make_channel(modes[m], NULL);
        int async = m >= 2;
        if (!sender) {
            return 1;
        }
        printf("mode %s\n", modes[m]);
        for (ack = SR_ACK_NONE; ack <= SR_ACK_DELIVERY; ack++) {
            char payload[128];
            sr_send_options opts;
            uint64_t id = 0;
            sr_result res;
            sr_send_options_default(sender, &opts);
            opts.ack = ack;
            snprintf(payload, sizeof payload, "session ABC123 attribute cart=3 items (%s, %s)",
                     modes[m], ack_names[ack]);
            res = sr_channel_send(sender, &to, 1, (const uint8_t *)payload, strlen(payload),
                                  &opts, &id);
            /* Synchronous modes: res is the outcome. Asynchronous: res says
             * "queued", the outcome arrives in on_outcome. */
            printf("  sender: send %llu (%s) returned %s\n", (unsigned long long)id,
                   ack_names[ack], sr_result_message(res));
            errors += res != SR_OK;
            expected_messages++;
        }
        /* A message the receiver refuses. */
        {
            const char *bad = "corrupt delta";
            sr_send_options opts;
            sr_result res;
            sr_send_options_default(sender, &opts);
            opts.ack = SR_ACK_DELIVERY;
            res = sr_channel_send(sender, &to, 1, (const uint8_t *)bad, strlen(bad), &opts, NULL);
            printf("  sender: refused message returned %s\n", sr_result_message(res));
            errors += async ? res != SR_OK : res != SR_REMOTE_FAILURE;
            expected_messages++;
        }
        errors += failed("flush", sr_channel_flush(sender, 10000));
        sr_channel_free(sender); /* stops first */
    }

    {
        sr_stats st;
        if (!failed("stats", sr_channel_stats(receiver, &st, sizeof st))) {
            printf("receiver: %llu messages, %llu refused by the listener\n",
                   (unsigned long long)st.msgs_received, (unsigned long long)st.listener_errors);
            errors += st.msgs_received != (uint64_t)expected_messages;
            errors += st.listener_errors != 4;
        }
    }
    sr_channel_stop(receiver);
    sr_channel_free(receiver);
    pthread_mutex_destroy(&r.mu);
    printf("%s\n", errors ? "FAILED" : "ok");
    return errors ? 1 : 0;
}
