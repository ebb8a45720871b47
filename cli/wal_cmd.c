/* barque wal-push / wal-get (wal_cmd.h). */
#include "wal_cmd.h"

#include "clock.h"
#include "fsutil.h"
#include "types.h"
#include "walfile.h"
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define DP_CONNECT_MS 5000   /* a worker's data port: the CURVE handshake */
#define DP_REPLY_MS 60000    /* a reply (archiving a segment is one fsync or three) */
#define DP_WINDOW 8          /* wal-put pieces in flight */
#define WAL_FILE_MAX ((size_t)1 << 30)

/* ---- helpers -------------------------------------------------------------------------- */

static int say(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int say(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "barque: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return status;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void dir_name(const char *path, char *out, size_t cap)
{
    const char *s = strrchr(path, '/');
    if (!s)
        snprintf(out, cap, ".");
    else if (s == path)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(s - path), path);
}

/* Read a whole file (at most WAL_FILE_MAX bytes) into a new buffer. */
static int file_read(const char *path, uint8_t **out, size_t *len, struct stat *st, bq_errbuf_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, errno == ENOENT ? BQ_E_NOTFOUND : BQ_E_IO, "could not open %s: %s",
                       path, strerror(errno));
    int rc = 0;
    if (fstat(fd, st) != 0)
        rc = bq_fail(e, BQ_E_IO, "could not stat %s: %s", path, strerror(errno));
    else if (!S_ISREG(st->st_mode))
        rc = bq_fail(e, BQ_E_INVAL, "%s is not a regular file", path);
    else if ((uint64_t)st->st_size > WAL_FILE_MAX)
        rc = bq_fail(e, BQ_E_TOOBIG, "%s is %lld bytes, larger than any WAL file", path,
                     (long long)st->st_size);
    uint8_t *b = rc ? NULL : malloc(st->st_size ? (size_t)st->st_size : 1);
    if (!rc && !b)
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory reading %s", path);
    size_t got = 0;
    while (!rc && got < (size_t)st->st_size) {
        ssize_t n = read(fd, b + got, (size_t)st->st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = bq_fail(e, BQ_E_IO, "could not read %s: %s", path, n ? strerror(errno)
                                                                      : "it shrank while read");
        else
            got += (size_t)n;
    }
    close(fd);
    if (rc) {
        free(b);
        return rc;
    }
    *out = b;
    *len = got;
    return 0;
}

/* The lock file at path (created when absent) locked exclusively for this process: its fd,
 * or -1 when another process holds it or it cannot be opened. */
static int lock_try(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* The wal_segment_size of the cluster a WAL file belongs to: from its own first page for a
 * segment, else from a segment beside it (pg_wal), else 16 MiB. */
static uint32_t seg_size_of(const char *name, const uint8_t *buf, size_t len, const char *dir)
{
    pg_wal_page_t pg;
    bq_errbuf_t e;
    if (strlen(name) >= 24 && strspn(name, "0123456789ABCDEF") >= 24 &&
        pg_wal_page_parse(buf, len, &pg, &e) == 0 && pg.long_header)
        return pg.seg_size;
    DIR *d = opendir(dir);
    uint32_t size = 16u << 20;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (strlen(de->d_name) != 24 || strspn(de->d_name, "0123456789ABCDEF") != 24)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        uint8_t head[64];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, head, sizeof head) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0 && pg_wal_page_parse(head, (size_t)n, &pg, &e) == 0 && pg.long_header) {
            size = pg.seg_size;
            break;
        }
    }
    if (d)
        closedir(d);
    return size;
}

int wal_cmd_next_segment(const char *name, uint64_t seg_size, char out[25])
{
    uint32_t tli, hi, lo;
    if (bq_wal_segment_parse(name, &tli, &hi, &lo) != 0 || seg_size < (1u << 20) ||
        seg_size > ((uint64_t)1 << 30) || (seg_size & (seg_size - 1)))
        return -1;
    uint64_t per = ((uint64_t)1 << 32) / seg_size;
    if ((uint64_t)lo + 1 >= per) {
        if (hi == UINT32_MAX)
            return -1;
        hi++;
        lo = 0;
    } else {
        lo++;
    }
    snprintf(out, 25, "%08X%08X%08X", tli, hi, lo);
    return 0;
}

/* ---- the data port client --------------------------------------------------------------- */

typedef struct {
    proto_sock_t *sock;
    const bq_worker_t *w;
    uint64_t seq;
} dp_t;

static int dp_open(const wal_cmd_opts_t *o, const bq_worker_t *w, dp_t *dp, bq_errbuf_t *e)
{
    memset(dp, 0, sizeof *dp);
    dp->w = w;
    int rc = proto_client_connect(o->ctx, w->data_endpoint, w->public_key, o->keys, DP_CONNECT_MS,
                                  &dp->sock, e);
    if (rc) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        return bq_fail(e, rc, "the data port of worker %s: %s", w->name, why);
    }
    return 0;
}

static void dp_close(dp_t *dp)
{
    proto_sock_destroy(&dp->sock);
}

