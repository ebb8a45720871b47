/* pg_check against a live server (BQ_TEST_CONNINFO, set by integration.harness), an address
 * where nothing listens, and conninfo strings libpq cannot parse. */
#include "pg_check.h"

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

static const bq_check_item_t *find_item(const bq_check_result_t *r, const char *name)
{
    for (size_t i = 0; i < r->nitems; i++)
        if (strcmp(r->items[i].name, name) == 0)
            return &r->items[i];
    return NULL;
}

static void print_result(const bq_check_result_t *r)
{
    for (size_t i = 0; i < r->nitems; i++)
        print_message("  %-20s %-6s %s\n", r->items[i].name, r->items[i].ok ? "OK" : "FAILED",
                      r->items[i].detail);
}

static void test_live_server(void **state)
{
    (void)state;
    const char *conninfo = getenv("BQ_TEST_CONNINFO");
    if (!conninfo || !*conninfo) {
        print_message("BQ_TEST_CONNINFO is not set: skipping the live-server test\n");
        skip();
    }
    bq_check_result_t r;
    bq_errbuf_t e = {{0}};
    assert_int_equal(pg_check_run(conninfo, 5, &r, &e), 0);
    print_result(&r);

    assert_int_equal(strncmp(r.server_version, "15", 2), 0);
    assert_true(r.system_identifier != 0);
    assert_string_equal(r.wal_level, "replica");
    assert_true(r.max_wal_senders >= 2);
    assert_true(r.archive_mode[0] != '\0');
    assert_int_equal(r.can_replicate, 1);

    static const char *const expected[] = {"connection",      "replication role",
                                           "wal_level",       "max_wal_senders",
                                           "server version",  "system identifier"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const bq_check_item_t *it = find_item(&r, expected[i]);
        if (!it)
            fail_msg("item \"%s\" is missing", expected[i]);
        if (!it->ok)
            fail_msg("item \"%s\" FAILED: %s", expected[i], it->detail);
    }
    char sysid[32];
    snprintf(sysid, sizeof sysid, "%llu", (unsigned long long)r.system_identifier);
    assert_string_equal(find_item(&r, "system identifier")->detail, sysid);
    assert_int_equal(pg_check_passed(&r), 1);

    /* The same server through a URI works as well (expand_dbname). */
    const char *port = strstr(conninfo, "port=");
    if (port) {
        char uri[256];
        snprintf(uri, sizeof uri, "postgresql://postgres@127.0.0.1:%d/postgres", atoi(port + 5));
        bq_check_result_t r2;
        assert_int_equal(pg_check_run(uri, 5, &r2, &e), 0);
        assert_int_equal(pg_check_passed(&r2), 1);
        assert_true(r2.system_identifier == r.system_identifier);
    }

    /* replication=true in the conninfo is overridden: the checks need a SQL connection. */
    char repl[512];
    snprintf(repl, sizeof repl, "%s replication=true", conninfo);
    bq_check_result_t r3;
    assert_int_equal(pg_check_run(repl, 5, &r3, &e), 0);
    print_result(&r3);
    assert_int_equal(pg_check_passed(&r3), 1);

    /* An explicit connect_timeout in the conninfo is kept (and accepted). */
    snprintf(repl, sizeof repl, "%s connect_timeout=3", conninfo);
    assert_int_equal(pg_check_run(repl, 5, &r3, &e), 0);
    assert_int_equal(pg_check_passed(&r3), 1);
}

static PGconn *admin_connect(const char *conninfo)
{
    const char *keys[] = {"dbname", NULL};
    const char *vals[] = {conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        fail_msg("could not connect to %s: %s", conninfo, conn ? PQerrorMessage(conn) : "?");
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    return conn;
}

static void admin_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
}

