/* http_session_server.c: a small HTTP/1.1 server on plain sockets whose
 * sessions live in a replicated sessionrepl session store.
 *
 * A cookie, SRSESSION=<id>, carries the session id. Every request to /
 * increments the session's "counter" attribute, commits it and waits until
 * the session's holders acknowledged the change before it answers
 *   counter=<n> node=<store address> session=<id>
 * A request with a cookie for a session this node does not hold fetches it
 * from the cluster (sr_session_store_get), so a session survives the loss
 * of the node that served it. GET /members answers the number of store
 * members this node sees.
 *
 * Usage: http_session_server <http-port> [key=value ...]
 *   http-port 0 takes a free port (printed on the "ready" line);
 *   the key=value pairs configure the store (sr_config_set): membership,
 *   multicast group, session mode, ...; "lifetime=<s>" (not a store key)
 *   stops the server by itself after that many seconds.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sessionrepl.h>

#define COOKIE "SRSESSION="
#define ID_LEN 16
#define WAIT_MS 10000

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

/* One request to "/": count it in the session, replicate, answer. */
static void serve_counter(int fd, sr_session_store *store, const char *node, const char *req) {
    char id[128], body[512], detail[256];
    size_t id_len = cookie_session(req, id, sizeof id), copies = 0, n;
    long counter = 0;
    int is_new = 1;
    sr_txn *txn = NULL;
    sr_result r;

    if (id_len > 0) {
        sr_session *s = NULL;
        sr_addr moved;
        r = sr_session_store_get(store, (const uint8_t *)id, id_len, 0, &s, &moved);
        if (r == SR_OK) {
            counter = read_counter(s);
            sr_session_free(s);
            is_new = 0;
        } else if (r == SR_MOVED) {
            char where[64];
            sr_addr_format(&moved, where, sizeof where, &n);
            snprintf(body, sizeof body, "session moved to %s\n", where);
            respond(fd, 503, "Service Unavailable", NULL, body);
            return;
        } else if (r != SR_NOT_FOUND) {
            sr_last_error_message(detail, sizeof detail, &n);
            snprintf(body, sizeof body, "get: %s (%s)\n", sr_result_message(r), detail);
            respond(fd, 503, "Service Unavailable", NULL, body);
            return;
        }
    }
    if (is_new) {
        new_session_id(store, id);
        id_len = strlen(id);
    }
    counter++;
    snprintf(body, sizeof body, "%ld", counter);
    if ((r = sr_session_store_begin(store, (const uint8_t *)id, id_len, &txn)) != SR_OK ||
        (r = sr_txn_set(txn, "counter", (const uint8_t *)body, strlen(body))) != SR_OK) {
        sr_txn_free(txn);
        die("begin", r);
    }
    /* Answer only once the holders acknowledged: then the count survives
     * the loss of this node. The txn is consumed either way. */
    r = is_new ? sr_session_store_create(store, txn, WAIT_MS, &copies)
               : sr_session_store_commit(store, txn, WAIT_MS, &copies);
    if (r != SR_OK) {
        sr_last_error_message(detail, sizeof detail, &n);
        snprintf(body, sizeof body, "commit: %s (%s)\n", sr_result_message(r), detail);
        respond(fd, 503, "Service Unavailable", NULL, body);
        return;
    }
    snprintf(body, sizeof body, "counter=%ld node=%s session=%s copies=%zu\n", counter, node, id,
             copies);
    respond(fd, 200, "OK", id, body);
}

static void serve(int fd, sr_session_store *store, const char *node) {
    char req[8192];
    size_t got = 0;
    /* Read the request head (no body is expected). */
    while (got + 1 < sizeof req) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t n;
        if (poll(&p, 1, 5000) <= 0) {
            return;
        }
        n = read(fd, req + got, sizeof req - 1 - got);
        if (n <= 0) {
            return;
        }
        got += (size_t)n;
        req[got] = 0;
        if (strstr(req, "\r\n\r\n") != NULL) {
            break;
        }
    }
    if (strncmp(req, "GET /members ", 13) == 0) {
        char body[32];
        size_t n = 0;
        sr_session_store_members(store, NULL, 0, &n); /* SR_INSUFFICIENT_SIZE gives the count */
        snprintf(body, sizeof body, "%zu\n", n);
        respond(fd, 200, "OK", NULL, body);
    } else if (strncmp(req, "GET / ", 6) == 0) {
        serve_counter(fd, store, node, req);
    } else {
        respond(fd, 404, "Not Found", NULL, "not found\n");
    }
}

int main(int argc, char **argv) {
    sr_config *cfg = NULL;
    sr_session_store *store = NULL;
    sr_addr local;
    char node[64];
    size_t n;
    long lifetime_s = 600;
    int port, lfd, one = 1, i;
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
    for (i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL) {
            fprintf(stderr, "not key=value: %s\n", argv[i]);
            return 2;
        }
        *eq = 0;
        if (strcmp(argv[i], "lifetime") == 0) {
            lifetime_s = atol(eq + 1);
        } else if ((r = sr_config_set(cfg, argv[i], eq + 1)) != SR_OK) {
            die(argv[i], r);
        }
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

    while (!stop_requested && time(NULL) - started < lifetime_s) {
        struct pollfd p = {lfd, POLLIN, 0};
        int fd;
        if (poll(&p, 1, 200) <= 0) {
            continue;
        }
        fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        serve(fd, store, node);
        close(fd);
    }
    close(lfd);
    /* Hand the sessions over before leaving. */
    r = sr_session_store_drain(store, 30000);
    printf("http_session_server: %s: drained (%s)\n", node, sr_result_message(r));
    sr_session_store_free(store);
    return 0;
}
