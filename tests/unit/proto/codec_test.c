/* proto/codec.c: every message type and catalog record round-trips with realistic values
 * (strings at their longest, arrays full), and a table of malformed inputs each fails with
 * its exact error code and message. Bad envelopes are crafted with protobuf-c directly,
 * since the public API cannot express them. Run under ASan for leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proto.h"

#include "barque.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------- */

/* Fill a char array with its longest string: cap-1 bytes of a repeating pattern. */
#define FILL_MAX(arr, seed) fill_max((arr), sizeof(arr), (seed))
static void fill_max(char *dst, size_t cap, char seed)
{
    for (size_t i = 0; i + 1 < cap; i++)
        dst[i] = (char)('a' + (seed + i) % 26);
    dst[cap - 1] = '\0';
}

static bq_check_result_t *check_full(bq_check_result_t *c)
{
    memset(c, 0, sizeof *c);
    FILL_MAX(c->server_version, 1);
    c->system_identifier = 7321345678901234567ULL;
    snprintf(c->wal_level, sizeof c->wal_level, "replica");
    FILL_MAX(c->archive_mode, 2);
    c->max_wal_senders = 10;
    /* 8 slot names of 63 bytes (PostgreSQL's longest) joined by ',' = 511 bytes */
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        if (i)
            c->slots[off++] = ',';
        for (int k = 0; k < 63; k++)
            c->slots[off++] = (char)('a' + (i + k) % 26);
    }
    c->slots[off] = '\0';
    assert_int_equal(strlen(c->slots), BQ_SLOTS_MAX - 1);
    c->can_replicate = 1;
    c->receiver_lag = INT64_MAX - 1;
    c->receiver_lag_known = 1;
    c->nitems = BQ_CHECK_ITEMS_MAX;
    for (size_t i = 0; i < c->nitems; i++) {
        FILL_MAX(c->items[i].name, (char)i);
        c->items[i].ok = (int)(i % 2);
        /* a failed item decodes with its severity: CRITICAL unless said (WARNING every 3rd) */
        c->items[i].severity = c->items[i].ok ? BQ_SEV_OK : i % 3 == 0 ? BQ_SEV_WARNING : BQ_SEV_CRITICAL;
        FILL_MAX(c->items[i].detail, (char)(i + 3));
    }
    return c;
}

static char *str_of(size_t n);

static void job_full(bq_job_t *j)
{
    memset(j, 0, sizeof *j);
    j->id = 18446744073709551615ULL;
    j->type = BQ_JOB_CHECK;
    j->state = BQ_JOB_CANCELLED;
    FILL_MAX(j->cluster, 1);
    FILL_MAX(j->site, 2);
    FILL_MAX(j->worker, 3);
    j->attempt = 3;
    j->max_attempts = 4294967295u;
    j->created_ms = 1700000000000;
    j->updated_ms = 1700000001000;
    j->started_ms = 1700000002000;
    j->finished_ms = 1700000003000;
    j->next_attempt_ms = -1;
    j->progress_done = 12345;
    j->progress_total = 99999;
    FILL_MAX(j->error, 4);
    FILL_MAX(j->conninfo, 5);
    j->sleep_ms = INT64_MIN;
    j->has_check = 1;
    check_full(&j->check);
    j->cancel_requested = 1;
    FILL_MAX(j->backup_id, 6);
    FILL_MAX(j->checkpoint, 7);
    FILL_MAX(j->dest, 8);
    j->offset = UINT64_MAX;
    j->has_delete = 1;
    j->del.was_absent = 1;
    j->del.gc_run = 1;
    FILL_MAX(j->del.gc_note, 9);
    j->del.chunks_removed = UINT64_MAX;
    j->del.bytes_reclaimed = 1ULL << 40;
    snprintf(j->delta_from, sizeof j->delta_from, "20991231T235959");
    /* issue 6: hooks, wal-prune, keep */
    FILL_MAX(j->pre_script, 10);
    FILL_MAX(j->post_script, 11);
    FILL_MAX(j->hook_note, 12);
    j->hook_timeout_ms = INT64_MAX;
    j->hook_retries = UINT32_MAX;
    j->hook_retry_sleep_ms = 1;
    snprintf(j->wal_keep_from, sizeof j->wal_keep_from, "0000000200000001000000FF");
    snprintf(j->wal_keep_ranges, sizeof j->wal_keep_ranges,
             "000000010000000000000001-000000010000000000000003,"
             "000000010000000000000007-000000010000000000000007");
    j->has_prune = 1;
    j->prune.files_removed = UINT64_MAX;
    j->prune.bytes_removed = 1;
    j->keep = 2;
    /* issue 8: geo copies */
    j->bandwidth_limit = UINT64_MAX;
    snprintf(j->wal_names, sizeof j->wal_names,
             "000000010000000000000001,00000002.history,000000010000000000000002.partial");
    j->has_replicate = 1;
    FILL_MAX(j->rep.peer_worker, 13);
    j->rep.chunks_total = UINT64_MAX;
    j->rep.chunks_present = 1;
    j->rep.chunks_fetched = 2;
    j->rep.bytes_fetched = 3;
    j->rep.chunks_refetched = 4;
    j->rep.file_bytes = 5;
    j->rep.duration_ms = INT64_MIN;
    j->rep.streams = UINT32_MAX;
    j->rep.wal_files = 6;
    j->rep.wal_bytes = 7;
    j->rep.wal_missing = 8;
    /* a restore's figures, with the store that failed it */
    j->has_restore = 1;
    j->restore.files_written = UINT64_MAX;
    j->restore.bytes = 9;
    j->restore.duration_ms = INT64_MAX;
    FILL_MAX(j->restore.peer_worker, 14);
    j->restore.peer_bytes = 10;
    FILL_MAX(j->restore.source_failed, 15);
}

static void backup_full(bq_backup_t *b, char seed)
{
    memset(b, 0, sizeof *b);
    FILL_MAX(b->id, seed);
    FILL_MAX(b->cluster, (char)(seed + 1));
    b->state = BQ_BACKUP_WAITING_FOR_WALS;
    b->job_id = UINT64_MAX;
    b->attempt = 4294967295u;
    FILL_MAX(b->worker, (char)(seed + 2));
    FILL_MAX(b->site, (char)(seed + 3));
    /* 4 worker names of 63 bytes joined by ',' = 255 bytes, the longest */
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        if (i)
            b->stores[off++] = ',';
        for (int k = 0; k < 63; k++)
            b->stores[off++] = (char)('a' + (seed + i + k) % 26);
    }
    b->stores[off] = '\0';
    assert_int_equal(strlen(b->stores), BQ_STORES_MAX - 1);
    b->system_identifier = 7321345678901234567ULL;
    b->pg_version = 150004;
    b->timeline = 4294967295u;
    b->start_lsn = 0x16B374D848ULL;
    b->stop_lsn = UINT64_MAX;
    b->start_ms = 1700000000000;
    b->stop_ms = INT64_MAX;
    FILL_MAX(b->wal_begin, (char)(seed + 4));
    FILL_MAX(b->wal_end, (char)(seed + 5));
    b->data_bytes = 1ULL << 40;
    b->stored_bytes = UINT64_MAX;
    b->dedup_bytes = 12345;
    b->files = 987654;
    b->duration_ms = INT64_MIN;
    b->checksum_failures = 3;
    FILL_MAX(b->checksum_detail, (char)(seed + 6));
    FILL_MAX(b->error, (char)(seed + 7));
    b->keep = 1;
    FILL_MAX(b->retention, (char)(seed + 8));
    b->ncopies = BQ_COPIES_MAX;
    for (size_t i = 0; i < BQ_COPIES_MAX; i++) {
        bq_copy_t *c = &b->copies[i];
        FILL_MAX(c->site, (char)(seed + 9 + (char)i));
        c->state = (bq_copy_state_t)(BQ_COPY_QUEUED + (int)i);
        FILL_MAX(c->worker, (char)(seed + 10));
        FILL_MAX(c->source, (char)(seed + 11));
        FILL_MAX(c->error, (char)(seed + 12));
        c->job_id = UINT64_MAX - i;
        c->queued_ms = INT64_MIN;
        c->done_ms = INT64_MAX;
        c->duration_ms = 1;
        c->chunks_total = 2;
        c->chunks_present = 3;
        c->chunks_fetched = 4;
        c->bytes_fetched = UINT64_MAX;
        c->chunks_refetched = 5;
        c->attempts = UINT32_MAX;
        c->counted = UINT64_MAX - i;
    }
}

static void worker_full(bq_worker_t *w, char seed)
{
    memset(w, 0, sizeof *w);
    FILL_MAX(w->name, seed);
    FILL_MAX(w->site, (char)(seed + 1));
    FILL_MAX(w->version, (char)(seed + 2));
    w->store_free = 1ULL << 40;
    w->store_total = UINT64_MAX;
    w->running = 2;
    w->max_jobs = 8;
    w->registered_ms = 1700000000000;
    w->last_seen_ms = INT64_MAX;
    w->online = 1;
}

static void cluster_full(bq_cluster_t *c, char seed)
{
    memset(c, 0, sizeof *c);
    FILL_MAX(c->name, seed);
    FILL_MAX(c->site, (char)(seed + 1));
    FILL_MAX(c->conninfo, (char)(seed + 2));
    c->system_identifier = 7321345678901234567ULL + (uint64_t)seed;
    c->nreplicas = BQ_COPIES_MAX;
    for (size_t i = 0; i < BQ_COPIES_MAX; i++) {
        bq_replica_status_t *r = &c->replicas[i];
        FILL_MAX(r->site, (char)(seed + 3 + (char)i));
        FILL_MAX(r->wal_last, 'A');
        FILL_MAX(r->last_copy_backup, (char)(seed + 4));
        FILL_MAX(r->error, (char)(seed + 5));
        r->copies_done = UINT32_MAX;
        r->copies_behind = 1;
        r->copies_failed = 2;
        r->wal_missing = UINT64_MAX;
        r->wal_lag_bytes = 3;
        r->wal_last_ms = INT64_MIN;
        r->last_copy_ms = INT64_MAX;
    }
}

/* Encode in, decode into out, and check that out encodes to the same bytes. */
static void roundtrip(const bq_msg_t *in, bq_msg_t *out)
{
    bq_errbuf_t e = {{0}};
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    assert_int_equal(proto_msg_encode(in, &b1, &n1, &e), 0);
    assert_true(n1 <= BQ_MSG_MAX);
    int rc = proto_msg_decode(b1, n1, out, &e);
    if (rc != 0)
        fail_msg("decode: %s", e.msg);
    assert_int_equal(out->type, in->type);
    assert_true(out->seq == in->seq);
    assert_int_equal(proto_msg_encode(out, &b2, &n2, &e), 0);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
}

static int is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* ---- round trips --------------------------------------------------------------------- */

static void test_hello(void **state)
{
    bq_msg_type_t types[] = {BQ_MSG_REGISTER, BQ_MSG_HEARTBEAT};
    for (size_t t = 0; t < 2; t++) {
        bq_msg_t in = {0}, out;
        in.type = types[t];
        in.seq = 42 + t;
        worker_full(&in.u.hello.worker, 'w');
        in.u.hello.nrunning = t == 0 ? BQ_RUNNING_MAX : 0; /* full, then none */
        bq_job_ref_t *refs = calloc(BQ_RUNNING_MAX, sizeof *refs);
        assert_non_null(refs);
        for (size_t i = 0; i < BQ_RUNNING_MAX; i++)
            refs[i] = (bq_job_ref_t){.job_id = 1000 + i, .attempt = (uint32_t)(i % 5)};
        in.u.hello.running = refs;
        roundtrip(&in, &out);
        assert_memory_equal(&out.u.hello.worker, &in.u.hello.worker, sizeof(bq_worker_t));
        assert_int_equal(out.u.hello.nrunning, in.u.hello.nrunning);
        if (in.u.hello.nrunning)
            assert_memory_equal(out.u.hello.running, refs, BQ_RUNNING_MAX * sizeof *refs);
        else
            assert_null(out.u.hello.running);
        proto_msg_clear(&out);
        assert_true(is_zero(&out, sizeof out));
        proto_msg_clear(&in); /* frees refs */
    }
}

static void test_hb_ack(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_HEARTBEAT_ACK, .seq = UINT64_MAX}, out;
    in.u.hb_ack.heartbeat_interval_ms = 5000;
    in.u.hb_ack.lease_ms = 30000;
    roundtrip(&in, &out);
    assert_true(out.u.hb_ack.heartbeat_interval_ms == 5000);
    assert_true(out.u.hb_ack.lease_ms == 30000);
    proto_msg_clear(&out);
}

static void test_peer_keys(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_PEER_KEYS, .seq = 9}, out;
    in.u.peer_keys.version = UINT64_MAX;
    in.u.peer_keys.nkeys = 3;
    in.u.peer_keys.keys = calloc(3, sizeof *in.u.peer_keys.keys);
    assert_non_null(in.u.peer_keys.keys);
    for (size_t i = 0; i < 3; i++) {
        FILL_MAX(in.u.peer_keys.keys[i].name, (char)('a' + i));
        FILL_MAX(in.u.peer_keys.keys[i].public_key, (char)('K' + i));
    }
    roundtrip(&in, &out);
    assert_true(out.u.peer_keys.version == UINT64_MAX);
    assert_int_equal(out.u.peer_keys.nkeys, 3);
    assert_memory_equal(out.u.peer_keys.keys, in.u.peer_keys.keys, 3 * sizeof *in.u.peer_keys.keys);
    proto_msg_clear(&out);
    assert_true(is_zero(&out, sizeof out));
    proto_msg_clear(&in);
}

