#include "output.h"

#include "clock.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

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

char *out_lsn(uint64_t lsn, char *buf, size_t len)
{
    snprintf(buf, len, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
    return buf;
}

char *out_duration(int64_t ms, char *buf, size_t len)
{
    return bq_duration_text(ms, buf, len);
}

char *out_pg_version(uint32_t v, char *buf, size_t len)
{
    if (v == 0)
        snprintf(buf, len, "-");
    else if (v >= 100000)
        snprintf(buf, len, "%u.%u", v / 10000, v % 10000);
    else /* 9.6 and older: 90624 */
        snprintf(buf, len, "%u.%u.%u", v / 10000, v / 100 % 100, v % 100);
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

/* An item's severity: OK when ok, else its own, CRITICAL when it says none. */
static int item_severity(const bq_check_item_t *it)
{
    return it->ok ? BQ_SEV_OK : it->severity ? it->severity : BQ_SEV_CRITICAL;
}

/* [{name, ok, status, detail}] of n check items. */
static json_t *items_json(const bq_check_item_t *items, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:b, s:s, s:s}", "name", items[i].name, "ok",
                                           items[i].ok, "status",
                                           bq_severity_name(item_severity(&items[i])), "detail",
                                           items[i].detail));
    return a;
}

static json_t *str_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

json_t *out_check_json(const bq_check_result_t *r)
{
    json_t *items = items_json(r->items, r->nitems);
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
    json_object_set_new(o, "progress_message", json_string(j->progress_message));
    json_object_set_new(o, "error", j->error[0] ? json_string(j->error) : json_null());
    if (j->type == BQ_JOB_SWITCH_WAL)
        json_object_set_new(o, "wal_file", j->wal_file[0] ? json_string(j->wal_file) : json_null());
    json_object_set_new(o, "cancel_requested", json_boolean(j->cancel_requested));
    if (j->hook_note[0])
        json_object_set_new(o, "hook_note", json_string(j->hook_note));
    if (j->has_prune)
        json_object_set_new(o, "prune", json_pack("{s:I, s:I}", "files_removed",
                                                  (json_int_t)j->prune.files_removed, "bytes_removed",
                                                  (json_int_t)j->prune.bytes_removed));
    if (j->type == BQ_JOB_SLEEP)
        json_object_set_new(o, "sleep_ms", json_integer(j->sleep_ms));
    if (j->type == BQ_JOB_BACKUP || j->type == BQ_JOB_RESTORE || j->type == BQ_JOB_LIST_FILES ||
        j->type == BQ_JOB_DELETE || j->type == BQ_JOB_RESTORE_TEST)
        json_object_set_new(o, "backup_id",
                            j->backup_id[0] ? json_string(j->backup_id) : json_null());
    if (j->type == BQ_JOB_RESTORE_TEST)
        json_object_set_new(o, "restore_test_kind", str_or_null(j->rt.kind));
    if (j->type == BQ_JOB_BACKUP)
        json_object_set_new(o, "checkpoint",
                            json_string(j->checkpoint[0] ? j->checkpoint : "fast"));
    if (j->type == BQ_JOB_RESTORE)
        json_object_set_new(o, "dest", json_string(j->dest));
    if (j->type == BQ_JOB_LIST_FILES)
        json_object_set_new(o, "offset", json_integer((json_int_t)j->offset));
    if (j->has_delete)
        json_object_set_new(o, "delete", out_delete_json(&j->del));
    if (j->has_check)
        json_object_set_new(o, "check", out_check_json(&j->check));
    return o;
}

json_t *out_delete_json(const bq_delete_result_t *d)
{
    json_t *o = json_pack("{s:b, s:b, s:I, s:I}", "was_absent", d->was_absent, "gc_run",
                          d->gc_run, "chunks_removed", (json_int_t)d->chunks_removed,
                          "bytes_reclaimed", (json_int_t)d->bytes_reclaimed);
    json_object_set_new(o, "gc_note", d->gc_note[0] ? json_string(d->gc_note) : json_null());
    return o;
}

/* The sites that hold a verified copy of b: where it was taken (when it is DONE or waiting
 * for its WAL) and each DONE copy, joined by ',' into buf. */
const char *out_backup_sites(const bq_backup_t *b, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    int origin = (b->state == BQ_BACKUP_DONE || b->state == BQ_BACKUP_WAITING_FOR_WALS) &&
                 b->site[0];
    for (size_t i = 0; i < b->ncopies; i++) /* its own site's retention deleted it there */
        if (b->copies[i].state == BQ_COPY_DELETED && strcmp(b->copies[i].site, b->site) == 0)
            origin = 0;
    if (origin)
        off += (size_t)snprintf(buf, len, "%s", b->site);
    for (size_t i = 0; i < b->ncopies && off < len; i++)
        if (b->copies[i].state == BQ_COPY_DONE)
            off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
                                    b->copies[i].site);
    return buf;
}

