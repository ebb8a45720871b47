#include "output.h"

#include "clock.h"

#include <inttypes.h>
#include <string.h>

char *out_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", n);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

static json_t *time_json(int64_t ms)
{
    char buf[32];
    return ms ? json_string(bq_wall_format(ms, buf, sizeof buf)) : json_null();
}

static const char *time_text(int64_t ms, char *buf, size_t len)
{
    return ms ? bq_wall_format(ms, buf, len) : "-";
}

json_t *out_check_json(const bq_check_result_t *r)
{
    json_t *items = json_array();
    for (size_t i = 0; i < r->nitems; i++)
        json_array_append_new(items, json_pack("{s:s, s:b, s:s}", "name", r->items[i].name, "ok",
                                               r->items[i].ok, "detail", r->items[i].detail));
    json_t *slots = json_array();
    char tmp[BQ_SLOTS_MAX];
    snprintf(tmp, sizeof tmp, "%s", r->slots);
    char *save = NULL;
    for (char *s = strtok_r(tmp, ",", &save); s; s = strtok_r(NULL, ",", &save))
        json_array_append_new(slots, json_string(s));
    char sysid[32];
    snprintf(sysid, sizeof sysid, "%" PRIu64, r->system_identifier);
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:b, s:o}", "server_version",
                     r->server_version, "system_identifier", sysid, "wal_level", r->wal_level,
                     "archive_mode", r->archive_mode, "max_wal_senders", r->max_wal_senders,
                     "replication_slots", slots, "can_replicate", r->can_replicate, "items", items);
}

json_t *out_job_json(const bq_job_t *j)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:i, s:i}", "id", (json_int_t)j->id,
                          "type", bq_job_type_name(j->type), "state", bq_job_state_name(j->state),
                          "cluster", j->cluster, "site", j->site, "worker", j->worker, "attempt",
                          (int)j->attempt, "max_attempts", (int)j->max_attempts);
    json_object_set_new(o, "created", time_json(j->created_ms));
    json_object_set_new(o, "updated", time_json(j->updated_ms));
    json_object_set_new(o, "started", time_json(j->started_ms));
    json_object_set_new(o, "finished", time_json(j->finished_ms));
    json_object_set_new(o, "progress_done", json_integer((json_int_t)j->progress_done));
    json_object_set_new(o, "progress_total", json_integer((json_int_t)j->progress_total));
    json_object_set_new(o, "error", j->error[0] ? json_string(j->error) : json_null());
    json_object_set_new(o, "cancel_requested", json_boolean(j->cancel_requested));
    if (j->type == BQ_JOB_SLEEP)
        json_object_set_new(o, "sleep_ms", json_integer(j->sleep_ms));
    if (j->has_check)
        json_object_set_new(o, "check", out_check_json(&j->check));
    return o;
}

json_t *out_worker_json(const bq_worker_t *w)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:i, s:i, s:I, s:I}", "name", w->name, "site",
                          w->site, "version", w->version, "online", w->online, "running",
                          (int)w->running, "max_jobs", (int)w->max_jobs, "store_free_bytes",
                          (json_int_t)w->store_free, "store_total_bytes",
                          (json_int_t)w->store_total);
    json_object_set_new(o, "registered", time_json(w->registered_ms));
    json_object_set_new(o, "last_seen", time_json(w->last_seen_ms));
    return o;
}

json_t *out_cluster_json(const bq_cluster_t *c)
{
    return json_pack("{s:s, s:s}", "name", c->name, "site", c->site);
}

