/* Crash tests of the store (issue 3; RELIABILITY.md fault 1): a child process writing a
 * backup is killed with SIGKILL at many points chosen by the test (after each chunk, after each
 * file, just before commit, at spread delays inside commit, after commit, and at small delays
 * after a signal so that kills also land inside a write). After each kill the store opens, the
 * earlier backups read back byte-identical (sha256 of every file), the unfinished backup is not
 * listed (or, when the commit finished, is complete), and no manifest under its final name is
 * incomplete. One store is reused across every kill point, so orphans accumulate; a backup
 * written after all the kills must still work.
 *
 * The child cannot be seen from outside, so it reports each step on a pipe (one byte) and waits
 * for the parent's acknowledgement on another: the parent kills it either while it waits (an
 * exact point) or a chosen number of microseconds after acknowledging (a point inside the next
 * operation). store.h has no hooks inside commit (pack sync, index put, manifest), so commit is
 * covered by delays spread over its duration, measured by a first run that is not killed. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

#define CS 16384u /* small chunks: more kill points per MiB written */
#define KIB 1024u
#define MAXF 16
#define MAXB 128

/* Child -> parent events. */
#define EV_BEGIN 'B'  /* store_open and store_backup_begin returned */
#define EV_WRITE 'W'  /* one chunk-sized store_backup_file_write returned */
#define EV_FEND 'F'   /* store_backup_file_end returned */
#define EV_COMMIT 'C' /* about to call store_backup_commit */
#define EV_DONE 'D'   /* store_backup_commit returned 0 (store not yet closed) */
#define EV_ERR 'E'    /* any failure in the child */

/* ---- files in memory and what each backup must read back ---- */

typedef struct {
    char path[64];
    uint8_t *data;
    size_t len;
} tfile_t;

typedef struct {
    char path[64];
    uint64_t size;
    uint8_t sha[32];
} efile_t;

typedef struct {
    char id[65];
    size_t n;
    efile_t f[MAXF];
} expect_t;

typedef struct {
    char root[256];
    char store[300];
    store_master_t m;
    tfile_t t1[MAXF], t2[MAXF], t3[MAXF];
    size_t n1, n2, n3;
    expect_t exp[MAXB]; /* every backup that exists (committed) */
    size_t nexp;
} fixture_t;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* kind 0: random; 1: compressible text; 2: pages alternating random and zeros */
static void fill(tfile_t *t, const char *path, size_t len, int kind, uint64_t seed)
{
    snprintf(t->path, sizeof t->path, "%s", path);
    t->len = len;
    t->data = malloc(len ? len : 1);
    assert_non_null(t->data);
    uint64_t s = seed;
    for (size_t i = 0; i < len;) {
        uint64_t r = rng_next(&s);
        if (kind == 0) {
            for (int k = 0; k < 8 && i < len; k++, i++)
                t->data[i] = (uint8_t)(r >> (8 * k));
        } else if (kind == 1) {
            int n = snprintf((char *)t->data + i, len - i, "row %" PRIu64 " value %u;\n",
                             (uint64_t)(i / 64), (unsigned)(r % 100));
            i += n < 0 ? len - i : ((size_t)n < len - i ? (size_t)n : len - i);
        } else {
            int zero = (i / 8192) % 2;
            for (int k = 0; k < 8 && i < len; k++, i++)
                t->data[i] = zero ? 0 : (uint8_t)(r >> (8 * k));
        }
    }
}

static void copy_file(tfile_t *dst, const tfile_t *src)
{
    snprintf(dst->path, sizeof dst->path, "%s", src->path);
    dst->len = src->len;
    dst->data = malloc(src->len ? src->len : 1);
    assert_non_null(dst->data);
    memcpy(dst->data, src->data, src->len);
}

static void free_tree(tfile_t *t, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free(t[i].data);
    *n = 0;
}

/* T1 (~1.9 MiB): the first earlier backup. */
static void make_t1(fixture_t *f)
{
    size_t n = 0;
    fill(&f->t1[n++], "PG_VERSION", 3, 1, 1);
    fill(&f->t1[n++], "base/1/1259", 512 * KIB, 1, 2);
    fill(&f->t1[n++], "base/1/2608", 384 * KIB, 0, 3);
    fill(&f->t1[n++], "base/1/16384", 640 * KIB, 2, 4);
    fill(&f->t1[n++], "base/1/16390", 100000, 0, 5);
    fill(&f->t1[n++], "empty", 0, 0, 6);
    fill(&f->t1[n++], "global/pg_control", 8192, 0, 7);
    fill(&f->t1[n++], "pg_xact/0000", 200 * KIB, 1, 8);
    f->n1 = n;
}

