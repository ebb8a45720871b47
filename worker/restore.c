/* The restore job (worker/jobs.h): a backup of this worker's store written out as a data
 * directory that starts. The layout of a backup is worker/backup.c's:
 *     data/PATH            -> DEST/PATH
 *     tablespaces/OID/PATH -> the tablespace's directory (its location at backup time, or
 *                             where a "NAME:PATH" relocation puts it), linked from
 *                             DEST/pg_tblspc/OID
 *     wal/NAME             -> DEST/pg_wal/NAME (so the server recovers with no archive)
 * and data/backup_manifest lands in DEST, so pg_verifybackup DEST checks the result.
 *
 * Two passes over the backup: the manifest alone first (the facts: tablespaces and their
 * names; the total size; for --delta every path with its size and checksum), so every
 * refusal (unknown tablespace, DEST not empty, a server running in DEST) comes before a byte
 * is written; then the data. Only symlinks at pg_tblspc/OID are made; files are created with
 * O_EXCL (O_TRUNC under --delta) and O_NOFOLLOW, given their mode, owner and mtime, and each
 * filesystem written is synced (syncfs) before the job reports success. */
#include "jobs.h"

#include "clock.h"
#include "fsutil.h"
#include "log.h"
#include "peer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COMP "restore"
#define TS_MAX 256
#define PROGRESS_EVERY_MS 1000
#define RESTORE_THREADS_MAX 8
#define PIECE_CHUNKS 512 /* 32 MiB at 64 KiB chunks */

typedef struct {
    uint32_t oid;
    char name[BQ_NAME_MAX];
    char location[PATH_MAX]; /* at backup time */
    char target[PATH_MAX];   /* where it is restored */
} rts_t;

/* Paths of the backup under DEST and the tablespace targets (delta: what to keep). */
typedef struct {
    char *path;
    uint64_t size;
    uint8_t sum[32];
    int is_file;
} rent_t;

/* Where a thread reads chunks: its reader of the store, and when the backup is in a peer's
 * store, its client of that peer (bodies come sealed and are opened by the reader). */
typedef struct {
    store_reader_t *rd;
    peer_client_t *pc;
    peer_client_t *pcb; /* the bases of delta chunks, one at a time (made when needed) */
} rsrc_t;

typedef struct {
    const bq_job_t *job;
    jobs_ctx_t *ctx;
    store_t *store;       /* what is read: ctx->store, or the view of the peer's store */
    store_t *view;
    char view_dir[PATH_MAX];
    char where[BQ_NAME_MAX + 32]; /* "from worker NAME", for chunk messages */
    _Atomic uint64_t peer_bytes;
    atomic_int source_failed; /* the source store could not give a chunk or the backup */
    char dest[PATH_MAX];
    rts_t ts[TS_MAX];
    size_t nts;
    uid_t uid;
    gid_t gid;
    int do_chown;
    /* pass 1 */
    uint64_t total;
    rent_t *ents; /* open addressing on the path, delta only */
    size_t nents, ents_cap;
    /* pass 2, the walk (this thread): the entry being walked */
    int kind;     /* 0 none, 'f' file, 'd' directory, 'l' symlink */
    char cur[PATH_MAX];
    char bpath[PATH_MAX]; /* its path in the backup */
    uint32_t mode;
    int64_t mtime;
    char link[PATH_MAX];
    size_t link_len;
    struct rtask *task;   /* the file being listed */
    rsrc_t src;           /* this thread's (link targets) */
    /* the queue of files for the writer threads, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_pop, cv_push;
    struct rpiece *head, *tail;
    uint32_t chunk_size;
    size_t queued, queue_max, busy;
    int closing;
    int failed;           /* the first error (rc) of any thread, its message in err */
    bq_errbuf_t err;
    _Atomic uint64_t done;
    int64_t last_progress;
    uint64_t files, skipped, removed;
    int delta;            /* --delta, or continuing an earlier attempt of this job */
    int test_delay_ms;    /* BARQUE_TEST_RESTORE_FILE_DELAY_MS: a pause after each file (tests
                             kill a worker mid-restore) */
    int resumed;          /* DEST holds this job's marker: an earlier attempt's work */
    char marker[PATH_MAX + 32]; /* DEST/RESTORE_MARKER */
} rs_t;

/* In DEST while a restore job writes it: "job=ID\n". A retry of the same job (its worker
 * died) finds it and goes on as --delta instead of refusing a DEST that is not empty; the
 * restore removes it last, so a finished restore has none. */
#define RESTORE_MARKER ".barque-restore-in-progress"

/* A file for a writer thread: where, what, and its chunk ids. */
typedef struct rtask {
    struct rtask *next;
    char *path;  /* where it is written */
    char *bpath; /* its path in the backup */
    uint32_t mode;
    int64_t mtime;
    uint64_t size;
    uint8_t *ids;
    size_t nids, cap;
    int split;                    /* written in pieces, by several threads at once */
    _Atomic int pieces_left;      /* the last piece to end finishes the file and frees it */
    _Atomic uint64_t written;
    _Atomic int piece_failed;
} rtask_t;

/* What a writer thread takes: chunks [first, first + n) of a file. A file of more than
 * PIECE_CHUNKS chunks is cut into pieces written in parallel at their offsets (a 1 GiB
 * relation segment would otherwise take one thread alone). */
typedef struct rpiece {
    struct rpiece *next;
    rtask_t *t;
    size_t first, n;
} rpiece_t;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static rent_t *ent_find(rs_t *r, const char *path)
{
    if (r->ents_cap == 0)
        return NULL;
    for (size_t i = str_hash(path) & (r->ents_cap - 1);; i = (i + 1) & (r->ents_cap - 1)) {
        if (!r->ents[i].path)
            return NULL;
        if (strcmp(r->ents[i].path, path) == 0)
            return &r->ents[i];
    }
}

static rent_t *ent_add(rs_t *r, const char *path, bq_errbuf_t *e)
{
    if ((r->nents + 1) * 2 > r->ents_cap) {
        size_t cap = r->ents_cap ? r->ents_cap * 2 : 1024;
        rent_t *n = calloc(cap, sizeof *n);
        if (!n)
            return bq_fail(e, BQ_E_NOMEM, "out of memory listing the backup"), NULL;
        for (size_t i = 0; i < r->ents_cap; i++) {
            if (!r->ents[i].path)
                continue;
            size_t j = str_hash(r->ents[i].path) & (cap - 1);
            while (n[j].path)
                j = (j + 1) & (cap - 1);
            n[j] = r->ents[i];
        }
        free(r->ents);
        r->ents = n;
        r->ents_cap = cap;
    }
    size_t i = str_hash(path) & (r->ents_cap - 1);
    while (r->ents[i].path) {
        if (strcmp(r->ents[i].path, path) == 0)
            return &r->ents[i];
        i = (i + 1) & (r->ents_cap - 1);
    }
    if (!(r->ents[i].path = strdup(path)))
        return bq_fail(e, BQ_E_NOMEM, "out of memory listing the backup"), NULL;
    r->nents++;
    return &r->ents[i];
}

