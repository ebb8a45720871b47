/* The restore job (worker/restore.c) on a real store in a scratch directory: a whole restore
 * gives the files back byte for byte; a cancel, or a deadline already past (a restore test's
 * timeout), stops it before it writes a file, leaves its marker in DEST and says so. */
#include "clock.h"
#include "jobs.h"
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../store/test_util.h"

#define NFILES 40
#define FILE_BYTES (100u * 1024u + 17u) /* two chunks of 64 KiB and a bit */
#define MARKER ".barque-restore-in-progress"

typedef struct {
    char root[256];
    char store_dir[300];
    store_master_t key;
    store_t *store;
    uint8_t *data[NFILES];
} fixture_t;

static int setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_mkdtemp(f->root, sizeof f->root, "restore_test") != 0) {
        free(f);
        return -1;
    }
    snprintf(f->store_dir, sizeof f->store_dir, "%s/store", f->root);
    randombytes_buf(f->key.key, sizeof f->key.key);
    snprintf(f->key.path, sizeof f->key.path, "%s/a.storekey", f->root);
    bq_errbuf_t e = {{0}};
    store_opts_t o = {0};
    OK(store_create(f->store_dir, &f->key, &o, &e));
    OK(store_open(f->store_dir, &f->key, &f->store, &e));

    store_backup_t *bw = NULL;
    OK(store_backup_begin(f->store, "20260101T000000", &bw, &e));
    OK(store_backup_meta(bw, "pg.version", "15", 2, &e));
    OK(store_backup_file_begin(bw, "data/base", 040700, 1700000000, &e));
    OK(store_backup_file_end(bw, &e));
    for (int i = 0; i < NFILES; i++) {
        f->data[i] = malloc(FILE_BYTES);
        assert_non_null(f->data[i]);
        randombytes_buf(f->data[i], FILE_BYTES);
        char path[64];
        snprintf(path, sizeof path, "data/base/%d", 16384 + i);
        OK(store_backup_file_begin(bw, path, 0100600, 1700000000, &e));
        OK(store_backup_file_write(bw, f->data[i], FILE_BYTES, &e));
        OK(store_backup_file_end(bw, &e));
    }
    store_backup_stats_t st;
    OK(store_backup_commit(&bw, &st, &e));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    store_close(&f->store);
    for (int i = 0; i < NFILES; i++)
        free(f->data[i]);
    int rc = test_rmtree(f->root);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void no_progress(jobs_ctx_t *ctx, uint64_t done, uint64_t total, const char *message)
{
    (void)ctx, (void)done, (void)total, (void)message;
}

/* One restore of the fixture's backup into ROOT/name with cancel and deadline as given. */
static void restore(fixture_t *f, const char *name, int cancel_now, int64_t deadline_ms,
                    bq_msg_result_t *res, char *dest, size_t dest_size)
{
    atomic_int cancel = cancel_now;
    jobs_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.cancel = &cancel;
    ctx.progress = no_progress;
    ctx.worker = "w1";
    ctx.store = f->store;
    ctx.cli_command = "";
    ctx.deadline_ms = deadline_ms;
    bq_job_t *job = calloc(1, sizeof *job);
    assert_non_null(job);
    job->id = 7;
    job->attempt = 1;
    job->type = BQ_JOB_RESTORE;
    snprintf(job->cluster, sizeof job->cluster, "db1");
    snprintf(job->backup_id, sizeof job->backup_id, "20260101T000000");
    snprintf(dest, dest_size, "%s/%s", f->root, name);
    snprintf(job->dest, sizeof job->dest, "%s", dest);
    memset(res, 0, sizeof *res);
    jobs_restore(job, &ctx, res);
    free(job);
}

static int regular_files(const char *dir)
{
    char path[PATH_MAX];
    int n = 0;
    for (int i = 0; i < NFILES; i++) {
        snprintf(path, sizeof path, "%s/base/%d", dir, 16384 + i);
        n += access(path, F_OK) == 0;
    }
    return n;
}

static void test_whole(void **state)
{
    fixture_t *f = *state;
    bq_msg_result_t *res = calloc(1, sizeof *res);
    assert_non_null(res);
    char dest[PATH_MAX];
    restore(f, "whole", 0, bq_mono_ms() + 600000, res, dest, sizeof dest);
    if (!res->ok)
        fail_msg("restore: %s", res->error);
    assert_int_equal(res->restore.files_written, NFILES);
    for (int i = 0; i < NFILES; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/base/%d", dest, 16384 + i);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        uint8_t *got = malloc(FILE_BYTES + 1);
        assert_non_null(got);
        assert_int_equal(fread(got, 1, FILE_BYTES + 1, fp), FILE_BYTES);
        fclose(fp);
        assert_memory_equal(got, f->data[i], FILE_BYTES);
        free(got);
    }
    char marker[PATH_MAX + 32];
    snprintf(marker, sizeof marker, "%s/" MARKER, dest);
    assert_int_not_equal(access(marker, F_OK), 0);
    free(res);
}

/* A restore stopped before its first file (cancel_now, or deadline_ms already past): not
 * retryable, the error says why and how to go on, no file written, the marker left. */
static void stopped_at_once(fixture_t *f, const char *name, int cancel_now, int64_t deadline_ms,
                            const char *why)
{
    bq_msg_result_t *res = calloc(1, sizeof *res);
    assert_non_null(res);
    char dest[PATH_MAX];
    restore(f, name, cancel_now, deadline_ms, res, dest, sizeof dest);
    assert_false(res->ok);
    assert_false(res->retryable);
    assert_non_null(strstr(res->error, why));
    assert_non_null(strstr(res->error, "--delta"));
    assert_int_equal(regular_files(dest), 0);
    char marker[PATH_MAX + 32];
    snprintf(marker, sizeof marker, "%s/" MARKER, dest);
    assert_int_equal(access(marker, F_OK), 0); /* a retry or --delta goes on from here */
    free(res);
}

static void test_cancelled(void **state)
{
    stopped_at_once(*state, "cancelled", 1, 0, "cancelled after 0 files");
}

static void test_out_of_time(void **state)
{
    stopped_at_once(*state, "late", 0, bq_mono_ms() - 1, "out of time after 0 files");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_cancelled),
        cmocka_unit_test(test_out_of_time),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