void out_json_print(FILE *f, json_t *v)
{
    json_dumpf(v, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(v);
}

void out_workers_text(FILE *f, const bq_msg_cli_reply_t *r)
{
    char when[32], freeb[32];
    fprintf(f, "%-20s %-12s %-8s %-9s %-12s %-21s %s\n", "NAME", "SITE", "STATE", "JOBS",
            "STORE FREE", "LAST SEEN", "VERSION");
    for (size_t i = 0; i < r->nworkers; i++) {
        const bq_worker_t *w = &r->workers[i];
        char jobs[24];
        snprintf(jobs, sizeof jobs, "%u/%u", w->running, w->max_jobs);
        fprintf(f, "%-20s %-12s %-8s %-9s %-12s %-21s %s\n", w->name, w->site,
                w->online ? "online" : "offline", jobs, out_bytes(w->store_free, freeb, sizeof freeb),
                time_text(w->last_seen_ms, when, sizeof when), w->version);
    }
    if (!r->nworkers)
        fprintf(f, "(no worker has registered yet)\n");
}

void out_clusters_text(FILE *f, const bq_msg_cli_reply_t *r)
{
    fprintf(f, "%-24s %s\n", "NAME", "SITE");
    for (size_t i = 0; i < r->nclusters; i++)
        fprintf(f, "%-24s %s\n", r->clusters[i].name, r->clusters[i].site);
    if (!r->nclusters)
        fprintf(f, "(no cluster configured)\n");
}

void out_jobs_text(FILE *f, const bq_msg_cli_reply_t *r)
{
    char when[32];
    fprintf(f, "%-8s %-7s %-16s %-10s %-10s %-7s %-16s %-21s %s\n", "ID", "TYPE", "CLUSTER", "SITE",
            "STATE", "ATTEMPT", "WORKER", "UPDATED", "ERROR");
    for (size_t i = 0; i < r->njobs; i++) {
        const bq_job_t *j = &r->jobs[i];
        char attempt[24];
        snprintf(attempt, sizeof attempt, "%u/%u", j->attempt, j->max_attempts);
        fprintf(f, "%-8" PRIu64 " %-7s %-16s %-10s %-10s %-7s %-16s %-21s %s\n", j->id,
                bq_job_type_name(j->type), j->cluster[0] ? j->cluster : "-", j->site,
                bq_job_state_name(j->state), attempt, j->worker[0] ? j->worker : "-",
                time_text(j->updated_ms, when, sizeof when), j->error);
    }
    if (!r->njobs)
        fprintf(f, "(no jobs)\n");
}

void out_job_text(FILE *f, const bq_job_t *j)
{
    char t[32];
    fprintf(f, "job:          %" PRIu64 "\n", j->id);
    fprintf(f, "type:         %s\n", bq_job_type_name(j->type));
    fprintf(f, "state:        %s%s\n", bq_job_state_name(j->state),
            j->cancel_requested && !bq_job_state_terminal(j->state) ? " (cancel requested)" : "");
    fprintf(f, "cluster:      %s\n", j->cluster[0] ? j->cluster : "-");
    fprintf(f, "site:         %s\n", j->site);
    fprintf(f, "worker:       %s\n", j->worker[0] ? j->worker : "-");
    fprintf(f, "attempt:      %u of %u\n", j->attempt, j->max_attempts);
    fprintf(f, "created:      %s\n", time_text(j->created_ms, t, sizeof t));
    fprintf(f, "started:      %s\n", time_text(j->started_ms, t, sizeof t));
    fprintf(f, "finished:     %s\n", time_text(j->finished_ms, t, sizeof t));
    if (j->progress_total)
        fprintf(f, "progress:     %" PRIu64 " of %" PRIu64 "\n", j->progress_done, j->progress_total);
    if (j->error[0])
        fprintf(f, "error:        %s\n", j->error);
    if (j->has_check)
        out_check_text(f, j->cluster, j);
}

void out_check_text(FILE *f, const char *cluster, const bq_job_t *j)
{
    const bq_check_result_t *r = &j->check;
    fprintf(f, "Cluster %s (checked by worker %s, job %" PRIu64 "):\n", cluster, j->worker, j->id);
    for (size_t i = 0; i < r->nitems; i++)
        fprintf(f, "  %-20s %-7s %s\n", r->items[i].name, r->items[i].ok ? "OK" : "FAILED",
                r->items[i].detail);
    if (r->server_version[0]) {
        fprintf(f, "  server version %s, system identifier %" PRIu64 ", wal_level %s, "
                "archive_mode %s, max_wal_senders %d\n", r->server_version, r->system_identifier,
                r->wal_level, r->archive_mode, r->max_wal_senders);
        fprintf(f, "  replication slots: %s; role may replicate: %s\n",
                r->slots[0] ? r->slots : "(none)", r->can_replicate ? "yes" : "no");
    }
}

typedef struct {
    char site[BQ_NAME_MAX];
    int online, total, clusters;
} site_sum_t;

static size_t status_sites(const bq_msg_cli_reply_t *r, site_sum_t *sums, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nsites && n < max; i++)
        snprintf(sums[n++].site, BQ_NAME_MAX, "%s", r->sites[i]);
    for (size_t i = 0; i < n; i++) {
        sums[i].online = sums[i].total = sums[i].clusters = 0;
        for (size_t k = 0; k < r->nworkers; k++) {
            if (strcmp(r->workers[k].site, sums[i].site) != 0)
                continue;
            sums[i].total++;
            sums[i].online += r->workers[k].online;
        }
        for (size_t k = 0; k < r->nclusters; k++)
            sums[i].clusters += strcmp(r->clusters[k].site, sums[i].site) == 0;
    }
    return n;
}