static rts_t *ts_find(rs_t *r, uint32_t oid)
{
    for (size_t i = 0; i < r->nts; i++)
        if (r->ts[i].oid == oid)
            return &r->ts[i];
    return NULL;
}

static rts_t *ts_get(rs_t *r, uint32_t oid, bq_errbuf_t *e)
{
    rts_t *t = ts_find(r, oid);
    if (t)
        return t;
    if (r->nts == TS_MAX)
        return bq_fail(e, BQ_E_TOOBIG, "the backup has more than %d tablespaces", TS_MAX), NULL;
    t = &r->ts[r->nts++];
    memset(t, 0, sizeof *t);
    t->oid = oid;
    return t;
}

/* "tablespace=OID LOCATION" and "tablespace_name=OID NAME" lines of pg.facts. */
static int facts_parse(rs_t *r, const char *val, size_t len, bq_errbuf_t *e)
{
    const char *p = val, *end = val + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[PATH_MAX + 64];
        if (n < sizeof line) {
            memcpy(line, p, n);
            line[n] = '\0';
            int loc = strncmp(line, "tablespace=", 11) == 0;
            int name = strncmp(line, "tablespace_name=", 16) == 0;
            if (loc || name) {
                char *rest = line + (loc ? 11 : 16), *sp = strchr(rest, ' ');
                char *endp = NULL;
                unsigned long oid = strtoul(rest, &endp, 10);
                if (!sp || endp != sp || oid == 0 || oid > UINT32_MAX)
                    return bq_fail(e, BQ_E_PROTO, "the backup's facts have a bad line: %s", line);
                rts_t *t = ts_get(r, (uint32_t)oid, e);
                if (!t)
                    return BQ_E_TOOBIG;
                if (loc)
                    snprintf(t->location, sizeof t->location, "%s", sp + 1);
                else
                    snprintf(t->name, sizeof t->name, "%s", sp + 1);
            }
        }
        p += n + 1;
    }
    return 0;
}

/* Where backup path bp goes; BQ_E_PROTO for a path outside the layout. */
static int map_path(rs_t *r, const char *bp, char *out, size_t size, bq_errbuf_t *e)
{
    int n = -1;
    if (strncmp(bp, "data/", 5) == 0) {
        n = snprintf(out, size, "%s/%s", r->dest, bp + 5);
    } else if (strncmp(bp, "wal/", 4) == 0 && !strchr(bp + 4, '/')) {
        n = snprintf(out, size, "%s/pg_wal/%s", r->dest, bp + 4);
    } else if (strncmp(bp, "tablespaces/", 12) == 0) {
        char *endp = NULL;
        unsigned long oid = strtoul(bp + 12, &endp, 10);
        rts_t *t = endp && *endp == '/' ? ts_find(r, (uint32_t)oid) : NULL;
        if (!t || !t->target[0])
            return bq_fail(e, BQ_E_PROTO, "the backup holds %s, of a tablespace it does not "
                           "describe", bp);
        n = snprintf(out, size, "%s/%s", t->target, endp + 1);
    }
    if (n < 0)
        return bq_fail(e, BQ_E_PROTO, "the backup holds %s, outside its layout", bp);
    if ((size_t)n >= size)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s", out);
    return 0;
}

/* ---- pass 1: the manifest ---- */

static int p1_meta(void *arg, const char *key, const void *val, size_t len, bq_errbuf_t *e)
{
    return strcmp(key, "pg.facts") == 0 ? facts_parse(arg, val, len, e) : 0;
}

static int p1_end(void *arg, const char *path, uint64_t size, const uint8_t sum[32],
                  bq_errbuf_t *e)
{
    rs_t *r = arg;
    r->total += size;
    if (!r->delta || strncmp(path, "tablespaces/", 12) == 0)
        return 0; /* tablespace paths are mapped once the targets are known (pass 1b) */
    char out[PATH_MAX];
    int rc = map_path(r, path, out, sizeof out, e);
    rent_t *en = rc == 0 ? ent_add(r, out, e) : NULL;
    if (!en)
        return rc ? rc : BQ_E_NOMEM;
    en->size = size;
    memcpy(en->sum, sum, 32);
    return 0;
}

/* Pass 1b (delta): the tablespaces' paths, now that targets are known. Files and directories
 * are told apart by mode, which file_begin gives. */
static int p1b_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    (void)mtime;
    rs_t *r = arg;
    char out[PATH_MAX];
    int rc = map_path(r, path, out, sizeof out, e);
    rent_t *en = rc == 0 ? ent_add(r, out, e) : NULL;
    if (!en)
        return rc ? rc : BQ_E_NOMEM;
    en->is_file = S_ISREG(mode);
    return 0;
}

static int p1b_end(void *arg, const char *path, uint64_t size, const uint8_t sum[32],
                   bq_errbuf_t *e)
{
    rs_t *r = arg;
    char out[PATH_MAX];
    int rc = map_path(r, path, out, sizeof out, e);
    rent_t *en = rc == 0 ? ent_find(r, out) : NULL;
    if (en) {
        en->size = size;
        memcpy(en->sum, sum, 32);
    }
    return rc;
}

/* ---- checks before anything is written ---- */

static int dir_empty(const char *path, int *empty, bq_errbuf_t *e)
{
    DIR *d = opendir(path);
    if (!d)
        return bq_fail(e, BQ_E_IO, "could not read %s: %s", path, strerror(errno));
    struct dirent *de;
    *empty = 1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            *empty = 0;
            break;
        }
    closedir(d);
    return 0;
}

/* path must be absent (its parent existing) or an empty directory (any directory when
 * delta); what: "destination", "tablespace X". */
