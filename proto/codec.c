/* Barque's plain C values <-> the protobuf-c messages of barque.proto.
 *
 * Encode builds the protobuf-c structs in a per-call arena (strings are borrowed from the
 * C value, never copied), packs them into one malloc'd buffer and frees the arena in one
 * call. Decode refuses oversized input before unpacking, unpacks with protobuf-c's
 * default allocator, copies every field out into the C value with its bounds checked,
 * and frees the unpacked tree. Each conversion (CheckResult, Job, Worker, Cluster, ...)
 * is one function per direction, shared by the envelope path and the catalog records.
 *
 * Limits checked both ways, so that what one side encodes the other side decodes:
 * strings must fit their C field with the NUL and hold no NUL byte inside (refused,
 * never truncated), counts must fit their arrays, job type/state and backup state must be
 * known values, Job.delta_from must be empty or a backup id (bq_backup_id_valid), WAL file
 * names (JobProgress.wal_file, WalFile.name) empty or valid (bq_wal_name_valid), and a
 * whole message must be at most BQ_MSG_MAX bytes. Unknown fields are ignored (fields are
 * only ever added).
 *
 * proto_msg_decode and proto_msg_error zero the bq_msg_t they are given without freeing
 * it (it may be uninitialised): clear a decoded message before reusing it. */
#include "proto.h"

#include "barque.pb-c.h"

#include <inttypes.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows of one kind (workers, clusters, jobs, sites, backups, timelines) in a CLI reply. A Job
 * can be a few bytes on the wire and ~10 KiB as a bq_job_t, so the count, not only the byte
 * size, bounds what a reply may make the receiver allocate (~100 MiB at most). */
#define CODEC_REPLY_ROWS_MAX 10000

/* ---- an arena for the protobuf-c side of one encode ---------------------------------- */

typedef struct codec_block {
    struct codec_block *next;
    size_t used, cap;
    max_align_t data[];
} codec_block_t;

typedef struct {
    codec_block_t *head;
} codec_arena_t;

#define CODEC_BLOCK_MIN ((size_t)64 << 10)

/* n zeroed objects of size bytes, aligned for any type; NULL when out of memory.
 * Freed with the arena. */
static void *codec_arena_alloc(codec_arena_t *a, size_t n, size_t size)
{
    const size_t align = alignof(max_align_t);
    if (size && n > (SIZE_MAX - align - sizeof(codec_block_t)) / size)
        return NULL;
    size_t bytes = (n * size + align - 1) / align * align;
    if (bytes == 0)
        bytes = align;
    codec_block_t *b = a->head;
    if (!b || b->cap - b->used < bytes) {
        size_t cap = bytes > CODEC_BLOCK_MIN ? bytes : CODEC_BLOCK_MIN;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (unsigned char *)b->data + b->used;
    b->used += bytes;
    memset(p, 0, bytes);
    return p;
}

static void codec_arena_free(codec_arena_t *a)
{
    while (a->head) {
        codec_block_t *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

#define ARENA_NEW(a, type) ((type *)codec_arena_alloc((a), 1, sizeof(type)))
#define ARENA_ARRAY(a, n, type) ((type *)codec_arena_alloc((a), (n), sizeof(type)))

static int codec_nomem(bq_errbuf_t *e)
{
    return bq_fail(e, BQ_E_NOMEM, "out of memory");
}

/* ---- field helpers ------------------------------------------------------------------- */

/* Borrow a C string field for the protobuf-c side; refuse one that fills its array
 * without a NUL (decode would refuse it on the other side). */
static int codec_str_put(const char *src, size_t cap, const char *obj, const char *field,
                         char **out, bq_errbuf_t *e)
{
    if (strnlen(src, cap) == cap)
        return bq_fail(e, BQ_E_INVAL, "%s.%s is not NUL-terminated within its %zu bytes", obj,
                       field, cap);
    *out = (char *)src;
    return 0;
}

/* Copy an unpacked string into a C field of cap bytes; refuse one that does not fit. */
static int codec_str_get(char *dst, size_t cap, const char *src, const char *obj,
                         const char *field, bq_errbuf_t *e)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        return bq_fail(e, BQ_E_PROTO, "%s.%s is %zu bytes, longer than its limit of %zu", obj,
                       field, n, cap - 1);
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* Both expect locals named c (the C value), pb (the protobuf-c struct) and e. */
#define STR_PUT(obj, f) codec_str_put(c->f, sizeof c->f, (obj), #f, &pb->f, e)
#define STR_GET(obj, f) codec_str_get(c->f, sizeof c->f, pb->f, (obj), #f, e)

static int codec_job_type_valid(int v)
{
    return v >= BQ_JOB_TYPE_NONE && v <= BQ_JOB_REPLICATE_WAL;
}

static int codec_backup_state_valid(int v)
{
    return v >= BQ_BACKUP_NONE && v <= BQ_BACKUP_DELETING;
}

/* A C string of names joined by ',' ("" = none) -> a repeated string field, borrowing an
 * arena copy. Refuses an empty name ("a,,b"): it could not come back. noun names one
 * element in messages ("slot name"). */
static int codec_list_put(codec_arena_t *a, const char *src, size_t cap, const char *obj,
                          const char *field, const char *noun, char ***out, size_t *nout,
                          bq_errbuf_t *e)
{
    *out = NULL;
    *nout = 0;
    size_t slen = strnlen(src, cap);
    if (slen == cap)
        return bq_fail(e, BQ_E_INVAL, "%s.%s is not NUL-terminated within its %zu bytes", obj,
                       field, cap);
    if (!slen)
        return 0;
    char *copy = ARENA_ARRAY(a, slen + 1, char);
    size_t n = 1;
    for (size_t i = 0; i < slen; i++)
        n += src[i] == ',';
    char **list = ARENA_ARRAY(a, n, char *);
    if (!copy || !list)
        return codec_nomem(e);
    memcpy(copy, src, slen + 1);
    size_t k = 0;
    for (char *s = copy; k < n; s++) {
        char *comma = strchr(s, ',');
        if (comma)
            *comma = '\0';
        if (!*s)
            return bq_fail(e, BQ_E_INVAL, "%s.%s \"%s\" has an empty %s", obj, field, src, noun);
        list[k++] = s;
        if (!comma)
            break;
        s = comma;
    }
    *out = list;
    *nout = k;
    return 0;
}

/* A repeated string field -> names joined by ',' in dst (cap bytes). Each name must be
 * non-empty and comma-free, and the joined string must fit. */
static int codec_list_get(char *dst, size_t cap, char *const *list, size_t n, const char *obj,
                          const char *field, const char *noun, bq_errbuf_t *e)
{
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = list[i] ? list[i] : "";
        size_t len = strlen(s);
        if (len == 0)
            return bq_fail(e, BQ_E_PROTO, "%s.%s[%zu] is an empty %s", obj, field, i, noun);
        if (strchr(s, ','))
            return bq_fail(e, BQ_E_PROTO, "%s.%s[%zu] contains ','", obj, field, i);
        size_t need = used + (i ? 1 : 0) + len;
        if (need >= cap || need < used)
            return bq_fail(e, BQ_E_PROTO,
                           "%s.%s joined by ',' are longer than their limit of %zu bytes", obj,
                           field, cap - 1);
        if (i)
            dst[used++] = ',';
        memcpy(dst + used, s, len);
        used += len;
    }
    dst[used] = '\0';
    return 0;
}

static int codec_job_state_valid(int v)
{
    return v >= BQ_JOB_NONE && v <= BQ_JOB_CANCELLED;
}

/* The n rows of a C array as pb's array of message pointers (dst, ndst), from the arena;
 * CONV converts row i_ into rows_[i_] and returns < 0 on failure (then the caller returns
 * it). Needs `a`, `e` and `int rc` in scope. */
#define ROWS_TO_PB(PB, n, dst, ndst, CONV)                                                  \
    do {                                                                                    \
        if ((n) == 0)                                                                       \
            break;                                                                          \
        PB *rows_ = ARENA_ARRAY(a, (n), PB);                                                \
        PB **ptrs_ = ARENA_ARRAY(a, (n), PB *);                                             \
        if (!rows_ || !ptrs_)                                                               \
            return codec_nomem(e);                                                          \
        for (size_t i_ = 0; i_ < (n); i_++) {                                               \
            if ((rc = (CONV)) < 0)                                                          \
                return rc;                                                                  \
            ptrs_[i_] = &rows_[i_];                                                         \
        }                                                                                   \
        (dst) = ptrs_;                                                                      \
        (ndst) = (n);                                                                       \
    } while (0)

/* ---- CheckItem arrays (CheckResult.items, RestoreTest.checks) ------------------------- */

static int codec_items_to_pb(codec_arena_t *a, const bq_check_item_t *src, size_t n, size_t max,
                             const char *obj, Barque__CheckItem ***out, size_t *nout,
                             bq_errbuf_t *e)
{
    int rc;
    if (n > max)
        return bq_fail(e, BQ_E_INVAL, "%s has %zu items, more than the limit of %zu", obj, n, max);
    if (!n)
        return 0;
    Barque__CheckItem *items = ARENA_ARRAY(a, n, Barque__CheckItem);
    Barque__CheckItem **ptrs = ARENA_ARRAY(a, n, Barque__CheckItem *);
    if (!items || !ptrs)
        return codec_nomem(e);
    for (size_t i = 0; i < n; i++) {
        const bq_check_item_t *it = &src[i];
        barque__check_item__init(&items[i]);
        if ((rc = codec_str_put(it->name, sizeof it->name, "CheckItem", "name", &items[i].name,
                                e)) < 0 ||
            (rc = codec_str_put(it->detail, sizeof it->detail, "CheckItem", "detail",
                                &items[i].detail, e)) < 0)
            return rc;
        if (it->severity < BQ_SEV_OK || it->severity > BQ_SEV_UNKNOWN)
            return bq_fail(e, BQ_E_INVAL, "CheckItem.severity has unknown value %d", it->severity);
        items[i].ok = it->severity == BQ_SEV_OK && it->ok;
        items[i].severity = (uint32_t)(items[i].ok ? BQ_SEV_OK
                                       : it->severity == BQ_SEV_OK ? BQ_SEV_CRITICAL
                                                                    : it->severity);
        ptrs[i] = &items[i];
    }
    *nout = n;
    *out = ptrs;
    return 0;
}

static int codec_items_from_pb(Barque__CheckItem *const *src, size_t n, size_t max,
                               const char *obj, bq_check_item_t *dst, size_t *ndst,
                               bq_errbuf_t *e)
{
    int rc;
    if (n > max)
        return bq_fail(e, BQ_E_PROTO, "%s has %zu items, more than the limit of %zu", obj, n, max);
    for (size_t i = 0; i < n; i++) {
        const Barque__CheckItem *it = src[i];
        bq_check_item_t *ci = &dst[i];
        if ((rc = codec_str_get(ci->name, sizeof ci->name, it->name, "CheckItem", "name", e)) < 0 ||
            (rc = codec_str_get(ci->detail, sizeof ci->detail, it->detail, "CheckItem", "detail",
                                e)) < 0)
            return rc;
        if (it->severity > BQ_SEV_UNKNOWN)
            return bq_fail(e, BQ_E_PROTO, "CheckItem.severity has unknown value %u", it->severity);
        ci->ok = !!it->ok && it->severity == BQ_SEV_OK;
        ci->severity = ci->ok ? BQ_SEV_OK : it->severity ? (int)it->severity : BQ_SEV_CRITICAL;
    }
    *ndst = n;
    return 0;
}

/* ---- CheckResult --------------------------------------------------------------------- */

static int codec_check_to_pb(codec_arena_t *a, const bq_check_result_t *c,
                             Barque__CheckResult *pb, bq_errbuf_t *e)
{
    int rc;
    barque__check_result__init(pb);
    if ((rc = STR_PUT("CheckResult", server_version)) < 0 ||
        (rc = STR_PUT("CheckResult", wal_level)) < 0 ||
        (rc = STR_PUT("CheckResult", archive_mode)) < 0)
        return rc;
    pb->system_identifier = c->system_identifier;
    pb->max_wal_senders = c->max_wal_senders;
    pb->can_replicate = !!c->can_replicate;
    pb->receiver_lag = c->receiver_lag;
    pb->receiver_lag_known = !!c->receiver_lag_known;

    /* slots: "a,b,c" -> ["a", "b", "c"]; "" -> [] */
    if ((rc = codec_list_put(a, c->slots, sizeof c->slots, "CheckResult", "slots", "slot name",
                             &pb->slots, &pb->n_slots, e)) < 0)
        return rc;

    return codec_items_to_pb(a, c->items, c->nitems, BQ_CHECK_ITEMS_MAX, "CheckResult",
                             &pb->items, &pb->n_items, e);
}

static int codec_check_from_pb(const Barque__CheckResult *pb, bq_check_result_t *c,
                               bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("CheckResult", server_version)) < 0 ||
        (rc = STR_GET("CheckResult", wal_level)) < 0 ||
        (rc = STR_GET("CheckResult", archive_mode)) < 0)
        return rc;
    c->system_identifier = pb->system_identifier;
    c->max_wal_senders = pb->max_wal_senders;
    c->can_replicate = !!pb->can_replicate;
    c->receiver_lag = pb->receiver_lag;
    c->receiver_lag_known = !!pb->receiver_lag_known;

    /* ["a", "b", "c"] -> "a,b,c": names must be non-empty and comma-free to come back */
    if ((rc = codec_list_get(c->slots, sizeof c->slots, pb->slots, pb->n_slots, "CheckResult",
                             "slots", "slot name", e)) < 0)
        return rc;

    return codec_items_from_pb(pb->items, pb->n_items, BQ_CHECK_ITEMS_MAX, "CheckResult",
                               c->items, &c->nitems, e);
}

/* ---- RestoreResult (plain numbers) ------------------------------------------------------ */

static int codec_restore_to_pb(const bq_restore_result_t *c, Barque__RestoreResult *pb,
                               bq_errbuf_t *e)
{
    int rc;
    barque__restore_result__init(pb);
    if ((rc = STR_PUT("RestoreResult", peer_worker)) < 0 ||
        (rc = STR_PUT("RestoreResult", source_failed)) < 0)
        return rc;
    pb->peer_bytes = c->peer_bytes;
    pb->files_written = c->files_written;
    pb->files_unchanged = c->files_unchanged;
    pb->files_removed = c->files_removed;
    pb->bytes = c->bytes;
    pb->duration_ms = c->duration_ms;
    return 0;
}

static int codec_restore_from_pb(const Barque__RestoreResult *pb, bq_restore_result_t *c,
                                 bq_errbuf_t *e)
{
    int rc;
    if ((rc = STR_GET("RestoreResult", peer_worker)) < 0 ||
        (rc = STR_GET("RestoreResult", source_failed)) < 0)
        return rc;
    c->peer_bytes = pb->peer_bytes;
    c->files_written = pb->files_written;
    c->files_unchanged = pb->files_unchanged;
    c->files_removed = pb->files_removed;
    c->bytes = pb->bytes;
    c->duration_ms = pb->duration_ms;
    return 0;
}

/* ---- ReplicateResult, BackupCopy, ReplicaStatus (issue 8) ------------------------------- */

static int codec_rep_to_pb(codec_arena_t *a, const bq_replicate_result_t *c,
                           Barque__ReplicateResult **out, bq_errbuf_t *e)
{
    int rc;
    Barque__ReplicateResult *pb = ARENA_NEW(a, Barque__ReplicateResult);
    if (!pb)
        return codec_nomem(e);
    barque__replicate_result__init(pb);
    if ((rc = STR_PUT("ReplicateResult", peer_worker)) < 0)
        return rc;
    pb->chunks_total = c->chunks_total;
    pb->chunks_present = c->chunks_present;
    pb->chunks_fetched = c->chunks_fetched;
    pb->bytes_fetched = c->bytes_fetched;
    pb->chunks_refetched = c->chunks_refetched;
    pb->file_bytes = c->file_bytes;
    pb->duration_ms = c->duration_ms;
    pb->streams = c->streams;
    pb->wal_files = c->wal_files;
    pb->wal_bytes = c->wal_bytes;
    pb->wal_missing = c->wal_missing;
    *out = pb;
    return 0;
}

