/* store_gc (store/store.h): after a manifest is removed (retention), GC reclaims the chunks only
 * that backup used, keeps the shared ones, repacks a sparse pack and deletes an empty one; the
 * other backups read back byte-identical and the store verifies clean. GC runs beside a
 * writer and removes nothing it relies on; it cleans up after a writer that died. It removes
 * torn and unreferenced packs and temp manifests, and refuses to run on a manifest it cannot
 * read. (Threads racing GC: concurrency_test.c.) */
#include "index.h"
#include "pack.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

#define CS 8192u

typedef struct {
    const char *path;
    size_t len;
    uint8_t *data;
} tfile_t;

enum { F_SHARED, F_U1, F_U2, F_U3, NFILES };

static tfile_t files[NFILES] = {
    {"global/shared", CS, NULL},    /* b1, b2: one chunk */
    {"base/1/u1", 7 * CS, NULL},    /* b1 only: seven chunks */
    {"base/1/u2", 3 * CS, NULL},    /* b2 only */
    {"base/1/u3", 2 * CS - 10, NULL}, /* b3 only */
};

static char root[256];
static char dir[300];
static store_master_t m;
static int nstore;

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    if (test_mkdtemp(root, sizeof root, "gc_test") != 0)
        return -1;
    randombytes_buf(m.key, sizeof m.key);
    snprintf(m.path, sizeof m.path, "%s/m.storekey", root);
    for (size_t i = 0; i < NFILES; i++) {
        if (!(files[i].data = malloc(files[i].len)))
            return -1;
        randombytes_buf(files[i].data, files[i].len);
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = test_rmtree(root);
    for (size_t i = 0; i < NFILES; i++)
        free(files[i].data);
    return rc == 0 ? 0 : -1;
}

static void backup(store_t *s, const char *id, const int *which, size_t n)
{
    bq_errbuf_t e = {{0}};
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, id, &bw, &e));
    for (size_t i = 0; i < n; i++) {
        const tfile_t *t = &files[which[i]];
        OK(store_backup_file_begin(bw, t->path, 0100600, 1700000000, &e));
        OK(store_backup_file_write(bw, t->data, t->len, &e));
        OK(store_backup_file_end(bw, &e));
    }
    OK(store_backup_commit(&bw, NULL, &e));
}

/* A fresh store in dir with b1 (shared, u1), b2 (shared, u2) and b3 (u3): one pack each. */
static void make_store(void)
{
    snprintf(dir, sizeof dir, "%s/s%d", root, nstore++);
    bq_errbuf_t e = {{0}};
    store_opts_t o = {CS, STORE_COMP_NONE, 0};
    OK(store_create(dir, &m, &o, &e));
    store_t *s = NULL;
    OK(store_open(dir, &m, &s, &e));
    backup(s, "b1", (const int[]){F_SHARED, F_U1}, 2);
    backup(s, "b2", (const int[]){F_SHARED, F_U2}, 2);
    backup(s, "b3", (const int[]){F_U3}, 1);
    store_close(&s);
}

typedef struct {
    uint64_t n, bytes;
    uint64_t ids[16];
} packs_t;

static int pack_one(uint64_t id, void *arg)
{
    packs_t *p = arg;
    char path[1024];
    struct stat sb;
    assert_int_equal(store_pack_path(dir, id, path, sizeof path), 0);
    assert_int_equal(stat(path, &sb), 0);
    if (p->n < 16)
        p->ids[p->n] = id;
    p->n++;
    p->bytes += (uint64_t)sb.st_size;
    return 0;
}

static packs_t packs(void)
{
    packs_t p = {0};
    bq_errbuf_t e = {{0}};
    OK(store_pack_list(dir, pack_one, &p, &e));
    return p;
}

static uint64_t index_count(void)
{
    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    OK(store_open(dir, &m, &s, &e));
    uint64_t n = 0;
    OK(store_index_count(store_index_handle(s), &n, &e));
    store_close(&s);
    return n;
}

static void unlink_rel(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    assert_int_equal(unlink(path), 0);
}

static int exists_rel(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return access(path, F_OK) == 0;
}

/* ---- reading back ---- */

typedef struct {
    const tfile_t *cur;
    size_t off;
    int nfiles;
} cmp_t;

static int cmp_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    (void)mode, (void)mtime, (void)e;
    cmp_t *c = arg;
    c->cur = NULL;
    for (size_t i = 0; i < NFILES; i++)
        if (strcmp(files[i].path, path) == 0)
            c->cur = &files[i];
    if (!c->cur) { /* test_beside_writer's fresh file: only its size is known */
        static const tfile_t fresh = {"base/1/fresh", CS, NULL};
        c->cur = &fresh;
    }
    c->off = 0;
    return 0;
}