static int target_check(rs_t *r, const char *path, const char *what, bq_errbuf_t *e)
{
    if (path[0] != '/')
        return bq_fail(e, BQ_E_INVAL, "%s %s is not an absolute path", what, path);
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return bq_fail(e, BQ_E_INVAL, "%s %s exists and is not a directory", what, path);
        int empty = 0, rc = dir_empty(path, &empty, e);
        if (rc != 0)
            return rc;
        if (!empty && !r->delta)
            return bq_fail(e, BQ_E_EXISTS, "%s %s is not empty (restore into an empty "
                           "directory, or use --delta to rewrite only what differs)", what, path);
        return 0;
    }
    if (errno == ENOTDIR)
        return bq_fail(e, BQ_E_INVAL, "%s %s: a component of its path is not a directory", what,
                       path);
    if (errno != ENOENT)
        return bq_fail(e, BQ_E_IO, "could not check %s %s: %s", what, path, strerror(errno));
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    if (stat(parent, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return bq_fail(e, BQ_E_NOTFOUND, "%s %s: its parent %s is not a directory", what, path,
                       parent);
    return 0;
}

static int owner_resolve(rs_t *r, bq_errbuf_t *e)
{
    if (r->job->owner[0]) {
        struct passwd pw, *res = NULL;
        char buf[4096];
        if (getpwnam_r(r->job->owner, &pw, buf, sizeof buf, &res) != 0 || !res)
            return bq_fail(e, BQ_E_NOTFOUND, "owner %s is not a user on worker %s", r->job->owner,
                           r->ctx->worker ? r->ctx->worker : "?");
        r->uid = pw.pw_uid;
        r->gid = pw.pw_gid;
    } else {
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", r->dest);
        char *slash = strrchr(parent, '/');
        if (slash == parent)
            slash[1] = '\0';
        else if (slash)
            *slash = '\0';
        struct stat sb;
        if (stat(parent, &sb) != 0)
            return bq_fail(e, BQ_E_NOTFOUND, "destination %s: its parent %s: %s", r->dest, parent,
                           strerror(errno));
        r->uid = sb.st_uid;
        r->gid = sb.st_gid;
    }
    if (r->uid != geteuid() || r->gid != getegid()) {
        if (geteuid() != 0)
            return bq_fail(e, BQ_E_PERM, "cannot give the restored files to uid %u: worker %s does "
                           "not run as root", (unsigned)r->uid, r->ctx->worker ? r->ctx->worker : "?");
        r->do_chown = 1;
    }
    return 0;
}

/* Targets of the tablespaces: relocations "NAME:PATH" (NAME or OID) first, else where they
 * were. */
static int relocate(rs_t *r, bq_errbuf_t *e)
{
    for (size_t i = 0; i < r->nts; i++)
        memcpy(r->ts[i].target, r->ts[i].location, sizeof r->ts[i].target);
    /* a first line "*:/DIR" (a restore test's copy in its scratch directory): every
     * tablespace to DIR/OID, unless a later line names it */
    if (strncmp(r->job->tablespaces, "*:", 2) == 0) {
        const char *all = r->job->tablespaces + 2;
        int n = (int)strcspn(all, "\n");
        if (all[0] != '/')
            return bq_fail(e, BQ_E_USAGE, "tablespace relocation \"*:%.*s\" is not "
                           "*:/ABSOLUTE/PATH", n, all);
        for (size_t i = 0; i < r->nts; i++)
            snprintf(r->ts[i].target, sizeof r->ts[i].target, "%.*s/%u", n, all, r->ts[i].oid);
    }
    const char *p = r->job->tablespaces;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[BQ_TEXT_MAX];
        snprintf(line, sizeof line, "%.*s", (int)n, p);
        p += n + (nl ? 1 : 0);
        if (!line[0] || strncmp(line, "*:", 2) == 0)
            continue;
        char *colon = strchr(line, ':');
        if (!colon || colon == line || colon[1] != '/')
            return bq_fail(e, BQ_E_USAGE, "tablespace relocation \"%s\" is not NAME:/ABSOLUTE/PATH",
                           line);
        *colon = '\0';
        rts_t *t = NULL;
        for (size_t i = 0; i < r->nts && !t; i++) {
            char oid[16];
            snprintf(oid, sizeof oid, "%u", r->ts[i].oid);
            if (strcmp(r->ts[i].name, line) == 0 || strcmp(oid, line) == 0)
                t = &r->ts[i];
        }
        if (!t) {
            char have[512] = "";
            for (size_t i = 0; i < r->nts; i++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s (%u)",
                         i ? ", " : "", r->ts[i].name, r->ts[i].oid);
            return bq_fail(e, BQ_E_NOTFOUND, "tablespace %s is not in backup %s (it has: %s)",
                           line, r->job->backup_id, r->nts ? have : "none");
        }
        snprintf(t->target, sizeof t->target, "%s", colon + 1);
    }
    for (size_t i = 0; i < r->nts; i++) {
        if (!r->ts[i].target[0])
            return bq_fail(e, BQ_E_PROTO, "backup %s does not say where tablespace %u was",
                           r->job->backup_id, r->ts[i].oid);
        if (strncmp(r->ts[i].target, r->dest, strlen(r->dest)) == 0 &&
            (r->ts[i].target[strlen(r->dest)] == '/' || !r->ts[i].target[strlen(r->dest)]))
            return bq_fail(e, BQ_E_INVAL, "tablespace %s would be restored inside the destination "
                           "(%s): relocate it with --tablespace %s:PATH", r->ts[i].name,
                           r->ts[i].target, r->ts[i].name);
    }
    return 0;
}

/* ---- pass 2: the data ---- */

static void progress(rs_t *r, int force)
{
    int64_t now = bq_mono_ms();
    if (!force && now - r->last_progress < PROGRESS_EVERY_MS)
        return;
    r->last_progress = now;
    uint64_t done = atomic_load(&r->done);
    r->ctx->progress(r->ctx, done, r->total > done ? r->total : done, "restoring");
}

static int mkdirs(const char *path, bq_errbuf_t *e) /* the parents of path */
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return bq_fail(e, BQ_E_IO, "could not create %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    return 0;
}

static int own(rs_t *r, const char *path, int fd, bq_errbuf_t *e)
{
    if (!r->do_chown)
        return 0;
    int rc = fd >= 0 ? fchown(fd, r->uid, r->gid) : lchown(path, r->uid, r->gid);
    if (rc != 0)
        return bq_fail(e, BQ_E_IO, "could not give %s to uid %u: %s", path, (unsigned)r->uid,
                       strerror(errno));
    return 0;
}

/* ---- pass 2, the workers: regular files in parallel ---- */

static int same_file(rs_t *r, const char *path, bq_errbuf_t *e)
{
    rent_t *en = ent_find(r, path);
    if (!en)
        return 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat sb;
    int same = 0;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == en->size) {
        uint8_t sum[32];
        uint64_t size = 0;
        if (store_file_checksum(r->store, fd, &size, sum, e) == 0)
            same = size == en->size && memcmp(sum, en->sum, 32) == 0;
    }
    close(fd);
    return same;
}

static void fail_set(rs_t *r, int rc, const bq_errbuf_t *e)
{
    if (!r->failed) {
        r->failed = rc;
        r->err = *e;
    }
}

/* Ask the peer for n chunk ids ahead of chunk_get (nothing for a local store). */
static int chunks_want(rsrc_t *src, const uint8_t *ids, size_t n, bq_errbuf_t *e)
{
    return src->pc ? peer_chunks_want(src->pc, ids, n, e) : 0;
}

/* Chunk id's plaintext (checked) from the store, or sealed from the peer and opened here. */
static int chunk_fetch(rs_t *r, rsrc_t *src, const uint8_t *id, const uint8_t **data,
                       size_t *len, bq_errbuf_t *e);

/* Chunk id of the backup from its source store, opened. A failure is the source's (damaged,
 * unreadable, its data port gone): the result names that store, so that a retry reads
 * another one. */
static int chunk_get(rs_t *r, rsrc_t *src, const uint8_t *id, const uint8_t **data, size_t *len,
                     bq_errbuf_t *e)
{
    int rc = chunk_fetch(r, src, id, data, len, e);
    if (rc != 0 && rc != BQ_E_NOMEM)
        atomic_store(&r->source_failed, 1);
    return rc;
}

