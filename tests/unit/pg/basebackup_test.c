/* pg/basebackup.h: LSN and WAL name arithmetic; the COPY stream decoder fed by hand (the order
 * of callbacks, and a table of malformed streams with their messages); refusals before and at
 * connection (bad options, bad conninfo, nothing listening, a server that never answers); and,
 * when BQ_TEST_CONNINFO is set (integration.pg_basebackup runs this binary against the cluster
 * it starts), a whole backup in memory, WAL fetched through a temporary slot, a backup stopped
 * by a callback followed by one that works, and a role without REPLICATION. */
#include "basebackup.h"

#include <libpq-fe.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

/* ---- arithmetic ---- */

static void test_lsn(void **state)
{
    (void)state;
    uint64_t v;
    char buf[32];
    assert_int_equal(pg_lsn_parse("16/B374D848", &v), 0);
    assert_true(v == 0x16B374D848ULL);
    assert_string_equal(pg_lsn_format(v, buf, sizeof buf), "16/B374D848");
    assert_int_equal(pg_lsn_parse("0/0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(pg_lsn_parse("FFFFFFFF/ffffffff", &v), 0);
    assert_true(v == UINT64_MAX);
    static const char *const bad[] = {"", "/", "1/", "/1", "1/2/3", "123456789/0", "g/0",
                                      "1 /2", "1/2 ", "-1/0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (pg_lsn_parse(bad[i], &v) != BQ_E_INVAL)
            fail_msg("\"%s\" was accepted", bad[i]);

    char name[32];
    pg_wal_file_name(1, 0x2A, 16u << 20, name, sizeof name);
    assert_string_equal(name, "00000001000000000000002A");
    pg_wal_file_name(3, 0x16B3, 16u << 20, name, sizeof name);
    assert_string_equal(name, "0000000300000016000000B3");
    pg_wal_file_name(2, 5, 1u << 30, name, sizeof name); /* 4 segments per xlogid */
    assert_string_equal(name, "000000020000000100000001");

    uint32_t seg;
    assert_int_equal(pg_wal_seg_size_parse("16MB", &seg), 0);
    assert_int_equal(seg, 16u << 20);
    assert_int_equal(pg_wal_seg_size_parse("1GB", &seg), 0);
    assert_int_equal(seg, 1u << 30);
    assert_int_equal(pg_wal_seg_size_parse("1024kB", &seg), 0);
    assert_int_equal(seg, 1u << 20);
    static const char *const badseg[] = {"", "16", "24MB", "2GB", "512kB", "16 MB", "MB", "16mb"};
    for (size_t i = 0; i < sizeof badseg / sizeof badseg[0]; i++)
        if (pg_wal_seg_size_parse(badseg[i], &seg) != BQ_E_PROTO)
            fail_msg("segment size \"%s\" was accepted", badseg[i]);
}

/* ---- the stream decoder ---- */

typedef struct {
    char log[8192];
    uint64_t data_bytes, manifest_bytes;
    int fail_manifest;
} rec_t;

static void logf_(rec_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(rec_t *r, const char *fmt, ...)
{
    size_t n = strlen(r->log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->log + n, sizeof r->log - n, fmt, ap);
    va_end(ap);
}

static int r_archive_begin(void *arg, const pg_bb_tablespace_t *ts, const char *name,
                           bq_errbuf_t *e)
{
    (void)e;
    logf_(arg, "archive %s %u %s;", name, ts->oid, ts->location);
    return 0;
}

static int r_file_begin(void *arg, const pg_tar_entry_t *ent, bq_errbuf_t *e)
{
    (void)e;
    logf_(arg, "file %s %llu;", ent->path, (unsigned long long)ent->size);
    return 0;
}

static int r_file_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)buf;
    (void)e;
    ((rec_t *)arg)->data_bytes += len;
    return 0;
}

static int r_archive_end(void *arg, const pg_bb_tablespace_t *ts, bq_errbuf_t *e)
{
    (void)e;
    logf_(arg, "end %u;", ts->oid);
    return 0;
}

static int r_progress(void *arg, uint64_t done, int64_t total, bq_errbuf_t *e)
{
    (void)e;
    logf_(arg, "progress %llu/%lld;", (unsigned long long)done, (long long)total);
    return 0;
}

static int r_manifest(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    rec_t *r = arg;
    if (r->fail_manifest)
        return bq_fail(e, BQ_E_IO, "store full");
    logf_(r, "manifest %.*s;", (int)len, (const char *)buf);
    r->manifest_bytes += len;
    return 0;
}

static const pg_bb_callbacks_t rec_cb = {
    .archive_begin = r_archive_begin,
    .file_begin = r_file_begin,
    .file_data = r_file_data,
    .archive_end = r_archive_end,
    .progress = r_progress,
    .manifest_data = r_manifest,
};

/* A tar archive of one file (name, n bytes of 'x'), terminated. */
static size_t small_tar(uint8_t *out, const char *name, size_t n)
{
    memset(out, 0, 512);
    memcpy(out, name, strlen(name));
    snprintf((char *)out + 100, 8, "%07o", 0600);
    snprintf((char *)out + 108, 8, "%07o", 0);
    snprintf((char *)out + 116, 8, "%07o", 0);
    snprintf((char *)out + 124, 12, "%011o", (unsigned)n);
    snprintf((char *)out + 136, 12, "%011o", 1700000000u);
    out[156] = '0';
    memcpy(out + 257, "ustar\0" "00", 8);
    memset(out + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += out[i];
    snprintf((char *)out + 148, 8, "%06o", sum);
    size_t padded = (n + 511) / 512 * 512;
    memset(out + 512, 'x', n);
    memset(out + 512 + n, 0, padded - n + 1024);
    return 512 + padded + 1024;
}

static const pg_bb_tablespace_t two_ts[] = {
    {.oid = 16384, .location = "/srv/ts1", .size_estimate = 1024},
    {.oid = 0, .location = "", .size_estimate = 2048},
};

/* Message builders: type byte then payload. */
static size_t msg_new(uint8_t *m, const char *name, const char *loc)
{
    m[0] = 'n';
    size_t a = strlen(name) + 1, b = strlen(loc) + 1;
    memcpy(m + 1, name, a);
    memcpy(m + 1 + a, loc, b);
    return 1 + a + b;
}

static size_t msg_progress(uint8_t *m, uint64_t v)
{
    m[0] = 'p';
    for (int i = 0; i < 8; i++)
        m[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    return 9;
}

static int send_data(pg_bb_stream_t *s, const uint8_t *p, size_t n, size_t piece, bq_errbuf_t *e)
{
    uint8_t m[1 + 4096];
    for (size_t off = 0; off < n;) {
        size_t k = n - off < piece ? n - off : piece;
        m[0] = 'd';
        memcpy(m + 1, p + off, k);
        int rc = pg_bb_stream_message(s, m, k + 1, e);
        if (rc)
            return rc;
        off += k;
    }
    return 0;
}

static void test_stream_good(void **state)
{
    (void)state;
    static uint8_t ts_tar[8192], base_tar[8192];
    size_t ts_len = small_tar(ts_tar, "PG_15_202209061/5/16390", 1000);
    size_t base_len = small_tar(base_tar, "PG_VERSION", 3);
    rec_t r;
    memset(&r, 0, sizeof r);
    pg_bb_stream_t *s = NULL;
    bq_errbuf_t e = {{0}};
    assert_int_equal(pg_bb_stream_new(two_ts, 2, 3072, 1, &rec_cb, &r, &s, &e), 0);
    uint8_t m[256];
    assert_int_equal(pg_bb_stream_message(s, m, msg_new(m, "16384.tar", "/srv/ts1"), &e), 0);
    assert_int_equal(send_data(s, ts_tar, ts_len, 7, &e), 0);
    assert_int_equal(pg_bb_stream_message(s, m, msg_progress(m, 2560), &e), 0);
    assert_int_equal(pg_bb_stream_message(s, m, msg_new(m, "base.tar", ""), &e), 0);
    assert_int_equal(send_data(s, base_tar, base_len, 4096, &e), 0);
    assert_int_equal(pg_bb_stream_message(s, (const uint8_t *)"m", 1, &e), 0);
    assert_int_equal(pg_bb_stream_message(s, (const uint8_t *)"d{\"x\":", 6, &e), 0);
    assert_int_equal(pg_bb_stream_message(s, (const uint8_t *)"d1}", 3, &e), 0);
    pg_bb_end_t end = {0};
    if (pg_bb_stream_finish(s, &end, &e))
        fail_msg("%s", e.msg);
    pg_bb_stream_destroy(&s);
    assert_null(s);
    assert_string_equal(r.log, "archive 16384.tar 16384 /srv/ts1;file PG_15_202209061/5/16390 "
                               "1000;progress 2560/3072;end 16384;archive base.tar 0 ;"
                               "file PG_VERSION 3;end 0;manifest {\"x\":;manifest 1};");
    assert_true(r.data_bytes == 1003);
    assert_true(end.archive_bytes == ts_len + base_len);
    assert_true(end.manifest_bytes == 7);
}

typedef struct {
    const char *what;
    int step;      /* which malformed stream */
    int code;
    const char *msg;
} stream_case_t;

static int run_stream_case(int step, rec_t *r, bq_errbuf_t *e)
{
    static uint8_t tar[8192];
    size_t len = small_tar(tar, "PG_VERSION", 3);
    pg_bb_stream_t *s = NULL;
    assert_int_equal(pg_bb_stream_new(two_ts, 2, -1, 1, &rec_cb, r, &s, e), 0);
    uint8_t m[256];
    int rc = 0;
#define MSG(p, n)                                                                               \
    do {                                                                                        \
        if (rc == 0)                                                                            \
            rc = pg_bb_stream_message(s, (const uint8_t *)(p), (n), e);                         \
    } while (0)
#define ARCHIVE(name, loc, tlen)                                                                \
    do {                                                                                        \
        MSG(m, msg_new(m, name, loc));                                                          \
        if (rc == 0)                                                                            \
            rc = send_data(s, tar, tlen, 512, e);                                               \
    } while (0)
    switch (step) {
    case 0: MSG("x", 1); break;
    case 1: MSG("dabc", 4); break;
    case 2: MSG("nbase.tar", 9); break;
    case 3: MSG("nbase.tar\0\0junk", 15); break;
    case 4: ARCHIVE("99.tar", "/elsewhere", len); break;
    case 5: ARCHIVE("base.tar", "/srv/ts1", len); break;
    case 6: ARCHIVE("base.tar", "", len); ARCHIVE("base.tar", "", len); break;
    case 7: MSG("p\0\0\0\0", 5); break;
    case 8: MSG(m, msg_progress(m, UINT64_MAX)); break;
    case 9: ARCHIVE("16384.tar", "/srv/ts1", len); ARCHIVE("base.tar", "", len);
            MSG("m", 1); MSG("m", 1); break;
    case 10: ARCHIVE("16384.tar", "/srv/ts1", len); MSG("m", 1);
             ARCHIVE("base.tar", "", len); break;
    case 11: ARCHIVE("16384.tar", "/srv/ts1", len); MSG("m", 1); break;
    case 12: ARCHIVE("16384.tar", "/srv/ts1", len); ARCHIVE("base.tar", "", len); break;
    case 13: ARCHIVE("16384.tar", "/srv/ts1", len - 1024); ARCHIVE("base.tar", "", len); break;
    case 14: MSG("", 0); break;
    case 15: MSG("mx", 2); break;
    case 16: ARCHIVE("16384.tar", "/srv/ts1", len); ARCHIVE("base.tar", "", len);
             MSG("m", 1); r->fail_manifest = 1; MSG("d{}", 3); break;
    }
#undef MSG
#undef ARCHIVE
    if (rc == 0)
        rc = pg_bb_stream_finish(s, NULL, e);
    if (rc) { /* sticky */
        bq_errbuf_t e2 = {{0}};
        assert_int_equal(pg_bb_stream_message(s, (const uint8_t *)"p", 1, &e2), rc);
        assert_string_equal(e2.msg, e->msg);
        assert_int_equal(pg_bb_stream_finish(s, NULL, &e2), rc);
    }
    pg_bb_stream_destroy(&s);
    return rc;
}

static void test_stream_refusals(void **state)
{
    (void)state;
    static const stream_case_t cases[] = {
        {"unknown type", 0, BQ_E_PROTO, "backup stream: unknown message type 'x'"},
        {"data first", 1, BQ_E_PROTO, "backup stream: data before any archive"},
        {"no location", 2, BQ_E_PROTO,
         "backup stream: new-archive message with an unterminated name"},
        {"junk after location", 3, BQ_E_PROTO, "backup stream: malformed new-archive message"},
        {"unannounced", 4, BQ_E_PROTO, "backup stream: archive \"99.tar\" for location "
                                       "\"/elsewhere\", which the tablespace list did not "
                                       "announce"},
        {"wrong name", 5, BQ_E_PROTO, "backup stream: archive \"base.tar\" for location "
                                      "\"/srv/ts1\": expected \"16384.tar\""},
        {"twice", 6, BQ_E_PROTO, "backup stream: a second archive \"base.tar\""},
        {"short progress", 7, BQ_E_PROTO, "backup stream: progress message of 5 bytes"},
        {"negative progress", 8, BQ_E_PROTO, "backup stream: negative progress"},
        {"two manifests", 9, BQ_E_PROTO, "backup stream: a second manifest"},
        {"archive after manifest", 10, BQ_E_PROTO,
         "backup stream: archive \"base.tar\" after the manifest"},
        {"no base", 11, BQ_E_PROTO,
         "backup stream ended without the archive of the main data directory"},
        {"no manifest", 12, BQ_E_PROTO, "backup stream ended without the backup manifest"},
        {"truncated archive", 13, BQ_E_PROTO,
         "tar archive 16384.tar: truncated at offset 1024: no end-of-archive blocks"},
        {"empty message", 14, BQ_E_PROTO, "backup stream: empty message"},
        {"long manifest message", 15, BQ_E_PROTO, "backup stream: manifest message of 2 bytes"},
        {"callback error", 16, BQ_E_IO, "store full"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rec_t r;
    memset(&r, 0, sizeof r);
        bq_errbuf_t e = {{0}};
        int rc = run_stream_case(cases[i].step, &r, &e);
        if (rc != cases[i].code || strcmp(e.msg, cases[i].msg) != 0)
            fail_msg("%s: got %s \"%s\", want %s \"%s\"", cases[i].what, bq_err_name(rc), e.msg,
                     bq_err_name(cases[i].code), cases[i].msg);
    }
}

/* The seeds of fuzz_bbstream are valid streams: framed messages (2-byte length, message). */
static void test_fuzz_seeds(void **state)
{
    (void)state;
    static const char *const seeds[] = {"stream_1000", "stream_4096_noprogress"};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", BQ_BBSTREAM_CORPUS, seeds[i]);
        FILE *f = fopen(path, "rb");
        if (!f)
            fail_msg("cannot open %s", path);
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        rec_t r;
        memset(&r, 0, sizeof r);
        pg_bb_stream_t *s = NULL;
        bq_errbuf_t e = {{0}};
        pg_bb_tablespace_t ts[2] = {two_ts[0], two_ts[1]};
        assert_int_equal(pg_bb_stream_new(ts, 2, 16384, 1, &rec_cb, &r, &s, &e), 0);
        int rc = 0;
        for (size_t off = 0; rc == 0 && off + 2 <= n;) {
            size_t len = (size_t)(buf[off] << 8 | buf[off + 1]);
            assert_true(off + 2 + len <= n);
            rc = pg_bb_stream_message(s, buf + off + 2, len, &e);
            off += 2 + len;
        }
        if (rc == 0)
            rc = pg_bb_stream_finish(s, NULL, &e);
        if (rc)
            fail_msg("%s: %s", seeds[i], e.msg);
        assert_non_null(strstr(r.log, "end 0;manifest "));
        pg_bb_stream_destroy(&s);
    }
}

/* ---- refusals before or at connection ---- */

static void test_bad_options(void **state)
{
    (void)state;
    static const struct {
        const char *label, *algo;
        uint32_t rate;
        const char *msg;
    } cases[] = {
        {"", "CRC32C", 0, "backup label must have 1 to 255 bytes"},
        {"a\nb", "CRC32C", 0, "backup label must be printable ASCII"},
        {"ok", "MD5", 0, "unknown manifest checksum algorithm \"MD5\" (NONE, CRC32C, SHA224, "
                         "SHA256, SHA384 or SHA512)"},
        {"ok", "crc32c", 5, "max rate 5 kB/s is out of range (32..1048576)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pg_bb_opts_t o;
        pg_bb_opts_init(&o);
        o.label = cases[i].label;
        o.manifest_checksums = cases[i].algo;
        o.max_rate_kb = cases[i].rate;
        bq_errbuf_t e = {{0}};
        /* nothing listens on port 1: an attempt to connect would say so instead */
        int rc = pg_basebackup_run("host=127.0.0.1 port=1", &o, NULL, NULL, &e);
        assert_int_equal(rc, BQ_E_INVAL);
        assert_string_equal(e.msg, cases[i].msg);
    }
    char label[300];
    memset(label, 'a', sizeof label - 1);
    label[sizeof label - 1] = '\0';
    pg_bb_opts_t o;
    pg_bb_opts_init(&o);
    o.label = label;
    bq_errbuf_t e;
    assert_int_equal(pg_basebackup_run("host=127.0.0.1 port=1", &o, NULL, NULL, &e), BQ_E_INVAL);

    pg_wal_opts_t wo;
    pg_wal_opts_init(&wo);
    wo.slot_name = "Bad-Name";
    pg_wal_conn_t *w = NULL;
    assert_int_equal(pg_wal_open("host=127.0.0.1 port=1", &wo, &w, &e), BQ_E_INVAL);
    assert_string_equal(e.msg, "invalid replication slot name \"Bad-Name\" (1 to 63 of a-z, "
                               "0-9, _)");
    assert_null(w);
    pg_wal_close(&w);
    assert_int_equal(pg_wal_fetch_range(NULL, 0, 0, 1, NULL, NULL, &e), BQ_E_INVAL);
}

static void test_invalid_conninfo(void **state)
{
    (void)state;
    bq_errbuf_t e = {{0}};
    assert_int_equal(pg_basebackup_run("host=127.0.0.1 port", NULL, NULL, NULL, &e),
                     BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "invalid conninfo: "));
    assert_non_null(strstr(e.msg, "missing \"=\" after \"port\""));
    pg_wal_conn_t *w = NULL;
    assert_int_equal(pg_wal_open("nosuchoption=1", NULL, &w, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "invalid connection option \"nosuchoption\""));
}

static void test_unreachable(void **state)
{
    (void)state;
    static const char *const conninfos[] = {"host=127.0.0.1 port=1 user=postgres",
                                            "postgresql://postgres@127.0.0.1:1/postgres"};
    for (size_t i = 0; i < 2; i++) {
        bq_errbuf_t e = {{0}};
        int rc = pg_basebackup_run(conninfos[i], NULL, NULL, NULL, &e);
        print_message("  %s\n", e.msg);
        assert_int_equal(rc, BQ_E_PG);
        static const char pfx[] =
            "could not open a replication connection to 127.0.0.1:1 as role postgres: ";
        if (strncmp(e.msg, pfx, sizeof pfx - 1) != 0 || !strstr(e.msg, "Connection refused"))
            fail_msg("unexpected message: %s", e.msg);
        assert_null(strchr(e.msg, '\n'));
        pg_wal_conn_t *w = NULL;
        assert_int_equal(pg_wal_open(conninfos[i], NULL, &w, &e), BQ_E_PG);
        assert_null(w);
    }
}

/* Accepts TCP and never speaks: connect_timeout ends the wait with BQ_E_TIMEOUT. */
static void test_connect_timeout(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t slen = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &slen), 0);
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=postgres",
             ntohs(sa.sin_port));
    pg_bb_opts_t o;
    pg_bb_opts_init(&o);
    o.connect_timeout_s = 2;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bq_errbuf_t e = {{0}};
    int rc = pg_basebackup_run(conninfo, &o, NULL, NULL, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("  %s (%.1f s)\n", e.msg, took);
    assert_int_equal(rc, BQ_E_TIMEOUT);
    assert_non_null(strstr(e.msg, "timeout expired"));
    assert_true(took > 1.9 && took < 6.0);
    close(fd);
}

/* ---- against a live server ---- */

typedef struct {
    uint64_t start_lsn, stop_lsn;
    uint32_t tli, segsize;
    int archives, files, progress, ended, saw_pg_control, saw_pg_version, saw_label;
    uint64_t bytes, manifest_bytes;
    char manifest_head[64];
    int fail_at_file;      /* callback error on the n-th file */
    uint64_t stop_after;   /* should_stop once this many bytes went by */
    /* WAL */
    int segments;
    uint64_t seg_bytes, wal_bytes;
    uint8_t seg_head[2];
    int bad_magic;
} live_t;

static int l_start(void *arg, const pg_bb_start_t *s, bq_errbuf_t *e)
{
    (void)e;
    live_t *l = arg;
    l->start_lsn = s->start_lsn;
    l->tli = s->timeline;
    l->segsize = s->wal_segment_size;
    assert_true(s->server_version >= 150000);
    assert_true(s->system_identifier != 0);
    assert_true(s->ntablespaces >= 1);
    assert_int_equal(s->tablespaces[s->ntablespaces - 1].oid, 0);
    assert_true(s->total_estimate > 0);
    return 0;
}

static int l_archive(void *arg, const pg_bb_tablespace_t *ts, const char *name, bq_errbuf_t *e)
{
    (void)ts;
    (void)name;
    (void)e;
    ((live_t *)arg)->archives++;
    return 0;
}

static int l_file(void *arg, const pg_tar_entry_t *ent, bq_errbuf_t *e)
{
    live_t *l = arg;
    l->files++;
    if (l->fail_at_file && l->files == l->fail_at_file)
        return bq_fail(e, BQ_E_IO, "could not write %s: no space left on device", ent->path);
    if (strcmp(ent->path, "global/pg_control") == 0)
        l->saw_pg_control = 1;
    if (strcmp(ent->path, "PG_VERSION") == 0)
        l->saw_pg_version = 1;
    if (strcmp(ent->path, "backup_label") == 0)
        l->saw_label = 1;
    return 0;
}

static int l_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)buf;
    (void)e;
    ((live_t *)arg)->bytes += len;
    return 0;
}

