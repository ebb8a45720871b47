/* bench_store: what the store costs on a real directory tree, through its public API
 * (store/store.h), and a tool to change pages of a PostgreSQL data directory in place.
 *
 * Ingest (the default mode): back up every regular file under SRC into the store in --store as
 * one backup (store_backup_begin / file_begin / file_write of read() buffers / file_end /
 * commit), creating the store first when it has no store.conf. Prints the wall and CPU time of
 * the backup (begin to commit, so the store's fsyncs are in it), MB/s (10^6 bytes/s of file
 * bytes), the backup's figures (store_backup_stats_t), the store's bytes before and after (sum
 * of file sizes under the store directory), its pack bytes and index entries (store_stats) and
 * the size of the index (index/data.mdb). --verify then runs store_verify over the whole store;
 * --compare reads the backup back (store_backup_read) and compares every byte with SRC.
 *
 *   bench_store --store DIR --key FILE [--new-key] [--chunk-size KIB] [--comp zstd|lz4|none]
 *               [--level N] [--backup-id ID] [--buf-kib N] [--threads N] [--verify] [--compare]
 *               [--json] SRC
 *
 * --threads N calls store_set_threads (the multi-threaded writer), when store.h has it.
 *
 * Touch (--touch-pages): change PCT% of the 8 KiB pages of the relation files of the
 * PostgreSQL data directory DIR (files under base/ and global/ named N, N_fsm, N_vm or N_init,
 * with an optional .M segment suffix), chosen uniformly at random without replacement
 * (selection sampling, files in name order, a PRNG seeded with S: the same tree and seed
 * change the same pages). In each chosen page 16 bytes at a random offset are overwritten
 * with other bytes, so the page differs; every changed file is fsynced.
 *
 *   bench_store --touch-pages PCT --seed S [--json] DIR
 *
 * Output: one "key: value" line per figure, or one JSON object with --json. Exit status 0,
 * 1 when something failed (the message names the file and why; a verify problem or a
 * read-back difference is a failure), 2 for bad arguments. It prints figures; it is not a
 * timed test (STYLE.md). See tests/bench/README.md. */
#include "store.h"
#include "store_keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 8192u
#define TOUCH_BYTES 16u
#define WALK_DEPTH_MAX 64       /* deeper trees are refused: every walk is bounded */
#define FILE_GROWTH_MAX (64u << 20) /* a file that grows more than this while read is refused */
#define VERIFY_EVENTS_SHOWN 20

/* ---- output: "key: value" lines or one JSON object ---------------------------------------- */

typedef struct {
    int json;
    int n; /* figures printed so far */
} out_t;

static void out_key(out_t *o, const char *key)
{
    if (o->json)
        printf("%s\"%s\": ", o->n ? ",\n  " : "{\n  ", key);
    else
        printf("%s: ", key);
    o->n++;
}

static void out_end_value(out_t *o)
{
    if (!o->json)
        putchar('\n');
}

static void out_u64(out_t *o, const char *key, uint64_t v)
{
    out_key(o, key);
    printf("%" PRIu64, v);
    out_end_value(o);
}

static void out_dbl(out_t *o, const char *key, double v, int decimals)
{
    out_key(o, key);
    printf("%.*f", decimals, isfinite(v) ? v : 0.0);
    out_end_value(o);
}

static void out_str(out_t *o, const char *key, const char *s)
{
    out_key(o, key);
    if (o->json) {
        putchar('"');
        for (const char *p = s; *p; p++) {
            if (*p == '"' || *p == '\\')
                printf("\\%c", *p);
            else if ((unsigned char)*p < 0x20)
                printf("\\u%04x", (unsigned)(unsigned char)*p);
            else
                putchar(*p);
        }
        putchar('"');
    } else {
        fputs(s, stdout);
    }
    out_end_value(o);
}

static void out_close(out_t *o)
{
    if (o->json)
        printf("%s}\n", o->n ? "\n" : "{");
    fflush(stdout);
}

/* ---- small helpers ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cpu_s(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The first field of /proc/loadavg ("?" when it cannot be read). */
static void loadavg(char *buf, size_t size)
{
    snprintf(buf, size, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    char line[128];
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(buf, size, "%s", line);
    }
    fclose(f);
}

/* a/b, or the other one alone when one is empty. */
static int join(char *buf, size_t size, const char *a, const char *b, bq_errbuf_t *e)
{
    int n = !a[0]   ? snprintf(buf, size, "%s", b)
            : !b[0] ? snprintf(buf, size, "%s", a)
                    : snprintf(buf, size, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= size)
        return bq_fail(e, BQ_E_INVAL, "path %s/%s is too long", a, b);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char **v;
    size_t n, cap;
} names_t;