static int codec_rep_from_pb(const Barque__ReplicateResult *pb, bq_replicate_result_t *c,
                             bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("ReplicateResult", peer_worker)) < 0)
        return rc;
    c->chunks_total = pb->chunks_total;
    c->chunks_present = pb->chunks_present;
    c->chunks_fetched = pb->chunks_fetched;
    c->bytes_fetched = pb->bytes_fetched;
    c->chunks_refetched = pb->chunks_refetched;
    c->file_bytes = pb->file_bytes;
    c->duration_ms = pb->duration_ms;
    c->streams = pb->streams;
    c->wal_files = pb->wal_files;
    c->wal_bytes = pb->wal_bytes;
    c->wal_missing = pb->wal_missing;
    return 0;
}

static int codec_copy_to_pb(const bq_copy_t *c, Barque__BackupCopy *pb, bq_errbuf_t *e)
{
    int rc;
    barque__backup_copy__init(pb);
    if (c->state < BQ_COPY_QUEUED || c->state > BQ_COPY_DELETED)
        return bq_fail(e, BQ_E_INVAL, "BackupCopy.state has unknown value %d", (int)c->state);
    if ((rc = STR_PUT("BackupCopy", site)) < 0 || (rc = STR_PUT("BackupCopy", worker)) < 0 ||
        (rc = STR_PUT("BackupCopy", source)) < 0 || (rc = STR_PUT("BackupCopy", error)) < 0)
        return rc;
    pb->state = (uint32_t)c->state;
    pb->job_id = c->job_id;
    pb->queued_ms = c->queued_ms;
    pb->done_ms = c->done_ms;
    pb->duration_ms = c->duration_ms;
    pb->chunks_total = c->chunks_total;
    pb->chunks_present = c->chunks_present;
    pb->chunks_fetched = c->chunks_fetched;
    pb->bytes_fetched = c->bytes_fetched;
    pb->chunks_refetched = c->chunks_refetched;
    pb->attempts = c->attempts;
    pb->counted = c->counted;
    return 0;
}

static int codec_copy_from_pb(const Barque__BackupCopy *pb, bq_copy_t *c, bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if (pb->state < BQ_COPY_QUEUED || pb->state > BQ_COPY_DELETED)
        return bq_fail(e, BQ_E_PROTO, "BackupCopy.state has unknown value %u", pb->state);
    if ((rc = STR_GET("BackupCopy", site)) < 0 || (rc = STR_GET("BackupCopy", worker)) < 0 ||
        (rc = STR_GET("BackupCopy", source)) < 0 || (rc = STR_GET("BackupCopy", error)) < 0)
        return rc;
    c->state = (bq_copy_state_t)pb->state;
    c->job_id = pb->job_id;
    c->queued_ms = pb->queued_ms;
    c->done_ms = pb->done_ms;
    c->duration_ms = pb->duration_ms;
    c->chunks_total = pb->chunks_total;
    c->chunks_present = pb->chunks_present;
    c->chunks_fetched = pb->chunks_fetched;
    c->bytes_fetched = pb->bytes_fetched;
    c->chunks_refetched = pb->chunks_refetched;
    c->attempts = pb->attempts;
    c->counted = pb->counted;
    return 0;
}

static int codec_replica_to_pb(const bq_replica_status_t *c, Barque__ReplicaStatus *pb,
                               bq_errbuf_t *e)
{
    int rc;
    barque__replica_status__init(pb);
    if ((rc = STR_PUT("ReplicaStatus", site)) < 0 || (rc = STR_PUT("ReplicaStatus", wal_last)) < 0 ||
        (rc = STR_PUT("ReplicaStatus", last_copy_backup)) < 0 ||
        (rc = STR_PUT("ReplicaStatus", error)) < 0)
        return rc;
    pb->copies_done = c->copies_done;
    pb->copies_behind = c->copies_behind;
    pb->copies_failed = c->copies_failed;
    pb->wal_missing = c->wal_missing;
    pb->wal_lag_bytes = c->wal_lag_bytes;
    pb->wal_last_ms = c->wal_last_ms;
    pb->last_copy_ms = c->last_copy_ms;
    return 0;
}

static int codec_replica_from_pb(const Barque__ReplicaStatus *pb, bq_replica_status_t *c,
                                 bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("ReplicaStatus", site)) < 0 || (rc = STR_GET("ReplicaStatus", wal_last)) < 0 ||
        (rc = STR_GET("ReplicaStatus", last_copy_backup)) < 0 ||
        (rc = STR_GET("ReplicaStatus", error)) < 0)
        return rc;
    c->copies_done = pb->copies_done;
    c->copies_behind = pb->copies_behind;
    c->copies_failed = pb->copies_failed;
    c->wal_missing = pb->wal_missing;
    c->wal_lag_bytes = pb->wal_lag_bytes;
    c->wal_last_ms = pb->wal_last_ms;
    c->last_copy_ms = pb->last_copy_ms;
    return 0;
}

/* ---- DeleteResult ---------------------------------------------------------------------- */

static int codec_delete_to_pb(const bq_delete_result_t *c, Barque__DeleteResult *pb,
                              bq_errbuf_t *e)
{
    int rc;
    barque__delete_result__init(pb);
    if ((rc = STR_PUT("DeleteResult", gc_note)) < 0)
        return rc;
    pb->was_absent = !!c->was_absent;
    pb->gc_run = !!c->gc_run;
    pb->chunks_removed = c->chunks_removed;
    pb->bytes_reclaimed = c->bytes_reclaimed;
    return 0;
}

static int codec_delete_from_pb(const Barque__DeleteResult *pb, bq_delete_result_t *c,
                                bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("DeleteResult", gc_note)) < 0)
        return rc;
    c->was_absent = !!pb->was_absent;
    c->gc_run = !!pb->gc_run;
    c->chunks_removed = pb->chunks_removed;
    c->bytes_reclaimed = pb->bytes_reclaimed;
    return 0;
}

/* ---- FileEntry (list-files pages) ------------------------------------------------------- */

/* n entries -> a repeated FileEntry field in the arena (paths borrowed). obj names the
 * message holding them. */
static int codec_files_to_pb(codec_arena_t *a, const bq_file_entry_t *files, size_t n,
                             const char *obj, Barque__FileEntry ***out, size_t *nout,
                             bq_errbuf_t *e)
{
    *out = NULL;
    *nout = 0;
    if (n > BQ_FILES_PAGE_MAX)
        return bq_fail(e, BQ_E_INVAL, "%s has %zu files, more than the limit of %d", obj, n,
                       BQ_FILES_PAGE_MAX);
    if (!n)
        return 0;
    if (!files)
        return bq_fail(e, BQ_E_INVAL, "%s has %zu files but no array", obj, n);
    Barque__FileEntry *rows = ARENA_ARRAY(a, n, Barque__FileEntry);
    Barque__FileEntry **ptrs = ARENA_ARRAY(a, n, Barque__FileEntry *);
    if (!rows || !ptrs)
        return codec_nomem(e);
    for (size_t i = 0; i < n; i++) {
        barque__file_entry__init(&rows[i]);
        if (!files[i].path || strnlen(files[i].path, BQ_FILE_PATH_MAX) == BQ_FILE_PATH_MAX)
            return bq_fail(e, BQ_E_INVAL, "%s.files[%zu] has no path or one of %d bytes or more",
                           obj, i, BQ_FILE_PATH_MAX);
        rows[i].path = files[i].path;
        rows[i].mode = files[i].mode;
        rows[i].size = files[i].size;
        rows[i].mtime = files[i].mtime;
        ptrs[i] = &rows[i];
    }
    *out = ptrs;
    *nout = n;
    return 0;
}

/* A repeated FileEntry field -> a new array (*out, with *nout entries attached as soon as
 * they are made, so the caller's clear frees them on failure). */
static int codec_files_from_pb(Barque__FileEntry *const *pb, size_t n, const char *obj,
                               bq_file_entry_t **out, size_t *nout, bq_errbuf_t *e)
{
    *out = NULL;
    *nout = 0;
    if (n > BQ_FILES_PAGE_MAX)
        return bq_fail(e, BQ_E_PROTO, "%s has %zu files, more than the limit of %d", obj, n,
                       BQ_FILES_PAGE_MAX);
    if (!n)
        return 0;
    if (!(*out = calloc(n, sizeof **out)))
        return codec_nomem(e);
    for (size_t i = 0; i < n; i++) {
        const char *path = pb[i]->path ? pb[i]->path : "";
        size_t len = strlen(path);
        if (len == 0 || len >= BQ_FILE_PATH_MAX)
            return bq_fail(e, BQ_E_PROTO, "%s.files[%zu].path is %zu bytes, not 1..%d", obj, i,
                           len, BQ_FILE_PATH_MAX - 1);
        if (!((*out)[i].path = strdup(path)))
            return codec_nomem(e);
        (*out)[i].mode = pb[i]->mode;
        (*out)[i].size = pb[i]->size;
        (*out)[i].mtime = pb[i]->mtime;
        *nout = i + 1;
    }
    return 0;
}

/* ---- Job ----------------------------------------------------------------------------- */

/* ---- RecoveryTarget ------------------------------------------------------------------ */

/* r to pb (NULL when r is not enabled: the field stays absent). */
static int codec_recovery_to_pb(codec_arena_t *a, const bq_recovery_t *c,
                                Barque__RecoveryTarget **out, bq_errbuf_t *e)
{
    int rc;
    *out = NULL;
    if (!c->enabled)
        return 0;
    char why[BQ_TEXT_MAX / 2];
    if (bq_recovery_valid(c, why, sizeof why) != 0)
        return bq_fail(e, BQ_E_INVAL, "RecoveryTarget: %s", why);
    Barque__RecoveryTarget *pb = ARENA_NEW(a, Barque__RecoveryTarget);
    if (!pb)
        return codec_nomem(e);
    barque__recovery_target__init(pb);
    if ((rc = STR_PUT("RecoveryTarget", kind)) < 0 || (rc = STR_PUT("RecoveryTarget", value)) < 0 ||
        (rc = STR_PUT("RecoveryTarget", tli)) < 0 || (rc = STR_PUT("RecoveryTarget", action)) < 0)
        return rc;
    pb->time_ms = c->time_ms;
    pb->lsn = c->lsn;
    pb->exclusive = !!c->exclusive;
    pb->standby = !!c->standby;
    pb->enabled = 1;
    *out = pb;
    return 0;
}

static int codec_recovery_from_pb(const Barque__RecoveryTarget *pb, bq_recovery_t *c,
                                  bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if (!pb || !pb->enabled)
        return 0;
    if ((rc = STR_GET("RecoveryTarget", kind)) < 0 || (rc = STR_GET("RecoveryTarget", value)) < 0 ||
        (rc = STR_GET("RecoveryTarget", tli)) < 0 || (rc = STR_GET("RecoveryTarget", action)) < 0)
        return rc;
    c->time_ms = pb->time_ms;
    c->lsn = pb->lsn;
    c->exclusive = !!pb->exclusive;
    c->standby = !!pb->standby;
    c->enabled = 1;
    char why[BQ_TEXT_MAX / 2];
    if (bq_recovery_valid(c, why, sizeof why) != 0)
        return bq_fail(e, BQ_E_PROTO, "RecoveryTarget: %s", why);
    return 0;
}

/* ---- RestoreTestSpec, RestoreTest (issue 7) ------------------------------------------- */

static int codec_rt_spec_to_pb(const bq_rt_spec_t *c, Barque__RestoreTestSpec *pb, bq_errbuf_t *e)
{
    int rc;
    barque__restore_test_spec__init(pb);
    if ((rc = STR_PUT("RestoreTestSpec", kind)) < 0 || (rc = STR_PUT("RestoreTestSpec", sql)) < 0 ||
        (rc = STR_PUT("RestoreTestSpec", sql_file)) < 0 ||
        (rc = STR_PUT("RestoreTestSpec", wal_end)) < 0 ||
        (rc = STR_PUT("RestoreTestSpec", dbname)) < 0 ||
        (rc = STR_PUT("RestoreTestSpec", from_site)) < 0)
        return rc;
    pb->predicted_ms = c->predicted_ms;
    pb->amcheck = !!c->amcheck;
    pb->timeout_ms = c->timeout_ms;
    pb->system_identifier = c->system_identifier;
    pb->start_lsn = c->start_lsn;
    pb->stop_lsn = c->stop_lsn;
    pb->data_bytes = c->data_bytes;
    pb->pg_version = c->pg_version;
    return 0;
}

static int codec_rt_spec_from_pb(const Barque__RestoreTestSpec *pb, bq_rt_spec_t *c,
                                 bq_errbuf_t *e)
{
    int rc;
    if ((rc = STR_GET("RestoreTestSpec", kind)) < 0 || (rc = STR_GET("RestoreTestSpec", sql)) < 0 ||
        (rc = STR_GET("RestoreTestSpec", sql_file)) < 0 ||
        (rc = STR_GET("RestoreTestSpec", wal_end)) < 0 ||
        (rc = STR_GET("RestoreTestSpec", dbname)) < 0 ||
        (rc = STR_GET("RestoreTestSpec", from_site)) < 0)
        return rc;
    c->predicted_ms = pb->predicted_ms;
    uint32_t t, h, l;
    if (c->wal_end[0] && bq_wal_segment_parse(c->wal_end, &t, &h, &l) != 0)
        return bq_fail(e, BQ_E_PROTO, "RestoreTestSpec.wal_end is not a WAL segment name");
    c->amcheck = !!pb->amcheck;
    c->timeout_ms = pb->timeout_ms;
    c->system_identifier = pb->system_identifier;
    c->start_lsn = pb->start_lsn;
    c->stop_lsn = pb->stop_lsn;
    c->data_bytes = pb->data_bytes;
    c->pg_version = pb->pg_version;
    return 0;
}

static int codec_rtest_to_pb(codec_arena_t *a, const bq_restore_test_t *c,
                             Barque__RestoreTest *pb, bq_errbuf_t *e)
{
    int rc;
    barque__restore_test__init(pb);
    if ((rc = STR_PUT("RestoreTest", cluster)) < 0 || (rc = STR_PUT("RestoreTest", backup_id)) < 0 ||
        (rc = STR_PUT("RestoreTest", kind)) < 0 || (rc = STR_PUT("RestoreTest", worker)) < 0 ||
        (rc = STR_PUT("RestoreTest", site)) < 0 || (rc = STR_PUT("RestoreTest", read_from)) < 0 ||
        (rc = STR_PUT("RestoreTest", error)) < 0 || (rc = STR_PUT("RestoreTest", target)) < 0)
        return rc;
    pb->job_id = c->job_id;
    pb->attempt = c->attempt;
    pb->ok = !!c->ok;
    pb->started_ms = c->started_ms;
    pb->finished_ms = c->finished_ms;
    pb->reached_lsn = c->reached_lsn;
    pb->reached_ms = c->reached_ms;
    pb->wal_segments = c->wal_segments;
    pb->wal_bytes = c->wal_bytes;
    pb->bytes = c->bytes;
    pb->fetch_ms = c->fetch_ms;
    pb->start_ms = c->start_ms;
    pb->replay_ms = c->replay_ms;
    pb->rto_ms = c->rto_ms;
    pb->check_ms = c->check_ms;
    pb->predicted_ms = c->predicted_ms;
    return codec_items_to_pb(a, c->checks, c->nchecks, BQ_RT_CHECKS_MAX, "RestoreTest",
                             &pb->checks, &pb->n_checks, e);
}

static int codec_rtest_from_pb(const Barque__RestoreTest *pb, bq_restore_test_t *c,
                               bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("RestoreTest", cluster)) < 0 || (rc = STR_GET("RestoreTest", backup_id)) < 0 ||
        (rc = STR_GET("RestoreTest", kind)) < 0 || (rc = STR_GET("RestoreTest", worker)) < 0 ||
        (rc = STR_GET("RestoreTest", site)) < 0 || (rc = STR_GET("RestoreTest", read_from)) < 0 ||
        (rc = STR_GET("RestoreTest", error)) < 0 || (rc = STR_GET("RestoreTest", target)) < 0)
        return rc;
    c->job_id = pb->job_id;
    c->attempt = pb->attempt;
    c->ok = !!pb->ok;
    c->started_ms = pb->started_ms;
    c->finished_ms = pb->finished_ms;
    c->reached_lsn = pb->reached_lsn;
    c->reached_ms = pb->reached_ms;
    c->wal_segments = pb->wal_segments;
    c->wal_bytes = pb->wal_bytes;
    c->bytes = pb->bytes;
    c->fetch_ms = pb->fetch_ms;
    c->start_ms = pb->start_ms;
    c->replay_ms = pb->replay_ms;
    c->rto_ms = pb->rto_ms;
    c->check_ms = pb->check_ms;
    c->predicted_ms = pb->predicted_ms;
    return codec_items_from_pb(pb->checks, pb->n_checks, BQ_RT_CHECKS_MAX, "RestoreTest",
                               c->checks, &c->nchecks, e);
}