static json_t *copy_json(const bq_copy_t *c)
{
    json_t *o = json_pack("{s:s, s:s}", "site", c->site, "state", bq_copy_state_name(c->state));
    json_object_set_new(o, "worker", str_or_null(c->worker));
    json_object_set_new(o, "source", str_or_null(c->source));
    json_object_set_new(o, "job_id", json_integer((json_int_t)c->job_id));
    json_object_set_new(o, "queued", time_json(c->queued_ms));
    json_object_set_new(o, "done", time_json(c->done_ms));
    json_object_set_new(o, "duration_ms", json_integer(c->duration_ms));
    json_object_set_new(o, "chunks_total", json_integer((json_int_t)c->chunks_total));
    json_object_set_new(o, "chunks_present", json_integer((json_int_t)c->chunks_present));
    json_object_set_new(o, "chunks_fetched", json_integer((json_int_t)c->chunks_fetched));
    json_object_set_new(o, "bytes_fetched", json_integer((json_int_t)c->bytes_fetched));
    json_object_set_new(o, "chunks_refetched", json_integer((json_int_t)c->chunks_refetched));
    json_object_set_new(o, "attempts", json_integer(c->attempts));
    json_object_set_new(o, "error", str_or_null(c->error));
    return o;
}

json_t *out_backup_json(const bq_backup_t *b)
{
    char lsn1[32], lsn2[32], sysid[32], ver[32];
    snprintf(sysid, sizeof sysid, "%" PRIu64, b->system_identifier);
    json_t *stores = json_array();
    char tmp[BQ_STORES_MAX];
    snprintf(tmp, sizeof tmp, "%s", b->stores);
    char *save = NULL;
    for (char *s = strtok_r(tmp, ",", &save); s; s = strtok_r(NULL, ",", &save))
        json_array_append_new(stores, json_string(s));
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:i, s:s, s:s, s:o}", "id", b->id, "cluster",
                          b->cluster, "state", bq_backup_state_name(b->state), "job_id",
                          (json_int_t)b->job_id, "attempt", (int)b->attempt, "worker", b->worker,
                          "site", b->site, "stores", stores);
    json_object_set_new(o, "system_identifier", b->system_identifier ? json_string(sysid) : json_null());
    json_object_set_new(o, "pg_version", b->pg_version ? json_integer(b->pg_version) : json_null());
    json_object_set_new(o, "pg_version_text",
                        b->pg_version ? json_string(out_pg_version(b->pg_version, ver, sizeof ver))
                                      : json_null());
    json_object_set_new(o, "timeline", b->timeline ? json_integer(b->timeline) : json_null());
    json_object_set_new(o, "start_lsn",
                        b->start_lsn ? json_string(out_lsn(b->start_lsn, lsn1, sizeof lsn1)) : json_null());
    json_object_set_new(o, "stop_lsn",
                        b->stop_lsn ? json_string(out_lsn(b->stop_lsn, lsn2, sizeof lsn2)) : json_null());
    json_object_set_new(o, "start_time", time_json(b->start_ms));
    json_object_set_new(o, "stop_time", time_json(b->stop_ms));
    json_object_set_new(o, "wal_begin", str_or_null(b->wal_begin));
    json_object_set_new(o, "wal_end", str_or_null(b->wal_end));
    json_object_set_new(o, "data_bytes", json_integer((json_int_t)b->data_bytes));
    json_object_set_new(o, "stored_bytes", json_integer((json_int_t)b->stored_bytes));
    json_object_set_new(o, "dedup_bytes", json_integer((json_int_t)b->dedup_bytes));
    json_object_set_new(o, "delta_from", b->delta_from[0] ? json_string(b->delta_from) : json_null());
    json_object_set_new(o, "delta_bytes", json_integer((json_int_t)b->delta_bytes));
    json_object_set_new(o, "delta_chunks", json_integer((json_int_t)b->delta_chunks));
    json_object_set_new(o, "files", json_integer((json_int_t)b->files));
    json_object_set_new(o, "duration_ms", json_integer(b->duration_ms));
    json_object_set_new(o, "checksum_failures", json_integer((json_int_t)b->checksum_failures));
    json_object_set_new(o, "checksum_detail", str_or_null(b->checksum_detail));
    json_object_set_new(o, "error", str_or_null(b->error));
    json_object_set_new(o, "retention", str_or_null(b->retention));
    json_object_set_new(o, "keep", json_string(b->keep == 1 ? "full" : b->keep == 2 ? "standalone"
                                                                                 : "nokeep"));
    char sites[BQ_NAME_MAX * (BQ_COPIES_MAX + 1)];
    out_backup_sites(b, sites, sizeof sites);
    json_t *sa = json_array(), *copies = json_array();
    save = NULL;
    for (char *t = strtok_r(sites, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(sa, json_string(t));
    for (size_t i = 0; i < b->ncopies; i++)
        json_array_append_new(copies, copy_json(&b->copies[i]));
    json_object_set_new(o, "sites", sa);
    json_object_set_new(o, "copies", copies);
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
    json_t *o = json_pack("{s:s, s:s}", "name", c->name, "site", c->site);
    if (c->wal_mode[0]) {
        char f[24], r[24];
        snprintf(f, sizeof f, "%X/%X", (unsigned)(c->stream_flushed >> 32), (unsigned)c->stream_flushed);
        snprintf(r, sizeof r, "%X/%X", (unsigned)(c->stream_received >> 32),
                 (unsigned)c->stream_received);
        json_object_set_new(o, "wal", json_pack(
            "{s:s, s:s?, s:I, s:i, s:s?, s:s?, s:s, s:s}", "mode", c->wal_mode, "last_archived",
            c->wal_last[0] ? c->wal_last : NULL, "last_archived_age_s",
            (json_int_t)(c->wal_last_ms ? (bq_wall_ms() - c->wal_last_ms) / 1000 : -1), "gaps",
            (int)c->wal_gaps, "receiver", c->stream_state[0] ? c->stream_state : NULL,
            "receiver_worker", c->stream_worker[0] ? c->stream_worker : NULL, "flushed", f,
            "received", r));
    }
    return o;
}

void out_json_print(FILE *f, json_t *v)
{
    json_dumpf(v, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(v);
}

void out_json_line(FILE *f, json_t *v)
{
    json_dumpf(v, f, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    fflush(f);
    json_decref(v);
}

void out_backups_text(FILE *f, const char *cluster, const bq_msg_cli_reply_t *r)
{
    char end[32], size[32], stored[32], wal[2 * BQ_WAL_NAME_MAX + 2];
    char sites[BQ_NAME_MAX * (BQ_COPIES_MAX + 1)];
    fprintf(f, "%-16s %-8s %-16s %-21s %-10s %-10s %-49s %-12s %s\n", "ID", "STATE", "RETENTION",
            "END TIME", "SIZE", "STORED", "WAL RANGE", "SITES", "ERROR");
    for (size_t i = r->nbackups; i-- > 0;) {
        const bq_backup_t *b = &r->backups[i];
        int sized = b->state == BQ_BACKUP_DONE || b->state == BQ_BACKUP_WAITING_FOR_WALS ||
                    b->state == BQ_BACKUP_DELETING;
        if (b->wal_begin[0])
            snprintf(wal, sizeof wal, "%s-%s", b->wal_begin, b->wal_end[0] ? b->wal_end : "?");
        else
            snprintf(wal, sizeof wal, "-");
        out_backup_sites(b, sites, sizeof sites);
        fprintf(f, "%-16s %-8s %-16s %-21s %-10s %-10s %-49s %-12s %s\n", b->id,
                bq_backup_state_name(b->state), b->retention[0] ? b->retention : "-",
                b->state == BQ_BACKUP_STARTED ? "-" : time_text(b->stop_ms, end, sizeof end),
                sized ? out_bytes(b->data_bytes, size, sizeof size) : "-",
                sized ? out_bytes(b->stored_bytes, stored, sizeof stored) : "-", wal,
                sites[0] ? sites : "-", b->error);
    }
    if (!r->nbackups)
        fprintf(f, "(no backups of cluster %s)\n", cluster);
}

json_t *out_wal_timeline_json(const bq_wal_timeline_t *t)
{
    json_t *gaps = json_array(), *partials = json_array();
    for (size_t i = 0; i < t->ngaps; i++)
        json_array_append_new(gaps, json_string(t->gaps[i]));
    for (size_t i = 0; i < t->npartials; i++)
        json_array_append_new(partials, json_string(t->partials[i]));
    json_t *o = json_pack("{s:I}", "timeline", (json_int_t)t->tli);
    json_object_set_new(o, "first", str_or_null(t->first));
    json_object_set_new(o, "last", str_or_null(t->last));
    json_object_set_new(o, "segments", json_integer((json_int_t)t->segments));
    json_object_set_new(o, "bytes", json_integer((json_int_t)t->bytes));
    json_object_set_new(o, "gaps", gaps);
    json_object_set_new(o, "history", json_boolean(t->history));
    json_object_set_new(o, "partials", partials);
    return o;
}

/* A gap entry that is a range or a segment, not the "... N more" line. */
static int wal_gap_is_range(const char *g)
{
    return g[0] != '.';
}

void out_wal_text(FILE *f, const char *cluster, const bq_msg_cli_reply_t *r)
{
    if (!r->ntimelines) {
        fprintf(f, "(no WAL archived for cluster %s)\n", cluster);
        return;
    }
    char size[32], gaps[16];
    fprintf(f, "%-8s  %-24s  %-24s  %8s  %-10s  %s\n", "TIMELINE", "FIRST", "LAST", "SEGMENTS",
            "SIZE", "GAPS");
    for (size_t i = 0; i < r->ntimelines; i++) {
        const bq_wal_timeline_t *t = &r->timelines[i];
        size_t ranges = 0;
        for (size_t k = 0; k < t->ngaps; k++)
            ranges += wal_gap_is_range(t->gaps[k]);
        snprintf(gaps, sizeof gaps, "%zu%s", ranges, ranges < t->ngaps ? "+" : "");
        fprintf(f, "%-8u  %-24s  %-24s  %8" PRIu64 "  %-10s  %s\n", (unsigned)t->tli,
                t->first[0] ? t->first : "-", t->last[0] ? t->last : "-", t->segments,
                out_bytes(t->bytes, size, sizeof size), gaps);
    }
    for (size_t i = 0; i < r->ntimelines; i++) {
        const bq_wal_timeline_t *t = &r->timelines[i];
        for (size_t k = 0; k < t->ngaps; k++)
            fprintf(f, "timeline %u: %s%s\n", (unsigned)t->tli,
                    wal_gap_is_range(t->gaps[k]) ? "missing " : "", t->gaps[k]);
        if (t->history)
            fprintf(f, "timeline %u: history file %08X.history\n", (unsigned)t->tli,
                    (unsigned)t->tli);
        for (size_t k = 0; k < t->npartials; k++)
            fprintf(f, "timeline %u: partial %s\n", (unsigned)t->tli, t->partials[k]);
    }
}

void out_backup_text(FILE *f, const bq_backup_t *b)
{
    char t[64], u[64];
    fprintf(f, "Backup %s of cluster %s\n", b->id, b->cluster);
    fprintf(f, "  state:              %s\n", bq_backup_state_name(b->state));
    fprintf(f, "  retention:          %s%s\n", b->retention[0] ? b->retention : "-",
            b->keep == 1 ? " (keep: full)" : b->keep == 2 ? " (keep: standalone)" : "");
    if (b->error[0])
        fprintf(f, "  error:              %s\n", b->error);
    fprintf(f, "  job:                %" PRIu64 " (attempt %u)\n", b->job_id, b->attempt);
    fprintf(f, "  taken by:           worker %s at site %s\n", b->worker[0] ? b->worker : "-",
            b->site[0] ? b->site : "-");
    fprintf(f, "  stores:             %s\n", b->stores[0] ? b->stores : "-");
    fprintf(f, "  begin time:         %s\n", time_text(b->start_ms, t, sizeof t));
    fprintf(f, "  end time:           %s\n", time_text(b->stop_ms, t, sizeof t));
    fprintf(f, "  duration:           %s\n",
            b->duration_ms ? out_duration(b->duration_ms, t, sizeof t) : "-");
    if (b->system_identifier)
        fprintf(f, "  system identifier:  %" PRIu64 "\n", b->system_identifier);
    else
        fprintf(f, "  system identifier:  -\n");
    fprintf(f, "  PostgreSQL version: %s\n", out_pg_version(b->pg_version, t, sizeof t));
    if (b->timeline)
        fprintf(f, "  timeline:           %u\n", b->timeline);
    else
        fprintf(f, "  timeline:           -\n");
    fprintf(f, "  begin LSN:          %s\n", b->start_lsn ? out_lsn(b->start_lsn, t, sizeof t) : "-");
    fprintf(f, "  end LSN:            %s\n", b->stop_lsn ? out_lsn(b->stop_lsn, t, sizeof t) : "-");
    fprintf(f, "  begin WAL:          %s\n", b->wal_begin[0] ? b->wal_begin : "-");
    fprintf(f, "  end WAL:            %s\n", b->wal_end[0] ? b->wal_end : "-");
    fprintf(f, "  files:              %" PRIu64 "\n", b->files);
    fprintf(f, "  size:               %s (%" PRIu64 " bytes)\n",
            out_bytes(b->data_bytes, t, sizeof t), b->data_bytes);
    fprintf(f, "  stored size:        %s (%" PRIu64 " bytes)\n",
            out_bytes(b->stored_bytes, t, sizeof t), b->stored_bytes);
    fprintf(f, "  deduplicated:       %s (%" PRIu64 " bytes)\n",
            out_bytes(b->dedup_bytes, u, sizeof u), b->dedup_bytes);
    if (b->delta_from[0])
        fprintf(f, "  deltas:             %" PRIu64 " chunks, %s (%" PRIu64 " bytes) against "
                "backup %s\n", b->delta_chunks, out_bytes(b->delta_bytes, u, sizeof u),
                b->delta_bytes, b->delta_from);
    if (b->duration_ms > 0 && b->data_bytes)
        fprintf(f, "  throughput:         %.1f MB/s\n",
                (double)b->data_bytes / 1e6 / ((double)b->duration_ms / 1000));
    fprintf(f, "  checksum failures:  %" PRIu64 "%s%s\n", b->checksum_failures,
            b->checksum_detail[0] ? ": " : "", b->checksum_detail);
    char sites[BQ_NAME_MAX * (BQ_COPIES_MAX + 1)];
    fprintf(f, "  sites:              %s\n", out_backup_sites(b, sites, sizeof sites)[0] ? sites : "-");
    for (size_t i = 0; i < b->ncopies; i++) {
        const bq_copy_t *c = &b->copies[i];
        fprintf(f, "  copy at %-11s %s", c->site, bq_copy_state_name(c->state));
        if (c->worker[0])
            fprintf(f, " in the store of %s", c->worker);
        if (c->source[0])
            fprintf(f, ", from %s", c->source);
        if (c->chunks_total)
            fprintf(f, ": %" PRIu64 " chunks, %" PRIu64 " there already, %" PRIu64 " fetched (%s)"
                    "%s", c->chunks_total, c->chunks_present, c->chunks_fetched,
                    out_bytes(c->bytes_fetched, u, sizeof u), "");
        if (c->chunks_refetched)
            fprintf(f, ", %" PRIu64 " damaged on the way and fetched again", c->chunks_refetched);
        if (c->state == BQ_COPY_DONE)
            fprintf(f, ", done %s", time_text(c->done_ms, t, sizeof t));
        if (c->error[0])
            fprintf(f, " (%s)", c->error);
        fputc('\n', f);
    }
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
    if (j->progress_message[0])
        fprintf(f, "phase:        %s\n", j->progress_message);
    if (j->type == BQ_JOB_BACKUP)
        fprintf(f, "backup:       %s (%s checkpoint)\n", j->backup_id[0] ? j->backup_id : "-",
                j->checkpoint[0] ? j->checkpoint : "fast");
    if (j->type == BQ_JOB_RESTORE)
        fprintf(f, "backup:       %s to %s\n", j->backup_id[0] ? j->backup_id : "-", j->dest);
    if (j->type == BQ_JOB_LIST_FILES)
        fprintf(f, "backup:       %s (files from #%" PRIu64 ")\n", j->backup_id, j->offset);
    if (j->type == BQ_JOB_DELETE)
        fprintf(f, "backup:       %s\n", j->backup_id);
    if (j->type == BQ_JOB_RESTORE_TEST)
        fprintf(f, "backup:       %s (restore test%s%s)\n", j->backup_id[0] ? j->backup_id : "-",
                j->rt.kind[0] ? ", " : "", j->rt.kind);
    if (j->has_delete)
        fprintf(f, "deleted:      %s; %s\n", j->del.was_absent ? "was already gone" : "manifest removed",
                j->del.gc_run ? "GC ran" : j->del.gc_note);
    if (j->error[0])
        fprintf(f, "error:        %s\n", j->error);
    if (j->hook_note[0])
        fprintf(f, "hook:         %s\n", j->hook_note);
    if (j->has_check)
        out_check_text(f, j->cluster, j);
}

void out_check_text(FILE *f, const char *cluster, const bq_job_t *j)
{
    const bq_check_result_t *r = &j->check;
    fprintf(f, "Cluster %s (checked by worker %s, job %" PRIu64 "):\n", cluster, j->worker, j->id);
    for (size_t i = 0; i < r->nitems; i++)
        fprintf(f, "  %-20s %-7s %s\n", r->items[i].name,
                r->items[i].ok                                  ? "OK"
                : r->items[i].severity == BQ_SEV_WARNING        ? "WARNING"
                : r->items[i].severity == BQ_SEV_UNKNOWN        ? "UNKNOWN"
                                                                : "FAILED",
                r->items[i].detail);
    if (r->server_version[0]) {
        fprintf(f, "  server version %s, system identifier %" PRIu64 ", wal_level %s, "
                "archive_mode %s, max_wal_senders %d\n", r->server_version, r->system_identifier,
                r->wal_level, r->archive_mode, r->max_wal_senders);
        fprintf(f, "  replication slots: %s; role may replicate: %s\n",
                r->slots[0] ? r->slots : "(none)", r->can_replicate ? "yes" : "no");
    }
}

static void status_rt_text(FILE *f, const bq_cluster_t *c);
static json_t *status_rt_json(const bq_cluster_t *c);

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

/* A cluster's copies at one replicate_to site: "copies at west: 3 done, 1 behind; WAL 2 files
 * (32 MB) behind, last ...; last copy 20261201T020000 12 min ago". */
static void status_replica_text(FILE *f, const bq_replica_status_t *rs)
{
    char b[32], t[32];
    fprintf(f, "    copies at %s: %u done, %u behind", rs->site, rs->copies_done, rs->copies_behind);
    if (rs->copies_failed)
        fprintf(f, ", %u FAILED (%s)", rs->copies_failed, rs->error);
    fprintf(f, "; WAL %" PRIu64 " file%s (%s) behind", rs->wal_missing,
            rs->wal_missing == 1 ? "" : "s", out_bytes(rs->wal_lag_bytes, b, sizeof b));
    if (rs->wal_last[0])
        fprintf(f, ", newest there %s", rs->wal_last);
    if (rs->last_copy_ms)
        fprintf(f, "; last copy %s at %s", rs->last_copy_backup,
                time_text(rs->last_copy_ms, t, sizeof t));
    else
        fprintf(f, "; no copy yet");
    fputc('\n', f);
}

static json_t *status_replicas_json(const bq_cluster_t *c)
{
    json_t *a = json_array();
    for (size_t k = 0; k < c->nreplicas; k++) {
        const bq_replica_status_t *rs = &c->replicas[k];
        json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:I, s:I}", "site", rs->site, "copies_done",
                              (int)rs->copies_done, "copies_behind", (int)rs->copies_behind,
                              "copies_failed", (int)rs->copies_failed, "wal_missing",
                              (json_int_t)rs->wal_missing, "wal_lag_bytes",
                              (json_int_t)rs->wal_lag_bytes);
        json_object_set_new(o, "wal_last", str_or_null(rs->wal_last));
        json_object_set_new(o, "wal_last_time", time_json(rs->wal_last_ms));
        json_object_set_new(o, "last_copy_backup", str_or_null(rs->last_copy_backup));
        json_object_set_new(o, "last_copy_time", time_json(rs->last_copy_ms));
        json_object_set_new(o, "error", str_or_null(rs->error));
        json_array_append_new(a, o);
    }
    return a;
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
    for (size_t i = 0; i < r->nclusters; i++) {
        const bq_cluster_t *c = &r->clusters[i];
        fprintf(f, "  %-16s site %s", c->name, c->site);
        if (c->wal_mode[0]) {
            fprintf(f, "; WAL %s", c->wal_mode);
            if (c->wal_last[0])
                fprintf(f, ", last archived %s (%lld s ago)", c->wal_last,
                        (long long)((bq_wall_ms() - c->wal_last_ms) / 1000));
            else
                fprintf(f, ", nothing archived yet");
            if (c->wal_gaps)
                fprintf(f, ", CRITICAL: %u gap%s in the archive", c->wal_gaps,
                        c->wal_gaps == 1 ? "" : "s");
            if (c->stream_state[0])
                fprintf(f, "; receiver %s%s%s, flushed %X/%X", c->stream_state,
                        c->stream_worker[0] ? " on " : "", c->stream_worker,
                        (unsigned)(c->stream_flushed >> 32), (unsigned)c->stream_flushed);
            else if (strcmp(c->wal_mode, "stream") == 0)
                fprintf(f, "; no receiver running");
        }
        fprintf(f, "\n    ");
        status_rt_text(f, c);
        fputc('\n', f);
        for (size_t k = 0; k < c->nreplicas; k++)
            status_replica_text(f, &c->replicas[k]);
    }
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
    for (size_t i = 0; i < r->nclusters; i++) {
        json_t *o = out_cluster_json(&r->clusters[i]);
        json_object_set_new(o, "restore_test", status_rt_json(&r->clusters[i]));
        json_object_set_new(o, "replicas", status_replicas_json(&r->clusters[i]));
        json_array_append_new(clusters, o);
    }
    return json_pack("{s:s, s:o, s:o, s:o, s:{s:i, s:i}}", "coordinator", coordinator, "sites",
                     sites, "workers", workers, "clusters", clusters, "jobs", "queued", queued,
                     "running", running);
}

/* ---- list-files ------------------------------------------------------------------------ */

static const char *file_type(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    default: return "other";
    }
}

