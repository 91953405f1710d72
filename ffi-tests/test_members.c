/* Exercises the membership exports: NULL arguments, wrong lengths and
 * sizes, the member callback (added, removed with its reason, reentry),
 * the member list and sends to members, on 127.0.0.1 (multicast on
 * 127.0.0.1, TTL 1, a group of this process only). */
#define _POSIX_C_SOURCE 200809L
#include "cluster_fixture.h"

#define cluster_config(group) cluster_config_in(253, "members", (group))

/* ---- membership ---- */

typedef struct {
    pthread_mutex_t mu;
    int added, removed, suspect;
    sr_remove_reason last_reason;
    uint8_t last_id[16];
    char last_line[256];
    sr_result reenter_stop;
    sr_channel *self;
    int received;
} members_state;

static void on_member(void *userdata, const sr_member_event *ev) {
    members_state *s = userdata;
    char line[256];
    size_t n = 0;
    line[0] = 0;
    sr_member_event_format(ev, line, sizeof line, &n);
    pthread_mutex_lock(&s->mu);
    memcpy(s->last_id, ev->member.id, 16);
    snprintf(s->last_line, sizeof s->last_line, "%s", line);
    if (ev->kind == SR_MEMBER_ADDED) {
        s->added++;
        /* Stopping one's own channel from its callback is refused. */
        s->reenter_stop = sr_channel_stop(s->self);
    } else if (ev->kind == SR_MEMBER_REMOVED) {
        s->removed++;
        s->last_reason = ev->reason;
    } else {
        s->suspect++;
    }
    pthread_mutex_unlock(&s->mu);
}