/* T2: T1 with some pages changed, one file regenerated and one new file. */
static void make_t2(fixture_t *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n1; i++)
        copy_file(&f->t2[n++], &f->t1[i]);
    uint64_t s = 99;
    tfile_t *rel = &f->t2[3]; /* base/1/16384: change 5 pages */
    for (int p = 0; p < 5; p++) {
        size_t page = (size_t)(rng_next(&s) % (rel->len / 8192));
        for (size_t k = 0; k < 8192; k++)
            rel->data[page * 8192 + k] ^= (uint8_t)(rng_next(&s) | 1);
    }
    free(f->t2[1].data);
    fill(&f->t2[1], "base/1/1259", 520 * KIB + 17, 1, 22);
    fill(&f->t2[n++], "base/1/16400", 300 * KIB, 0, 23);
    f->n2 = n;
}

/* T3(seed) (~1.3 MiB): the backup the child writes: two files of T1 unchanged (dedup), the
 * rest new for this seed. */
static void make_t3(fixture_t *f, uint64_t seed)
{
    free_tree(f->t3, &f->n3);
    size_t n = 0;
    fill(&f->t3[n++], "PG_VERSION", 3, 1, 1);
    copy_file(&f->t3[n++], &f->t1[2]); /* base/1/2608 */
    fill(&f->t3[n++], "base/5/100", 300 * KIB + 5, 0, seed * 16 + 1);
    fill(&f->t3[n++], "base/5/101", 400 * KIB, 1, seed * 16 + 2);
    copy_file(&f->t3[n++], &f->t1[4]); /* base/1/16390 */
    fill(&f->t3[n++], "base/5/102", 160 * KIB, 2, seed * 16 + 3);
    fill(&f->t3[n++], "global/pg_control", 8192, 0, seed * 16 + 4);
    f->n3 = n;
}

static void expect_of(expect_t *x, const char *id, const tfile_t *t, size_t n)
{
    memset(x, 0, sizeof *x);
    snprintf(x->id, sizeof x->id, "%s", id);
    x->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(x->f[i].path, sizeof x->f[i].path, "%s", t[i].path);
        x->f[i].size = t[i].len;
        crypto_hash_sha256(x->f[i].sha, t[i].data, t[i].len);
    }
}

/* ---- fixture ---- */

static int setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_mkdtemp(f->root, sizeof f->root, "crash_test") != 0) {
        free(f);
        return -1;
    }
    snprintf(f->store, sizeof f->store, "%s/store", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    free_tree(f->t1, &f->n1);
    free_tree(f->t2, &f->n2);
    free_tree(f->t3, &f->n3);
    store_master_clear(&f->m);
    int rc = test_rmtree(f->root);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* ---- writing (parent) ---- */

static void backup_tree(store_t *s, const char *id, const tfile_t *t, size_t n)
{
    bq_errbuf_t e = {{0}};
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, id, &bw, &e));
    OK(store_backup_meta(bw, "pg.version", "15", 2, &e));
    for (size_t i = 0; i < n; i++) {
        OK(store_backup_file_begin(bw, t[i].path, 0100600, 1700000000, &e));
        for (size_t off = 0; off < t[i].len; off += CS)
            OK(store_backup_file_write(bw, t[i].data + off,
                                       t[i].len - off < CS ? t[i].len - off : CS, &e));
        OK(store_backup_file_end(bw, &e));
    }
    OK(store_backup_commit(&bw, NULL, &e));
}

/* ---- reading back ---- */

typedef struct {
    const expect_t *x;
    size_t cur, done;
    uint64_t off;
    crypto_hash_sha256_state st;
    int bad;
    char why[256];
} rb_t;

static int rb_fail(rb_t *r, bq_errbuf_t *e, const char *why)
{
    r->bad = 1;
    snprintf(r->why, sizeof r->why, "backup %s file %zu: %s", r->x->id, r->done, why);
    (void)e;
    return -1;
}