json_t *out_file_json(const bq_file_entry_t *f)
{
    char mode[8], when[32];
    snprintf(mode, sizeof mode, "%04o", (unsigned)(f->mode & 07777));
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I}", "path", f->path, "type",
                          file_type(f->mode), "mode", mode, "size", (json_int_t)f->size, "mtime",
                          (json_int_t)f->mtime);
    json_object_set_new(o, "modified", json_string(bq_wall_format(f->mtime * 1000, when,
                                                                  sizeof when)));
    return o;
}

void out_file_text(FILE *out, const bq_file_entry_t *f)
{
    char m[11], when[32];
    uint32_t t = f->mode & S_IFMT;
    m[0] = t == S_IFDIR ? 'd' : t == S_IFLNK ? 'l' : t == S_IFREG ? '-' : '?';
    static const char rwx[] = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        m[1 + i] = (f->mode & (0400u >> i)) ? rwx[i] : '-';
    m[10] = '\0';
    fprintf(out, "%s %12" PRIu64 " %s %s\n", m, f->size,
            bq_wall_format(f->mtime * 1000, when, sizeof when), f->path);
}

/* ---- restore tests --------------------------------------------------------------------- */

static const char *rt_result(const bq_restore_test_t *t)
{
    return t->ok ? "PASSED" : "FAILED";
}