static int chunk_fetch(rs_t *r, rsrc_t *src, const uint8_t *id, const uint8_t **data,
                       size_t *len, bq_errbuf_t *e)
{
    if (!src->pc)
        return store_reader_chunk(src->rd, id, data, len, e);
    const uint8_t *body = NULL;
    size_t blen = 0;
    int rc = peer_chunk_next(src->pc, id, &body, &blen, e);
    if (rc != 0)
        return rc;
    atomic_fetch_add(&r->peer_bytes, blen);
    /* A delta: its base from the same peer, on a client of its own (the first one's queue
     * runs ahead). */
    uint8_t base[BQ_CHUNK_ID_BYTES];
    const uint8_t *bbody = NULL;
    size_t bblen = 0;
    if (store_chunk_body_base(body, blen, base)) {
        if (!src->pcb)
            rc = peer_client_new(r->ctx->zctx, r->job->peer_worker, r->job->peer_endpoint,
                                 r->job->peer_public_key, r->ctx->keys, &src->pcb, e);
        if (rc == 0)
            rc = peer_chunks_want(src->pcb, base, 1, e);
        if (rc == 0)
            rc = peer_chunk_next(src->pcb, base, &bbody, &bblen, e);
        if (rc != 0)
            return rc;
        atomic_fetch_add(&r->peer_bytes, bblen);
    }
    return store_reader_open(src->rd, id, body, blen, bbody, bblen, r->where, data, len, e);
}

/* This thread's reader (and peer client): rsrc_done frees them. */
static int rsrc_open(rs_t *r, rsrc_t *src, bq_errbuf_t *e)
{
    memset(src, 0, sizeof *src);
    int rc = store_reader_new(r->store, &src->rd, e);
    if (rc == 0 && r->job->peer_worker[0])
        rc = peer_client_new(r->ctx->zctx, r->job->peer_worker, r->job->peer_endpoint,
                             r->job->peer_public_key, r->ctx->keys, &src->pc, e);
    return rc;
}

static void rsrc_done(rsrc_t *src)
{
    store_reader_destroy(&src->rd);
    peer_client_destroy(&src->pc);
    peer_client_destroy(&src->pcb);
}

/* Start writing back [off, off + len) of fd now, without waiting: the restore ends with a
 * syncfs, which then waits only for what is still in flight instead of writing the whole
 * restore after the last file (as initdb's and pg_basebackup's pre-sync do). Advisory: an
 * error here changes nothing, the syncfs decides. */
