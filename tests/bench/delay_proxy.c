/* delay_proxy: a TCP proxy that delays what it forwards, for benchmarks over a link with a
 * round-trip time where the kernel has no sch_netem (tests/bench/replicate.sh).
 *
 *   delay_proxy --listen [ADDR:]PORT --target [ADDR:]PORT --delay-ms RTT
 *               [--buffer-kib N] [--max-conns N] [--stats FILE] [--listen-netns NAME]
 *               [--verbose]
 *
 * Every accepted connection gets its own connection to the target; bytes go both ways. Each
 * read is held until (time of the read) + RTT/2 before it is written on, and an EOF likewise
 * (then shutdown(SHUT_WR) of the other side), so a request and its answer take RTT more than
 * they would directly. At most --buffer-kib (default 16384) bytes per direction and connection
 * are held: a full buffer stops reading that side, whose TCP window then closes. A connection
 * therefore carries at most buffer / (RTT/2) per direction, what TCP with a window of twice the
 * buffer carries over the RTT (16 MiB: a window of 32 MiB, this kernel's tcp_rmem maximum,
 * 671 MB/s at 50 ms). The proxy takes what a sender writes at once (loopback), so TCP's own
 * window growth over the delay (slow start) is not reproduced, nor is the handshake: the
 * client's connect returns at once, where a real link adds one RTT to each new connection.
 *
 * One process, one thread, ppoll(): timers to the nanosecond; SIGTERM or SIGINT end it (exit
 * 0) after writing the stats. --stats FILE holds "key value" lines (bytes each way,
 * connections, the most bytes held, how late releases ran: at most, and how often by more
 * than 1 and 5 ms; on a busy machine the proxy waits for a CPU like any process), written at
 * start, on SIGUSR1 and at exit, each time with the next `serial`, and at no other time: the
 * proxy does no file I/O while it carries traffic (the copies it carries fill the disk's
 * queue). --listen-netns NAME binds the listening socket inside the network namespace
 * /run/netns/NAME and connects to the target from the namespace it started in (a link
 * through a veth pair with netem: delay 0 there).
 *
 * A benchmark tool, loopback (or a veth of the bench's own) only. Exit status 2 on a usage or
 * setup error. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SEGS_MAX 4096          /* reads held per direction and connection at most */
#define CONNS_MAX_LIMIT 1024

/* ---- options and state --------------------------------------------------------------- */

typedef struct {
    struct sockaddr_in listen, target;
    int64_t half_ns; /* the delay of one direction: RTT / 2 */
    long delay_ms;
    size_t buffer;
    long max_conns;
    const char *stats_file;
    const char *netns;
    int verbose;
} opts_t;

typedef struct {
    int64_t due_ns;
    uint32_t len; /* bytes of this read not yet written */
} seg_t;

/* One direction: bytes read from `from`, held, written to `to`. */
typedef struct {
    unsigned char *buf; /* ring of cap bytes, allocated at the first read */
    size_t head, len;
    seg_t segs[SEGS_MAX];
    size_t shead, nseg;
    int eof;          /* `from` said EOF (or the direction's source is gone) */
    int64_t eof_due;  /* when the EOF is passed on */
    int shut;         /* shutdown(to, SHUT_WR) done */
    int blocked;      /* the last write would block: wait for POLLOUT */
    uint64_t bytes;   /* written to `to` */
} dir_t;

typedef struct {
    int used;
    unsigned long id;
    int fd[2];        /* 0: the client (accepted), 1: the target */
    int connecting;   /* the target's connect is in progress */
    dir_t d[2];       /* d[0]: client -> target, d[1]: target -> client */
    int64_t start_ns;
} conn_t;

typedef struct {
    uint64_t accepted, connect_failed, closed, errors;
    uint64_t bytes_to_target, bytes_to_client;
    size_t held_max;
    int64_t late_max_ns;
    uint64_t releases, late_over_1ms, late_over_5ms; /* writes when due (not after a block) */
    uint64_t serial; /* stats files written */
} stats_t;

