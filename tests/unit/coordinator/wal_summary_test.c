/* coordinator/wal_summary.c: list-wal's per-timeline summary of a WAL index, from names in
 * the catalog's order: contiguous runs, one missing segment, a missing range, more than 32
 * ranges, partial and history files, two timelines, the hi/lo boundary at 16 MiB and 1 GiB
 * segments, and the refusals. */
#include "wal_summary.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEG (16u << 20)

/* Feed names (NULL-terminated), each of size bytes (history and partial files: 100). */
static bq_wal_timeline_t *sum_of(const char *const *names, uint64_t size, size_t *n)
{
    wal_summary_t s;
    wal_summary_init(&s);
    for (size_t i = 0; names[i]; i++) {
        bq_errbuf_t e = {{0}};
        uint64_t sz = strlen(names[i]) == 24 ? size : 100;
        if (wal_summary_add(&s, names[i], sz, &e) != 0)
            fail_msg("wal_summary_add(%s): %s", names[i], e.msg);
    }
    bq_wal_timeline_t *tl;
    wal_summary_end(&s, &tl, n);
    return tl;
}

/* Segment names of timeline tli, segnos from..to step, at 16 MiB (256 per hi). */
static void names_of(uint32_t tli, uint64_t from, uint64_t to, uint64_t step, char (*buf)[32],
                     const char **names, size_t *k)
{
    for (uint64_t s = from; s <= to; s += step) {
        snprintf(buf[*k], 32, "%08" PRIX32 "%08" PRIX32 "%08" PRIX32, tli, (uint32_t)(s / 256),
                 (uint32_t)(s % 256));
        names[*k] = buf[*k];
        (*k)++;
    }
    names[*k] = NULL;
}

static void test_contiguous(void **state)
{
    (void)state;
    /* ...FF then the next hi: contiguous at 16 MiB */
    const char *run[] = {"0000000100000000000000FE", "0000000100000000000000FF",
                         "000000010000000100000000", "000000010000000100000001", NULL};
    size_t n;
    bq_wal_timeline_t *tl = sum_of(run, SEG, &n);
    assert_int_equal(n, 1);
    assert_int_equal(tl[0].tli, 1);
    assert_string_equal(tl[0].first, "0000000100000000000000FE");
    assert_string_equal(tl[0].last, "000000010000000100000001");
    assert_true(tl[0].segments == 4 && tl[0].bytes == 4ull * SEG);
    assert_int_equal(tl[0].ngaps, 0);
    assert_int_equal(tl[0].npartials, 0);
    assert_false(tl[0].history);
    free(tl);

    /* one segment is a timeline with no gap */
    const char *one[] = {"000000010000000000000007", NULL};
    tl = sum_of(one, SEG, &n);
    assert_int_equal(n, 1);
    assert_string_equal(tl[0].first, tl[0].last);
    assert_int_equal(tl[0].ngaps, 0);
    free(tl);

    /* nothing recorded: no timeline */
    const char *none[] = {NULL};
    tl = sum_of(none, SEG, &n);
    assert_int_equal(n, 0);
    assert_null(tl);
}

static void test_missing(void **state)
{
    (void)state;
    /* one missing (03), a range (06-08), and a range across the hi boundary (FF-0100000001) */
    const char *names[] = {"000000010000000000000001", "000000010000000000000002",
                           "000000010000000000000004", "000000010000000000000005",
                           "000000010000000000000009", "0000000100000000000000FE",
                           "000000010000000100000002", NULL};
    size_t n;
    bq_wal_timeline_t *tl = sum_of(names, SEG, &n);
    assert_int_equal(n, 1);
    assert_int_equal(tl[0].segments, 7);
    assert_string_equal(tl[0].first, "000000010000000000000001");
    assert_string_equal(tl[0].last, "000000010000000100000002");
    assert_int_equal(tl[0].ngaps, 4);
    assert_string_equal(tl[0].gaps[0], "000000010000000000000003");
    assert_string_equal(tl[0].gaps[1], "000000010000000000000006-000000010000000000000008");
    assert_string_equal(tl[0].gaps[2], "00000001000000000000000A-0000000100000000000000FD");
    assert_string_equal(tl[0].gaps[3], "0000000100000000000000FF-000000010000000100000001");
    free(tl);
}