static void names_free(names_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* The entries of directory path but . and .., sorted (strcmp). l is the caller's (names_free,
 * also after a failure). */
static int names_read(const char *path, names_t *l, bq_errbuf_t *e)
{
    DIR *d = opendir(path);
    if (!d)
        return bq_fail(e, BQ_E_IO, "could not open directory %s: %s", path, strerror(errno));
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 32;
            char **v = realloc(l->v, cap * sizeof *v);
            if (!v) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing directory %s", path);
                break;
            }
            l->v = v;
            l->cap = cap;
        }
        if (!(l->v[l->n] = strdup(de->d_name)))
            rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing directory %s", path);
        else
            l->n++;
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = bq_fail(e, BQ_E_IO, "could not read directory %s: %s", path, strerror(errno));
    closedir(d);
    if (rc == 0 && l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, cmp_str);
    return rc;
}

/* A tree walk: fn is called for every regular file under root, depth first, names sorted,
 * with its path relative to root. Other kinds of files are counted in *skipped. */
typedef int (*walk_fn)(void *arg, const char *full, const char *rel, const struct stat *st,
                       bq_errbuf_t *e);

static int walk(const char *root, const char *rel, int depth, walk_fn fn, void *arg,
                uint64_t *skipped, bq_errbuf_t *e)
{
    if (depth > WALK_DEPTH_MAX)
        return bq_fail(e, BQ_E_INVAL, "directory %s/%s is more than %d levels deep", root, rel,
                       WALK_DEPTH_MAX);
    char dir[PATH_MAX];
    int rc = join(dir, sizeof dir, root, rel, e);
    names_t l = {0};
    if (rc == 0)
        rc = names_read(dir, &l, e);
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        char r[PATH_MAX], full[PATH_MAX];
        struct stat st;
        if ((rc = join(r, sizeof r, rel, l.v[i], e)) != 0 || (rc = join(full, sizeof full, root,
                                                                         r, e)) != 0)
            break;
        if (lstat(full, &st) != 0) {
            if (errno == ENOENT) /* gone since the listing */
                continue;
            rc = bq_fail(e, BQ_E_IO, "could not stat %s: %s", full, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(root, r, depth + 1, fn, arg, skipped, e);
        } else if (S_ISREG(st.st_mode)) {
            rc = fn(arg, full, r, &st, e);
        } else if (skipped) {
            (*skipped)++;
        }
    }
    names_free(&l);
    return rc;
}