static int codec_job_to_pb(codec_arena_t *a, const bq_job_t *c, Barque__Job *pb, bq_errbuf_t *e)
{
    int rc;
    barque__job__init(pb);
    if (!codec_job_type_valid((int)c->type))
        return bq_fail(e, BQ_E_INVAL, "Job.type has unknown value %d", (int)c->type);
    if (!codec_job_state_valid((int)c->state))
        return bq_fail(e, BQ_E_INVAL, "Job.state has unknown value %d", (int)c->state);
    if ((rc = STR_PUT("Job", cluster)) < 0 || (rc = STR_PUT("Job", site)) < 0 ||
        (rc = STR_PUT("Job", worker)) < 0 || (rc = STR_PUT("Job", error)) < 0 ||
        (rc = STR_PUT("Job", conninfo)) < 0 || (rc = STR_PUT("Job", backup_id)) < 0 ||
        (rc = STR_PUT("Job", checkpoint)) < 0 || (rc = STR_PUT("Job", dest)) < 0 ||
        (rc = STR_PUT("Job", tablespaces)) < 0 || (rc = STR_PUT("Job", owner)) < 0 ||
        (rc = STR_PUT("Job", pin_worker)) < 0 || (rc = STR_PUT("Job", peer_worker)) < 0 ||
        (rc = STR_PUT("Job", peer_endpoint)) < 0 || (rc = STR_PUT("Job", peer_public_key)) < 0 ||
        (rc = STR_PUT("Job", delta_from)) < 0 || (rc = STR_PUT("Job", wal_file)) < 0 ||
        (rc = STR_PUT("Job", pre_script)) < 0 || (rc = STR_PUT("Job", post_script)) < 0 ||
        (rc = STR_PUT("Job", hook_note)) < 0 || (rc = STR_PUT("Job", wal_keep_from)) < 0 ||
        (rc = STR_PUT("Job", progress_message)) < 0 ||
        (rc = codec_list_put(a, c->wal_keep_ranges, sizeof c->wal_keep_ranges, "Job",
                             "wal_keep_ranges", "WAL range", &pb->wal_keep_ranges,
                             &pb->n_wal_keep_ranges, e)) < 0)
        return rc;
    if (c->keep < 0 || c->keep > 2)
        return bq_fail(e, BQ_E_INVAL, "Job.keep has unknown value %d", c->keep);
    pb->keep = (uint32_t)c->keep;
    pb->hook_timeout_ms = c->hook_timeout_ms;
    pb->hook_retries = c->hook_retries;
    pb->hook_retry_sleep_ms = c->hook_retry_sleep_ms;
    if (c->has_prune) {
        Barque__WalPruneResult *pr = ARENA_NEW(a, Barque__WalPruneResult);
        if (!pr)
            return codec_nomem(e);
        barque__wal_prune_result__init(pr);
        pr->files_removed = c->prune.files_removed;
        pr->bytes_removed = c->prune.bytes_removed;
        pb->prune = pr;
    }
    if (c->delta_from[0] && !bq_backup_id_valid(c->delta_from))
        return bq_fail(e, BQ_E_INVAL, "Job.delta_from \"%s\" is not a backup id (YYYYMMDDTHHMMSS)",
                       c->delta_from);
    pb->delta = !!c->delta;
    if ((rc = codec_recovery_to_pb(a, &c->recovery, &pb->recovery, e)) < 0)
        return rc;
    if (c->has_restore) {
        Barque__RestoreResult *rr = ARENA_NEW(a, Barque__RestoreResult);
        if (!rr)
            return codec_nomem(e);
        if ((rc = codec_restore_to_pb(&c->restore, rr, e)) < 0)
            return rc;
        pb->restore = rr;
    }
    if (c->has_delete) {
        Barque__DeleteResult *dr = ARENA_NEW(a, Barque__DeleteResult);
        if (!dr)
            return codec_nomem(e);
        if ((rc = codec_delete_to_pb(&c->del, dr, e)) < 0)
            return rc;
        pb->deletion = dr;
    }
    if (c->has_replicate && (rc = codec_rep_to_pb(a, &c->rep, &pb->replicate, e)) < 0)
        return rc;
    if ((rc = codec_list_put(a, c->wal_names, sizeof c->wal_names, "Job", "wal_names",
                             "WAL file name", &pb->wal_names, &pb->n_wal_names, e)) < 0)
        return rc;
    pb->bandwidth_limit = c->bandwidth_limit;
    pb->offset = c->offset;
    pb->id = c->id;
    pb->type = (Barque__JobType)c->type;
    pb->state = (Barque__JobState)c->state;
    pb->attempt = c->attempt;
    pb->max_attempts = c->max_attempts;
    pb->created_ms = c->created_ms;
    pb->updated_ms = c->updated_ms;
    pb->started_ms = c->started_ms;
    pb->finished_ms = c->finished_ms;
    pb->next_attempt_ms = c->next_attempt_ms;
    pb->progress_done = c->progress_done;
    pb->progress_total = c->progress_total;
    pb->sleep_ms = c->sleep_ms;
    pb->cancel_requested = !!c->cancel_requested;
    pb->synchronous = !!c->synchronous;
    pb->force = !!c->force;
    pb->wal_stream = !!c->wal_stream;
    if (c->has_check) {
        Barque__CheckResult *check = ARENA_NEW(a, Barque__CheckResult);
        if (!check)
            return codec_nomem(e);
        if ((rc = codec_check_to_pb(a, &c->check, check, e)) < 0)
            return rc;
        pb->check = check;
    }
    if (c->type == BQ_JOB_RESTORE_TEST || c->rt.from_site[0]) { /* restore: --from-site */
        Barque__RestoreTestSpec *rt = ARENA_NEW(a, Barque__RestoreTestSpec);
        if (!rt)
            return codec_nomem(e);
        if ((rc = codec_rt_spec_to_pb(&c->rt, rt, e)) < 0)
            return rc;
        pb->rtest = rt;
    }
    return 0;
}

static int codec_job_from_pb(const Barque__Job *pb, bq_job_t *c, bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if (!codec_job_type_valid((int)pb->type))
        return bq_fail(e, BQ_E_PROTO, "Job.type has unknown value %d", (int)pb->type);
    if (!codec_job_state_valid((int)pb->state))
        return bq_fail(e, BQ_E_PROTO, "Job.state has unknown value %d", (int)pb->state);
    if ((rc = STR_GET("Job", cluster)) < 0 || (rc = STR_GET("Job", site)) < 0 ||
        (rc = STR_GET("Job", worker)) < 0 || (rc = STR_GET("Job", error)) < 0 ||
        (rc = STR_GET("Job", conninfo)) < 0 || (rc = STR_GET("Job", backup_id)) < 0 ||
        (rc = STR_GET("Job", checkpoint)) < 0 || (rc = STR_GET("Job", dest)) < 0 ||
        (rc = STR_GET("Job", tablespaces)) < 0 || (rc = STR_GET("Job", owner)) < 0 ||
        (rc = STR_GET("Job", pin_worker)) < 0 || (rc = STR_GET("Job", peer_worker)) < 0 ||
        (rc = STR_GET("Job", peer_endpoint)) < 0 || (rc = STR_GET("Job", peer_public_key)) < 0 ||
        (rc = STR_GET("Job", delta_from)) < 0 || (rc = STR_GET("Job", wal_file)) < 0 ||
        (rc = STR_GET("Job", pre_script)) < 0 || (rc = STR_GET("Job", post_script)) < 0 ||
        (rc = STR_GET("Job", hook_note)) < 0 || (rc = STR_GET("Job", wal_keep_from)) < 0 ||
        (rc = STR_GET("Job", progress_message)) < 0 ||
        (rc = codec_list_get(c->wal_keep_ranges, sizeof c->wal_keep_ranges, pb->wal_keep_ranges,
                             pb->n_wal_keep_ranges, "Job", "wal_keep_ranges", "WAL range", e)) < 0)
        return rc;
    uint32_t kt, kh, kl;
    if (c->wal_keep_from[0] && bq_wal_segment_parse(c->wal_keep_from, &kt, &kh, &kl) != 0)
        return bq_fail(e, BQ_E_PROTO, "Job.wal_keep_from is not a WAL segment name");
    if (pb->keep > 2)
        return bq_fail(e, BQ_E_PROTO, "Job.keep has unknown value %u", pb->keep);
    c->keep = (int)pb->keep;
    c->hook_timeout_ms = pb->hook_timeout_ms;
    c->hook_retries = pb->hook_retries;
    c->hook_retry_sleep_ms = pb->hook_retry_sleep_ms;
    if (pb->prune) {
        c->has_prune = 1;
        c->prune.files_removed = pb->prune->files_removed;
        c->prune.bytes_removed = pb->prune->bytes_removed;
    }
    if (c->wal_file[0] && !bq_wal_name_valid(c->wal_file))
        return bq_fail(e, BQ_E_PROTO, "Job.wal_file is not a WAL file name");
    if (c->delta_from[0] && !bq_backup_id_valid(c->delta_from))
        return bq_fail(e, BQ_E_PROTO, "Job.delta_from is not a backup id (YYYYMMDDTHHMMSS)");
    c->delta = !!pb->delta;
    if ((rc = codec_recovery_from_pb(pb->recovery, &c->recovery, e)) < 0)
        return rc;
    if (pb->restore) {
        if ((rc = codec_restore_from_pb(pb->restore, &c->restore, e)) < 0)
            return rc;
        c->has_restore = 1;
    }
    if (pb->deletion) {
        if ((rc = codec_delete_from_pb(pb->deletion, &c->del, e)) < 0)
            return rc;
        c->has_delete = 1;
    }
    if (pb->replicate) {
        if ((rc = codec_rep_from_pb(pb->replicate, &c->rep, e)) < 0)
            return rc;
        c->has_replicate = 1;
    }
    if (pb->n_wal_names > BQ_WAL_NAMES_MAX)
        return bq_fail(e, BQ_E_PROTO, "Job.wal_names has %zu names, more than the limit of %d",
                       pb->n_wal_names, BQ_WAL_NAMES_MAX);
    for (size_t i = 0; i < pb->n_wal_names; i++)
        if (!pb->wal_names[i] || !bq_wal_name_valid(pb->wal_names[i]))
            return bq_fail(e, BQ_E_PROTO, "Job.wal_names[%zu] is not a WAL file name", i);
    if ((rc = codec_list_get(c->wal_names, sizeof c->wal_names, pb->wal_names, pb->n_wal_names,
                             "Job", "wal_names", "WAL file name", e)) < 0)
        return rc;
    c->bandwidth_limit = pb->bandwidth_limit;
    c->offset = pb->offset;
    c->id = pb->id;
    c->type = (bq_job_type_t)pb->type;
    c->state = (bq_job_state_t)pb->state;
    c->attempt = pb->attempt;
    c->max_attempts = pb->max_attempts;
    c->created_ms = pb->created_ms;
    c->updated_ms = pb->updated_ms;
    c->started_ms = pb->started_ms;
    c->finished_ms = pb->finished_ms;
    c->next_attempt_ms = pb->next_attempt_ms;
    c->progress_done = pb->progress_done;
    c->progress_total = pb->progress_total;
    c->sleep_ms = pb->sleep_ms;
    c->cancel_requested = !!pb->cancel_requested;
    c->synchronous = !!pb->synchronous;
    c->force = !!pb->force;
    c->wal_stream = !!pb->wal_stream;
    if (pb->check) {
        if ((rc = codec_check_from_pb(pb->check, &c->check, e)) < 0)
            return rc;
        c->has_check = 1;
    }
    if (pb->rtest && (rc = codec_rt_spec_from_pb(pb->rtest, &c->rt, e)) < 0)
        return rc;
    return 0;
}

/* ---- Backup -------------------------------------------------------------------------- */

static int codec_backup_to_pb(codec_arena_t *a, const bq_backup_t *c, Barque__Backup *pb,
                              bq_errbuf_t *e)
{
    int rc;
    barque__backup__init(pb);
    if (!codec_backup_state_valid((int)c->state))
        return bq_fail(e, BQ_E_INVAL, "Backup.state has unknown value %d", (int)c->state);
    if ((rc = STR_PUT("Backup", id)) < 0 || (rc = STR_PUT("Backup", cluster)) < 0 ||
        (rc = STR_PUT("Backup", worker)) < 0 || (rc = STR_PUT("Backup", site)) < 0 ||
        (rc = STR_PUT("Backup", wal_begin)) < 0 || (rc = STR_PUT("Backup", wal_end)) < 0 ||
        (rc = STR_PUT("Backup", checksum_detail)) < 0 || (rc = STR_PUT("Backup", error)) < 0 ||
        (rc = STR_PUT("Backup", delta_from)) < 0 || (rc = STR_PUT("Backup", retention)) < 0)
        return rc;
    if (c->keep < 0 || c->keep > 2)
        return bq_fail(e, BQ_E_INVAL, "Backup.keep has unknown value %d", c->keep);
    pb->keep = (uint32_t)c->keep;
    if ((rc = codec_list_put(a, c->stores, sizeof c->stores, "Backup", "stores", "worker name",
                             &pb->stores, &pb->n_stores, e)) < 0)
        return rc;
    pb->state = (Barque__BackupState)c->state;
    pb->job_id = c->job_id;
    pb->attempt = c->attempt;
    pb->system_identifier = c->system_identifier;
    pb->pg_version = c->pg_version;
    pb->timeline = c->timeline;
    pb->start_lsn = c->start_lsn;
    pb->stop_lsn = c->stop_lsn;
    pb->start_ms = c->start_ms;
    pb->stop_ms = c->stop_ms;
    pb->data_bytes = c->data_bytes;
    pb->stored_bytes = c->stored_bytes;
    pb->dedup_bytes = c->dedup_bytes;
    pb->files = c->files;
    pb->duration_ms = c->duration_ms;
    pb->checksum_failures = c->checksum_failures;
    pb->delta_bytes = c->delta_bytes;
    pb->delta_chunks = c->delta_chunks;
    if (c->ncopies > BQ_COPIES_MAX)
        return bq_fail(e, BQ_E_INVAL, "Backup.copies has %zu copies, more than the limit of %d",
                       c->ncopies, BQ_COPIES_MAX);
    ROWS_TO_PB(Barque__BackupCopy, c->ncopies, pb->copies, pb->n_copies,
               codec_copy_to_pb(&c->copies[i_], &rows_[i_], e));
    return 0;
}

static int codec_backup_from_pb(const Barque__Backup *pb, bq_backup_t *c, bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if (!codec_backup_state_valid((int)pb->state))
        return bq_fail(e, BQ_E_PROTO, "Backup.state has unknown value %d", (int)pb->state);
    if ((rc = STR_GET("Backup", id)) < 0 || (rc = STR_GET("Backup", cluster)) < 0 ||
        (rc = STR_GET("Backup", worker)) < 0 || (rc = STR_GET("Backup", site)) < 0 ||
        (rc = STR_GET("Backup", wal_begin)) < 0 || (rc = STR_GET("Backup", wal_end)) < 0 ||
        (rc = STR_GET("Backup", checksum_detail)) < 0 || (rc = STR_GET("Backup", error)) < 0 ||
        (rc = STR_GET("Backup", delta_from)) < 0 || (rc = STR_GET("Backup", retention)) < 0)
        return rc;
    if (pb->keep > 2)
        return bq_fail(e, BQ_E_PROTO, "Backup.keep has unknown value %u", pb->keep);
    c->keep = (int)pb->keep;
    if ((rc = codec_list_get(c->stores, sizeof c->stores, pb->stores, pb->n_stores, "Backup",
                             "stores", "worker name", e)) < 0)
        return rc;
    c->state = (bq_backup_state_t)pb->state;
    c->job_id = pb->job_id;
    c->attempt = pb->attempt;
    c->system_identifier = pb->system_identifier;
    c->pg_version = pb->pg_version;
    c->timeline = pb->timeline;
    c->start_lsn = pb->start_lsn;
    c->stop_lsn = pb->stop_lsn;
    c->start_ms = pb->start_ms;
    c->stop_ms = pb->stop_ms;
    c->data_bytes = pb->data_bytes;
    c->stored_bytes = pb->stored_bytes;
    c->dedup_bytes = pb->dedup_bytes;
    c->files = pb->files;
    c->duration_ms = pb->duration_ms;
    c->checksum_failures = pb->checksum_failures;
    c->delta_bytes = pb->delta_bytes;
    c->delta_chunks = pb->delta_chunks;
    if (pb->n_copies > BQ_COPIES_MAX)
        return bq_fail(e, BQ_E_PROTO, "Backup.copies has %zu copies, more than the limit of %d",
                       pb->n_copies, BQ_COPIES_MAX);
    for (; c->ncopies < pb->n_copies; c->ncopies++)
        if ((rc = codec_copy_from_pb(pb->copies[c->ncopies], &c->copies[c->ncopies], e)) < 0)
            return rc;
    return 0;
}

