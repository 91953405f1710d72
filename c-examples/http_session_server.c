/* http_session_server.c: a small HTTP/1.1 server on plain sockets whose
 * sessions live in a replicated sessionrepl session store.
 *
 * One thread runs an epoll loop over the listening socket, the client
 * connections and the store's completion fd: no request ever blocks it.
 * A cookie, SRSESSION=<id>, carries the session id. Every request to /
 * reads the session (sr_session_store_get_async: fetched from the cluster
 * when this node holds no copy, so a session survives the loss of the
 * node that served it), increments its "counter" attribute and commits it
 * (sr_session_store_commit_async); the answer goes out once the session's
 * holders acknowledged the change:
 *   counter=<n> node=<store address> session=<id> copies=<n>
 * When this node has drained and the read answers SR_MOVED, the answer is
 * a 307 redirect to the URL the new holder announced as its memberPayload
 * (sr_session_store_member_payload). GET /members answers the number of
 * store members this node sees; GET /drain hands this node's sessions
 * over and keeps serving (redirecting) until it stops.
 *
 * Usage: http_session_server <http-port> [key=value ...]
 *   http-port 0 takes a free port (printed on the "ready" line);
 *   the key=value pairs configure the store (sr_config_set): membership,
 *   multicast group, session mode, ...; "memberPayload=auto" announces
 *   this server's own http://127.0.0.1:<port> (needs multicast
 *   membership); "lifetime=<s>" (not a store key) stops the server by
 *   itself after that many seconds.
 * SIGTERM or SIGINT: drain the sessions to the other members, then exit.
 *
 * Build:  cc http_session_server.c $(pkg-config --cflags --libs sessionrepl)
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sessionrepl.h>

#define COOKIE "SRSESSION="
#define ID_LEN 16
#define WAIT_MS 10000
#define MAX_CONNS 256
#define BATCH 64

/* One client connection and the request it is waiting on. */
typedef struct conn {
    int fd;
    char req[8192];
    size_t got;
    char id[128];
    size_t id_len;
    long counter;
    int busy; /* an asynchronous call for it is in flight */
} conn;

static conn *conns[MAX_CONNS];

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void die(const char *what, sr_result r) {
    char detail[256];
    size_t n;
    detail[0] = 0;
    sr_last_error_message(detail, sizeof detail, &n);
    fprintf(stderr, "http_session_server: %s: %s (%s)\n", what, sr_result_message(r), detail);
    exit(1);
}

/* Draws a random session id (hex) that this node is the primary of, so a
 * new session starts out local to the node serving it. */
static void new_session_id(sr_session_store *store, char id[ID_LEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    int tries, i;
    for (tries = 0; tries < 1000; tries++) {
        unsigned char raw[ID_LEN / 2];
        FILE *f = fopen("/dev/urandom", "rb");
        if (f == NULL || fread(raw, 1, sizeof raw, f) != sizeof raw) {
            die("no /dev/urandom", SR_IO);
        }
        fclose(f);
        for (i = 0; i < ID_LEN / 2; i++) {
            id[2 * i] = hex[raw[i] >> 4];
            id[2 * i + 1] = hex[raw[i] & 15];
        }
        id[ID_LEN] = 0;
        if (sr_session_store_is_primary_for(store, (const uint8_t *)id, ID_LEN)) {
            return;
        }
    }
}

/* Finds SRSESSION=<id> in the request's Cookie header; returns its length
 * (0 if none) and copies it to id. */
static size_t cookie_session(const char *req, char *id, size_t cap) {
    const char *line = req;
    while ((line = strstr(line, "\r\n")) != NULL) {
        line += 2;
        if (strncasecmp(line, "Cookie:", 7) == 0) {
            const char *end = strstr(line, "\r\n");
            const char *c = strstr(line, COOKIE);
            size_t n = 0;
            if (c == NULL || (end != NULL && c > end)) {
                continue;
            }
            c += strlen(COOKIE);
            while (c[n] && c[n] != ';' && c[n] != '\r' && c[n] != ' ' && n + 1 < cap) {
                id[n] = c[n];
                n++;
            }
            id[n] = 0;
            return n;
        }
    }
    return 0;
}

static void respond(int fd, int status, const char *reason, const char *cookie_id,
                    const char *body) {
    char head[512];
    int n;
    if (cookie_id != NULL) {
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     "Set-Cookie: " COOKIE "%s; Path=/; HttpOnly\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, reason, cookie_id, strlen(body));
    } else {
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, reason, strlen(body));
    }
    if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0) {
        perror("write");
    }
}

