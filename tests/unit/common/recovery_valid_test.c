/* common/types.c bq_recovery_valid: the recovery targets barque recover may write (each kind,
 * action and timeline form) and each refusal with its message: an unknown kind or action, a
 * timeline that is not current, latest or a number from 1 to 2^32 - 1, a value with a quote,
 * backslash or control character, a kind that needs a value without one, a value where none
 * is taken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "types.h"

#include <stdio.h>
#include <string.h>

#define assert_contains(s, sub)                                                           \
    do {                                                                                  \
        if (!strstr((s), (sub)))                                                          \
            fail_msg("\"%s\" does not contain \"%s\"", (s), (sub));                       \
    } while (0)

static bq_recovery_t rec(const char *kind, const char *value, const char *tli, const char *action)
{
    bq_recovery_t r;
    memset(&r, 0, sizeof r);
    r.enabled = 1;
    snprintf(r.kind, sizeof r.kind, "%s", kind);
    snprintf(r.value, sizeof r.value, "%s", value);
    snprintf(r.tli, sizeof r.tli, "%s", tli);
    snprintf(r.action, sizeof r.action, "%s", action);
    return r;
}

static void valid(bq_recovery_t r)
{
    char why[256] = "";
    if (bq_recovery_valid(&r, why, sizeof why) != 0)
        fail_msg("kind \"%s\" value \"%s\" tli \"%s\" action \"%s\" refused: %s", r.kind, r.value,
                 r.tli, r.action, why);
}

static void refused(bq_recovery_t r, const char *sub)
{
    char why[256] = "";
    int rc = bq_recovery_valid(&r, why, sizeof why);
    if (rc != -1)
        fail_msg("kind \"%s\" value \"%s\" tli \"%s\" action \"%s\": %d, not -1", r.kind, r.value,
                 r.tli, r.action, rc);
    assert_contains(why, sub);
}

static void test_good(void **state)
{
    (void)state;
    valid(rec("", "", "", ""));                 /* to the end of the archive */
    valid(rec("time", "2024-02-29 23:59:58+00", "", ""));
    valid(rec("time", "2024-02-29 23:59:58.123456+05:30", "latest", "promote"));
    valid(rec("xid", "4294967295", "current", "pause"));
    valid(rec("lsn", "16/B374D848", "", "shutdown"));
    valid(rec("name", "before migration \"v2\" (~!@#$%^&*)", "", ""));
    valid(rec("immediate", "", "", "promote"));
    valid(rec("", "", "latest", "pause"));
    valid(rec("", "", "1", ""));
    valid(rec("", "", "42", ""));
    valid(rec("", "", "4294967295", ""));        /* the highest timeline */
    /* a value of printable bytes at its longest, and UTF-8 */
    bq_recovery_t r = rec("name", "", "", "");
    memset(r.value, 'x', sizeof r.value - 1);
    valid(r);
    valid(rec("name", "d\xc3\xa9j\xc3\xa0 vu", "", ""));
    /* the fields pitr does not validate do not matter */
    r = rec("lsn", "0/3000000", "", "");
    r.enabled = 0;
    r.lsn = 1;
    r.time_ms = -1;
    r.exclusive = 7;
    r.standby = 1;
    valid(r);
}

static void test_kind_action(void **state)
{
    (void)state;
    refused(rec("until", "x", "", ""), "unknown recovery target kind \"until\"");
    refused(rec("Time", "2024-01-01", "", ""), "unknown recovery target kind \"Time\"");
    refused(rec("lsn ", "0/1", "", ""), "unknown recovery target kind \"lsn \"");
    refused(rec("time", "2024-01-01", "", "restart"), "unknown recovery target action \"restart\"");
    refused(rec("", "", "", "PROMOTE"), "unknown recovery target action \"PROMOTE\"");
    refused(rec("", "", "", " pause"), "unknown recovery target action \" pause\"");
    /* the kind is looked at first */
    refused(rec("bogus", "", "", "bogus"), "unknown recovery target kind");
}

static void test_timeline(void **state)
{
    (void)state;
    const char *bad[] = {"0",   "-1",      "abc",       "+2",         "1x", "0x2", "1.0",
                         "Latest", "current ", "4294967296", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char sub[64];
        snprintf(sub, sizeof sub, "recovery target timeline \"%s\" is not current, latest", bad[i]);
        refused(rec("", "", bad[i], ""), sub);
    }
    /* strtoul skips leading white space: a newline would end up inside the quoted setting */
    refused(rec("", "", "\n1", ""), "recovery target timeline");
    refused(rec("", "", " 1", ""), "recovery target timeline");
    refused(rec("", "", "\t 2", ""), "recovery target timeline");
}

static void test_value(void **state)
{
    (void)state;
    const char *sub = "has a quote, backslash or control character";
    refused(rec("name", "it's", "", ""), sub);
    refused(rec("name", "'; restore_command = 'x", "", ""), sub);
    refused(rec("name", "a\\b", "", ""), sub);
    refused(rec("name", "line\nrestore_command = 'x'", "", ""), sub);
    refused(rec("time", "2024-01-01\r", "", ""), sub);
    refused(rec("name", "tab\there", "", ""), sub);
    refused(rec("name", "del\x7f", "", ""), sub);
    refused(rec("xid", "\x01", "", ""), sub);
    /* the message quotes the value */
    refused(rec("name", "it's", "", ""), "recovery target value \"it's\"");
}

static void test_value_presence(void **state)
{
    (void)state;
    refused(rec("time", "", "", ""), "recovery target time has no value");
    refused(rec("xid", "", "latest", ""), "recovery target xid has no value");
    refused(rec("lsn", "", "", ""), "recovery target lsn has no value");
    refused(rec("name", "", "", "pause"), "recovery target name has no value");
    refused(rec("immediate", "now", "", ""), "recovery target immediate takes no value");
    refused(rec("", "2024-01-01", "", ""), "recovery target (none) takes no value");
}

/* A short buffer gets a truncated message, still NUL-terminated. */
static void test_short_buffer(void **state)
{
    (void)state;
    bq_recovery_t r = rec("until", "", "", "");
    char why[8];
    memset(why, 'z', sizeof why);
    assert_int_equal(bq_recovery_valid(&r, why, sizeof why), -1);
    assert_int_equal(strlen(why), sizeof why - 1);
    assert_string_equal(why, "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_kind_action),
        cmocka_unit_test(test_timeline),
        cmocka_unit_test(test_value),
        cmocka_unit_test(test_value_presence),
        cmocka_unit_test(test_short_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