static void test_data_msgs(void **state)
{
    uint8_t ids[BQ_DATA_IDS_MAX][BQ_CHUNK_ID_BYTES];
    for (size_t i = 0; i < BQ_DATA_IDS_MAX; i++)
        memset(ids[i], (int)i, BQ_CHUNK_ID_BYTES);
    bq_msg_t in = {.type = BQ_MSG_DATA_REQUEST, .seq = 5}, out;
    snprintf(in.u.data_req.op, sizeof in.u.data_req.op, "chunks");
    FILL_MAX(in.u.data_req.name, 'n');
    in.u.data_req.offset = 1ULL << 40;
    in.u.data_req.ids = ids;
    in.u.data_req.nids = BQ_DATA_IDS_MAX;
    roundtrip(&in, &out);
    assert_string_equal(out.u.data_req.op, "chunks");
    assert_string_equal(out.u.data_req.name, in.u.data_req.name);
    assert_true(out.u.data_req.offset == 1ULL << 40);
    assert_int_equal(out.u.data_req.nids, BQ_DATA_IDS_MAX);
    assert_memory_equal(out.u.data_req.ids, ids, sizeof ids);
    proto_msg_clear(&out);

    uint8_t *piece = malloc(BQ_DATA_PIECE_MAX);
    assert_non_null(piece);
    memset(piece, 0x5a, BQ_DATA_PIECE_MAX);
    uint32_t keys[3] = {1, 0x2a, UINT32_MAX};
    bq_msg_t r = {.type = BQ_MSG_DATA_REPLY, .seq = 5};
    r.u.data_reply.data = piece;
    r.u.data_reply.len = BQ_DATA_PIECE_MAX;
    r.u.data_reply.offset = 3;
    r.u.data_reply.total = 3 + BQ_DATA_PIECE_MAX + 7;
    r.u.data_reply.has_id = 1;
    memset(r.u.data_reply.id, 0xee, BQ_CHUNK_ID_BYTES);
    r.u.data_reply.index = 255;
    r.u.data_reply.last = 1;
    r.u.data_reply.key_ids = keys;
    r.u.data_reply.nkey_ids = 3;
    roundtrip(&r, &out);
    const bq_msg_data_reply_t *d = &out.u.data_reply;
    assert_int_equal(d->len, BQ_DATA_PIECE_MAX);
    assert_memory_equal(d->data, piece, BQ_DATA_PIECE_MAX);
    assert_true(d->offset == 3 && d->total == 3 + BQ_DATA_PIECE_MAX + 7);
    assert_true(d->has_id && d->index == 255 && d->last);
    assert_memory_equal(d->id, r.u.data_reply.id, BQ_CHUNK_ID_BYTES);
    assert_int_equal(d->nkey_ids, 3);
    assert_memory_equal(d->key_ids, keys, sizeof keys);
    proto_msg_clear(&out);
    bq_msg_t err = {.type = BQ_MSG_DATA_REPLY, .seq = 6};
    err.u.data_reply.code = BQ_E_NOTFOUND;
    snprintf(err.u.data_reply.error, sizeof err.u.data_reply.error, "no such file");
    roundtrip(&err, &out);
    assert_int_equal(out.u.data_reply.code, BQ_E_NOTFOUND);
    assert_string_equal(out.u.data_reply.error, "no such file");
    assert_null(out.u.data_reply.data);
    proto_msg_clear(&out);
    /* over the piece limit: refused on encode, never truncated */
    r.u.data_reply.len = BQ_DATA_PIECE_MAX + 1;
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t e = {{0}};
    assert_int_equal(proto_msg_encode(&r, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "more than the limit"));
    free(piece);
}

static void test_job_offer(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_JOB_OFFER, .seq = 7}, out;
    in.u.job = malloc(sizeof *in.u.job);
    assert_non_null(in.u.job);
    job_full(in.u.job);
    roundtrip(&in, &out);
    assert_non_null(out.u.job);
    assert_memory_equal(out.u.job, in.u.job, sizeof(bq_job_t));
    assert_int_equal(strlen(out.u.job->check.slots), BQ_SLOTS_MAX - 1);
    proto_msg_clear(&out);

    /* a sleep job without a check result */
    memset(in.u.job, 0, sizeof *in.u.job);
    in.u.job->id = 9;
    in.u.job->type = BQ_JOB_SLEEP;
    in.u.job->state = BQ_JOB_QUEUED;
    in.u.job->sleep_ms = 250;
    snprintf(in.u.job->cluster, sizeof in.u.job->cluster, "main");
    roundtrip(&in, &out);
    assert_memory_equal(out.u.job, in.u.job, sizeof(bq_job_t));
    assert_int_equal(out.u.job->has_check, 0);
    proto_msg_clear(&out);

    /* a backup job and a restore job */
    in.u.job->type = BQ_JOB_BACKUP;
    snprintf(in.u.job->backup_id, sizeof in.u.job->backup_id, "20240229T235959");
    snprintf(in.u.job->checkpoint, sizeof in.u.job->checkpoint, "spread");
    roundtrip(&in, &out);
    assert_memory_equal(out.u.job, in.u.job, sizeof(bq_job_t));
    assert_string_equal(out.u.job->delta_from, "");
    proto_msg_clear(&out);
    /* ... with a base for deltas */
    snprintf(in.u.job->delta_from, sizeof in.u.job->delta_from, "20240228T120000");
    roundtrip(&in, &out);
    assert_memory_equal(out.u.job, in.u.job, sizeof(bq_job_t));
    assert_string_equal(out.u.job->delta_from, "20240228T120000");
    proto_msg_clear(&out);
    memset(in.u.job->delta_from, 0, sizeof in.u.job->delta_from);
    in.u.job->type = BQ_JOB_RESTORE;
    FILL_MAX(in.u.job->dest, 1);
    roundtrip(&in, &out);
    assert_memory_equal(out.u.job, in.u.job, sizeof(bq_job_t));
    assert_int_equal(strlen(out.u.job->dest), BQ_DEST_MAX - 1);
    proto_msg_clear(&out);
    proto_msg_clear(&in);
}

static void test_job_ref(void **state)
{
    bq_msg_type_t types[] = {BQ_MSG_JOB_ACCEPT, BQ_MSG_JOB_CANCEL};
    for (size_t t = 0; t < 2; t++) {
        bq_msg_t in = {.type = types[t], .seq = 3}, out;
        in.u.ref.job_id = 77;
        in.u.ref.attempt = 2;
        roundtrip(&in, &out);
        assert_true(out.u.ref.job_id == 77);
        assert_int_equal(out.u.ref.attempt, 2);
        proto_msg_clear(&out);
    }
}

static void test_progress(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_JOB_PROGRESS, .seq = 11}, out;
    in.u.progress.job_id = 5;
    in.u.progress.attempt = 1;
    in.u.progress.done = 1ULL << 33;
    in.u.progress.total = 1ULL << 34;
    FILL_MAX(in.u.progress.message, 0);
    roundtrip(&in, &out);
    assert_memory_equal(&out.u.progress, &in.u.progress, sizeof in.u.progress);
    proto_msg_clear(&out);

    /* a wal-stream's report of an archived file: each kind of name, the longest first */
    const char *names[] = {"00000002000000A1000000FF.partial", "000000010000000000000001",
                           "0000000A.history"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        memset(in.u.progress.wal_file, 0, sizeof in.u.progress.wal_file);
        snprintf(in.u.progress.wal_file, sizeof in.u.progress.wal_file, "%s", names[i]);
        in.u.progress.wal_size = UINT64_MAX - i;
        roundtrip(&in, &out);
        assert_memory_equal(&out.u.progress, &in.u.progress, sizeof in.u.progress);
        proto_msg_clear(&out);
    }
    /* what decode would refuse is refused on encode too */
    snprintf(in.u.progress.wal_file, sizeof in.u.progress.wal_file, "pg_wal/000000010000000000000001");
    bq_errbuf_t e = {{0}};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(proto_msg_encode(&in, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "JobProgress.wal_file \"pg_wal/000000010000000000000001\" is "
                                  "not a WAL file name"));
    assert_null(buf);
}

/* bq_wal_name_valid: the names a wal-stream job archives, and nothing else. */
static void test_wal_names(void **state)
{
    static const struct {
        const char *name;
        int ok;
    } cases[] = {
        {"000000010000000000000001", 1},
        {"FFFFFFFFFFFFFFFFFFFFFFFF", 1},
        {"000000010000000A000000FF.partial", 1},
        {"00000002.history", 1},
        {"DEADBEEF.history", 1},
        {"", 0},
        {"000000000000000000000001", 0},          /* timeline 0 */
        {"00000000.history", 0},
        {"00000000000000000000000A.partial", 0},
        {"00000001000000000000000a", 0},          /* lowercase */
        {"0000000100000000000000001", 0},         /* 25 digits */
        {"00000001000000000000001", 0},           /* 23 */
        {"00000001000000000000000G", 0},
        {"000000010000000000000001.partia", 0},
        {"000000010000000000000001.partial2", 0},
        {"000000010000000000000001.history", 0},
        {"0000001.history", 0},
        {"00000001.partial", 0},
        {"000000010000000000000001.00000028.backup", 0}, /* the store takes these; wal-stream never makes them */
        {"00000001.HISTORY", 0},
        {"../00000001.history", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (bq_wal_name_valid(cases[i].name) != cases[i].ok)
            fail_msg("bq_wal_name_valid(\"%s\") is %d, want %d", cases[i].name,
                     bq_wal_name_valid(cases[i].name), cases[i].ok);
    assert_int_equal(bq_wal_name_valid(NULL), 0);
}

static void test_result(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_JOB_RESULT, .seq = 12}, out;
    in.u.result = calloc(1, sizeof *in.u.result);
    assert_non_null(in.u.result);
    in.u.result->job_id = 5;
    in.u.result->attempt = 2;
    in.u.result->ok = 1;
    in.u.result->retryable = 1;
    FILL_MAX(in.u.result->error, 9);
    in.u.result->has_check = 1;
    check_full(&in.u.result->check);
    roundtrip(&in, &out);
    assert_memory_equal(out.u.result, in.u.result, sizeof *in.u.result);
    proto_msg_clear(&out);

    /* failure without a check result; no slots at all */
    memset(in.u.result, 0, sizeof *in.u.result);
    in.u.result->job_id = 6;
    in.u.result->retryable = 1;
    snprintf(in.u.result->error, sizeof in.u.result->error,
             "could not connect to cluster main: connection refused");
    roundtrip(&in, &out);
    assert_memory_equal(out.u.result, in.u.result, sizeof *in.u.result);
    proto_msg_clear(&out);

    /* an inventory page (owned arrays), a wal-prune result, a hook note */
    memset(in.u.result, 0, sizeof *in.u.result);
    in.u.result->job_id = 7;
    in.u.result->ok = 1;
    in.u.result->ninv_backups = 2;
    in.u.result->inv_backups = calloc(2, sizeof *in.u.result->inv_backups);
    in.u.result->ninv_wal = 1;
    in.u.result->inv_wal = calloc(1, sizeof *in.u.result->inv_wal);
    assert_true(in.u.result->inv_backups && in.u.result->inv_wal);
    backup_full(&in.u.result->inv_backups[0], 3);
    snprintf(in.u.result->inv_backups[1].id, sizeof in.u.result->inv_backups[1].id, "20260101T000000");
    bq_wal_file_t *wf = &in.u.result->inv_wal[0];
    snprintf(wf->cluster, sizeof wf->cluster, "db1");
    snprintf(wf->name, sizeof wf->name, "000000010000000000000001.partial");
    snprintf(wf->stores, sizeof wf->stores, "east-1");
    wf->size = 16777216;
    wf->archived_ms = 1764633600000;
    in.u.result->inv_total = UINT64_MAX;
    in.u.result->inv_orphans = 3;
    in.u.result->has_prune = 1;
    in.u.result->prune.files_removed = 12;
    FILL_MAX(in.u.result->hook_note, 5);
    roundtrip(&in, &out);
    assert_int_equal(out.u.result->ninv_backups, 2);
    assert_memory_equal(out.u.result->inv_backups, in.u.result->inv_backups,
                        2 * sizeof *in.u.result->inv_backups);
    assert_int_equal(out.u.result->ninv_wal, 1);
    assert_memory_equal(out.u.result->inv_wal, wf, sizeof *wf);
    assert_true(out.u.result->inv_total == UINT64_MAX && out.u.result->inv_orphans == 3);
    assert_true(out.u.result->has_prune && out.u.result->prune.files_removed == 12);
    assert_string_equal(out.u.result->hook_note, in.u.result->hook_note);
    proto_msg_clear(&out);
    proto_result_clear(in.u.result);
    assert_null(in.u.result->inv_backups);

    /* one slot only */
    memset(in.u.result, 0, sizeof *in.u.result);
    in.u.result->job_id = 6;
    in.u.result->has_check = 1;
    snprintf(in.u.result->check.slots, sizeof in.u.result->check.slots, "barque_main");
    roundtrip(&in, &out);
    assert_string_equal(out.u.result->check.slots, "barque_main");
    proto_msg_clear(&out);

    /* a backup job's result: every figure at its widest */
    memset(in.u.result, 0, sizeof *in.u.result);
    in.u.result->job_id = 7;
    in.u.result->attempt = 1;
    in.u.result->ok = 1;
    in.u.result->has_backup = 1;
    backup_full(&in.u.result->backup, 3);
    roundtrip(&in, &out);
    assert_memory_equal(out.u.result, in.u.result, sizeof *in.u.result);
    assert_int_equal(out.u.result->has_check, 0);
    proto_msg_clear(&out);

    /* one store, and none */
    memset(in.u.result->backup.stores, 0, sizeof in.u.result->backup.stores);
    snprintf(in.u.result->backup.stores, sizeof in.u.result->backup.stores, "east-1");
    roundtrip(&in, &out);
    assert_memory_equal(out.u.result, in.u.result, sizeof *in.u.result);
    assert_string_equal(out.u.result->backup.stores, "east-1");
    proto_msg_clear(&out);
    memset(in.u.result->backup.stores, 0, sizeof in.u.result->backup.stores);
    in.u.result->backup.state = BQ_BACKUP_NONE;
    roundtrip(&in, &out);
    assert_memory_equal(out.u.result, in.u.result, sizeof *in.u.result);
    assert_int_equal(out.u.result->has_backup, 1);
    proto_msg_clear(&out);

    /* a list-files page at its largest: BQ_FILES_PAGE_MAX files whose paths add up to
     * BQ_FILES_PAGE_BYTES (what the worker may send) fits the wire's limit */
    memset(in.u.result, 0, sizeof *in.u.result);
    in.u.result->job_id = 8;
    in.u.result->attempt = 1;
    in.u.result->ok = 1;
    in.u.result->files_total = UINT64_MAX;
    in.u.result->nfiles = BQ_FILES_PAGE_MAX;
    in.u.result->files = calloc(BQ_FILES_PAGE_MAX, sizeof *in.u.result->files);
    assert_non_null(in.u.result->files);
    size_t each = BQ_FILES_PAGE_BYTES / BQ_FILES_PAGE_MAX;
    for (size_t i = 0; i < BQ_FILES_PAGE_MAX; i++) {
        bq_file_entry_t *f = &in.u.result->files[i];
        f->path = malloc(each + 1);
        assert_non_null(f->path);
        memset(f->path, 'a' + (int)(i % 26), each);
        f->path[each] = '\0';
        f->mode = 0170777u;
        f->size = UINT64_MAX - i;
        f->mtime = INT64_MIN + (int64_t)i;
    }
    free(in.u.result->files[1].path); /* and one at the longest a path may be */
    in.u.result->files[1].path = str_of(BQ_FILE_PATH_MAX - 1);
    in.u.result->has_delete = 1;
    in.u.result->del.gc_run = 1;
    FILL_MAX(in.u.result->del.gc_note, 2);
    in.u.result->del.chunks_removed = 3;
    in.u.result->del.bytes_reclaimed = UINT64_MAX;
    roundtrip(&in, &out);
    bq_msg_result_t *o = out.u.result;
    assert_int_equal(o->nfiles, BQ_FILES_PAGE_MAX);
    assert_true(o->files_total == UINT64_MAX);
    for (size_t i = 0; i < BQ_FILES_PAGE_MAX; i++) {
        assert_string_equal(o->files[i].path, in.u.result->files[i].path);
        assert_int_equal(o->files[i].mode, 0170777u);
        assert_true(o->files[i].size == UINT64_MAX - i);
        assert_true(o->files[i].mtime == INT64_MIN + (int64_t)i);
    }
    assert_int_equal(o->has_delete, 1);
    assert_memory_equal(&o->del, &in.u.result->del, sizeof o->del);
    proto_msg_clear(&out);
    proto_result_clear(in.u.result);
    assert_null(in.u.result->files);
    assert_int_equal(in.u.result->nfiles, 0);
    proto_result_clear(NULL);

    /* more files than a page may hold: refused at encode */
    in.u.result->nfiles = BQ_FILES_PAGE_MAX + 1;
    in.u.result->files = calloc(BQ_FILES_PAGE_MAX + 1, sizeof *in.u.result->files);
    bq_errbuf_t e = {{0}};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(proto_msg_encode(&in, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "JobResult has 5001 files, more than the limit of 5000"));
    in.u.result->nfiles = 1; /* and a file without a path */
    assert_int_equal(proto_msg_encode(&in, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "JobResult.files[0] has no path"));
    proto_msg_clear(&in);
}

static void test_result_ack(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_RESULT_ACK, .seq = 13}, out;
    in.u.result_ack.job_id = 5;
    in.u.result_ack.attempt = 2;
    in.u.result_ack.accepted = 1;
    FILL_MAX(in.u.result_ack.reason, 4);
    roundtrip(&in, &out);
    assert_memory_equal(&out.u.result_ack, &in.u.result_ack, sizeof in.u.result_ack);
    proto_msg_clear(&out);
}