static int l_progress(void *arg, uint64_t done, int64_t total, bq_errbuf_t *e)
{
    (void)done;
    (void)total;
    (void)e;
    ((live_t *)arg)->progress++;
    return 0;
}

static int l_manifest(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    live_t *l = arg;
    size_t have = strlen(l->manifest_head);
    size_t k = sizeof l->manifest_head - 1 - have;
    if (k > len)
        k = len;
    memcpy(l->manifest_head + have, buf, k);
    l->manifest_bytes += len;
    return 0;
}

static int l_end(void *arg, const pg_bb_end_t *end, bq_errbuf_t *e)
{
    (void)e;
    live_t *l = arg;
    l->stop_lsn = end->stop_lsn;
    l->ended = 1;
    assert_true(end->checksum_failures == 0);
    assert_true(end->manifest_bytes == l->manifest_bytes);
    return 0;
}

static int l_should_stop(void *arg)
{
    live_t *l = arg;
    return l->stop_after && l->bytes >= l->stop_after;
}

static const pg_bb_callbacks_t live_cb = {
    .start = l_start,
    .archive_begin = l_archive,
    .file_begin = l_file,
    .file_data = l_data,
    .progress = l_progress,
    .manifest_data = l_manifest,
    .end = l_end,
    .should_stop = l_should_stop,
};

