/* The restore-test job (issue 7): see jobs.h. Placeholder: being written. */
#include "jobs.h"

#include <stdio.h>

void jobs_restore_test(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    (void)ctx;
    res->ok = 0;
    res->retryable = 0;
    snprintf(res->error, sizeof res->error, "restore test of cluster %s: not built yet",
             job->cluster);
}

int jobs_restore_test_sweep(const char *scratch, uint64_t keep_job, bq_errbuf_t *e)
{
    (void)scratch;
    (void)keep_job;
    (void)e;
    return 0;
}