/* ---- WalFile, WalTimeline ------------------------------------------------------------ */

/* A WAL file name field: "" or bq_wal_name_valid; code is BQ_E_INVAL (encode) or BQ_E_PROTO. */
static int codec_wal_name_check(const char *name, const char *obj, const char *field, int code,
                                bq_errbuf_t *e)
{
    if (name[0] && !bq_wal_name_valid(name))
        return bq_fail(e, code, "%s.%s \"%s\" is not a WAL file name (24 hex digits, optionally "
                       ".partial, or 8 hex digits .history; timeline not 0)", obj, field, name);
    return 0;
}

static int codec_wal_file_to_pb(codec_arena_t *a, const bq_wal_file_t *c, Barque__WalFile *pb,
                                bq_errbuf_t *e)
{
    int rc;
    barque__wal_file__init(pb);
    if ((rc = STR_PUT("WalFile", cluster)) < 0 || (rc = STR_PUT("WalFile", name)) < 0 ||
        (rc = codec_wal_name_check(c->name, "WalFile", "name", BQ_E_INVAL, e)) < 0 ||
        (rc = codec_list_put(a, c->stores, sizeof c->stores, "WalFile", "stores", "worker name",
                             &pb->stores, &pb->n_stores, e)) < 0)
        return rc;
    pb->size = c->size;
    pb->archived_ms = c->archived_ms;
    return 0;
}

static int codec_wal_file_from_pb(const Barque__WalFile *pb, bq_wal_file_t *c, bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("WalFile", cluster)) < 0 || (rc = STR_GET("WalFile", name)) < 0 ||
        (rc = codec_wal_name_check(c->name, "WalFile", "name", BQ_E_PROTO, e)) < 0 ||
        (rc = codec_list_get(c->stores, sizeof c->stores, pb->stores, pb->n_stores, "WalFile",
                             "stores", "worker name", e)) < 0)
        return rc;
    c->size = pb->size;
    c->archived_ms = pb->archived_ms;
    return 0;
}

/* first and last: "" or a complete segment's name (24 hex digits). */
static int codec_wal_segment_check(const char *name, const char *field, int code, bq_errbuf_t *e)
{
    if (name[0] && (strlen(name) != 24 || !bq_wal_name_valid(name)))
        return bq_fail(e, code, "WalTimeline.%s \"%s\" is not a WAL segment name (24 hex digits, "
                       "timeline not 0)", field, name);
    return 0;
}

static int codec_wal_timeline_to_pb(codec_arena_t *a, const bq_wal_timeline_t *c,
                                    Barque__WalTimeline *pb, bq_errbuf_t *e)
{
    int rc;
    barque__wal_timeline__init(pb);
    if (c->tli == 0)
        return bq_fail(e, BQ_E_INVAL, "WalTimeline.tli is 0");
    if (c->ngaps > BQ_WAL_GAPS_MAX || c->npartials > BQ_WAL_PARTIALS_MAX)
        return bq_fail(e, BQ_E_INVAL, "WalTimeline %u has %zu gaps and %zu partials, more than "
                       "the limits of %d and %d", c->tli, c->ngaps, c->npartials,
                       BQ_WAL_GAPS_MAX, BQ_WAL_PARTIALS_MAX);
    if ((rc = STR_PUT("WalTimeline", first)) < 0 || (rc = STR_PUT("WalTimeline", last)) < 0 ||
        (rc = codec_wal_segment_check(c->first, "first", BQ_E_INVAL, e)) < 0 ||
        (rc = codec_wal_segment_check(c->last, "last", BQ_E_INVAL, e)) < 0)
        return rc;
    pb->tli = c->tli;
    pb->segments = c->segments;
    pb->bytes = c->bytes;
    pb->history = !!c->history;
    if (c->ngaps) {
        if (!(pb->gaps = ARENA_ARRAY(a, c->ngaps, char *)))
            return codec_nomem(e);
        for (size_t i = 0; i < c->ngaps; i++)
            if ((rc = codec_str_put(c->gaps[i], sizeof c->gaps[i], "WalTimeline", "gaps",
                                    &pb->gaps[i], e)) < 0)
                return rc;
        pb->n_gaps = c->ngaps;
    }
    if (c->npartials) {
        if (!(pb->partials = ARENA_ARRAY(a, c->npartials, char *)))
            return codec_nomem(e);
        for (size_t i = 0; i < c->npartials; i++)
            if ((rc = codec_str_put(c->partials[i], sizeof c->partials[i], "WalTimeline",
                                    "partials", &pb->partials[i], e)) < 0)
                return rc;
        pb->n_partials = c->npartials;
    }
    return 0;
}

static int codec_wal_timeline_from_pb(const Barque__WalTimeline *pb, bq_wal_timeline_t *c,
                                      bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if (pb->tli == 0)
        return bq_fail(e, BQ_E_PROTO, "WalTimeline.tli is 0");
    if (pb->n_gaps > BQ_WAL_GAPS_MAX)
        return bq_fail(e, BQ_E_PROTO, "WalTimeline %u has %zu gaps, more than the limit of %d",
                       pb->tli, pb->n_gaps, BQ_WAL_GAPS_MAX);
    if (pb->n_partials > BQ_WAL_PARTIALS_MAX)
        return bq_fail(e, BQ_E_PROTO, "WalTimeline %u has %zu partials, more than the limit of %d",
                       pb->tli, pb->n_partials, BQ_WAL_PARTIALS_MAX);
    if ((rc = STR_GET("WalTimeline", first)) < 0 || (rc = STR_GET("WalTimeline", last)) < 0 ||
        (rc = codec_wal_segment_check(c->first, "first", BQ_E_PROTO, e)) < 0 ||
        (rc = codec_wal_segment_check(c->last, "last", BQ_E_PROTO, e)) < 0)
        return rc;
    c->tli = pb->tli;
    c->segments = pb->segments;
    c->bytes = pb->bytes;
    c->history = !!pb->history;
    for (; c->ngaps < pb->n_gaps; c->ngaps++)
        if ((rc = codec_str_get(c->gaps[c->ngaps], sizeof c->gaps[c->ngaps], pb->gaps[c->ngaps],
                                "WalTimeline", "gaps", e)) < 0)
            return rc;
    for (; c->npartials < pb->n_partials; c->npartials++)
        if ((rc = codec_str_get(c->partials[c->npartials], sizeof c->partials[c->npartials],
                                pb->partials[c->npartials], "WalTimeline", "partials", e)) < 0)
            return rc;
    return 0;
}

/* ---- Worker, Cluster, JobRef --------------------------------------------------------- */

static int codec_worker_to_pb(const bq_worker_t *c, Barque__Worker *pb, bq_errbuf_t *e)
{
    int rc;
    barque__worker__init(pb);
    if ((rc = STR_PUT("Worker", name)) < 0 || (rc = STR_PUT("Worker", site)) < 0 ||
        (rc = STR_PUT("Worker", version)) < 0 || (rc = STR_PUT("Worker", data_endpoint)) < 0 ||
        (rc = STR_PUT("Worker", public_key)) < 0)
        return rc;
    pb->store_free = c->store_free;
    pb->store_total = c->store_total;
    pb->scratch_free = c->scratch_free;
    pb->scratch_total = c->scratch_total;
    pb->running = c->running;
    pb->max_jobs = c->max_jobs;
    pb->registered_ms = c->registered_ms;
    pb->last_seen_ms = c->last_seen_ms;
    pb->online = !!c->online;
    return 0;
}

static int codec_worker_from_pb(const Barque__Worker *pb, bq_worker_t *c, bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("Worker", name)) < 0 || (rc = STR_GET("Worker", site)) < 0 ||
        (rc = STR_GET("Worker", version)) < 0 || (rc = STR_GET("Worker", data_endpoint)) < 0 ||
        (rc = STR_GET("Worker", public_key)) < 0)
        return rc;
    if (c->public_key[0] && strlen(c->public_key) != BQ_Z85_KEY_LEN)
        return bq_fail(e, BQ_E_PROTO, "Worker.public_key of %s is %zu characters, not %d", c->name,
                       strlen(c->public_key), BQ_Z85_KEY_LEN);
    c->store_free = pb->store_free;
    c->store_total = pb->store_total;
    c->scratch_free = pb->scratch_free;
    c->scratch_total = pb->scratch_total;
    c->running = pb->running;
    c->max_jobs = pb->max_jobs;
    c->registered_ms = pb->registered_ms;
    c->last_seen_ms = pb->last_seen_ms;
    c->online = !!pb->online;
    return 0;
}

static int codec_cluster_to_pb(codec_arena_t *a, const bq_cluster_t *c, Barque__Cluster *pb,
                               bq_errbuf_t *e)
{
    int rc;
    barque__cluster__init(pb);
    if ((rc = STR_PUT("Cluster", name)) < 0 || (rc = STR_PUT("Cluster", site)) < 0 ||
        (rc = STR_PUT("Cluster", conninfo)) < 0 || (rc = STR_PUT("Cluster", wal_mode)) < 0 ||
        (rc = STR_PUT("Cluster", wal_last)) < 0 || (rc = STR_PUT("Cluster", stream_state)) < 0 ||
        (rc = STR_PUT("Cluster", stream_worker)) < 0 || (rc = STR_PUT("Cluster", rt_last_backup)) < 0 ||
        (rc = STR_PUT("Cluster", rt_last_error)) < 0 || (rc = STR_PUT("Cluster", rt_ok_backup)) < 0 ||
        (rc = STR_PUT("Cluster", rt_predicted_detail)) < 0)
        return rc;
    if (c->rt_severity < BQ_SEV_OK || c->rt_severity > BQ_SEV_UNKNOWN)
        return bq_fail(e, BQ_E_INVAL, "Cluster.rt_severity has unknown value %d", c->rt_severity);
    pb->rt_severity = (uint32_t)c->rt_severity;
    pb->rt_last_ms = c->rt_last_ms;
    pb->rt_last_ok = !!c->rt_last_ok;
    pb->rt_ok_ms = c->rt_ok_ms;
    pb->rt_ok_rto_ms = c->rt_ok_rto_ms;
    pb->rt_predicted_ms = c->rt_predicted_ms;
    pb->system_identifier = c->system_identifier;
    pb->wal_last_ms = c->wal_last_ms;
    pb->wal_gaps = c->wal_gaps;
    pb->stream_flushed = c->stream_flushed;
    pb->stream_received = c->stream_received;
    pb->check_status = (uint32_t)c->check_status;
    pb->check_ms = c->check_ms;
    pb->check_failed = c->check_failed;
    if (c->nreplicas > BQ_COPIES_MAX)
        return bq_fail(e, BQ_E_INVAL, "Cluster.replicas has %zu sites, more than the limit of %d",
                       c->nreplicas, BQ_COPIES_MAX);
    ROWS_TO_PB(Barque__ReplicaStatus, c->nreplicas, pb->replicas, pb->n_replicas,
               codec_replica_to_pb(&c->replicas[i_], &rows_[i_], e));
    return 0;
}

static int codec_cluster_from_pb(const Barque__Cluster *pb, bq_cluster_t *c, bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("Cluster", name)) < 0 || (rc = STR_GET("Cluster", site)) < 0 ||
        (rc = STR_GET("Cluster", conninfo)) < 0 || (rc = STR_GET("Cluster", wal_mode)) < 0 ||
        (rc = STR_GET("Cluster", wal_last)) < 0 || (rc = STR_GET("Cluster", stream_state)) < 0 ||
        (rc = STR_GET("Cluster", stream_worker)) < 0 || (rc = STR_GET("Cluster", rt_last_backup)) < 0 ||
        (rc = STR_GET("Cluster", rt_last_error)) < 0 || (rc = STR_GET("Cluster", rt_ok_backup)) < 0 ||
        (rc = STR_GET("Cluster", rt_predicted_detail)) < 0)
        return rc;
    if (pb->rt_severity > BQ_SEV_UNKNOWN)
        return bq_fail(e, BQ_E_PROTO, "Cluster.rt_severity has unknown value %u", pb->rt_severity);
    c->rt_severity = (int)pb->rt_severity;
    c->rt_last_ms = pb->rt_last_ms;
    c->rt_last_ok = !!pb->rt_last_ok;
    c->rt_ok_ms = pb->rt_ok_ms;
    c->rt_ok_rto_ms = pb->rt_ok_rto_ms;
    c->rt_predicted_ms = pb->rt_predicted_ms;
    c->system_identifier = pb->system_identifier;
    c->wal_last_ms = pb->wal_last_ms;
    c->wal_gaps = pb->wal_gaps;
    c->stream_flushed = pb->stream_flushed;
    c->stream_received = pb->stream_received;
    if (pb->check_status > BQ_SEV_UNKNOWN)
        return bq_fail(e, BQ_E_PROTO, "Cluster.check_status has unknown value %u", pb->check_status);
    c->check_status = (int)pb->check_status;
    c->check_ms = pb->check_ms;
    c->check_failed = pb->check_failed;
    if (pb->n_replicas > BQ_COPIES_MAX)
        return bq_fail(e, BQ_E_PROTO, "Cluster.replicas has %zu sites, more than the limit of %d",
                       pb->n_replicas, BQ_COPIES_MAX);
    for (; c->nreplicas < pb->n_replicas; c->nreplicas++)
        if ((rc = codec_replica_from_pb(pb->replicas[c->nreplicas], &c->replicas[c->nreplicas],
                                        e)) < 0)
            return rc;
    return 0;
}

/* ---- ScheduleRow ------------------------------------------------------------------- */

static int codec_schedule_to_pb(const bq_schedule_row_t *c, Barque__ScheduleRow *pb,
                                bq_errbuf_t *e)
{
    int rc;
    barque__schedule_row__init(pb);
    if ((rc = STR_PUT("ScheduleRow", cluster)) < 0 || (rc = STR_PUT("ScheduleRow", site)) < 0 ||
        (rc = STR_PUT("ScheduleRow", schedule)) < 0 || (rc = STR_PUT("ScheduleRow", why)) < 0 ||
        (rc = STR_PUT("ScheduleRow", last_backup)) < 0 ||
        (rc = STR_PUT("ScheduleRow", retention)) < 0)
        return rc;
    pb->last_slot_ms = c->last_slot_ms;
    pb->next_ms = c->next_ms;
    pb->due = !!c->due;
    return 0;
}

static int codec_schedule_from_pb(const Barque__ScheduleRow *pb, bq_schedule_row_t *c,
                                  bq_errbuf_t *e)
{
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = STR_GET("ScheduleRow", cluster)) < 0 || (rc = STR_GET("ScheduleRow", site)) < 0 ||
        (rc = STR_GET("ScheduleRow", schedule)) < 0 || (rc = STR_GET("ScheduleRow", why)) < 0 ||
        (rc = STR_GET("ScheduleRow", last_backup)) < 0 ||
        (rc = STR_GET("ScheduleRow", retention)) < 0)
        return rc;
    c->last_slot_ms = pb->last_slot_ms;
    c->next_ms = pb->next_ms;
    c->due = !!pb->due;
    return 0;
}