static int cmp_data(void *arg, const void *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    cmp_t *c = arg;
    assert_true(c->off + len <= c->cur->len);
    if (c->cur->data)
        assert_memory_equal(buf, c->cur->data + c->off, len);
    c->off += len;
    return 0;
}

static int cmp_end(void *arg, const char *path, uint64_t size, const uint8_t sha256[32],
                   bq_errbuf_t *e)
{
    (void)path, (void)sha256, (void)e;
    cmp_t *c = arg;
    assert_int_equal(size, c->cur->len);
    assert_int_equal(c->off, c->cur->len);
    c->nfiles++;
    return 0;
}

/* Backup id reads back byte-identical, with nfiles files. */
static void read_same(const char *id, int nfiles)
{
    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    OK(store_open(dir, &m, &s, &e));
    store_read_cb_t cb = {.file_begin = cmp_begin, .data = cmp_data, .file_end = cmp_end};
    cmp_t c = {0};
    OK(store_backup_read(s, id, &cb, &c, &e));
    assert_int_equal(c.nfiles, nfiles);
    store_close(&s);
}

/* The store verifies clean, without even a warning. */
static void verify_clean(void)
{
    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    OK(store_open(dir, &m, &s, &e));
    store_verify_stats_t vst;
    OK(store_verify(s, NULL, NULL, &vst, &e));
    assert_int_equal(vst.problems, 0);
    assert_int_equal(vst.warnings, 0);
    store_close(&s);
}

/* ---- tests ---- */

static void test_reclaim_and_repack(void **state)
{
    (void)state;
    make_store();
    packs_t before = packs();
    assert_int_equal(before.n, 3);
    assert_int_equal(index_count(), 13);

    unlink_rel("backups/b1.manifest"); /* retention */
    bq_errbuf_t e = {{0}};
    store_gc_stats_t st;
    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.backups, 2);
    assert_int_equal(st.live_chunks, 6);   /* shared, u2 x3, u3 x2 */
    assert_int_equal(st.chunks_removed, 7); /* u1 */
    assert_int_equal(st.packs, 3);
    assert_int_equal(st.packs_deleted, 0);
    assert_int_equal(st.packs_repacked, 1); /* b1's pack: 1 live record of 8 */
    assert_int_equal(st.packs_written, 1);
    assert_int_equal(st.records_moved, 1);
    assert_int_equal(st.packs_skipped, 0);
    packs_t after = packs();
    assert_int_equal(after.n, 3);
    assert_int_equal(after.bytes, before.bytes - st.bytes_reclaimed);
    assert_true(st.bytes_reclaimed >= 7 * (CS + STORE_PACK_RECORD_OVERHEAD));
    assert_int_equal(index_count(), 6);
    read_same("b2", 2);
    read_same("b3", 1);
    verify_clean();

    /* b3 goes too: its pack has nothing live and is deleted whole. */
    unlink_rel("backups/b3.manifest");
    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.chunks_removed, 2);
    assert_int_equal(st.packs_deleted, 1);
    assert_int_equal(st.packs_repacked, 0);
    assert_int_equal(st.packs_written, 0);
    assert_int_equal(packs().n, 2);
    assert_int_equal(index_count(), 4);
    read_same("b2", 2);
    verify_clean();

    /* Nothing left to do. */
    packs_t now = packs();
    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.chunks_removed + st.packs_deleted + st.packs_repacked + st.bytes_reclaimed,
                     0);
    assert_int_equal(packs().bytes, now.bytes);

    /* No backup at all: everything goes. */
    unlink_rel("backups/b2.manifest");
    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.chunks_removed, 4);
    assert_int_equal(st.packs_deleted, 2);
    assert_int_equal(packs().n, 0);
    assert_int_equal(index_count(), 0);
    verify_clean();
}

static void test_repack_threshold(void **state)
{
    (void)state;
    make_store();
    unlink_rel("backups/b1.manifest");
    bq_errbuf_t e = {{0}};
    store_gc_stats_t st;
    store_gc_opts_t never = {-1};
    OK(store_gc(dir, &m, &never, &st, &e));
    assert_int_equal(st.chunks_removed, 7);
    assert_int_equal(st.packs_repacked, 0);
    assert_int_equal(st.bytes_reclaimed, 0);
    assert_int_equal(packs().n, 3);
    read_same("b2", 2);
    verify_clean();

    store_gc_opts_t bad = {1.5};
    assert_int_equal(store_gc(dir, &m, &bad, &st, &e), BQ_E_INVAL);
    /* At 1 every pack with any dead byte (the header counts) is rewritten, and reads stay. */
    store_gc_opts_t all = {1};
    OK(store_gc(dir, &m, &all, &st, &e));
    assert_int_equal(st.packs_repacked, 3);
    assert_int_equal(packs().n, 1);
    read_same("b2", 2);
    read_same("b3", 1);
    verify_clean();
}

