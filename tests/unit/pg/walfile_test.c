/* WAL page headers and timeline history files (pg/walfile.h). */
#include "walfile.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* The first page of segment segno of timeline tli, 16 MiB segments, as PostgreSQL 15 writes. */
static void first_page(uint8_t *p, uint32_t tli, uint64_t segno, uint64_t sysid)
{
    memset(p, 0, 8192);
    put16(p, 0xD110);
    put16(p + 2, 0x0002 | 0x0004);
    put32(p + 4, tli);
    put64(p + 8, segno * (16u << 20));
    put64(p + 24, sysid);
    put32(p + 32, 16u << 20);
    put32(p + 36, 8192);
}

static void test_page_header(void **state)
{
    (void)state;
    uint8_t p[8192];
    bq_errbuf_t e = {{0}};
    pg_wal_page_t pg;
    first_page(p, 3, 0x1A2, 7314620018112519047ull);
    assert_int_equal(pg_wal_page_parse(p, sizeof p, &pg, &e), 0);
    assert_true(pg.long_header);
    assert_int_equal(pg.tli, 3);
    assert_int_equal(pg.pageaddr, 0x1A2ull << 24);
    assert_int_equal(pg.sysid, 7314620018112519047ull);
    assert_int_equal(pg.seg_size, 16u << 20);
    assert_int_equal(pg.page_size, 8192);
    /* the segment's own name, and what is wrong with others */
    assert_int_equal(pg_wal_segment_check("0000000300000001000000A2", p, sizeof p,
                                          7314620018112519047ull, 16u << 20, &e), 0);
    assert_int_equal(pg_wal_segment_check("0000000300000001000000A2.partial", p, sizeof p, 0, 0,
                                          &e), 0);
    static const struct {
        const char *name;
        uint64_t sysid;
        uint32_t seg;
        const char *msg;
    } bad[] = {
        {"0000000300000001000000A3", 0, 0, "not its own place"},
        {"0000000400000001000000A2", 0, 0, "holds timeline 3"},
        {"0000000300000001000000A2", 42, 0, "belongs to system 7314620018112519047, not 42"},
        {"0000000300000001000000A2", 0, 1u << 20, "segments of 16777216 bytes, not 1048576"},
        {"0000000300000001000001A2", 0, 0, "out of range"},
        {"0000000300000001000000a2", 0, 0, "is not a WAL segment name"},
        {"00000003.history", 0, 0, "is not a WAL segment name"},
        {"0000000000000001000000A2", 0, 0, "is not a WAL segment name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        assert_int_equal(pg_wal_segment_check(bad[i].name, p, sizeof p, bad[i].sysid, bad[i].seg,
                                              &e), BQ_E_INVAL);
        if (!strstr(e.msg, bad[i].msg))
            fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].name, e.msg, bad[i].msg);
    }
    /* damaged headers */
    uint8_t q[8192];
    memcpy(q, p, sizeof q);
    put16(q, 0xD10D); /* PostgreSQL 14's magic */
    assert_int_equal(pg_wal_page_parse(q, sizeof q, &pg, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "magic 0xD10D, not PostgreSQL 15's 0xD110"));
    memcpy(q, p, sizeof q);
    put16(q + 2, 0x0012);
    assert_int_equal(pg_wal_page_parse(q, sizeof q, &pg, &e), BQ_E_INVAL);
    memcpy(q, p, sizeof q);
    put32(q + 32, 3u << 20);
    assert_int_equal(pg_wal_page_parse(q, sizeof q, &pg, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "segment size 3145728"));
    memcpy(q, p, sizeof q);
    put32(q + 4, 0);
    assert_int_equal(pg_wal_page_parse(q, sizeof q, &pg, &e), BQ_E_INVAL);
    assert_int_equal(pg_wal_page_parse(p, 39, &pg, &e), BQ_E_INVAL);
    assert_int_equal(pg_wal_page_parse(p, 23, &pg, &e), BQ_E_INVAL);
    assert_int_equal(pg_wal_page_parse(NULL, 0, &pg, &e), BQ_E_INVAL);
    /* a short header (a later page) parses without the long fields */
    memcpy(q, p, sizeof q);
    put16(q + 2, 0x0001);
    assert_int_equal(pg_wal_page_parse(q, 24, &pg, &e), 0);
    assert_false(pg.long_header);
    assert_int_equal(pg_wal_segment_check("0000000300000001000000A2", q, sizeof q, 0, 0, &e),
                     BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "no long header"));
}

static void test_history(void **state)
{
    (void)state;
    pg_tli_entry_t t[8];
    size_t n = 0;
    bq_errbuf_t e = {{0}};
    static const char h3[] = "1\t0/3000158\tno recovery target specified\n"
                             "\n# a comment\n"
                             "2\t0/50000A0\tat restore point \"before\"\n";
    assert_int_equal(pg_tli_history_parse(h3, strlen(h3), 3, t, 8, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(t[0].tli, 1);
    assert_int_equal(t[0].end, 0x3000158ull);
    assert_int_equal(t[1].tli, 2);
    assert_int_equal(t[1].end, 0x50000A0ull);
    /* no trailing newline, lowercase hex, a high part */
    static const char h2[] = "1\t1a/b0";
    assert_int_equal(pg_tli_history_parse(h2, strlen(h2), 2, t, 8, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(t[0].end, (0x1aull << 32) | 0xb0);
    static const struct {
        const char *text;
        uint32_t tli;
        int rc;
        const char *msg;
    } bad[] = {
        {"x\t0/1\tr\n", 2, BQ_E_INVAL, "line 1: no timeline number"},
        {"1 0/1 r\n2\t0/\tr\n", 3, BQ_E_INVAL, "line 2: no switch point"},
        {"1\t0/1x\n", 2, BQ_E_INVAL, "text after the switch point"},
        {"2\t0/1\n", 2, BQ_E_INVAL, "timeline 2 is not between 0 and 2"},
        {"2\t0/1\n1\t0/2\n", 3, BQ_E_INVAL, "line 2: timeline 1 is not between 2 and 3"},
        {"1\t0/5\n2\t0/4\n", 3, BQ_E_INVAL, "switch point goes back"},
        {"1\t123456789/0\n", 2, BQ_E_INVAL, "no switch point"},
        {"99999999999\t0/0\n", 2, BQ_E_INVAL, "no timeline number"},
        {"1\t0/1\n", 1, BQ_E_INVAL, "timeline 1 has none"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        int rc = pg_tli_history_parse(bad[i].text, strlen(bad[i].text), bad[i].tli, t, 8, &n, &e);
        if (rc != bad[i].rc || !strstr(e.msg, bad[i].msg))
            fail_msg("case %zu: got %s \"%s\", want \"%s\"", i, bq_err_name(rc), e.msg, bad[i].msg);
    }
    static const char nul[] = "1\t0/1\0\n";
    assert_int_equal(pg_tli_history_parse(nul, sizeof nul - 1, 2, t, 8, &n, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "NUL"));
    static const char many[] = "1\t0/1\n2\t0/2\n3\t0/3\n";
    assert_int_equal(pg_tli_history_parse(many, strlen(many), 9, t, 2, &n, &e), BQ_E_TOOBIG);
    assert_int_equal(pg_tli_history_parse("", 0, 2, t, 2, &n, &e), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_header),
        cmocka_unit_test(test_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