/* ---- packing and unpacking ----------------------------------------------------------- */

/* Pack msg into a new malloc'd buffer; BQ_E_TOOBIG over BQ_MSG_MAX (the peer would refuse
 * it, and ZMQ_MAXMSGSIZE would drop it without a word). */
static int codec_pack(const ProtobufCMessage *msg, uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > BQ_MSG_MAX)
        return bq_fail(e, BQ_E_TOOBIG, "it would be %zu bytes, over the %u-byte limit", n,
                       BQ_MSG_MAX);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return codec_nomem(e);
    size_t packed = protobuf_c_message_pack(msg, b);
    if (packed != n) {
        free(b);
        return bq_fail(e, BQ_E_PROTO, "protobuf-c packed %zu bytes, expected %zu", packed, n);
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Read a base-128 varint at *pos; -1 when it runs off the end or past 10 bytes. */
static int codec_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 70 && *pos < len; shift += 7) {
        uint8_t b = p[(*pos)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* protobuf-c hands a string back NUL-terminated but without its length, so "ab\0cd" would
 * arrive as "ab": refuse a NUL inside any string field of desc (and of the messages it
 * holds) by looking at the wire bytes. Runs after a successful unpack, so the framing is
 * sound; unknown fields are skipped. The schema has no recursive messages. */
static int codec_nul_check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                           bq_errbuf_t *e)
{
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, n;
        if (codec_varint(p, len, &pos, &key) < 0)
            return 0;
        switch (key & 7) {
        case 0: /* varint */
            if (codec_varint(p, len, &pos, &n) < 0)
                return 0;
            break;
        case 1: /* 64-bit */
            if (len - pos < 8)
                return 0;
            pos += 8;
            break;
        case 5: /* 32-bit */
            if (len - pos < 4)
                return 0;
            pos += 4;
            break;
        case 2: { /* length-delimited */
            if (codec_varint(p, len, &pos, &n) < 0 || n > len - pos)
                return 0;
            const ProtobufCFieldDescriptor *f =
                (key >> 3) <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p + pos, 0, n))
                return bq_fail(e, BQ_E_PROTO, "%s.%s contains a NUL byte", desc->short_name,
                               f->name);
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                int rc = codec_nul_check(f->descriptor, p + pos, n, e);
                if (rc < 0)
                    return rc;
            }
            pos += n;
            break;
        }
        default: /* groups: protobuf-c refuses them in unpack */
            return 0;
        }
    }
    return 0;
}

/* Unpack len bytes as desc (default allocator), after the size check. On failure *out is
 * NULL and e says why. Free with protobuf_c_message_free_unpacked(*out, NULL). */
static int codec_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                        ProtobufCMessage **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (len > BQ_MSG_MAX)
        return bq_fail(e, BQ_E_TOOBIG, "it is %zu bytes, over the %u-byte limit", len,
                       BQ_MSG_MAX);
    if (len && !buf)
        return bq_fail(e, BQ_E_INVAL, "no buffer for %zu bytes", len);
    *out = protobuf_c_message_unpack(desc, NULL, len, buf);
    if (!*out)
        return bq_fail(e, BQ_E_PROTO, "not a valid %s (%zu bytes)", desc->short_name, len);
    int rc = codec_nul_check(desc, buf, len, e);
    if (rc < 0) {
        protobuf_c_message_free_unpacked(*out, NULL);
        *out = NULL;
    }
    return rc;
}

/* ---- catalog records ----------------------------------------------------------------- */

/* Room for the protobuf-c side of any catalog record. */
typedef union {
    ProtobufCMessage base; /* the first member of each */
    Barque__Job job;
    Barque__Worker worker;
    Barque__Cluster cluster;
    Barque__Backup backup;
    Barque__WalFile wal_file;
    Barque__RestoreTest rtest;
} codec_record_pb_t;

/* One kind of catalog record: its name in messages, its message and its conversions. */
typedef struct {
    const char *name;
    const ProtobufCMessageDescriptor *desc;
    int (*to_pb)(codec_arena_t *a, const void *c, codec_record_pb_t *pb, bq_errbuf_t *e);
    int (*from_pb)(const ProtobufCMessage *pb, void *c, bq_errbuf_t *e);
} codec_record_t;

static int codec_job_rec_to_pb(codec_arena_t *a, const void *c, codec_record_pb_t *pb,
                               bq_errbuf_t *e)
{
    return codec_job_to_pb(a, c, &pb->job, e);
}

static int codec_job_rec_from_pb(const ProtobufCMessage *pb, void *c, bq_errbuf_t *e)
{
    return codec_job_from_pb((const Barque__Job *)pb, c, e);
}

static int codec_worker_rec_to_pb(codec_arena_t *a, const void *c, codec_record_pb_t *pb,
                                  bq_errbuf_t *e)
{
    return codec_worker_to_pb(c, &pb->worker, e);
}

static int codec_worker_rec_from_pb(const ProtobufCMessage *pb, void *c, bq_errbuf_t *e)
{
    return codec_worker_from_pb((const Barque__Worker *)pb, c, e);
}

static int codec_cluster_rec_to_pb(codec_arena_t *a, const void *c, codec_record_pb_t *pb,
                                   bq_errbuf_t *e)
{
    return codec_cluster_to_pb(a, c, &pb->cluster, e);
}

static int codec_cluster_rec_from_pb(const ProtobufCMessage *pb, void *c, bq_errbuf_t *e)
{
    return codec_cluster_from_pb((const Barque__Cluster *)pb, c, e);
}

static int codec_backup_rec_to_pb(codec_arena_t *a, const void *c, codec_record_pb_t *pb,
                                  bq_errbuf_t *e)
{
    return codec_backup_to_pb(a, c, &pb->backup, e);
}

static int codec_backup_rec_from_pb(const ProtobufCMessage *pb, void *c, bq_errbuf_t *e)
{
    return codec_backup_from_pb((const Barque__Backup *)pb, c, e);
}

static int codec_wal_file_rec_to_pb(codec_arena_t *a, const void *c, codec_record_pb_t *pb,
                                    bq_errbuf_t *e)
{
    return codec_wal_file_to_pb(a, c, &pb->wal_file, e);
}

static int codec_wal_file_rec_from_pb(const ProtobufCMessage *pb, void *c, bq_errbuf_t *e)
{
    return codec_wal_file_from_pb((const Barque__WalFile *)pb, c, e);
}

static int codec_rtest_rec_to_pb(codec_arena_t *a, const void *c, codec_record_pb_t *pb,
                                 bq_errbuf_t *e)
{
    return codec_rtest_to_pb(a, c, &pb->rtest, e);
}

static int codec_rtest_rec_from_pb(const ProtobufCMessage *pb, void *c, bq_errbuf_t *e)
{
    return codec_rtest_from_pb((const Barque__RestoreTest *)pb, c, e);
}

static const codec_record_t codec_rec_rtest = {"RestoreTest", &barque__restore_test__descriptor,
                                               codec_rtest_rec_to_pb, codec_rtest_rec_from_pb};
static const codec_record_t codec_rec_job = {"Job", &barque__job__descriptor,
                                             codec_job_rec_to_pb, codec_job_rec_from_pb};
static const codec_record_t codec_rec_worker = {"Worker", &barque__worker__descriptor,
                                                codec_worker_rec_to_pb, codec_worker_rec_from_pb};
static const codec_record_t codec_rec_cluster = {"Cluster", &barque__cluster__descriptor,
                                                 codec_cluster_rec_to_pb,
                                                 codec_cluster_rec_from_pb};
static const codec_record_t codec_rec_backup = {"Backup", &barque__backup__descriptor,
                                                codec_backup_rec_to_pb, codec_backup_rec_from_pb};
static const codec_record_t codec_rec_wal_file = {"WalFile", &barque__wal_file__descriptor,
                                                  codec_wal_file_rec_to_pb,
                                                  codec_wal_file_rec_from_pb};

/* Encode the C value c as a record of kind r into a new malloc'd *buf. id, when not NULL,
 * names the record in the error message ("Job record 12"). */
static int codec_record_encode(const codec_record_t *r, const void *c, const uint64_t *id,
                               uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    codec_arena_t a = {0};
    codec_record_pb_t pb;
    bq_errbuf_t why;
    int rc = r->to_pb(&a, c, &pb, &why);
    if (rc == 0)
        rc = codec_pack(&pb.base, buf, len, &why);
    codec_arena_free(&a);
    if (rc < 0 && id)
        return bq_fail(e, rc, "could not encode %s record %" PRIu64 ": %s", r->name, *id,
                       why.msg);
    if (rc < 0)
        return bq_fail(e, rc, "could not encode %s record: %s", r->name, why.msg);
    return 0;
}

/* Decode a record of kind r into the C value c of size bytes; c is zeroed on failure. */
static int codec_record_decode(const codec_record_t *r, const uint8_t *buf, size_t len, void *c,
                               size_t size, bq_errbuf_t *e)
{
    ProtobufCMessage *msg;
    bq_errbuf_t why;
    memset(c, 0, size);
    int rc = codec_unpack(r->desc, buf, len, &msg, &why);
    if (rc == 0) {
        rc = r->from_pb(msg, c, &why);
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    if (rc < 0) {
        memset(c, 0, size);
        return bq_fail(e, rc, "could not decode %s record: %s", r->name, why.msg);
    }
    return 0;
}

int proto_job_encode(const bq_job_t *j, uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    return codec_record_encode(&codec_rec_job, j, &j->id, buf, len, e);
}

int proto_job_decode(const uint8_t *buf, size_t len, bq_job_t *j, bq_errbuf_t *e)
{
    return codec_record_decode(&codec_rec_job, buf, len, j, sizeof *j, e);
}

int proto_worker_encode(const bq_worker_t *w, uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    return codec_record_encode(&codec_rec_worker, w, NULL, buf, len, e);
}

int proto_worker_decode(const uint8_t *buf, size_t len, bq_worker_t *w, bq_errbuf_t *e)
{
    return codec_record_decode(&codec_rec_worker, buf, len, w, sizeof *w, e);
}

int proto_cluster_encode(const bq_cluster_t *c, uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    return codec_record_encode(&codec_rec_cluster, c, NULL, buf, len, e);
}

int proto_cluster_decode(const uint8_t *buf, size_t len, bq_cluster_t *c, bq_errbuf_t *e)
{
    return codec_record_decode(&codec_rec_cluster, buf, len, c, sizeof *c, e);
}

int proto_backup_encode(const bq_backup_t *b, uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    return codec_record_encode(&codec_rec_backup, b, NULL, buf, len, e);
}

int proto_backup_decode(const uint8_t *buf, size_t len, bq_backup_t *b, bq_errbuf_t *e)
{
    return codec_record_decode(&codec_rec_backup, buf, len, b, sizeof *b, e);
}

int proto_wal_file_encode(const bq_wal_file_t *w, uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    return codec_record_encode(&codec_rec_wal_file, w, NULL, buf, len, e);
}

int proto_wal_file_decode(const uint8_t *buf, size_t len, bq_wal_file_t *w, bq_errbuf_t *e)
{
    return codec_record_decode(&codec_rec_wal_file, buf, len, w, sizeof *w, e);
}

int proto_rtest_encode(const bq_restore_test_t *t, uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    return codec_record_encode(&codec_rec_rtest, t, &t->job_id, buf, len, e);
}

int proto_rtest_decode(const uint8_t *buf, size_t len, bq_restore_test_t *t, bq_errbuf_t *e)
{
    return codec_record_decode(&codec_rec_rtest, buf, len, t, sizeof *t, e);
}

/* ---- messages ------------------------------------------------------------------------ */

/* The wire name and body descriptor of each message type. */
static const struct {
    const char *name;
    const ProtobufCMessageDescriptor *body;
} codec_types[] = {
    [BQ_MSG_NONE] = {"NONE", NULL},
    [BQ_MSG_REGISTER] = {"REGISTER", &barque__worker_hello__descriptor},
    [BQ_MSG_HEARTBEAT] = {"HEARTBEAT", &barque__worker_hello__descriptor},
    [BQ_MSG_HEARTBEAT_ACK] = {"HEARTBEAT_ACK", &barque__heartbeat_ack__descriptor},
    [BQ_MSG_JOB_OFFER] = {"JOB_OFFER", &barque__job__descriptor},
    [BQ_MSG_JOB_ACCEPT] = {"JOB_ACCEPT", &barque__job_ref__descriptor},
    [BQ_MSG_JOB_PROGRESS] = {"JOB_PROGRESS", &barque__job_progress__descriptor},
    [BQ_MSG_JOB_RESULT] = {"JOB_RESULT", &barque__job_result__descriptor},
    [BQ_MSG_RESULT_ACK] = {"RESULT_ACK", &barque__result_ack__descriptor},
    [BQ_MSG_JOB_CANCEL] = {"JOB_CANCEL", &barque__job_ref__descriptor},
    [BQ_MSG_CLI_REQUEST] = {"CLI_REQUEST", &barque__cli_request__descriptor},
    [BQ_MSG_CLI_REPLY] = {"CLI_REPLY", &barque__cli_reply__descriptor},
    [BQ_MSG_ERROR] = {"ERROR", &barque__error__descriptor},
    [BQ_MSG_PEER_KEYS] = {"PEER_KEYS", &barque__peer_keys__descriptor},
    [BQ_MSG_DATA_REQUEST] = {"DATA_REQUEST", &barque__data_request__descriptor},
    [BQ_MSG_DATA_REPLY] = {"DATA_REPLY", &barque__data_reply__descriptor},
};

#define CODEC_NTYPES (sizeof codec_types / sizeof codec_types[0])

/* Nonzero for a type that can travel (NONE cannot). */
static int codec_type_known(int64_t type)
{
    return type > BQ_MSG_NONE && (uint64_t)type < CODEC_NTYPES;
}

void proto_result_clear(bq_msg_result_t *r)
{
    if (!r)
        return;
    bq_files_free(r->files, r->nfiles);
    r->files = NULL;
    r->nfiles = 0;
    free(r->inv_backups);
    free(r->inv_wal);
    r->inv_backups = NULL;
    r->inv_wal = NULL;
    r->ninv_backups = r->ninv_wal = 0;
}

void proto_result_move(bq_msg_result_t *dst, bq_msg_result_t *src)
{
    *dst = *src;
    src->files = NULL;
    src->nfiles = 0;
    src->inv_backups = NULL;
    src->inv_wal = NULL;
    src->ninv_backups = src->ninv_wal = 0;
}

void proto_msg_clear(bq_msg_t *m)
{
    if (!m)
        return;
    switch (m->type) {
    case BQ_MSG_REGISTER:
    case BQ_MSG_HEARTBEAT:
        free(m->u.hello.running);
        break;
    case BQ_MSG_JOB_OFFER:
        free(m->u.job);
        break;
    case BQ_MSG_JOB_RESULT:
        proto_result_clear(m->u.result);
        free(m->u.result);
        break;
    case BQ_MSG_CLI_REQUEST:
        free(m->u.cli_req.tablespaces);
        break;
    case BQ_MSG_CLI_REPLY:
        free(m->u.cli_reply.workers);
        free(m->u.cli_reply.clusters);
        free(m->u.cli_reply.jobs);
        free(m->u.cli_reply.sites);
        free(m->u.cli_reply.backups);
        free(m->u.cli_reply.timelines);
        free(m->u.cli_reply.schedule);
        free(m->u.cli_reply.job_ids);
        free(m->u.cli_reply.rtests);
        bq_files_free(m->u.cli_reply.files, m->u.cli_reply.nfiles);
        break;
    case BQ_MSG_PEER_KEYS:
        free(m->u.peer_keys.keys);
        free(m->u.peer_keys.operators);
        break;
    case BQ_MSG_DATA_REQUEST:
        free(m->u.data_req.ids);
        free(m->u.data_req.data);
        break;
    case BQ_MSG_DATA_REPLY:
        free(m->u.data_reply.data);
        free(m->u.data_reply.key_ids);
        break;
    default:
        break;
    }
    memset(m, 0, sizeof *m);
}

void proto_msg_error(bq_msg_t *m, uint64_t seq, int code, const char *fmt, ...)
{
    /* m may be uninitialised: zero it, never free what it seems to hold */
    memset(m, 0, sizeof *m);
    m->type = BQ_MSG_ERROR;
    m->seq = seq;
    m->u.error.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->u.error.message, sizeof m->u.error.message, fmt, ap);
    va_end(ap);
}