/* "16/B374D848 at 2026-12-01T09:59:58Z", "16/B374D848 (no transaction replayed)", "-". */
static const char *rt_reached(const bq_restore_test_t *t, const char *sep, char *buf, size_t len)
{
    char lsn[32], when[32];
    if (!t->reached_lsn)
        snprintf(buf, len, "-");
    else if (t->reached_ms)
        snprintf(buf, len, "%s%s%s", out_lsn(t->reached_lsn, lsn, sizeof lsn), sep,
                 bq_wall_format(t->reached_ms, when, sizeof when));
    else
        snprintf(buf, len, "%s (no transaction replayed)", out_lsn(t->reached_lsn, lsn, sizeof lsn));
    return buf;
}

json_t *out_rtest_json(const bq_restore_test_t *t)
{
    char lsn[32];
    json_t *o = json_pack("{s:s, s:I, s:i, s:s, s:s, s:s, s:s, s:b, s:s}", "cluster", t->cluster,
                          "job_id", (json_int_t)t->job_id, "attempt", (int)t->attempt,
                          "backup_id", t->backup_id, "kind", t->kind, "worker", t->worker, "site",
                          t->site, "ok", t->ok, "result", rt_result(t));
    json_object_set_new(o, "read_from", str_or_null(t->read_from));
    json_object_set_new(o, "error", str_or_null(t->error));
    json_object_set_new(o, "target", str_or_null(t->target));
    json_object_set_new(o, "started", time_json(t->started_ms));
    json_object_set_new(o, "started_ms", json_integer(t->started_ms));
    json_object_set_new(o, "finished", time_json(t->finished_ms));
    json_object_set_new(o, "finished_ms", json_integer(t->finished_ms));
    json_object_set_new(o, "reached_lsn", t->reached_lsn ? json_string(out_lsn(t->reached_lsn, lsn,
                                                                               sizeof lsn))
                                                         : json_null());
    json_object_set_new(o, "reached", time_json(t->reached_ms));
    json_object_set_new(o, "reached_ms", json_integer(t->reached_ms));
    json_object_set_new(o, "wal_segments", json_integer((json_int_t)t->wal_segments));
    json_object_set_new(o, "wal_bytes", json_integer((json_int_t)t->wal_bytes));
    json_object_set_new(o, "bytes", json_integer((json_int_t)t->bytes));
    json_object_set_new(o, "fetch_ms", json_integer(t->fetch_ms));
    json_object_set_new(o, "start_ms", json_integer(t->start_ms));
    json_object_set_new(o, "replay_ms", json_integer(t->replay_ms));
    json_object_set_new(o, "rto_ms", json_integer(t->rto_ms));
    json_object_set_new(o, "check_ms", json_integer(t->check_ms));
    json_object_set_new(o, "predicted_ms", t->predicted_ms > 0 ? json_integer(t->predicted_ms)
                                                               : json_null());
    json_object_set_new(o, "checks", items_json(t->checks, t->nchecks));
    return o;
}

