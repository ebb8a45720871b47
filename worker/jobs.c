#include "jobs.h"

#include "clock.h"
#include "hooks.h"
#include "log.h"
#include "pg_check.h"

#include <inttypes.h>

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

/* ---- hooks (pre/post_backup, pre/post_recover, post_wal) ---- */

/* Run one of the job's hooks with the documented environment (worker/hooks.h). status and
 * error: for post hooks; wal_name, wal_size: post_wal. Returns hook_run's value. */
static int job_hook(const bq_job_t *job, jobs_ctx_t *ctx, const char *name, hook_phase_t phase,
                    const char *command, const char *status, const char *error,
                    const char *wal_name, uint64_t wal_size, hook_result_t *hr)
{
    hook_env_t env;
    char num[32], jid[32];
    hook_env_init(&env);
    snprintf(jid, sizeof jid, "%" PRIu64, job->id);
    hook_env_add(&env, "BARQUE_HOOK", name);
    hook_env_add(&env, "BARQUE_PHASE", phase == HOOK_PRE ? "pre" : "post");
    hook_env_add(&env, "BARQUE_CLUSTER", job->cluster);
    hook_env_add(&env, "BARQUE_SITE", job->site);
    hook_env_add(&env, "BARQUE_WORKER", ctx->worker ? ctx->worker : "");
    hook_env_add(&env, "BARQUE_JOB_ID", jid);
    hook_env_add(&env, "BARQUE_BACKUP_ID", job->backup_id);
    hook_env_add(&env, "BARQUE_STATUS", status ? status : "");
    hook_env_add(&env, "BARQUE_ERROR", error ? error : "");
    hook_env_add(&env, "BARQUE_RETRY", phase == HOOK_PRE ? "1" : "0");
    hook_env_add(&env, "BARQUE_VERSION", BQ_VERSION_STRING);
    if (job->type == BQ_JOB_RESTORE)
        hook_env_add(&env, "BARQUE_DEST", job->dest);
    if (wal_name) {
        snprintf(num, sizeof num, "%" PRIu64, wal_size);
        hook_env_add(&env, "BARQUE_WAL_NAME", wal_name);
        hook_env_add(&env, "BARQUE_WAL_SIZE", num);
    }
    hook_t h = {.name = name, .command = command, .phase = phase,
                .timeout_ms = job->hook_timeout_ms > 0 ? job->hook_timeout_ms : 60000,
                .retries = job->hook_retries, .retry_sleep_ms = job->hook_retry_sleep_ms,
                .env = hook_env_vars(&env), .cancel = (volatile int *)ctx->cancel};
    int rc = hook_run(&h, hr);
    if (hr->outcome != HOOK_RAN_NONE)
        bq_log(hr->outcome == HOOK_OK ? BQ_LOG_INFO : BQ_LOG_WARNING, "hooks", job->id,
               "%s: %s (%u attempt%s, %.1f s)", job->cluster, hr->message[0] ? hr->message : name,
               hr->attempts, hr->attempts == 1 ? "" : "s", (double)hr->duration_ms / 1000);
    return rc;
}

/* wal-stream: the runner's context, with post_wal_script run after each archived file. */
typedef struct {
    jobs_ctx_t base;          /* first: the runner is handed &base */
    jobs_ctx_t *inner;
    const bq_job_t *job;
} wal_hook_ctx_t;

static void wal_hook_progress(jobs_ctx_t *ctx, uint64_t done, uint64_t total, const char *msg)
{
    wal_hook_ctx_t *w = (wal_hook_ctx_t *)ctx;
    w->inner->progress(w->inner, done, total, msg);
}

static void wal_hook_archived(jobs_ctx_t *ctx, const char *name, uint64_t size)
{
    wal_hook_ctx_t *w = (wal_hook_ctx_t *)ctx;
    w->inner->wal_archived(w->inner, name, size);
    hook_result_t hr;
    job_hook(w->job, w->inner, "post_wal", HOOK_POST, w->job->post_script, "DONE", "", name, size,
             &hr);
}

static void job_dispatch(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);

void jobs_run(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->job_id = job->id;
    res->attempt = job->attempt;
    int backup = job->type == BQ_JOB_BACKUP, restore = job->type == BQ_JOB_RESTORE;
    if (job->type == BQ_JOB_WAL_STREAM && job->post_script[0]) {
        wal_hook_ctx_t w = {.base = *ctx, .inner = ctx, .job = job};
        w.base.progress = wal_hook_progress;
        w.base.wal_archived = wal_hook_archived;
        job_dispatch(job, &w.base, res);
        return;
    }
    if (!backup && !restore) {
        job_dispatch(job, ctx, res);
        return;
    }
    const char *what = backup ? "backup" : "recover";
    char pre[16], post[16];
    snprintf(pre, sizeof pre, "pre_%s", what);
    snprintf(post, sizeof post, "post_%s", what);
    hook_result_t hr;
    if (job_hook(job, ctx, pre, HOOK_PRE, job->pre_script, NULL, NULL, NULL, 0, &hr) != 0) {
        res->ok = 0;
        res->retryable = 0;
        snprintf(res->error, sizeof res->error, "%s of cluster %s not started: %s", what,
                 job->cluster, hr.message);
        return;
    }
    job_dispatch(job, ctx, res);
    const char *status = res->ok ? (backup ? "DONE" : "OK") : "FAILED";
    job_hook(job, ctx, post, HOOK_POST, job->post_script, status, res->ok ? "" : res->error, NULL,
             0, &hr);
    if (hr.outcome != HOOK_RAN_NONE && hr.outcome != HOOK_OK)
        snprintf(res->hook_note, sizeof res->hook_note, "%s", hr.message);
}

static void job_dispatch(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
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
    case BQ_JOB_INVENTORY: jobs_inventory(job, ctx, res); break;
    case BQ_JOB_KEEP: jobs_keep(job, ctx, res); break;
    case BQ_JOB_RESTORE_TEST: jobs_restore_test(job, ctx, res); break;
    case BQ_JOB_REPLICATE: jobs_replicate(job, ctx, res); break;
    case BQ_JOB_REPLICATE_WAL: jobs_replicate_wal(job, ctx, res); break;
    default:
        res->ok = 0;
        res->retryable = 0;
        snprintf(res->error, sizeof res->error, "this worker does not know job type %d",
                 (int)job->type);
    }
}
