/*
 * mgproxy.c - fault-injecting TCP proxy for mailgrab's integration tests and
 * benchmarks.
 *
 * Owns: one listening socket and, per accepted client, a connection to the
 * target; it forwards bytes both ways with poll() in a single thread and can
 * add latency, cut a connection, or freeze it.  No dependencies beyond POSIX.
 *
 *   mgproxy --listen 127.0.0.1:PORT|0 --target HOST:PORT
 *           [--delay-ms N] [--close-after BYTES] [--close-after-up BYTES]
 *           [--stall-after BYTES]
 *           [--fault-conn K] [--fault-times N] [--hold-after BYTES --until-conns K]
 *           [--rate BYTES_PER_SEC] [--cut-every SECS] [--stats-file FILE]
 *           [--max-seconds S] [--port-file FILE]
 *
 * --delay-ms N      every byte is held N ms before it is sent on, in each
 *                   direction (RTT grows by 2N).  Data is queued with a due
 *                   time, so throughput is not limited by the delay.
 * --close-after B   after B server->client bytes have been forwarded on a
 *                   faulted connection, both of its sockets are closed.
 * --close-after-up B  after B client->server bytes (a client cut in the
 *                   middle of what it sends, e.g. an APPEND's literal), the
 *                   faulted connection is closed the same way.
 * --stall-after B   after B server->client bytes, the faulted connection stops
 *                   forwarding in both directions but stays open (the client
 *                   sees a silent server) until the client closes it.
 * --fault-conn K    which accepted connection (1-based, in accept order) the
 *                   fault applies to; 0, the default, means every connection.
 * --fault-times N   inject at most N faults in all (default 0: no limit).  With
 *                   --fault-times 1 and no --fault-conn, the first connection
 *                   to carry BYTES is the one cut, whichever it is; the
 *                   connections opened after that are left alone.
 * --hold-after B    after B server->client bytes, the first connection stops
 *                   forwarding server->client bytes until --until-conns K
 *                   connections in all have been accepted, then goes on.  It
 *                   shows whether a client opens its other connections while
 *                   its first one is still busy (waiting for it would hang).
 * --rate R          each connection carries at most R server->client bytes a
 *                   second (a token bucket holding 1/50 s of them).
 * --cut-every S     every connection is closed S seconds (decimals allowed)
 *                   after it was accepted, whatever it is doing: a server
 *                   whose sessions live S seconds.
 * --stats-file FILE written (atomically) whenever a connection closes and at
 *                   exit: one line of JSON, {"connections": N, "cuts": N,
 *                   "down_bytes": N, "up_bytes": N}, the bytes delivered
 *                   server->client and client->server over all connections.
 * --max-seconds S   exit after S seconds (default 600) so a crashed test
 *                   cannot leave the proxy running.
 * --port-file FILE  write the listening port (decimal + newline) to FILE,
 *                   atomically, once the proxy accepts connections.
 *
 * Each event (accept, fault, close) is one line on stderr, so tests can check
 * that a fault really happened.  SIGTERM ends it cleanly (stats written).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_MAX (256 * 1024)
#define QUEUE_MAX (16 * 1024 * 1024) /* per direction; back-pressure above */

struct chunk {
    struct chunk *next;
    int64_t due_ms;
    size_t len, off;
    unsigned char data[];
};

struct dir {
    int from, to;
    struct chunk *head, *tail;
    size_t queued;
    uint64_t moved; /* bytes read from `from` */
    uint64_t sent;  /* bytes written to `to` */
    bool eof;       /* `from` said EOF; shut `to` once drained */
    bool shut;
};

struct conn {
    unsigned id;
    int client, server;
    struct dir up;   /* client -> server */
    struct dir down; /* server -> client */
    bool faulted;    /* the fault applies to this connection */
    bool stalled;
    bool dead;
    int64_t opened_ms;
    double tokens; /* --rate: server->client bytes it may read now */
    int64_t refill_ms;
};