/* The next reply to a request from seq `from` on, into m. */
static int dp_reply(dp_t *dp, uint64_t from, bq_msg_t *m, bq_errbuf_t *e)
{
    int64_t deadline = bq_mono_ms() + DP_REPLY_MS;
    for (int i = 0; i < 1000000; i++) {
        int64_t left = deadline - bq_mono_ms();
        if (left <= 0)
            break;
        int rc = proto_recv(dp->sock, NULL, m, (int)(left < 500 ? left : 500), e);
        if (rc == BQ_E_TIMEOUT)
            continue;
        if (rc)
            return rc;
        if (m->type != BQ_MSG_DATA_REPLY || m->seq < from) {
            proto_msg_clear(m);
            continue;
        }
        if (m->u.data_reply.code) {
            int code = m->u.data_reply.code;
            bq_fail(e, code, "worker %s: %s", dp->w->name, m->u.data_reply.error);
            proto_msg_clear(m);
            return code;
        }
        return 0;
    }
    return bq_fail(e, BQ_E_TIMEOUT, "worker %s did not answer within %d s", dp->w->name,
                   DP_REPLY_MS / 1000);
}

/* Send file name of cluster (raw_len bytes, packed by store_wal_pack into buf, len bytes) in
 * pieces; 0 once the worker's store holds it durably (*exists: it did already, with the same
 * content). */
static int dp_put(dp_t *dp, const char *cluster, const char *name, const uint8_t *buf, size_t len,
                  size_t raw_len, uint32_t seg_size, int *exists, bq_errbuf_t *e)
{
    uint64_t first = dp->seq + 1;
    size_t off = 0, inflight = 0;
    int sent_last = 0;
    *exists = 0;
    for (int guard = 0; guard < 10000000; guard++) {
        while (!sent_last && inflight < DP_WINDOW) {
            size_t piece = len - off > BQ_DATA_PIECE_MAX ? BQ_DATA_PIECE_MAX : len - off;
            bq_msg_t m = {.type = BQ_MSG_DATA_REQUEST, .seq = ++dp->seq};
            bq_msg_data_req_t *q = &m.u.data_req;
            snprintf(q->op, sizeof q->op, "wal-put");
            snprintf(q->cluster, sizeof q->cluster, "%s", cluster);
            snprintf(q->name, sizeof q->name, "%s", name);
            q->offset = off;
            q->total = len;
            q->data = (uint8_t *)buf + off;
            q->len = piece;
            q->seg_size = seg_size;
            q->packing = BQ_PACK_WAL;
            q->raw_size = raw_len;
            off += piece;
            q->last = sent_last = off == len;
            int rc = proto_send(dp->sock, NULL, &m, e);
            if (rc)
                return rc;
            inflight++;
        }
        bq_msg_t r;
        int rc = dp_reply(dp, first, &r, e);
        if (rc)
            return rc;
        int last = r.u.data_reply.last;
        *exists = r.u.data_reply.exists;
        proto_msg_clear(&r);
        if (last)
            return 0;
        inflight--;
    }
    return bq_fail(e, BQ_E_PROTO, "worker %s: too many replies", dp->w->name);
}

/* Fetch WAL file name of cluster into a new buffer; *partial: a segment still streaming. */
static int dp_get(dp_t *dp, const char *cluster, const char *name, uint8_t **out, size_t *len,
                  int *partial, bq_errbuf_t *e)
{
    bq_msg_t m = {.type = BQ_MSG_DATA_REQUEST, .seq = ++dp->seq};
    snprintf(m.u.data_req.op, sizeof m.u.data_req.op, "wal-get");
    snprintf(m.u.data_req.cluster, sizeof m.u.data_req.cluster, "%s", cluster);
    snprintf(m.u.data_req.name, sizeof m.u.data_req.name, "%s", name);
    int rc = proto_send(dp->sock, NULL, &m, e);
    if (rc)
        return rc;
    uint8_t *buf = NULL;
    uint64_t total = 0, got = 0;
    for (int guard = 0; guard < 100000; guard++) {
        bq_msg_t r;
        if ((rc = dp_reply(dp, m.seq, &r, e)) != 0)
            break;
        const bq_msg_data_reply_t *d = &r.u.data_reply;
        if (r.seq != m.seq) {
            proto_msg_clear(&r);
            continue;
        }
        if (!buf) {
            total = d->total;
            if (total > WAL_FILE_MAX || !(buf = malloc(total ? (size_t)total : 1))) {
                proto_msg_clear(&r);
                rc = bq_fail(e, BQ_E_NOMEM, "worker %s: WAL file %s of %" PRIu64 " bytes",
                             dp->w->name, name, total);
                break;
            }
        }
        if (d->total != total || d->offset != got || d->len > total - got) {
            proto_msg_clear(&r);
            rc = bq_fail(e, BQ_E_PROTO, "worker %s sent WAL file %s out of order", dp->w->name,
                         name);
            break;
        }
        memcpy(buf + got, d->data, d->len);
        got += d->len;
        *partial = d->partial;
        int last = d->last;
        proto_msg_clear(&r);
        if (last) {
            if (got != total)
                rc = bq_fail(e, BQ_E_PROTO, "worker %s sent %" PRIu64 " of %" PRIu64 " bytes of "
                             "%s", dp->w->name, got, total, name);
            break;
        }
    }
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = (size_t)got;
    return 0;
}

