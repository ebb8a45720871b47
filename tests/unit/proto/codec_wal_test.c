/* proto/codec.c, the point-in-time recovery and WAL archive fields: a Job and a CliRequest
 * carrying a RecoveryTarget (every field), CliRequest.wal_size, a wal-put DataRequest (cluster,
 * data, total, last, seg_size), a DataReply's exists and partial, PeerKeys with operators; and
 * the refusals: a RecoveryTarget bq_recovery_valid refuses (on encode and, crafted with
 * protobuf-c, on decode), a DataRequest whose data runs past its total. */
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

#define FILL_MAX(arr, seed) fill_max((arr), sizeof(arr), (seed))
static void fill_max(char *dst, size_t cap, char seed)
{
    for (size_t i = 0; i + 1 < cap; i++)
        dst[i] = (char)('a' + (seed + i) % 26);
    dst[cap - 1] = '\0';
}

#define assert_contains(s, sub)                                                           \
    do {                                                                                  \
        if (!strstr((s), (sub)))                                                          \
            fail_msg("\"%s\" does not contain \"%s\"", (s), (sub));                       \
    } while (0)

/* Encode in, decode into out, and check that out encodes to the same bytes. */
static void roundtrip(const bq_msg_t *in, bq_msg_t *out)
{
    bq_errbuf_t e = {{0}};
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    int rc = proto_msg_encode(in, &b1, &n1, &e);
    if (rc != 0)
        fail_msg("encode: %s", e.msg);
    rc = proto_msg_decode(b1, n1, out, &e);
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

/* Every field of a recovery target set, each string at a realistic value. */
static void recovery_full(bq_recovery_t *r)
{
    memset(r, 0, sizeof *r);
    r->enabled = 1;
    snprintf(r->kind, sizeof r->kind, "time");
    snprintf(r->value, sizeof r->value, "2024-02-29 23:59:58.123+00");
    r->time_ms = 1709251198123LL;
    r->lsn = 0x16B374D848ULL;
    snprintf(r->tli, sizeof r->tli, "4294967295");
    snprintf(r->action, sizeof r->action, "promote");
    r->exclusive = 1;
    r->standby = 1;
}

static void assert_recovery_equal(const bq_recovery_t *a, const bq_recovery_t *b)
{
    assert_int_equal(a->enabled, b->enabled);
    assert_string_equal(a->kind, b->kind);
    assert_string_equal(a->value, b->value);
    assert_true(a->time_ms == b->time_ms);
    assert_true(a->lsn == b->lsn);
    assert_string_equal(a->tli, b->tli);
    assert_string_equal(a->action, b->action);
    assert_int_equal(a->exclusive, b->exclusive);
    assert_int_equal(a->standby, b->standby);
}

static void restore_job(bq_job_t *j)
{
    memset(j, 0, sizeof *j);
    j->id = 4242;
    j->type = BQ_JOB_RESTORE;
    j->state = BQ_JOB_QUEUED;
    snprintf(j->cluster, sizeof j->cluster, "db1");
    snprintf(j->site, sizeof j->site, "east");
    snprintf(j->worker, sizeof j->worker, "east-1");
    j->attempt = 1;
    j->max_attempts = 3;
    j->created_ms = 1709251000000LL;
    snprintf(j->backup_id, sizeof j->backup_id, "20240229T120000");
    snprintf(j->dest, sizeof j->dest, "/srv/pg/restore");
    snprintf(j->owner, sizeof j->owner, "postgres");
    recovery_full(&j->recovery);
}

/* ---- round trips --------------------------------------------------------------------- */

static void test_job_recovery(void **state)
{
    (void)state;
    bq_msg_t in = {.type = BQ_MSG_JOB_OFFER, .seq = 11}, out;
    in.u.job = malloc(sizeof *in.u.job);
    assert_non_null(in.u.job);
    restore_job(in.u.job);
    roundtrip(&in, &out);
    assert_non_null(out.u.job);
    assert_recovery_equal(&out.u.job->recovery, &in.u.job->recovery);
    assert_memory_equal(out.u.job, in.u.job, sizeof(bq_job_t));
    proto_msg_clear(&out);

    /* each kind, with the other settings at their defaults */
    static const struct {
        const char *kind, *value, *tli, *action;
    } kinds[] = {
        {"", "", "", ""},
        {"xid", "4294967295", "latest", "pause"},
        {"lsn", "16/B374D848", "current", "shutdown"},
        {"name", "before-migration 2024", "1", ""},
        {"immediate", "", "", "promote"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        bq_recovery_t *r = &in.u.job->recovery;
        memset(r, 0, sizeof *r);
        r->enabled = 1;
        snprintf(r->kind, sizeof r->kind, "%s", kinds[i].kind);
        snprintf(r->value, sizeof r->value, "%s", kinds[i].value);
        snprintf(r->tli, sizeof r->tli, "%s", kinds[i].tli);
        snprintf(r->action, sizeof r->action, "%s", kinds[i].action);
        if (strcmp(kinds[i].kind, "lsn") == 0)
            r->lsn = 0x16B374D848ULL;
        roundtrip(&in, &out);
        assert_recovery_equal(&out.u.job->recovery, r);
        proto_msg_clear(&out);
    }

    /* not enabled: the target is not carried at all */
    recovery_full(&in.u.job->recovery);
    in.u.job->recovery.enabled = 0;
    roundtrip(&in, &out);
    bq_recovery_t zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&out.u.job->recovery, &zero, sizeof zero);
    proto_msg_clear(&out);
    proto_msg_clear(&in);
}

/* The catalog's Job record carries the target too. */
static void test_job_record_recovery(void **state)
{
    (void)state;
    bq_job_t *j = malloc(sizeof *j), *k = malloc(sizeof *k);
    assert_non_null(j);
    assert_non_null(k);
    restore_job(j);
    bq_errbuf_t e = {{0}};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(proto_job_encode(j, &buf, &len, &e), 0);
    int rc = proto_job_decode(buf, len, k, &e);
    if (rc)
        fail_msg("proto_job_decode: %s", e.msg);
    assert_recovery_equal(&k->recovery, &j->recovery);
    assert_memory_equal(k, j, sizeof *j);
    free(buf);
    free(j);
    free(k);
}

static void test_cli_request_recovery(void **state)
{
    (void)state;
    bq_msg_t in = {.type = BQ_MSG_CLI_REQUEST, .seq = 3}, out;
    snprintf(in.u.cli_req.verb, sizeof in.u.cli_req.verb, "recover");
    snprintf(in.u.cli_req.cluster, sizeof in.u.cli_req.cluster, "db1");
    snprintf(in.u.cli_req.backup_id, sizeof in.u.cli_req.backup_id, "latest");
    snprintf(in.u.cli_req.dest, sizeof in.u.cli_req.dest, "/srv/pg/restore");
    snprintf(in.u.cli_req.worker, sizeof in.u.cli_req.worker, "east-1");
    recovery_full(&in.u.cli_req.recovery);
    roundtrip(&in, &out);
    assert_recovery_equal(&out.u.cli_req.recovery, &in.u.cli_req.recovery);
    assert_memory_equal(&out.u.cli_req, &in.u.cli_req, sizeof in.u.cli_req);
    proto_msg_clear(&out);

    /* wal-pushed: the file and its size, at the largest a WAL segment is and beyond */
    bq_msg_t p = {.type = BQ_MSG_CLI_REQUEST, .seq = 4};
    snprintf(p.u.cli_req.verb, sizeof p.u.cli_req.verb, "wal-pushed");
    snprintf(p.u.cli_req.cluster, sizeof p.u.cli_req.cluster, "db1");
    snprintf(p.u.cli_req.wal_file, sizeof p.u.cli_req.wal_file, "00000002000000A1000000FF");
    p.u.cli_req.wal_size = 1ull << 30;
    roundtrip(&p, &out);
    assert_string_equal(out.u.cli_req.wal_file, "00000002000000A1000000FF");
    assert_true(out.u.cli_req.wal_size == 1ull << 30);
    assert_int_equal(out.u.cli_req.recovery.enabled, 0);
    proto_msg_clear(&out);
    p.u.cli_req.wal_size = UINT64_MAX;
    snprintf(p.u.cli_req.wal_file, sizeof p.u.cli_req.wal_file, "00000003.history");
    roundtrip(&p, &out);
    assert_true(out.u.cli_req.wal_size == UINT64_MAX);
    assert_string_equal(out.u.cli_req.wal_file, "00000003.history");
    proto_msg_clear(&out);
}

static void test_data_wal_put(void **state)
{
    (void)state;
    uint8_t *piece = malloc(BQ_DATA_PIECE_MAX);
    assert_non_null(piece);
    for (size_t i = 0; i < BQ_DATA_PIECE_MAX; i++)
        piece[i] = (uint8_t)(i * 7 + 3);
    bq_msg_t in = {.type = BQ_MSG_DATA_REQUEST, .seq = 21}, out;
    bq_msg_data_req_t *q = &in.u.data_req;
    snprintf(q->op, sizeof q->op, "wal-put");
    snprintf(q->name, sizeof q->name, "000000010000000000000042");
    FILL_MAX(q->cluster, 'c');
    q->offset = 15u << 20; /* the last piece of a 16 MiB segment */
    q->data = piece;
    q->len = BQ_DATA_PIECE_MAX;
    q->total = 16u << 20;
    q->last = 1;
    q->seg_size = 16u << 20;
    roundtrip(&in, &out);
    const bq_msg_data_req_t *d = &out.u.data_req;
    assert_string_equal(d->op, "wal-put");
    assert_string_equal(d->name, "000000010000000000000042");
    assert_string_equal(d->cluster, q->cluster);
    assert_true(d->offset == 15u << 20);
    assert_int_equal(d->len, BQ_DATA_PIECE_MAX);
    assert_non_null(d->data);
    assert_ptr_not_equal(d->data, piece); /* a copy, owned by the decoded message */
    assert_memory_equal(d->data, piece, BQ_DATA_PIECE_MAX);
    assert_true(d->total == 16u << 20);
    assert_int_equal(d->last, 1);
    assert_int_equal(d->seg_size, 16u << 20);
    assert_int_equal(d->nids, 0);
    assert_null(d->ids);
    proto_msg_clear(&out);

    /* a first, not last piece: data ending well before the total */
    q->offset = 0;
    q->len = 100;
    q->last = 0;
    q->seg_size = 1u << 30;
    q->total = 1u << 30;
    roundtrip(&in, &out);
    assert_true(out.u.data_req.offset == 0 && out.u.data_req.len == 100);
    assert_memory_equal(out.u.data_req.data, piece, 100);
    assert_int_equal(out.u.data_req.last, 0);
    assert_int_equal(out.u.data_req.seg_size, 1u << 30);
    proto_msg_clear(&out);

    /* an empty file (a history file is never empty, but 0 bytes at offset 0 of 0 is sound) */
    q->len = 0;
    q->data = NULL;
    q->total = 0;
    q->last = 1;
    roundtrip(&in, &out);
    assert_int_equal(out.u.data_req.len, 0);
    assert_null(out.u.data_req.data);
    assert_int_equal(out.u.data_req.last, 1);
    proto_msg_clear(&out);
    free(piece);
}

static void test_data_reply_exists_partial(void **state)
{
    (void)state;
    bq_msg_t in = {.type = BQ_MSG_DATA_REPLY, .seq = 22}, out;
    in.u.data_reply.exists = 1; /* wal-put: the store held this content already */
    in.u.data_reply.last = 1;
    roundtrip(&in, &out);
    assert_int_equal(out.u.data_reply.exists, 1);
    assert_int_equal(out.u.data_reply.partial, 0);
    assert_int_equal(out.u.data_reply.code, 0);
    proto_msg_clear(&out);

    /* wal-get of a segment still being streamed: a partial piece */
    uint8_t bytes[64];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(255 - i);
    bq_msg_t g = {.type = BQ_MSG_DATA_REPLY, .seq = 23};
    g.u.data_reply.partial = 1;
    g.u.data_reply.data = bytes;
    g.u.data_reply.len = sizeof bytes;
    g.u.data_reply.offset = 1000;
    g.u.data_reply.total = 16u << 20;
    roundtrip(&g, &out);
    const bq_msg_data_reply_t *d = &out.u.data_reply;
    assert_int_equal(d->partial, 1);
    assert_int_equal(d->exists, 0);
    assert_int_equal(d->last, 0);
    assert_int_equal(d->len, sizeof bytes);
    assert_memory_equal(d->data, bytes, sizeof bytes);
    assert_true(d->offset == 1000 && d->total == 16u << 20);
    proto_msg_clear(&out);

    /* both at once */
    g.u.data_reply.exists = 1;
    roundtrip(&g, &out);
    assert_true(out.u.data_reply.exists && out.u.data_reply.partial);
    proto_msg_clear(&out);
}

static void test_peer_keys_operators(void **state)
{
    (void)state;
    bq_msg_t in = {.type = BQ_MSG_PEER_KEYS, .seq = 31}, out;
    bq_msg_peer_keys_t *p = &in.u.peer_keys;
    p->version = 77;
    p->nkeys = 2;
    p->keys = calloc(2, sizeof *p->keys);
    p->noperators = 3;
    p->operators = calloc(3, sizeof *p->operators);
    assert_non_null(p->keys);
    assert_non_null(p->operators);
    for (size_t i = 0; i < p->nkeys; i++) {
        snprintf(p->keys[i].name, sizeof p->keys[i].name, "east-%zu", i + 1);
        FILL_MAX(p->keys[i].public_key, (char)i);
    }
    for (size_t i = 0; i < p->noperators; i++) {
        snprintf(p->operators[i].name, sizeof p->operators[i].name, "op-%zu", i + 1);
        FILL_MAX(p->operators[i].public_key, (char)(10 + i));
    }
    roundtrip(&in, &out);
    const bq_msg_peer_keys_t *o = &out.u.peer_keys;
    assert_true(o->version == 77);
    assert_int_equal(o->nkeys, 2);
    assert_int_equal(o->noperators, 3);
    assert_memory_equal(o->keys, p->keys, 2 * sizeof *p->keys);
    assert_memory_equal(o->operators, p->operators, 3 * sizeof *p->operators);
    assert_string_equal(o->operators[2].name, "op-3");
    assert_int_equal(strlen(o->operators[2].public_key), BQ_Z85_KEY_LEN);
    proto_msg_clear(&out);

    /* operators only (no worker yet) */
    free(p->keys);
    p->keys = NULL;
    p->nkeys = 0;
    roundtrip(&in, &out);
    assert_int_equal(out.u.peer_keys.nkeys, 0);
    assert_null(out.u.peer_keys.keys);
    assert_int_equal(out.u.peer_keys.noperators, 3);
    assert_memory_equal(out.u.peer_keys.operators, p->operators, 3 * sizeof *p->operators);
    proto_msg_clear(&out);
    proto_msg_clear(&in);
}

/* ---- refusals ------------------------------------------------------------------------ */

static void test_recovery_encode_refused(void **state)
{
    (void)state;
    bq_msg_t in = {.type = BQ_MSG_JOB_OFFER, .seq = 12};
    in.u.job = malloc(sizeof *in.u.job);
    assert_non_null(in.u.job);
    restore_job(in.u.job);
    snprintf(in.u.job->recovery.tli, sizeof in.u.job->recovery.tli, "0");
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t e = {{0}};
    assert_int_equal(proto_msg_encode(&in, &buf, &len, &e), BQ_E_INVAL);
    assert_contains(e.msg, "RecoveryTarget: recovery target timeline \"0\"");
    assert_null(buf);

    restore_job(in.u.job);
    snprintf(in.u.job->recovery.value, sizeof in.u.job->recovery.value, "x'; drop");
    assert_int_equal(proto_msg_encode(&in, &buf, &len, &e), BQ_E_INVAL);
    assert_contains(e.msg, "has a quote, backslash or control character");
    free(buf);
    proto_msg_clear(&in);

    bq_msg_t c = {.type = BQ_MSG_CLI_REQUEST, .seq = 13};
    snprintf(c.u.cli_req.verb, sizeof c.u.cli_req.verb, "recover");
    recovery_full(&c.u.cli_req.recovery);
    snprintf(c.u.cli_req.recovery.action, sizeof c.u.cli_req.recovery.action, "reboot");
    buf = NULL;
    assert_int_equal(proto_msg_encode(&c, &buf, &len, &e), BQ_E_INVAL);
    assert_contains(e.msg, "unknown recovery target action \"reboot\"");
    free(buf);
}

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

static bytes_t envelope(int type, const ProtobufCMessage *body)
{
    Barque__Envelope env = BARQUE__ENVELOPE__INIT;
    bytes_t bb = pack_msg(body);
    env.version = BQ_PROTO_VERSION;
    env.type = (Barque__MsgType)type;
    env.seq = 77;
    env.body.data = bb.buf;
    env.body.len = bb.len;
    bytes_t b = pack_msg(&env.base);
    free(bb.buf);
    return b;
}

static void decode_refused(bytes_t b, int code, const char *sub)
{
    bq_msg_t m;
    memset(&m, 0xa5, sizeof m);
    bq_errbuf_t e = {{0}};
    int rc = proto_msg_decode(b.buf, b.len, &m, &e);
    if (rc != code)
        fail_msg("decode: %s (%d), not %s: \"%s\"", bq_err_name(rc), rc, bq_err_name(code), e.msg);
    assert_contains(e.msg, sub);
    free(b.buf);
    /* m is left cleared: clearing it again is harmless */
    proto_msg_clear(&m);
}

static void test_data_past_total(void **state)
{
    (void)state;
    uint8_t data[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    Barque__DataRequest q = BARQUE__DATA_REQUEST__INIT;
    q.op = "wal-put";
    q.name = "000000010000000000000001";
    q.cluster = "db1";
    q.data.data = data;
    q.data.len = sizeof data;
    q.offset = 5;
    q.total = 12;
    q.seg_size = 16u << 20;
    decode_refused(envelope(BQ_MSG_DATA_REQUEST, &q.base), BQ_E_PROTO,
                   "DataRequest's 10 bytes at offset 5 run past its total of 12");
    /* no total at all */
    q.offset = 0;
    q.total = 0;
    decode_refused(envelope(BQ_MSG_DATA_REQUEST, &q.base), BQ_E_PROTO,
                   "DataRequest's 10 bytes at offset 0 run past its total of 0");
    /* offset + len wrapping around 2^64 */
    q.offset = UINT64_MAX - 3;
    q.total = UINT64_MAX;
    decode_refused(envelope(BQ_MSG_DATA_REQUEST, &q.base), BQ_E_PROTO, "run past its total");

    /* exactly to the total is accepted */
    q.offset = 2;
    q.total = 12;
    q.last = 1;
    bytes_t b = envelope(BQ_MSG_DATA_REQUEST, &q.base);
    bq_msg_t m;
    bq_errbuf_t e = {{0}};
    int rc = proto_msg_decode(b.buf, b.len, &m, &e);
    if (rc)
        fail_msg("decode: %s", e.msg);
    assert_int_equal(m.u.data_req.len, 10);
    assert_memory_equal(m.u.data_req.data, data, 10);
    assert_true(m.u.data_req.offset == 2 && m.u.data_req.total == 12 && m.u.data_req.last);
    proto_msg_clear(&m);
    free(b.buf);
}

static void test_recovery_decode_refused(void **state)
{
    (void)state;
    Barque__RecoveryTarget rt = BARQUE__RECOVERY_TARGET__INIT;
    rt.enabled = 1;
    rt.kind = "lsn";
    rt.value = "0/3000000";
    rt.lsn = 0x3000000;
    rt.tli = "abc";
    Barque__Job j = BARQUE__JOB__INIT;
    j.type = (Barque__JobType)BQ_JOB_RESTORE;
    j.state = (Barque__JobState)BQ_JOB_QUEUED;
    j.cluster = "db1";
    j.recovery = &rt;
    decode_refused(envelope(BQ_MSG_JOB_OFFER, &j.base), BQ_E_PROTO,
                   "RecoveryTarget: recovery target timeline \"abc\"");

    rt.tli = "latest";
    rt.kind = "until";
    decode_refused(envelope(BQ_MSG_JOB_OFFER, &j.base), BQ_E_PROTO,
                   "unknown recovery target kind \"until\"");

    rt.kind = "name";
    rt.value = "a\\b";
    Barque__CliRequest r = BARQUE__CLI_REQUEST__INIT;
    r.verb = "recover";
    r.cluster = "db1";
    r.recovery = &rt;
    decode_refused(envelope(BQ_MSG_CLI_REQUEST, &r.base), BQ_E_PROTO,
                   "has a quote, backslash or control character");

    rt.kind = "immediate";
    rt.value = "now";
    decode_refused(envelope(BQ_MSG_CLI_REQUEST, &r.base), BQ_E_PROTO,
                   "recovery target immediate takes no value");

    /* not enabled: whatever else it says is ignored */
    rt.enabled = 0;
    rt.kind = "until";
    bytes_t b = envelope(BQ_MSG_CLI_REQUEST, &r.base);
    bq_msg_t m;
    bq_errbuf_t e = {{0}};
    int rc = proto_msg_decode(b.buf, b.len, &m, &e);
    if (rc)
        fail_msg("decode: %s", e.msg);
    assert_int_equal(m.u.cli_req.recovery.enabled, 0);
    assert_string_equal(m.u.cli_req.recovery.kind, "");
    proto_msg_clear(&m);
    free(b.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_recovery),
        cmocka_unit_test(test_job_record_recovery),
        cmocka_unit_test(test_cli_request_recovery),
        cmocka_unit_test(test_data_wal_put),
        cmocka_unit_test(test_data_reply_exists_partial),
        cmocka_unit_test(test_peer_keys_operators),
        cmocka_unit_test(test_recovery_encode_refused),
        cmocka_unit_test(test_data_past_total),
        cmocka_unit_test(test_recovery_decode_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