static volatile sig_atomic_t g_stop, g_dump;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        g_dump = 1;
    else
        g_stop = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: delay_proxy --listen [ADDR:]PORT --target [ADDR:]PORT --delay-ms RTT\n"
            "                   [--buffer-kib N] [--max-conns N] [--stats FILE]\n"
            "                   [--listen-netns NAME] [--verbose]\n"
            "\n"
            "A TCP proxy holding what it forwards RTT/2 in each direction (ADDR defaults to\n"
            "127.0.0.1). --buffer-kib: bytes held per direction and connection at most (16384);\n"
            "--max-conns: connections at once (64); --stats FILE: counters, rewritten while they\n"
            "change, on SIGUSR1 and at exit; --listen-netns NAME: listen inside /run/netns/NAME.\n"
            "SIGTERM or SIGINT ends it.\n");
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
    char host[64] = "127.0.0.1";
    const char *colon = strrchr(s, ':');
    const char *port = s;
    if (colon) {
        size_t n = (size_t)(colon - s);
        if (n == 0 || n >= sizeof host)
            return -1;
        memcpy(host, s, n);
        host[n] = '\0';
        port = colon + 1;
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (errno || *end || end == port || p < 1 || p > 65535)
        return -1;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)p);
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    int have_listen = 0, have_target = 0, have_delay = 0;
    long buffer_kib = 16384;
    memset(o, 0, sizeof *o);
    o->max_conns = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "delay_proxy: %s needs a value\n", a);
            return -1;
        }
        i++;
        int bad = 0;
        if (strcmp(a, "--listen") == 0)
            bad = parse_addr(v, &o->listen), have_listen = 1;
        else if (strcmp(a, "--target") == 0)
            bad = parse_addr(v, &o->target), have_target = 1;
        else if (strcmp(a, "--delay-ms") == 0)
            bad = parse_long(v, 0, 60000, &o->delay_ms), have_delay = 1;
        else if (strcmp(a, "--buffer-kib") == 0)
            bad = parse_long(v, 4, 1024 * 1024, &buffer_kib);
        else if (strcmp(a, "--max-conns") == 0)
            bad = parse_long(v, 1, CONNS_MAX_LIMIT, &o->max_conns);
        else if (strcmp(a, "--stats") == 0)
            o->stats_file = v;
        else if (strcmp(a, "--listen-netns") == 0)
            o->netns = v;
        else {
            fprintf(stderr, "delay_proxy: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "delay_proxy: %s %s: not valid\n", a, v);
            return -1;
        }
    }
    if (!have_listen || !have_target || !have_delay) {
        fprintf(stderr, "delay_proxy: --listen, --target and --delay-ms are required\n");
        return -1;
    }
    o->buffer = (size_t)buffer_kib * 1024;
    o->half_ns = o->delay_ms * 1000000LL / 2;
    return 0;
}

/* ---- stats ------------------------------------------------------------------------------ */

static void stats_write(const opts_t *o, stats_t *st, long open_conns, int final)
{
    st->serial++;
    if (!o->stats_file)
        return;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->stats_file);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "delay_proxy: %s: %s\n", tmp, strerror(errno));
        return;
    }
    fprintf(f,
            "delay_ms %ld\nbuffer_bytes %zu\nconnections_accepted %" PRIu64 "\n"
            "connections_open %ld\n"
            "connect_failed %" PRIu64 "\nconnections_closed %" PRIu64 "\nerrors %" PRIu64 "\n"
            "bytes_to_target %" PRIu64 "\nbytes_to_client %" PRIu64 "\nheld_max_bytes %zu\n"
            "late_max_us %" PRId64 "\nreleases %" PRIu64 "\nlate_over_1ms %" PRIu64 "\n"
            "late_over_5ms %" PRIu64 "\nserial %" PRIu64 "\nfinal %d\n",
            o->delay_ms, o->buffer, st->accepted, open_conns,
            st->connect_failed, st->closed, st->errors, st->bytes_to_target,
            st->bytes_to_client, st->held_max, st->late_max_ns / 1000, st->releases,
            st->late_over_1ms, st->late_over_5ms, st->serial, final);
    if (fclose(f) != 0 || rename(tmp, o->stats_file) != 0)
        fprintf(stderr, "delay_proxy: %s: %s\n", o->stats_file, strerror(errno));
}