static void test_cli_request(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_CLI_REQUEST, .seq = 1}, out;
    FILL_MAX(in.u.cli_req.verb, 0);
    FILL_MAX(in.u.cli_req.cluster, 1);
    FILL_MAX(in.u.cli_req.site, 2);
    in.u.cli_req.job_id = 99;
    in.u.cli_req.all = 1;
    in.u.cli_req.sleep_ms = 60000;
    FILL_MAX(in.u.cli_req.backup_id, 3);
    FILL_MAX(in.u.cli_req.dest, 4);
    FILL_MAX(in.u.cli_req.worker, 5);
    FILL_MAX(in.u.cli_req.owner, 6);
    FILL_MAX(in.u.cli_req.checkpoint, 7);
    in.u.cli_req.delta = 1;
    in.u.cli_req.offset = UINT64_MAX - 1;
    roundtrip(&in, &out);
    assert_memory_equal(&out.u.cli_req, &in.u.cli_req, sizeof in.u.cli_req);
    proto_msg_clear(&out);

    /* recover's tablespace relocations: the most there may be, each at its longest */
    in.u.cli_req.ntablespaces = BQ_TABLESPACES_MAX;
    in.u.cli_req.tablespaces = calloc(BQ_TABLESPACES_MAX, sizeof *in.u.cli_req.tablespaces);
    assert_non_null(in.u.cli_req.tablespaces);
    for (size_t i = 0; i < BQ_TABLESPACES_MAX; i++)
        FILL_MAX(in.u.cli_req.tablespaces[i], (char)i);
    memset(in.u.cli_req.tablespaces[0], 0, sizeof in.u.cli_req.tablespaces[0]);
    snprintf(in.u.cli_req.tablespaces[0], sizeof in.u.cli_req.tablespaces[0], "ts1:/srv/ts1");
    roundtrip(&in, &out);
    assert_int_equal(out.u.cli_req.ntablespaces, BQ_TABLESPACES_MAX);
    assert_memory_equal(out.u.cli_req.tablespaces, in.u.cli_req.tablespaces,
                        BQ_TABLESPACES_MAX * sizeof *in.u.cli_req.tablespaces);
    assert_string_equal(out.u.cli_req.tablespaces[0], "ts1:/srv/ts1");
    assert_string_equal(out.u.cli_req.dest, in.u.cli_req.dest);
    assert_int_equal(out.u.cli_req.delta, 1);
    proto_msg_clear(&out);
    assert_true(is_zero(&out, sizeof out));
    proto_msg_clear(&in); /* frees the tablespaces */
}

static void test_cli_reply(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_CLI_REPLY, .seq = 2}, out;
    bq_msg_cli_reply_t *r = &in.u.cli_reply;
    r->code = BQ_E_NOTFOUND;
    FILL_MAX(r->error, 3);
    r->job_id = 123;
    r->nworkers = 3;
    r->nclusters = 2;
    r->njobs = 2;
    r->nsites = 2;
    r->workers = calloc(r->nworkers, sizeof *r->workers);
    r->clusters = calloc(r->nclusters, sizeof *r->clusters);
    r->jobs = calloc(r->njobs, sizeof *r->jobs);
    r->sites = calloc(r->nsites, sizeof *r->sites);
    assert_true(r->workers && r->clusters && r->jobs && r->sites);
    for (size_t i = 0; i < r->nworkers; i++)
        worker_full(&r->workers[i], (char)i);
    for (size_t i = 0; i < r->nclusters; i++)
        cluster_full(&r->clusters[i], (char)i);
    job_full(&r->jobs[0]);
    r->jobs[1].id = 2;
    r->jobs[1].type = BQ_JOB_SLEEP;
    r->jobs[1].state = BQ_JOB_RUNNING;
    FILL_MAX(r->sites[0], 0);
    snprintf(r->sites[1], sizeof r->sites[1], "dc2");
    r->nbackups = 3;
    r->backups = calloc(r->nbackups, sizeof *r->backups);
    assert_non_null(r->backups);
    backup_full(&r->backups[0], 0);
    backup_full(&r->backups[1], 9);
    snprintf(r->backups[2].id, sizeof r->backups[2].id, "20240101T000000");
    snprintf(r->backups[2].cluster, sizeof r->backups[2].cluster, "db1");
    r->backups[2].state = BQ_BACKUP_DELETING;
    r->files_total = 1ULL << 40;
    r->files_offset = (1ULL << 40) - 2;
    r->nfiles = 2;
    r->files = calloc(2, sizeof *r->files);
    assert_non_null(r->files);
    r->files[0] = (bq_file_entry_t){strdup("PG_VERSION"), 0100600, 3, 1700000000};
    r->files[1] = (bq_file_entry_t){strdup("pg_tblspc/16384/PG_15_202209061"), 040700, 0, -1};
    r->ntimelines = 2;
    r->timelines = calloc(r->ntimelines, sizeof *r->timelines);
    assert_non_null(r->timelines);
    bq_wal_timeline_t *tl = &r->timelines[0];
    tl->tli = 1;
    snprintf(tl->first, sizeof tl->first, "000000010000000000000001");
    snprintf(tl->last, sizeof tl->last, "00000001000000FF000000FF");
    tl->segments = UINT64_MAX;
    tl->bytes = UINT64_MAX - 1;
    tl->ngaps = BQ_WAL_GAPS_MAX;
    for (size_t i = 0; i < tl->ngaps; i++)
        FILL_MAX(tl->gaps[i], (char)i);
    tl->npartials = BQ_WAL_PARTIALS_MAX;
    for (size_t i = 0; i < tl->npartials; i++)
        FILL_MAX(tl->partials[i], (char)i);
    tl = &r->timelines[1]; /* a history file and nothing else */
    tl->tli = UINT32_MAX;
    tl->history = 1;
    /* issue 6: schedule rows, the fleet's check items, check job ids */
    r->nschedule = 2;
    r->schedule = calloc(2, sizeof *r->schedule);
    assert_non_null(r->schedule);
    FILL_MAX(r->schedule[0].cluster, 1);
    FILL_MAX(r->schedule[0].site, 2);
    FILL_MAX(r->schedule[0].schedule, 3);
    FILL_MAX(r->schedule[0].why, 4);
    FILL_MAX(r->schedule[0].last_backup, 5);
    FILL_MAX(r->schedule[0].retention, 6);
    r->schedule[0].last_slot_ms = INT64_MIN;
    r->schedule[0].next_ms = INT64_MAX;
    r->schedule[0].due = 1;
    snprintf(r->schedule[1].cluster, sizeof r->schedule[1].cluster, "db2");
    r->has_fleet = 1;
    check_full(&r->fleet);
    r->njob_ids = 3;
    r->job_ids = calloc(3, sizeof *r->job_ids);
    assert_non_null(r->job_ids);
    r->job_ids[0] = 1;
    r->job_ids[2] = UINT64_MAX;
    roundtrip(&in, &out);
    bq_msg_cli_reply_t *o = &out.u.cli_reply;
    assert_int_equal(o->nschedule, 2);
    assert_memory_equal(o->schedule, r->schedule, 2 * sizeof *r->schedule);
    assert_true(o->has_fleet);
    assert_memory_equal(&o->fleet, &r->fleet, sizeof r->fleet);
    assert_int_equal(o->njob_ids, 3);
    assert_memory_equal(o->job_ids, r->job_ids, 3 * sizeof *r->job_ids);
    assert_int_equal(o->code, BQ_E_NOTFOUND);
    assert_string_equal(o->error, r->error);
    assert_true(o->job_id == 123);
    assert_int_equal(o->nworkers, 3);
    assert_int_equal(o->nclusters, 2);
    assert_int_equal(o->njobs, 2);
    assert_int_equal(o->nsites, 2);
    assert_memory_equal(o->workers, r->workers, 3 * sizeof *r->workers);
    assert_memory_equal(o->clusters, r->clusters, 2 * sizeof *r->clusters);
    assert_memory_equal(o->jobs, r->jobs, 2 * sizeof *r->jobs);
    assert_memory_equal(o->sites, r->sites, 2 * sizeof *r->sites);
    assert_int_equal(o->nbackups, 3);
    assert_memory_equal(o->backups, r->backups, 3 * sizeof *r->backups);
    assert_int_equal(o->nfiles, 2);
    assert_true(o->files_total == 1ULL << 40 && o->files_offset == (1ULL << 40) - 2);
    assert_string_equal(o->files[0].path, "PG_VERSION");
    assert_int_equal(o->files[0].mode, 0100600);
    assert_true(o->files[0].size == 3 && o->files[0].mtime == 1700000000);
    assert_string_equal(o->files[1].path, "pg_tblspc/16384/PG_15_202209061");
    assert_int_equal(o->files[1].mode, 040700);
    assert_true(o->files[1].mtime == -1);
    assert_int_equal(o->ntimelines, 2);
    assert_memory_equal(o->timelines, r->timelines, 2 * sizeof *r->timelines);
    proto_msg_clear(&out);
    proto_msg_clear(&in);

    /* an empty reply has no arrays */
    in.type = BQ_MSG_CLI_REPLY;
    roundtrip(&in, &out);
    assert_null(out.u.cli_reply.workers);
    assert_null(out.u.cli_reply.jobs);
    assert_null(out.u.cli_reply.backups);
    assert_null(out.u.cli_reply.files);
    assert_null(out.u.cli_reply.timelines);
    proto_msg_clear(&out);

    /* a timeline whose first segment is not one is refused on encode */
    in.type = BQ_MSG_CLI_REPLY;
    bq_wal_timeline_t bad = {.tli = 1};
    snprintf(bad.first, sizeof bad.first, "00000001.history");
    in.u.cli_reply.ntimelines = 1;
    in.u.cli_reply.timelines = &bad;
    bq_errbuf_t e = {{0}};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(proto_msg_encode(&in, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "WalTimeline.first \"00000001.history\" is not a WAL segment name"));
    bad.first[0] = '\0';
    bad.tli = 0;
    assert_int_equal(proto_msg_encode(&in, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "WalTimeline.tli is 0"));
}