/* Ask the coordinator verb (wal-target or wal-source) for cluster; reply in r. */
static int ask(const wal_cmd_opts_t *o, const char *verb, const char *cluster, const char *name,
               bq_msg_t *r, bq_errbuf_t *e)
{
    bq_msg_cli_request_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.verb, sizeof q.verb, "%s", verb);
    snprintf(q.cluster, sizeof q.cluster, "%s", cluster);
    if (name)
        snprintf(q.wal_file, sizeof q.wal_file, "%s", name);
    if (o->from_site)
        snprintf(q.from_site, sizeof q.from_site, "%s", o->from_site);
    if (o->prefer_site)
        snprintf(q.prefer_site, sizeof q.prefer_site, "%s", o->prefer_site);
    return o->call(o->call_arg, &q, r, e);
}

/* ---- wal-push ------------------------------------------------------------------------- */

typedef struct {
    char path[PATH_MAX];
    const char *name;
    /* what its put did */
    int rc;
    bq_errbuf_t e;
    struct stat st;
    size_t bytes;
    int exists;
    const char *worker;
} push_file_t;

/* Push one file to the first candidate that takes it; *worker: which. dps: one connection
 * slot per candidate, the caller's (opened here when needed, kept open for the next file). */
static int put_one(const wal_cmd_opts_t *o, const char *cluster, const bq_msg_cli_reply_t *cand,
                   dp_t *dps, push_file_t *f)
{
    const char *name = f->name;
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t *e = &f->e;
    int rc = file_read(f->path, &buf, &len, &f->st, e);
    if (rc)
        return rc;
    char dir[PATH_MAX];
    dir_name(f->path, dir, sizeof dir);
    uint32_t seg = seg_size_of(name, buf, len, dir);
    /* compressed here, once: the worker stores the pieces as they come, and fewer bytes
     * cross the (CURVE) wire */
    uint8_t *packed = NULL;
    size_t plen = 0;
    if ((rc = store_wal_pack(buf, len, &packed, &plen, e)) != 0) {
        free(buf);
        return rc;
    }
    rc = BQ_E_NOWORKER;
    bq_errbuf_t last = {{0}};
    for (size_t i = 0; i < cand->nworkers; i++) {
        if (!dps[i].sock && (rc = dp_open(o, &cand->workers[i], &dps[i], &last)) != 0)
            continue;
        rc = dp_put(&dps[i], cluster, name, packed, plen, len, seg, &f->exists, &last);
        if (rc == 0) {
            f->worker = cand->workers[i].name;
            break;
        }
        /* the content is refused (another content is archived, a bad file): never put it in
         * another store; a worker gone or busy: the next one */
        if (rc != BQ_E_TIMEOUT && rc != BQ_E_NOWORKER && rc != BQ_E_ZMQ && rc != BQ_E_AUTH &&
            rc != BQ_E_NOMEM)
            break;
        dp_close(&dps[i]);
    }
    free(packed);
    free(buf);
    f->bytes = len;
    if (rc)
        bq_fail(e, rc, "could not archive WAL file %s of cluster %s: %s", name, cluster,
                last.msg[0] ? last.msg : bq_err_text(rc));
    return rc;
}

/* Record name (len bytes, in worker's store) in the coordinator's WAL index. */
static int record_one(const wal_cmd_opts_t *o, const char *cluster, const char *name,
                      const char *worker, size_t len, bq_errbuf_t *e)
{
    bq_errbuf_t last = {{0}};
    int rc;
    if (!bq_wal_name_valid(name))
        return 0; /* a .backup file: in the store, not in the WAL index (nothing replays it) */
    bq_msg_cli_request_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.verb, sizeof q.verb, "wal-pushed");
    snprintf(q.cluster, sizeof q.cluster, "%s", cluster);
    snprintf(q.wal_file, sizeof q.wal_file, "%s", name);
    snprintf(q.worker, sizeof q.worker, "%s", worker);
    q.wal_size = len;
    bq_msg_t r;
    rc = o->call(o->call_arg, &q, &r, &last);
    if (rc)
        return bq_fail(e, rc, "WAL file %s of cluster %s is in the store of worker %s, but the "
                       "coordinator did not record it: %s", name, cluster, worker, last.msg);
    proto_msg_clear(&r);
    return 0;
}

/* ---- wal-push --spool: the background pusher -------------------------------------------- */

/* With --spool DIR, as pgBackRest's archive-async: the call for a file the server has marked
 * ready (archive_status/NAME.ready) makes sure one pusher process runs for DIR (a lock) and
 * waits for DIR/NAME.ok or DIR/NAME.error. The pusher pushes every ready file, oldest first,
 * on PUSHER_THREADS connections at once, records each in the WAL index, and only then writes
 * its marker; so the server's later calls find their files done, while nothing is reported
 * archived that is not durable in a store and indexed. It ends after PUSHER_IDLE_MS with
 * nothing to push. */
#define PUSHER_THREADS 4
#define PUSHER_SLOTS 32
#define PUSHER_IDLE_MS 10000
#define PUSHER_MAX_MS (24LL * 3600 * 1000) /* then a new one takes over */
#define PUSH_WAIT_MS 60000                 /* a call waits this long for its file */
#define PUSHER_LOCK ".pusher.lock"
#define PUSHER_LOG "pusher.log"