/* Reads the session's counter attribute (decimal text); 0 if it has none. */
static long read_counter(const sr_session *s) {
    const uint8_t *v;
    size_t len;
    char text[32];
    if (sr_session_get(s, "counter", &v, &len) != SR_OK || len == 0 || len >= sizeof text) {
        return 0;
    }
    memcpy(text, v, len);
    text[len] = 0;
    return strtol(text, NULL, 10);
}

static void conn_close(conn *c) {
    int i;
    for (i = 0; i < MAX_CONNS; i++) {
        if (conns[i] == c) {
            conns[i] = NULL;
        }
    }
    close(c->fd); /* also leaves the epoll set */
    free(c);
}

/* Answers, then closes the connection (Connection: close). */
static void finish(conn *c, int status, const char *reason, const char *cookie_id,
                   const char *body) {
    int fl = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK); /* small answers: write them whole */
    respond(c->fd, status, reason, cookie_id, body);
    conn_close(c);
}

static void fail_with(conn *c, const char *what, sr_result r) {
    char body[512], detail[256];
    size_t n;
    detail[0] = 0;
    sr_last_error_message(detail, sizeof detail, &n);
    snprintf(body, sizeof body, "%s: %s (%s)\n", what, sr_result_message(r), detail);
    finish(c, 503, "Service Unavailable", NULL, body);
}

/* Records counter+1 and starts the commit (or the create of a new
 * session); its completion answers the request. */
static void start_commit(conn *c, sr_session_store *store, int is_new) {
    char v[32];
    sr_txn *txn = NULL;
    sr_result r;
    c->counter++;
    snprintf(v, sizeof v, "%ld", c->counter);
    if ((r = sr_session_store_begin(store, (const uint8_t *)c->id, c->id_len, &txn)) != SR_OK ||
        (r = sr_txn_set(txn, "counter", (const uint8_t *)v, strlen(v))) != SR_OK) {
        sr_txn_free(txn);
        fail_with(c, "begin", r);
        return;
    }
    /* The txn is consumed either way; NULL callback: the completion goes to
     * the reap queue behind the completion fd. */
    r = is_new ? sr_session_store_create_async(store, txn, WAIT_MS, NULL, c, NULL)
               : sr_session_store_commit_async(store, txn, WAIT_MS, NULL, c, NULL);
    if (r != SR_OK) {
        fail_with(c, "commit", r); /* e.g. SR_QUEUE_FULL: too many in flight */
        return;
    }
    c->busy = 1;
}

/* A new session, with an id this node is the primary of. */
static void start_new(conn *c, sr_session_store *store) {
    new_session_id(store, c->id);
    c->id_len = strlen(c->id);
    c->counter = 0;
    start_commit(c, store, 1);
}

/* SR_MOVED: redirect to the URL the new holder announced, if any. */
static void redirect(conn *c, sr_session_store *store, const sr_addr *moved) {
    uint8_t url[SR_MEMBER_PAYLOAD_MAX + 1];
    char body[SR_MEMBER_PAYLOAD_MAX + 128], head[SR_MEMBER_PAYLOAD_MAX + 256], where[64];
    size_t n = 0;
    int fl, len;
    if (sr_session_store_member_payload(store, moved, url, SR_MEMBER_PAYLOAD_MAX, &n) != SR_OK ||
        n == 0) {
        sr_addr_format(moved, where, sizeof where, &n);
        snprintf(body, sizeof body, "session moved to %s\n", where);
        finish(c, 503, "Service Unavailable", NULL, body);
        return;
    }
    url[n] = 0;
    snprintf(body, sizeof body, "moved to %s/\n", (const char *)url);
    len = snprintf(head, sizeof head,
                   "HTTP/1.1 307 Temporary Redirect\r\nLocation: %s/\r\n"
                   "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s",
                   (const char *)url, strlen(body), body);
    fl = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
    if (len > 0 && write(c->fd, head, (size_t)len) < 0) {
        perror("write");
    }
    conn_close(c);
}