static void test_error(void **state)
{
    bq_msg_t in, out;
    proto_msg_error(&in, 88, BQ_E_STALE, "job %d attempt %d is stale", 5, 1);
    assert_int_equal(in.type, BQ_MSG_ERROR);
    roundtrip(&in, &out);
    assert_true(out.seq == 88);
    assert_int_equal(out.u.error.code, BQ_E_STALE);
    assert_string_equal(out.u.error.message, "job 5 attempt 1 is stale");
    proto_msg_clear(&out);

    /* the longest message proto_msg_error can make still travels */
    char big[2 * BQ_TEXT_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    proto_msg_error(&in, 1, BQ_E_IO, "%s", big);
    assert_int_equal(strlen(in.u.error.message), BQ_TEXT_MAX - 1);
    roundtrip(&in, &out);
    assert_string_equal(out.u.error.message, in.u.error.message);
    proto_msg_clear(&out);
}

static void test_records(void **state)
{
    bq_errbuf_t e = {{0}};
    uint8_t *buf;
    size_t len;

    bq_job_t *j = malloc(sizeof *j), *j2 = malloc(sizeof *j2);
    assert_true(j && j2);
    job_full(j);
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), 0);
    assert_int_equal(proto_job_decode(buf, len, j2, &e), 0);
    assert_memory_equal(j, j2, sizeof *j);
    free(buf);
    /* the job types of list-files, delete, wal-stream and switch-wal (with its fields) */
    j->force = 1;
    snprintf(j->wal_file, sizeof j->wal_file, "0000000100000000000000A1");
    bq_job_type_t types[] = {BQ_JOB_LIST_FILES, BQ_JOB_DELETE, BQ_JOB_WAL_STREAM,
                             BQ_JOB_SWITCH_WAL};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        j->type = types[i];
        assert_int_equal(proto_job_encode(j, &buf, &len, &e), 0);
        assert_int_equal(proto_job_decode(buf, len, j2, &e), 0);
        assert_memory_equal(j, j2, sizeof *j);
        free(buf);
    }
    /* a restore test carries its spec */
    j->type = BQ_JOB_RESTORE_TEST;
    snprintf(j->rt.kind, sizeof j->rt.kind, "drill");
    j->rt.amcheck = 1;
    snprintf(j->rt.sql, sizeof j->rt.sql, "SELECT count(*) > 0 FROM t");
    snprintf(j->rt.sql_file, sizeof j->rt.sql_file, "/etc/barque/db1.sql");
    j->rt.timeout_ms = 3600000;
    snprintf(j->rt.wal_end, sizeof j->rt.wal_end, "0000000100000000000000A1");
    j->rt.system_identifier = 7312345678901234567ULL;
    j->rt.start_lsn = 0x1000028;
    j->rt.stop_lsn = 0x1000100;
    j->rt.data_bytes = 123456789;
    j->rt.pg_version = 150004;
    snprintf(j->rt.dbname, sizeof j->rt.dbname, "app");
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), 0);
    assert_int_equal(proto_job_decode(buf, len, j2, &e), 0);
    assert_memory_equal(j, j2, sizeof *j);
    free(buf);
    snprintf(j->rt.wal_end, sizeof j->rt.wal_end, "not-a-segment");
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), 0); /* encode does not check it */
    assert_int_equal(proto_job_decode(buf, len, j2, &e), BQ_E_PROTO);
    assert_non_null(strstr(e.msg, "RestoreTestSpec.wal_end is not a WAL segment name"));
    free(buf);
    memset(&j->rt, 0, sizeof j->rt);
    j->type = (bq_job_type_t)(BQ_JOB_REPLICATE_WAL + 1);
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), BQ_E_INVAL);
    j->type = BQ_JOB_SWITCH_WAL;
    snprintf(j->wal_file, sizeof j->wal_file, "not-a-wal-file");
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), 0); /* encode does not check it */
    assert_int_equal(proto_job_decode(buf, len, j2, &e), BQ_E_PROTO);
    assert_non_null(strstr(e.msg, "Job.wal_file is not a WAL file name"));
    free(buf);
    j->wal_file[0] = '\0';
    j->force = 0;
    /* delta_from: empty or a backup id, refused on encode as on decode */
    job_full(j);
    snprintf(j->delta_from, sizeof j->delta_from, "20240101T000000");
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), 0);
    free(buf);
    snprintf(j->delta_from, sizeof j->delta_from, "20241301T000000"); /* month 13 */
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "Job.delta_from"));
    free(j);
    free(j2);

    bq_worker_t w, w2;
    worker_full(&w, 'q');
    assert_int_equal(proto_worker_encode(&w, &buf, &len, &e), 0);
    assert_int_equal(proto_worker_decode(buf, len, &w2, &e), 0);
    assert_memory_equal(&w, &w2, sizeof w);
    free(buf);

    /* an all-default record packs to 0 bytes and comes back */
    memset(&w, 0, sizeof w);
    assert_int_equal(proto_worker_encode(&w, &buf, &len, &e), 0);
    assert_int_equal(len, 0);
    assert_int_equal(proto_worker_decode(buf, len, &w2, &e), 0);
    assert_memory_equal(&w, &w2, sizeof w);
    free(buf);

    bq_cluster_t c, c2;
    cluster_full(&c, 'c');
    assert_int_equal(proto_cluster_encode(&c, &buf, &len, &e), 0);
    assert_int_equal(proto_cluster_decode(buf, len, &c2, &e), 0);
    assert_memory_equal(&c, &c2, sizeof c);
    free(buf);

    static bq_backup_t b, b2;
    for (int st = BQ_BACKUP_NONE; st <= BQ_BACKUP_DELETING; st++) {
        backup_full(&b, (char)st);
        b.state = (bq_backup_state_t)st;
        assert_int_equal(proto_backup_encode(&b, &buf, &len, &e), 0);
        assert_int_equal(proto_backup_decode(buf, len, &b2, &e), 0);
        assert_memory_equal(&b, &b2, sizeof b);
        free(buf);
    }
    memset(&b, 0, sizeof b);
    assert_int_equal(proto_backup_encode(&b, &buf, &len, &e), 0);
    assert_int_equal(len, 0);
    assert_int_equal(proto_backup_decode(buf, len, &b2, &e), 0);
    assert_memory_equal(&b, &b2, sizeof b);
    free(buf);

    bq_wal_file_t wf, wf2;
    memset(&wf, 0, sizeof wf);
    FILL_MAX(wf.cluster, 'w');
    snprintf(wf.name, sizeof wf.name, "00000003FFFFFFFF000000FF.partial");
    wf.size = UINT64_MAX;
    snprintf(wf.stores, sizeof wf.stores, "east-1,east-2");
    wf.archived_ms = INT64_MIN;
    assert_int_equal(proto_wal_file_encode(&wf, &buf, &len, &e), 0);
    assert_int_equal(proto_wal_file_decode(buf, len, &wf2, &e), 0);
    assert_memory_equal(&wf, &wf2, sizeof wf);
    free(buf);
    snprintf(wf.name, sizeof wf.name, "00000003.partial");
    assert_int_equal(proto_wal_file_encode(&wf, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "could not encode WalFile record: WalFile.name \"00000003.partial\""));
    memset(&wf, 0, sizeof wf);
    assert_int_equal(proto_wal_file_encode(&wf, &buf, &len, &e), 0);
    assert_int_equal(len, 0);
    assert_int_equal(proto_wal_file_decode(buf, len, &wf2, &e), 0);
    assert_memory_equal(&wf, &wf2, sizeof wf);
    free(buf);
}

/* Fields added by a newer peer are ignored, not refused. */
static void test_unknown_fields(void **state)
{
    Barque__JobRef ref = BARQUE__JOB_REF__INIT;
    ref.job_id = 5;
    uint8_t body[64];
    size_t blen = barque__job_ref__pack(&ref, body);
    body[blen++] = (15 << 3) | 0; /* field 15, varint 1 */
    body[blen++] = 1;
    Barque__Envelope env = BARQUE__ENVELOPE__INIT;
    env.version = BQ_PROTO_VERSION;
    env.type = BARQUE__MSG_TYPE__MSG_JOB_ACCEPT;
    env.seq = 4;
    env.body.data = body;
    env.body.len = blen;
    uint8_t buf[128];
    size_t len = barque__envelope__pack(&env, buf);
    buf[len++] = (9 << 3) | 2; /* field 9, 3 bytes */
    buf[len++] = 3;
    buf[len++] = 'a';
    buf[len++] = 'b';
    buf[len++] = 'c';
    bq_msg_t m;
    bq_errbuf_t e;
    assert_int_equal(proto_msg_decode(buf, len, &m, &e), 0);
    assert_int_equal(m.type, BQ_MSG_JOB_ACCEPT);
    assert_true(m.u.ref.job_id == 5);
    proto_msg_clear(&m);
}

/* ---- encode refusals ----------------------------------------------------------------- */

static void test_encode_refusals(void **state)
{
    bq_errbuf_t e;
    uint8_t *buf = (uint8_t *)"untouched";
    size_t len;
    bq_msg_t m = {.type = (bq_msg_type_t)99, .seq = 5};
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_MSGTYPE);
    assert_non_null(strstr(e.msg, "unknown message type 99"));
    assert_null(buf);

    m = (bq_msg_t){.type = BQ_MSG_JOB_OFFER};
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "could not encode JOB_OFFER message seq 0: it has no job"));

    bq_job_t *j = malloc(sizeof *j);
    assert_non_null(j);
    job_full(j);
    m.u.job = j;
    j->state = (bq_job_state_t)42;
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "Job.state has unknown value 42"));
    job_full(j);
    j->check.nitems = BQ_CHECK_ITEMS_MAX + 1;
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "CheckResult has 33 items"));
    job_full(j);
    memset(j->cluster, 'x', sizeof j->cluster); /* no NUL */
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "Job.cluster is not NUL-terminated"));
    job_full(j);
    snprintf(j->check.slots, sizeof j->check.slots, "a,,b");
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "CheckResult.slots \"a,,b\" has an empty slot name"));
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "could not encode Job record"));
    free(j);

    static bq_backup_t b;
    backup_full(&b, 1);
    b.state = (bq_backup_state_t)42;
    assert_int_equal(proto_backup_encode(&b, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "could not encode Backup record: Backup.state has unknown value 42"));
    backup_full(&b, 1);
    snprintf(b.stores, sizeof b.stores, "east-1,,west-1");
    assert_int_equal(proto_backup_encode(&b, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "Backup.stores \"east-1,,west-1\" has an empty worker name"));
    backup_full(&b, 1);
    memset(b.id, '2', sizeof b.id); /* no NUL */
    assert_int_equal(proto_backup_encode(&b, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "Backup.id is not NUL-terminated within its 32 bytes"));

    m = (bq_msg_t){.type = BQ_MSG_JOB_RESULT, .seq = 3};
    m.u.result = calloc(1, sizeof *m.u.result);
    assert_non_null(m.u.result);
    m.u.result->has_backup = 1;
    m.u.result->backup.state = (bq_backup_state_t)-1;
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "could not encode JOB_RESULT message seq 3: Backup.state has unknown value -1"));
    proto_msg_clear(&m);

    m = (bq_msg_t){.type = BQ_MSG_CLI_REQUEST, .seq = 4};
    m.u.cli_req.ntablespaces = BQ_TABLESPACES_MAX + 1;
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "CliRequest has 257 tablespaces, more than the limit of 256"));
    m.u.cli_req.ntablespaces = 2;
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "CliRequest has 2 tablespaces but no array"));
    m.u.cli_req.ntablespaces = 0;

    m = (bq_msg_t){.type = BQ_MSG_HEARTBEAT};
    m.u.hello.nrunning = BQ_RUNNING_MAX + 1;
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "WorkerHello has 1025 running jobs"));

    /* a reply over BQ_MSG_MAX is refused here rather than dropped by the socket */
    m = (bq_msg_t){.type = BQ_MSG_CLI_REPLY, .seq = 6};
    m.u.cli_reply.njobs = 3000;
    m.u.cli_reply.jobs = calloc(3000, sizeof(bq_job_t));
    assert_non_null(m.u.cli_reply.jobs);
    for (size_t i = 0; i < 3000; i++) {
        FILL_MAX(m.u.cli_reply.jobs[i].error, 0);
        FILL_MAX(m.u.cli_reply.jobs[i].conninfo, 0);
    }
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_TOOBIG);
    assert_non_null(strstr(e.msg, "could not encode CLI_REPLY message seq 6"));
    assert_non_null(strstr(e.msg, "over the 4194304-byte limit"));
    proto_msg_clear(&m);
}

/* ---- the bad-input table ------------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    size_t len;
} bytes_t;

static bytes_t pack_msg(const ProtobufCMessage *msg)
{
    bytes_t b;
    b.len = protobuf_c_message_get_packed_size(msg);
    b.buf = malloc(b.len ? b.len : 1);
    assert_non_null(b.buf);
    assert_int_equal(protobuf_c_message_pack(msg, b.buf), b.len);
    return b;
}

/* An envelope around body (NULL: no body). */
static bytes_t envelope(uint32_t version, int type, const ProtobufCMessage *body)
{
    Barque__Envelope env = BARQUE__ENVELOPE__INIT;
    bytes_t bb = {NULL, 0};
    if (body)
        bb = pack_msg(body);
    env.version = version;
    env.type = (Barque__MsgType)type;
    env.seq = 77;
    env.body.data = bb.buf;
    env.body.len = bb.len;
    bytes_t b = pack_msg(&env.base);
    free(bb.buf);
    return b;
}

static char *str_of(size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, 's', n);
    s[n] = '\0';
    return s;
}

static bytes_t bad_empty(void)
{
    return (bytes_t){malloc(1), 0};
}

static bytes_t bad_oversized(void)
{
    bytes_t b = {calloc(BQ_MSG_MAX + 1, 1), BQ_MSG_MAX + 1};
    assert_non_null(b.buf);
    return b;
}

static bytes_t bad_garbage(void)
{
    static const uint8_t g[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0x01, 0x42, 0x13};
    bytes_t b = {malloc(sizeof g), sizeof g};
    memcpy(b.buf, g, sizeof g);
    return b;
}

static bytes_t bad_truncated(void)
{
    Barque__JobProgress p = BARQUE__JOB_PROGRESS__INIT;
    p.message = "copying base backup";
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_PROGRESS, &p.base);
    b.len -= 3;
    return b;
}

static bytes_t bad_version2(void)
{
    Barque__JobRef r = BARQUE__JOB_REF__INIT;
    return envelope(2, BQ_MSG_JOB_ACCEPT, &r.base);
}