/* The spool marker of a file pushed by the pusher: "SIZE MTIME_NS INODE". */
static void marker_text(const struct stat *st, char *out, size_t cap)
{
    snprintf(out, cap, "%lld %lld %llu\n", (long long)st->st_size,
             (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec,
             (unsigned long long)st->st_ino);
}

static void spool_path(const char *spool, const char *name, const char *ext, char *out,
                       size_t cap)
{
    snprintf(out, cap, "%s/%s%s", spool, name, ext);
}

enum { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

typedef struct {
    int state;
    char name[64];
    push_file_t f;
} pusher_slot_t;

typedef struct {
    const wal_cmd_opts_t *o;
    const char *cluster, *dir, *spool;
    const bq_msg_cli_reply_t *cand;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pusher_slot_t slots[PUSHER_SLOTS];
    int stop;
} pusher_t;

static void *pusher_thread(void *arg)
{
    pusher_t *p = arg;
    dp_t *dps = calloc(p->cand->nworkers ? p->cand->nworkers : 1, sizeof *dps);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        pusher_slot_t *next = NULL;
        for (int i = 0; i < PUSHER_SLOTS; i++) /* the oldest queued file first */
            if (p->slots[i].state == SLOT_QUEUED &&
                (!next || strcmp(p->slots[i].name, next->name) < 0))
                next = &p->slots[i];
        if (!next) {
            if (p->stop)
                break;
            pthread_cond_wait(&p->work, &p->mu);
            continue;
        }
        next->state = SLOT_BUSY;
        pthread_mutex_unlock(&p->mu);
        push_file_t *f = &next->f;
        f->rc = dps ? put_one(p->o, p->cluster, p->cand, dps, f)
                    : bq_fail(&f->e, BQ_E_NOMEM, "out of memory");
        pthread_mutex_lock(&p->mu);
        next->state = SLOT_DONE;
        pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; dps && i < p->cand->nworkers; i++)
        dp_close(&dps[i]);
    free(dps);
    return NULL;
}

/* Queue the ready files that have no marker, no error and no slot yet, oldest first, into the
 * free slots (under p->mu). The count queued. */
static int pusher_scan(pusher_t *p)
{
    char st_dir[PATH_MAX];
    snprintf(st_dir, sizeof st_dir, "%s/archive_status", p->dir);
    DIR *d = opendir(st_dir);
    if (!d)
        return 0;
    int nfree = 0;
    for (int i = 0; i < PUSHER_SLOTS; i++)
        nfree += p->slots[i].state == SLOT_FREE;
    /* the nfree oldest candidates: a small sorted list */
    char (*pick)[64] = calloc(PUSHER_SLOTS, sizeof *pick);
    int npick = 0;
    for (struct dirent *de; pick && nfree > 0 && (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        char name[64];
        if (l < 7 || l - 6 >= sizeof name || strcmp(de->d_name + l - 6, ".ready") != 0)
            continue;
        snprintf(name, sizeof name, "%.*s", (int)(l - 6), de->d_name);
        if (store_wal_name_parse(name, NULL, NULL, NULL) != 0)
            continue;
        int taken = 0;
        for (int i = 0; i < PUSHER_SLOTS && !taken; i++)
            taken = p->slots[i].state != SLOT_FREE && strcmp(p->slots[i].name, name) == 0;
        if (taken)
            continue;
        if (npick == nfree && strcmp(name, pick[npick - 1]) >= 0)
            continue;
        char mk[PATH_MAX];
        spool_path(p->spool, name, ".ok", mk, sizeof mk);
        if (access(mk, F_OK) == 0)
            continue;
        spool_path(p->spool, name, ".error", mk, sizeof mk);
        if (access(mk, F_OK) == 0)
            continue; /* reported; the server's next call for it removes it, then again */
        int at = npick < nfree ? npick++ : npick - 1;
        while (at > 0 && strcmp(pick[at - 1], name) > 0) {
            memcpy(pick[at], pick[at - 1], sizeof pick[at]);
            at--;
        }
        snprintf(pick[at], sizeof pick[at], "%s", name);
    }
    closedir(d);
    int queued = 0;
    for (int i = 0, k = 0; i < PUSHER_SLOTS && k < npick; i++) {
        pusher_slot_t *sl = &p->slots[i];
        if (sl->state != SLOT_FREE)
            continue;
        memset(sl, 0, sizeof *sl);
        snprintf(sl->name, sizeof sl->name, "%s", pick[k++]);
        char path[sizeof sl->f.path]; /* p->dir and the slot share p: no overlapping snprintf */
        snprintf(path, sizeof path, "%s/%s", p->dir, sl->name);
        memcpy(sl->f.path, path, sizeof path);
        sl->f.name = sl->name;
        sl->state = SLOT_QUEUED;
        queued++;
    }
    free(pick);
    return queued;
}

/* A marker for each file pushed and recorded; an error file for each that was not. 1 when
 * the failure is this process's (no worker takes files): the pusher then stops. */
static int pusher_finish(pusher_t *p, pusher_slot_t *sl)
{
    push_file_t *f = &sl->f;
    bq_errbuf_t fe = {{0}};
    int rc = f->rc ? f->rc : record_one(p->o, p->cluster, f->name, f->worker, f->bytes, &fe);
    char path[PATH_MAX];
    if (rc == 0) {
        char text[128];
        marker_text(&f->st, text, sizeof text);
        spool_path(p->spool, f->name, ".ok", path, sizeof path);
        rc = bq_file_write_durable(path, text, strlen(text), 0600, 0, &fe);
        if (rc == 0)
            return 0;
    }
    const char *msg = f->rc ? f->e.msg : fe.msg;
    fprintf(stderr, "barque: wal-push pusher: %s\n", msg);
    spool_path(p->spool, f->name, ".error", path, sizeof path);
    bq_file_write_durable(path, msg, strlen(msg), 0600, 0, &fe);
    return rc == BQ_E_NOWORKER || rc == BQ_E_TIMEOUT || rc == BQ_E_ZMQ || rc == BQ_E_AUTH;
}

/* Remove the markers of files the server no longer has ready (it marked them done). */
static void pusher_sweep(const char *spool, const char *dir)
{
    DIR *d = opendir(spool);
    for (struct dirent *de; d && (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l < 4 || l - 3 >= 64 || strcmp(de->d_name + l - 3, ".ok") != 0)
            continue;
        char ready[PATH_MAX], mk[PATH_MAX];
        snprintf(ready, sizeof ready, "%s/archive_status/%.*s.ready", dir, (int)(l - 3),
                 de->d_name);
        if (access(ready, F_OK) != 0 && errno == ENOENT) {
            snprintf(mk, sizeof mk, "%s/%s", spool, de->d_name);
            unlink(mk);
        }
    }
    if (d)
        closedir(d);
}

/* The pusher of spool for the server's WAL directory dir (the process wal-push starts). */
static int pusher_run(const wal_cmd_opts_t *o, const char *cluster, const char *dir)
{
    char lock[PATH_MAX];
    spool_path(o->spool, PUSHER_LOCK, "", lock, sizeof lock);
    int fd = lock_try(lock);
    if (fd < 0)
        return 0; /* another pusher is at work */
    /* who holds it, for the operator (and tests) to stop it by PID */
    char pid[24];
    int pl = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)pl, 0) != pl)
        fprintf(stderr, "barque: wal-push pusher: could not write its PID to %s: %s\n", lock,
                strerror(errno));
    pusher_sweep(o->spool, dir);
    bq_errbuf_t e = {{0}};
    bq_msg_t cr;
    int rc = ask(o, "wal-target", cluster, NULL, &cr, &e);
    if (rc) {
        /* said to the server's log by the call waiting for the oldest file */
        pusher_t tmp = {.o = o, .cluster = cluster, .dir = dir, .spool = o->spool};
        pthread_mutex_init(&tmp.mu, NULL);
        pusher_scan(&tmp);
        for (int i = 0; i < PUSHER_SLOTS; i++)
            if (tmp.slots[i].state == SLOT_QUEUED) {
                char path[PATH_MAX], msg[sizeof e.msg + 128];
                snprintf(msg, sizeof msg, "could not archive WAL file %s of cluster %s: %s",
                         tmp.slots[i].name, cluster, e.msg);
                spool_path(o->spool, tmp.slots[i].name, ".error", path, sizeof path);
                bq_file_write_durable(path, msg, strlen(msg), 0600, 0, &e);
                break;
            }
        pthread_mutex_destroy(&tmp.mu);
        close(fd);
        return 1;
    }
    pusher_t *p = calloc(1, sizeof *p);
    if (!p) {
        proto_msg_clear(&cr);
        close(fd);
        return 1;
    }
    p->o = o;
    p->cluster = cluster;
    p->dir = dir;
    p->spool = o->spool;
    p->cand = &cr.u.cli_reply;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    pthread_t tids[PUSHER_THREADS];
    int nt = 0;
    for (; nt < PUSHER_THREADS; nt++)
        if (pthread_create(&tids[nt], NULL, pusher_thread, p) != 0)
            break;
    int64_t start = bq_mono_ms(), idle_since = start, swept = start;
    int fatal = nt == 0;
    pthread_mutex_lock(&p->mu);
    for (long round = 0; !fatal && round < 100000000L; round++) {
        /* what is done: recorded (the coordinator's socket is this thread's) and marked */
        for (int i = 0; i < PUSHER_SLOTS && !fatal; i++) {
            pusher_slot_t *sl = &p->slots[i];
            if (sl->state != SLOT_DONE)
                continue;
            pthread_mutex_unlock(&p->mu);
            fatal = pusher_finish(p, sl);
            pthread_mutex_lock(&p->mu);
            sl->state = SLOT_FREE;
        }
        int busy = 0;
        for (int i = 0; i < PUSHER_SLOTS; i++)
            busy += p->slots[i].state != SLOT_FREE;
        int64_t now = bq_mono_ms();
        if (now - swept > 1000) { /* file I/O: not under the lock the threads take work by */
            pthread_mutex_unlock(&p->mu);
            pusher_sweep(p->spool, p->dir);
            pthread_mutex_lock(&p->mu);
            swept = now;
        }
        if (busy < 2 * PUSHER_THREADS && pusher_scan(p) > 0) {
            pthread_cond_broadcast(&p->work);
            busy = 1;
        }
        if (busy)
            idle_since = now;
        else if (now - idle_since > PUSHER_IDLE_MS || now - start > PUSHER_MAX_MS)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->done, &p->mu, &ts);
    }
    /* stopping: no new file starts; what is under way finishes and is marked */
    for (int i = 0; i < PUSHER_SLOTS; i++)
        if (p->slots[i].state == SLOT_QUEUED)
            p->slots[i].state = SLOT_FREE;
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int t = 0; t < nt; t++)
        pthread_join(tids[t], NULL);
    for (int i = 0; i < PUSHER_SLOTS; i++)
        if (p->slots[i].state == SLOT_DONE)
            pusher_finish(p, &p->slots[i]);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
    proto_msg_clear(&cr);
    close(fd);
    return fatal;
}