static int codec_rows_check(size_t n, const void *rows, const char *what, bq_errbuf_t *e)
{
    if (n > CODEC_REPLY_ROWS_MAX)
        return bq_fail(e, BQ_E_INVAL, "CliReply has %zu %s, more than the limit of %d", n, what,
                       CODEC_REPLY_ROWS_MAX);
    if (n && !rows)
        return bq_fail(e, BQ_E_INVAL, "CliReply has %zu %s but no array", n, what);
    return 0;
}

/* ---- PeerKeys, DataRequest, DataReply (the data port) --------------------------------- */

/* One list of PeerKey (keys or operators) to protobuf-c, from the arena. */
static int codec_peer_key_list_to_pb(codec_arena_t *a, const bq_peer_key_t *keys, size_t n,
                                     const char *what, Barque__PeerKey ***out, size_t *nout,
                                     bq_errbuf_t *e)
{
    int rc;
    if (n > BQ_PEER_KEYS_MAX)
        return bq_fail(e, BQ_E_INVAL, "PeerKeys has %zu %s, more than the limit of %d", n, what,
                       BQ_PEER_KEYS_MAX);
    if (n && !keys)
        return bq_fail(e, BQ_E_INVAL, "PeerKeys has %zu %s but no array", n, what);
    if (!n)
        return 0;
    Barque__PeerKey *ks = ARENA_ARRAY(a, n, Barque__PeerKey);
    Barque__PeerKey **ptrs = ARENA_ARRAY(a, n, Barque__PeerKey *);
    if (!ks || !ptrs)
        return codec_nomem(e);
    for (size_t i = 0; i < n; i++) {
        barque__peer_key__init(&ks[i]);
        if ((rc = codec_str_put(keys[i].name, sizeof keys[i].name, "PeerKey", "name",
                                &ks[i].name, e)) < 0 ||
            (rc = codec_str_put(keys[i].public_key, sizeof keys[i].public_key, "PeerKey",
                                "public_key", &ks[i].public_key, e)) < 0)
            return rc;
        ptrs[i] = &ks[i];
    }
    *out = ptrs;
    *nout = n;
    return 0;
}

static int codec_peer_keys_to_pb(codec_arena_t *a, const bq_msg_peer_keys_t *c,
                                 ProtobufCMessage **out, bq_errbuf_t *e)
{
    int rc;
    Barque__PeerKeys *pb = ARENA_NEW(a, Barque__PeerKeys);
    if (!pb)
        return codec_nomem(e);
    barque__peer_keys__init(pb);
    pb->version = c->version;
    if ((rc = codec_peer_key_list_to_pb(a, c->keys, c->nkeys, "keys", &pb->keys, &pb->n_keys,
                                        e)) < 0 ||
        (rc = codec_peer_key_list_to_pb(a, c->operators, c->noperators, "operators",
                                        &pb->operators, &pb->n_operators, e)) < 0)
        return rc;
    *out = &pb->base;
    return 0;
}

/* One list of PeerKey from protobuf-c into a new array (*out, *nout: as many as decoded). */
static int codec_peer_key_list_from_pb(Barque__PeerKey *const *pbk, size_t n, const char *what,
                                       bq_peer_key_t **out, size_t *nout, bq_errbuf_t *e)
{
    int rc;
    if (n > BQ_PEER_KEYS_MAX)
        return bq_fail(e, BQ_E_PROTO, "PeerKeys has %zu %s, more than the limit of %d", n, what,
                       BQ_PEER_KEYS_MAX);
    if (!n)
        return 0;
    if (!(*out = calloc(n, sizeof **out)))
        return codec_nomem(e);
    for (size_t i = 0; i < n; i++) {
        bq_peer_key_t *k = &(*out)[i];
        if ((rc = codec_str_get(k->name, sizeof k->name, pbk[i]->name, "PeerKey", "name", e)) < 0 ||
            (rc = codec_str_get(k->public_key, sizeof k->public_key, pbk[i]->public_key,
                                "PeerKey", "public_key", e)) < 0)
            return rc;
        if (strlen(k->public_key) != BQ_Z85_KEY_LEN)
            return bq_fail(e, BQ_E_PROTO, "PeerKey.public_key of %s is %zu characters, not %d",
                           k->name, strlen(k->public_key), BQ_Z85_KEY_LEN);
        *nout = i + 1;
    }
    return 0;
}

static int codec_peer_keys_from_pb(const Barque__PeerKeys *pb, bq_msg_peer_keys_t *c,
                                   bq_errbuf_t *e)
{
    int rc;
    c->version = pb->version;
    if ((rc = codec_peer_key_list_from_pb(pb->keys, pb->n_keys, "keys", &c->keys, &c->nkeys,
                                          e)) < 0)
        return rc;
    return codec_peer_key_list_from_pb(pb->operators, pb->n_operators, "operators",
                                       &c->operators, &c->noperators, e);
}

static int codec_data_req_to_pb(codec_arena_t *a, const bq_msg_data_req_t *c,
                                ProtobufCMessage **out, bq_errbuf_t *e)
{
    int rc;
    Barque__DataRequest *pb = ARENA_NEW(a, Barque__DataRequest);
    if (!pb)
        return codec_nomem(e);
    barque__data_request__init(pb);
    if ((rc = STR_PUT("DataRequest", op)) < 0 || (rc = STR_PUT("DataRequest", name)) < 0 ||
        (rc = STR_PUT("DataRequest", cluster)) < 0)
        return rc;
    pb->offset = c->offset;
    if (c->len > BQ_DATA_PIECE_MAX)
        return bq_fail(e, BQ_E_INVAL, "DataRequest carries %zu bytes, more than the limit of %u",
                       c->len, BQ_DATA_PIECE_MAX);
    if (c->len && !c->data)
        return bq_fail(e, BQ_E_INVAL, "DataRequest has %zu bytes but no buffer", c->len);
    pb->data.data = c->data;
    pb->data.len = c->len;
    pb->total = c->total;
    pb->last = !!c->last;
    pb->seg_size = c->seg_size;
    pb->packing = c->packing;
    pb->raw_size = c->raw_size;
    if (c->nids > BQ_DATA_IDS_MAX)
        return bq_fail(e, BQ_E_INVAL, "DataRequest has %zu ids, more than the limit of %d",
                       c->nids, BQ_DATA_IDS_MAX);
    if (c->nids && !c->ids)
        return bq_fail(e, BQ_E_INVAL, "DataRequest has %zu ids but no array", c->nids);
    if (c->nids) {
        ProtobufCBinaryData *ids = ARENA_ARRAY(a, c->nids, ProtobufCBinaryData);
        if (!ids)
            return codec_nomem(e);
        for (size_t i = 0; i < c->nids; i++) {
            ids[i].data = (uint8_t *)c->ids[i];
            ids[i].len = BQ_CHUNK_ID_BYTES;
        }
        pb->n_ids = c->nids;
        pb->ids = ids;
    }
    *out = &pb->base;
    return 0;
}

static int codec_data_req_from_pb(const Barque__DataRequest *pb, bq_msg_data_req_t *c,
                                  bq_errbuf_t *e)
{
    int rc;
    if ((rc = STR_GET("DataRequest", op)) < 0 || (rc = STR_GET("DataRequest", name)) < 0 ||
        (rc = STR_GET("DataRequest", cluster)) < 0)
        return rc;
    c->offset = pb->offset;
    if (pb->data.len > BQ_DATA_PIECE_MAX)
        return bq_fail(e, BQ_E_PROTO, "DataRequest carries %zu bytes, more than the limit of %u",
                       pb->data.len, BQ_DATA_PIECE_MAX);
    if (pb->data.len &&
        (pb->offset > UINT64_MAX - pb->data.len || pb->offset + pb->data.len > pb->total))
        return bq_fail(e, BQ_E_PROTO, "DataRequest's %zu bytes at offset %" PRIu64 " run past "
                       "its total of %" PRIu64, pb->data.len, pb->offset, pb->total);
    c->total = pb->total;
    c->last = !!pb->last;
    c->seg_size = pb->seg_size;
    if (pb->packing != BQ_PACK_NONE && pb->packing != BQ_PACK_WAL)
        return bq_fail(e, BQ_E_PROTO, "DataRequest.packing %u is not known", pb->packing);
    c->packing = pb->packing;
    c->raw_size = pb->raw_size;
    if (pb->data.len) {
        if (!(c->data = malloc(pb->data.len)))
            return codec_nomem(e);
        memcpy(c->data, pb->data.data, pb->data.len);
        c->len = pb->data.len;
    }
    if (pb->n_ids > BQ_DATA_IDS_MAX)
        return bq_fail(e, BQ_E_PROTO, "DataRequest has %zu ids, more than the limit of %d",
                       pb->n_ids, BQ_DATA_IDS_MAX);
    if (!pb->n_ids)
        return 0;
    if (!(c->ids = calloc(pb->n_ids, sizeof *c->ids)))
        return codec_nomem(e);
    for (size_t i = 0; i < pb->n_ids; i++) {
        if (pb->ids[i].len != BQ_CHUNK_ID_BYTES)
            return bq_fail(e, BQ_E_PROTO, "DataRequest.ids[%zu] is %zu bytes, not %d", i,
                           pb->ids[i].len, BQ_CHUNK_ID_BYTES);
        memcpy(c->ids[i], pb->ids[i].data, BQ_CHUNK_ID_BYTES);
    }
    c->nids = pb->n_ids;
    return 0;
}

static int codec_data_reply_to_pb(codec_arena_t *a, const bq_msg_data_reply_t *c,
                                  ProtobufCMessage **out, bq_errbuf_t *e)
{
    int rc;
    Barque__DataReply *pb = ARENA_NEW(a, Barque__DataReply);
    if (!pb)
        return codec_nomem(e);
    barque__data_reply__init(pb);
    if ((rc = STR_PUT("DataReply", error)) < 0)
        return rc;
    pb->code = c->code;
    if (c->len > BQ_DATA_PIECE_MAX)
        return bq_fail(e, BQ_E_INVAL, "DataReply carries %zu bytes, more than the limit of %u",
                       c->len, BQ_DATA_PIECE_MAX);
    if (c->len && !c->data)
        return bq_fail(e, BQ_E_INVAL, "DataReply has %zu bytes but no buffer", c->len);
    pb->data.data = c->data;
    pb->data.len = c->len;
    pb->offset = c->offset;
    pb->total = c->total;
    if (c->has_id) {
        pb->id.data = (uint8_t *)c->id;
        pb->id.len = BQ_CHUNK_ID_BYTES;
    }
    pb->index = c->index;
    pb->last = !!c->last;
    pb->exists = !!c->exists;
    pb->partial = !!c->partial;
    if (c->packing > BQ_PACK_WAL)
        return bq_fail(e, BQ_E_INVAL, "DataReply.packing has unknown value %u", c->packing);
    pb->packing = c->packing;
    pb->raw_size = c->raw_size;
    if (c->nkey_ids > BQ_DATA_KEYS_MAX)
        return bq_fail(e, BQ_E_INVAL, "DataReply has %zu key ids, more than the limit of %d",
                       c->nkey_ids, BQ_DATA_KEYS_MAX);
    if (c->nkey_ids && !c->key_ids)
        return bq_fail(e, BQ_E_INVAL, "DataReply has %zu key ids but no array", c->nkey_ids);
    pb->n_key_ids = c->nkey_ids;
    pb->key_ids = c->key_ids;
    *out = &pb->base;
    return 0;
}

static int codec_data_reply_from_pb(const Barque__DataReply *pb, bq_msg_data_reply_t *c,
                                    bq_errbuf_t *e)
{
    int rc;
    if ((rc = STR_GET("DataReply", error)) < 0)
        return rc;
    c->code = pb->code;
    if (c->code > 0)
        return bq_fail(e, BQ_E_PROTO, "DataReply.code is %d, not 0 or negative", c->code);
    if (pb->data.len > BQ_DATA_PIECE_MAX)
        return bq_fail(e, BQ_E_PROTO, "DataReply carries %zu bytes, more than the limit of %u",
                       pb->data.len, BQ_DATA_PIECE_MAX);
    if (pb->offset > UINT64_MAX - pb->data.len || pb->offset + pb->data.len > pb->total)
        return bq_fail(e, BQ_E_PROTO, "DataReply's %zu bytes at offset %" PRIu64 " run past its "
                       "total of %" PRIu64, pb->data.len, pb->offset, pb->total);
    if (pb->id.len != 0 && pb->id.len != BQ_CHUNK_ID_BYTES)
        return bq_fail(e, BQ_E_PROTO, "DataReply.id is %zu bytes, not %d", pb->id.len,
                       BQ_CHUNK_ID_BYTES);
    if (pb->n_key_ids > BQ_DATA_KEYS_MAX)
        return bq_fail(e, BQ_E_PROTO, "DataReply has %zu key ids, more than the limit of %d",
                       pb->n_key_ids, BQ_DATA_KEYS_MAX);
    c->offset = pb->offset;
    c->total = pb->total;
    c->index = pb->index;
    c->last = !!pb->last;
    c->exists = !!pb->exists;
    c->partial = !!pb->partial;
    if (pb->packing > BQ_PACK_WAL)
        return bq_fail(e, BQ_E_PROTO, "DataReply.packing has unknown value %u", pb->packing);
    c->packing = pb->packing;
    c->raw_size = pb->raw_size;
    if ((c->has_id = pb->id.len == BQ_CHUNK_ID_BYTES))
        memcpy(c->id, pb->id.data, BQ_CHUNK_ID_BYTES);
    if (pb->data.len) {
        if (!(c->data = malloc(pb->data.len)))
            return codec_nomem(e);
        memcpy(c->data, pb->data.data, pb->data.len);
        c->len = pb->data.len;
    }
    if (pb->n_key_ids) {
        if (!(c->key_ids = malloc(pb->n_key_ids * sizeof *c->key_ids)))
            return codec_nomem(e);
        memcpy(c->key_ids, pb->key_ids, pb->n_key_ids * sizeof *c->key_ids);
        c->nkey_ids = pb->n_key_ids;
    }
    return 0;
}