/* ---- sockets ------------------------------------------------------------------------------ */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* The listening socket, inside the network namespace netns when given. */
static int listen_open(const opts_t *o)
{
    int orig = -1;
    if (o->netns) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "/run/netns/%s", o->netns);
        int nsfd = open(path, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0) {
            fprintf(stderr, "delay_proxy: %s: %s\n", path, strerror(errno));
            return -1;
        }
        orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (orig < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
            fprintf(stderr, "delay_proxy: entering network namespace %s: %s\n", o->netns,
                    strerror(errno));
            close(nsfd);
            if (orig >= 0)
                close(orig);
            return -1;
        }
        close(nsfd);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    int rc = fd < 0 ? -1 : 0;
    if (rc == 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (rc == 0 && (bind(fd, (const struct sockaddr *)&o->listen, sizeof o->listen) != 0 ||
                    listen(fd, 128) != 0 || set_nonblock(fd) != 0))
        rc = -1;
    if (rc != 0) {
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &o->listen.sin_addr, a, sizeof a);
        fprintf(stderr, "delay_proxy: listen on %s:%u: %s\n", a, ntohs(o->listen.sin_port),
                strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    if (orig >= 0) {
        if (setns(orig, CLONE_NEWNET) != 0) {
            fprintf(stderr, "delay_proxy: back to the first network namespace: %s\n",
                    strerror(errno));
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
        close(orig);
    }
    return fd;
}

/* ---- connections ---------------------------------------------------------------------- */

static void conn_close(const opts_t *o, stats_t *st, conn_t *c, const char *why)
{
    if (o->verbose)
        fprintf(stderr, "delay_proxy: connection %lu closed (%s): %" PRIu64 " bytes to the "
                "target, %" PRIu64 " to the client, %.3f s\n", c->id, why, c->d[0].bytes,
                c->d[1].bytes, (double)(now_ns() - c->start_ns) / 1e9);
    for (int k = 0; k < 2; k++) {
        if (c->fd[k] >= 0)
            close(c->fd[k]);
        free(c->d[k].buf);
    }
    memset(c, 0, sizeof *c);
    c->fd[0] = c->fd[1] = -1;
    st->closed++;
}

/* Read what `from` has into d (one segment per read); 1 when the connection must close. */
static int dir_read(const opts_t *o, stats_t *st, dir_t *d, int from, int64_t now)
{
    if (!d->buf && !(d->buf = malloc(o->buffer))) {
        st->errors++;
        return 1;
    }
    while (!d->eof && d->len < o->buffer && d->nseg < SEGS_MAX) {
        size_t tail = (d->head + d->len) % o->buffer;
        size_t room = tail >= d->head && d->len < o->buffer ? o->buffer - tail : d->head - tail;
        if (d->len == 0) { /* empty: start at 0, the whole buffer is one piece */
            d->head = tail = 0;
            room = o->buffer;
        }
        ssize_t n = read(from, d->buf + tail, room);
        if (n > 0) {
            d->len += (size_t)n;
            size_t last = (d->shead + d->nseg - 1) % SEGS_MAX;
            if (d->nseg && d->segs[last].due_ns == now + o->half_ns &&
                d->segs[last].len + (uint64_t)n <= UINT32_MAX) {
                d->segs[last].len += (uint32_t)n; /* the same instant: one segment */
            } else {
                seg_t *s = &d->segs[(d->shead + d->nseg) % SEGS_MAX];
                s->due_ns = now + o->half_ns;
                s->len = (uint32_t)n;
                d->nseg++;
            }
            if (d->len > st->held_max)
                st->held_max = d->len;
            if ((size_t)n < room)
                break;
            continue;
        }
        if (n == 0) {
            d->eof = 1;
            d->eof_due = now + o->half_ns;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        return 1; /* ECONNRESET and the like: the other side is reset too (closed) */
    }
    return 0;
}

/* Write d's due bytes to `to`; 1 when the connection must close. */
static int dir_flush(const opts_t *o, stats_t *st, dir_t *d, int to, int64_t now, int to_target)
{
    int was_blocked = d->blocked;
    d->blocked = 0;
    while (d->nseg && d->segs[d->shead].due_ns <= now) {
        seg_t *s = &d->segs[d->shead];
        int64_t late = now - s->due_ns; /* the proxy's own lateness, not the receiver's */
        if (!was_blocked) {
            if (late > st->late_max_ns)
                st->late_max_ns = late;
            st->releases++;
            st->late_over_1ms += late > 1000000;
            st->late_over_5ms += late > 5000000;
            was_blocked = 1; /* the segments after it in this call are no later */
        }
        size_t n = s->len;
        if (n > o->buffer - d->head)
            n = o->buffer - d->head;
        ssize_t w = send(to, d->buf + d->head, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                d->blocked = 1;
                return 0;
            }
            return 1;
        }
        d->head = (d->head + (size_t)w) % o->buffer;
        d->len -= (size_t)w;
        d->bytes += (uint64_t)w;
        if (to_target)
            st->bytes_to_target += (uint64_t)w;
        else
            st->bytes_to_client += (uint64_t)w;
        s->len -= (uint32_t)w;
        if (s->len == 0) {
            d->shead = (d->shead + 1) % SEGS_MAX;
            d->nseg--;
        }
    }
    if (d->eof && !d->shut && d->nseg == 0 && d->eof_due <= now) {
        (void)shutdown(to, SHUT_WR);
        d->shut = 1;
    }
    return 0;
}

/* The earliest moment d has something to do without a socket event (INT64_MAX: none). */
static int64_t dir_next(const dir_t *d)
{
    if (d->blocked)
        return INT64_MAX;
    if (d->nseg)
        return d->segs[d->shead].due_ns;
    if (d->eof && !d->shut)
        return d->eof_due;
    return INT64_MAX;
}

static void conn_accept(const opts_t *o, stats_t *st, conn_t *conns, long *nopen, int lfd,
                        unsigned long *next_id)
{
    while (*nopen < o->max_conns) { /* the rest wait in the listen backlog */
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                fprintf(stderr, "delay_proxy: accept: %s\n", strerror(errno));
            return;
        }
        conn_t *c = NULL;
        for (long i = 0; i < o->max_conns; i++)
            if (!conns[i].used) {
                c = &conns[i];
                break;
            }
        int tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (!c || tfd < 0) {
            close(cfd);
            if (tfd >= 0)
                close(tfd);
            st->errors++;
            continue;
        }
        set_nodelay(cfd);
        set_nodelay(tfd);
        memset(c, 0, sizeof *c);
        c->used = 1;
        c->id = (*next_id)++;
        c->fd[0] = cfd;
        c->fd[1] = tfd;
        c->start_ns = now_ns();
        st->accepted++;
        (*nopen)++;
        if (connect(tfd, (const struct sockaddr *)&o->target, sizeof o->target) != 0) {
            if (errno != EINPROGRESS) {
                st->connect_failed++;
                fprintf(stderr, "delay_proxy: connect to the target: %s\n", strerror(errno));
                conn_close(o, st, c, "connect failed");
                (*nopen)--;
                continue;
            }
            c->connecting = 1;
        }
        if (o->verbose)
            fprintf(stderr, "delay_proxy: connection %lu accepted\n", c->id);
    }
}

int main(int argc, char **argv)
{
    opts_t o;
    if (parse_opts(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The signals are blocked but inside ppoll: none is lost between a check and a wait. */
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGUSR1);

    int lfd = listen_open(&o);
    if (lfd < 0)
        return 2;
    conn_t *conns = calloc((size_t)o.max_conns, sizeof *conns);
    struct pollfd *pfd = calloc((size_t)o.max_conns * 2 + 1, sizeof *pfd);
    int *pconn = calloc((size_t)o.max_conns * 2 + 1, sizeof *pconn);
    if (!conns || !pfd || !pconn) {
        fprintf(stderr, "delay_proxy: out of memory\n");
        return 2;
    }
    for (long i = 0; i < o.max_conns; i++)
        conns[i].fd[0] = conns[i].fd[1] = -1;
    stats_t st;
    memset(&st, 0, sizeof st);
    long nopen = 0;
    unsigned long next_id = 1;
    {
        char la[INET_ADDRSTRLEN], ta[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &o.listen.sin_addr, la, sizeof la);
        inet_ntop(AF_INET, &o.target.sin_addr, ta, sizeof ta);
        fprintf(stderr, "delay_proxy: %s:%u%s%s -> %s:%u, RTT %ld ms (%ld ms each way), "
                "%zu KiB held per direction and connection at most\n", la,
                ntohs(o.listen.sin_port), o.netns ? " in netns " : "", o.netns ? o.netns : "",
                ta, ntohs(o.target.sin_port), o.delay_ms, o.delay_ms / 2, o.buffer / 1024);
    }
    stats_write(&o, &st, 0, 0);

    while (!g_stop) {
        int64_t now = now_ns();
        /* due writes and EOFs first: they free buffer room for the reads */
        for (long i = 0; i < o.max_conns; i++) {
            conn_t *c = &conns[i];
            if (!c->used || c->connecting)
                continue;
            int bad = 0;
            for (int k = 0; k < 2 && !bad; k++)
                if (!c->d[k].blocked)
                    bad = dir_flush(&o, &st, &c->d[k], c->fd[1 - k], now, k == 0);
            if (bad || (c->d[0].shut && c->d[1].shut)) {
                conn_close(&o, &st, c, bad ? "write error" : "both ways ended");
                nopen--;
            }
        }
        if (g_dump) {
            g_dump = 0;
            stats_write(&o, &st, nopen, 0);
        }
        /* the poll set */
        nfds_t n = 0;
        int64_t next = INT64_MAX;
        if (nopen < o.max_conns) {
            pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
            pconn[n++] = -1;
        }
        for (long i = 0; i < o.max_conns; i++) {
            conn_t *c = &conns[i];
            if (!c->used)
                continue;
            for (int k = 0; k < 2; k++) { /* fd k: read for d[k], write for d[1-k] */
                short ev = 0;
                if (k == 1 && c->connecting) {
                    ev = POLLOUT;
                } else if (!c->connecting) {
                    dir_t *in = &c->d[k], *out = &c->d[1 - k];
                    if (!in->eof && in->len < o.buffer && in->nseg < SEGS_MAX)
                        ev |= POLLIN;
                    if (out->blocked)
                        ev |= POLLOUT;
                    int64_t t = dir_next(out);
                    if (t < next)
                        next = t;
                }
                /* an fd with nothing wanted is left out: its POLLHUP would wake us in a loop */
                pfd[n] = (struct pollfd){.fd = ev ? c->fd[k] : -1, .events = ev};
                pconn[n++] = (int)(i * 2 + k);
            }
        }
        struct timespec ts, *tsp = NULL;
        if (next != INT64_MAX) {
            int64_t wait = next - now_ns();
            if (wait < 0)
                wait = 0;
            ts.tv_sec = (time_t)(wait / 1000000000LL);
            ts.tv_nsec = (long)(wait % 1000000000LL);
            tsp = &ts;
        }
        int r = ppoll(pfd, n, tsp, &waitmask);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "delay_proxy: poll: %s\n", strerror(errno));
            break;
        }
        now = now_ns();
        for (nfds_t j = 0; j < n && r > 0; j++) {
            if (!pfd[j].revents)
                continue;
            if (pconn[j] < 0) {
                conn_accept(&o, &st, conns, &nopen, lfd, &next_id);
                continue;
            }
            conn_t *c = &conns[pconn[j] / 2];
            int k = pconn[j] % 2;
            if (!c->used || c->fd[k] != pfd[j].fd)
                continue; /* closed (or reused) by an earlier event in this round */
            int bad = 0;
            if (k == 1 && c->connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
                    st.connect_failed++;
                    fprintf(stderr, "delay_proxy: connect to the target: %s\n",
                            strerror(err ? err : errno));
                    conn_close(&o, &st, c, "connect failed");
                    nopen--;
                    continue;
                }
                c->connecting = 0;
                continue;
            }
            short rev = pfd[j].revents, want = pfd[j].events;
            if (rev & POLLERR) {
                bad = 1; /* reset: the other side is reset too (closed) */
            } else {
                if ((rev & (POLLIN | POLLHUP)) && (want & POLLIN))
                    bad = dir_read(&o, &st, &c->d[k], c->fd[k], now);
                if (!bad && (rev & POLLOUT))
                    bad = dir_flush(&o, &st, &c->d[1 - k], c->fd[k], now, k == 1);
                if (!bad && (rev & POLLHUP) && !(want & POLLIN))
                    bad = 1; /* gone both ways while bytes wait for it */
            }
            if (bad) {
                conn_close(&o, &st, c, "reset or error");
                nopen--;
            }
        }
    }
    for (long i = 0; i < o.max_conns; i++)
        if (conns[i].used) {
            conn_close(&o, &st, &conns[i], "proxy stopped");
            nopen--;
        }
    close(lfd);
    stats_write(&o, &st, 0, 1);
    fprintf(stderr, "delay_proxy: stopped: %" PRIu64 " connections, %" PRIu64 " bytes to the "
            "target, %" PRIu64 " to the client, %zu bytes held at most, releases %" PRId64
            " us late at most\n", st.accepted, st.bytes_to_target, st.bytes_to_client,
            st.held_max, st.late_max_ns / 1000);
    free(conns);
    free(pfd);
    free(pconn);
    return 0;
}