static int rb_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    rb_t *r = arg;
    if (r->done >= r->x->n)
        return rb_fail(r, e, "more files than written");
    if (strcmp(path, r->x->f[r->done].path) != 0 || mode != 0100600 || mtime != 1700000000)
        return rb_fail(r, e, "path, mode or mtime differs");
    r->cur = r->done;
    r->off = 0;
    crypto_hash_sha256_init(&r->st);
    return 0;
}

static int rb_data(void *arg, const void *buf, size_t len, bq_errbuf_t *e)
{
    rb_t *r = arg;
    if (len > CS)
        return rb_fail(r, e, "chunk larger than the chunk size");
    crypto_hash_sha256_update(&r->st, buf, len);
    r->off += len;
    return 0;
}

static int rb_end(void *arg, const char *path, uint64_t size, const uint8_t sha[32],
                  bq_errbuf_t *e)
{
    rb_t *r = arg;
    uint8_t got[32];
    crypto_hash_sha256_final(&r->st, got);
    const efile_t *w = &r->x->f[r->cur];
    if (strcmp(path, w->path) != 0 || size != w->size || r->off != w->size)
        return rb_fail(r, e, "size differs");
    (void)sha; /* the manifest's checksum (of chunk ids): store_backup_read checked it */
    if (memcmp(got, w->sha, 32) != 0)
        return rb_fail(r, e, "sha256 differs");
    r->done++;
    return 0;
}

static const store_read_cb_t rb_cb = {.file_begin = rb_begin, .data = rb_data, .file_end = rb_end};

static void read_back(store_t *s, const expect_t *x, const char *when)
{
    bq_errbuf_t e = {{0}};
    rb_t r = {.x = x};
    int rc = store_backup_read(s, x->id, &rb_cb, &r, &e);
    if (r.bad)
        fail_msg("%s: %s", when, r.why);
    if (rc != 0)
        fail_msg("%s: reading backup %s: %s %s", when, x->id, bq_err_name(rc), e.msg);
    if (r.done != x->n)
        fail_msg("%s: backup %s gave %zu files of %zu", when, x->id, r.done, x->n);
}

typedef struct {
    char ids[MAXB + 4][65];
    size_t n;
} idlist_t;

static int list_cb(const char *id, void *arg)
{
    idlist_t *l = arg;
    if (l->n >= MAXB + 4)
        return -1;
    snprintf(l->ids[l->n++], sizeof l->ids[0], "%s", id);
    return 0;
}

static int in_list(const idlist_t *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->ids[i], id) == 0)
            return 1;
    return 0;
}

static const expect_t *find_exp(const fixture_t *f, const char *id)
{
    for (size_t i = 0; i < f->nexp; i++)
        if (strcmp(f->exp[i].id, id) == 0)
            return &f->exp[i];
    return NULL;
}

/* Every "X.manifest" under backups/ is a listed backup; anything else is a temp manifest. */
static void check_backups_dir(const fixture_t *f, const idlist_t *l, const char *when)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/backups", f->store);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        size_t len = strlen(nm);
        const char *suf = ".manifest";
        size_t sl = strlen(suf);
        if (len > sl && strcmp(nm + len - sl, suf) == 0) {
            char id[256];
            snprintf(id, sizeof id, "%.*s", (int)(len - sl), nm);
            if (!in_list(l, id))
                fail_msg("%s: backups/%s is not a listed backup", when, nm);
        } else if (!strstr(nm, ".manifest.tmp.")) {
            fail_msg("%s: unexpected file backups/%s", when, nm);
        }
    }
    closedir(d);
}

/* Files in dir whose name contains part, one level of subdirectories deep. */
static size_t count_files(const char *dir, const char *part)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char sub[700];
        snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode))
            n += count_files(sub, part);
        else if (strstr(de->d_name, part))
            n++;
    }
    closedir(d);
    return n;
}

/* ---- the child ---- */

typedef struct {
    int ev, ack; /* the child's ends */
} chan_t;

static void sig_parent(const chan_t *c, char ev)
{
    char a;
    if (write(c->ev, &ev, 1) != 1)
        _exit(4);
    if (ev == EV_ERR)
        _exit(3);
    if (read(c->ack, &a, 1) != 1)
        _exit(4);
}