/* One completion: the read feeds the commit, the commit answers. */
static void on_completion(const sr_completion *done, sr_session_store *store, const char *node) {
    conn *c = done->userdata;
    char body[512];
    c->busy = 0;
    if (done->kind == SR_ASYNC_GET) {
        if (done->result == SR_OK) {
            c->counter = read_counter(done->session);
            sr_session_free(done->session); /* ours now */
            start_commit(c, store, 0);
        } else if (done->result == SR_NOT_FOUND) {
            start_new(c, store);
        } else if (done->result == SR_MOVED) {
            redirect(c, store, &done->moved);
        } else {
            fail_with(c, "get", done->result);
        }
        return;
    }
    /* Answer only once the holders acknowledged: then the count survives
     * the loss of this node. */
    if (done->result != SR_OK) {
        fail_with(c, "commit", done->result);
        return;
    }
    snprintf(body, sizeof body, "counter=%ld node=%s session=%s copies=%zu\n", c->counter, node,
             c->id, done->copies);
    finish(c, 200, "OK", c->id, body);
}

/* A whole request head arrived: route it. */
static void on_request(conn *c, sr_session_store *store) {
    sr_result r;
    if (strncmp(c->req, "GET /members ", 13) == 0) {
        char body[32];
        size_t n = 0;
        sr_session_store_members(store, NULL, 0, &n); /* SR_INSUFFICIENT_SIZE gives the count */
        snprintf(body, sizeof body, "%zu\n", n);
        finish(c, 200, "OK", NULL, body);
    } else if (strncmp(c->req, "GET /drain ", 11) == 0) {
        /* Blocks this loop while the sessions are handed over (an admin call). */
        r = sr_session_store_drain(store, 30000);
        finish(c, r == SR_OK ? 200 : 503, r == SR_OK ? "OK" : "Service Unavailable", NULL,
               r == SR_OK ? "drained\n" : "drain timed out\n");
    } else if (strncmp(c->req, "GET / ", 6) == 0) {
        c->id_len = cookie_session(c->req, c->id, sizeof c->id);
        if (c->id_len == 0) {
            start_new(c, store);
            return;
        }
        r = sr_session_store_get_async(store, (const uint8_t *)c->id, c->id_len, 0, NULL, c, NULL);
        if (r != SR_OK) {
            fail_with(c, "get", r);
            return;
        }
        c->busy = 1;
    } else {
        finish(c, 404, "Not Found", NULL, "not found\n");
    }
}

/* Readable client: read what is there; route once the head is complete. */
static void on_readable(conn *c, sr_session_store *store) {
    ssize_t n;
    if (c->busy) {
        return; /* no pipelining: the answer closes the connection */
    }
    n = read(c->fd, c->req + c->got, sizeof c->req - 1 - c->got);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            conn_close(c);
        }
        return;
    }
    c->got += (size_t)n;
    c->req[c->got] = 0;
    if (strstr(c->req, "\r\n\r\n") != NULL) {
        on_request(c, store);
    } else if (c->got + 1 >= sizeof c->req) {
        finish(c, 431, "Request Header Fields Too Large", NULL, "too large\n");
    }
}