static void test_gaps_capped(void **state)
{
    (void)state;
    static char buf[128][32];
    const char *names[130];
    size_t k = 0;
    /* segnos 0, 2, 4, ... 80: 40 single gaps; 32 listed, then 8 more */
    names_of(1, 0, 80, 2, buf, names, &k);
    size_t n;
    bq_wal_timeline_t *tl = sum_of(names, SEG, &n);
    assert_int_equal(n, 1);
    assert_int_equal(tl[0].segments, 41);
    assert_int_equal(tl[0].ngaps, WAL_SUMMARY_GAPS + 1);
    assert_string_equal(tl[0].gaps[0], "000000010000000000000001");
    assert_string_equal(tl[0].gaps[31], "00000001000000000000003F");
    assert_string_equal(tl[0].gaps[32], "... 8 more missing segments");
    free(tl);

    /* ranges of 3 missing: the rest counts segments, not ranges */
    k = 0;
    names_of(1, 0, 4 * 40, 4, buf, names, &k);
    tl = sum_of(names, SEG, &n);
    assert_int_equal(tl[0].ngaps, WAL_SUMMARY_GAPS + 1);
    assert_string_equal(tl[0].gaps[0], "000000010000000000000001-000000010000000000000003");
    assert_string_equal(tl[0].gaps[32], "... 24 more missing segments");
    free(tl);

    /* exactly 32 ranges: no last line; 33: "1 more missing segment" */
    k = 0;
    names_of(1, 0, 64, 2, buf, names, &k);
    tl = sum_of(names, SEG, &n);
    assert_int_equal(tl[0].ngaps, 32);
    free(tl);
    k = 0;
    names_of(1, 0, 66, 2, buf, names, &k);
    tl = sum_of(names, SEG, &n);
    assert_int_equal(tl[0].ngaps, 33);
    assert_string_equal(tl[0].gaps[32], "... 1 more missing segment");
    free(tl);
}

static void test_timelines(void **state)
{
    (void)state;
    /* timeline 1 ends in segment 4 (its partial), timeline 2 goes on from 4, with a gap, and
     * timeline 3 has its history and nothing else yet: in the catalog's order */
    const char *names[] = {"000000010000000000000001", "000000010000000000000002",
                           "000000010000000000000003", "000000010000000000000004.partial",
                           "00000002.history",         "000000020000000000000004",
                           "000000020000000000000007", "000000020000000000000007.partial",
                           "00000003.history",         NULL};
    size_t n;
    bq_wal_timeline_t *tl = sum_of(names, SEG, &n);
    assert_int_equal(n, 3);
    assert_int_equal(tl[0].tli, 1);
    assert_string_equal(tl[0].first, "000000010000000000000001");
    assert_string_equal(tl[0].last, "000000010000000000000003");
    assert_true(tl[0].segments == 3 && tl[0].bytes == 3ull * SEG);
    assert_int_equal(tl[0].ngaps, 0);
    assert_false(tl[0].history);
    assert_int_equal(tl[0].npartials, 1);
    assert_string_equal(tl[0].partials[0], "000000010000000000000004.partial");

    assert_int_equal(tl[1].tli, 2);
    assert_true(tl[1].history);
    assert_string_equal(tl[1].first, "000000020000000000000004");
    assert_string_equal(tl[1].last, "000000020000000000000007");
    assert_int_equal(tl[1].segments, 2);
    assert_int_equal(tl[1].ngaps, 1);
    assert_string_equal(tl[1].gaps[0], "000000020000000000000005-000000020000000000000006");
    assert_int_equal(tl[1].npartials, 1);

    assert_int_equal(tl[2].tli, 3);
    assert_true(tl[2].history);
    assert_string_equal(tl[2].first, "");
    assert_string_equal(tl[2].last, "");
    assert_true(tl[2].segments == 0 && tl[2].bytes == 0);
    assert_int_equal(tl[2].ngaps, 0);
    free(tl);

    /* more than 32 partials in a timeline (never in practice): 32 and a count */
    static char buf[40][40];
    const char *many[41];
    for (int i = 0; i < 35; i++) {
        snprintf(buf[i], sizeof buf[i], "0000000500000000000000%02X.partial", i);
        many[i] = buf[i];
    }
    many[35] = NULL;
    tl = sum_of(many, SEG, &n);
    assert_int_equal(n, 1);
    assert_int_equal(tl[0].segments, 0);
    assert_int_equal(tl[0].npartials, WAL_SUMMARY_PARTIALS + 1);
    assert_string_equal(tl[0].partials[32], "... 3 more partials");
    free(tl);
}