static int w_begin(void *arg, const char *name, uint32_t tli, uint64_t segno, bq_errbuf_t *e)
{
    (void)e;
    live_t *l = arg;
    char want[32];
    pg_wal_file_name(tli, segno, l->segsize, want, sizeof want);
    assert_string_equal(name, want);
    l->seg_bytes = 0;
    return 0;
}

static int w_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    live_t *l = arg;
    for (size_t i = 0; i < len && l->seg_bytes + i < 2; i++)
        l->seg_head[l->seg_bytes + i] = buf[i];
    l->seg_bytes += len;
    l->wal_bytes += len;
    return 0;
}

static int w_end(void *arg, bq_errbuf_t *e)
{
    (void)e;
    live_t *l = arg;
    assert_true(l->seg_bytes == l->segsize);
    /* XLOG_PAGE_MAGIC of PostgreSQL 15, little-endian */
    if (l->seg_head[0] != 0x10 || l->seg_head[1] != 0xD1)
        l->bad_magic = 1;
    l->segments++;
    return 0;
}

static const char *live_conninfo(void)
{
    const char *c = getenv("BQ_TEST_CONNINFO");
    if (!c || !*c) {
        print_message("BQ_TEST_CONNINFO is not set: skipping the live-server test\n");
        return NULL;
    }
    return c;
}