static bytes_t bad_version0(void)
{
    Barque__JobRef r = BARQUE__JOB_REF__INIT;
    return envelope(0, BQ_MSG_JOB_ACCEPT, &r.base);
}

static bytes_t bad_type99(void)
{
    Barque__JobRef r = BARQUE__JOB_REF__INIT;
    return envelope(BQ_PROTO_VERSION, 99, &r.base);
}

static bytes_t bad_type_none(void)
{
    return envelope(BQ_PROTO_VERSION, 0, NULL);
}

static bytes_t bad_type_negative(void)
{
    return envelope(BQ_PROTO_VERSION, -3, NULL);
}

static bytes_t bad_wrong_body(void)
{
    Barque__Worker w = BARQUE__WORKER__INIT;
    w.name = "w1";
    return envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_ACCEPT, &w.base); /* JobRef expected */
}

static bytes_t bad_garbage_body(void)
{
    Barque__Envelope env = BARQUE__ENVELOPE__INIT;
    uint8_t junk[] = {0x0a, 0x7f, 0x01}; /* field 1 claims 127 bytes, has 1 */
    env.version = BQ_PROTO_VERSION;
    env.type = BARQUE__MSG_TYPE__MSG_JOB_OFFER;
    env.body.data = junk;
    env.body.len = sizeof junk;
    return pack_msg(&env.base);
}

static bytes_t bad_hello_no_worker(void)
{
    Barque__WorkerHello h = BARQUE__WORKER_HELLO__INIT;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_REGISTER, &h.base);
}

static bytes_t bad_long_cluster(void)
{
    Barque__Job j = BARQUE__JOB__INIT;
    j.cluster = str_of(BQ_NAME_MAX);
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_OFFER, &j.base);
    free(j.cluster);
    return b;
}

static bytes_t bad_long_verb(void)
{
    Barque__CliRequest r = BARQUE__CLI_REQUEST__INIT;
    r.verb = str_of(32);
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REQUEST, &r.base);
    free(r.verb);
    return b;
}

static bytes_t bad_long_error(void)
{
    Barque__Error er = BARQUE__ERROR__INIT;
    er.message = str_of(BQ_TEXT_MAX);
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_ERROR, &er.base);
    free(er.message);
    return b;
}

static bytes_t bad_long_worker_version(void)
{
    Barque__WorkerHello h = BARQUE__WORKER_HELLO__INIT;
    Barque__Worker w = BARQUE__WORKER__INIT;
    w.version = str_of(32);
    h.worker = &w;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_HEARTBEAT, &h.base);
    free(w.version);
    return b;
}

static bytes_t bad_long_site_in_reply(void)
{
    Barque__CliReply r = BARQUE__CLI_REPLY__INIT;
    Barque__Site s = BARQUE__SITE__INIT, *sp = &s;
    s.name = str_of(BQ_NAME_MAX);
    r.n_sites = 1;
    r.sites = &sp;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REPLY, &r.base);
    free(s.name);
    return b;
}

/* A JOB_RESULT whose check result is built by fn. */
static bytes_t result_with(void (*fn)(Barque__CheckResult *))
{
    Barque__JobResult r = BARQUE__JOB_RESULT__INIT;
    Barque__CheckResult c = BARQUE__CHECK_RESULT__INIT;
    r.job_id = 1;
    r.check = &c;
    fn(&c);
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_RESULT, &r.base);
    free(c.items);
    free(c.slots);
    return b;
}

static Barque__CheckItem the_item = BARQUE__CHECK_ITEM__INIT;

static void items_25(Barque__CheckResult *c)
{
    c->n_items = BQ_CHECK_ITEMS_MAX + 1;
    c->items = calloc(c->n_items, sizeof *c->items);
    for (size_t i = 0; i < c->n_items; i++)
        c->items[i] = &the_item;
}

static char long_detail[BQ_DETAIL_MAX + 1];
static Barque__CheckItem long_item = BARQUE__CHECK_ITEM__INIT;

static void item_long_detail(Barque__CheckResult *c)
{
    memset(long_detail, 'd', BQ_DETAIL_MAX);
    long_item.detail = long_detail;
    c->n_items = 1;
    c->items = calloc(1, sizeof *c->items);
    c->items[0] = &long_item;
}

static char slot63[64];

static void slots_too_long(Barque__CheckResult *c)
{
    memset(slot63, 'n', 63); /* 9 x 63 + 8 commas = 575 > 511 */
    c->n_slots = 9;
    c->slots = calloc(9, sizeof *c->slots);
    for (size_t i = 0; i < 9; i++)
        c->slots[i] = slot63;
}

static void slots_empty_name(Barque__CheckResult *c)
{
    c->n_slots = 2;
    c->slots = calloc(2, sizeof *c->slots);
    c->slots[0] = "barque_a";
    c->slots[1] = "";
}

static void slots_comma(Barque__CheckResult *c)
{
    c->n_slots = 1;
    c->slots = calloc(1, sizeof *c->slots);
    c->slots[0] = "a,b";
}

static bytes_t bad_items(void) { return result_with(items_25); }
static bytes_t bad_item_detail(void) { return result_with(item_long_detail); }
static bytes_t bad_slots_long(void) { return result_with(slots_too_long); }
static bytes_t bad_slots_empty(void) { return result_with(slots_empty_name); }
static bytes_t bad_slots_comma(void) { return result_with(slots_comma); }

static bytes_t bad_running(void)
{
    Barque__WorkerHello h = BARQUE__WORKER_HELLO__INIT;
    Barque__Worker w = BARQUE__WORKER__INIT;
    Barque__JobRef r = BARQUE__JOB_REF__INIT;
    h.worker = &w;
    h.n_running = BQ_RUNNING_MAX + 1;
    h.running = calloc(h.n_running, sizeof *h.running);
    for (size_t i = 0; i < h.n_running; i++)
        h.running[i] = &r;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_REGISTER, &h.base);
    free(h.running);
    return b;
}

static bytes_t bad_reply_rows(void)
{
    Barque__CliReply r = BARQUE__CLI_REPLY__INIT;
    Barque__Job j = BARQUE__JOB__INIT;
    r.n_jobs = 10001;
    r.jobs = calloc(r.n_jobs, sizeof *r.jobs);
    for (size_t i = 0; i < r.n_jobs; i++)
        r.jobs[i] = &j;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REPLY, &r.base);
    free(r.jobs);
    return b;
}

/* list-files pages: too many files, and paths that cannot come back */
static bytes_t result_files_with(size_t n, const char *path)
{
    Barque__JobResult r = BARQUE__JOB_RESULT__INIT;
    Barque__FileEntry f = BARQUE__FILE_ENTRY__INIT;
    f.path = (char *)path;
    r.ok = 1;
    r.n_files = n;
    r.files = calloc(n, sizeof *r.files);
    for (size_t i = 0; i < n; i++)
        r.files[i] = &f;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_RESULT, &r.base);
    free(r.files);
    return b;
}

static bytes_t bad_files_many(void) { return result_files_with(BQ_FILES_PAGE_MAX + 1, "PG_VERSION"); }
static bytes_t bad_files_empty_path(void) { return result_files_with(2, ""); }
static char *long_path;
static bytes_t bad_files_long_path(void)
{
    free(long_path);
    long_path = str_of(BQ_FILE_PATH_MAX);
    return result_files_with(1, long_path);
}

static bytes_t bad_reply_files_many(void)
{
    Barque__CliReply r = BARQUE__CLI_REPLY__INIT;
    Barque__FileEntry f = BARQUE__FILE_ENTRY__INIT;
    f.path = "base/1/1259";
    r.n_files = BQ_FILES_PAGE_MAX + 1;
    r.files = calloc(r.n_files, sizeof *r.files);
    for (size_t i = 0; i < r.n_files; i++)
        r.files[i] = &f;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REPLY, &r.base);
    free(r.files);
    return b;
}

static bytes_t job_offer_with(int type, int state)
{
    Barque__Job j = BARQUE__JOB__INIT;
    j.type = (Barque__JobType)type;
    j.state = (Barque__JobState)state;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_OFFER, &j.base);
}

static bytes_t bad_job_type(void) { return job_offer_with(15, 1); }
static bytes_t bad_job_type_neg(void) { return job_offer_with(-1, 1); }
static bytes_t bad_job_state(void) { return job_offer_with(1, 7); }

static bytes_t job_offer_delta_from(const char *delta_from)
{
    Barque__Job j = BARQUE__JOB__INIT;
    j.type = BARQUE__JOB_TYPE__JOB_BACKUP;
    j.delta_from = (char *)delta_from;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_OFFER, &j.base);
}

static bytes_t bad_job_delta_from(void) { return job_offer_delta_from("2024-02-29T23:59"); }

static bytes_t bad_long_job_delta_from(void)
{
    char *id = str_of(BQ_BACKUP_ID_MAX);
    bytes_t b = job_offer_delta_from(id);
    free(id);
    return b;
}

/* a Job nested in a CLI reply goes through the same checks */
static bytes_t bad_reply_job_state(void)
{
    Barque__CliReply r = BARQUE__CLI_REPLY__INIT;
    Barque__Job j = BARQUE__JOB__INIT, *jp = &j;
    j.state = (Barque__JobState)100;
    r.n_jobs = 1;
    r.jobs = &jp;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REPLY, &r.base);
}

/* A JOB_RESULT whose backup is built by fn; a string fn allocates goes in backup_owned. */
static char *backup_owned;

static bytes_t result_backup_with(void (*fn)(Barque__Backup *))
{
    Barque__JobResult r = BARQUE__JOB_RESULT__INIT;
    Barque__Backup b = BARQUE__BACKUP__INIT;
    r.job_id = 1;
    r.ok = 1;
    r.backup = &b;
    fn(&b);
    bytes_t out = envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_RESULT, &r.base);
    free(backup_owned);
    backup_owned = NULL;
    free(b.stores);
    return out;
}

static void backup_state_6(Barque__Backup *b) { b->state = (Barque__BackupState)6; }
static void backup_state_neg(Barque__Backup *b) { b->state = (Barque__BackupState)-2; }
static void backup_long_id(Barque__Backup *b) { b->id = backup_owned = str_of(BQ_BACKUP_ID_MAX); }
static void backup_long_detail(Barque__Backup *b)
{
    b->checksum_detail = backup_owned = str_of(BQ_DETAIL_MAX);
}

static void backup_stores_empty(Barque__Backup *b)
{
    b->n_stores = 2;
    b->stores = calloc(2, sizeof *b->stores);
    b->stores[0] = "east-1";
    b->stores[1] = "";
}

static void backup_stores_comma(Barque__Backup *b)
{
    b->n_stores = 1;
    b->stores = calloc(1, sizeof *b->stores);
    b->stores[0] = "east-1,west-1";
}

static char store63[64];

static void backup_stores_long(Barque__Backup *b)
{
    memset(store63, 'w', 63); /* 5 x 63 + 4 commas = 319 > 255 */
    b->n_stores = 5;
    b->stores = calloc(5, sizeof *b->stores);
    for (size_t i = 0; i < 5; i++)
        b->stores[i] = store63;
}

static bytes_t bad_backup_state(void) { return result_backup_with(backup_state_6); }
static bytes_t bad_backup_state_neg(void) { return result_backup_with(backup_state_neg); }
static bytes_t bad_backup_id(void) { return result_backup_with(backup_long_id); }
static bytes_t bad_backup_detail(void) { return result_backup_with(backup_long_detail); }
static bytes_t bad_backup_stores_empty(void) { return result_backup_with(backup_stores_empty); }
static bytes_t bad_backup_stores_comma(void) { return result_backup_with(backup_stores_comma); }
static bytes_t bad_backup_stores_long(void) { return result_backup_with(backup_stores_long); }

static bytes_t bad_reply_backup_state(void)
{
    Barque__CliReply r = BARQUE__CLI_REPLY__INIT;
    Barque__Backup b = BARQUE__BACKUP__INIT, *bp = &b;
    b.state = (Barque__BackupState)77;
    r.n_backups = 1;
    r.backups = &bp;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REPLY, &r.base);
}

static bytes_t bad_reply_backup_rows(void)
{
    Barque__CliReply r = BARQUE__CLI_REPLY__INIT;
    Barque__Backup b = BARQUE__BACKUP__INIT;
    r.n_backups = 10001;
    r.backups = calloc(r.n_backups, sizeof *r.backups);
    for (size_t i = 0; i < r.n_backups; i++)
        r.backups[i] = &b;
    bytes_t out = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REPLY, &r.base);
    free(r.backups);
    return out;
}

static bytes_t bad_long_job_dest(void)
{
    Barque__Job j = BARQUE__JOB__INIT;
    j.type = BARQUE__JOB_TYPE__JOB_RESTORE;
    j.dest = str_of(BQ_DEST_MAX);
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_OFFER, &j.base);
    free(j.dest);
    return b;
}

static bytes_t bad_long_job_checkpoint(void)
{
    Barque__Job j = BARQUE__JOB__INIT;
    j.type = BARQUE__JOB_TYPE__JOB_BACKUP;
    j.checkpoint = "spreadly";
    return envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_OFFER, &j.base);
}

static bytes_t bad_long_request_backup_id(void)
{
    Barque__CliRequest r = BARQUE__CLI_REQUEST__INIT;
    r.verb = "show-backup";
    r.backup_id = str_of(BQ_BACKUP_ID_MAX);
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REQUEST, &r.base);
    free(r.backup_id);
    return b;
}

static bytes_t bad_long_request_owner(void)
{
    Barque__CliRequest r = BARQUE__CLI_REQUEST__INIT;
    r.owner = str_of(BQ_NAME_MAX);
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REQUEST, &r.base);
    free(r.owner);
    return b;
}

