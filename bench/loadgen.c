/* Load generator for bench/accept_loop.py and bench/servers.py, compiled at run time
 * (never shipped).
 *
 * Keeps CONCURRENCY connections to 127.0.0.1:PORT in flight, spread over
 * THREADS threads with an epoll loop each.  Every connection writes PAYLOAD in
 * one write, reads to EOF and compares what it read with EXPECT (or, given
 * SUFFIX, checks that it starts with EXPECT and ends with SUFFIX: an HTTP
 * server's reply carries a date).  Stops after
 * MAX_CONNS connections have been started or DURATION seconds, whichever comes
 * first; a watchdog ends the process DURATION + 30 s after the start whatever
 * happens.  Prints one JSON object: count, errors, elapsed_s, client_cpu_s,
 * first_error.
 *
 * usage: loadgen PORT THREADS CONCURRENCY DURATION MAX_CONNS PAYLOAD_HEX EXPECT_HEX [SUFFIX_HEX]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPLY 2048

static struct sockaddr_in server;
static unsigned char *payload, *expect, *suffix;
static size_t payload_len, expect_len, suffix_len;
static int match_ends; /* SUFFIX given: compare the ends of the reply only */
static long max_conns;
static double deadline;
static atomic_long started, completed, failed;
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[200];

struct conn {
    int fd;
    size_t got;
    int writing;
    unsigned char buf[MAX_REPLY];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(const char *what, int err) {
    atomic_fetch_add(&failed, 1);
    pthread_mutex_lock(&error_lock);
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "%s: %s", what, err ? strerror(err) : "");
    pthread_mutex_unlock(&error_lock);
}

static size_t unhex(const char *hex, unsigned char **out) {
    size_t n = strlen(hex) / 2;
    *out = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        sscanf(hex + 2 * i, "%2hhx", &(*out)[i]);
    return n;
}

/* Starts a new connection in c if the budget allows; returns 0 when it does not. */
static int start(int ep, struct conn *c) {
    if (now() >= deadline || atomic_fetch_add(&started, 1) >= max_conns)
        return 0;
    for (;;) {
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c->fd < 0) {
            fail("socket", errno);
            return 0;
        }
        c->got = 0;
        c->writing = 1;
        if (connect(c->fd, (struct sockaddr *)&server, sizeof server) == 0 || errno == EINPROGRESS)
            break;
        fail("connect", errno);
        close(c->fd);
        if (now() >= deadline || atomic_fetch_add(&started, 1) >= max_conns)
            return 0;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 1;
}

static int reply_ok(const struct conn *c) {
    if (!match_ends)
        return c->got == expect_len && memcmp(c->buf, expect, expect_len) == 0;
    return c->got >= expect_len + suffix_len && memcmp(c->buf, expect, expect_len) == 0 &&
           memcmp(c->buf + c->got - suffix_len, suffix, suffix_len) == 0;
}

/* Advances c on an epoll event; returns 1 when the connection is over. */
static int step(int ep, struct conn *c) {
    if (c->writing) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail("connect", err);
            return 1;
        }
        ssize_t n = send(c->fd, payload, payload_len, MSG_NOSIGNAL);
        if (n != (ssize_t)payload_len) {
            fail("send", n < 0 ? errno : 0);
            return 1;
        }
        c->writing = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return 0;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->got, MAX_REPLY - c->got, 0);
        if (n > 0) {
            c->got += n;
            if (c->got == MAX_REPLY) {
                fail("reply too long", 0);
                return 1;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0) {
            fail("recv", errno);
            return 1;
        }
        if (reply_ok(c))
            atomic_fetch_add(&completed, 1);
        else
            fail("unexpected reply", 0);
        return 1;
    }
}

static void *worker(void *arg) {
    long n = (long)arg;
    int ep = epoll_create1(0);
    struct conn *conns = calloc(n, sizeof *conns);
    struct epoll_event *events = calloc(n, sizeof *events);
    long active = 0;
    for (long i = 0; i < n; i++)
        active += start(ep, &conns[i]);
    while (active) {
        int k = epoll_wait(ep, events, n, 1000);
        if (k < 0 && errno != EINTR)
            break;
        for (int i = 0; i < k; i++) {
            struct conn *c = events[i].data.ptr;
            if (step(ep, c)) {
                close(c->fd);
                active -= 1;
                active += start(ep, c);
            }
        }
    }
    free(events);
    free(conns);
    close(ep);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: %s PORT THREADS CONCURRENCY DURATION MAX_CONNS PAYLOAD_HEX EXPECT_HEX"
                " [SUFFIX_HEX]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    long threads = atol(argv[2]), concurrency = atol(argv[3]);
    double duration = atof(argv[4]);
    max_conns = atol(argv[5]);
    payload_len = unhex(argv[6], &payload);
    expect_len = unhex(argv[7], &expect);
    match_ends = argc == 9;
    suffix_len = match_ends ? unhex(argv[8], &suffix) : 0;
    if (port <= 0 || threads <= 0 || concurrency < threads || duration <= 0 || max_conns <= 0 ||
        expect_len + suffix_len >= MAX_REPLY) {
        fprintf(stderr, "loadgen: bad arguments\n");
        return 2;
    }
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, always */
    alarm((unsigned)duration + 30);                   /* the watchdog */

    double t0 = now();
    deadline = t0 + duration;
    pthread_t *ids = calloc(threads, sizeof *ids);
    for (long i = 0; i < threads; i++) {
        long share = concurrency / threads + (i < concurrency % threads);
        pthread_create(&ids[i], NULL, worker, (void *)share);
    }
    for (long i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    double elapsed = now() - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("{\"count\": %ld, \"errors\": %ld, \"elapsed_s\": %.6f, \"client_cpu_s\": %.6f, "
           "\"first_error\": \"%s\"}\n",
           atomic_load(&completed), atomic_load(&failed), elapsed, cpu, first_error);
    return 0;
}
