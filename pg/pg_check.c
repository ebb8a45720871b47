#include "pg_check.h"

#include <libpq-fe.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_CHECK_MIN_VERSION 150000   /* PQserverVersion() form of PostgreSQL 15 */
#define PG_CHECK_MIN_WAL_SENDERS 2    /* one WAL stream and one base backup */

static void add_item(bq_check_result_t *r, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_item(bq_check_result_t *r, const char *name, int ok, const char *fmt, ...)
{
    if (r->nitems >= BQ_CHECK_ITEMS_MAX)
        return;
    bq_check_item_t *it = &r->items[r->nitems++];
    snprintf(it->name, sizeof it->name, "%s", name);
    it->ok = ok ? 1 : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->detail, sizeof it->detail, fmt, ap);
    va_end(ap);
}

/* Copy the first line of a libpq message (which ends in '\n' and may go on with hints). */
static void first_line(char *dst, size_t size, const char *msg)
{
    if (!msg || !*msg)
        msg = "unknown libpq error";
    size_t n = strcspn(msg, "\n");
    if (n >= size)
        n = size - 1;
    memcpy(dst, msg, n);
    dst[n] = '\0';
}

/* Run a query expected to return one row and one column. On success copies the value into
 * val; on failure copies the reason (first line of the server's or libpq's message). */
static int query_value(PGconn *conn, const char *sql, char *val, size_t size, char *why,
                       size_t why_size)
{
    PGresult *res = PQexec(conn, sql);
    if (!res) {
        first_line(why, why_size, PQerrorMessage(conn));
        return -1;
    }
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        first_line(why, why_size, PQresultErrorMessage(res));
    } else if (PQntuples(res) < 1 || PQnfields(res) < 1 || PQgetisnull(res, 0, 0)) {
        snprintf(why, why_size, "query returned no value: %s", sql);
    } else {
        snprintf(val, size, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    }
    PQclear(res);
    return rc;
}

/* Slot names joined by ',' into r->slots, cut at a slot boundary when they do not fit. */
static void check_slots(PGconn *conn, bq_check_result_t *r)
{
    PGresult *res = PQexec(conn, "SELECT slot_name FROM pg_replication_slots ORDER BY 1");
    char why[BQ_DETAIL_MAX];
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        first_line(why, sizeof why, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        add_item(r, "replication slots", 0, "could not list replication slots: %s", why);
        PQclear(res);
        return;
    }
    int n = PQntuples(res), shown = 0;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        const char *name = PQgetvalue(res, i, 0);
        size_t need = strlen(name) + (len ? 1 : 0);
        if (len + need >= sizeof r->slots)
            break;
        snprintf(r->slots + len, sizeof r->slots - len, "%s%s", len ? "," : "", name);
        len += need;
        shown++;
    }
    if (shown < n)
        add_item(r, "replication slots", 1, "slot list truncated: %d of %d slots shown", shown,
                 n);
    PQclear(res);
}

static void check_role(PGconn *conn, bq_check_result_t *r)
{
    char val[16], why[BQ_DETAIL_MAX];
    const char *user = PQuser(conn);
    if (query_value(conn,
                    "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user",
                    val, sizeof val, why, sizeof why) != 0) {
        add_item(r, "replication role", 0, "could not read the attributes of role %s: %s", user,
                 why);
        return;
    }
    r->can_replicate = strcmp(val, "t") == 0;
    if (r->can_replicate)
        add_item(r, "replication role", 1, "role %s may replicate", user);
    else
        add_item(r, "replication role", 0,
                 "role %s has neither SUPERUSER nor REPLICATION; run ALTER ROLE %s REPLICATION",
                 user, user);
}

static void check_wal_level(PGconn *conn, bq_check_result_t *r)
{
    char why[BQ_DETAIL_MAX];
    if (query_value(conn, "SHOW wal_level", r->wal_level, sizeof r->wal_level, why,
                    sizeof why) != 0) {
        add_item(r, "wal_level", 0, "could not read wal_level: %s", why);
        return;
    }
    if (strcmp(r->wal_level, "replica") == 0 || strcmp(r->wal_level, "logical") == 0)
        add_item(r, "wal_level", 1, "%s", r->wal_level);
    else
        add_item(r, "wal_level", 0,
                 "wal_level is %s; set wal_level = replica and restart PostgreSQL", r->wal_level);
}