struct opts {
    const char *listen, *target, *port_file;
    int64_t delay_ms;
    uint64_t close_after, stall_after, close_after_up;
    bool have_close, have_stall, have_close_up;
    unsigned fault_conn;
    unsigned fault_times;
    uint64_t hold_after;
    bool have_hold;
    unsigned until_conns;
    long max_seconds;
    uint64_t rate;
    int64_t cut_every_ms; /* 0: never */
    const char *stats_file;
};

static struct opts opt = {.max_seconds = 600};
static struct conn **conns;
static size_t nconns, capconns;
static unsigned accepted;
static unsigned faults_fired;
static bool hold_logged, release_logged;
static uint64_t closed_down, closed_up; /* bytes of the connections closed so far */
static unsigned cuts;
static volatile sig_atomic_t stop_requested;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mgproxy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what)
{
    logf_("%s: %s", what, strerror(errno));
    exit(1);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-')
        return false;
    *out = v;
    return true;
}

/* Splits "HOST:PORT" (last colon) and resolves it. */
static struct addrinfo *resolve(const char *hostport, bool passive)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host) {
        logf_("bad address '%s' (want HOST:PORT)", hostport);
        exit(2);
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (passive)
        hints.ai_flags = AI_PASSIVE;
    struct addrinfo *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc) {
        logf_("%s: %s", hostport, gai_strerror(rc));
        exit(2);
    }
    return ai;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die("fcntl");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Replace path with one line of text, atomically (a temp file renamed). */
static void write_file(const char *path, const char *line)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        logf_("file name too long: %s", path);
        exit(2);
    }
    FILE *f = fopen(tmp, "w");
    if (!f)
        die(tmp);
    fputs(line, f);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        die(path);
}

static void write_port_file(int lfd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(lfd, (struct sockaddr *)&ss, &len) < 0)
        die("getsockname");
    unsigned port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    logf_("listening on port %u", port);
    if (!opt.port_file)
        return;
    char line[32];
    snprintf(line, sizeof line, "%u\n", port);
    write_file(opt.port_file, line);
}

static void dir_free(struct dir *d)
{
    while (d->head) {
        struct chunk *c = d->head;
        d->head = c->next;
        free(c);
    }
    d->tail = NULL;
    d->queued = 0;
}

static void write_stats(void)
{
    if (!opt.stats_file)
        return;
    uint64_t down = closed_down, up = closed_up;
    for (size_t i = 0; i < nconns; i++) {
        if (!conns[i]->dead) {
            down += conns[i]->down.sent;
            up += conns[i]->up.sent;
        }
    }
    char line[160];
    snprintf(line, sizeof line,
             "{\"connections\": %u, \"cuts\": %u, \"down_bytes\": %llu, \"up_bytes\": %llu}\n",
             accepted, cuts, (unsigned long long)down, (unsigned long long)up);
    write_file(opt.stats_file, line);
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->dead)
        return;
    logf_("conn %u: closed (%s); client->server %llu bytes, server->client %llu bytes", c->id, why,
          (unsigned long long)c->up.moved, (unsigned long long)c->down.moved);
    close(c->client);
    close(c->server);
    dir_free(&c->up);
    dir_free(&c->down);
    c->dead = true;
    closed_down += c->down.sent;
    closed_up += c->up.sent;
    write_stats();
}

/* --rate: the most bytes a connection may read from the server at once. */
static double rate_burst(void)
{
    double b = (double)opt.rate / 50;
    return b < 4096 ? 4096 : b;
}

static void refill(struct conn *c, int64_t now)
{
    if (!opt.rate)
        return;
    c->tokens += (double)opt.rate * (double)(now - c->refill_ms) / 1000.0;
    if (c->tokens > rate_burst())
        c->tokens = rate_burst();
    c->refill_ms = now;
}

static uint64_t rate_budget(const struct conn *c)
{
    if (!opt.rate)
        return UINT64_MAX;
    return c->tokens >= 1 ? (uint64_t)c->tokens : 0;
}