static void child_main(const fixture_t *f, const char *id, const chan_t *c)
{
    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    store_backup_t *bw = NULL;
    if (store_open(f->store, &f->m, &s, &e) != 0 || store_backup_begin(s, id, &bw, &e) != 0)
        sig_parent(c, EV_ERR);
    sig_parent(c, EV_BEGIN);
    if (store_backup_meta(bw, "pg.version", "15", 2, &e) != 0)
        sig_parent(c, EV_ERR);
    for (size_t i = 0; i < f->n3; i++) {
        const tfile_t *t = &f->t3[i];
        if (store_backup_file_begin(bw, t->path, 0100600, 1700000000, &e) != 0)
            sig_parent(c, EV_ERR);
        for (size_t off = 0; off < t->len; off += CS) {
            if (store_backup_file_write(bw, t->data + off, t->len - off < CS ? t->len - off : CS,
                                        &e) != 0)
                sig_parent(c, EV_ERR);
            sig_parent(c, EV_WRITE);
        }
        if (store_backup_file_end(bw, &e) != 0)
            sig_parent(c, EV_ERR);
        sig_parent(c, EV_FEND);
    }
    sig_parent(c, EV_COMMIT);
    if (store_backup_commit(&bw, NULL, &e) != 0)
        sig_parent(c, EV_ERR);
    sig_parent(c, EV_DONE);
    store_close(&s);
    _exit(0);
}

/* ---- the parent's side of one run ---- */

typedef struct {
    size_t target;    /* kill after this many events (0: without waiting for any) */
    long delay_ns;    /* < 0: kill while the child waits for the ack; else ack, wait, kill */
    size_t events;    /* events received (after the kill too) */
    char last;        /* the last event received */
    int killed;       /* the child died of SIGKILL */
    int64_t commit_ns; /* ack of EV_COMMIT -> EV_DONE (unkilled runs) */
} run_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void spin_ns(long ns)
{
    int64_t end = now_ns() + ns;
    while (now_ns() < end) {
    }
}