/* The temp manifest of backup id (named after its writer's session), relative to dir. */
static int temp_manifest(const char *id, char *rel, size_t size)
{
    char bdir[1024];
    snprintf(bdir, sizeof bdir, "%s/backups", dir);
    DIR *d = opendir(bdir);
    assert_non_null(d);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s.manifest.tmp.", id);
    int found = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(rel, size, "backups/%s", de->d_name);
            found++;
        }
    closedir(d);
    return found;
}

/* GC beside a running writer: the writer has referenced chunks that only a deleted backup
 * used (so no manifest marks them) and sealed a chunk of its own into a pack nothing indexes
 * yet. GC runs (it is not refused), removes none of that, and the backup commits and reads
 * back; then GC finds nothing more to remove. */
static void test_beside_writer(void **state)
{
    (void)state;
    make_store();
    unlink_rel("backups/b1.manifest"); /* u1's seven chunks: now referenced by no manifest */
    packs_t before = packs();

    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    OK(store_open(dir, &m, &s, &e));
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, "b4", &bw, &e));
    OK(store_backup_file_begin(bw, files[F_U1].path, 0100600, 1700000000, &e));
    OK(store_backup_file_write(bw, files[F_U1].data, files[F_U1].len, &e));
    OK(store_backup_file_end(bw, &e));
    uint8_t fresh[CS]; /* a chunk nothing else has: sealed into b4's own (unindexed) pack */
    randombytes_buf(fresh, sizeof fresh);
    OK(store_backup_file_begin(bw, "base/1/fresh", 0100600, 1700000000, &e));
    OK(store_backup_file_write(bw, fresh, sizeof fresh, &e));
    OK(store_backup_file_end(bw, &e));
    /* A META runs the batch: the chunks are looked up, noted and the new one appended. */
    OK(store_backup_meta(bw, "label", "x", 1, &e));
    char tmp[512];
    assert_int_equal(temp_manifest("b4", tmp, sizeof tmp), 1);

    store_gc_stats_t st;
    store_gc_opts_t all = {1}; /* repack whatever it may: b4's pack must still be left alone */
    OK(store_gc(dir, &m, &all, &st, &e));
    assert_int_equal(st.sessions_live, 1);
    assert_int_equal(st.chunks_removed, 0); /* u1's chunks: b4 relies on them */
    assert_int_equal(st.temp_manifests, 0);
    assert_true(exists_rel(tmp));
    assert_int_equal(index_count(), 13);
    packs_t during = packs();
    assert_true(during.n >= 2); /* b4's pack is among them */
    (void)before;
    /* A second GC at once is refused by the first only while it runs: here it runs again. */
    OK(store_gc(dir, &m, &all, &st, &e));
    assert_int_equal(st.chunks_removed, 0);

    OK(store_backup_commit(&bw, NULL, &e));
    store_close(&s);
    read_same("b4", 2);
    read_same("b2", 2);
    verify_clean();
    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.sessions_live, 0);
    assert_int_equal(st.chunks_removed, 0);
    read_same("b4", 2);
    read_same("b2", 2);
    read_same("b3", 1);
    verify_clean();
}

/* A writer that died (its session is no longer locked): GC removes its temp manifest and its
 * notes, and the chunks only it referenced. */
static void test_dead_writer(void **state)
{
    (void)state;
    make_store();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        bq_errbuf_t e = {{0}};
        store_t *s = NULL;
        store_backup_t *bw = NULL;
        uint8_t fresh[3 * CS];
        randombytes_buf(fresh, sizeof fresh);
        if (store_open(dir, &m, &s, &e) != 0 || store_backup_begin(s, "b9", &bw, &e) != 0 ||
            store_backup_file_begin(bw, "base/1/lost", 0100600, 1, &e) != 0 ||
            store_backup_file_write(bw, fresh, sizeof fresh, &e) != 0 ||
            store_backup_file_end(bw, &e) != 0 || store_backup_meta(bw, "k", "v", 1, &e) != 0)
            _exit(2);
        _exit(0); /* dies holding its session: no abort, no commit */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char tmp[512];
    assert_int_equal(temp_manifest("b9", tmp, sizeof tmp), 1);
    uint64_t n_before = packs().n;
    bq_errbuf_t e = {{0}};
    store_gc_stats_t st;
    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.sessions_live, 0);
    assert_int_equal(st.sessions_reaped, 1);
    assert_int_equal(st.temp_manifests, 1);
    assert_false(exists_rel(tmp));
    assert_int_equal(st.packs_deleted, 1); /* its pack: nothing indexed in it */
    assert_int_equal(packs().n, n_before - 1);
    read_same("b1", 2);
    verify_clean();
}