/* read() until len bytes or end of file; *got receives the count. */
static int read_full(int fd, void *buf, size_t len, size_t *got, const char *path, bq_errbuf_t *e)
{
    size_t n = 0;
    while (n < len) {
        ssize_t r = read(fd, (char *)buf + n, len - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return bq_fail(e, BQ_E_IO, "could not read %s: %s", path, strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *got = n;
    return 0;
}

/* Sum of the sizes of the regular files under dir (0 when dir does not exist). */
typedef struct {
    uint64_t bytes, files;
} du_t;

static int du_add(void *arg, const char *full, const char *rel, const struct stat *st,
                  bq_errbuf_t *e)
{
    du_t *d = arg;
    d->bytes += (uint64_t)st->st_size;
    d->files++;
    return 0;
}

static int du(const char *dir, du_t *out, bq_errbuf_t *e)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT)
        return 0;
    return walk(dir, "", 0, du_add, out, NULL, e);
}

/* ---- ingest ------------------------------------------------------------------------------- */

typedef struct {
    const char *store;
    const char *key;
    int new_key;
    uint32_t chunk_kib; /* 0: the store's default */
    const char *comp;   /* NULL: zstd */
    int level;
    int level_set;
    const char *backup_id;
    size_t buf_bytes;
    int threads; /* -1: the store's default */
    int verify;
    int compare;
    int json;
    const char *src;
} ingest_opts_t;

typedef struct {
    store_backup_t *bw;
    uint8_t *buf;
    size_t buf_bytes;
    uint64_t skipped;
} ingest_t;

static int ingest_file(void *arg, const char *full, const char *rel, const struct stat *st,
                       bq_errbuf_t *e)
{
    ingest_t *in = arg;
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", full, strerror(errno));
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = store_backup_file_begin(in->bw, rel, (uint32_t)st->st_mode, (int64_t)st->st_mtime,
                                     e);
    uint64_t total = 0, limit = (uint64_t)st->st_size + FILE_GROWTH_MAX;
    while (rc == 0) {
        size_t got = 0;
        if ((rc = read_full(fd, in->buf, in->buf_bytes, &got, full, e)) != 0 || got == 0)
            break;
        total += got;
        if (total > limit) {
            rc = bq_fail(e, BQ_E_IO, "file %s grew by more than %u MiB while it was read",
                         full, FILE_GROWTH_MAX >> 20);
            break;
        }
        rc = store_backup_file_write(in->bw, in->buf, got, e);
    }
    close(fd);
    if (rc == 0)
        rc = store_backup_file_end(in->bw, e);
    return rc;
}

/* store_verify's problems and warnings: the first few go to stderr. */
typedef struct {
    uint64_t shown;
} verify_arg_t;

static int verify_event(const store_verify_event_t *ev, void *arg)
{
    verify_arg_t *v = arg;
    if (v->shown++ < VERIFY_EVENTS_SHOWN)
        fprintf(stderr, "bench_store: verify: %s: %s%s%s%s%s\n", store_verify_kind_name(ev->kind),
                ev->message ? ev->message : "", ev->backup_id ? " (backup " : "",
                ev->backup_id ? ev->backup_id : "", ev->path ? ", file " : "",
                ev->path ? ev->path : "");
    return 0;
}

/* Read-back: every file of the backup against the same file under src. */
typedef struct {
    const char *src;
    const char *backup_id;
    int fd;
    char path[PATH_MAX];
    uint64_t off;
    uint8_t *buf;
    size_t cap;
    uint64_t files, bytes;
} compare_t;

static int cmp_file_begin(void *arg, const char *path, uint32_t mode, int64_t mtime,
                          bq_errbuf_t *e)
{
    compare_t *c = arg;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->off = 0;
    int rc = join(c->path, sizeof c->path, c->src, path, e);
    if (rc != 0)
        return rc;
    c->fd = open(c->path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0)
        return bq_fail(e, BQ_E_IO, "read-back of backup %s: could not open %s: %s",
                       c->backup_id, c->path, strerror(errno));
    return 0;
}

static int cmp_data(void *arg, const void *buf, size_t len, bq_errbuf_t *e)
{
    compare_t *c = arg;
    if (len > c->cap) {
        uint8_t *b = realloc(c->buf, len);
        if (!b)
            return bq_fail(e, BQ_E_NOMEM, "out of memory comparing %s", c->path);
        c->buf = b;
        c->cap = len;
    }
    size_t got = 0;
    int rc = read_full(c->fd, c->buf, len, &got, c->path, e);
    if (rc != 0)
        return rc;
    if (got != len || memcmp(buf, c->buf, len) != 0) {
        uint64_t at = c->off;
        for (size_t i = 0; i < len && i < got && c->buf[i] == ((const uint8_t *)buf)[i]; i++)
            at++;
        return bq_fail(e, BQ_E_IO, "read-back of backup %s: file %s differs from the source "
                       "at byte %" PRIu64 "%s", c->backup_id, c->path, at,
                       got != len ? " (the source is shorter)" : "");
    }
    c->off += len;
    c->bytes += len;
    return 0;
}

static int cmp_file_end(void *arg, const char *path, uint64_t size, const uint8_t sha256[32],
                        bq_errbuf_t *e)
{
    compare_t *c = arg;
    uint8_t one;
    size_t got = 0;
    int rc = read_full(c->fd, &one, 1, &got, c->path, e);
    close(c->fd);
    c->fd = -1;
    if (rc != 0)
        return rc;
    if (got != 0)
        return bq_fail(e, BQ_E_IO, "read-back of backup %s: source file %s is longer than the "
                       "backup's %" PRIu64 " bytes", c->backup_id, c->path, size);
    if (size != c->off)
        return bq_fail(e, BQ_E_IO, "read-back of backup %s: file %s: the backup says %" PRIu64
                       " bytes, its chunks held %" PRIu64, c->backup_id, c->path, size, c->off);
    c->files++;
    return 0;
}

/* compression= and level= of DIR/store.conf, for the report (an existing store's choice). */
static void conf_read(const char *store, char *comp, size_t comp_size, int *level)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/store.conf", store);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    for (int i = 0; i < 64 && fgets(line, sizeof line, f); i++) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "compression=", 12) == 0)
            snprintf(comp, comp_size, "%s", line + 12);
        else if (strncmp(line, "level=", 6) == 0)
            *level = atoi(line + 6);
    }
    fclose(f);
}


/* What one ingest run measured. */
typedef struct {
    int created;
    uint32_t chunk_size;
    char comp[32];
    int level;
    double wall_s, cpu_user_s, cpu_sys_s;
    uint64_t skipped; /* entries under src that are not regular files or directories */
    store_backup_stats_t bs;
    store_stats_t ss;
    du_t du0, du1;
    uint64_t mdb0_bytes, mdb_bytes; /* index/data.mdb before and after */
    uint64_t manifest_bytes;        /* backups/ID.manifest */
    int verify_rc;
    store_verify_stats_t vs;
    double verify_s;
    int compare_rc;
    compare_t cmp;
    double compare_s;
    char load0[128], load1[128];
} ingest_res_t;