static void run_child(const fixture_t *f, const char *id, run_t *r)
{
    int evp[2], ackp[2];
    assert_int_equal(pipe(evp), 0);
    assert_int_equal(pipe(ackp), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(evp[0]);
        close(ackp[1]);
        chan_t c = {evp[1], ackp[0]};
        child_main(f, id, &c);
        _exit(5);
    }
    close(evp[1]);
    close(ackp[0]);
    r->events = 0;
    r->last = 0;
    r->commit_ns = -1;
    int sent = 0;
    int64_t t_commit = 0;
    if (r->target == 0) {
        spin_ns(r->delay_ns < 0 ? 0 : r->delay_ns);
        kill(pid, SIGKILL);
        sent = 1;
    }
    char ev;
    while (read(evp[0], &ev, 1) == 1) {
        r->events++;
        r->last = ev;
        if (ev == EV_ERR)
            break;
        if (sent)
            continue; /* draining after a delayed kill */
        if (ev == EV_DONE && t_commit)
            r->commit_ns = now_ns() - t_commit;
        if (r->events == r->target) {
            if (r->delay_ns >= 0) {
                char a = 'a';
                if (write(ackp[1], &a, 1) != 1) { /* the child may be gone */
                }
                spin_ns(r->delay_ns);
            }
            kill(pid, SIGKILL);
            sent = 1;
            continue;
        }
        char a = 'a';
        if (ev == EV_COMMIT)
            t_commit = now_ns();
        if (write(ackp[1], &a, 1) != 1)
            break;
    }
    close(evp[0]);
    close(ackp[1]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (r->last == EV_ERR)
        fail_msg("child writing %s failed (event %zu)", id, r->events);
    r->killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (!r->killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fail_msg("child writing %s ended with status 0x%x", id, status);
    if (sent && !r->killed && r->last != EV_DONE)
        fail_msg("child writing %s was not killed", id);
}

/* After a run: the store opens, every known backup reads back, the child's backup is listed
 * only when complete, nothing else is listed, backups/ holds no stray manifest. Returns 1 when
 * the child's backup exists. */
/* verify: a pack cut short is what a killed writer leaves (its 1 MiB buffer was never
 * written, or only partly): an orphan for GC, which verify reports as a PACK_TORN warning.
 * verify must return 0; any problem (a pack damaged where the index points, a chunk of a
 * backup damaged or missing, an index entry pointing nowhere, a damaged manifest) fails. */
typedef struct {
    size_t torn_packs, other;
    char first[512];
} vres_t;

static int verify_cb(const store_verify_event_t *ev, void *arg)
{
    vres_t *v = arg;
    if (ev->kind == STORE_VERIFY_WAL_CONFLICT)
        return 0;
    if (ev->kind == STORE_VERIFY_PACK_TORN) {
        v->torn_packs++;
        return 0;
    }
    if (v->other++ == 0)
        snprintf(v->first, sizeof v->first, "%s: %s", store_verify_kind_name(ev->kind),
                 ev->message ? ev->message : "");
    return 0;
}

static size_t n_verified, max_torn_packs;

static int check_store(fixture_t *f, const char *id, const run_t *r, int read_all, int verify)
{
    char when[160];
    snprintf(when, sizeof when, "after killing %s at event %zu/%c (delay %ld ns)", id,
             r->target, r->last ? r->last : '-', r->delay_ns);
    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    int rc = store_open(f->store, &f->m, &s, &e);
    if (rc != 0)
        fail_msg("%s: store_open: %s %s", when, bq_err_name(rc), e.msg);
    idlist_t l = {.n = 0};
    rc = store_backup_list(s, list_cb, &l, &e);
    if (rc != 0)
        fail_msg("%s: store_backup_list: %s %s", when, bq_err_name(rc), e.msg);
    int listed = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (strcmp(l.ids[i], id) == 0)
            listed = 1;
        else if (!find_exp(f, l.ids[i]))
            fail_msg("%s: unexpected backup %s listed", when, l.ids[i]);
    }
    for (size_t i = 0; i < f->nexp; i++)
        if (!in_list(&l, f->exp[i].id))
            fail_msg("%s: backup %s is no longer listed", when, f->exp[i].id);
    if (r->last == EV_DONE && !listed)
        fail_msg("%s: committed backup is not listed", when);
    if (listed && r->last != EV_COMMIT && r->last != EV_DONE)
        fail_msg("%s: a backup killed before its commit is listed", when);
    check_backups_dir(f, &l, when);
    /* the two earlier backups always; the others at the end */
    for (size_t i = 0; i < f->nexp; i++)
        if (read_all || i < 2)
            read_back(s, &f->exp[i], when);
    if (listed) {
        assert_true(f->nexp < MAXB);
        expect_of(&f->exp[f->nexp], id, f->t3, f->n3);
        read_back(s, &f->exp[f->nexp], when);
        f->nexp++;
    }
    if (verify) {
        vres_t v = {0};
        store_verify_stats_t vst = {0};
        rc = store_verify(s, verify_cb, &v, &vst, &e);
        if (v.other)
            fail_msg("%s: store_verify: %zu problems, first: %s", when, v.other, v.first);
        if (rc != 0)
            fail_msg("%s: store_verify: %s %s", when, bq_err_name(rc), e.msg);
        assert_int_equal(vst.backups, f->nexp);
        if (v.torn_packs > max_torn_packs)
            max_torn_packs = v.torn_packs;
        n_verified++;
    }
    store_close(&s);
    return listed;
}

/* ---- the test ---- */

static void test_sigkill_points(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    int64_t t0 = now_ns();
    char keypath[400];
    snprintf(keypath, sizeof keypath, "%s/crash.storekey", f->root);
    OK(store_master_key_generate(keypath, &f->m, &e));
    store_opts_t o = {.chunk_size = CS, .comp = STORE_COMP_ZSTD, .level = 3};
    OK(store_create(f->store, &f->m, &o, &e));

    /* two earlier backups */
    make_t1(f);
    make_t2(f);
    store_t *s = NULL;
    OK(store_open(f->store, &f->m, &s, &e));
    backup_tree(s, "earlier-1", f->t1, f->n1);
    backup_tree(s, "earlier-2", f->t2, f->n2);
    store_close(&s);
    expect_of(&f->exp[f->nexp++], "earlier-1", f->t1, f->n1);
    expect_of(&f->exp[f->nexp++], "earlier-2", f->t2, f->n2);

    /* runs that are not killed: how many events, how long commit takes (the least of three:
     * fsync times vary) */
    run_t cal = {.commit_ns = -1};
    for (int k = 0; k < 3; k++) {
        char id[32];
        snprintf(id, sizeof id, "crash-cal%d", k);
        make_t3(f, 1000 + (uint64_t)k);
        run_t c = {.target = SIZE_MAX, .delay_ns = -1};
        run_child(f, id, &c);
        assert_false(c.killed);
        assert_int_equal(c.last, EV_DONE);
        assert_true(c.commit_ns > 0);
        assert_int_equal(check_store(f, id, &c, 0, k == 0), 1);
        if (k == 0 || c.commit_ns < cal.commit_ns)
            cal = c;
    }
    size_t n_ev = cal.events;       /* B, W..., F..., C, D */
    size_t ev_commit = n_ev - 1;    /* the index of EV_COMMIT */
    size_t ev_last_fend = n_ev - 2; /* the last file_end */

    /* the kill points: (target event, delay) */
    typedef struct {
        size_t target;
        long delay_ns;
    } point_t;
    point_t pts[200];
    assert_true(n_ev < 140);
    size_t np = 0;
    uint64_t rs = 4242;
    /* during store_open / backup_begin */
    pts[np++] = (point_t){0, 0};
    pts[np++] = (point_t){0, 300000};
    pts[np++] = (point_t){0, 1500000};
    /* exact points before commit: after every event up to the last file_end (after
     * backup_begin, after each chunk written, after each file ended) */
    for (size_t i = 1; i <= ev_last_fend && np < 150; i++)
        pts[np++] = (point_t){i, -1};
    /* inside a write: a small delay after an acknowledgement */
    for (size_t i = 0; i < 12; i++)
        pts[np++] = (point_t){1 + (size_t)(rng_next(&rs) % (ev_last_fend - 1)),
                              (long)(rng_next(&rs) % 400000)};
    /* commit: just before it, then delays spread over its measured duration (and a bit past) */
    pts[np++] = (point_t){ev_commit, -1};
    long cd = (long)cal.commit_ns;
    for (size_t i = 0; i < 32; i++)
        pts[np++] = (point_t){ev_commit, (long)(i * (uint64_t)cd * 12 / 10 / 31)};
    /* after commit: before store_close, and during it */
    pts[np++] = (point_t){n_ev, -1};
    pts[np++] = (point_t){n_ev, 20000};
    pts[np++] = (point_t){n_ev, 200000};

    size_t before = 0, during = 0, after = 0, during_committed = 0;
    for (size_t i = 0; i < np; i++) {
        char id[32];
        snprintf(id, sizeof id, "crash-%03zu", i);
        make_t3(f, i + 1);
        run_t r = {.target = pts[i].target, .delay_ns = pts[i].delay_ns};
        run_child(f, id, &r);
        int listed = check_store(f, id, &r, 0, i % 8 == 0 || i + 1 == np);
        if (r.last == EV_DONE)
            after++;
        else if (r.last == EV_COMMIT) {
            during++;
            during_committed += (size_t)listed;
        } else
            before++;
    }
    print_message("crash: %zu events per run (%zu before commit), commit took %.2f ms\n", n_ev,
                  ev_commit, cal.commit_ns / 1e6);
    print_message("crash: %zu kill points: %zu before commit, %zu during commit (%zu of them "
                  "committed), %zu after commit\n",
                  np, before, during, during_committed, after);
    assert_true(np >= 50);

    /* a fourth backup after all the kills, then every backup reads back */
    OK(store_open(f->store, &f->m, &s, &e));
    make_t3(f, 7777);
    backup_tree(s, "after", f->t3, f->n3);
    store_close(&s);
    run_t none = {.target = SIZE_MAX, .delay_ns = -1, .last = EV_DONE};
    assert_int_equal(check_store(f, "after", &none, 1, 1), 1);
    OK(store_open(f->store, &f->m, &s, &e));
    store_stats_t st;
    OK(store_stats(s, &st, &e));
    assert_int_equal(st.backups, f->nexp);
    store_close(&s);
    char packs[400], backups[400];
    snprintf(packs, sizeof packs, "%s/packs", f->store);
    snprintf(backups, sizeof backups, "%s/backups", f->store);
    print_message("crash: %zu backups at the end, %zu pack files, %zu temp manifests left; "
                  "%zu store_verify runs: no problem but torn orphan packs (up to %zu); %.1f s\n",
                  f->nexp, count_files(packs, ".pack"), count_files(backups, ".tmp."),
                  n_verified, max_torn_packs, (now_ns() - t0) / 1e9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigkill_points, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