static void test_torn_packs_and_temp_manifests(void **state)
{
    (void)state;
    make_store();
    bq_errbuf_t e = {{0}};
    uint8_t id[STORE_CHUNK_ID_BYTES], body[300];
    randombytes_buf(body, sizeof body);

    /* An unreferenced pack (a writer killed before it indexed anything). */
    store_pack_writer_t *w = NULL;
    OK(store_pack_create(dir, 0x1111, &w, &e));
    for (int i = 0; i < 3; i++) {
        randombytes_buf(id, sizeof id);
        OK(store_pack_append(w, id, body, sizeof body, NULL, NULL, &e));
    }
    OK(store_pack_close(&w, &e));
    /* A torn one: its last record cut in the middle. */
    OK(store_pack_create(dir, 0x2222, &w, &e));
    for (int i = 0; i < 2; i++) {
        randombytes_buf(id, sizeof id);
        OK(store_pack_append(w, id, body, sizeof body, NULL, NULL, &e));
    }
    uint64_t size = store_pack_size(w);
    OK(store_pack_close(&w, &e));
    char path[1024];
    OK(store_pack_path(dir, 0x2222, path, sizeof path));
    assert_int_equal(truncate(path, (off_t)size - 100), 0);
    /* Temp manifests of writers that died. */
    static const char *const temps[] = {"backups/b7.manifest.tmp.4242",
                                        "backups/b8.manifest.tmp.1"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, temps[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("junk", f);
        fclose(f);
    }
    assert_int_equal(packs().n, 5);

    store_gc_stats_t st;
    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.packs_deleted, 2);
    assert_int_equal(st.temp_manifests, 2);
    assert_int_equal(st.chunks_removed, 0);
    assert_int_equal(st.packs_repacked, 0);
    for (size_t i = 0; i < 2; i++)
        assert_false(exists_rel(temps[i]));
    assert_int_equal(packs().n, 3);
    assert_true(exists_rel("backups/b1.manifest"));
    read_same("b1", 2);
    read_same("b2", 2);
    read_same("b3", 1);
    verify_clean();
}

/* A repack interrupted after the index points at the copies but before the old pack is
 * removed leaves an unreferenced pack: the store verifies clean, and the next GC removes it. */
static void test_interrupted_repack_left_pack(void **state)
{
    (void)state;
    make_store();
    /* Simulate: save b1's pack, let GC repack it, put the old file back. */
    unlink_rel("backups/b1.manifest");
    packs_t before = packs();
    char saved[1024], cmd[2200];
    snprintf(saved, sizeof saved, "%s/saved", root);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s/packs' '%s'", saved, dir, saved);
    assert_int_equal(system(cmd), 0);
    bq_errbuf_t e = {{0}};
    store_gc_stats_t st;
    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.packs_repacked, 1);
    snprintf(cmd, sizeof cmd, "cp -an '%s/.' '%s/packs/'", saved, dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(packs().n, before.n + 1);
    verify_clean();
    read_same("b2", 2);

    OK(store_gc(dir, &m, NULL, &st, &e));
    assert_int_equal(st.packs_deleted, 1);
    assert_int_equal(st.chunks_removed, 0);
    assert_int_equal(packs().n, before.n);
    read_same("b2", 2);
    verify_clean();
}

static void test_damaged_manifest_stops_gc(void **state)
{
    (void)state;
    make_store();
    unlink_rel("backups/b1.manifest");
    char path[1024];
    snprintf(path, sizeof path, "%s/backups/b2.manifest", dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, 100), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 100), 1);
    close(fd);

    bq_errbuf_t e = {{0}};
    store_gc_stats_t st;
    int rc = store_gc(dir, &m, NULL, &st, &e);
    assert_int_equal(rc, BQ_E_IO);
    assert_non_null(strstr(e.msg, "GC of store"));
    assert_non_null(strstr(e.msg, "backup b2"));
    assert_int_equal(st.chunks_removed + st.packs_deleted + st.packs_repacked, 0);
    assert_int_equal(index_count(), 13);
    assert_int_equal(packs().n, 3);
}

static void test_wrong_key(void **state)
{
    (void)state;
    make_store();
    store_master_t other = m;
    other.key[0] ^= 1;
    bq_errbuf_t e = {{0}};
    store_gc_stats_t st;
    assert_int_equal(store_gc(dir, &other, NULL, &st, &e), BQ_E_KEY);
    assert_int_equal(index_count(), 13);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reclaim_and_repack),
        cmocka_unit_test(test_repack_threshold),
        cmocka_unit_test(test_beside_writer),
        cmocka_unit_test(test_dead_writer),
        cmocka_unit_test(test_torn_packs_and_temp_manifests),
        cmocka_unit_test(test_interrupted_repack_left_pack),
        cmocka_unit_test(test_damaged_manifest_stops_gc),
        cmocka_unit_test(test_wrong_key),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
