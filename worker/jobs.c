#include "jobs.h"

#include "clock.h"
#include "pg_check.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void run_check(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e;
    ctx->progress(ctx, 0, 1, "connecting");
    char slot[64], app[BQ_NAME_MAX + 8];
    pg_receiver_names(job->cluster, slot, sizeof slot, app, sizeof app);
    int rc = pg_check_run_receiver(job->conninfo, 10, job->wal_stream ? app : NULL,
                                   job->wal_stream ? slot : NULL, &res->check, &e);
    if (rc) {
        res->ok = 0;
        res->retryable = 0;
        snprintf(res->error, sizeof res->error, "check of cluster %s: %s", job->cluster, e.msg);
        return;
    }
    res->has_check = 1;
    res->ok = 1; /* the check ran; its items say what passed */
    ctx->progress(ctx, 1, 1, "done");
}

/* switch-wal: close the cluster's current WAL segment so that it is archived now. */
static void run_switch_wal(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    int switched = 0;
    ctx->progress(ctx, 0, 1, job->force ? "checkpoint and switch" : "switching");
    int rc = pg_switch_wal(job->conninfo, job->force, 10, res->wal_file, sizeof res->wal_file,
                           &switched, &e);
    if (rc) {
        res->ok = 0;
        res->retryable = rc == BQ_E_PG;
        snprintf(res->error, sizeof res->error, "switch-wal of cluster %s: %s", job->cluster,
                 e.msg);
        return;
    }
    res->ok = 1;
    ctx->progress(ctx, 1, 1, switched ? "switched" : "nothing to switch");
}

static void run_sleep(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    int64_t start = bq_mono_ms(), last = 0;
    uint64_t total = (uint64_t)job->sleep_ms;
    for (;;) {
        int64_t elapsed = bq_mono_ms() - start;
        if (elapsed >= job->sleep_ms)
            break;
        if (atomic_load(ctx->cancel)) {
            res->ok = 0;
            res->retryable = 0;
            snprintf(res->error, sizeof res->error, "cancelled after %lld ms", (long long)elapsed);
            return;
        }
        if (elapsed - last >= 1000) {
            last = elapsed;
            ctx->progress(ctx, (uint64_t)elapsed, total, "sleeping");
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ctx->progress(ctx, total, total, "done");
    res->ok = 1;
}

void jobs_run(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->job_id = job->id;
    res->attempt = job->attempt;
    switch (job->type) {
    case BQ_JOB_CHECK: run_check(job, ctx, res); break;
    case BQ_JOB_SLEEP: run_sleep(job, ctx, res); break;
    case BQ_JOB_BACKUP: jobs_backup(job, ctx, res); break;
    case BQ_JOB_RESTORE: jobs_restore(job, ctx, res); break;
    case BQ_JOB_LIST_FILES: jobs_list_files(job, ctx, res); break;
    case BQ_JOB_DELETE: jobs_delete(job, ctx, res); break;
    case BQ_JOB_WAL_STREAM: jobs_wal_stream(job, ctx, res); break;
    case BQ_JOB_SWITCH_WAL: run_switch_wal(job, ctx, res); break;
    case BQ_JOB_WAL_PRUNE: jobs_wal_prune(job, ctx, res); break;
    default:
        res->ok = 0;
        res->retryable = 0;
        snprintf(res->error, sizeof res->error, "this worker does not know job type %d",
                 (int)job->type);
    }
}
