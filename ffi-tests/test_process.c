/* Process-level behaviour of the library (docs/C-API.md, "Process
 * behaviour"): its threads block every asynchronous signal, it installs no
 * signal handler, a write to a peer that closed raises no SIGPIPE (with the
 * default disposition, which would kill this process), a membership key
 * that cannot take effect is refused naming the fix. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define NSIG_CHECKED 64

/* A hex field ("SigBlk:", "SigPnd:", "ShdPnd:") of a status file. */
static int status_field(const char *path, const char *field, unsigned long long *out) {
    char line[256];
    int found = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, strlen(field)) == 0) {
            *out = strtoull(line + strlen(field), NULL, 16);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static unsigned long long bit(int sig) { return 1ULL << (sig - 1); }

/* Calls f(tid, comm, ctx) for every thread of this process. */
static void each_thread(void (*f)(const char *tid, const char *comm, void *), void *ctx) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    CHECK(d != NULL);
    if (!d) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char path[300], comm[64] = {0};
        FILE *c;
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        c = fopen(path, "r");
        if (!c) {
            continue; /* the thread just ended */
        }
        if (fgets(comm, sizeof comm, c)) {
            comm[strcspn(comm, "\n")] = 0;
        }
        fclose(c);
        f(e->d_name, comm, ctx);
    }
    closedir(d);
}

typedef struct {
    int library_threads;
    int unblocked;
    int fault_blocked;
    int sigpipe_pending;
} thread_scan;

static void scan_thread(const char *tid, const char *comm, void *ctx) {
    thread_scan *s = ctx;
    char path[300];
    unsigned long long blk = 0, pnd = 0;
    snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
    if (status_field(path, "SigPnd:", &pnd) && (pnd & bit(SIGPIPE))) {
        s->sigpipe_pending++;
    }
    if (strncmp(comm, "sr-", 3) != 0 || !status_field(path, "SigBlk:", &blk)) {
        return;
    }
    s->library_threads++;
    {
        const int want[] = {SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGQUIT};
        size_t i;
        for (i = 0; i < sizeof want / sizeof want[0]; i++) {
            if (!(blk & bit(want[i]))) {
                fprintf(stderr, "thread %s (%s): signal %d not blocked (SigBlk %llx)\n", tid, comm,
                        want[i], blk);
                s->unblocked++;
            }
        }
    }
    if (blk & (bit(SIGSEGV) | bit(SIGBUS) | bit(SIGFPE) | bit(SIGILL))) {
        s->fault_blocked++;
    }
}

static sr_channel *channel(int mode) {
    sr_config *cfg = NULL;
    sr_channel *ch = NULL;
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    CHECK_RC(sr_config_set_replication_mode(cfg, mode), SR_OK);
    CHECK_RC(sr_config_set(cfg, "tcpThreadCount", "1"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "ackTimeout", "2000"), SR_OK);
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &ch), SR_OK);
    sr_config_free(cfg);
    CHECK_RC(sr_channel_start(ch), SR_OK);
    return ch;
}

/* Marks the open descriptors in `open_fds` (index < 1024). */
static void scan_fds(char *open_fds) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    memset(open_fds, 0, 1024);
    if (!d) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd >= 0 && fd < 1024 && fd != dirfd(d)) {
            open_fds[fd] = 1;
        }
    }
    closedir(d);
}

static void test_library_threads_block_signals(void) {
    sigset_t before, after;
    thread_scan s;
    sr_channel *a, *b;
    int sig, i;
    char fds_before[1024], fds_after[1024];
    int fd, new_fds = 0;
    memset(&s, 0, sizeof s);
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    scan_fds(fds_before);
    a = channel(SR_MODE_FASTASYNCQUEUE);
    b = channel(SR_MODE_POOLED);
    /* Every descriptor the library opened is close-on-exec, so a host that
     * forks and execs does not leak sockets, rings or eventfds. */
    scan_fds(fds_after);
    for (fd = 3; fd < 1024; fd++) {
        if (fds_after[fd] && !fds_before[fd]) {
            int flags = fcntl(fd, F_GETFD);
            new_fds++;
            if (flags < 0 || !(flags & FD_CLOEXEC)) {
                fprintf(stderr, "fd %d opened by the library is not close-on-exec\n", fd);
                CHECK(0);
            }
        }
    }
    CHECK(new_fds >= 2);
    each_thread(scan_thread, &s);
    /* A thread inside pthread_create has every signal blocked for a moment
     * (glibc does that around clone): look again before calling a blocked
     * fault signal a failure. */
    for (i = 0; i < 20 && s.fault_blocked > 0; i++) {
        sleep_ms(50);
        memset(&s, 0, sizeof s);
        each_thread(scan_thread, &s);
    }
    /* receivers, workers and the fastasync I/O thread at least */
    CHECK(s.library_threads >= 4);
    CHECK(s.unblocked == 0);
    CHECK(s.fault_blocked == 0);
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    for (sig = 1; sig < 32; sig++) {
        CHECK(sigismember(&before, sig) == sigismember(&after, sig));
    }
    sr_channel_free(a);
    sr_channel_free(b);
}