static bytes_t bad_tablespaces_count(void)
{
    Barque__CliRequest r = BARQUE__CLI_REQUEST__INIT;
    r.verb = "recover";
    r.n_tablespaces = BQ_TABLESPACES_MAX + 1;
    r.tablespaces = calloc(r.n_tablespaces, sizeof *r.tablespaces);
    for (size_t i = 0; i < r.n_tablespaces; i++)
        r.tablespaces[i] = "ts:/srv/ts";
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REQUEST, &r.base);
    free(r.tablespaces);
    return b;
}

static bytes_t bad_tablespace_long(void)
{
    Barque__CliRequest r = BARQUE__CLI_REQUEST__INIT;
    char *ts[2] = {"ts1:/srv/ts1", str_of(BQ_TABLESPACE_MAP_MAX)};
    r.n_tablespaces = 2;
    r.tablespaces = ts;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REQUEST, &r.base);
    free(ts[1]);
    return b;
}

/* An envelope around raw body bytes (for what the generated structs cannot express). */
static bytes_t envelope_raw(int type, const uint8_t *body, size_t n)
{
    Barque__Envelope env = BARQUE__ENVELOPE__INIT;
    env.version = BQ_PROTO_VERSION;
    env.type = (Barque__MsgType)type;
    env.seq = 77;
    env.body.data = (uint8_t *)body;
    env.body.len = n;
    return pack_msg(&env.base);
}

static bytes_t bad_nul_progress(void)
{
    static const uint8_t body[] = {0x2a, 3, 'a', 0, 'b'}; /* JobProgress.message "a\0b" */
    return envelope_raw(BQ_MSG_JOB_PROGRESS, body, sizeof body);
}

static bytes_t bad_nul_nested(void)
{
    /* CliReply.workers[0] = Worker{name: "a\0b"} */
    static const uint8_t body[] = {0x1a, 5, 0x0a, 3, 'a', 0, 'b'};
    return envelope_raw(BQ_MSG_CLI_REPLY, body, sizeof body);
}

static bytes_t progress_wal_file(const char *name)
{
    Barque__JobProgress p = BARQUE__JOB_PROGRESS__INIT;
    p.job_id = 3;
    p.wal_file = (char *)name;
    p.wal_size = 16777216;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_PROGRESS, &p.base);
}

static bytes_t bad_progress_wal_lower(void) { return progress_wal_file("00000001000000000000000a"); }
static bytes_t bad_progress_wal_tli0(void) { return progress_wal_file("00000000.history"); }
static bytes_t bad_progress_wal_path(void) { return progress_wal_file("../000000010000000000000001"); }
static bytes_t bad_progress_wal_long(void)
{
    return progress_wal_file("000000010000000000000001.partial.partial");
}

/* A CliReply with one timeline, edited by fn. */
static bytes_t reply_timeline(void (*fn)(Barque__WalTimeline *t))
{
    static char *gaps[BQ_WAL_GAPS_MAX + 1], *partials[BQ_WAL_PARTIALS_MAX + 1];
    Barque__WalTimeline t = BARQUE__WAL_TIMELINE__INIT, *tp = &t;
    t.tli = 1;
    t.first = "000000010000000000000001";
    t.last = "000000010000000000000009";
    t.gaps = gaps;
    t.partials = partials;
    fn(&t);
    Barque__CliReply r = BARQUE__CLI_REPLY__INIT;
    r.n_timelines = 1;
    r.timelines = &tp;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REPLY, &r.base);
}

static void tl_zero(Barque__WalTimeline *t) { t->tli = 0; }
static void tl_first_history(Barque__WalTimeline *t) { t->first = "00000001.history"; }
static void tl_last_partial(Barque__WalTimeline *t) { t->last = "000000010000000000000009.partial"; }
static void tl_gaps_many(Barque__WalTimeline *t)
{
    t->n_gaps = BQ_WAL_GAPS_MAX + 1;
    for (size_t i = 0; i < t->n_gaps; i++)
        t->gaps[i] = "000000010000000000000002";
}
static void tl_gap_long(Barque__WalTimeline *t)
{
    static char gap[BQ_WAL_GAP_MAX + 1];
    memset(gap, 'g', BQ_WAL_GAP_MAX);
    t->n_gaps = 1;
    t->gaps[0] = gap;
}
static void tl_partials_many(Barque__WalTimeline *t)
{
    t->n_partials = BQ_WAL_PARTIALS_MAX + 1;
    for (size_t i = 0; i < t->n_partials; i++)
        t->partials[i] = "000000010000000000000009.partial";
}
static bytes_t bad_tl_zero(void) { return reply_timeline(tl_zero); }
static bytes_t bad_tl_first(void) { return reply_timeline(tl_first_history); }
static bytes_t bad_tl_last(void) { return reply_timeline(tl_last_partial); }
static bytes_t bad_tl_gaps(void) { return reply_timeline(tl_gaps_many); }
static bytes_t bad_tl_gap_long(void) { return reply_timeline(tl_gap_long); }
static bytes_t bad_tl_partials(void) { return reply_timeline(tl_partials_many); }

static bytes_t bad_reply_timeline_rows(void)
{
    Barque__CliReply r = BARQUE__CLI_REPLY__INIT;
    Barque__WalTimeline t = BARQUE__WAL_TIMELINE__INIT;
    t.tli = 1;
    r.n_timelines = 10001;
    r.timelines = calloc(r.n_timelines, sizeof *r.timelines);
    for (size_t i = 0; i < r.n_timelines; i++)
        r.timelines[i] = &t;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REPLY, &r.base);
    free(r.timelines);
    return b;
}

typedef struct {
    const char *name;
    bytes_t (*build)(void);
    int code;
    const char *msg; /* a substring of the error message */
} bad_case_t;

static bytes_t bad_data_id_len(void)
{
    Barque__DataRequest q = BARQUE__DATA_REQUEST__INIT;
    ProtobufCBinaryData id = {.len = 31, .data = (uint8_t *)"0123456789012345678901234567890"};
    q.op = "chunks";
    q.n_ids = 1;
    q.ids = &id;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_DATA_REQUEST, &q.base);
}

static bytes_t bad_data_too_many_ids(void)
{
    static ProtobufCBinaryData ids[BQ_DATA_IDS_MAX + 1];
    static uint8_t id[BQ_CHUNK_ID_BYTES];
    for (size_t i = 0; i <= BQ_DATA_IDS_MAX; i++)
        ids[i] = (ProtobufCBinaryData){.len = BQ_CHUNK_ID_BYTES, .data = id};
    Barque__DataRequest q = BARQUE__DATA_REQUEST__INIT;
    q.op = "chunks";
    q.n_ids = BQ_DATA_IDS_MAX + 1;
    q.ids = ids;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_DATA_REQUEST, &q.base);
}

static bytes_t bad_data_past_total(void)
{
    Barque__DataReply r = BARQUE__DATA_REPLY__INIT;
    r.data.len = 10;
    r.data.data = (uint8_t *)"0123456789";
    r.offset = 5;
    r.total = 12;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_DATA_REPLY, &r.base);
}

static bytes_t bad_data_code(void)
{
    Barque__DataReply r = BARQUE__DATA_REPLY__INIT;
    r.code = 3;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_DATA_REPLY, &r.base);
}

static bytes_t bad_peer_key(void)
{
    Barque__PeerKey k = BARQUE__PEER_KEY__INIT, *kp = &k;
    k.name = "east-1";
    k.public_key = "short";
    Barque__PeerKeys p = BARQUE__PEER_KEYS__INIT;
    p.version = 1;
    p.n_keys = 1;
    p.keys = &kp;
    return envelope(BQ_PROTO_VERSION, BQ_MSG_PEER_KEYS, &p.base);
}

static const bad_case_t bad_msgs[] = {
    {"empty input", bad_empty, BQ_E_PROTO, "could not decode message: it is empty"},
    {"oversized input", bad_oversized, BQ_E_TOOBIG,
     "could not decode message: it is 4194305 bytes, over the 4194304-byte limit"},
    {"random garbage", bad_garbage, BQ_E_PROTO,
     "could not decode message: not a valid Envelope (14 bytes)"},
    {"truncated envelope", bad_truncated, BQ_E_PROTO, "not a valid Envelope"},
    {"version 2", bad_version2, BQ_E_VERSION,
     "could not decode message seq 77: unsupported protocol version 2 (this side speaks 1)"},
    {"version missing", bad_version0, BQ_E_VERSION,
     "unsupported protocol version 0 (this side speaks 1)"},
    {"chunk id of 31 bytes", bad_data_id_len, BQ_E_PROTO,
     "could not decode DATA_REQUEST message seq 77: DataRequest.ids[0] is 31 bytes, not 32"},
    {"too many chunk ids", bad_data_too_many_ids, BQ_E_PROTO,
     "DataRequest has 257 ids, more than the limit of 256"},
    {"data past its total", bad_data_past_total, BQ_E_PROTO,
     "DataReply's 10 bytes at offset 5 run past its total of 12"},
    {"positive reply code", bad_data_code, BQ_E_PROTO, "DataReply.code is 3, not 0 or negative"},
    {"short peer key", bad_peer_key, BQ_E_PROTO,
     "PeerKey.public_key of east-1 is 5 characters, not 40"},
    {"unknown type", bad_type99, BQ_E_MSGTYPE,
     "could not decode message seq 77: unknown message type 99"},
    {"type NONE", bad_type_none, BQ_E_MSGTYPE, "unknown message type 0"},
    {"negative type", bad_type_negative, BQ_E_MSGTYPE, "unknown message type -3"},
    {"body of wrong type", bad_wrong_body, BQ_E_PROTO,
     "could not decode JOB_ACCEPT message seq 77: not a valid JobRef"},
    {"garbage body", bad_garbage_body, BQ_E_PROTO,
     "could not decode JOB_OFFER message seq 0: not a valid Job (3 bytes)"},
    {"hello without worker", bad_hello_no_worker, BQ_E_PROTO,
     "could not decode REGISTER message seq 77: WorkerHello.worker is missing"},
    {"long Job.cluster", bad_long_cluster, BQ_E_PROTO,
     "could not decode JOB_OFFER message seq 77: Job.cluster is 64 bytes, longer than its limit of 63"},
    {"long CliRequest.verb", bad_long_verb, BQ_E_PROTO,
     "CliRequest.verb is 32 bytes, longer than its limit of 31"},
    {"long Error.message", bad_long_error, BQ_E_PROTO,
     "Error.message is 1024 bytes, longer than its limit of 1023"},
    {"long Worker.version", bad_long_worker_version, BQ_E_PROTO,
     "could not decode HEARTBEAT message seq 77: Worker.version is 32 bytes"},
    {"long Site.name", bad_long_site_in_reply, BQ_E_PROTO,
     "could not decode CLI_REPLY message seq 77: Site.name is 64 bytes"},
    {"long CheckItem.detail", bad_item_detail, BQ_E_PROTO,
     "CheckItem.detail is 256 bytes, longer than its limit of 255"},
    {"too many check items", bad_items, BQ_E_PROTO,
     "could not decode JOB_RESULT message seq 77: CheckResult has 33 items, more than the limit of 32"},
    {"slots too long", bad_slots_long, BQ_E_PROTO,
     "CheckResult.slots joined by ',' are longer than their limit of 511 bytes"},
    {"empty slot name", bad_slots_empty, BQ_E_PROTO, "CheckResult.slots[1] is an empty slot name"},
    {"slot name with comma", bad_slots_comma, BQ_E_PROTO, "CheckResult.slots[0] contains ','"},
    {"too many running refs", bad_running, BQ_E_PROTO,
     "WorkerHello has 1025 running jobs, more than the limit of 1024"},
    {"too many reply rows", bad_reply_rows, BQ_E_PROTO,
     "CliReply has 10001 jobs, more than the limit of 10000"},
    {"NUL inside a string", bad_nul_progress, BQ_E_PROTO,
     "could not decode JOB_PROGRESS message seq 77: JobProgress.message contains a NUL byte"},
    {"NUL inside a nested string", bad_nul_nested, BQ_E_PROTO,
     "could not decode CLI_REPLY message seq 77: Worker.name contains a NUL byte"},
    {"too many files in a result", bad_files_many, BQ_E_PROTO,
     "could not decode JOB_RESULT message seq 77: JobResult has 5001 files, more than the limit of 5000"},
    {"empty file path", bad_files_empty_path, BQ_E_PROTO,
     "JobResult.files[0].path is 0 bytes, not 1..4351"},
    {"file path too long", bad_files_long_path, BQ_E_PROTO,
     "JobResult.files[0].path is 4352 bytes, not 1..4351"},
    {"too many files in a reply", bad_reply_files_many, BQ_E_PROTO,
     "could not decode CLI_REPLY message seq 77: CliReply has 5001 files, more than the limit of 5000"},
    {"bad job type", bad_job_type, BQ_E_PROTO, "Job.type has unknown value 15"},
    {"negative job type", bad_job_type_neg, BQ_E_PROTO, "Job.type has unknown value -1"},
    {"bad job state", bad_job_state, BQ_E_PROTO, "Job.state has unknown value 7"},
    {"Job.delta_from not a backup id", bad_job_delta_from, BQ_E_PROTO,
     "could not decode JOB_OFFER message seq 77: Job.delta_from is not a backup id (YYYYMMDDTHHMMSS)"},
    {"long Job.delta_from", bad_long_job_delta_from, BQ_E_PROTO,
     "Job.delta_from is 32 bytes, longer than its limit of 31"},
    {"bad job state in reply", bad_reply_job_state, BQ_E_PROTO,
     "could not decode CLI_REPLY message seq 77: Job.state has unknown value 100"},
    {"bad backup state", bad_backup_state, BQ_E_PROTO,
     "could not decode JOB_RESULT message seq 77: Backup.state has unknown value 6"},
    {"negative backup state", bad_backup_state_neg, BQ_E_PROTO,
     "Backup.state has unknown value -2"},
    {"bad backup state in reply", bad_reply_backup_state, BQ_E_PROTO,
     "could not decode CLI_REPLY message seq 77: Backup.state has unknown value 77"},
    {"long Backup.id", bad_backup_id, BQ_E_PROTO,
     "could not decode JOB_RESULT message seq 77: Backup.id is 32 bytes, longer than its limit of 31"},
    {"long Backup.checksum_detail", bad_backup_detail, BQ_E_PROTO,
     "Backup.checksum_detail is 256 bytes, longer than its limit of 255"},
    {"empty store name", bad_backup_stores_empty, BQ_E_PROTO,
     "Backup.stores[1] is an empty worker name"},
    {"store name with comma", bad_backup_stores_comma, BQ_E_PROTO, "Backup.stores[0] contains ','"},
    {"stores too long", bad_backup_stores_long, BQ_E_PROTO,
     "Backup.stores joined by ',' are longer than their limit of 255 bytes"},
    {"too many backup rows", bad_reply_backup_rows, BQ_E_PROTO,
     "CliReply has 10001 backups, more than the limit of 10000"},
    {"long Job.dest", bad_long_job_dest, BQ_E_PROTO,
     "could not decode JOB_OFFER message seq 77: Job.dest is 1024 bytes, longer than its limit of 1023"},
    {"long Job.checkpoint", bad_long_job_checkpoint, BQ_E_PROTO,
     "Job.checkpoint is 8 bytes, longer than its limit of 7"},
    {"long CliRequest.backup_id", bad_long_request_backup_id, BQ_E_PROTO,
     "could not decode CLI_REQUEST message seq 77: CliRequest.backup_id is 32 bytes, longer than its limit of 31"},
    {"long CliRequest.owner", bad_long_request_owner, BQ_E_PROTO,
     "CliRequest.owner is 64 bytes, longer than its limit of 63"},
    {"too many tablespaces", bad_tablespaces_count, BQ_E_PROTO,
     "CliRequest has 257 tablespaces, more than the limit of 256"},
    {"long tablespace mapping", bad_tablespace_long, BQ_E_PROTO,
     "CliRequest.tablespaces is 1088 bytes, longer than its limit of 1087"},
    {"lowercase WAL file name", bad_progress_wal_lower, BQ_E_PROTO,
     "could not decode JOB_PROGRESS message seq 77: JobProgress.wal_file "
     "\"00000001000000000000000a\" is not a WAL file name"},
    {"WAL history of timeline 0", bad_progress_wal_tli0, BQ_E_PROTO,
     "JobProgress.wal_file \"00000000.history\" is not a WAL file name"},
    {"WAL file name with a path", bad_progress_wal_path, BQ_E_PROTO,
     "JobProgress.wal_file \"../000000010000000000000001\" is not a WAL file name"},
    {"long WAL file name", bad_progress_wal_long, BQ_E_PROTO,
     "JobProgress.wal_file is 40 bytes, longer than its limit of 39"},
    {"timeline 0", bad_tl_zero, BQ_E_PROTO,
     "could not decode CLI_REPLY message seq 77: WalTimeline.tli is 0"},
    {"timeline's first not a segment", bad_tl_first, BQ_E_PROTO,
     "WalTimeline.first \"00000001.history\" is not a WAL segment name"},
    {"timeline's last not a segment", bad_tl_last, BQ_E_PROTO,
     "WalTimeline.last \"000000010000000000000009.partial\" is not a WAL segment name"},
    {"too many gaps", bad_tl_gaps, BQ_E_PROTO, "WalTimeline 1 has 34 gaps, more than the limit of 33"},
    {"long gap", bad_tl_gap_long, BQ_E_PROTO,
     "WalTimeline.gaps is 64 bytes, longer than its limit of 63"},
    {"too many partials", bad_tl_partials, BQ_E_PROTO,
     "WalTimeline 1 has 34 partials, more than the limit of 33"},
    {"too many timelines", bad_reply_timeline_rows, BQ_E_PROTO,
     "CliReply has 10001 timelines, more than the limit of 10000"},
};