/* Start this program again, detached (its own session, stdin and stdout /dev/null, stderr
 * appended to log when given): args follow "-c CONFIG". */
static int spawn_self(const wal_cmd_opts_t *o, const char *const *args, const char *log,
                      const char *what)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    const char *argv[24];
    int a = 0;
    argv[a++] = self;
    if (o->config) {
        argv[a++] = "-c";
        argv[a++] = o->config;
    }
    for (int i = 0; args[i] && a < 23; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    posix_spawnattr_t at;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (log)
        posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, self, &fa, &at, (char *const *)argv, environ);
    if (rc != 0)
        fprintf(stderr, "barque: could not start the %s: %s\n", what, strerror(rc));
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rc ? -1 : 0;
}

/* Is a pusher at work for spool (holding its lock)? */
static int pusher_alive(const char *spool)
{
    char lock[PATH_MAX];
    spool_path(spool, PUSHER_LOCK, "", lock, sizeof lock);
    int fd = lock_try(lock);
    if (fd < 0)
        return access(lock, F_OK) == 0; /* held by another (or it cannot be opened: none) */
    close(fd); /* it was free: released again */
    return 0;
}

/* The marker of name is there and describes the file at path: 1. It stays until the server
 * has marked the file done (pusher_sweep): removed now, the pusher would find the file still
 * ready and push it again. A marker of another file by that name is removed. */