static void writeback_start(int fd, uint64_t off, uint64_t len)
{
    if (len > 0)
        (void)sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

/* Write one file: its chunks read from src, then mode, owner, mtime. */
static int task_write(rs_t *r, rsrc_t *src, rtask_t *t, bq_errbuf_t *e)
{
    if (r->delta && same_file(r, t->path, e)) {
        atomic_fetch_add(&r->done, t->size);
        pthread_mutex_lock(&r->mu);
        r->skipped++;
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    int rc = 0;
    int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (r->delta ? O_TRUNC : O_EXCL);
    int fd = open(t->path, flags, 0600);
    if (fd < 0 && errno == ENOENT && (rc = mkdirs(t->path, e)) == 0)
        fd = open(t->path, flags, 0600);
    if (rc != 0)
        return rc;
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not create %s: %s", t->path, strerror(errno));
    uint64_t written = 0;
    bq_errbuf_t why;
    if ((rc = chunks_want(src, t->ids, t->nids, &why)) != 0)
        rc = bq_fail(e, rc, "backup %s: file %s: %s", r->job->backup_id, t->bpath, why.msg);
    for (size_t i = 0; rc == 0 && i < t->nids; i++) {
        const uint8_t *data = NULL;
        size_t len = 0;
        if ((rc = chunk_get(r, src, t->ids + i * STORE_CHUNK_ID_BYTES, &data, &len, &why)) != 0) {
            rc = bq_fail(e, rc, "backup %s: file %s: %s", r->job->backup_id, t->bpath, why.msg);
            break;
        }
        while (len > 0) {
            ssize_t n = write(fd, data, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", t->path,
                             n < 0 ? strerror(errno) : "no progress");
                break;
            }
            data += n;
            len -= (size_t)n;
            written += (uint64_t)n;
            atomic_fetch_add(&r->done, (uint64_t)n);
        }
    }
    if (rc == 0 && written != t->size)
        rc = bq_fail(e, BQ_E_IO, "backup %s: file %s: its chunks hold %" PRIu64 " bytes, the "
                     "manifest says %" PRIu64, r->job->backup_id, t->bpath, written, t->size);
    if (rc == 0)
        writeback_start(fd, 0, written);
    struct timespec ts[2] = {{t->mtime, 0}, {t->mtime, 0}};
    if (rc == 0 && (fchmod(fd, t->mode & 07777) != 0 || futimens(fd, ts) != 0))
        rc = bq_fail(e, BQ_E_IO, "could not set the mode or time of %s: %s", t->path,
                     strerror(errno));
    if (rc == 0)
        rc = own(r, t->path, fd, e);
    if (close(fd) != 0 && rc == 0)
        rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", t->path, strerror(errno));
    if (rc == 0) {
        pthread_mutex_lock(&r->mu);
        r->files++;
        pthread_mutex_unlock(&r->mu);
    }
    if (rc == 0 && r->test_delay_ms > 0) {
        struct timespec pause = {r->test_delay_ms / 1000, (long)(r->test_delay_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
    }
    return rc;
}

static void task_free(rtask_t *t)
{
    if (!t)
        return;
    free(t->path);
    free(t->bpath);
    free(t->ids);
    free(t);
}

/* One piece of a split file (created by the walk): its chunks at their offsets. */
static int piece_write(rs_t *r, rsrc_t *src, const rpiece_t *p, bq_errbuf_t *e)
{
    rtask_t *t = p->t;
    int fd = open(t->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", t->path, strerror(errno));
    int rc = 0;
    uint64_t off = (uint64_t)p->first * r->chunk_size;
    bq_errbuf_t why;
    if ((rc = chunks_want(src, t->ids + p->first * STORE_CHUNK_ID_BYTES, p->n, &why)) != 0)
        rc = bq_fail(e, rc, "backup %s: file %s: %s", r->job->backup_id, t->bpath, why.msg);
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        size_t k = p->first + i;
        const uint8_t *data = NULL;
        size_t len = 0;
        if ((rc = chunk_get(r, src, t->ids + k * STORE_CHUNK_ID_BYTES, &data, &len, &why)) != 0) {
            rc = bq_fail(e, rc, "backup %s: file %s: %s", r->job->backup_id, t->bpath, why.msg);
            break;
        }
        if (k + 1 < t->nids && len != r->chunk_size) {
            rc = bq_fail(e, BQ_E_IO, "backup %s: file %s: chunk %zu holds %zu bytes, not the "
                         "store's chunk size %u", r->job->backup_id, t->bpath, k, len,
                         r->chunk_size);
            break;
        }
        while (len > 0) {
            ssize_t n = pwrite(fd, data, len, (off_t)off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", t->path,
                             n < 0 ? strerror(errno) : "no progress");
                break;
            }
            data += n;
            len -= (size_t)n;
            off += (uint64_t)n;
            atomic_fetch_add(&t->written, (uint64_t)n);
            atomic_fetch_add(&r->done, (uint64_t)n);
        }
    }
    if (rc == 0)
        writeback_start(fd, (uint64_t)p->first * r->chunk_size,
                        off - (uint64_t)p->first * r->chunk_size);
    if (close(fd) != 0 && rc == 0)
        rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", t->path, strerror(errno));
    return rc;
}

/* The last piece of a split file ended well: check its size, give it mode, time, owner. */
static int split_finish(rs_t *r, rtask_t *t, bq_errbuf_t *e)
{
    uint64_t written = atomic_load(&t->written);
    if (written != t->size)
        return bq_fail(e, BQ_E_IO, "backup %s: file %s: its chunks hold %" PRIu64 " bytes, the "
                       "manifest says %" PRIu64, r->job->backup_id, t->bpath, written, t->size);
    int fd = open(t->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", t->path, strerror(errno));
    int rc = 0;
    struct timespec ts[2] = {{t->mtime, 0}, {t->mtime, 0}};
    if (fchmod(fd, t->mode & 07777) != 0 || futimens(fd, ts) != 0)
        rc = bq_fail(e, BQ_E_IO, "could not set the mode or time of %s: %s", t->path,
                     strerror(errno));
    if (rc == 0)
        rc = own(r, t->path, fd, e);
    if (close(fd) != 0 && rc == 0)
        rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", t->path, strerror(errno));
    if (rc == 0) {
        pthread_mutex_lock(&r->mu);
        r->files++;
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}

/* Run piece p (unless skip), then, if it was its file's last, finish and free the file. */
static int piece_run(rs_t *r, rsrc_t *src, rpiece_t *p, int skip, bq_errbuf_t *e)
{
    rtask_t *t = p->t;
    int rc = 0;
    if (!skip)
        rc = t->split ? piece_write(r, src, p, e) : task_write(r, src, t, e);
    if (rc != 0 || skip)
        atomic_store(&t->piece_failed, 1);
    if (atomic_fetch_sub(&t->pieces_left, 1) == 1) {
        if (t->split && !atomic_load(&t->piece_failed))
            rc = split_finish(r, t, e);
        task_free(t);
    }
    free(p);
    return rc;
}

/* A cancel (the job's, or the worker's shutdown) or the caller's deadline: the restore stops
 * between files and between pieces of a file. */
static int stop_check(const rs_t *r, bq_errbuf_t *e)
{
    if (r->ctx->cancel && atomic_load(r->ctx->cancel))
        return bq_fail(e, BQ_E_CANCELLED, "cancelled");
    if (r->ctx->deadline_ms > 0 && bq_mono_ms() >= r->ctx->deadline_ms)
        return bq_fail(e, BQ_E_TIMEOUT, "out of time");
    return 0;
}

static void *writer_main(void *arg)
{
    rs_t *r = arg;
    bq_errbuf_t e = {{0}};
    rsrc_t src;
    int rc = rsrc_open(r, &src, &e);
    pthread_mutex_lock(&r->mu);
    if (rc != 0)
        fail_set(r, rc, &e);
    for (;;) {
        while (!r->head && !r->closing)
            pthread_cond_wait(&r->cv_pop, &r->mu);
        if (!r->head)
            break;
        rpiece_t *p = r->head;
        r->head = p->next;
        if (!r->head)
            r->tail = NULL;
        r->queued--;
        r->busy++;
        pthread_cond_broadcast(&r->cv_push);
        int skip = r->failed != 0 || !src.rd || (r->job->peer_worker[0] && !src.pc);
        pthread_mutex_unlock(&r->mu);
        rc = skip ? 0 : stop_check(r, &e);
        if (rc != 0)
            skip = 1; /* the piece is still freed by piece_run */
        int rc2 = piece_run(r, &src, p, skip, &e);
        if (rc == 0)
            rc = rc2;
        pthread_mutex_lock(&r->mu);
        r->busy--;
        if (rc != 0)
            fail_set(r, rc, &e);
        pthread_cond_broadcast(&r->cv_push);
    }
    pthread_mutex_unlock(&r->mu);
    rsrc_done(&src);
    return NULL;
}

/* Wait (reporting progress every second) until done(r) holds; called with r->mu held. */
static void wait_reporting(rs_t *r, int (*done)(const rs_t *r))
{
    for (int i = 0; i < 100000000 && !done(r); i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&r->cv_push, &r->mu, &ts);
        pthread_mutex_unlock(&r->mu);
        progress(r, 0); /* this (the job's) thread only: its socket is not shared */
        pthread_mutex_lock(&r->mu);
    }
}

static int room_or_failed(const rs_t *r)
{
    return r->failed || r->queued < r->queue_max;
}

static int all_done(const rs_t *r)
{
    return !r->head && r->busy == 0;
}

/* ---- pass 2, the walk: directories and links here, files to the workers ---- */

static int p2_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    rs_t *r = arg;
    if (r->failed)
        return bq_fail(e, r->failed, "%s", r->err.msg);
    int rc = stop_check(r, e);
    if (rc != 0)
        return rc;
    rc = map_path(r, path, r->cur, sizeof r->cur, e);
    if (rc != 0)
        return rc;
    snprintf(r->bpath, sizeof r->bpath, "%s", path);
    r->mode = mode;
    r->mtime = mtime;
    r->kind = 0;
    if (S_ISDIR(mode)) {
        r->kind = 'd';
        if (mkdir(r->cur, 0700) != 0 && errno == ENOENT && (rc = mkdirs(r->cur, e)) == 0)
            (void)mkdir(r->cur, 0700);
        if (rc != 0)
            return rc;
        struct stat sb;
        if (lstat(r->cur, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return bq_fail(e, BQ_E_IO, "could not create directory %s: %s", r->cur,
                           errno ? strerror(errno) : "something else is there");
        return 0;
    }
    if (S_ISLNK(mode)) {
        r->kind = 'l';
        r->link_len = 0;
        return 0;
    }
    if (!S_ISREG(mode))
        return bq_fail(e, BQ_E_PROTO, "the backup holds %s of an unknown type (mode %o)", path,
                       mode);
    r->kind = 'f';
    rtask_t *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(r->cur)) || !(t->bpath = strdup(path))) {
        task_free(t);
        return bq_fail(e, BQ_E_NOMEM, "out of memory restoring %s", path);
    }
    t->mode = mode;
    t->mtime = mtime;
    r->task = t;
    return 0;
}

static int p2_chunks(void *arg, const uint8_t *ids, size_t n, bq_errbuf_t *e)
{
    rs_t *r = arg;
    if (r->kind == 'l') { /* a link's target: read at once (links are few and small) */
        for (size_t i = 0; i < n; i++) {
            const uint8_t *data = NULL;
            size_t len = 0;
            int rc = chunk_get(r, &r->src, ids + i * STORE_CHUNK_ID_BYTES, &data, &len, e);
            if (rc != 0)
                return rc;
            if (r->link_len + len >= sizeof r->link)
                return bq_fail(e, BQ_E_PROTO, "symlink %s has a target too long", r->bpath);
            memcpy(r->link + r->link_len, data, len);
            r->link_len += len;
        }
        return 0;
    }
    rtask_t *t = r->task;
    if (r->kind != 'f' || !t)
        return 0;
    if (t->nids + n > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        while (cap < t->nids + n)
            cap *= 2;
        uint8_t *p = realloc(t->ids, cap * STORE_CHUNK_ID_BYTES);
        if (!p)
            return bq_fail(e, BQ_E_NOMEM, "out of memory restoring %s", r->bpath);
        t->ids = p;
        t->cap = cap;
    }
    memcpy(t->ids + t->nids * STORE_CHUNK_ID_BYTES, ids, n * STORE_CHUNK_ID_BYTES);
    t->nids += n;
    return 0;
}

static int p2_end(void *arg, const char *path, uint64_t size, const uint8_t sum[32],
                  bq_errbuf_t *e)
{
    (void)path, (void)sum;
    rs_t *r = arg;
    int rc = 0;
    if (r->kind == 'f') {
        rtask_t *t = r->task;
        r->task = NULL;
        t->size = size;
        size_t npieces = 1;
        if (!r->delta && t->nids > PIECE_CHUNKS) { /* made here, written in pieces */
            t->split = 1;
            npieces = (t->nids + PIECE_CHUNKS - 1) / PIECE_CHUNKS;
            int fd = open(t->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0 && errno == ENOENT && (rc = mkdirs(t->path, e)) == 0)
                fd = open(t->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (rc == 0 && fd < 0)
                rc = bq_fail(e, BQ_E_IO, "could not create %s: %s", t->path, strerror(errno));
            if (fd >= 0)
                close(fd);
            if (rc != 0) {
                task_free(t);
                return rc;
            }
        }
        atomic_store(&t->pieces_left, (int)npieces);
        for (size_t k = 0; k < npieces; k++) {
            rpiece_t *p = calloc(1, sizeof *p);
            pthread_mutex_lock(&r->mu);
            wait_reporting(r, room_or_failed);
            if (!p || r->failed) {
                rc = r->failed ? bq_fail(e, r->failed, "%s", r->err.msg)
                               : bq_fail(e, BQ_E_NOMEM, "out of memory restoring %s", r->bpath);
                pthread_mutex_unlock(&r->mu);
                free(p);
                /* the pieces not queued will never end: count them off; the last frees t */
                int left = atomic_fetch_sub(&t->pieces_left, (int)(npieces - k));
                if (left == (int)(npieces - k))
                    task_free(t);
                break;
            }
            p->t = t;
            p->first = k * PIECE_CHUNKS;
            p->n = t->split ? (t->nids - p->first < PIECE_CHUNKS ? t->nids - p->first
                                                                  : PIECE_CHUNKS)
                            : t->nids;
            if (r->tail)
                r->tail->next = p;
            else
                r->head = p;
            r->tail = p;
            r->queued++;
            pthread_cond_signal(&r->cv_pop);
            pthread_mutex_unlock(&r->mu);
        }
    } else if (r->kind == 'd') {
        if (chmod(r->cur, r->mode & 07777) != 0)
            rc = bq_fail(e, BQ_E_IO, "could not set the mode of %s: %s", r->cur, strerror(errno));
        if (rc == 0)
            rc = own(r, r->cur, -1, e);
    } else if (r->kind == 'l') {
        /* Only the links of pg_tblspc: to the tablespace's (relocated) directory. */
        char *endp = NULL;
        unsigned long oid = strncmp(r->bpath, "data/pg_tblspc/", 15) == 0
                                ? strtoul(r->bpath + 15, &endp, 10) : 0;
        rts_t *t = oid && endp && !*endp ? ts_find(r, (uint32_t)oid) : NULL;
        if (!t)
            return bq_fail(e, BQ_E_PROTO, "the backup holds a symlink at %s; only the links of "
                           "pg_tblspc to known tablespaces are restored", r->bpath);
        if (r->delta)
            (void)unlink(r->cur);
        if (mkdirs(t->target, e) != 0 || (mkdir(t->target, 0700) != 0 && errno != EEXIST))
            return bq_fail(e, BQ_E_IO, "could not create tablespace directory %s: %s", t->target,
                           strerror(errno));
        if (symlink(t->target, r->cur) != 0)
            return bq_fail(e, BQ_E_IO, "could not link %s to %s: %s", r->cur, t->target,
                           strerror(errno));
        rc = own(r, r->cur, -1, e);
        if (rc == 0)
            rc = own(r, t->target, -1, e);
    }
    r->kind = 0;
    progress(r, 0);
    return rc;
}

/* Pass 2: the walk in this thread, the files written by nthreads workers. */
static int write_all(rs_t *r, unsigned nthreads, bq_errbuf_t *e)
{
    pthread_t th[RESTORE_THREADS_MAX];
    unsigned started = 0;
    r->queue_max = 4 * (size_t)nthreads;
    r->chunk_size = store_chunk_size(r->store);
    int rc = rsrc_open(r, &r->src, e);
    for (unsigned i = 0; rc == 0 && i < nthreads; i++) {
        int err = pthread_create(&th[i], NULL, writer_main, r);
        if (err != 0)
            rc = bq_fail(e, BQ_E_IO, "could not start restore thread: %s", strerror(err));
        else
            started++;
    }
    if (rc == 0) {
        static const store_read_cb_t p2 = {.file_begin = p2_begin, .chunks = p2_chunks,
                                           .file_end = p2_end};
        rc = store_backup_walk(r->store, r->job->backup_id, &p2, r, e);
        task_free(r->task);
        r->task = NULL;
    }
    pthread_mutex_lock(&r->mu);
    if (rc != 0 && !r->failed)
        fail_set(r, rc, e); /* the workers drop what is queued */
    wait_reporting(r, all_done);
    r->closing = 1;
    pthread_cond_broadcast(&r->cv_pop);
    pthread_mutex_unlock(&r->mu);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    rsrc_done(&r->src);
    if (r->failed)
        return bq_fail(e, r->failed, "%s", r->err.msg);
    return started == nthreads ? rc : BQ_E_IO;
}

/* ---- delta: what the backup does not have goes ---- */

static rs_t *g_walk; /* nftw has no argument: one delta walk at a time per process */
static pthread_mutex_t g_walk_mu = PTHREAD_MUTEX_INITIALIZER;
static bq_errbuf_t g_walk_err;

static int walk_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    if (ftw->level == 0)
        return 0;
    rs_t *r = g_walk;
    if (ent_find(r, path) || strcmp(path, r->marker) == 0)
        return 0;
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT) {
        bq_fail(&g_walk_err, BQ_E_IO, "could not remove %s: %s", path, strerror(errno));
        return 1;
    }
    r->removed++;
    return 0;
}

static int delta_remove(rs_t *r, const char *root, bq_errbuf_t *e)
{
    pthread_mutex_lock(&g_walk_mu);
    g_walk = r;
    int rc = nftw(root, walk_one, 32, FTW_PHYS | FTW_DEPTH);
    if (rc != 0)
        rc = bq_fail(e, BQ_E_IO, "%s", g_walk_err.msg[0] ? g_walk_err.msg : "could not walk");
    g_walk = NULL;
    pthread_mutex_unlock(&g_walk_mu);
    return rc;
}

/* Point-in-time recovery (job->recovery): recovery.signal or standby.signal, and the settings
 * appended to postgresql.auto.conf (a later setting wins in PostgreSQL's files), all owned
 * like the restored files. The restored server fetches WAL with `barque wal-get` and never
 * archives into the cluster's archive. */
static int recovery_write(rs_t *r, const bq_job_t *job, const char *cli, bq_errbuf_t *e)
{
    const bq_recovery_t *t = &job->recovery;
    if (!t->enabled)
        return 0;
    if (!cli || !cli[0])
        cli = "barque";
    if (strchr(cli, '\'') || strchr(cli, '\n') || strchr(cli, '\\'))
        return bq_fail(e, BQ_E_CONFIG, "[worker] cli_command has a quote, backslash or newline: "
                       "it cannot go into restore_command");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", r->dest, t->standby ? "standby.signal" : "recovery.signal");
    int rc = bq_file_write_durable(path, "", 0, 0600, 0, e);
    if (rc == 0)
        rc = own(r, path, -1, e);
    char conf[4096];
    int n = snprintf(conf, sizeof conf,
                     "\n# barque recover: backup %s of cluster %s (job %" PRIu64 ")\n"
                     "restore_command = '%s wal-get %s %%f %%p%s%s'\n"
                     "archive_command = 'false'\n",
                     job->backup_id, job->cluster, job->id, cli, job->cluster,
                     r->ctx->site && r->ctx->site[0] ? " --prefer-site " : "",
                     r->ctx->site ? r->ctx->site : "");
    if (t->kind[0]) {
        if (strcmp(t->kind, "immediate") == 0)
            n += snprintf(conf + n, sizeof conf - (size_t)n, "recovery_target = 'immediate'\n");
        else
            n += snprintf(conf + n, sizeof conf - (size_t)n, "recovery_target_%s = '%s'\n",
                          t->kind, t->value);
    }
    if (t->tli[0])
        n += snprintf(conf + n, sizeof conf - (size_t)n, "recovery_target_timeline = '%s'\n",
                      t->tli);
    if (t->action[0])
        n += snprintf(conf + n, sizeof conf - (size_t)n, "recovery_target_action = '%s'\n",
                      t->action);
    if (t->exclusive)
        n += snprintf(conf + n, sizeof conf - (size_t)n, "recovery_target_inclusive = off\n");
    if (n <= 0 || (size_t)n >= sizeof conf)
        return rc ? rc : bq_fail(e, BQ_E_INVAL, "recovery settings too long");
    snprintf(path, sizeof path, "%s/postgresql.auto.conf", r->dest);
    int fd = rc ? -1 : open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (rc == 0 && fd < 0)
        rc = bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    if (rc == 0 && write(fd, conf, (size_t)n) != n)
        rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", path, strerror(errno));
    if (rc == 0 && fsync(fd) != 0)
        rc = bq_fail(e, BQ_E_IO, "could not sync %s: %s", path, strerror(errno));
    if (rc == 0)
        rc = own(r, path, fd, e);
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        bq_info(COMP, job->id, "restore to %s: %s and recovery settings written (%s%s%s)",
                r->dest, t->standby ? "standby.signal" : "recovery.signal",
                t->kind[0] ? t->kind : "to the end of the archive", t->value[0] ? " " : "",
                t->value);
    return rc;
}

static int sync_fs(const char *path, bq_errbuf_t *e)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    int rc = syncfs(fd) == 0 ? 0 : bq_fail(e, BQ_E_IO, "could not sync %s: %s", path,
                                            strerror(errno));
    close(fd);
    return rc;
}