/* Size of dir/name, 0 when it cannot be stat()ed. */
static uint64_t file_size(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        stat(path, &st) != 0)
        return 0;
    return (uint64_t)st.st_size;
}

/* Load (or with --new-key make) the master key, create the store when it has no store.conf,
 * open it. *s is the caller's. */
static int ingest_open(const ingest_opts_t *o, store_master_t *m, ingest_res_t *r, store_t **s,
                       bq_errbuf_t *e)
{
    int rc = o->new_key ? store_master_key_generate(o->key, m, e)
                        : store_master_key_load(o->key, m, e);
    if (rc != 0)
        return rc;
    char conf[PATH_MAX];
    if ((rc = join(conf, sizeof conf, o->store, "store.conf", e)) != 0)
        return rc;
    if (access(conf, F_OK) != 0) {
        store_comp_t comp = STORE_COMP_ZSTD;
        if (o->comp && store_comp_parse(o->comp, &comp) != 0)
            return bq_fail(e, BQ_E_INVAL, "unknown compression %s (zstd, lz4 or none)", o->comp);
        /* Designated fields only: an option added to store_opts_t later stays 0 (default). */
        store_opts_t so = {.chunk_size = o->chunk_kib * 1024u, .comp = comp,
                           .level = o->level_set ? o->level : 0};
        if ((rc = store_create(o->store, m, &so, e)) != 0)
            return rc;
        r->created = 1;
    } else if (o->comp || o->level_set) {
        fprintf(stderr, "bench_store: store %s exists: its store.conf decides compression and "
                "level (--comp and --level ignored)\n", o->store);
    }
    r->mdb0_bytes = file_size(o->store, "index/data.mdb");
    if ((rc = du(o->store, &r->du0, e)) != 0 || (rc = store_open(o->store, m, s, e)) != 0)
        return rc;
    if (o->threads >= 0)
        store_set_threads(*s, (unsigned)o->threads);
    r->chunk_size = store_chunk_size(*s);
    if (o->chunk_kib && r->chunk_size != o->chunk_kib * 1024u)
        return bq_fail(e, BQ_E_INVAL, "store %s exists with chunk size %u KiB, not the %u KiB "
                       "asked for (use a fresh --store)", o->store, r->chunk_size / 1024,
                       o->chunk_kib);
    return 0;
}

/* The backup itself, timed from begin to commit. */
static int ingest_backup(const ingest_opts_t *o, store_t *s, ingest_res_t *r, bq_errbuf_t *e)
{
    ingest_t in = {.buf_bytes = o->buf_bytes};
    if (!(in.buf = malloc(in.buf_bytes)))
        return bq_fail(e, BQ_E_NOMEM, "out of memory for a %zu-byte read buffer", in.buf_bytes);
    store_backup_t *bw = NULL;
    double u0, s0, u1, s1;
    cpu_s(&u0, &s0);
    double t0 = now_s();
    int rc = store_backup_begin(s, o->backup_id, &bw, e);
    if (rc == 0) {
        in.bw = bw;
        rc = store_backup_meta(bw, "source", o->src, strlen(o->src), e);
    }
    if (rc == 0)
        rc = walk(o->src, "", 0, ingest_file, &in, &in.skipped, e);
    if (rc == 0)
        rc = store_backup_commit(&bw, &r->bs, e); /* takes bw in every case */
    store_backup_abort(&bw);
    r->wall_s = now_s() - t0;
    cpu_s(&u1, &s1);
    r->cpu_user_s = u1 - u0;
    r->cpu_sys_s = s1 - s0;
    r->skipped = in.skipped;
    free(in.buf);
    return rc;
}

/* store_stats, then --verify and --compare; their failures are recorded, not returned. */
static int ingest_check(const ingest_opts_t *o, store_t *s, ingest_res_t *r, bq_errbuf_t *e)
{
    int rc = store_stats(s, &r->ss, e);
    if (rc != 0)
        return rc;
    if (o->verify) {
        verify_arg_t va = {0};
        bq_errbuf_t ve = {{0}};
        double a = now_s();
        r->verify_rc = store_verify(s, verify_event, &va, &r->vs, &ve);
        r->verify_s = now_s() - a;
        if (r->verify_rc != 0)
            fprintf(stderr, "bench_store: verify of store %s: %s\n", o->store, ve.msg);
    }
    if (o->compare) {
        store_read_cb_t cb = {.file_begin = cmp_file_begin, .data = cmp_data,
                              .file_end = cmp_file_end};
        bq_errbuf_t ce = {{0}};
        double a = now_s();
        r->compare_rc = store_backup_read(s, o->backup_id, &cb, &r->cmp, &ce);
        r->compare_s = now_s() - a;
        if (r->compare_rc != 0)
            fprintf(stderr, "bench_store: %s\n", ce.msg);
    }
    return 0;
}