static int marker_take(const char *spool, const char *name, const char *path)
{
    char marker[PATH_MAX], *text = NULL, now[128];
    size_t tlen = 0;
    bq_errbuf_t e;
    spool_path(spool, name, ".ok", marker, sizeof marker);
    if (bq_file_read_small(marker, 128, &text, &tlen, &e) != 0)
        return 0;
    struct stat st;
    int same = stat(path, &st) == 0 && (marker_text(&st, now, sizeof now), 1) &&
               strcmp(now, text) == 0;
    free(text);
    if (!same)
        unlink(marker);
    return same;
}

/* The call for a ready file with --spool: a pusher pushes it; wait for its marker. */
static int push_wait(const wal_cmd_opts_t *o, const char *cluster, const char *path,
                     const char *name, const char *dir)
{
    int64_t start = bq_mono_ms(), spawned_at = -1;
    int spawns = 0;
    const char *args[] = {"wal-push", cluster, path, "--spool", o->spool, "--spool-pusher",
                          NULL};
    char log[PATH_MAX], errf[PATH_MAX];
    spool_path(o->spool, PUSHER_LOG, "", log, sizeof log);
    spool_path(o->spool, name, ".error", errf, sizeof errf);
    (void)dir;
    long nap_us = 1000;
    for (long i = 0; i < 10000000L; i++) {
        if (marker_take(o->spool, name, path)) {
            if (o->json)
                printf("{\"cluster\":\"%s\",\"wal_file\":\"%s\",\"from_spool\":true}\n",
                       cluster, name);
            return 0;
        }
        char *text = NULL;
        size_t tlen = 0;
        bq_errbuf_t e;
        if (bq_file_read_small(errf, BQ_ERRMSG_MAX, &text, &tlen, &e) == 0) {
            unlink(errf); /* the pusher tries it again after this */
            int st = say(1, "wal-push: %.*s", (int)tlen, text);
            free(text);
            return st;
        }
        int64_t now = bq_mono_ms();
        if (now - start > PUSH_WAIT_MS)
            return say(1, "wal-push: WAL file %s of cluster %s was not archived within %d s by "
                       "the pusher of spool %s (its log: %s)", name, cluster, PUSH_WAIT_MS / 1000,
                       o->spool, log);
        /* none at work (never started, or it ended): start one; give it 1 s to take its lock */
        if ((spawned_at < 0 || now - spawned_at > 1000) && !pusher_alive(o->spool)) {
            if (spawns == 5)
                return say(1, "wal-push: the pusher of spool %s ended %d times without "
                           "archiving WAL file %s of cluster %s (its log: %s)", o->spool, spawns,
                           name, cluster, log);
            if (spawn_self(o, args, log, "wal-push pusher") != 0)
                return say(1, "wal-push: could not start the pusher of spool %s", o->spool);
            spawns++;
            spawned_at = now;
        }
        usleep((useconds_t)nap_us);
        if (nap_us < 10000)
            nap_us += 1000;
    }
    return say(1, "wal-push: WAL file %s: gave up waiting", name);
}