static void test_bad_msgs(void **state)
{
    for (size_t i = 0; i < sizeof bad_msgs / sizeof bad_msgs[0]; i++) {
        const bad_case_t *c = &bad_msgs[i];
        bytes_t b = c->build();
        bq_msg_t m;
        memset(&m, 0xa5, sizeof m); /* decode must clear whatever was there */
        bq_errbuf_t e = {{0}};
        int rc = proto_msg_decode(b.buf, b.len, &m, &e);
        free(b.buf);
        if (rc != c->code || !strstr(e.msg, c->msg))
            fail_msg("case \"%s\": got %s \"%s\", want %s containing \"%s\"", c->name,
                     bq_err_name(rc), e.msg, bq_err_name(c->code), c->msg);
        if (!is_zero(&m, sizeof m))
            fail_msg("case \"%s\": message not cleared after failure", c->name);
    }
}

/* ---- bad records --------------------------------------------------------------------- */

static bytes_t rec_job_state(void)
{
    Barque__Job j = BARQUE__JOB__INIT;
    j.id = 3;
    j.state = (Barque__JobState)9;
    return pack_msg(&j.base);
}

static bytes_t rec_job_slots(void)
{
    Barque__Job j = BARQUE__JOB__INIT;
    Barque__CheckResult c = BARQUE__CHECK_RESULT__INIT;
    slots_comma(&c);
    j.check = &c;
    bytes_t b = pack_msg(&j.base);
    free(c.slots);
    return b;
}

static bytes_t rec_cluster_conninfo(void)
{
    Barque__Cluster c = BARQUE__CLUSTER__INIT;
    c.conninfo = str_of(BQ_CONNINFO_MAX);
    bytes_t b = pack_msg(&c.base);
    free(c.conninfo);
    return b;
}

static bytes_t rec_worker_name(void)
{
    Barque__Worker w = BARQUE__WORKER__INIT;
    w.name = str_of(BQ_NAME_MAX + 100);
    bytes_t b = pack_msg(&w.base);
    free(w.name);
    return b;
}

static bytes_t rec_cluster_nul(void)
{
    static const uint8_t rec[] = {0x0a, 5, 'a', 'b', 0, 'c', 'd'}; /* name "ab\0cd" */
    bytes_t b = {malloc(sizeof rec), sizeof rec};
    assert_non_null(b.buf);
    memcpy(b.buf, rec, sizeof rec);
    return b;
}

static bytes_t rec_backup_state(void)
{
    Barque__Backup b = BARQUE__BACKUP__INIT;
    b.id = "20240101T000000";
    b.state = (Barque__BackupState)9;
    return pack_msg(&b.base);
}

static bytes_t rec_backup_error(void)
{
    Barque__Backup b = BARQUE__BACKUP__INIT;
    b.error = str_of(BQ_TEXT_MAX);
    bytes_t out = pack_msg(&b.base);
    free(b.error);
    return out;
}

static bytes_t rec_backup_wal_nul(void)
{
    static const uint8_t rec[] = {0x82, 0x01, 3, '0', 0, '1'}; /* wal_begin (16) "0\01" */
    bytes_t b = {malloc(sizeof rec), sizeof rec};
    assert_non_null(b.buf);
    memcpy(b.buf, rec, sizeof rec);
    return b;
}

static bytes_t rec_wal_name(void)
{
    Barque__WalFile w = BARQUE__WAL_FILE__INIT;
    w.cluster = "db1";
    w.name = "000000010000000000000001.backup";
    return pack_msg(&w.base);
}

static bytes_t rec_wal_stores(void)
{
    char *stores[] = {"east-1", ""};
    Barque__WalFile w = BARQUE__WAL_FILE__INIT;
    w.name = "000000010000000000000001";
    w.n_stores = 2;
    w.stores = stores;
    return pack_msg(&w.base);
}

typedef enum { REC_JOB, REC_WORKER, REC_CLUSTER, REC_BACKUP, REC_WAL } rec_kind_t;

typedef struct {
    const char *name;
    rec_kind_t kind;
    bytes_t (*build)(void);
    int code;
    const char *msg;
} bad_rec_t;

static const bad_rec_t bad_recs[] = {
    {"job garbage", REC_JOB, bad_garbage, BQ_E_PROTO, "could not decode Job record: not a valid Job"},
    {"job oversized", REC_JOB, bad_oversized, BQ_E_TOOBIG,
     "could not decode Job record: it is 4194305 bytes"},
    {"job bad state", REC_JOB, rec_job_state, BQ_E_PROTO,
     "could not decode Job record: Job.state has unknown value 9"},
    {"job slot with comma", REC_JOB, rec_job_slots, BQ_E_PROTO, "CheckResult.slots[0] contains ','"},
    {"worker garbage", REC_WORKER, bad_garbage, BQ_E_PROTO,
     "could not decode Worker record: not a valid Worker"},
    {"worker long name", REC_WORKER, rec_worker_name, BQ_E_PROTO,
     "could not decode Worker record: Worker.name is 164 bytes, longer than its limit of 63"},
    {"cluster long conninfo", REC_CLUSTER, rec_cluster_conninfo, BQ_E_PROTO,
     "could not decode Cluster record: Cluster.conninfo is 1024 bytes, longer than its limit of 1023"},
    {"cluster name with NUL", REC_CLUSTER, rec_cluster_nul, BQ_E_PROTO,
     "could not decode Cluster record: Cluster.name contains a NUL byte"},
    {"cluster oversized", REC_CLUSTER, bad_oversized, BQ_E_TOOBIG, "over the 4194304-byte limit"},
    {"backup garbage", REC_BACKUP, bad_garbage, BQ_E_PROTO,
     "could not decode Backup record: not a valid Backup"},
    {"backup bad state", REC_BACKUP, rec_backup_state, BQ_E_PROTO,
     "could not decode Backup record: Backup.state has unknown value 9"},
    {"backup long error", REC_BACKUP, rec_backup_error, BQ_E_PROTO,
     "could not decode Backup record: Backup.error is 1024 bytes, longer than its limit of 1023"},
    {"backup WAL name with NUL", REC_BACKUP, rec_backup_wal_nul, BQ_E_PROTO,
     "could not decode Backup record: Backup.wal_begin contains a NUL byte"},
    {"backup oversized", REC_BACKUP, bad_oversized, BQ_E_TOOBIG, "over the 4194304-byte limit"},
    {"WAL file garbage", REC_WAL, bad_garbage, BQ_E_PROTO,
     "could not decode WalFile record: not a valid WalFile"},
    {"WAL file of another kind", REC_WAL, rec_wal_name, BQ_E_PROTO,
     "could not decode WalFile record: WalFile.name \"000000010000000000000001.backup\" is not a "
     "WAL file name"},
    {"WAL file in an empty store", REC_WAL, rec_wal_stores, BQ_E_PROTO,
     "WalFile.stores[1] is an empty worker name"},
};

static void test_bad_records(void **state)
{
    for (size_t i = 0; i < sizeof bad_recs / sizeof bad_recs[0]; i++) {
        const bad_rec_t *c = &bad_recs[i];
        bytes_t b = c->build();
        bq_errbuf_t e = {{0}};
        static bq_job_t j;
        static bq_backup_t bk;
        bq_wal_file_t wf;
        bq_worker_t w;
        bq_cluster_t cl;
        void *out;
        size_t outlen;
        int rc;
        switch (c->kind) {
        case REC_JOB:
            memset(&j, 0xa5, sizeof j);
            rc = proto_job_decode(b.buf, b.len, &j, &e);
            out = &j, outlen = sizeof j;
            break;
        case REC_WORKER:
            memset(&w, 0xa5, sizeof w);
            rc = proto_worker_decode(b.buf, b.len, &w, &e);
            out = &w, outlen = sizeof w;
            break;
        case REC_BACKUP:
            memset(&bk, 0xa5, sizeof bk);
            rc = proto_backup_decode(b.buf, b.len, &bk, &e);
            out = &bk, outlen = sizeof bk;
            break;
        case REC_WAL:
            memset(&wf, 0xa5, sizeof wf);
            rc = proto_wal_file_decode(b.buf, b.len, &wf, &e);
            out = &wf, outlen = sizeof wf;
            break;
        default:
            memset(&cl, 0xa5, sizeof cl);
            rc = proto_cluster_decode(b.buf, b.len, &cl, &e);
            out = &cl, outlen = sizeof cl;
            break;
        }
        free(b.buf);
        if (rc != c->code || !strstr(e.msg, c->msg))
            fail_msg("case \"%s\": got %s \"%s\", want %s containing \"%s\"", c->name,
                     bq_err_name(rc), e.msg, bq_err_name(c->code), c->msg);
        if (!is_zero(out, outlen))
            fail_msg("case \"%s\": record not cleared after failure", c->name);
    }
}

static void test_clear_null(void **state)
{
    proto_msg_clear(NULL);
    bq_msg_t m = {0};
    proto_msg_clear(&m);
    assert_true(is_zero(&m, sizeof m));
}

/* ---- restore tests (issue 7) --------------------------------------------------------- */

/* A restore test at its widest: every string at its longest, figures at their extremes,
 * BQ_RT_CHECKS_MAX checks of each severity (an item decodes with its severity, so the
 * values are the ones decode makes: ok with OK, not ok with WARNING/CRITICAL/UNKNOWN). */
static void rtest_full(bq_restore_test_t *t, char seed)
{
    memset(t, 0, sizeof *t);
    FILL_MAX(t->cluster, seed);
    t->job_id = UINT64_MAX - (uint64_t)seed;
    t->attempt = UINT32_MAX;
    snprintf(t->backup_id, sizeof t->backup_id, "20261201T10%02d00", seed % 60);
    snprintf(t->kind, sizeof t->kind, "%s", seed % 3 == 0 ? "scheduled" : seed % 3 == 1 ? "manual"
                                                                                      : "drill");
    FILL_MAX(t->worker, (char)(seed + 1));
    FILL_MAX(t->site, (char)(seed + 2));
    FILL_MAX(t->read_from, (char)(seed + 3));
    t->ok = seed % 2;
    FILL_MAX(t->error, (char)(seed + 4));
    FILL_MAX(t->target, (char)(seed + 5));
    t->started_ms = 1764583200000 + seed;
    t->finished_ms = INT64_MAX;
    t->reached_lsn = UINT64_MAX;
    t->reached_ms = INT64_MIN;
    t->wal_segments = UINT64_MAX - 1;
    t->wal_bytes = 1ULL << 40;
    t->bytes = UINT64_MAX;
    t->fetch_ms = 12300;
    t->start_ms = -1;
    t->replay_ms = INT64_MAX - 1;
    t->rto_ms = 17000;
    t->check_ms = 2000;
    t->predicted_ms = 15000 + seed;
    t->nchecks = BQ_RT_CHECKS_MAX;
    for (size_t i = 0; i < t->nchecks; i++) {
        bq_check_item_t *it = &t->checks[i];
        FILL_MAX(it->name, (char)(seed + i));
        FILL_MAX(it->detail, (char)(seed + 2 * i));
        it->severity = (int)(i % 4);
        it->ok = it->severity == BQ_SEV_OK;
    }
}