static double mb_per_s(uint64_t bytes, double s)
{
    return s > 0 ? (double)bytes / 1e6 / s : 0.0;
}

static void ingest_print(const ingest_opts_t *o, const ingest_res_t *r)
{
    out_t out = {.json = o->json};
    out_str(&out, "mode", "ingest");
    out_str(&out, "store", o->store);
    out_str(&out, "source", o->src);
    out_str(&out, "backup_id", o->backup_id);
    out_u64(&out, "store_created", (uint64_t)r->created);
    out_u64(&out, "chunk_size_bytes", r->chunk_size);
    out_str(&out, "compression", r->comp);
    out_u64(&out, "level", (uint64_t)(r->level < 0 ? 0 : r->level));
    if (o->threads >= 0)
        out_u64(&out, "threads", (uint64_t)o->threads);
    else
        out_str(&out, "threads", "default");
    out_u64(&out, "read_buffer_bytes", o->buf_bytes);
    out_u64(&out, "files", r->bs.files);
    out_u64(&out, "skipped_not_regular", r->skipped);
    out_u64(&out, "logical_bytes", r->bs.logical_bytes);
    out_dbl(&out, "wall_s", r->wall_s, 3);
    out_dbl(&out, "mb_per_s", mb_per_s(r->bs.logical_bytes, r->wall_s), 1);
    out_dbl(&out, "cpu_user_s", r->cpu_user_s, 3);
    out_dbl(&out, "cpu_sys_s", r->cpu_sys_s, 3);
    out_dbl(&out, "cpu_per_wall", r->wall_s > 0 ? (r->cpu_user_s + r->cpu_sys_s) / r->wall_s : 0,
            2);
    out_u64(&out, "chunks", r->bs.chunks);
    out_u64(&out, "new_chunks", r->bs.new_chunks);
    out_u64(&out, "dedup_chunks", r->bs.dedup_chunks);
    out_u64(&out, "new_bytes", r->bs.new_bytes);
    out_u64(&out, "dedup_bytes", r->bs.dedup_bytes);
    out_dbl(&out, "ratio_logical_per_new",
            r->bs.new_bytes ? (double)r->bs.logical_bytes / (double)r->bs.new_bytes : 0, 3);
    out_u64(&out, "store_bytes_before", r->du0.bytes);
    out_u64(&out, "store_bytes_after", r->du1.bytes);
    out_u64(&out, "store_bytes_added", r->du1.bytes - (r->du1.bytes > r->du0.bytes ? r->du0.bytes
                                                                                 : r->du1.bytes));
    out_u64(&out, "store_files_after", r->du1.files);
    out_u64(&out, "store_backups", r->ss.backups);
    out_u64(&out, "pack_bytes_total", r->ss.stored_bytes);
    out_u64(&out, "index_entries", r->ss.chunks);
    out_u64(&out, "index_data_mdb_bytes", r->mdb_bytes);
    out_u64(&out, "index_data_mdb_bytes_added", r->mdb_bytes - (r->mdb_bytes > r->mdb0_bytes
                                                                    ? r->mdb0_bytes
                                                                    : r->mdb_bytes));
    out_u64(&out, "manifest_bytes", r->manifest_bytes);
    if (o->verify) {
        out_str(&out, "verify", r->verify_rc == 0 ? "clean" : "PROBLEMS");
        out_u64(&out, "verify_problems", r->vs.problems);
        out_u64(&out, "verify_warnings", r->vs.warnings);
        out_u64(&out, "verify_records", r->vs.records);
        out_u64(&out, "verify_chunk_refs", r->vs.chunk_refs);
        out_dbl(&out, "verify_s", r->verify_s, 3);
    }
    if (o->compare) {
        out_str(&out, "compare", r->compare_rc == 0 ? "same" : "DIFFERENT");
        out_u64(&out, "compare_files", r->cmp.files);
        out_u64(&out, "compare_bytes", r->cmp.bytes);
        out_dbl(&out, "compare_s", r->compare_s, 3);
        out_dbl(&out, "compare_mb_per_s", mb_per_s(r->cmp.bytes, r->compare_s), 1);
    }
    out_str(&out, "loadavg_start", r->load0);
    out_str(&out, "loadavg_end", r->load1);
    out_close(&out);
}