/* ---- a backup in a peer's store: a view of it here ---- */

/* Make r->view_dir a view of the peer's store holding backup job->backup_id (its store.conf,
 * data key files and manifest, fetched over the peer's data port) and open it with this
 * worker's master key, which must be the peer's too (the deployment's). Chunks come later,
 * sealed, one thread's client each. */
static int view_open(rs_t *r, bq_errbuf_t *e)
{
    const bq_job_t *job = r->job;
    jobs_ctx_t *ctx = r->ctx;
    const char *me = ctx->worker ? ctx->worker : "?";
    snprintf(r->where, sizeof r->where, "from worker %s", job->peer_worker);
    int rc = peer_view_dir(ctx->store, "restore", job, r->view_dir, sizeof r->view_dir, e);
    if (rc != 0)
        return rc;
    peer_view_args_t va = {ctx->zctx, ctx->keys, me, ctx->store_key_file, job->peer_worker,
                           job->peer_endpoint, job->peer_public_key};
    uint64_t got = 0;
    rc = peer_view_open(&va, job->backup_id, r->view_dir, &r->view, &got, e);
    atomic_fetch_add(&r->peer_bytes, got);
    if (rc == 0) {
        r->store = r->view;
        bq_info(COMP, job->id, "backup %s is read from worker %s (%s)", job->backup_id,
                job->peer_worker, job->peer_endpoint);
    }
    return rc;
}

