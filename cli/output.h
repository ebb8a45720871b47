/* Rendering of coordinator replies for people (aligned text) and programs (JSON via jansson). */
#ifndef BQ_CLI_OUTPUT_H
#define BQ_CLI_OUTPUT_H

#include "proto.h"

#include <jansson.h>
#include <stdio.h>

/* JSON values of the domain types; the caller owns the returned reference. */
json_t *out_job_json(const bq_job_t *j);
json_t *out_worker_json(const bq_worker_t *w);
json_t *out_cluster_json(const bq_cluster_t *c);
json_t *out_check_json(const bq_check_result_t *r);

/* Print v (stolen) as indented JSON with a final newline. */
void out_json_print(FILE *f, json_t *v);

/* Text renderings. */
void out_workers_text(FILE *f, const bq_msg_cli_reply_t *r);
void out_clusters_text(FILE *f, const bq_msg_cli_reply_t *r);
void out_jobs_text(FILE *f, const bq_msg_cli_reply_t *r);
void out_job_text(FILE *f, const bq_job_t *j);
void out_status_text(FILE *f, const char *coordinator, const bq_msg_cli_reply_t *r);
json_t *out_status_json(const char *coordinator, const bq_msg_cli_reply_t *r);
/* One line per check item: "  connection        OK      reason". */
void out_check_text(FILE *f, const char *cluster, const bq_job_t *j);

/* "12.3 GiB" */
char *out_bytes(uint64_t n, char *buf, size_t len);

#endif