static void check_wal_senders(PGconn *conn, bq_check_result_t *r)
{
    char val[32], why[BQ_DETAIL_MAX];
    if (query_value(conn, "SHOW max_wal_senders", val, sizeof val, why, sizeof why) != 0) {
        add_item(r, "max_wal_senders", 0, "could not read max_wal_senders: %s", why);
        return;
    }
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < 0 || v > 1000000) {
        add_item(r, "max_wal_senders", 0, "unexpected max_wal_senders value \"%s\"", val);
        return;
    }
    r->max_wal_senders = (int)v;
    if (v >= PG_CHECK_MIN_WAL_SENDERS)
        add_item(r, "max_wal_senders", 1, "%ld", v);
    else
        add_item(r, "max_wal_senders", 0,
                 "max_wal_senders is %ld; Barque needs at least %d (a WAL stream and a backup)", v,
                 PG_CHECK_MIN_WAL_SENDERS);
}

static void check_version(PGconn *conn, bq_check_result_t *r)
{
    char why[BQ_DETAIL_MAX];
    if (query_value(conn, "SHOW server_version", r->server_version, sizeof r->server_version,
                    why, sizeof why) != 0) {
        add_item(r, "server version", 0, "could not read server_version: %s", why);
        return;
    }
    int num = PQserverVersion(conn);
    if (num >= PG_CHECK_MIN_VERSION)
        add_item(r, "server version", 1, "%s", r->server_version);
    else
        add_item(r, "server version", 0, "PostgreSQL %s is older than 15, which Barque requires",
                 r->server_version);
}

static void check_sysid(PGconn *conn, bq_check_result_t *r)
{
    char val[32], why[BQ_DETAIL_MAX];
    if (query_value(conn, "SELECT system_identifier FROM pg_control_system()", val, sizeof val,
                    why, sizeof why) != 0) {
        add_item(r, "system identifier", 0, "could not read the system identifier: %s", why);
        return;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end || v == 0) {
        add_item(r, "system identifier", 0, "unexpected system identifier \"%s\"", val);
        return;
    }
    r->system_identifier = (uint64_t)v;
    add_item(r, "system identifier", 1, "%" PRIu64, r->system_identifier);
}

/* Server notices are not ours to print: a daemon's stderr is its log. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* The WAL receiver barque_<cluster> (app: its application_name; slot: its slot): the slot
 * exists and is active, and the receiver streams, with its lag. */