int wal_cmd_push(const wal_cmd_opts_t *o)
{
    const char *cluster = o->args[0], *path = o->args[1];
    const char *name = base_name(path);
    bq_errbuf_t e = {{0}};
    store_wal_kind_t kind;
    if (store_wal_name_parse(name, &kind, NULL, &e) != 0)
        return say(1, "wal-push: \"%s\" is not a WAL file name (a segment, .partial, .history or "
                   ".backup file: archive_command = 'barque wal-push %s %%p')", name, cluster);
    char dir[PATH_MAX];
    dir_name(path, dir, sizeof dir);
    if (o->spool) {
        if (bq_mkdir_p(o->spool, 0700, &e) != 0)
            return say(1, "wal-push: spool %s: %s", o->spool, e.msg);
        if (o->spool_pusher)
            return pusher_run(o, cluster, dir);
        char ready[PATH_MAX];
        snprintf(ready, sizeof ready, "%s/archive_status/%s.ready", dir, name);
        if (marker_take(o->spool, name, path)) {
            if (o->json)
                printf("{\"cluster\":\"%s\",\"wal_file\":\"%s\",\"from_spool\":true}\n",
                       cluster, name);
            return 0;
        }
        if (access(ready, F_OK) == 0)
            return push_wait(o, cluster, path, name, dir);
        /* not a file the server marked ready (by hand, say): pushed by this call */
    }
    bq_msg_t cr;
    int rc = ask(o, "wal-target", cluster, NULL, &cr, &e);
    if (rc)
        return say(1, "wal-push: could not archive WAL file %s of cluster %s: %s", name, cluster,
                   e.msg);
    const bq_msg_cli_reply_t *cand = &cr.u.cli_reply;
    push_file_t *f = calloc(1, sizeof *f);
    dp_t *dps = calloc(cand->nworkers ? cand->nworkers : 1, sizeof *dps);
    int status = 0;
    if (!f || !dps) {
        status = say(1, "wal-push: out of memory");
        goto out;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    f->name = name;
    bq_errbuf_t fe = {{0}};
    rc = f->rc = put_one(o, cluster, cand, dps, f);
    if (rc == 0)
        rc = record_one(o, cluster, f->name, f->worker, f->bytes, &fe);
    if (rc) {
        status = say(1, "wal-push: %s", f->rc || !fe.msg[0] ? f->e.msg : fe.msg);
        goto out;
    }
    if (o->json)
        printf("{\"cluster\":\"%s\",\"wal_file\":\"%s\",\"worker\":\"%s\",\"bytes\":%zu,"
               "\"already_archived\":%s}\n", cluster, name, f->worker, f->bytes,
               f->exists ? "true" : "false");
    if (f->exists)
        fprintf(stderr, "barque: wal-push: WAL file %s of cluster %s was already archived with "
                "the same content (worker %s)\n", name, cluster, f->worker);
out:
    for (size_t i = 0; dps && i < cand->nworkers; i++)
        dp_close(&dps[i]);
    free(dps);
    free(f);
    proto_msg_clear(&cr);
    return status;
}

/* ---- wal-get -------------------------------------------------------------------------- */

/* Fetch name from the candidates: 0 (buf, len, *partial), BQ_E_NOTFOUND when every worker
 * asked answered that it lacks it, another code when one could not be asked. */
static int fetch_any(const wal_cmd_opts_t *o, const char *cluster, const char *name,
                     const bq_msg_cli_reply_t *cand, dp_t *dps, uint8_t **buf, size_t *len,
                     int *partial, size_t *from, bq_errbuf_t *e)
{
    int worst = BQ_E_NOTFOUND;
    bq_errbuf_t why = {{0}};
    for (size_t i = 0; i < cand->nworkers; i++) {
        bq_errbuf_t one = {{0}};
        int rc = dps[i].sock ? 0 : dp_open(o, &cand->workers[i], &dps[i], &one);
        if (rc == 0)
            rc = dp_get(&dps[i], cluster, name, buf, len, partial, &one);
        if (rc == 0) {
            if (from)
                *from = i;
            return 0;
        }
        if (rc != BQ_E_NOTFOUND) {
            worst = rc;
            why = one;
            dp_close(&dps[i]);
        }
    }
    if (worst == BQ_E_NOTFOUND)
        return bq_fail(e, BQ_E_NOTFOUND, "WAL file %s of cluster %s is not in the archive "
                       "(asked %zu worker%s)", name, cluster, cand->nworkers,
                       cand->nworkers == 1 ? "" : "s");
    return bq_fail(e, worst, "could not fetch WAL file %s of cluster %s: %s", name, cluster,
                   why.msg);
}

/* Write buf to path: a temp file, fsync, rename. */
static int put_file(const char *path, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    return bq_file_write_durable(path, buf, len, 0600, 0, e);
}

/* Remove prefetched files before `name` (replay has passed them) and temp files. */
static void prefetch_trim(const char *pdir, const char *name)
{
    DIR *d = opendir(pdir);
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        if (strcmp(de->d_name, name) < 0 || strchr(de->d_name, '.')) {
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", pdir, de->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
}

/* The background prefetcher: segments after name (seg_size bytes each) into pdir, up to
 * o->prefetch of them; one at a time per directory (a lock). */
static int prefetch_run(const wal_cmd_opts_t *o, const char *cluster, const char *name,
                        const char *pdir)
{
    char lock[PATH_MAX];
    snprintf(lock, sizeof lock, "%s/.lock", pdir);
    int fd = lock_try(lock);
    if (fd < 0)
        return 0; /* another prefetcher is at work */
    char cur[25];
    snprintf(cur, sizeof cur, "%.24s", name);
    bq_msg_t cr;
    bq_errbuf_t e = {{0}};
    int have_cand = 0;
    dp_t *dps = NULL;
    for (int k = 0; k < o->prefetch; k++) {
        char next[25], path[PATH_MAX];
        if (wal_cmd_next_segment(cur, (uint64_t)o->prefetch_only, next) != 0)
            break;
        snprintf(cur, sizeof cur, "%s", next);
        snprintf(path, sizeof path, "%s/%s", pdir, next);
        if (access(path, F_OK) == 0)
            continue;
        if (!have_cand) {
            if (ask(o, "wal-source", cluster, next, &cr, &e) != 0)
                break;
            have_cand = 1;
            if (!(dps = calloc(cr.u.cli_reply.nworkers + 1, sizeof *dps)))
                break;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        int partial = 0;
        if (fetch_any(o, cluster, next, &cr.u.cli_reply, dps, &buf, &len, &partial, NULL, &e) != 0)
            break;
        /* a segment still streaming changes: never keep it ahead of replay */
        int rc = partial ? -1 : put_file(path, buf, len, &e);
        free(buf);
        if (rc)
            break;
    }
    if (have_cand) {
        for (size_t i = 0; dps && i < cr.u.cli_reply.nworkers; i++)
            dp_close(&dps[i]);
        proto_msg_clear(&cr);
    }
    free(dps);
    close(fd);
    return 0;
}

/* Start the prefetcher as a process of its own (this one ends when the file is delivered). */
static void prefetch_spawn(const wal_cmd_opts_t *o, const char *cluster, const char *name,
                           const char *dest, const char *pdir, size_t seg_size)
{
    char nbuf[16], sbuf[24];
    snprintf(nbuf, sizeof nbuf, "%d", o->prefetch);
    snprintf(sbuf, sizeof sbuf, "%zu", seg_size);
    const char *args[16] = {"wal-get", cluster, name, dest, "--prefetch", nbuf, "--spool", pdir,
                            "--prefetch-only", sbuf, NULL};
    size_t n = 10;
    if (o->from_site) {
        args[n++] = "--from-site";
        args[n++] = o->from_site;
    }
    if (o->prefer_site) {
        args[n++] = "--prefer-site";
        args[n++] = o->prefer_site;
    }
    args[n] = NULL;
    spawn_self(o, args, NULL, "wal-get prefetcher");
}

int wal_cmd_get(const wal_cmd_opts_t *o)
{
    const char *cluster = o->args[0], *name = o->args[1], *dest = o->args[2];
    bq_errbuf_t e = {{0}};
    if (!bq_wal_name_valid(name))
        return say(2, "wal-get: \"%s\" is not a WAL file name (restore_command = 'barque wal-get "
                   "%s %%f %%p')", name, cluster);
    char pdir[PATH_MAX];
    if (o->spool)
        snprintf(pdir, sizeof pdir, "%s", o->spool);
    else {
        char d[PATH_MAX];
        dir_name(dest, d, sizeof d);
        snprintf(pdir, sizeof pdir, "%s/.barque-prefetch", d);
    }
    if (o->prefetch_only)
        return prefetch_run(o, cluster, name, pdir);
    int is_seg = strlen(name) == 24;
    if (o->prefetch > 0 && is_seg) {
        if (bq_mkdir_p(pdir, 0700, &e) != 0)
            return say(2, "wal-get: prefetch directory %s: %s", pdir, e.msg);
        prefetch_trim(pdir, name);
        char ahead[PATH_MAX];
        snprintf(ahead, sizeof ahead, "%s/%s", pdir, name);
        struct stat st;
        if (stat(ahead, &st) == 0 && rename(ahead, dest) == 0) {
            prefetch_spawn(o, cluster, name, dest, pdir, (size_t)st.st_size);
            if (o->json)
                printf("{\"cluster\":\"%s\",\"wal_file\":\"%s\",\"bytes\":%lld,"
                       "\"prefetched\":true}\n", cluster, name, (long long)st.st_size);
            return 0;
        }
    }
    bq_msg_t cr;
    int rc = ask(o, "wal-source", cluster, name, &cr, &e);
    if (rc)
        return say(2, "wal-get: could not fetch WAL file %s of cluster %s: %s", name, cluster,
                   e.msg);
    const bq_msg_cli_reply_t *cand = &cr.u.cli_reply;
    dp_t *dps = calloc(cand->nworkers ? cand->nworkers : 1, sizeof *dps);
    uint8_t *buf = NULL;
    size_t len = 0;
    int partial = 0;
    size_t fi = 0;
    rc = dps ? fetch_any(o, cluster, name, cand, dps, &buf, &len, &partial, &fi, &e)
             : bq_fail(&e, BQ_E_NOMEM, "out of memory");
    const char *from = rc == 0 ? cand->workers[fi].name : "";
    for (size_t i = 0; dps && i < cand->nworkers; i++)
        dp_close(&dps[i]);
    int status = 0;
    if (rc == BQ_E_NOTFOUND && cand->found)
        status = say(2, "wal-get: %s, although the WAL index lists it: a store lost it?", e.msg);
    else if (rc == BQ_E_NOTFOUND)
        status = say(1, "wal-get: %s", e.msg);
    else if (rc)
        status = say(2, "wal-get: %s", e.msg);
    else if ((rc = put_file(dest, buf, len, &e)) != 0)
        status = say(2, "wal-get: could not write %s: %s", dest, e.msg);
    else {
        if (o->json)
            printf("{\"cluster\":\"%s\",\"wal_file\":\"%s\",\"bytes\":%zu,\"worker\":\"%s\","
                   "\"partial\":%s}\n", cluster, name, len, from, partial ? "true" : "false");
        if (o->prefetch > 0 && is_seg && !partial)
            prefetch_spawn(o, cluster, name, dest, pdir, len);
    }
    free(buf);
    free(dps);
    proto_msg_clear(&cr);
    return status;
}