static void view_close(rs_t *r)
{
    store_close(&r->view);
    bq_errbuf_t e;
    if (r->view_dir[0] && store_view_remove(r->view_dir, &e) != 0)
        bq_warn(COMP, r->job->id, "%s", e.msg);
}

/* What the restore wrote, into its result (a success's, or a failure's whose source failed). */
static void result_figures(rs_t *r, int64_t t0, bq_msg_result_t *res)
{
    res->has_restore = 1;
    res->restore.files_written = r->files;
    res->restore.files_unchanged = r->skipped;
    res->restore.files_removed = r->removed;
    res->restore.bytes = atomic_load(&r->done);
    res->restore.duration_ms = bq_mono_ms() - t0;
    res->restore.peer_bytes = atomic_load(&r->peer_bytes);
    snprintf(res->restore.peer_worker, sizeof res->restore.peer_worker, "%s", r->job->peer_worker);
}

void jobs_restore(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    rs_t *r = calloc(1, sizeof *r);
    int rc = r ? 0 : bq_fail(&e, BQ_E_NOMEM, "out of memory");
    int64_t t0 = bq_mono_ms();
    if (rc == 0) {
        r->job = job;
        r->ctx = ctx;
        const char *d = getenv("BARQUE_TEST_RESTORE_FILE_DELAY_MS");
        r->test_delay_ms = d ? atoi(d) : 0;
        pthread_mutex_init(&r->mu, NULL);
        pthread_cond_init(&r->cv_pop, NULL);
        pthread_cond_init(&r->cv_push, NULL);
        if (!ctx->store)
            rc = bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "no store");
        else if (job->dest[0] != '/')
            rc = bq_fail(&e, BQ_E_INVAL, "destination %s is not an absolute path", job->dest);
        else
            snprintf(r->dest, sizeof r->dest, "%s", job->dest);
        r->store = ctx->store;
    }
    if (rc == 0 && job->peer_worker[0] && (rc = view_open(r, &e)) != 0 && rc != BQ_E_NOMEM)
        atomic_store(&r->source_failed, 1); /* the holder's data port */
    size_t dl = r ? strlen(r->dest) : 0;
    while (dl > 1 && r->dest[dl - 1] == '/')
        r->dest[--dl] = '\0';
    static const store_read_cb_t p1 = {.meta = p1_meta, .file_end = p1_end};
    if (rc == 0)
        rc = store_backup_walk(r->store, job->backup_id, &p1, r, &e);
    if (rc == BQ_E_NOTFOUND)
        rc = bq_fail(&e, BQ_E_NOTFOUND, "backup %s is not in the store of worker %s",
                     job->backup_id, job->peer_worker[0] ? job->peer_worker
                                     : ctx->worker ? ctx->worker : "?");
    if (rc == 0)
        rc = relocate(r, &e);
    if (rc == 0) {
        r->delta = job->delta;
        snprintf(r->marker, sizeof r->marker, "%s/" RESTORE_MARKER, r->dest);
        char *text = NULL;
        size_t tlen = 0;
        bq_errbuf_t me;
        char want[64];
        snprintf(want, sizeof want, "job=%" PRIu64 "\n", job->id);
        if (bq_file_read_small(r->marker, 64, &text, &tlen, &me) == 0 &&
            tlen == strlen(want) && memcmp(text, want, tlen) == 0) {
            r->delta = r->resumed = 1;
            bq_info(COMP, job->id, "restore of backup %s to %s: continuing what an earlier "
                    "attempt of this job wrote (as --delta)", job->backup_id, r->dest);
        }
        free(text);
    }
    if (rc == 0 && r->delta) {
        static const store_read_cb_t p1b = {.file_begin = p1b_begin, .file_end = p1b_end};
        rc = store_backup_walk(r->store, job->backup_id, &p1b, r, &e);
    }
    if (rc == 0)
        rc = target_check(r, r->dest, "destination", &e);
    char pid[PATH_MAX + 32];
    snprintf(pid, sizeof pid, "%s/postmaster.pid", r ? r->dest : "");
    if (rc == 0 && access(pid, F_OK) == 0)
        rc = bq_fail(&e, BQ_E_STATE, "destination %s has a postmaster.pid: stop the server "
                     "running there first", r->dest);
    for (size_t i = 0; rc == 0 && i < r->nts; i++) {
        char what[BQ_NAME_MAX + 16];
        snprintf(what, sizeof what, "tablespace %s", r->ts[i].name[0] ? r->ts[i].name : "?");
        rc = target_check(r, r->ts[i].target, what, &e);
    }
    if (rc == 0)
        rc = owner_resolve(r, &e);
    if (rc == 0 && mkdir(r->dest, 0700) != 0 && errno != EEXIST)
        rc = bq_fail(&e, errno == EACCES || errno == EPERM || errno == EROFS ? BQ_E_PERM : BQ_E_IO,
                     "could not create destination %s: %s", r->dest, strerror(errno));
    if (rc == 0)
        rc = own(r, r->dest, -1, &e);
    if (rc == 0 && !r->resumed) {
        char text[64];
        int n = snprintf(text, sizeof text, "job=%" PRIu64 "\n", job->id);
        rc = bq_file_write_durable(r->marker, text, (size_t)n, 0600, 1, &e);
        if (rc == BQ_E_EXISTS) { /* another job's: a --delta restore takes DEST over */
            if (unlink(r->marker) != 0)
                rc = bq_fail(&e, BQ_E_IO, "could not remove %s: %s", r->marker, strerror(errno));
            else
                rc = bq_file_write_durable(r->marker, text, (size_t)n, 0600, 1, &e);
        }
    }
    int64_t t_write = bq_mono_ms(), t_sync = t_write, t_end = t_write;
    const int writing = rc == 0; /* DEST holds the marker from here on */
    if (rc == 0) {
        progress(r, 1);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned n = ncpu < 1 ? 1 : ncpu > RESTORE_THREADS_MAX ? RESTORE_THREADS_MAX : (unsigned)ncpu;
        rc = write_all(r, n, &e);
    }
    t_sync = bq_mono_ms();
    if (rc == 0 && r->delta) {
        rc = delta_remove(r, r->dest, &e);
        for (size_t i = 0; rc == 0 && i < r->nts; i++)
            rc = delta_remove(r, r->ts[i].target, &e);
    }
    if (rc == 0)
        rc = recovery_write(r, job, r->ctx->cli_command, &e);
    if (rc == 0)
        rc = sync_fs(r->dest, &e);
    if (rc == 0 && unlink(r->marker) != 0 && errno != ENOENT)
        rc = bq_fail(&e, BQ_E_IO, "could not remove %s: %s", r->marker, strerror(errno));
    if (rc == 0)
        rc = bq_fsync_dir_of(r->marker, &e);
    for (size_t i = 0; rc == 0 && i < r->nts; i++)
        rc = sync_fs(r->ts[i].target, &e);
    t_end = bq_mono_ms();
    if (rc == 0) {
        progress(r, 1);
        bq_info(COMP, job->id, "restore of backup %s of %s to %s: done in %.2f s (checks %.2f, "
                "write %.2f, delta and sync %.2f), %" PRIu64 " files written, %" PRIu64
                " unchanged, %" PRIu64 " removed, %.1f MB%s%s%s",
                job->backup_id, job->cluster, r->dest, (double)(t_end - t0) / 1000,
                (double)(t_write - t0) / 1000, (double)(t_sync - t_write) / 1000,
                (double)(t_end - t_sync) / 1000, r->files, r->skipped, r->removed,
                (double)atomic_load(&r->done) / 1e6,
                job->peer_worker[0] ? " (read from worker " : "", job->peer_worker,
                job->peer_worker[0] ? ")" : "");
        res->ok = 1;
        result_figures(r, t0, res);
    } else {
        res->ok = 0;
        res->retryable = rc == BQ_E_IO || rc == BQ_E_NOMEM;
        bq_errbuf_t se;
        const int stopped = r && (rc == BQ_E_CANCELLED || rc == BQ_E_TIMEOUT) &&
                            stop_check(r, &se) != 0; /* a cancel or the deadline, not a peer */
        if (r && atomic_load(&r->source_failed) && !stopped) {
            /* another holder's store may serve the next attempt (the coordinator picks it) */
            res->retryable = 1;
            result_figures(r, t0, res);
            snprintf(res->restore.source_failed, sizeof res->restore.source_failed, "%s",
                     job->peer_worker[0] ? job->peer_worker : ctx->worker ? ctx->worker : "");
        }
        char kept[128] = "";
        if (writing && stopped)
            snprintf(kept, sizeof kept, " after %" PRIu64 " files; they stay there (recover "
                     "to it again with --delta to go on, or remove it)", r->files);
        snprintf(res->error, sizeof res->error, "restore of backup %s of cluster %s to %s: %s%s",
                 job->backup_id, job->cluster, job->dest, e.msg, kept);
    }
    if (r) {
        view_close(r);
        for (size_t i = 0; i < r->ents_cap; i++)
            free(r->ents[i].path);
        free(r->ents);
        pthread_cond_destroy(&r->cv_push);
        pthread_cond_destroy(&r->cv_pop);
        pthread_mutex_destroy(&r->mu);
    }
    free(r);
}