static void check_receiver(PGconn *conn, const char *app, const char *slot, bq_check_result_t *r)
{
    char sql[512], val[128], why[BQ_DETAIL_MAX];
    char *qs = PQescapeLiteral(conn, slot, strlen(slot));
    char *qa = PQescapeLiteral(conn, app, strlen(app));
    if (!qs || !qa) {
        add_item(r, "WAL slot", 0, "out of memory");
        PQfreemem(qs);
        PQfreemem(qa);
        return;
    }
    snprintf(sql, sizeof sql, "SELECT CASE WHEN count(*) = 0 THEN 'missing' WHEN bool_or(active) "
             "THEN 'active' ELSE 'inactive' END FROM pg_replication_slots WHERE slot_name = %s", qs);
    if (query_value(conn, sql, val, sizeof val, why, sizeof why) != 0)
        add_item(r, "WAL slot", 0, "could not read pg_replication_slots: %s", why);
    else if (strcmp(val, "active") == 0)
        add_item(r, "WAL slot", 1, "%s is active", slot);
    else
        add_item(r, "WAL slot", 0, "%s is %s%s", slot, val,
                 strcmp(val, "missing") == 0 ? " (the wal-stream job creates it)"
                                             : ": no receiver uses it, WAL accumulates on the server");
    snprintf(sql, sizeof sql, "SELECT coalesce((SELECT state || ' ' || sync_state || ' ' || "
             "(pg_current_wal_lsn() - flush_lsn)::bigint || ' ' || "
             "round(coalesce(extract(epoch FROM flush_lag), 0)::numeric, 3) FROM "
             "pg_stat_replication WHERE application_name = %s LIMIT 1), 'none')", qa);
    PQfreemem(qs);
    PQfreemem(qa);
    char state[32] = "", sync[32] = "";
    long long lag = 0;
    double lag_s = 0;
    if (query_value(conn, sql, val, sizeof val, why, sizeof why) != 0)
        add_item(r, "WAL receiver", 0, "could not read pg_stat_replication: %s", why);
    else if (strcmp(val, "none") == 0)
        add_item(r, "WAL receiver", 0, "%s is not connected", app);
    else if (sscanf(val, "%31s %31s %lld %lf", state, sync, &lag, &lag_s) == 4 &&
             strcmp(state, "streaming") == 0) {
        add_item(r, "WAL receiver", 1, "%s streaming (%s), %lld bytes and %.3f s behind", app,
                 sync, lag, lag_s);
        r->receiver_lag = lag;
        r->receiver_lag_known = 1;
    }
    else
        add_item(r, "WAL receiver", 0, "%s is %s", app, val);
}

void pg_receiver_names(const char *cluster, char *slot, size_t slot_cap, char *app,
                       size_t app_cap)
{
    snprintf(app, app_cap, "barque_%s", cluster);
    size_t n = (size_t)snprintf(slot, slot_cap, "barque_%s", cluster);
    if (n >= slot_cap)
        n = slot_cap - 1;
    if (n > 63)
        n = 63;
    slot[n] = '\0';
    for (size_t i = 7; i < n; i++) {
        char ch = slot[i];
        if (ch >= 'A' && ch <= 'Z')
            slot[i] = (char)(ch - 'A' + 'a');
        else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
            slot[i] = '_';
    }
}

int pg_check_run(const char *conninfo, int connect_timeout_s, bq_check_result_t *out,
                 bq_errbuf_t *e)
{
    return pg_check_run_receiver(conninfo, connect_timeout_s, NULL, NULL, out, e);
}

int pg_check_run_receiver(const char *conninfo, int connect_timeout_s, const char *app,
                          const char *slot, bq_check_result_t *out, bq_errbuf_t *e)
{
    if (!conninfo || !out)
        return bq_fail(e, BQ_E_INVAL, "pg_check_run: conninfo and result are required");
    memset(out, 0, sizeof *out);

    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (!opts) {
        char why[BQ_DETAIL_MAX];
        first_line(why, sizeof why, perr ? perr : "out of memory");
        PQfreemem(perr);
        return bq_fail(e, BQ_E_INVAL, "invalid conninfo: %s", why);
    }
    int has_timeout = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && *o->val)
            has_timeout = 1;
    PQconninfoFree(opts);

    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", connect_timeout_s > 0 ? connect_timeout_s : 10);
    /* Keywords after dbname override what it expands to: this is never a replication
     * connection, whatever conninfo says, since the checks run SQL. */
    const char *keys[5] = {"fallback_application_name", "dbname", "replication", NULL, NULL};
    const char *vals[5] = {"barque", conninfo, "false", NULL, NULL};
    if (!has_timeout) {
        keys[3] = "connect_timeout";
        vals[3] = timeout;
    }
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn)
        return bq_fail(e, BQ_E_NOMEM, "could not allocate a libpq connection");
    if (PQstatus(conn) != CONNECTION_OK) {
        char why[BQ_DETAIL_MAX];
        first_line(why, sizeof why, PQerrorMessage(conn));
        add_item(out, "connection", 0, "%s", why);
        PQfinish(conn);
        return 0;
    }
    PQsetNoticeProcessor(conn, ignore_notice, NULL);
    add_item(out, "connection", 1, "connected to %s port %s as %s", PQhost(conn), PQport(conn),
             PQuser(conn));

    check_role(conn, out);
    check_wal_level(conn, out);
    check_wal_senders(conn, out);
    check_version(conn, out);
    check_sysid(conn, out);

    char why[BQ_DETAIL_MAX];
    if (query_value(conn, "SHOW archive_mode", out->archive_mode, sizeof out->archive_mode, why,
                    sizeof why) != 0)
        add_item(out, "archive_mode", 0, "could not read archive_mode: %s", why);
    check_slots(conn, out);
    if (app && slot)
        check_receiver(conn, app, slot, out);

    PQfinish(conn);
    return 0;
}