static int ingest(const ingest_opts_t *o)
{
    bq_errbuf_t e = {{0}};
    store_master_t m;
    memset(&m, 0, sizeof m);
    store_t *s = NULL;
    ingest_res_t *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, "bench_store: out of memory\n");
        return 1;
    }
    r->cmp.src = o->src;
    r->cmp.backup_id = o->backup_id;
    r->cmp.fd = -1;
    r->level = -1;
    snprintf(r->comp, sizeof r->comp, "?");
    loadavg(r->load0, sizeof r->load0);

    int rc = 0;
    struct stat st;
    if (stat(o->src, &st) != 0)
        rc = bq_fail(&e, BQ_E_NOTFOUND, "source %s: %s", o->src, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        rc = bq_fail(&e, BQ_E_INVAL, "source %s is not a directory", o->src);
    if (rc == 0)
        rc = ingest_open(o, &m, r, &s, &e);
    if (rc == 0)
        rc = ingest_backup(o, s, r, &e);
    if (rc == 0)
        rc = ingest_check(o, s, r, &e);
    store_close(&s);
    store_master_clear(&m);
    if (rc == 0) {
        char man[PATH_MAX];
        snprintf(man, sizeof man, "backups/%s.manifest", o->backup_id);
        r->manifest_bytes = file_size(o->store, man);
        r->mdb_bytes = file_size(o->store, "index/data.mdb");
        rc = du(o->store, &r->du1, &e);
    }
    if (rc == 0) {
        conf_read(o->store, r->comp, sizeof r->comp, &r->level);
        loadavg(r->load1, sizeof r->load1);
        ingest_print(o, r);
        if (r->verify_rc != 0 || r->compare_rc != 0)
            rc = BQ_E_IO;
    } else {
        fprintf(stderr, "bench_store: %s\n", e.msg);
    }
    if (r->cmp.fd >= 0)
        close(r->cmp.fd);
    free(r->cmp.buf);
    free(r);
    return rc == 0 ? 0 : 1;
}

/* ---- touch -------------------------------------------------------------------------------- */

/* splitmix64: a small seeded PRNG, the same on every machine. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0 (rejection sampling: no modulo bias). */
static uint64_t rng_below(uint64_t *state, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (int i = 0; i < 64; i++) { /* a rejection is rarer than 1 in 2 */
        uint64_t v = rng_next(state);
        if (v < limit)
            return v % n;
    }
    return rng_next(state) % n;
}

/* A relation file's name: N, N_fsm, N_vm or N_init, then optionally .M (digits). */
static int relation_name(const char *name)
{
    const char *p = name;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (strncmp(p, "_fsm", 4) == 0 || strncmp(p, "_init", 5) == 0)
        p += p[1] == 'f' ? 4 : 5;
    else if (strncmp(p, "_vm", 3) == 0)
        p += 3;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

typedef struct {
    char **paths;
    uint64_t *pages;
    size_t n, cap;
    uint64_t total_pages;
} relfiles_t;

static void relfiles_free(relfiles_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    free(l->paths);
    free(l->pages);
    memset(l, 0, sizeof *l);
}

static int relfile_add(void *arg, const char *full, const char *rel, const struct stat *st,
                       bq_errbuf_t *e)
{
    relfiles_t *l = arg;
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    if (!relation_name(base) || st->st_size < (off_t)PAGE)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **p = realloc(l->paths, cap * sizeof *p);
        if (p)
            l->paths = p;
        uint64_t *g = p ? realloc(l->pages, cap * sizeof *g) : NULL;
        if (!p || !g)
            return bq_fail(e, BQ_E_NOMEM, "out of memory listing relation files (%s)", full);
        l->pages = g;
        l->cap = cap;
    }
    if (!(l->paths[l->n] = strdup(full)))
        return bq_fail(e, BQ_E_NOMEM, "out of memory listing relation files (%s)", full);
    l->pages[l->n] = (uint64_t)st->st_size / PAGE;
    l->total_pages += l->pages[l->n];
    l->n++;
    return 0;
}