static void on_accept(int lfd, int ep) {
    struct epoll_event ev;
    int fd = accept(lfd, NULL, NULL), i;
    conn *c;
    if (fd < 0) {
        return;
    }
    for (i = 0; i < MAX_CONNS && conns[i] != NULL; i++) {
    }
    c = i < MAX_CONNS ? calloc(1, sizeof *c) : NULL;
    if (c == NULL) {
        respond(fd, 503, "Service Unavailable", NULL, "busy\n");
        close(fd);
        return;
    }
    c->fd = fd;
    conns[i] = c;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

int main(int argc, char **argv) {
    sr_config *cfg = NULL;
    sr_session_store *store = NULL;
    sr_addr local;
    char node[64];
    size_t n;
    long lifetime_s = 600;
    int port, lfd, one = 1, i, ep, cfd = -1;
    struct epoll_event ev;
    struct sockaddr_in sa;
    struct sigaction act;
    time_t started = time(NULL);
    sr_result r;

    if (argc < 2) {
        fprintf(stderr, "usage: %s <http-port> [key=value ...]\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    if ((r = sr_config_new(&cfg)) != SR_OK) {
        die("config", r);
    }

    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0) {
        perror("bind/listen");
        return 1;
    }
    {
        socklen_t sl = sizeof sa; /* port 0: the kernel chose one */
        getsockname(lfd, (struct sockaddr *)&sa, &sl);
        port = ntohs(sa.sin_port);
    }

    for (i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL) {
            fprintf(stderr, "not key=value: %s\n", argv[i]);
            return 2;
        }
        *eq = 0;
        if (strcmp(argv[i], "lifetime") == 0) {
            lifetime_s = atol(eq + 1);
        } else if (strcmp(argv[i], "memberPayload") == 0 && strcmp(eq + 1, "auto") == 0) {
            /* Where other nodes send the users of sessions they moved here. */
            char url[64];
            snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
            if ((r = sr_config_set(cfg, "memberPayload", url)) != SR_OK) {
                die("memberPayload", r);
            }
        } else if ((r = sr_config_set(cfg, argv[i], eq + 1)) != SR_OK) {
            die(argv[i], r);
        }
    }

    if ((r = sr_session_store_open(cfg, NULL, NULL, &store)) != SR_OK) {
        die("open", r);
    }
    sr_config_free(cfg);
    if ((r = sr_session_store_wait_ready(store, 60000)) != SR_OK) {
        die("wait_ready", r);
    }
    sr_session_store_local_addr(store, &local);
    sr_addr_format(&local, node, sizeof node, &n);
    printf("http_session_server: http 127.0.0.1:%d, store %s, ready\n", port, node);
    fflush(stdout);

    /* One epoll set: the listener, the clients, and the store's completion
     * fd (readable while completions wait to be reaped). */
    ep = epoll_create1(EPOLL_CLOEXEC);
    if ((r = sr_session_store_completion_fd(store, &cfd)) != SR_OK) {
        die("completion_fd", r);
    }
    ev.events = EPOLLIN;
    ev.data.ptr = &lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &cfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
    while (!stop_requested && time(NULL) - started < lifetime_s) {
        struct epoll_event evs[32];
        int k, ready = epoll_wait(ep, evs, 32, 200);
        for (k = 0; k < ready; k++) {
            if (evs[k].data.ptr == &lfd) {
                on_accept(lfd, ep);
            } else if (evs[k].data.ptr == &cfd) {
                sr_completion done[BATCH];
                size_t got = 0, j;
                if (sr_session_store_reap(store, done, BATCH, &got) == SR_OK) {
                    for (j = 0; j < got; j++) {
                        on_completion(&done[j], store, node);
                    }
                }
            } else {
                on_readable(evs[k].data.ptr, store);
            }
        }
    }
    close(lfd);
    /* Hand the sessions over before leaving. */
    r = sr_session_store_drain(store, 30000);
    printf("http_session_server: %s: drained (%s)\n", node, sr_result_message(r));
    /* Closing completes what is still in flight (SR_SHUTDOWN); reap it so
     * every connection gets its answer, then free. */
    sr_session_store_close(store);
    {
        sr_completion done[BATCH];
        size_t got = 0, j;
        while (sr_session_store_reap(store, done, BATCH, &got) == SR_OK && got > 0) {
            for (j = 0; j < got; j++) {
                sr_session_free(done[j].session);
                finish(done[j].userdata, 503, "Service Unavailable", NULL, "shutting down\n");
            }
        }
    }
    for (i = 0; i < MAX_CONNS; i++) {
        if (conns[i] != NULL) {
            conn_close(conns[i]);
        }
    }
    close(ep);
    sr_session_store_free(store);
    return 0;
}