int pg_check_passed(const bq_check_result_t *r)
{
    if (!r || r->nitems == 0)
        return 0;
    for (size_t i = 0; i < r->nitems; i++)
        if (!r->items[i].ok)
            return 0;
    return 1;
}

int pg_tablespaces_list(const char *conninfo, int connect_timeout_s, pg_tablespace_fn fn,
                        void *arg, bq_errbuf_t *e)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", connect_timeout_s > 0 ? connect_timeout_s : 10);
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {conninfo, timeout, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char why[512];
        first_line(why, sizeof why, c ? PQerrorMessage(c) : "out of memory");
        int rc = bq_fail(e, BQ_E_PG, "could not connect to list the tablespaces: %s", why);
        PQfinish(c);
        return rc;
    }
    PGresult *r = PQexec(c, "SELECT oid, spcname FROM pg_tablespace "
                            "WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char why[512];
        first_line(why, sizeof why, PQerrorMessage(c));
        rc = bq_fail(e, BQ_E_PG, "could not list the tablespaces: %s", why);
    }
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        rc = fn(arg, (uint32_t)strtoul(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 1));
    PQclear(r);
    PQfinish(c);
    return rc;
}

int pg_switch_wal(const char *conninfo, int force, int connect_timeout_s, char *name, size_t cap,
                  int *switched, bq_errbuf_t *e)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", connect_timeout_s > 0 ? connect_timeout_s : 10);
    const char *keys[] = {"dbname", "connect_timeout", "fallback_application_name", NULL};
    const char *vals[] = {conninfo, timeout, "barque", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char why[512];
        first_line(why, sizeof why, c ? PQerrorMessage(c) : "out of memory");
        int rc = bq_fail(e, BQ_E_PG, "could not connect to switch WAL: %s", why);
        PQfinish(c);
        return rc;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL);
    char why[512], before[64], end[64];
    int rc = 0;
    if (force) { /* a checkpoint record: something to close even on an idle server */
        PGresult *r = PQexec(c, "CHECKPOINT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            first_line(why, sizeof why, PQerrorMessage(c));
            rc = bq_fail(e, BQ_E_PG, "CHECKPOINT failed: %s", why);
        }
        PQclear(r);
    }
    if (rc == 0 && query_value(c, "SELECT pg_current_wal_insert_lsn()", before, sizeof before,
                               why, sizeof why) != 0)
        rc = bq_fail(e, BQ_E_PG, "could not read the WAL position: %s", why);
    if (rc == 0 && query_value(c, "SELECT pg_switch_wal()", end, sizeof end, why, sizeof why) != 0)
        rc = bq_fail(e, strstr(why, "recovery") ? BQ_E_STATE : BQ_E_PG,
                     "pg_switch_wal() failed: %s", why);
    char sql[160], val[64];
    /* nothing was written since the last switch: the server closed no segment */
    if (rc == 0)
        *switched = strcmp(before, end) != 0;
    snprintf(sql, sizeof sql, "SELECT pg_walfile_name('%s'::pg_lsn)", end);
    if (rc == 0 && query_value(c, sql, val, sizeof val, why, sizeof why) != 0)
        rc = bq_fail(e, BQ_E_PG, "could not name the WAL file at %s: %s", end, why);
    if (rc == 0)
        snprintf(name, cap, "%s", val);
    PQfinish(c);
    return rc;
}