/* Overwrite TOUCH_BYTES bytes at a random offset of page pg of fd with different bytes. */
static int touch_page(int fd, const char *path, uint64_t pg, uint64_t *rng, bq_errbuf_t *e)
{
    off_t off = (off_t)(pg * PAGE + rng_below(rng, PAGE - TOUCH_BYTES + 1));
    uint8_t old[TOUCH_BYTES], neu[TOUCH_BYTES];
    ssize_t n = pread(fd, old, sizeof old, off);
    if (n != (ssize_t)sizeof old)
        return bq_fail(e, BQ_E_IO, "could not read %s at offset %lld: %s", path, (long long)off,
                       n < 0 ? strerror(errno) : "short read");
    for (size_t i = 0; i < sizeof neu; i += 8) {
        uint64_t v = rng_next(rng);
        memcpy(neu + i, &v, 8);
    }
    if (memcmp(old, neu, sizeof neu) == 0)
        neu[0] = (uint8_t)~old[0];
    n = pwrite(fd, neu, sizeof neu, off);
    if (n != (ssize_t)sizeof neu)
        return bq_fail(e, BQ_E_IO, "could not write %s at offset %lld: %s", path,
                       (long long)off, n < 0 ? strerror(errno) : "short write");
    return 0;
}

static int touch(const char *dir, double pct, uint64_t seed, int json)
{
    bq_errbuf_t e = {{0}};
    relfiles_t l = {0};
    char load0[128], load1[128];
    loadavg(load0, sizeof load0);
    double t0 = now_s();
    int rc = 0;
    const char *subs[] = {"global", "base"};
    for (size_t i = 0; rc == 0 && i < sizeof subs / sizeof subs[0]; i++) {
        char sub[PATH_MAX];
        struct stat st;
        if ((rc = join(sub, sizeof sub, dir, subs[i], &e)) != 0)
            break;
        if (stat(sub, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = bq_fail(&e, BQ_E_INVAL, "%s is not a directory: is %s a PostgreSQL data "
                         "directory?", sub, dir);
            break;
        }
        rc = walk(sub, "", 0, relfile_add, &l, NULL, &e);
    }
    uint64_t want = 0, done = 0, seen = 0, files_changed = 0;
    if (rc == 0) {
        want = (uint64_t)llround((double)l.total_pages * pct / 100.0);
        if (want == 0 && pct > 0 && l.total_pages > 0)
            want = 1;
        if (want > l.total_pages)
            want = l.total_pages;
    }
    uint64_t rng = seed;
    /* Selection sampling (Knuth's algorithm S): page i of N is chosen with probability
     * (still wanted) / (still to see), which chooses exactly `want` pages, uniformly. */
    for (size_t f = 0; rc == 0 && f < l.n && done < want; f++) {
        int fd = -1;
        for (uint64_t pg = 0; rc == 0 && pg < l.pages[f]; pg++, seen++) {
            if (rng_below(&rng, l.total_pages - seen) >= want - done)
                continue;
            if (fd < 0 && (fd = open(l.paths[f], O_RDWR | O_CLOEXEC)) < 0) {
                rc = bq_fail(&e, BQ_E_IO, "could not open %s for writing: %s", l.paths[f],
                             strerror(errno));
                break;
            }
            rc = touch_page(fd, l.paths[f], pg, &rng, &e);
            if (rc == 0)
                done++;
        }
        if (fd >= 0) {
            if (rc == 0 && fsync(fd) != 0)
                rc = bq_fail(&e, BQ_E_IO, "could not fsync %s: %s", l.paths[f],
                             strerror(errno));
            close(fd);
            files_changed++;
        }
    }
    double t1 = now_s();
    if (rc == 0) {
        loadavg(load1, sizeof load1);
        out_t out = {.json = json};
        out_str(&out, "mode", "touch-pages");
        out_str(&out, "dir", dir);
        out_dbl(&out, "pct", pct, 3);
        out_u64(&out, "seed", seed);
        out_u64(&out, "relation_files", l.n);
        out_u64(&out, "relation_pages", l.total_pages);
        out_u64(&out, "pages_changed", done);
        out_u64(&out, "files_changed", files_changed);
        out_u64(&out, "bytes_per_page_changed", TOUCH_BYTES);
        out_dbl(&out, "wall_s", t1 - t0, 3);
        out_str(&out, "loadavg_start", load0);
        out_str(&out, "loadavg_end", load1);
        out_close(&out);
    } else {
        fprintf(stderr, "bench_store: touch-pages: %s\n", e.msg);
    }
    relfiles_free(&l);
    return rc == 0 ? 0 : 1;
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_store --store DIR --key FILE [--new-key] [--chunk-size KIB]\n"
            "                   [--comp zstd|lz4|none] [--level N] [--backup-id ID]\n"
            "                   [--buf-kib N] [--threads N] [--verify] [--compare] [--json] SRC\n"
            "       bench_store --touch-pages PCT --seed S [--json] DIR\n"
            "\n"
            "  --store DIR        the store (created when it has no store.conf)\n"
            "  --key FILE         its master key file (barque keygen --store-key)\n"
            "  --new-key          make FILE first (it must not exist)\n"
            "  --chunk-size KIB   chunk size of a new store in KiB (a multiple of 8;\n"
            "                     default: the store's, 64); an existing store must match\n"
            "  --comp, --level    compression of a new store (default zstd, level 3)\n"
            "  --backup-id ID     default bench1\n"
            "  --buf-kib N        read() buffer in KiB (default 1024)\n"
            "  --threads N        store_set_threads(N) (0: one per CPU; default: the store's)\n"
            "  --verify           store_verify the whole store after the backup\n"
            "  --compare          read the backup back and compare it with SRC\n"
            "  --json             one JSON object instead of key: value lines\n"
            "  --touch-pages PCT  change PCT%% of the relation pages of data directory DIR\n"
            "  --seed S           the PRNG seed of --touch-pages (default 1)\n");
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    ingest_opts_t o = {.backup_id = "bench1", .buf_bytes = 1u << 20, .threads = -1};
    const char *touch_pct = NULL;
    uint64_t seed = 1, v;
    enum { O_STORE = 256, O_KEY, O_NEWKEY, O_CHUNK, O_COMP, O_LEVEL, O_ID, O_BUF, O_THREADS, O_VERIFY,
           O_COMPARE, O_JSON, O_TOUCH, O_SEED, O_HELP };
    static const struct option lo[] = {
        {"store", required_argument, NULL, O_STORE},
        {"key", required_argument, NULL, O_KEY},
        {"new-key", no_argument, NULL, O_NEWKEY},
        {"chunk-size", required_argument, NULL, O_CHUNK},
        {"comp", required_argument, NULL, O_COMP},
        {"level", required_argument, NULL, O_LEVEL},
        {"backup-id", required_argument, NULL, O_ID},
        {"buf-kib", required_argument, NULL, O_BUF},
        {"threads", required_argument, NULL, O_THREADS},
        {"verify", no_argument, NULL, O_VERIFY},
        {"compare", no_argument, NULL, O_COMPARE},
        {"json", no_argument, NULL, O_JSON},
        {"touch-pages", required_argument, NULL, O_TOUCH},
        {"seed", required_argument, NULL, O_SEED},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_STORE: o.store = optarg; break;
        case O_KEY: o.key = optarg; break;
        case O_NEWKEY: o.new_key = 1; break;
        case O_CHUNK:
            if (parse_u64(optarg, 16384, &v) != 0 || v == 0 || v % 8 != 0) {
                fprintf(stderr, "bench_store: --chunk-size %s: a size in KiB, a multiple of 8 "
                        "from 8 to 16384\n", optarg);
                return 2;
            }
            o.chunk_kib = (uint32_t)v;
            break;
        case O_COMP: o.comp = optarg; break;
        case O_LEVEL: {
            char *end;
            errno = 0;
            long l = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || l < -131072 || l > 65537) {
                fprintf(stderr, "bench_store: --level %s: not a level\n", optarg);
                return 2;
            }
            o.level = (int)l;
            o.level_set = 1;
            break;
        }
        case O_ID: o.backup_id = optarg; break;
        case O_BUF:
            if (parse_u64(optarg, 262144, &v) != 0 || v == 0) {
                fprintf(stderr, "bench_store: --buf-kib %s: 1..262144\n", optarg);
                return 2;
            }
            o.buf_bytes = (size_t)v * 1024u;
            break;
        case O_THREADS:
            if (parse_u64(optarg, 1024, &v) != 0) {
                fprintf(stderr, "bench_store: --threads %s: 0..1024\n", optarg);
                return 2;
            }
            o.threads = (int)v;
            break;
        case O_VERIFY: o.verify = 1; break;
        case O_COMPARE: o.compare = 1; break;
        case O_JSON: o.json = 1; break;
        case O_TOUCH: touch_pct = optarg; break;
        case O_SEED:
            if (parse_u64(optarg, UINT64_MAX, &seed) != 0) {
                fprintf(stderr, "bench_store: --seed %s: not a number\n", optarg);
                return 2;
            }
            break;
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "bench_store: one directory expected (SRC or, with --touch-pages, "
                "DIR)\n");
        usage(stderr);
        return 2;
    }
    const char *dir = argv[optind];
    if (touch_pct) {
        char *end;
        errno = 0;
        double pct = strtod(touch_pct, &end);
        if (errno || *end || end == touch_pct || !(pct >= 0 && pct <= 100)) {
            fprintf(stderr, "bench_store: --touch-pages %s: a percentage, 0..100\n", touch_pct);
            return 2;
        }
        return touch(dir, pct, seed, o.json);
    }
    if (!o.store || !o.key) {
        fprintf(stderr, "bench_store: --store DIR and --key FILE are required to ingest\n");
        return 2;
    }
    o.src = dir;
    return ingest(&o);
}