static int on_member_message(void *userdata, const sr_message *msg) {
    members_state *s = userdata;
    (void)msg;
    pthread_mutex_lock(&s->mu);
    s->received++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int member_count(members_state *s, const int *field) {
    int v;
    pthread_mutex_lock(&s->mu);
    v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static int wait_member_count(members_state *s, const int *field, int want) {
    int i;
    for (i = 0; i < WAIT_MS / 10; i++) {
        if (member_count(s, field) >= want) {
            return 1;
        }
        sleep_ms(10);
    }
    return 0;
}

static void test_member_api_arguments(void) {
    sr_config *cfg = cluster_config(next_group++);
    sr_channel *ch = NULL;
    sr_member_info info[2];
    size_t n = 99;
    uint64_t id = 7;
    char buf[256];
    sr_member_event ev;

    CHECK_RC(sr_channel_set_member_callback(NULL, on_member, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_members(NULL, info, 2, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_send_to_members(NULL, (const uint8_t *)"x", 1, NULL, &id),
             SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &ch), SR_OK);
    /* Not running: no member list, no sends. */
    CHECK_RC(sr_channel_members(ch, info, 2, &n), SR_NOT_RUNNING);
    CHECK_RC(sr_channel_members(ch, info, 2, NULL), SR_NULL_PARAMETER);
    CHECK_RC(sr_channel_members(ch, NULL, 2, &n), SR_NULL_PARAMETER);
    CHECK(n == 99);
    CHECK_RC(sr_channel_send_to_members(ch, (const uint8_t *)"x", 1, NULL, &id), SR_NOT_RUNNING);
    CHECK_RC(sr_channel_set_member_callback(ch, on_member, NULL), SR_OK);
    CHECK_RC(sr_channel_set_member_callback(ch, NULL, NULL), SR_OK);
    CHECK_RC(sr_channel_start(ch), SR_OK);
    CHECK_RC(sr_channel_set_member_callback(ch, on_member, NULL), SR_ALREADY_RUNNING);
    /* Alone in its group: no members. */
    CHECK_RC(sr_channel_members(ch, NULL, 0, &n), SR_OK);
    CHECK(n == 0);
    CHECK_RC(sr_channel_send_to_members(ch, (const uint8_t *)"x", 1, NULL, &id), SR_NO_MEMBERS);
    CHECK(id == 7);
    CHECK_RC(sr_channel_send_to_members(ch, NULL, 1, NULL, &id), SR_NULL_PARAMETER);

    /* Formatting a hand-made event; bad fields are refused. */
    memset(&ev, 0, sizeof ev);
    ev.kind = SR_MEMBER_REMOVED;
    ev.reason = SR_REMOVE_TIMEOUT;
    CHECK_RC(sr_addr_parse("127.0.0.1:4000", &ev.member.addr), SR_OK);
    ev.member.id[0] = 0xab;
    CHECK_RC(sr_member_event_format(&ev, buf, sizeof buf, &n), SR_OK);
    CHECK(strcmp(buf, "member-removed id=ab000000000000000000000000000000 addr=127.0.0.1:4000 "
                      "reason=timeout") == 0);
    CHECK(n == strlen(buf));
    CHECK_RC(sr_member_event_format(&ev, buf, 10, &n), SR_INSUFFICIENT_SIZE);
    CHECK(n == strlen("member-removed id=ab000000000000000000000000000000 addr=127.0.0.1:4000 "
                      "reason=timeout"));
    CHECK_RC(sr_member_event_format(NULL, buf, sizeof buf, &n), SR_NULL_PARAMETER);
    CHECK_RC(sr_member_event_format(&ev, buf, sizeof buf, NULL), SR_NULL_PARAMETER);
    ev.reason = SR_REMOVE_NONE;
    CHECK_RC(sr_member_event_format(&ev, buf, sizeof buf, &n), SR_INVALID_ARGUMENT);
    ev.kind = SR_MEMBER_ADDED;
    ev.member.domain = (const uint8_t *)"shop";
    ev.member.domain_len = 4;
    ev.member.is_sessionrepl = 1;
    CHECK_RC(sr_member_event_format(&ev, buf, sizeof buf, &n), SR_OK);
    CHECK(strstr(buf, "member-added") == buf && strstr(buf, "domain=shop sessionrepl=true"));
    ev.member.domain = NULL;
    CHECK_RC(sr_member_event_format(&ev, buf, sizeof buf, &n), SR_NULL_PARAMETER);
    ev.member.domain_len = 0;
    ev.member.addr.family = 5;
    CHECK_RC(sr_member_event_format(&ev, buf, sizeof buf, &n), SR_INVALID_ARGUMENT);
    sr_channel_free(ch);
    sr_config_free(cfg);
}

/* A watcher sees two members join, lists them, sends to them, and sees
 * them leave with the reason "shutdown". */
static void test_member_events(void) {
    sr_config *cfg = cluster_config(next_group++);
    members_state s, rx;
    sr_channel *watcher = NULL, *a = NULL, *b = NULL;
    sr_member_info info[4];
    uint8_t a_id[16];
    size_t n = 0;
    uint64_t msg_id = 0;
    int i, found_a = 0;

    memset(&s, 0, sizeof s);
    memset(&rx, 0, sizeof rx);
    pthread_mutex_init(&s.mu, NULL);
    pthread_mutex_init(&rx.mu, NULL);
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &watcher), SR_OK);
    s.self = watcher;
    CHECK_RC(sr_channel_set_member_callback(watcher, on_member, &s), SR_OK);
    CHECK_RC(sr_channel_start(watcher), SR_OK);
    CHECK_RC(sr_channel_new(cfg, on_member_message, NULL, &rx, &a), SR_OK);
    CHECK_RC(sr_channel_new(cfg, on_member_message, NULL, &rx, &b), SR_OK);
    CHECK_RC(sr_channel_start(a), SR_OK);
    CHECK_RC(sr_channel_start(b), SR_OK);
    CHECK_RC(sr_channel_member_id(a, a_id), SR_OK);
    CHECK(wait_member_count(&s, &s.added, 2));
    pthread_mutex_lock(&s.mu);
    CHECK(s.reenter_stop == SR_IN_CALLBACK);
    pthread_mutex_unlock(&s.mu);

    /* Too small a buffer: the count, and the buffer untouched. */
    memset(info, 0x5a, sizeof info);
    CHECK_RC(sr_channel_members(watcher, info, 1, &n), SR_INSUFFICIENT_SIZE);
    CHECK(n == 2);
    CHECK(info[0].id[0] == 0x5a && info[0].domain_len == (size_t)0x5a5a5a5a5a5a5a5aULL);
    CHECK_RC(sr_channel_members(watcher, info, 4, &n), SR_OK);
    CHECK(n == 2);
    for (i = 0; i < (int)n && i < 4; i++) {
        CHECK(info[i].is_sessionrepl == 1);
        CHECK(info[i].source == SR_SOURCE_MULTICAST);
        CHECK(info[i].addr.family == SR_ADDR_IPV4 && info[i].addr.ip[0] == 127);
        CHECK(strncmp(info[i].domain, "ffi-members-", 12) == 0);
        CHECK(info[i].domain_len == strlen(info[i].domain));
        if (memcmp(info[i].id, a_id, 16) == 0) {
            found_a = 1;
        }
    }
    CHECK(found_a);

    CHECK_RC(sr_channel_send_to_members(watcher, (const uint8_t *)"hi", 2, NULL, &msg_id), SR_OK);
    CHECK(msg_id != 0);
    CHECK(wait_member_count(&rx, &rx.received, 2));

    sr_channel_free(a);
    CHECK(wait_member_count(&s, &s.removed, 1));
    pthread_mutex_lock(&s.mu);
    CHECK(s.last_reason == SR_REMOVE_SHUTDOWN);
    CHECK(memcmp(s.last_id, a_id, 16) == 0);
    CHECK(strstr(s.last_line, "member-removed") == s.last_line);
    CHECK(strstr(s.last_line, "reason=shutdown") != NULL);
    pthread_mutex_unlock(&s.mu);
    CHECK_RC(sr_channel_members(watcher, info, 4, &n), SR_OK);
    CHECK(n == 1);
    sr_channel_free(b);
    CHECK(wait_member_count(&s, &s.removed, 2));
    /* After the stop no callback runs: the counts stay. */
    CHECK_RC(sr_channel_stop(watcher), SR_OK);
    i = member_count(&s, &s.added) + member_count(&s, &s.removed);
    sleep_ms(300);
    CHECK(member_count(&s, &s.added) + member_count(&s, &s.removed) == i);
    sr_channel_free(watcher);
    sr_config_free(cfg);
    pthread_mutex_destroy(&s.mu);
    pthread_mutex_destroy(&rx.mu);
}

int main(void) {
    test_member_api_arguments();
    test_member_events();
    return report("test_members");
}