/* Milliseconds until a rate-limited connection may read a useful amount. */
static int64_t rate_wait(const struct conn *c)
{
    double want = rate_burst() < 16384 ? rate_burst() : 16384;
    double ms = (want - c->tokens) * 1000.0 / (double)opt.rate;
    return ms < 1 ? 1 : (int64_t)ms;
}

static void check_cut(struct conn *c, int64_t now)
{
    if (c->dead || !opt.cut_every_ms || now - c->opened_ms < opt.cut_every_ms)
        return;
    cuts++;
    logf_("conn %u: fault: cut %lld ms after it opened", c->id, (long long)(now - c->opened_ms));
    conn_close(c, "cut-every");
}

static void do_accept(int lfd, const struct addrinfo *target)
{
    int cfd = accept(lfd, NULL, NULL);
    if (cfd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            logf_("accept: %s", strerror(errno));
        return;
    }
    unsigned id = ++accepted;
    int sfd = -1;
    for (const struct addrinfo *a = target; a; a = a->ai_next) {
        sfd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (sfd < 0)
            continue;
        if (connect(sfd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(sfd);
        sfd = -1;
    }
    if (sfd < 0) {
        logf_("conn %u: target %s unreachable: %s", id, opt.target, strerror(errno));
        close(cfd);
        return;
    }
    set_nonblock(cfd);
    set_nonblock(sfd);
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        die("calloc");
    c->id = id;
    c->opened_ms = c->refill_ms = now_ms();
    c->tokens = opt.rate ? rate_burst() : 0;
    c->client = cfd;
    c->server = sfd;
    c->up.from = cfd;
    c->up.to = sfd;
    c->down.from = sfd;
    c->down.to = cfd;
    c->faulted = (opt.have_close || opt.have_stall || opt.have_close_up) &&
                 (opt.fault_conn == 0 || opt.fault_conn == id);
    if (nconns == capconns) {
        capconns = capconns ? 2 * capconns : 16;
        conns = realloc(conns, capconns * sizeof *conns);
        if (!conns)
            die("realloc");
    }
    conns[nconns++] = c;
    logf_("conn %u: accepted%s", id, c->faulted ? " (fault armed)" : "");
}

/* The server->client byte budget left before the fault fires, or UINT64_MAX. */
static uint64_t fault_budget(const struct conn *c)
{
    if (!c->faulted || c->stalled)
        return c->stalled ? 0 : UINT64_MAX;
    if (!opt.have_close && !opt.have_stall)
        return UINT64_MAX; /* only --close-after-up */
    if (opt.fault_times && faults_fired >= opt.fault_times)
        return UINT64_MAX; /* the allowed faults were spent elsewhere */
    uint64_t limit = opt.have_close ? opt.close_after : opt.stall_after;
    if (opt.have_close && opt.have_stall && opt.stall_after < limit)
        limit = opt.stall_after;
    return c->down.moved >= limit ? 0 : limit - c->down.moved;
}

/* The client->server byte budget left before --close-after-up fires. */
static uint64_t up_budget(const struct conn *c)
{
    if (!c->faulted || !opt.have_close_up || (opt.fault_times && faults_fired >= opt.fault_times))
        return UINT64_MAX;
    return c->up.moved >= opt.close_after_up ? 0 : opt.close_after_up - c->up.moved;
}

/* The first connection's server->client budget while it is held. */
static uint64_t hold_budget(const struct conn *c)
{
    if (!opt.have_hold || c->id != 1 || accepted >= opt.until_conns)
        return UINT64_MAX;
    return c->down.moved >= opt.hold_after ? 0 : opt.hold_after - c->down.moved;
}

static uint64_t down_budget(const struct conn *c)
{
    uint64_t f = fault_budget(c), h = hold_budget(c), r = rate_budget(c);
    uint64_t b = f < h ? f : h;
    return b < r ? b : r;
}

static void check_hold(const struct conn *c)
{
    if (!opt.have_hold || c->id != 1 || c->dead)
        return;
    if (!hold_logged && hold_budget(c) == 0) {
        hold_logged = true;
        logf_("conn 1: held after %llu server->client bytes until %u connections",
              (unsigned long long)c->down.moved, opt.until_conns);
    } else if (hold_logged && !release_logged && accepted >= opt.until_conns) {
        release_logged = true;
        logf_("conn 1: released: %u connections accepted", accepted);
    }
}

/* Reads what `from` has into the queue. Returns false if the connection died. */
static bool dir_read(struct conn *c, struct dir *d, uint64_t budget)
{
    static unsigned char buf[READ_MAX];
    size_t want = sizeof buf;
    if (budget < want)
        want = (size_t)budget;
    if (want == 0)
        return true;
    ssize_t n = read(d->from, buf, want);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return true;
        conn_close(c, strerror(errno));
        return false;
    }
    if (n == 0) {
        d->eof = true;
        return true;
    }
    struct chunk *ch = malloc(sizeof *ch + (size_t)n);
    if (!ch)
        die("malloc");
    memcpy(ch->data, buf, (size_t)n);
    ch->len = (size_t)n;
    ch->off = 0;
    ch->due_ms = now_ms() + opt.delay_ms;
    ch->next = NULL;
    if (d->tail)
        d->tail->next = ch;
    else
        d->head = ch;
    d->tail = ch;
    d->queued += (size_t)n;
    d->moved += (uint64_t)n;
    return true;
}

/* Writes every due chunk `to` accepts. Returns false if the connection died. */
static bool dir_write(struct conn *c, struct dir *d, int64_t now)
{
    while (d->head && d->head->due_ms <= now) {
        struct chunk *ch = d->head;
        ssize_t n = write(d->to, ch->data + ch->off, ch->len - ch->off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return true;
            conn_close(c, strerror(errno));
            return false;
        }
        ch->off += (size_t)n;
        d->queued -= (size_t)n;
        d->sent += (uint64_t)n;
        if (ch->off < ch->len)
            return true;
        d->head = ch->next;
        if (!d->head)
            d->tail = NULL;
        free(ch);
    }
    if (d->eof && !d->head && !d->shut) {
        shutdown(d->to, SHUT_WR);
        d->shut = true;
    }
    return true;
}

static void check_fault(struct conn *c)
{
    if (!c->dead && !c->stalled && opt.have_close_up && up_budget(c) == 0 && !c->up.queued) {
        faults_fired++;
        logf_("conn %u: fault: closing after %llu client->server bytes", c->id,
              (unsigned long long)c->up.moved);
        conn_close(c, "fault injected");
        return;
    }
    if (!opt.have_close && !opt.have_stall)
        return;
    if (c->dead || c->stalled || !c->faulted || fault_budget(c) != 0 || c->down.queued)
        return;
    /* Every budgeted byte has reached the client. */
    faults_fired++;
    if (opt.have_close && (!opt.have_stall || opt.close_after <= opt.stall_after)) {
        logf_("conn %u: fault: closing after %llu server->client bytes", c->id,
              (unsigned long long)c->down.moved);
        conn_close(c, "fault injected");
    } else {
        logf_("conn %u: fault: stalling after %llu server->client bytes", c->id,
              (unsigned long long)c->down.moved);
        c->stalled = true;
        dir_free(&c->up);
    }
}

static void usage(void)
{
    fputs("usage: mgproxy --listen HOST:PORT|0 --target HOST:PORT [--delay-ms N]\n"
          "               [--close-after BYTES] [--close-after-up BYTES]\n"
          "               [--stall-after BYTES] [--fault-conn K]\n"
          "               [--fault-times N] [--hold-after BYTES --until-conns K]\n"
          "               [--rate BYTES_PER_SEC] [--cut-every SECS] [--stats-file FILE]\n"
          "               [--max-seconds S] [--port-file FILE]\n",
          stderr);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"close-after", required_argument, NULL, 'c'},
        {"close-after-up", required_argument, NULL, 'C'},
        {"cut-every", required_argument, NULL, 'e'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"fault-conn", required_argument, NULL, 'k'},
        {"fault-times", required_argument, NULL, 'n'},
        {"hold-after", required_argument, NULL, 'h'},
        {"listen", required_argument, NULL, 'l'},
        {"max-seconds", required_argument, NULL, 'm'},
        {"port-file", required_argument, NULL, 'p'},
        {"rate", required_argument, NULL, 'r'},
        {"stall-after", required_argument, NULL, 's'},
        {"stats-file", required_argument, NULL, 'f'},
        {"target", required_argument, NULL, 't'},
        {"until-conns", required_argument, NULL, 'u'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    uint64_t v = 0;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch == 'e') {
            char *end;
            double secs = optarg ? strtod(optarg, &end) : 0;
            if (!optarg || end == optarg || *end || !(secs > 0 && secs <= 86400))
                usage();
            opt.cut_every_ms = (int64_t)(secs * 1000 + 0.5);
            continue;
        }
        if (ch != 'l' && ch != 't' && ch != 'p' && ch != 'f' &&
            (!optarg || !parse_u64(optarg, &v))) {
            logf_("bad number for option: %s", optarg ? optarg : "");
            usage();
        }
        switch (ch) {
        case 'c':
            opt.close_after = v;
            opt.have_close = true;
            break;
        case 'C':
            opt.close_after_up = v;
            opt.have_close_up = true;
            break;
        case 'd':
            if (v > 3600 * 1000)
                usage();
            opt.delay_ms = (int64_t)v;
            break;
        case 'k':
            if (v > UINT32_MAX)
                usage();
            opt.fault_conn = (unsigned)v;
            break;
        case 'n':
            if (v > UINT32_MAX)
                usage();
            opt.fault_times = (unsigned)v;
            break;
        case 'h':
            opt.hold_after = v;
            opt.have_hold = true;
            break;
        case 'u':
            if (v == 0 || v > UINT32_MAX)
                usage();
            opt.until_conns = (unsigned)v;
            break;
        case 'l':
            opt.listen = optarg;
            break;
        case 'm':
            if (v == 0 || v > 86400 * 7)
                usage();
            opt.max_seconds = (long)v;
            break;
        case 'p':
            opt.port_file = optarg;
            break;
        case 'f':
            opt.stats_file = optarg;
            break;
        case 'r':
            if (v == 0)
                usage();
            opt.rate = v;
            break;
        case 's':
            opt.stall_after = v;
            opt.have_stall = true;
            break;
        case 't':
            opt.target = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || !opt.listen || !opt.target || opt.have_hold != (opt.until_conns > 0))
        usage();
}

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_term}; /* no SA_RESTART: poll returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);

    char lbuf[300];
    /* "--listen 0" or ":0" means 127.0.0.1 on a free port */
    if (strchr(opt.listen, ':') == NULL) {
        snprintf(lbuf, sizeof lbuf, "127.0.0.1:%s", opt.listen);
        opt.listen = lbuf;
    }
    struct addrinfo *lai = resolve(opt.listen, true);
    struct addrinfo *target = resolve(opt.target, false);
    int lfd = socket(lai->ai_family, lai->ai_socktype | SOCK_CLOEXEC, lai->ai_protocol);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, lai->ai_addr, lai->ai_addrlen) < 0)
        die("bind");
    if (listen(lfd, 128) < 0)
        die("listen");
    freeaddrinfo(lai);
    set_nonblock(lfd);
    write_port_file(lfd);

    const int64_t end = now_ms() + (int64_t)opt.max_seconds * 1000;
    struct pollfd *pfds = NULL;
    size_t cappfds = 0;
    for (;;) {
        int64_t now = now_ms();
        if (now >= end) {
            logf_("max-seconds reached, exiting");
            break;
        }
        if (stop_requested) {
            logf_("terminated, exiting");
            break;
        }
        for (size_t i = 0; i < nconns; i++) {
            refill(conns[i], now);
            check_cut(conns[i], now);
        }
        /* drop dead connections */
        size_t w = 0;
        for (size_t i = 0; i < nconns; i++) {
            if (conns[i]->dead)
                free(conns[i]);
            else
                conns[w++] = conns[i];
        }
        nconns = w;

        if (cappfds < 1 + 2 * nconns) {
            cappfds = 2 * (1 + 2 * nconns);
            pfds = realloc(pfds, cappfds * sizeof *pfds);
            if (!pfds)
                die("realloc");
        }
        int64_t timeout = end - now;
        pfds[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (size_t i = 0; i < nconns; i++) {
            struct conn *c = conns[i];
            short ce = 0, se = 0;
            if (c->stalled) {
                ce = POLLIN; /* only to notice the client going away */
            } else {
                if (!c->up.eof && c->up.queued < QUEUE_MAX)
                    ce |= POLLIN;
                if (!c->down.eof && c->down.queued < QUEUE_MAX && down_budget(c) > 0)
                    se |= POLLIN;
                else if (!c->down.eof && rate_budget(c) == 0 && rate_wait(c) < timeout)
                    timeout = rate_wait(c);
                struct dir *ds[2] = {&c->up, &c->down};
                for (int k = 0; k < 2; k++) {
                    struct chunk *h = ds[k]->head;
                    if (!h)
                        continue;
                    if (h->due_ms <= now) {
                        if (ds[k]->to == c->client)
                            ce |= POLLOUT;
                        else
                            se |= POLLOUT;
                    } else if (h->due_ms - now < timeout) {
                        timeout = h->due_ms - now;
                    }
                }
            }
            /* A finished side with nothing to do is not polled at all: its
             * POLLHUP would otherwise wake us in a loop. */
            bool cidle = ce == 0 && c->up.eof;
            bool sidle = se == 0 && c->down.eof;
            if (opt.cut_every_ms && c->opened_ms + opt.cut_every_ms - now < timeout)
                timeout = c->opened_ms + opt.cut_every_ms - now;
            if (timeout < 0)
                timeout = 0;
            pfds[1 + 2 * i] = (struct pollfd){.fd = cidle ? -1 : c->client, .events = ce};
            pfds[2 + 2 * i] =
                (struct pollfd){.fd = (c->stalled || sidle) ? -1 : c->server, .events = se};
        }
        int n = poll(pfds, 1 + 2 * nconns, (int)(timeout > 1000 ? 1000 : timeout));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        now = now_ms();
        size_t live = nconns; /* accepted connections are polled next round */
        for (size_t i = 0; i < live; i++) {
            struct conn *c = conns[i];
            short cr = pfds[1 + 2 * i].revents, sr = pfds[2 + 2 * i].revents;
            if (c->stalled) {
                if (cr) {
                    unsigned char sink[4096];
                    ssize_t r = read(c->client, sink, sizeof sink);
                    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                        conn_close(c, "client left a stalled connection");
                }
                continue;
            }
            if ((cr & POLLIN) || (cr & (POLLHUP | POLLERR)))
                if (!dir_read(c, &c->up, up_budget(c)))
                    continue;
            if ((sr & POLLIN) || (sr & (POLLHUP | POLLERR))) {
                uint64_t before = c->down.moved;
                if (!dir_read(c, &c->down, down_budget(c)))
                    continue;
                if (opt.rate)
                    c->tokens -= (double)(c->down.moved - before);
            }
            if (!dir_write(c, &c->up, now) || !dir_write(c, &c->down, now))
                continue;
            check_fault(c);
            check_hold(c);
            if (!c->dead && c->up.shut && c->down.shut)
                conn_close(c, "both sides finished");
        }
        if (pfds[0].revents & POLLIN) {
            do_accept(lfd, target);
            for (size_t i = 0; i < nconns; i++)
                check_hold(conns[i]);
        }
    }
    for (size_t i = 0; i < nconns; i++)
        conn_close(conns[i], "proxy exiting");
    write_stats();
    for (size_t i = 0; i < nconns; i++)
        free(conns[i]);
    free(conns);
    free(pfds);
    freeaddrinfo(target);
    close(lfd);
    return 0;
}