/* 9 slots of 63 characters do not fit in BQ_SLOTS_MAX (512): the list stops after the 8th. */
static void test_live_slots_truncated(void **state)
{
    (void)state;
    const char *conninfo = getenv("BQ_TEST_CONNINFO");
    if (!conninfo || !*conninfo)
        skip();
    PGconn *conn = admin_connect(conninfo);
    char name[9][64], sql[256], want[BQ_SLOTS_MAX] = "";
    for (int i = 0; i < 9; i++) {
        snprintf(name[i], sizeof name[i], "bq_slot_%d_%.*s", i, 53,
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_int_equal(strlen(name[i]), 63);
        snprintf(sql, sizeof sql, "SELECT pg_create_physical_replication_slot('%s')", name[i]);
        admin_exec(conn, sql);
        if (i < 8)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", i ? "," : "",
                     name[i]);
    }
    bq_check_result_t r;
    bq_errbuf_t e = {{0}};
    int rc = pg_check_run(conninfo, 5, &r, &e);
    admin_exec(conn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name LIKE 'bq\\_slot\\_%'");
    PQfinish(conn);
    assert_int_equal(rc, 0);
    print_result(&r);
    assert_string_equal(r.slots, want);
    const bq_check_item_t *it = find_item(&r, "replication slots");
    assert_non_null(it);
    assert_int_equal(it->ok, 1);
    assert_string_equal(it->detail, "slot list truncated: 8 of 9 slots shown");

    /* With the slots gone, the list is empty again and there is no such item. */
    assert_int_equal(pg_check_run(conninfo, 5, &r, &e), 0);
    assert_null(find_item(&r, "replication slots"));
}

/* A role with neither SUPERUSER nor REPLICATION connects but fails "replication role". */
static void test_live_role_without_replication(void **state)
{
    (void)state;
    const char *conninfo = getenv("BQ_TEST_CONNINFO");
    if (!conninfo || !*conninfo)
        skip();
    PGconn *conn = admin_connect(conninfo);
    admin_exec(conn, "DROP ROLE IF EXISTS bq_plain");
    admin_exec(conn, "CREATE ROLE bq_plain LOGIN");
    char plain[512];
    snprintf(plain, sizeof plain, "%s user=bq_plain", conninfo);
    bq_check_result_t r;
    bq_errbuf_t e = {{0}};
    int rc = pg_check_run(plain, 5, &r, &e);
    admin_exec(conn, "DROP ROLE bq_plain");
    PQfinish(conn);
    assert_int_equal(rc, 0);
    print_result(&r);
    assert_int_equal(r.can_replicate, 0);
    const bq_check_item_t *it = find_item(&r, "replication role");
    assert_non_null(it);
    assert_int_equal(it->ok, 0);
    assert_string_equal(it->detail, "role bq_plain has neither SUPERUSER nor REPLICATION; "
                                    "run ALTER ROLE bq_plain REPLICATION");
    assert_int_equal(find_item(&r, "connection")->ok, 1);
    assert_int_equal(find_item(&r, "wal_level")->ok, 1);
    assert_int_equal(pg_check_passed(&r), 0);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* Port 1 on loopback: nothing listens there and only root could bind it. */
    static const char *const conninfos[] = {
        "host=127.0.0.1 port=1 user=postgres dbname=postgres",
        "postgresql://postgres@127.0.0.1:1/postgres",
    };
    for (size_t i = 0; i < sizeof conninfos / sizeof conninfos[0]; i++) {
        bq_check_result_t r;
        bq_errbuf_t e = {{0}};
        assert_int_equal(pg_check_run(conninfos[i], 2, &r, &e), 0);
        print_result(&r);
        assert_int_equal(r.nitems, 1);
        assert_string_equal(r.items[0].name, "connection");
        assert_int_equal(r.items[0].ok, 0);
        if (!strstr(r.items[0].detail, "Connection refused") &&
            !strstr(r.items[0].detail, "could not connect"))
            fail_msg("unexpected reason: %s", r.items[0].detail);
        assert_null(strchr(r.items[0].detail, '\n'));
        assert_int_equal(pg_check_passed(&r), 0);
        assert_true(r.system_identifier == 0);
    }
}

/* A server that accepts TCP but never speaks: connect_timeout_s must end the wait, and a
 * connect_timeout in the conninfo wins over it. */
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

    static const struct {
        const char *extra;
        int timeout_s;
        double min_s, max_s;
    } cases[] = {
        /* libpq's minimum is 2 s, but it counts whole seconds of time(): a 2 s deadline set
         * late in a second ends after just over 1 s. */
        {"", 2, 0.9, 6.0},
        {" connect_timeout=2", 30, 0.9, 6.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char conninfo[128];
        snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=postgres%s",
                 ntohs(sa.sin_port), cases[i].extra);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        bq_check_result_t r;
        bq_errbuf_t e = {{0}};
        assert_int_equal(pg_check_run(conninfo, cases[i].timeout_s, &r, &e), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        print_result(&r);
        assert_int_equal(r.nitems, 1);
        assert_int_equal(r.items[0].ok, 0);
        if (!strstr(r.items[0].detail, "timeout expired"))
            fail_msg("unexpected reason: %s", r.items[0].detail);
        if (took < cases[i].min_s || took > cases[i].max_s)
            fail_msg("\"%s\" took %.2f s, want %.1f..%.1f", conninfo, took, cases[i].min_s,
                     cases[i].max_s);
    }
    close(fd);
}

static void test_invalid_conninfo(void **state)
{
    (void)state;
    static const struct {
        const char *conninfo;
        const char *reason; /* a part of libpq's message */
    } cases[] = {
        {"host=127.0.0.1 port", "missing \"=\" after \"port\""},
        {"nosuchoption=1", "invalid connection option \"nosuchoption\""},
        {"host='127.0.0.1", "unterminated quoted string"},
        {"postgresql://[::1/postgres", "looking for matching \"]\""},
        {"mydb", "missing \"=\" after \"mydb\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bq_check_result_t r;
        bq_errbuf_t e = {{0}};
        int rc = pg_check_run(cases[i].conninfo, 2, &r, &e);
        if (rc != BQ_E_INVAL)
            fail_msg("conninfo \"%s\": got %s, want BQ_E_INVAL", cases[i].conninfo,
                     bq_err_name(rc));
        if (!strstr(e.msg, "invalid conninfo: ") || !strstr(e.msg, cases[i].reason))
            fail_msg("conninfo \"%s\": message \"%s\" lacks \"%s\"", cases[i].conninfo, e.msg,
                     cases[i].reason);
        assert_null(strchr(e.msg, '\n'));
    }
}

static void test_passed(void **state)
{
    (void)state;
    bq_check_result_t r;
    memset(&r, 0, sizeof r);
    assert_int_equal(pg_check_passed(&r), 0); /* nothing checked is not a pass */
    r.nitems = 2;
    r.items[0].ok = 1;
    r.items[1].ok = 1;
    assert_int_equal(pg_check_passed(&r), 1);
    r.items[1].ok = 0;
    assert_int_equal(pg_check_passed(&r), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passed),
        cmocka_unit_test(test_invalid_conninfo),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_live_server),
        cmocka_unit_test(test_live_slots_truncated),
        cmocka_unit_test(test_live_role_without_replication),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