void out_rtests_text(FILE *f, const char *cluster, const bq_msg_cli_reply_t *r)
{
    if (!r->nrtests) {
        fprintf(f, "(no restore tests for cluster %s)\n", cluster);
        return;
    }
    char when[32], rto[32], fetch[32], start[32], replay[32], bytes[32], reached[96];
    fprintf(f, "%-8s %-16s %-9s %-6s %-21s %-9s %-9s %-9s %-9s %8s %-10s %s\n", "JOB", "BACKUP",
            "KIND", "RESULT", "FINISHED", "RTO", "FETCH", "START", "REPLAY", "WAL", "BYTES",
            "TARGET REACHED");
    for (size_t i = r->nrtests; i-- > 0;) {
        const bq_restore_test_t *t = &r->rtests[i];
        fprintf(f, "%-8" PRIu64 " %-16s %-9s %-6s %-21s %-9s %-9s %-9s %-9s %8" PRIu64
                " %-10s %s\n", t->job_id, t->backup_id[0] ? t->backup_id : "-",
                t->kind[0] ? t->kind : "-", rt_result(t),
                time_text(t->finished_ms, when, sizeof when),
                out_duration(t->rto_ms, rto, sizeof rto),
                out_duration(t->fetch_ms, fetch, sizeof fetch),
                out_duration(t->start_ms, start, sizeof start),
                out_duration(t->replay_ms, replay, sizeof replay), t->wal_segments,
                out_bytes(t->bytes, bytes, sizeof bytes),
                rt_reached(t, " ", reached, sizeof reached));
        if (!t->ok)
            fprintf(f, "    error: %s\n", t->error[0] ? t->error : "-");
    }
}

