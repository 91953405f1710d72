/* member_watch.c: watches a cluster's membership. A watcher channel
 * prints every member that comes and goes; two more channels join the same
 * multicast group (on 127.0.0.1, TTL 1), receive a message sent to every
 * member, and leave again (a clean stop announces the shutdown).
 * Terminates by itself.
 *
 * Build:  cc member_watch.c $(pkg-config --cflags --libs sessionrepl) -lpthread
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sessionrepl.h>

/* What the watcher saw; the member callback runs on a library thread. */
struct watch {
    pthread_mutex_t mu;
    int added, removed, received;
};

/* The member callback: the event is valid only during the call. */
static void on_member(void *userdata, const sr_member_event *ev) {
    struct watch *w = userdata;
    char line[256];
    size_t n;
    if (sr_member_event_format(ev, line, sizeof line, &n) == SR_OK) {
        printf("  watcher: %s\n", line);
        fflush(stdout);
    }
    pthread_mutex_lock(&w->mu);
    if (ev->kind == SR_MEMBER_ADDED) {
        w->added++;
    } else if (ev->kind == SR_MEMBER_REMOVED) {
        w->removed++;
    }
    pthread_mutex_unlock(&w->mu);
}

static int on_message(void *userdata, const sr_message *msg) {
    struct watch *w = userdata;
    printf("  member: got \"%.*s\"\n", (int)sr_message_len(msg),
           (const char *)sr_message_data(msg));
    pthread_mutex_lock(&w->mu);
    w->received++;
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to 20 s until *field reaches want. */
static int wait_count(struct watch *w, const int *field, int want) {
    int i, v = 0;
    for (i = 0; i < 2000; i++) {
        pthread_mutex_lock(&w->mu);
        v = *field;
        pthread_mutex_unlock(&w->mu);
        if (v >= want) {
            return 1;
        }
        sleep_ms(10);
    }
    return 0;
}

static void check(const char *what, sr_result r) {
    char detail[256];
    size_t n;
    if (r == SR_OK) {
        return;
    }
    detail[0] = 0;
    sr_last_error_message(detail, sizeof detail, &n);
    fprintf(stderr, "member_watch: %s: %s (%s)\n", what, sr_result_message(r), detail);
    exit(1);
}

/* A channel in this process's private group: multicast on 127.0.0.1 only. */
static sr_channel *channel(const char *name, struct watch *w, int watcher) {
    sr_config *cfg = NULL;
    sr_channel *ch = NULL;
    char group[32], port[16], domain[64];
    unsigned pid = (unsigned)getpid();
    snprintf(group, sizeof group, "239.253.%u.%u", pid % 250, pid / 250 % 250 + 1);
    snprintf(port, sizeof port, "%u", 22000 + pid % 20000);
    snprintf(domain, sizeof domain, "member-watch-%u", pid);
    check("config", sr_config_new(&cfg));
    check("listen", sr_config_set_listen(cfg, "127.0.0.1", 0));
    check("membershipType", sr_config_set(cfg, "membershipType", "multicast"));
    check("mcastAddr", sr_config_set(cfg, "mcastAddr", group));
    check("mcastPort", sr_config_set(cfg, "mcastPort", port));
    check("mcastBindAddress", sr_config_set(cfg, "mcastBindAddress", "127.0.0.1"));
    check("mcastTTL", sr_config_set(cfg, "mcastTTL", "1"));
    check("mcastFrequency", sr_config_set(cfg, "mcastFrequency", "100"));
    check("mcastDropTime", sr_config_set(cfg, "mcastDropTime", "1000"));
    check("domain", sr_config_set(cfg, "domain", domain));
    check(name, sr_channel_new(cfg, watcher ? NULL : on_message, NULL, w, &ch));
    sr_config_free(cfg);
    if (watcher) {
        check("member callback", sr_channel_set_member_callback(ch, on_member, w));
    }
    check(name, sr_channel_start(ch));
    return ch;
}

int main(void) {
    struct watch w;
    sr_channel *watcher, *a, *b;
    sr_member_info members[8];
    size_t n = 0, i;
    const char hello[] = "hello, members";

    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    printf("member_watch: watcher starts, then members a and b join\n");
    watcher = channel("watcher", &w, 1);
    a = channel("a", &w, 0);
    b = channel("b", &w, 0);
    if (!wait_count(&w, &w.added, 2)) {
        fprintf(stderr, "member_watch: the members did not show up\n");
        return 1;
    }

    check("members", sr_channel_members(watcher, members, 8, &n));
    printf("member_watch: %zu members now:\n", n);
    for (i = 0; i < n; i++) {
        char addr[64];
        size_t len;
        sr_addr_format(&members[i].addr, addr, sizeof addr, &len);
        printf("  %s domain=%s sessionrepl=%d\n", addr, members[i].domain,
               members[i].is_sessionrepl);
    }
    if (n != 2) {
        fprintf(stderr, "member_watch: expected 2 members, got %zu\n", n);
        return 1;
    }
    check("send to members", sr_channel_send_to_members(watcher, (const uint8_t *)hello,
                                                        strlen(hello), NULL, NULL));
    if (!wait_count(&w, &w.received, 2)) {
        fprintf(stderr, "member_watch: the members did not receive the message\n");
        return 1;
    }

    printf("member_watch: a stops cleanly (it announces its shutdown)\n");
    sr_channel_free(a);
    if (!wait_count(&w, &w.removed, 1)) {
        fprintf(stderr, "member_watch: a's departure was not seen\n");
        return 1;
    }
    printf("member_watch: b stops too\n");
    sr_channel_free(b);
    if (!wait_count(&w, &w.removed, 2)) {
        fprintf(stderr, "member_watch: b's departure was not seen\n");
        return 1;
    }
    check("members", sr_channel_members(watcher, NULL, 0, &n));
    printf("member_watch: %zu members left; done\n", n);
    sr_channel_free(watcher);
    pthread_mutex_destroy(&w.mu);
    return n == 0 ? 0 : 1;
}