/* A cluster's status fields of restore tests, at their widest. */
static void cluster_rt_full(bq_cluster_t *c, char seed)
{
    cluster_full(c, seed);
    c->rt_last_ms = INT64_MAX;
    c->rt_last_ok = 1;
    snprintf(c->rt_last_backup, sizeof c->rt_last_backup, "20261201T100000");
    FILL_MAX(c->rt_last_error, (char)(seed + 3));
    c->rt_ok_ms = 1764583200123;
    snprintf(c->rt_ok_backup, sizeof c->rt_ok_backup, "20261130T100000");
    c->rt_ok_rto_ms = INT64_MAX - 1;
    c->rt_predicted_ms = 14100;
    FILL_MAX(c->rt_predicted_detail, (char)(seed + 4));
    c->rt_severity = BQ_SEV_UNKNOWN;
}

/* A restore-test job's result carries its RestoreTest whole, passed or failed. */
static void test_rtest_result(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_JOB_RESULT, .seq = 14}, out;
    in.u.result = calloc(1, sizeof *in.u.result);
    assert_non_null(in.u.result);
    in.u.result->job_id = UINT64_MAX;
    in.u.result->attempt = 2;
    in.u.result->ok = 1;
    in.u.result->has_rtest = 1;
    rtest_full(&in.u.result->rtest, 1);
    roundtrip(&in, &out);
    assert_true(out.u.result->has_rtest);
    assert_memory_equal(&out.u.result->rtest, &in.u.result->rtest, sizeof in.u.result->rtest);
    assert_memory_equal(out.u.result, in.u.result, sizeof *in.u.result);
    assert_int_equal(out.u.result->rtest.nchecks, BQ_RT_CHECKS_MAX);
    assert_int_equal(out.u.result->rtest.checks[3].severity, BQ_SEV_UNKNOWN);
    proto_msg_clear(&out);

    /* a failed test with no checks (the restore itself failed) */
    memset(&in.u.result->rtest, 0, sizeof in.u.result->rtest);
    in.u.result->ok = 0;
    in.u.result->retryable = 1;
    snprintf(in.u.result->error, sizeof in.u.result->error, "scratch is full");
    snprintf(in.u.result->rtest.cluster, sizeof in.u.result->rtest.cluster, "db1");
    in.u.result->rtest.job_id = 42;
    snprintf(in.u.result->rtest.error, sizeof in.u.result->rtest.error,
             "could not restore backup 20261201T100000 into /srv/scratch: no space left");
    roundtrip(&in, &out);
    assert_memory_equal(out.u.result, in.u.result, sizeof *in.u.result);
    assert_int_equal(out.u.result->rtest.nchecks, 0);
    proto_msg_clear(&out);

    /* and a result without one says so */
    in.u.result->has_rtest = 0;
    memset(&in.u.result->rtest, 0, sizeof in.u.result->rtest);
    roundtrip(&in, &out);
    assert_false(out.u.result->has_rtest);
    proto_msg_clear(&out);
    proto_msg_clear(&in);
}

/* restore-tests rows (two, with checks), the status fields of clusters, the scratch space
 * of workers in a CLI_REPLY. */
static void test_rtest_reply(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_CLI_REPLY, .seq = 15}, out;
    bq_msg_cli_reply_t *r = &in.u.cli_reply;
    r->job_id = 42;
    r->nrtests = 2;
    r->rtests = calloc(2, sizeof *r->rtests);
    r->nclusters = 2;
    r->clusters = calloc(2, sizeof *r->clusters);
    r->nworkers = 1;
    r->workers = calloc(1, sizeof *r->workers);
    assert_true(r->rtests && r->clusters && r->workers);
    rtest_full(&r->rtests[0], 2);
    rtest_full(&r->rtests[1], 3);
    r->rtests[1].nchecks = 2; /* fewer checks: an OK one and a WARNING one */
    memset(&r->rtests[1].checks[2], 0, (BQ_RT_CHECKS_MAX - 2) * sizeof r->rtests[1].checks[0]);
    cluster_rt_full(&r->clusters[0], 'a');
    cluster_full(&r->clusters[1], 'b'); /* never tested: all zero */
    worker_full(&r->workers[0], 'w');
    r->workers[0].scratch_free = 1ULL << 39;
    r->workers[0].scratch_total = UINT64_MAX;
    roundtrip(&in, &out);
    bq_msg_cli_reply_t *o = &out.u.cli_reply;
    assert_int_equal(o->nrtests, 2);
    assert_memory_equal(o->rtests, r->rtests, 2 * sizeof *r->rtests);
    assert_int_equal(o->rtests[1].nchecks, 2);
    assert_true(o->rtests[1].checks[0].ok && !o->rtests[1].checks[1].ok);
    assert_int_equal(o->rtests[1].checks[1].severity, BQ_SEV_WARNING);
    assert_int_equal(o->nclusters, 2);
    assert_memory_equal(o->clusters, r->clusters, 2 * sizeof *r->clusters);
    assert_int_equal(o->clusters[0].rt_severity, BQ_SEV_UNKNOWN);
    assert_true(o->clusters[1].rt_last_ms == 0 && o->clusters[1].rt_severity == BQ_SEV_OK);
    assert_memory_equal(o->workers, r->workers, sizeof *r->workers);
    assert_true(o->workers[0].scratch_total == UINT64_MAX);
    proto_msg_clear(&out);
    assert_true(is_zero(&out, sizeof out));
    proto_msg_clear(&in);
}

/* CliRequest.from_site (restore-test, drill) with the recovery target it goes with, and the
 * worker's scratch space in its hello. */
static void test_rtest_request_hello(void **state)
{
    bq_msg_t in = {.type = BQ_MSG_CLI_REQUEST, .seq = 16}, out;
    snprintf(in.u.cli_req.verb, sizeof in.u.cli_req.verb, "restore-test");
    snprintf(in.u.cli_req.cluster, sizeof in.u.cli_req.cluster, "db1");
    snprintf(in.u.cli_req.backup_id, sizeof in.u.cli_req.backup_id, "latest");
    FILL_MAX(in.u.cli_req.from_site, 7);
    in.u.cli_req.recovery.enabled = 1;
    snprintf(in.u.cli_req.recovery.kind, sizeof in.u.cli_req.recovery.kind, "time");
    snprintf(in.u.cli_req.recovery.value, sizeof in.u.cli_req.recovery.value,
             "2026-12-01 10:00:00.000000+00");
    in.u.cli_req.recovery.time_ms = 1796119200000;
    roundtrip(&in, &out);
    assert_memory_equal(&out.u.cli_req, &in.u.cli_req, sizeof in.u.cli_req);
    assert_int_equal(strlen(out.u.cli_req.from_site), BQ_NAME_MAX - 1);
    proto_msg_clear(&out);

    /* drill: from_site alone */
    memset(&in.u.cli_req, 0, sizeof in.u.cli_req);
    snprintf(in.u.cli_req.verb, sizeof in.u.cli_req.verb, "drill");
    snprintf(in.u.cli_req.from_site, sizeof in.u.cli_req.from_site, "west");
    roundtrip(&in, &out);
    assert_string_equal(out.u.cli_req.from_site, "west");
    assert_false(out.u.cli_req.recovery.enabled);
    proto_msg_clear(&out);

    bq_msg_t h = {.type = BQ_MSG_HEARTBEAT, .seq = 17};
    worker_full(&h.u.hello.worker, 's');
    h.u.hello.worker.scratch_free = 0;
    h.u.hello.worker.scratch_total = 1ULL << 41;
    roundtrip(&h, &out);
    assert_memory_equal(&out.u.hello.worker, &h.u.hello.worker, sizeof h.u.hello.worker);
    assert_true(out.u.hello.worker.scratch_total == 1ULL << 41);
    proto_msg_clear(&out);
}

/* The catalog's records: RestoreTest (restore_tests), Cluster with its rt_* fields, Worker
 * with its scratch space. */
static void test_rtest_records(void **state)
{
    bq_errbuf_t e = {{0}};
    uint8_t *buf;
    size_t len;
    static bq_restore_test_t t, t2;
    rtest_full(&t, 4);
    assert_int_equal(proto_rtest_encode(&t, &buf, &len, &e), 0);
    memset(&t2, 0xa5, sizeof t2);
    assert_int_equal(proto_rtest_decode(buf, len, &t2, &e), 0);
    assert_memory_equal(&t, &t2, sizeof t);
    free(buf);
    memset(&t, 0, sizeof t);
    assert_int_equal(proto_rtest_encode(&t, &buf, &len, &e), 0);
    assert_int_equal(len, 0);
    assert_int_equal(proto_rtest_decode(buf, len, &t2, &e), 0);
    assert_memory_equal(&t, &t2, sizeof t);
    free(buf);

    bq_cluster_t c, c2;
    cluster_rt_full(&c, 'r');
    assert_int_equal(proto_cluster_encode(&c, &buf, &len, &e), 0);
    assert_int_equal(proto_cluster_decode(buf, len, &c2, &e), 0);
    assert_memory_equal(&c, &c2, sizeof c);
    free(buf);

    bq_worker_t w, w2;
    worker_full(&w, 'k');
    w.scratch_free = UINT64_MAX - 1;
    w.scratch_total = UINT64_MAX;
    assert_int_equal(proto_worker_encode(&w, &buf, &len, &e), 0);
    assert_int_equal(proto_worker_decode(buf, len, &w2, &e), 0);
    assert_memory_equal(&w, &w2, sizeof w);
    free(buf);
}

/* More checks than a RestoreTest holds (17 > BQ_RT_CHECKS_MAX) are refused on encode, in a
 * result, a reply and a record, never truncated; and on decode; a Cluster's rt_severity out
 * of range is refused too. */
static void test_rtest_refusals(void **state)
{
    bq_errbuf_t e = {{0}};
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_msg_t m = {.type = BQ_MSG_JOB_RESULT, .seq = 18};
    m.u.result = calloc(1, sizeof *m.u.result);
    assert_non_null(m.u.result);
    m.u.result->has_rtest = 1;
    rtest_full(&m.u.result->rtest, 5);
    m.u.result->rtest.nchecks = BQ_RT_CHECKS_MAX + 1;
    assert_int_equal(BQ_RT_CHECKS_MAX + 1, 17);
    assert_int_equal(proto_msg_encode(&m, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "could not encode JOB_RESULT message seq 18: RestoreTest has "
                                  "17 items, more than the limit of 16"));
    assert_null(buf);
    assert_int_equal(proto_rtest_encode(&m.u.result->rtest, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "could not encode RestoreTest record"));
    assert_non_null(strstr(e.msg, "RestoreTest has 17 items, more than the limit of 16"));
    assert_null(buf);

    bq_msg_t r = {.type = BQ_MSG_CLI_REPLY, .seq = 19};
    r.u.cli_reply.nrtests = 2;
    r.u.cli_reply.rtests = calloc(2, sizeof *r.u.cli_reply.rtests);
    assert_non_null(r.u.cli_reply.rtests);
    r.u.cli_reply.rtests[1] = m.u.result->rtest;
    assert_int_equal(proto_msg_encode(&r, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "RestoreTest has 17 items, more than the limit of 16"));
    assert_null(buf);
    proto_msg_clear(&r);
    proto_msg_clear(&m);

    bq_cluster_t c;
    cluster_rt_full(&c, 'x');
    c.rt_severity = 4;
    assert_int_equal(proto_cluster_encode(&c, &buf, &len, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "Cluster.rt_severity has unknown value 4"));

    /* a peer that sends 17 anyway is refused on decode */
    Barque__JobResult jr = BARQUE__JOB_RESULT__INIT;
    Barque__RestoreTest rt = BARQUE__RESTORE_TEST__INIT;
    Barque__CheckItem it = BARQUE__CHECK_ITEM__INIT;
    Barque__CheckItem *items[BQ_RT_CHECKS_MAX + 1];
    for (size_t i = 0; i < BQ_RT_CHECKS_MAX + 1; i++)
        items[i] = &it;
    rt.n_checks = BQ_RT_CHECKS_MAX + 1;
    rt.checks = items;
    jr.job_id = 1;
    jr.rtest = &rt;
    bytes_t b = envelope(BQ_PROTO_VERSION, BQ_MSG_JOB_RESULT, &jr.base);
    bq_msg_t d;
    memset(&d, 0xa5, sizeof d);
    assert_int_equal(proto_msg_decode(b.buf, b.len, &d, &e), BQ_E_PROTO);
    assert_non_null(strstr(e.msg, "could not decode JOB_RESULT message seq 77: RestoreTest has "
                                  "17 items, more than the limit of 16"));
    assert_true(is_zero(&d, sizeof d));
    free(b.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_hb_ack),
        cmocka_unit_test(test_peer_keys),
        cmocka_unit_test(test_data_msgs),
        cmocka_unit_test(test_job_offer),
        cmocka_unit_test(test_job_ref),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_wal_names),
        cmocka_unit_test(test_result),
        cmocka_unit_test(test_result_ack),
        cmocka_unit_test(test_cli_request),
        cmocka_unit_test(test_cli_reply),
        cmocka_unit_test(test_error),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_bad_msgs),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_clear_null),
        cmocka_unit_test(test_rtest_result),
        cmocka_unit_test(test_rtest_reply),
        cmocka_unit_test(test_rtest_request_hello),
        cmocka_unit_test(test_rtest_records),
        cmocka_unit_test(test_rtest_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