/* Build the protobuf-c body of m in a. */
static int codec_body_to_pb(codec_arena_t *a, const bq_msg_t *m, ProtobufCMessage **out,
                            bq_errbuf_t *e)
{
    int rc;
    switch (m->type) {
    case BQ_MSG_REGISTER:
    case BQ_MSG_HEARTBEAT: {
        const bq_msg_hello_t *c = &m->u.hello;
        Barque__WorkerHello *pb = ARENA_NEW(a, Barque__WorkerHello);
        Barque__Worker *w = ARENA_NEW(a, Barque__Worker);
        if (!pb || !w)
            return codec_nomem(e);
        barque__worker_hello__init(pb);
        if ((rc = codec_worker_to_pb(&c->worker, w, e)) < 0)
            return rc;
        pb->worker = w;
        if (c->nrunning > BQ_RUNNING_MAX)
            return bq_fail(e, BQ_E_INVAL, "WorkerHello has %zu running jobs, more than the limit of %d",
                           c->nrunning, BQ_RUNNING_MAX);
        if (c->nrunning && !c->running)
            return bq_fail(e, BQ_E_INVAL, "WorkerHello has %zu running jobs but no array",
                           c->nrunning);
        if (c->nrunning) {
            Barque__JobRef *refs = ARENA_ARRAY(a, c->nrunning, Barque__JobRef);
            Barque__JobRef **ptrs = ARENA_ARRAY(a, c->nrunning, Barque__JobRef *);
            if (!refs || !ptrs)
                return codec_nomem(e);
            for (size_t i = 0; i < c->nrunning; i++) {
                barque__job_ref__init(&refs[i]);
                refs[i].job_id = c->running[i].job_id;
                refs[i].attempt = c->running[i].attempt;
                ptrs[i] = &refs[i];
            }
            pb->n_running = c->nrunning;
            pb->running = ptrs;
        }
        pb->peers_version = c->peers_version;
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_HEARTBEAT_ACK: {
        Barque__HeartbeatAck *pb = ARENA_NEW(a, Barque__HeartbeatAck);
        if (!pb)
            return codec_nomem(e);
        barque__heartbeat_ack__init(pb);
        pb->heartbeat_interval_ms = m->u.hb_ack.heartbeat_interval_ms;
        pb->lease_ms = m->u.hb_ack.lease_ms;
        pb->peers_version = m->u.hb_ack.peers_version;
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_JOB_OFFER: {
        if (!m->u.job)
            return bq_fail(e, BQ_E_INVAL, "it has no job");
        Barque__Job *pb = ARENA_NEW(a, Barque__Job);
        if (!pb)
            return codec_nomem(e);
        if ((rc = codec_job_to_pb(a, m->u.job, pb, e)) < 0)
            return rc;
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_JOB_ACCEPT:
    case BQ_MSG_JOB_CANCEL: {
        Barque__JobRef *pb = ARENA_NEW(a, Barque__JobRef);
        if (!pb)
            return codec_nomem(e);
        barque__job_ref__init(pb);
        pb->job_id = m->u.ref.job_id;
        pb->attempt = m->u.ref.attempt;
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_JOB_PROGRESS: {
        const bq_msg_progress_t *c = &m->u.progress;
        Barque__JobProgress *pb = ARENA_NEW(a, Barque__JobProgress);
        if (!pb)
            return codec_nomem(e);
        barque__job_progress__init(pb);
        if ((rc = STR_PUT("JobProgress", message)) < 0 ||
            (rc = STR_PUT("JobProgress", wal_file)) < 0 ||
            (rc = codec_wal_name_check(c->wal_file, "JobProgress", "wal_file", BQ_E_INVAL, e)) < 0)
            return rc;
        pb->job_id = c->job_id;
        pb->attempt = c->attempt;
        pb->done = c->done;
        pb->total = c->total;
        pb->wal_size = c->wal_size;
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_JOB_RESULT: {
        const bq_msg_result_t *c = m->u.result;
        if (!c)
            return bq_fail(e, BQ_E_INVAL, "it has no result");
        Barque__JobResult *pb = ARENA_NEW(a, Barque__JobResult);
        if (!pb)
            return codec_nomem(e);
        barque__job_result__init(pb);
        if ((rc = STR_PUT("JobResult", error)) < 0)
            return rc;
        pb->job_id = c->job_id;
        pb->attempt = c->attempt;
        pb->ok = !!c->ok;
        pb->retryable = !!c->retryable;
        if (c->has_check) {
            Barque__CheckResult *check = ARENA_NEW(a, Barque__CheckResult);
            if (!check)
                return codec_nomem(e);
            if ((rc = codec_check_to_pb(a, &c->check, check, e)) < 0)
                return rc;
            pb->check = check;
        }
        if (c->has_backup) {
            Barque__Backup *backup = ARENA_NEW(a, Barque__Backup);
            if (!backup)
                return codec_nomem(e);
            if ((rc = codec_backup_to_pb(a, &c->backup, backup, e)) < 0)
                return rc;
            pb->backup = backup;
        }
        if (c->has_restore) {
            Barque__RestoreResult *rr = ARENA_NEW(a, Barque__RestoreResult);
            if (!rr)
                return codec_nomem(e);
            if ((rc = codec_restore_to_pb(&c->restore, rr, e)) < 0)
                return rc;
            pb->restore = rr;
        }
        if (c->has_delete) {
            Barque__DeleteResult *dr = ARENA_NEW(a, Barque__DeleteResult);
            if (!dr)
                return codec_nomem(e);
            if ((rc = codec_delete_to_pb(&c->del, dr, e)) < 0)
                return rc;
            pb->deletion = dr;
        }
        if ((rc = codec_files_to_pb(a, c->files, c->nfiles, "JobResult", &pb->files,
                                    &pb->n_files, e)) < 0)
            return rc;
        pb->files_total = c->files_total;
        if ((rc = STR_PUT("JobResult", wal_file)) < 0 || (rc = STR_PUT("JobResult", hook_note)) < 0)
            return rc;
        if (c->has_prune) {
            Barque__WalPruneResult *pr = ARENA_NEW(a, Barque__WalPruneResult);
            if (!pr)
                return codec_nomem(e);
            barque__wal_prune_result__init(pr);
            pr->files_removed = c->prune.files_removed;
            pr->bytes_removed = c->prune.bytes_removed;
            pb->prune = pr;
        }
        if (c->ninv_backups + c->ninv_wal > BQ_INVENTORY_PAGE)
            return bq_fail(e, BQ_E_INVAL, "JobResult has %zu inventory items, more than %d",
                           c->ninv_backups + c->ninv_wal, BQ_INVENTORY_PAGE);
        ROWS_TO_PB(Barque__Backup, c->ninv_backups, pb->inventory_backups, pb->n_inventory_backups,
                   codec_backup_to_pb(a, &c->inv_backups[i_], &rows_[i_], e));
        ROWS_TO_PB(Barque__WalFile, c->ninv_wal, pb->inventory_wal, pb->n_inventory_wal,
                   codec_wal_file_to_pb(a, &c->inv_wal[i_], &rows_[i_], e));
        pb->inventory_total = c->inv_total;
        pb->inventory_orphans = c->inv_orphans;
        if (c->has_rtest) {
            Barque__RestoreTest *rt = ARENA_NEW(a, Barque__RestoreTest);
            if (!rt)
                return codec_nomem(e);
            if ((rc = codec_rtest_to_pb(a, &c->rtest, rt, e)) < 0)
                return rc;
            pb->rtest = rt;
        }
        if (c->has_replicate && (rc = codec_rep_to_pb(a, &c->rep, &pb->replicate, e)) < 0)
            return rc;
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_RESULT_ACK: {
        const bq_msg_result_ack_t *c = &m->u.result_ack;
        Barque__ResultAck *pb = ARENA_NEW(a, Barque__ResultAck);
        if (!pb)
            return codec_nomem(e);
        barque__result_ack__init(pb);
        if ((rc = STR_PUT("ResultAck", reason)) < 0)
            return rc;
        pb->job_id = c->job_id;
        pb->attempt = c->attempt;
        pb->accepted = !!c->accepted;
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_CLI_REQUEST: {
        const bq_msg_cli_request_t *c = &m->u.cli_req;
        Barque__CliRequest *pb = ARENA_NEW(a, Barque__CliRequest);
        if (!pb)
            return codec_nomem(e);
        barque__cli_request__init(pb);
        if ((rc = STR_PUT("CliRequest", verb)) < 0 || (rc = STR_PUT("CliRequest", cluster)) < 0 ||
            (rc = STR_PUT("CliRequest", site)) < 0 ||
            (rc = STR_PUT("CliRequest", backup_id)) < 0 ||
            (rc = STR_PUT("CliRequest", dest)) < 0 || (rc = STR_PUT("CliRequest", worker)) < 0 ||
            (rc = STR_PUT("CliRequest", owner)) < 0 ||
            (rc = STR_PUT("CliRequest", checkpoint)) < 0 ||
            (rc = STR_PUT("CliRequest", wal_file)) < 0 || (rc = STR_PUT("CliRequest", keep)) < 0 ||
            (rc = STR_PUT("CliRequest", from_site)) < 0 ||
            (rc = STR_PUT("CliRequest", prefer_site)) < 0)
            return rc;
        pb->force = !!c->force;
        pb->wal_size = c->wal_size;
        if ((rc = codec_recovery_to_pb(a, &c->recovery, &pb->recovery, e)) < 0)
            return rc;
        pb->job_id = c->job_id;
        pb->all = !!c->all;
        pb->sleep_ms = c->sleep_ms;
        pb->count = c->count;
        pb->delta = !!c->delta;
        pb->offset = c->offset;
        if (c->ntablespaces > BQ_TABLESPACES_MAX)
            return bq_fail(e, BQ_E_INVAL, "CliRequest has %zu tablespaces, more than the limit of %d",
                           c->ntablespaces, BQ_TABLESPACES_MAX);
        if (c->ntablespaces && !c->tablespaces)
            return bq_fail(e, BQ_E_INVAL, "CliRequest has %zu tablespaces but no array",
                           c->ntablespaces);
        if (c->ntablespaces) {
            char **ts = ARENA_ARRAY(a, c->ntablespaces, char *);
            if (!ts)
                return codec_nomem(e);
            for (size_t i = 0; i < c->ntablespaces; i++)
                if ((rc = codec_str_put(c->tablespaces[i], sizeof c->tablespaces[i], "CliRequest",
                                        "tablespaces", &ts[i], e)) < 0)
                    return rc;
            pb->n_tablespaces = c->ntablespaces;
            pb->tablespaces = ts;
        }
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_CLI_REPLY: {
        const bq_msg_cli_reply_t *c = &m->u.cli_reply;
        Barque__CliReply *pb = ARENA_NEW(a, Barque__CliReply);
        if (!pb)
            return codec_nomem(e);
        barque__cli_reply__init(pb);
        if ((rc = STR_PUT("CliReply", error)) < 0 ||
            (rc = codec_rows_check(c->nworkers, c->workers, "workers", e)) < 0 ||
            (rc = codec_rows_check(c->nclusters, c->clusters, "clusters", e)) < 0 ||
            (rc = codec_rows_check(c->njobs, c->jobs, "jobs", e)) < 0 ||
            (rc = codec_rows_check(c->nsites, c->sites, "sites", e)) < 0 ||
            (rc = codec_rows_check(c->nbackups, c->backups, "backups", e)) < 0 ||
            (rc = codec_rows_check(c->ntimelines, c->timelines, "timelines", e)) < 0)
            return rc;
        pb->code = c->code;
        pb->found = !!c->found;
        pb->job_id = c->job_id;
        pb->jobs_queued = c->jobs_queued;
        pb->jobs_running = c->jobs_running;
        ROWS_TO_PB(Barque__Worker, c->nworkers, pb->workers, pb->n_workers,
                   codec_worker_to_pb(&c->workers[i_], &rows_[i_], e));
        ROWS_TO_PB(Barque__Cluster, c->nclusters, pb->clusters, pb->n_clusters,
                   codec_cluster_to_pb(a, &c->clusters[i_], &rows_[i_], e));
        ROWS_TO_PB(Barque__Job, c->njobs, pb->jobs, pb->n_jobs,
                   codec_job_to_pb(a, &c->jobs[i_], &rows_[i_], e));
        if (c->nsites) {
            Barque__Site *rows = ARENA_ARRAY(a, c->nsites, Barque__Site);
            Barque__Site **ptrs = ARENA_ARRAY(a, c->nsites, Barque__Site *);
            if (!rows || !ptrs)
                return codec_nomem(e);
            for (size_t i = 0; i < c->nsites; i++) {
                barque__site__init(&rows[i]);
                if ((rc = codec_str_put(c->sites[i], sizeof c->sites[i], "Site", "name",
                                        &rows[i].name, e)) < 0)
                    return rc;
                ptrs[i] = &rows[i];
            }
            pb->n_sites = c->nsites;
            pb->sites = ptrs;
        }
        ROWS_TO_PB(Barque__Backup, c->nbackups, pb->backups, pb->n_backups,
                   codec_backup_to_pb(a, &c->backups[i_], &rows_[i_], e));
        ROWS_TO_PB(Barque__WalTimeline, c->ntimelines, pb->timelines, pb->n_timelines,
                   codec_wal_timeline_to_pb(a, &c->timelines[i_], &rows_[i_], e));
        if ((rc = codec_files_to_pb(a, c->files, c->nfiles, "CliReply", &pb->files,
                                    &pb->n_files, e)) < 0)
            return rc;
        pb->files_total = c->files_total;
        pb->files_offset = c->files_offset;
        if ((rc = codec_rows_check(c->nschedule, c->schedule, "schedule", e)) < 0 ||
            (rc = codec_rows_check(c->njob_ids, c->job_ids, "job_ids", e)) < 0)
            return rc;
        ROWS_TO_PB(Barque__ScheduleRow, c->nschedule, pb->schedule, pb->n_schedule,
                   codec_schedule_to_pb(&c->schedule[i_], &rows_[i_], e));
        if ((rc = codec_rows_check(c->nrtests, c->rtests, "restore_tests", e)) < 0)
            return rc;
        ROWS_TO_PB(Barque__RestoreTest, c->nrtests, pb->restore_tests, pb->n_restore_tests,
                   codec_rtest_to_pb(a, &c->rtests[i_], &rows_[i_], e));
        if (c->has_fleet) {
            Barque__CheckResult *fleet = ARENA_NEW(a, Barque__CheckResult);
            if (!fleet)
                return codec_nomem(e);
            if ((rc = codec_check_to_pb(a, &c->fleet, fleet, e)) < 0)
                return rc;
            pb->fleet = fleet;
        }
        if (c->njob_ids) {
            pb->job_ids = ARENA_ARRAY(a, c->njob_ids, uint64_t);
            if (!pb->job_ids)
                return codec_nomem(e);
            memcpy(pb->job_ids, c->job_ids, c->njob_ids * sizeof *c->job_ids);
            pb->n_job_ids = c->njob_ids;
        }
        *out = &pb->base;
        return 0;
    }
    case BQ_MSG_PEER_KEYS:
        return codec_peer_keys_to_pb(a, &m->u.peer_keys, out, e);
    case BQ_MSG_DATA_REQUEST:
        return codec_data_req_to_pb(a, &m->u.data_req, out, e);
    case BQ_MSG_DATA_REPLY:
        return codec_data_reply_to_pb(a, &m->u.data_reply, out, e);
    case BQ_MSG_ERROR: {
        const bq_msg_error_t *c = &m->u.error;
        Barque__Error *pb = ARENA_NEW(a, Barque__Error);
        if (!pb)
            return codec_nomem(e);
        barque__error__init(pb);
        if ((rc = STR_PUT("Error", message)) < 0)
            return rc;
        pb->code = c->code;
        *out = &pb->base;
        return 0;
    }
    default:
        return bq_fail(e, BQ_E_MSGTYPE, "unknown message type %d", (int)m->type);
    }
}

int proto_msg_encode(const bq_msg_t *m, uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    codec_arena_t a = {0};
    ProtobufCMessage *body = NULL;
    bq_errbuf_t why;
    *buf = NULL;
    *len = 0;
    int rc = codec_body_to_pb(&a, m, &body, &why);
    if (rc == 0) {
        Barque__Envelope env = BARQUE__ENVELOPE__INIT;
        env.version = BQ_PROTO_VERSION;
        env.type = (Barque__MsgType)m->type;
        env.seq = m->seq;
        size_t n = protobuf_c_message_get_packed_size(body);
        if (n > BQ_MSG_MAX) {
            rc = bq_fail(&why, BQ_E_TOOBIG, "its body would be %zu bytes, over the %u-byte limit",
                         n, BQ_MSG_MAX);
        } else if (n) {
            env.body.data = ARENA_ARRAY(&a, n, uint8_t);
            if (!env.body.data)
                rc = codec_nomem(&why);
            else
                env.body.len = protobuf_c_message_pack(body, env.body.data);
        }
        if (rc == 0)
            rc = codec_pack(&env.base, buf, len, &why);
    }
    codec_arena_free(&a);
    if (rc < 0) {
        const char *name = codec_type_known(m->type) ? codec_types[m->type].name : "a";
        return bq_fail(e, rc, "could not encode %s message seq %" PRIu64 ": %s", name, m->seq,
                       why.msg);
    }
    return 0;
}

static int codec_rows_limit(size_t n, const char *what, bq_errbuf_t *e)
{
    if (n > CODEC_REPLY_ROWS_MAX)
        return bq_fail(e, BQ_E_PROTO, "CliReply has %zu %s, more than the limit of %d", n, what,
                       CODEC_REPLY_ROWS_MAX);
    return 0;
}

/* Copy an unpacked body into m (whose type is set and union zeroed); heap parts are
 * attached to m as soon as they are allocated so that proto_msg_clear frees them. */
static int codec_body_from_pb(const ProtobufCMessage *msg, bq_msg_t *m, bq_errbuf_t *e)
{
    int rc;
    switch (m->type) {
    case BQ_MSG_REGISTER:
    case BQ_MSG_HEARTBEAT: {
        const Barque__WorkerHello *pb = (const Barque__WorkerHello *)msg;
        bq_msg_hello_t *c = &m->u.hello;
        if (!pb->worker)
            return bq_fail(e, BQ_E_PROTO, "WorkerHello.worker is missing");
        if ((rc = codec_worker_from_pb(pb->worker, &c->worker, e)) < 0)
            return rc;
        if (pb->n_running > BQ_RUNNING_MAX)
            return bq_fail(e, BQ_E_PROTO, "WorkerHello has %zu running jobs, more than the limit of %d",
                           pb->n_running, BQ_RUNNING_MAX);
        if (pb->n_running) {
            c->running = calloc(pb->n_running, sizeof *c->running);
            if (!c->running)
                return codec_nomem(e);
            for (size_t i = 0; i < pb->n_running; i++) {
                c->running[i].job_id = pb->running[i]->job_id;
                c->running[i].attempt = pb->running[i]->attempt;
            }
            c->nrunning = pb->n_running;
        }
        c->peers_version = pb->peers_version;
        return 0;
    }
    case BQ_MSG_HEARTBEAT_ACK: {
        const Barque__HeartbeatAck *pb = (const Barque__HeartbeatAck *)msg;
        m->u.hb_ack.heartbeat_interval_ms = pb->heartbeat_interval_ms;
        m->u.hb_ack.lease_ms = pb->lease_ms;
        m->u.hb_ack.peers_version = pb->peers_version;
        return 0;
    }
    case BQ_MSG_PEER_KEYS:
        return codec_peer_keys_from_pb((const Barque__PeerKeys *)msg, &m->u.peer_keys, e);
    case BQ_MSG_DATA_REQUEST:
        return codec_data_req_from_pb((const Barque__DataRequest *)msg, &m->u.data_req, e);
    case BQ_MSG_DATA_REPLY:
        return codec_data_reply_from_pb((const Barque__DataReply *)msg, &m->u.data_reply, e);
    case BQ_MSG_JOB_OFFER:
        if (!(m->u.job = malloc(sizeof *m->u.job)))
            return codec_nomem(e);
        return codec_job_from_pb((const Barque__Job *)msg, m->u.job, e);
    case BQ_MSG_JOB_ACCEPT:
    case BQ_MSG_JOB_CANCEL: {
        const Barque__JobRef *pb = (const Barque__JobRef *)msg;
        m->u.ref.job_id = pb->job_id;
        m->u.ref.attempt = pb->attempt;
        return 0;
    }
    case BQ_MSG_JOB_PROGRESS: {
        const Barque__JobProgress *pb = (const Barque__JobProgress *)msg;
        bq_msg_progress_t *c = &m->u.progress;
        if ((rc = STR_GET("JobProgress", message)) < 0 ||
            (rc = STR_GET("JobProgress", wal_file)) < 0 ||
            (rc = codec_wal_name_check(c->wal_file, "JobProgress", "wal_file", BQ_E_PROTO, e)) < 0)
            return rc;
        c->job_id = pb->job_id;
        c->attempt = pb->attempt;
        c->done = pb->done;
        c->total = pb->total;
        c->wal_size = pb->wal_size;
        return 0;
    }
    case BQ_MSG_JOB_RESULT: {
        const Barque__JobResult *pb = (const Barque__JobResult *)msg;
        bq_msg_result_t *c = calloc(1, sizeof *c);
        if (!(m->u.result = c))
            return codec_nomem(e);
        if ((rc = STR_GET("JobResult", error)) < 0)
            return rc;
        c->job_id = pb->job_id;
        c->attempt = pb->attempt;
        c->ok = !!pb->ok;
        c->retryable = !!pb->retryable;
        if (pb->check) {
            if ((rc = codec_check_from_pb(pb->check, &c->check, e)) < 0)
                return rc;
            c->has_check = 1;
        }
        if (pb->backup) {
            if ((rc = codec_backup_from_pb(pb->backup, &c->backup, e)) < 0)
                return rc;
            c->has_backup = 1;
        }
        if (pb->restore) {
            if ((rc = codec_restore_from_pb(pb->restore, &c->restore, e)) < 0)
                return rc;
            c->has_restore = 1;
        }
        if (pb->deletion) {
            if ((rc = codec_delete_from_pb(pb->deletion, &c->del, e)) < 0)
                return rc;
            c->has_delete = 1;
        }
        c->files_total = pb->files_total;
        if ((rc = STR_GET("JobResult", wal_file)) < 0 || (rc = STR_GET("JobResult", hook_note)) < 0)
            return rc;
        if (pb->prune) {
            c->has_prune = 1;
            c->prune.files_removed = pb->prune->files_removed;
            c->prune.bytes_removed = pb->prune->bytes_removed;
        }
        if (c->wal_file[0] && !bq_wal_name_valid(c->wal_file))
            return bq_fail(e, BQ_E_PROTO, "JobResult.wal_file is not a WAL file name");
        if (pb->n_inventory_backups + pb->n_inventory_wal > BQ_INVENTORY_PAGE)
            return bq_fail(e, BQ_E_PROTO, "JobResult has %zu inventory items, more than %d",
                           pb->n_inventory_backups + pb->n_inventory_wal, BQ_INVENTORY_PAGE);
        if ((pb->n_inventory_backups &&
             !(c->inv_backups = calloc(pb->n_inventory_backups, sizeof *c->inv_backups))) ||
            (pb->n_inventory_wal && !(c->inv_wal = calloc(pb->n_inventory_wal, sizeof *c->inv_wal))))
            return codec_nomem(e);
        for (; c->ninv_backups < pb->n_inventory_backups; c->ninv_backups++)
            if ((rc = codec_backup_from_pb(pb->inventory_backups[c->ninv_backups],
                                           &c->inv_backups[c->ninv_backups], e)) < 0)
                return rc;
        for (; c->ninv_wal < pb->n_inventory_wal; c->ninv_wal++)
            if ((rc = codec_wal_file_from_pb(pb->inventory_wal[c->ninv_wal],
                                             &c->inv_wal[c->ninv_wal], e)) < 0)
                return rc;
        c->inv_total = pb->inventory_total;
        c->inv_orphans = pb->inventory_orphans;
        if (pb->rtest) {
            if ((rc = codec_rtest_from_pb(pb->rtest, &c->rtest, e)) < 0)
                return rc;
            c->has_rtest = 1;
        }
        if (pb->replicate) {
            if ((rc = codec_rep_from_pb(pb->replicate, &c->rep, e)) < 0)
                return rc;
            c->has_replicate = 1;
        }
        return codec_files_from_pb(pb->files, pb->n_files, "JobResult", &c->files, &c->nfiles, e);
    }
    case BQ_MSG_RESULT_ACK: {
        const Barque__ResultAck *pb = (const Barque__ResultAck *)msg;
        bq_msg_result_ack_t *c = &m->u.result_ack;
        if ((rc = STR_GET("ResultAck", reason)) < 0)
            return rc;
        c->job_id = pb->job_id;
        c->attempt = pb->attempt;
        c->accepted = !!pb->accepted;
        return 0;
    }
    case BQ_MSG_CLI_REQUEST: {
        const Barque__CliRequest *pb = (const Barque__CliRequest *)msg;
        bq_msg_cli_request_t *c = &m->u.cli_req;
        if ((rc = STR_GET("CliRequest", verb)) < 0 || (rc = STR_GET("CliRequest", cluster)) < 0 ||
            (rc = STR_GET("CliRequest", site)) < 0 ||
            (rc = STR_GET("CliRequest", backup_id)) < 0 ||
            (rc = STR_GET("CliRequest", dest)) < 0 || (rc = STR_GET("CliRequest", worker)) < 0 ||
            (rc = STR_GET("CliRequest", owner)) < 0 ||
            (rc = STR_GET("CliRequest", checkpoint)) < 0 ||
            (rc = STR_GET("CliRequest", wal_file)) < 0 || (rc = STR_GET("CliRequest", keep)) < 0 ||
            (rc = STR_GET("CliRequest", from_site)) < 0 ||
            (rc = STR_GET("CliRequest", prefer_site)) < 0)
            return rc;
        if (c->wal_file[0] && !bq_wal_name_valid(c->wal_file))
            return bq_fail(e, BQ_E_PROTO, "CliRequest.wal_file is not a WAL file name");
        c->force = !!pb->force;
        c->wal_size = pb->wal_size;
        if ((rc = codec_recovery_from_pb(pb->recovery, &c->recovery, e)) < 0)
            return rc;
        c->job_id = pb->job_id;
        c->all = !!pb->all;
        c->sleep_ms = pb->sleep_ms;
        c->count = pb->count;
        c->delta = !!pb->delta;
        c->offset = pb->offset;
        if (pb->n_tablespaces > BQ_TABLESPACES_MAX)
            return bq_fail(e, BQ_E_PROTO, "CliRequest has %zu tablespaces, more than the limit of %d",
                           pb->n_tablespaces, BQ_TABLESPACES_MAX);
        if (pb->n_tablespaces &&
            !(c->tablespaces = calloc(pb->n_tablespaces, sizeof *c->tablespaces)))
            return codec_nomem(e);
        for (; c->ntablespaces < pb->n_tablespaces; c->ntablespaces++)
            if ((rc = codec_str_get(c->tablespaces[c->ntablespaces],
                                    sizeof c->tablespaces[c->ntablespaces],
                                    pb->tablespaces[c->ntablespaces], "CliRequest", "tablespaces",
                                    e)) < 0)
                return rc;
        return 0;
    }
    case BQ_MSG_CLI_REPLY: {
        const Barque__CliReply *pb = (const Barque__CliReply *)msg;
        bq_msg_cli_reply_t *c = &m->u.cli_reply;
        if ((rc = STR_GET("CliReply", error)) < 0)
            return rc;
        c->code = pb->code;
        c->found = !!pb->found;
        c->job_id = pb->job_id;
        c->jobs_queued = pb->jobs_queued;
        c->jobs_running = pb->jobs_running;
        if ((rc = codec_rows_limit(pb->n_workers, "workers", e)) < 0 ||
            (rc = codec_rows_limit(pb->n_clusters, "clusters", e)) < 0 ||
            (rc = codec_rows_limit(pb->n_jobs, "jobs", e)) < 0 ||
            (rc = codec_rows_limit(pb->n_sites, "sites", e)) < 0 ||
            (rc = codec_rows_limit(pb->n_backups, "backups", e)) < 0 ||
            (rc = codec_rows_limit(pb->n_timelines, "timelines", e)) < 0)
            return rc;
        if ((pb->n_workers && !(c->workers = calloc(pb->n_workers, sizeof *c->workers))) ||
            (pb->n_clusters && !(c->clusters = calloc(pb->n_clusters, sizeof *c->clusters))) ||
            (pb->n_jobs && !(c->jobs = calloc(pb->n_jobs, sizeof *c->jobs))) ||
            (pb->n_sites && !(c->sites = calloc(pb->n_sites, sizeof *c->sites))) ||
            (pb->n_backups && !(c->backups = calloc(pb->n_backups, sizeof *c->backups))) ||
            (pb->n_timelines &&
             !(c->timelines = calloc(pb->n_timelines, sizeof *c->timelines))))
            return codec_nomem(e);
        for (; c->nworkers < pb->n_workers; c->nworkers++)
            if ((rc = codec_worker_from_pb(pb->workers[c->nworkers], &c->workers[c->nworkers],
                                           e)) < 0)
                return rc;
        for (; c->nclusters < pb->n_clusters; c->nclusters++)
            if ((rc = codec_cluster_from_pb(pb->clusters[c->nclusters],
                                            &c->clusters[c->nclusters], e)) < 0)
                return rc;
        for (; c->njobs < pb->n_jobs; c->njobs++)
            if ((rc = codec_job_from_pb(pb->jobs[c->njobs], &c->jobs[c->njobs], e)) < 0)
                return rc;
        for (; c->nsites < pb->n_sites; c->nsites++)
            if ((rc = codec_str_get(c->sites[c->nsites], sizeof c->sites[c->nsites],
                                    pb->sites[c->nsites]->name, "Site", "name", e)) < 0)
                return rc;
        for (; c->nbackups < pb->n_backups; c->nbackups++)
            if ((rc = codec_backup_from_pb(pb->backups[c->nbackups], &c->backups[c->nbackups],
                                           e)) < 0)
                return rc;
        for (; c->ntimelines < pb->n_timelines; c->ntimelines++)
            if ((rc = codec_wal_timeline_from_pb(pb->timelines[c->ntimelines],
                                                 &c->timelines[c->ntimelines], e)) < 0)
                return rc;
        c->files_total = pb->files_total;
        c->files_offset = pb->files_offset;
        if ((rc = codec_rows_limit(pb->n_schedule, "schedule", e)) < 0 ||
            (rc = codec_rows_limit(pb->n_job_ids, "job_ids", e)) < 0)
            return rc;
        if ((pb->n_schedule && !(c->schedule = calloc(pb->n_schedule, sizeof *c->schedule))) ||
            (pb->n_job_ids && !(c->job_ids = calloc(pb->n_job_ids, sizeof *c->job_ids))))
            return codec_nomem(e);
        for (; c->nschedule < pb->n_schedule; c->nschedule++)
            if ((rc = codec_schedule_from_pb(pb->schedule[c->nschedule],
                                             &c->schedule[c->nschedule], e)) < 0)
                return rc;
        if ((rc = codec_rows_limit(pb->n_restore_tests, "restore_tests", e)) < 0)
            return rc;
        if (pb->n_restore_tests &&
            !(c->rtests = calloc(pb->n_restore_tests, sizeof *c->rtests)))
            return codec_nomem(e);
        for (; c->nrtests < pb->n_restore_tests; c->nrtests++)
            if ((rc = codec_rtest_from_pb(pb->restore_tests[c->nrtests], &c->rtests[c->nrtests],
                                          e)) < 0)
                return rc;
        if (pb->n_job_ids)
            memcpy(c->job_ids, pb->job_ids, pb->n_job_ids * sizeof *c->job_ids);
        c->njob_ids = pb->n_job_ids;
        if (pb->fleet) {
            if ((rc = codec_check_from_pb(pb->fleet, &c->fleet, e)) < 0)
                return rc;
            c->has_fleet = 1;
        }
        return codec_files_from_pb(pb->files, pb->n_files, "CliReply", &c->files, &c->nfiles, e);
    }
    case BQ_MSG_ERROR: {
        const Barque__Error *pb = (const Barque__Error *)msg;
        bq_msg_error_t *c = &m->u.error;
        if ((rc = STR_GET("Error", message)) < 0)
            return rc;
        c->code = pb->code;
        return 0;
    }
    default:
        return bq_fail(e, BQ_E_MSGTYPE, "unknown message type %d", (int)m->type);
    }
}

int proto_msg_decode(const uint8_t *buf, size_t len, bq_msg_t *m, bq_errbuf_t *e)
{
    memset(m, 0, sizeof *m);
    if (len == 0)
        return bq_fail(e, BQ_E_PROTO, "could not decode message: it is empty");

    ProtobufCMessage *msg;
    bq_errbuf_t why;
    int rc = codec_unpack(&barque__envelope__descriptor, buf, len, &msg, &why);
    if (rc < 0)
        return bq_fail(e, rc, "could not decode message: %s", why.msg);
    const Barque__Envelope *env = (const Barque__Envelope *)msg;
    uint64_t seq = env->seq;
    if (env->version != BQ_PROTO_VERSION) {
        rc = bq_fail(e, BQ_E_VERSION,
                     "could not decode message seq %" PRIu64
                     ": unsupported protocol version %" PRIu32 " (this side speaks %d)",
                     seq, env->version, BQ_PROTO_VERSION);
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc;
    }
    if (!codec_type_known((int64_t)env->type)) {
        rc = bq_fail(e, BQ_E_MSGTYPE, "could not decode message seq %" PRIu64
                     ": unknown message type %d", seq, (int)env->type);
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc;
    }

    m->type = (bq_msg_type_t)env->type;
    m->seq = seq;
    ProtobufCMessage *body;
    rc = codec_unpack(codec_types[m->type].body, env->body.data, env->body.len, &body, &why);
    if (rc == 0) {
        rc = codec_body_from_pb(body, m, &why);
        protobuf_c_message_free_unpacked(body, NULL);
    }
    protobuf_c_message_free_unpacked(msg, NULL);
    if (rc < 0) {
        const char *name = codec_types[m->type].name;
        proto_msg_clear(m);
        return bq_fail(e, rc, "could not decode %s message seq %" PRIu64 ": %s", name, seq,
                       why.msg);
    }
    return 0;
}