/* A peer that answers the native preface and then closes: the sender's
 * connection is half-closed, its next writes meet a reset. */
typedef struct {
    int lfd;
    int conns;
} fake_peer;

static void *fake_peer_run(void *arg) {
    fake_peer *p = arg;
    unsigned char reply[32], in[4096];
    memset(reply, 0, sizeof reply);
    memcpy(reply, "SRPL", 4);
    reply[4] = 1; /* version */
    reply[5] = 1; /* reply flag */
    memset(reply + 8, 0x42, 16);
    for (;;) { /* until the listener is shut down */
        int c = accept(p->lfd, NULL, NULL);
        if (c < 0) {
            break;
        }
        p->conns++;
        if (read(c, in, sizeof in) > 0) {
            if (write(c, reply, sizeof reply) != (ssize_t)sizeof reply) {
                fprintf(stderr, "fake peer: short write\n");
            }
        }
        close(c);
    }
    return NULL;
}

static void test_no_sigpipe_from_a_closed_peer(void) {
    fake_peer p;
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    pthread_t th;
    sr_channel *tx;
    sr_addr to;
    sr_send_options opts;
    sigset_t pipe_set;
    char text[64];
    int i, failed = 0;
    thread_scan s;
    unsigned long long shd = 0;
    sr_stats st;

    /* The default disposition, unblocked here: a SIGPIPE would end this
     * process. */
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_UNBLOCK, &pipe_set, NULL);

    memset(&p, 0, sizeof p);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p.lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(p.lfd >= 0);
    CHECK(bind(p.lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(p.lfd, 8) == 0);
    CHECK(getsockname(p.lfd, (struct sockaddr *)&sa, &len) == 0);
    CHECK(pthread_create(&th, NULL, fake_peer_run, &p) == 0);

    /* Pooled: this thread writes. Without acks each send writes into the
     * half-closed connection until the reset is seen. */
    tx = channel(SR_MODE_POOLED);
    snprintf(text, sizeof text, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    CHECK_RC(sr_addr_parse(text, &to), SR_OK);
    CHECK_RC(sr_send_options_default(tx, &opts), SR_OK);
    opts.ack = SR_ACK_NONE;
    for (i = 0; i < 10; i++) {
        sr_result rc = sr_channel_send(tx, &to, 1, (const uint8_t *)"payload", 7, &opts, NULL);
        if (rc != SR_OK) {
            failed++;
        }
        sleep_ms(10);
    }
    /* The process is still here, every send got through, and writes met
     * the broken connections (EPIPE: each send after the first resent on
     * a new connection). */
    CHECK(failed == 0);
    CHECK_RC(sr_channel_stats(tx, &st, sizeof st), SR_OK);
    CHECK(st.resends >= 5);
    CHECK(p.conns >= 6);
    memset(&s, 0, sizeof s);
    each_thread(scan_thread, &s);
    CHECK(s.sigpipe_pending == 0);
    CHECK(status_field("/proc/self/status", "ShdPnd:", &shd));
    CHECK((shd & bit(SIGPIPE)) == 0);
    sr_channel_free(tx);
    shutdown(p.lfd, SHUT_RDWR);
    close(p.lfd);
    pthread_join(th, NULL);
}

static void test_mcast_keys_without_multicast_are_refused(void) {
    sr_config *cfg = NULL;
    sr_channel *ch = NULL;
    const char *msg;
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastAddr", "228.0.0.4"), SR_OK);
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &ch), SR_INVALID_CONFIG_VALUE);
    msg = last_error();
    if (!strstr(msg, "mcastAddr") || !strstr(msg, "membershipType=multicast")) {
        fprintf(stderr, "unexpected message: %s\n", msg);
        CHECK(0);
    }
    CHECK(ch == NULL);
    CHECK_RC(sr_config_set(cfg, "membershipType", "multicast"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastBindAddress", "127.0.0.1"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastPort", "45999"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastAddr", "239.254.77.77"), SR_OK);
    CHECK_RC(sr_channel_new(cfg, NULL, NULL, NULL, &ch), SR_OK);
    sr_channel_free(ch);
    sr_config_free(cfg);
}

int main(void) {
    struct sigaction before[NSIG_CHECKED + 1], after;
    int sig;
    for (sig = 1; sig <= NSIG_CHECKED; sig++) {
        sigaction(sig, NULL, &before[sig]);
    }
    test_library_threads_block_signals();
    test_mcast_keys_without_multicast_are_refused();
    /* No handler installed by the library (checked before this test sets
     * SIGPIPE's disposition itself). */
    for (sig = 1; sig <= NSIG_CHECKED; sig++) {
        if (sigaction(sig, NULL, &after) == 0) {
            if (after.sa_handler != before[sig].sa_handler) {
                fprintf(stderr, "signal %d: disposition changed by the library\n", sig);
                CHECK(0);
            }
        }
    }
    test_no_sigpipe_from_a_closed_peer();
    return report("test_process");
}
