/* cli/wal_cmd.c wal_cmd_next_segment (wal-get's prefetcher): the segment after a segment at
 * 16 MiB (256 per "hi"), 1 GiB (4) and 1 MiB (4096), the timeline kept, and what it refuses:
 * names that are not segments, sizes that are not a power of two from 1 MiB to 1 GiB, and the
 * last segment there is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "wal_cmd.h"

#include <string.h>

#define MIB (1ull << 20)

static void next_is(const char *name, uint64_t seg_size, const char *want)
{
    char out[25];
    memset(out, 'z', sizeof out);
    int rc = wal_cmd_next_segment(name, seg_size, out);
    if (rc != 0)
        fail_msg("wal_cmd_next_segment(%s, %llu): %d", name, (unsigned long long)seg_size, rc);
    assert_string_equal(out, want);
}

static void refused(const char *name, uint64_t seg_size)
{
    char out[25];
    int rc = wal_cmd_next_segment(name, seg_size, out);
    if (rc != -1)
        fail_msg("wal_cmd_next_segment(%s, %llu): %d, not -1", name ? name : "(null)",
                 (unsigned long long)seg_size, rc);
}

static void test_16mib(void **state)
{
    (void)state;
    next_is("000000010000000000000001", 16 * MIB, "000000010000000000000002");
    next_is("000000010000000000000000", 16 * MIB, "000000010000000000000001");
    next_is("0000000100000000000000FE", 16 * MIB, "0000000100000000000000FF");
    next_is("0000000100000000000000FF", 16 * MIB, "000000010000000100000000");
    next_is("00000001000000A1000000FF", 16 * MIB, "00000001000000A200000000");
    next_is("0000000A0000000F00000009", 16 * MIB, "0000000A0000000F0000000A"); /* hex, tli kept */
    next_is("FFFFFFFF00000000000000FF", 16 * MIB, "FFFFFFFF0000000100000000");
}

static void test_other_sizes(void **state)
{
    (void)state;
    next_is("000000010000000000000002", 1024 * MIB, "000000010000000000000003");
    next_is("000000010000000000000003", 1024 * MIB, "000000010000000100000000");
    next_is("000000020000000700000003", 1024 * MIB, "000000020000000800000000");
    next_is("000000010000000000000FFF", 1 * MIB, "000000010000000100000000");
    next_is("0000000100000000000000FF", 1 * MIB, "000000010000000000000100");
    next_is("00000001000000000000003F", 64 * MIB, "000000010000000100000000");
    next_is("00000001000000000000001F", 128 * MIB, "000000010000000100000000");
}

static void test_refused(void **state)
{
    (void)state;
    /* not a segment name */
    refused(NULL, 16 * MIB);
    refused("", 16 * MIB);
    refused("00000001000000000000001", 16 * MIB);   /* 23 digits */
    refused("0000000100000000000000011", 16 * MIB); /* 25 */
    refused("0000000100000000000000ff", 16 * MIB);  /* lower case */
    refused("00000001000000000000000G", 16 * MIB);
    refused("000000000000000000000001", 16 * MIB);  /* timeline 0 */
    refused("000000010000000000000001.partial", 16 * MIB);
    refused("00000002.history", 16 * MIB);
    /* not a segment size */
    refused("000000010000000000000001", 0);
    refused("000000010000000000000001", 512 * 1024);
    refused("000000010000000000000001", 3 * MIB);
    refused("000000010000000000000001", 16 * MIB + 1);
    refused("000000010000000000000001", 2048 * MIB);
    refused("000000010000000000000001", UINT64_MAX);
    /* the last segment of its timeline: nothing after it */
    refused("00000001FFFFFFFF000000FF", 16 * MIB);
    refused("00000001FFFFFFFF00000003", 1024 * MIB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_16mib),
        cmocka_unit_test(test_other_sizes),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