/* One "  label:  value" line of a restore test in detail. */
static void rt_line(FILE *f, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rt_line(FILE *f, const char *label, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(f, "  %-28s", label);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    va_end(ap);
}

void out_rtest_text(FILE *f, const bq_restore_test_t *t)
{
    char a[96], b[32];
    fprintf(f, "restore test job %" PRIu64 " of cluster %s%s%s%s: %s\n", t->job_id, t->cluster,
            t->kind[0] ? " (" : "", t->kind, t->kind[0] ? ")" : "", rt_result(t));
    rt_line(f, "backup:", "%s", t->backup_id[0] ? t->backup_id : "-");
    if (t->read_from[0] && strcmp(t->read_from, t->worker) != 0)
        rt_line(f, "worker:", "%s at site %s, read from the store of worker %s",
                t->worker[0] ? t->worker : "-", t->site[0] ? t->site : "-", t->read_from);
    else
        rt_line(f, "worker:", "%s at site %s", t->worker[0] ? t->worker : "-",
                t->site[0] ? t->site : "-");
    rt_line(f, "target:", "%s", t->target[0] ? t->target : "-");
    rt_line(f, "started:", "%s", time_text(t->started_ms, b, sizeof b));
    rt_line(f, "finished:", "%s", time_text(t->finished_ms, b, sizeof b));
    if (t->error[0])
        rt_line(f, "error:", "%s", t->error);
    rt_line(f, "target reached:", "%s", rt_reached(t, " at ", a, sizeof a));
    rt_line(f, "WAL segments replayed:", "%" PRIu64, t->wal_segments);
    rt_line(f, "WAL bytes after the backup:", "%s (%" PRIu64 " bytes)",
            out_bytes(t->wal_bytes, b, sizeof b), t->wal_bytes);
    rt_line(f, "bytes restored:", "%s (%" PRIu64 " bytes)", out_bytes(t->bytes, b, sizeof b),
            t->bytes);
    rt_line(f, "fetch and write:", "%s", out_duration(t->fetch_ms, b, sizeof b));
    rt_line(f, "server start to consistent:", "%s", out_duration(t->start_ms, b, sizeof b));
    rt_line(f, "replay:", "%s", out_duration(t->replay_ms, b, sizeof b));
    rt_line(f, "recovery time (RTO):", "%s", out_duration(t->rto_ms, b, sizeof b));
    rt_line(f, "checks time:", "%s", out_duration(t->check_ms, b, sizeof b));
    if (t->predicted_ms > 0)
        rt_line(f, "predicted at start:", "%s", out_duration(t->predicted_ms, b, sizeof b));
    for (size_t i = 0; i < t->nchecks; i++) {
        const bq_check_item_t *it = &t->checks[i];
        int sev = item_severity(it);
        fprintf(f, "  %s%s %s: %s\n", bq_severity_name(sev), sev == BQ_SEV_OK ? " " : "",
                it->name, it->detail);
    }
}

void out_rtest_last_text(FILE *f, const bq_restore_test_t *t)
{
    char b[32];
    if (!t) {
        fprintf(f, "Last restore test: never\n");
        return;
    }
    fprintf(f, "Last restore test:\n");
    fprintf(f, "  result:             %s\n", rt_result(t));
    fprintf(f, "  finished:           %s\n", time_text(t->finished_ms, b, sizeof b));
    fprintf(f, "  recovery time:      %s (RTO)\n", out_duration(t->rto_ms, b, sizeof b));
    fprintf(f, "  job:                %" PRIu64 "%s%s%s\n", t->job_id, t->kind[0] ? " (" : "",
            t->kind, t->kind[0] ? ")" : "");
    if (!t->ok)
        fprintf(f, "  error:              %s\n", t->error[0] ? t->error : "-");
}

/* status: a cluster's restore tests from its rt_* fields, on one line (no newline). */
static void status_rt_text(FILE *f, const bq_cluster_t *c)
{
    char when[32], rto[32];
    fprintf(f, "restore test: ");
    if (!c->rt_last_ms)
        fprintf(f, "never run");
    else if (!c->rt_last_ok)
        fprintf(f, "last FAILED %s (backup %s): %s", time_text(c->rt_last_ms, when, sizeof when),
                c->rt_last_backup[0] ? c->rt_last_backup : "-",
                c->rt_last_error[0] ? c->rt_last_error : "-");
    if (c->rt_ok_ms)
        fprintf(f, "%slast passed %s (backup %s, RTO %s)", c->rt_last_ok ? "" : "; ",
                time_text(c->rt_ok_ms, when, sizeof when), c->rt_ok_backup[0] ? c->rt_ok_backup : "-",
                out_duration(c->rt_ok_rto_ms, rto, sizeof rto));
    if (c->rt_predicted_ms > 0)
        fprintf(f, "; predicted recovery now %s%s%s%s",
                out_duration(c->rt_predicted_ms, rto, sizeof rto),
                c->rt_predicted_detail[0] ? " (" : "", c->rt_predicted_detail,
                c->rt_predicted_detail[0] ? ")" : "");
}

/* status --json: {status, severity, last {...} | null, last_passed {...} | null,
 * predicted_ms, predicted_detail}. */
static json_t *status_rt_json(const bq_cluster_t *c)
{
    int sev = c->rt_severity >= BQ_SEV_OK && c->rt_severity <= BQ_SEV_UNKNOWN ? c->rt_severity
                                                                              : BQ_SEV_UNKNOWN;
    json_t *o = json_pack("{s:s, s:i}", "status", bq_severity_name(sev), "severity", sev);
    json_t *last = json_null(), *passed = json_null();
    if (c->rt_last_ms) {
        last = json_pack("{s:o, s:I, s:b, s:s}", "finished", time_json(c->rt_last_ms),
                         "finished_ms", (json_int_t)c->rt_last_ms, "ok", c->rt_last_ok,
                         "backup_id", c->rt_last_backup);
        json_object_set_new(last, "error", str_or_null(c->rt_last_error));
    }
    if (c->rt_ok_ms)
        passed = json_pack("{s:o, s:I, s:s, s:I}", "finished", time_json(c->rt_ok_ms),
                           "finished_ms", (json_int_t)c->rt_ok_ms, "backup_id", c->rt_ok_backup,
                           "rto_ms", (json_int_t)c->rt_ok_rto_ms);
    json_object_set_new(o, "last", last);
    json_object_set_new(o, "last_passed", passed);
    json_object_set_new(o, "predicted_ms", c->rt_predicted_ms > 0
                                                   ? json_integer(c->rt_predicted_ms)
                                                   : json_null());
    json_object_set_new(o, "predicted_detail", str_or_null(c->rt_predicted_detail));
    return o;
}
