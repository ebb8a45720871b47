/* Job runners: the code that does a job's work, in a worker thread, knowing nothing of
 * the event loop. A runner reports progress through ctx and checks ctx->cancel often. */
#ifndef BQ_JOBS_H
#define BQ_JOBS_H

#include "proto.h"

#include <stdatomic.h>

typedef struct jobs_ctx jobs_ctx_t;
struct jobs_ctx {
    atomic_int *cancel;                       /* nonzero: stop as soon as possible */
    void (*progress)(jobs_ctx_t *ctx, uint64_t done, uint64_t total, const char *message);
    void *arg;
};

/* Run job and fill res (ok, retryable, error, check). Never returns without filling res. */
void jobs_run(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);

#endif