static void status_counts(const bq_msg_cli_reply_t *r, int *queued, int *running)
{
    *queued = (int)r->jobs_queued;
    *running = (int)r->jobs_running;
}

void out_status_text(FILE *f, const char *coordinator, const bq_msg_cli_reply_t *r)
{
    site_sum_t sums[256];
    size_t n = status_sites(r, sums, 256);
    int queued, running;
    status_counts(r, &queued, &running);
    fprintf(f, "Coordinator: %s (answering)\n", coordinator);
    fprintf(f, "Sites:\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-16s workers %d online, %d offline; clusters %d\n", sums[i].site,
                sums[i].online, sums[i].total - sums[i].online, sums[i].clusters);
    fprintf(f, "Workers:\n");
    for (size_t i = 0; i < r->nworkers; i++)
        fprintf(f, "  %-16s %-12s %-8s %u/%u jobs\n", r->workers[i].name, r->workers[i].site,
                r->workers[i].online ? "online" : "offline", r->workers[i].running,
                r->workers[i].max_jobs);
    if (!r->nworkers)
        fprintf(f, "  (no worker has registered yet)\n");
    fprintf(f, "Clusters:\n");
    for (size_t i = 0; i < r->nclusters; i++)
        fprintf(f, "  %-16s site %s\n", r->clusters[i].name, r->clusters[i].site);
    if (!r->nclusters)
        fprintf(f, "  (none configured)\n");
    fprintf(f, "Jobs: %d queued, %d running\n", queued, running);
}

json_t *out_status_json(const char *coordinator, const bq_msg_cli_reply_t *r)
{
    site_sum_t sums[256];
    size_t n = status_sites(r, sums, 256);
    int queued, running;
    status_counts(r, &queued, &running);
    json_t *sites = json_array(), *workers = json_array(), *clusters = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(sites, json_pack("{s:s, s:i, s:i, s:i}", "name", sums[i].site,
                                               "workers_online", sums[i].online, "workers_offline",
                                               sums[i].total - sums[i].online, "clusters",
                                               sums[i].clusters));
    for (size_t i = 0; i < r->nworkers; i++)
        json_array_append_new(workers, out_worker_json(&r->workers[i]));
    for (size_t i = 0; i < r->nclusters; i++)
        json_array_append_new(clusters, out_cluster_json(&r->clusters[i]));
    return json_pack("{s:s, s:o, s:o, s:o, s:{s:i, s:i}}", "coordinator", coordinator, "sites",
                     sites, "workers", workers, "clusters", clusters, "jobs", "queued", queued,
                     "running", running);
}