/* The segment size comes from the first complete segment's size. */
static void test_seg_size(void **state)
{
    (void)state;
    /* 1 GiB: 4 segments per hi, so ...03 then 0100000000 is contiguous */
    const char *big[] = {"000000010000000000000002", "000000010000000000000003",
                         "000000010000000100000000", "000000010000000100000003", NULL};
    size_t n;
    bq_wal_timeline_t *tl = sum_of(big, 1u << 30, &n);
    assert_int_equal(tl[0].ngaps, 1);
    assert_string_equal(tl[0].gaps[0], "000000010000000100000001-000000010000000100000002");
    free(tl);
    /* the same names at 16 MiB: 252 missing after ...03 */
    tl = sum_of(big, SEG, &n);
    assert_int_equal(tl[0].ngaps, 2);
    assert_string_equal(tl[0].gaps[0], "000000010000000000000004-0000000100000000000000FF");
    free(tl);
    /* a size that is no wal_segment_size: 16 MiB is assumed */
    tl = sum_of(big, 12345, &n);
    assert_int_equal(tl[0].ngaps, 2);
    assert_true(tl[0].bytes == 4 * 12345);
    free(tl);
    /* at 1 GiB, lo 4 is no segment: counted, no gap from it */
    const char *odd[] = {"000000010000000000000002", "000000010000000000000004",
                         "000000010000000100000000", NULL};
    tl = sum_of(odd, 1u << 30, &n);
    assert_int_equal(tl[0].segments, 3);
    assert_int_equal(tl[0].ngaps, 1);
    assert_string_equal(tl[0].gaps[0], "000000010000000000000003");
    free(tl);
}

static void test_refusals(void **state)
{
    (void)state;
    wal_summary_t s;
    bq_errbuf_t e = {{0}};
    wal_summary_init(&s);
    assert_int_equal(wal_summary_add(&s, "00000001000000000000000a", SEG, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "\"00000001000000000000000a\" is not a WAL file name"));
    assert_int_equal(wal_summary_add(&s, "000000020000000000000001", SEG, &e), 0);
    assert_int_equal(wal_summary_add(&s, "000000010000000000000002", SEG, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "000000010000000000000002 comes after timeline 2's files"));
    wal_summary_clear(&s);
    wal_summary_clear(NULL);

    wal_summary_init(&s);
    char name[32];
    int rc = 0;
    for (uint32_t tli = 1; tli <= WAL_SUMMARY_TIMELINES + 1 && rc == 0; tli++) {
        snprintf(name, sizeof name, "%08" PRIX32 ".history", tli);
        rc = wal_summary_add(&s, name, 40, &e);
    }
    assert_int_equal(rc, BQ_E_TOOBIG);
    assert_non_null(strstr(e.msg, "more than 1000 timelines"));
    wal_summary_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contiguous), cmocka_unit_test(test_missing),
        cmocka_unit_test(test_gaps_capped), cmocka_unit_test(test_timelines),
        cmocka_unit_test(test_seg_size),   cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