static void test_live_backup_and_wal(void **state)
{
    (void)state;
    const char *conninfo = live_conninfo();
    if (!conninfo)
        skip();
    bq_errbuf_t e = {{0}};
    pg_wal_conn_t *w = NULL;
    if (pg_wal_open(conninfo, NULL, &w, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(strncmp(pg_wal_slot(w), "barque_", 7), 0);
    assert_true(pg_wal_slot_lsn(w) > 0);

    live_t l = {0};
    pg_bb_opts_t o;
    pg_bb_opts_init(&o);
    o.label = "it's a test";   /* a quote in the label */
    o.manifest_checksums = "sha256";
    if (pg_basebackup_run(conninfo, &o, &live_cb, &l, &e))
        fail_msg("%s", e.msg);
    print_message("  start %llx stop %llx: %d archives, %d files, %llu bytes, manifest %llu\n",
                  (unsigned long long)l.start_lsn, (unsigned long long)l.stop_lsn, l.archives,
                  l.files, (unsigned long long)l.bytes, (unsigned long long)l.manifest_bytes);
    assert_true(l.ended);
    assert_true(l.stop_lsn > l.start_lsn);
    assert_true(l.start_lsn >= pg_wal_slot_lsn(w));
    assert_true(l.saw_pg_control && l.saw_pg_version && l.saw_label);
    assert_true(l.progress >= 1);
    assert_int_equal(strncmp(l.manifest_head, "{ \"PostgreSQL-Backup-Manifest-Version\": 1", 41),
                     0);

    pg_wal_callbacks_t wcb = {.segment_begin = w_begin, .segment_data = w_data,
                              .segment_end = w_end};
    if (pg_wal_fetch_range(w, l.start_lsn, l.stop_lsn, l.tli, &wcb, &l, &e))
        fail_msg("%s", e.msg);
    int want = (int)(l.stop_lsn / l.segsize - l.start_lsn / l.segsize + 1);
    assert_int_equal(l.segments, want);
    assert_true(l.wal_bytes == (uint64_t)want * l.segsize);
    assert_int_equal(l.bad_magic, 0);
    /* Again on the same connection: the same segments. */
    l.segments = 0;
    l.wal_bytes = 0;
    if (pg_wal_fetch_range(w, l.start_lsn, l.stop_lsn, l.tli, &wcb, &l, &e))
        fail_msg("second fetch: %s", e.msg);
    assert_int_equal(l.segments, want);

    /* WAL before the slot's start was not reserved. */
    assert_int_equal(pg_wal_fetch_range(w, pg_wal_slot_lsn(w) - 1, l.stop_lsn, l.tli, &wcb, &l,
                                        &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "was not reserved"));
    pg_wal_close(&w);
    assert_null(w);
}

/* A callback that fails, and should_stop, end the backup at once; the server is not left in
 * backup mode: the next backup works. */
static void test_live_stopped_backups(void **state)
{
    (void)state;
    const char *conninfo = live_conninfo();
    if (!conninfo)
        skip();
    bq_errbuf_t e = {{0}};
    live_t l = {.fail_at_file = 10};
    int rc = pg_basebackup_run(conninfo, NULL, &live_cb, &l, &e);
    assert_int_equal(rc, BQ_E_IO);
    assert_int_equal(strncmp(e.msg, "could not write ", 16), 0);
    assert_non_null(strstr(e.msg, ": no space left on device"));
    assert_int_equal(l.files, 10);
    assert_false(l.ended);

    l = (live_t){.stop_after = 1};
    rc = pg_basebackup_run(conninfo, NULL, &live_cb, &l, &e);
    assert_int_equal(rc, BQ_E_CANCELLED);
    print_message("  %s\n", e.msg);
    assert_false(l.ended);

    l = (live_t){0};
    if (pg_basebackup_run(conninfo, NULL, &live_cb, &l, &e))
        fail_msg("backup after the stopped ones: %s", e.msg);
    assert_true(l.ended);
}

static void admin_exec(const char *conninfo, const char *sql)
{
    const char *keys[] = {"dbname", NULL};
    const char *vals[] = {conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        fail_msg("could not connect to %s", conninfo);
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(conn);
}

static void test_live_role_without_replication(void **state)
{
    (void)state;
    const char *conninfo = live_conninfo();
    if (!conninfo)
        skip();
    admin_exec(conninfo, "DROP ROLE IF EXISTS bq_norepl");
    admin_exec(conninfo, "CREATE ROLE bq_norepl LOGIN");
    char c[512];
    snprintf(c, sizeof c, "%s user=bq_norepl", conninfo);
    bq_errbuf_t e = {{0}};
    int rc = pg_basebackup_run(c, NULL, NULL, NULL, &e);
    bq_errbuf_t e2 = {{0}};
    pg_wal_conn_t *w = NULL;
    int rc2 = pg_wal_open(c, NULL, &w, &e2);
    admin_exec(conninfo, "DROP ROLE bq_norepl");
    print_message("  %s\n", e.msg);
    assert_int_equal(rc, BQ_E_PERM);
    assert_int_equal(rc2, BQ_E_PERM);
    assert_null(w);
    const char *port = strstr(conninfo, "port=");
    assert_non_null(port);
    char where[64];
    snprintf(where, sizeof where, "to 127.0.0.1:%d as role bq_norepl: ", atoi(port + 5));
    assert_non_null(strstr(e.msg, where));
    assert_non_null(strstr(e.msg, "must be superuser or replication role"));
    assert_non_null(strstr(e.msg, "; run ALTER ROLE bq_norepl REPLICATION"));
    assert_null(strchr(e.msg, '\n'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsn),
        cmocka_unit_test(test_stream_good),
        cmocka_unit_test(test_stream_refusals),
        cmocka_unit_test(test_fuzz_seeds),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_invalid_conninfo),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_live_backup_and_wal),
        cmocka_unit_test(test_live_stopped_backups),
        cmocka_unit_test(test_live_role_without_replication),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
