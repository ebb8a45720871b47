#include "basebackup.h"

#include "clock.h"
#include "log.h"

#include <libpq-fe.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MIN_SERVER_VERSION 150000
#define WHERE_MAX 300
#define RESULTS_MAX 8            /* results after the COPY: stop LSN, OK, error */
#define SLICE_MS 1000            /* should_stop is polled at least this often */
#define PG_EPOCH_OFFSET_S 946684800LL /* 2000-01-01 in Unix time */

/* ------------------------------------------------------------------------------------------ */
/* LSNs and WAL file names */

int pg_lsn_parse(const char *s, uint64_t *out)
{
    if (!s || !out)
        return BQ_E_INVAL;
    uint64_t part[2] = {0, 0};
    const char *p = s;
    for (int k = 0; k < 2; k++) {
        int n = 0;
        for (; *p; p++, n++) {
            char c = *p;
            int d = c >= '0' && c <= '9' ? c - '0'
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                break;
            if (n >= 8)
                return BQ_E_INVAL;
            part[k] = part[k] << 4 | (uint64_t)d;
        }
        if (n == 0)
            return BQ_E_INVAL;
        if (k == 0 && *p++ != '/')
            return BQ_E_INVAL;
    }
    if (*p)
        return BQ_E_INVAL;
    *out = part[0] << 32 | part[1];
    return 0;
}

char *pg_lsn_format(uint64_t lsn, char *buf, size_t size)
{
    snprintf(buf, size, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
    return buf;
}

void pg_wal_file_name(uint32_t tli, uint64_t segno, uint32_t seg_size, char *buf, size_t size)
{
    uint64_t per_id = seg_size ? 0x100000000ULL / seg_size : 1;
    snprintf(buf, size, "%08X%08X%08X", (unsigned)tli, (unsigned)(segno / per_id),
             (unsigned)(segno % per_id));
}

int pg_wal_seg_size_parse(const char *s, uint32_t *out)
{
    if (!s || !out)
        return BQ_E_PROTO;
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (i >= 12)
            return BQ_E_PROTO;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0)
        return BQ_E_PROTO;
    const char *unit = s + i;
    if (strcmp(unit, "") == 0 || strcmp(unit, "B") == 0)
        ;
    else if (strcmp(unit, "kB") == 0)
        v <<= 10;
    else if (strcmp(unit, "MB") == 0)
        v <<= 20;
    else if (strcmp(unit, "GB") == 0)
        v <<= 30;
    else
        return BQ_E_PROTO;
    if (v < (1u << 20) || v > (1u << 30) || (v & (v - 1)) != 0)
        return BQ_E_PROTO;
    *out = (uint32_t)v;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Untrusted text for a message: printable ASCII kept, others as \xNN, cut at 200 bytes. */
static void quote(char *dst, size_t size, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        if (i >= 200) {
            snprintf(dst + o, size - o, "...");
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, size - o, "\\x%02x", c);
    }
    dst[o < size ? o : size - 1] = '\0';
}

/* The first line of a libpq or server message. */
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

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || p - s >= 19)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections and waits */

typedef struct {
    PGconn *conn;
    char where[WHERE_MAX];     /* "host:port" */
    int (*should_stop)(void *arg);
    void *arg;
} link_t;

static int classify_connect_error(const char *msg)
{
    if (strstr(msg, "must be superuser or replication role") ||
        strstr(msg, "permission denied to start WAL sender"))
        return BQ_E_PERM;
    if (strstr(msg, "password authentication failed") || strstr(msg, "no pg_hba.conf entry") ||
        strstr(msg, "authentication failed"))
        return BQ_E_AUTH;
    if (strstr(msg, "timeout expired"))
        return BQ_E_TIMEOUT;
    return BQ_E_PG;
}

/* Open a replication connection (repl: "database" or "true") and check the server's version. */
static int repl_connect_as(link_t *l, const char *conninfo, const char *repl,
                           int connect_timeout_s, const char *application_name, bq_errbuf_t *e)
{
    if (!conninfo)
        return bq_fail(e, BQ_E_INVAL, "no conninfo given");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (!opts) {
        char why[BQ_ERRMSG_MAX / 2];
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
    /* Keywords after dbname override what it expands to. */
    const char *keys[6] = {"fallback_application_name", "dbname", "replication", NULL, NULL,
                           NULL};
    const char *vals[6] = {"barque", conninfo, repl, NULL, NULL, NULL};
    int k = 3;
    if (!has_timeout) {
        keys[k] = "connect_timeout";
        vals[k++] = timeout;
    }
    if (application_name) { /* after dbname: it wins over the conninfo's own */
        keys[k] = "application_name";
        vals[k++] = application_name;
    }
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn)
        return bq_fail(e, BQ_E_NOMEM, "could not allocate a libpq connection");
    const char *host = PQhost(conn), *port = PQport(conn), *user = PQuser(conn);
    snprintf(l->where, sizeof l->where, "%s:%s", host && *host ? host : "?",
             port && *port ? port : "?");
    if (PQstatus(conn) != CONNECTION_OK) {
        char why[BQ_ERRMSG_MAX / 2];
        first_line(why, sizeof why, PQerrorMessage(conn));
        int code = classify_connect_error(why);
        char u[64];
        snprintf(u, sizeof u, "%s", user && *user ? user : "?");
        PQfinish(conn);
        if (code == BQ_E_PERM)
            return bq_fail(e, code, "could not open a replication connection to %s as role %s: "
                           "%s; run ALTER ROLE %s REPLICATION", l->where, u, why, u);
        return bq_fail(e, code, "could not open a replication connection to %s as role %s: %s",
                       l->where, u, why);
    }
    int v = PQserverVersion(conn);
    if (v < MIN_SERVER_VERSION) {
        PQfinish(conn);
        return bq_fail(e, BQ_E_VERSION, "the server at %s runs PostgreSQL %d.%d; Barque needs "
                       "PostgreSQL 15 or later", l->where, v / 10000, v % 10000);
    }
    l->conn = conn;
    return 0;
}

static int repl_connect(link_t *l, const char *conninfo, const char *repl, int connect_timeout_s,
                        bq_errbuf_t *e)
{
    return repl_connect_as(l, conninfo, repl, connect_timeout_s, NULL, e);
}

/* Wait until the socket is readable or deadline_ms (monotonic) passes, polling should_stop at
 * least once a second. */
static int wait_readable(link_t *l, int64_t deadline_ms, const char *what, bq_errbuf_t *e)
{
    int fd = PQsocket(l->conn);
    if (fd < 0)
        return bq_fail(e, BQ_E_PG, "connection to %s lost while %s", l->where, what);
    for (;;) {
        if (l->should_stop && l->should_stop(l->arg))
            return bq_fail(e, BQ_E_CANCELLED, "cancelled while %s (%s)", what, l->where);
        int64_t now = bq_mono_ms();
        if (now >= deadline_ms)
            return bq_fail(e, BQ_E_TIMEOUT, "timed out while %s (%s)", what, l->where);
        int64_t ms = deadline_ms - now;
        if (ms > SLICE_MS)
            ms = SLICE_MS;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)ms);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return bq_fail(e, BQ_E_IO, "poll on the connection to %s: %s", l->where,
                           strerror(errno));
    }
}

static int consume(link_t *l, const char *what, bq_errbuf_t *e)
{
    if (PQconsumeInput(l->conn))
        return 0;
    char why[BQ_ERRMSG_MAX / 2];
    first_line(why, sizeof why, PQerrorMessage(l->conn));
    return bq_fail(e, BQ_E_PG, "connection to %s failed while %s: %s", l->where, what, why);
}

/* The next result of the running command (NULL at its end), within timeout_s. */
static int next_result(link_t *l, int timeout_s, const char *what, PGresult **out,
                       bq_errbuf_t *e)
{
    *out = NULL;
    int64_t deadline = bq_mono_ms() + (int64_t)timeout_s * 1000;
    while (PQisBusy(l->conn)) {
        int rc = wait_readable(l, deadline, what, e);
        if (rc == 0)
            rc = consume(l, what, e);
        if (rc)
            return rc;
    }
    *out = PQgetResult(l->conn);
    return 0;
}

/* An error result: BQ_E_PG naming where and what, with the server's first line. */
static int result_error(link_t *l, const PGresult *res, const char *what, bq_errbuf_t *e)
{
    char why[BQ_ERRMSG_MAX / 2];
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg)
        msg = PQerrorMessage(l->conn);
    first_line(why, sizeof why, msg);
    if (!res)
        return bq_fail(e, BQ_E_PG, "%s on %s: %s", what, l->where, why);
    int code = BQ_E_PG;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state && strcmp(state, "42501") == 0)
        code = BQ_E_PERM;
    return bq_fail(e, code, "%s on %s failed: %s", what, l->where, why);
}

/* Send a command and take its one result, which must be tuples with nrows x >= ncols. */
static int exec_tuples(link_t *l, const char *sql, int timeout_s, int ncols, PGresult **out,
                       bq_errbuf_t *e)
{
    *out = NULL;
    if (!PQsendQuery(l->conn, sql))
        return result_error(l, NULL, sql, e);
    PGresult *res = NULL, *extra = NULL;
    int rc = next_result(l, timeout_s, sql, &res, e);
    if (rc == 0 && PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = result_error(l, res, sql, e);
    if (rc == 0 && (PQnfields(res) < ncols || PQntuples(res) < 1))
        rc = bq_fail(e, BQ_E_PROTO, "%s on %s: unexpected result (%d rows of %d columns)", sql,
                     l->where, PQntuples(res), PQnfields(res));
    /* Drain to the end of the command. */
    for (int i = 0; rc == 0 && i < RESULTS_MAX; i++) {
        rc = next_result(l, timeout_s, sql, &extra, e);
        if (rc || !extra)
            break;
        if (PQresultStatus(extra) == PGRES_FATAL_ERROR)
            rc = result_error(l, extra, sql, e);
        PQclear(extra);
        extra = NULL;
    }
    if (rc) {
        PQclear(res);
        return rc;
    }
    *out = res;
    return 0;
}

/* IDENTIFY_SYSTEM and SHOW wal_segment_size. */
static int identify(link_t *l, int timeout_s, uint64_t *sysid, uint32_t *tli, uint32_t *segsz,
                    bq_errbuf_t *e)
{
    PGresult *res;
    int rc = exec_tuples(l, "IDENTIFY_SYSTEM", timeout_s, 2, &res, e);
    if (rc)
        return rc;
    uint64_t v, t;
    if (parse_u64(PQgetvalue(res, 0, 0), UINT64_MAX, &v) != 0 ||
        parse_u64(PQgetvalue(res, 0, 1), UINT32_MAX, &t) != 0 || t == 0) {
        PQclear(res);
        return bq_fail(e, BQ_E_PROTO, "IDENTIFY_SYSTEM on %s: unreadable system identifier or "
                       "timeline", l->where);
    }
    PQclear(res);
    *sysid = v;
    *tli = (uint32_t)t;
    rc = exec_tuples(l, "SHOW wal_segment_size", timeout_s, 1, &res, e);
    if (rc)
        return rc;
    if (pg_wal_seg_size_parse(PQgetvalue(res, 0, 0), segsz) != 0) {
        char q[64];
        quote(q, sizeof q, PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0)));
        PQclear(res);
        return bq_fail(e, BQ_E_PROTO, "%s reports an unusable wal_segment_size \"%s\"",
                       l->where, q);
    }
    PQclear(res);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The COPY stream decoder */

struct pg_bb_stream {
    pg_bb_tablespace_t *ts;
    unsigned char *seen;
    size_t nts;
    int64_t total_estimate;
    int expect_manifest;
    pg_bb_callbacks_t cb;
    void *arg;
    int cur;                 /* index in ts of the archive being read, -1 when none */
    pg_tar_t *tar;
    char archive_name[64];
    int in_manifest, manifest_seen;
    uint64_t archive_bytes, manifest_bytes;
    int err_code;
    bq_errbuf_t err;
};

int pg_bb_stream_new(const pg_bb_tablespace_t *ts, size_t nts, int64_t total_estimate,
                     int expect_manifest, const pg_bb_callbacks_t *cb, void *arg,
                     pg_bb_stream_t **out, bq_errbuf_t *e)
{
    if (!out || (nts && !ts) || nts > PG_BB_TABLESPACES_MAX)
        return bq_fail(e, BQ_E_INVAL, "pg_bb_stream_new: bad arguments");
    *out = NULL;
    pg_bb_stream_t *s = calloc(1, sizeof *s);
    if (!s)
        return bq_fail(e, BQ_E_NOMEM, "could not allocate a backup stream decoder");
    s->ts = calloc(nts ? nts : 1, sizeof *s->ts);
    s->seen = calloc(nts ? nts : 1, 1);
    if (!s->ts || !s->seen) {
        free(s->ts);
        free(s->seen);
        free(s);
        return bq_fail(e, BQ_E_NOMEM, "could not allocate a backup stream decoder");
    }
    if (nts)
        memcpy(s->ts, ts, nts * sizeof *ts);
    s->nts = nts;
    s->total_estimate = total_estimate;
    s->expect_manifest = expect_manifest;
    if (cb)
        s->cb = *cb;
    s->arg = arg;
    s->cur = -1;
    *out = s;
    return 0;
}

void pg_bb_stream_destroy(pg_bb_stream_t **sp)
{
    if (!sp || !*sp)
        return;
    pg_bb_stream_t *s = *sp;
    pg_tar_destroy(&s->tar);
    free(s->ts);
    free(s->seen);
    free(s);
    *sp = NULL;
}

static int st_fail(pg_bb_stream_t *s, int rc, bq_errbuf_t *err, bq_errbuf_t *e)
{
    s->err_code = rc;
    s->err = *err;
    if (e)
        *e = *err;
    return rc;
}

/* Finish the current archive, if any: its tar stream must be complete. */
static int end_archive(pg_bb_stream_t *s, bq_errbuf_t *err)
{
    if (s->cur < 0)
        return 0;
    int rc = pg_tar_finish(s->tar, err);
    pg_tar_destroy(&s->tar);
    const pg_bb_tablespace_t *ts = &s->ts[s->cur];
    s->cur = -1;
    if (rc)
        return rc;
    if (s->cb.archive_end)
        return s->cb.archive_end(s->arg, ts, err);
    return 0;
}

static int on_new_archive(pg_bb_stream_t *s, const uint8_t *msg, size_t len, bq_errbuf_t *err)
{
    const char *name = (const char *)msg + 1;
    size_t rest = len - 1;
    const char *nul1 = memchr(name, '\0', rest);
    if (!nul1)
        return bq_fail(err, BQ_E_PROTO, "backup stream: new-archive message with an unterminated name");
    const char *loc = nul1 + 1;
    size_t nlen = (size_t)(nul1 - name), lrest = rest - nlen - 1;
    const char *nul2 = memchr(loc, '\0', lrest);
    if (!nul2 || (size_t)(nul2 - loc) + 1 != lrest)
        return bq_fail(err, BQ_E_PROTO, "backup stream: malformed new-archive message");
    size_t llen = (size_t)(nul2 - loc);
    char qn[256], ql[512];
    quote(qn, sizeof qn, name, nlen);
    quote(ql, sizeof ql, loc, llen);
    if (s->in_manifest)
        return bq_fail(err, BQ_E_PROTO, "backup stream: archive \"%s\" after the manifest", qn);
    int rc = end_archive(s, err);
    if (rc)
        return rc;

    size_t i;
    for (i = 0; i < s->nts; i++)
        if (strlen(s->ts[i].location) == llen && memcmp(s->ts[i].location, loc, llen) == 0)
            break;
    if (i == s->nts)
        return bq_fail(err, BQ_E_PROTO, "backup stream: archive \"%s\" for location \"%s\", "
                       "which the tablespace list did not announce", qn, ql);
    char want[32];
    if (s->ts[i].oid == 0)
        snprintf(want, sizeof want, "base.tar");
    else
        snprintf(want, sizeof want, "%u.tar", (unsigned)s->ts[i].oid);
    if (strlen(want) != nlen || memcmp(want, name, nlen) != 0)
        return bq_fail(err, BQ_E_PROTO, "backup stream: archive \"%s\" for location \"%s\": "
                       "expected \"%s\"", qn, ql, want);
    if (s->seen[i])
        return bq_fail(err, BQ_E_PROTO, "backup stream: a second archive \"%s\"", qn);
    s->seen[i] = 1;
    snprintf(s->archive_name, sizeof s->archive_name, "%s", want);
    pg_tar_callbacks_t tcb = {
        .begin = s->cb.file_begin,
        .data = s->cb.file_data,
        .end = s->cb.file_end,
    };
    rc = pg_tar_new(want, &tcb, s->arg, &s->tar, err);
    if (rc)
        return rc;
    s->cur = (int)i;
    if (s->cb.archive_begin)
        return s->cb.archive_begin(s->arg, &s->ts[i], want, err);
    return 0;
}

int pg_bb_stream_message(pg_bb_stream_t *s, const uint8_t *msg, size_t len, bq_errbuf_t *e)
{
    if (!s)
        return bq_fail(e, BQ_E_INVAL, "pg_bb_stream_message: no decoder");
    if (s->err_code) {
        if (e)
            *e = s->err;
        return s->err_code;
    }
    bq_errbuf_t err = {{0}};
    int rc = 0;
    if (len == 0 || !msg)
        return st_fail(s, bq_fail(&err, BQ_E_PROTO, "backup stream: empty message"), &err, e);
    switch (msg[0]) {
    case 'n':
        rc = on_new_archive(s, msg, len, &err);
        break;
    case 'd':
        if (s->in_manifest) {
            s->manifest_bytes += len - 1;
            if (s->cb.manifest_data && len > 1)
                rc = s->cb.manifest_data(s->arg, msg + 1, len - 1, &err);
        } else if (s->cur >= 0) {
            s->archive_bytes += len - 1;
            rc = pg_tar_feed(s->tar, msg + 1, len - 1, &err);
        } else {
            rc = bq_fail(&err, BQ_E_PROTO, "backup stream: data before any archive");
        }
        break;
    case 'p': {
        if (len != 9) {
            rc = bq_fail(&err, BQ_E_PROTO, "backup stream: progress message of %zu bytes", len);
            break;
        }
        uint64_t done = get_be64(msg + 1);
        if (done > (uint64_t)INT64_MAX)
            rc = bq_fail(&err, BQ_E_PROTO, "backup stream: negative progress");
        else if (s->cb.progress)
            rc = s->cb.progress(s->arg, done, s->total_estimate, &err);
        break;
    }
    case 'm':
        if (len != 1)
            rc = bq_fail(&err, BQ_E_PROTO, "backup stream: manifest message of %zu bytes", len);
        else if (!s->expect_manifest || s->manifest_seen)
            rc = bq_fail(&err, BQ_E_PROTO, "backup stream: %s manifest",
                         s->manifest_seen ? "a second" : "an unrequested");
        else if ((rc = end_archive(s, &err)) == 0)
            s->in_manifest = s->manifest_seen = 1;
        break;
    default: {
        char q[8];
        quote(q, sizeof q, (const char *)msg, 1);
        rc = bq_fail(&err, BQ_E_PROTO, "backup stream: unknown message type '%s'", q);
    }
    }
    return rc ? st_fail(s, rc, &err, e) : 0;
}

int pg_bb_stream_finish(pg_bb_stream_t *s, pg_bb_end_t *end, bq_errbuf_t *e)
{
    if (!s)
        return bq_fail(e, BQ_E_INVAL, "pg_bb_stream_finish: no decoder");
    if (s->err_code) {
        if (e)
            *e = s->err;
        return s->err_code;
    }
    bq_errbuf_t err = {{0}};
    int rc = end_archive(s, &err);
    if (rc)
        return st_fail(s, rc, &err, e);
    for (size_t i = 0; i < s->nts; i++)
        if (!s->seen[i]) {
            char ql[512];
            quote(ql, sizeof ql, s->ts[i].location, strlen(s->ts[i].location));
            bq_fail(&err, BQ_E_PROTO, "backup stream ended without the archive of %s%s%s",
                    s->ts[i].oid ? "tablespace " : "the main data directory",
                    s->ts[i].oid ? ql : "", "");
            return st_fail(s, BQ_E_PROTO, &err, e);
        }
    if (s->expect_manifest && !s->manifest_seen) {
        bq_fail(&err, BQ_E_PROTO, "backup stream ended without the backup manifest");
        return st_fail(s, BQ_E_PROTO, &err, e);
    }
    if (end) {
        end->archive_bytes = s->archive_bytes;
        end->manifest_bytes = s->manifest_bytes;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Base backup */

void pg_bb_opts_init(pg_bb_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->label = "barque";
    o->fast_checkpoint = 1;
    o->manifest_checksums = "CRC32C";
    o->tablespace_map = 1;
    o->verify_checksums = 1;
    o->connect_timeout_s = 10;
    o->start_timeout_s = 3600;
    o->stall_timeout_s = 120;
}

typedef struct {
    pg_bb_end_t *end;
    uint64_t blocks;           /* per-block notices */
    uint64_t total;            /* the largest total the server announced */
    const char *where;
} notices_t;

/* Notices: page checksum failures are counted and listed; other warnings are logged. */
static void on_notice(void *arg, const PGresult *res)
{
    notices_t *n = arg;
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!msg)
        return;
    static const char block_pfx[] = "checksum verification failed in file \"";
    static const char file_pfx[] = "file \"";
    const char *tail;
    unsigned long long v;
    if (strncmp(msg, block_pfx, sizeof block_pfx - 1) == 0 &&
        (tail = strstr(msg + sizeof block_pfx - 1, "\", block ")) != NULL) {
        n->blocks++;
        if (n->end->nfailures < PG_BB_FAILURES_MAX) {
            pg_bb_failure_t *f = &n->end->failures[n->end->nfailures++];
            const char *name = msg + sizeof block_pfx - 1;
            /* the last "\", block " ends the name (names may contain anything) */
            for (const char *t2; (t2 = strstr(tail + 1, "\", block ")) != NULL;)
                tail = t2;
            size_t len = (size_t)(tail - name);
            if (len >= sizeof f->file)
                len = sizeof f->file - 1;
            memcpy(f->file, name, len);
            f->file[len] = '\0';
            f->block = (uint32_t)strtoul(tail + 9, NULL, 10);
        }
        return;
    }
    if (sscanf(msg, "%llu total checksum verification failure", &v) == 1) {
        if (v > n->total)
            n->total = v;
        return;
    }
    if (strncmp(msg, file_pfx, sizeof file_pfx - 1) == 0 &&
        strstr(msg, "checksum verification failure"))
        return; /* per-file totals: the overall total follows */
    if (strstr(msg, "further checksum verification failures in file"))
        return;
    if (sev && (strcmp(sev, "WARNING") == 0))
        bq_warn("pg", 0, "server %s: %s", n->where, msg);
    else
        bq_debug("pg", 0, "server %s: %s", n->where, msg);
}

static const char *const checksum_algos[] = {"NONE", "CRC32C", "SHA224", "SHA256", "SHA384",
                                             "SHA512"};

/* The BASE_BACKUP command for o, or BQ_E_INVAL. */
static int build_command(const pg_bb_opts_t *o, char *cmd, size_t size, bq_errbuf_t *e)
{
    const char *label = o->label ? o->label : "barque";
    size_t llen = strlen(label);
    if (llen == 0 || llen > PG_BB_LABEL_MAX)
        return bq_fail(e, BQ_E_INVAL, "backup label must have 1 to %d bytes", PG_BB_LABEL_MAX);
    char qlabel[2 * PG_BB_LABEL_MAX + 1];
    size_t q = 0;
    for (size_t i = 0; i < llen; i++) {
        unsigned char c = (unsigned char)label[i];
        if (c < 0x20 || c >= 0x7f)
            return bq_fail(e, BQ_E_INVAL, "backup label must be printable ASCII");
        if (c == '\'')
            qlabel[q++] = '\'';
        qlabel[q++] = (char)c;
    }
    qlabel[q] = '\0';
    const char *algo = NULL;
    const char *want = o->manifest_checksums ? o->manifest_checksums : "CRC32C";
    for (size_t i = 0; i < sizeof checksum_algos / sizeof checksum_algos[0]; i++)
        if (strcasecmp(want, checksum_algos[i]) == 0)
            algo = checksum_algos[i];
    if (!algo) {
        char qa[64];
        quote(qa, sizeof qa, want, strlen(want));
        return bq_fail(e, BQ_E_INVAL, "unknown manifest checksum algorithm \"%s\" (NONE, CRC32C, "
                       "SHA224, SHA256, SHA384 or SHA512)", qa);
    }
    if (o->max_rate_kb && (o->max_rate_kb < 32 || o->max_rate_kb > 1048576))
        return bq_fail(e, BQ_E_INVAL, "max rate %u kB/s is out of range (32..1048576)",
                       (unsigned)o->max_rate_kb);
    int n = snprintf(cmd, size,
                     "BASE_BACKUP (LABEL '%s', PROGRESS, CHECKPOINT '%s', WAIT %s, "
                     "MANIFEST 'yes', MANIFEST_CHECKSUMS '%s', TARGET 'client'%s%s",
                     qlabel, o->fast_checkpoint ? "fast" : "spread",
                     o->wait_for_archive ? "true" : "false", algo,
                     o->tablespace_map ? ", TABLESPACE_MAP" : "",
                     o->verify_checksums ? "" : ", VERIFY_CHECKSUMS false");
    if (n > 0 && (size_t)n < size && o->max_rate_kb)
        n += snprintf(cmd + n, size - (size_t)n, ", MAX_RATE %u", (unsigned)o->max_rate_kb);
    if (n > 0 && (size_t)n < size)
        n += snprintf(cmd + n, size - (size_t)n, ")");
    if (n < 0 || (size_t)n >= size)
        return bq_fail(e, BQ_E_INVAL, "BASE_BACKUP command too long");
    return 0;
}

/* The tablespace list (second result set). */
static int read_tablespaces(link_t *l, const PGresult *res, pg_bb_tablespace_t **out,
                            size_t *nout, int64_t *total, bq_errbuf_t *e)
{
    int rows = PQntuples(res);
    if (PQnfields(res) < 3 || rows < 1 || rows > PG_BB_TABLESPACES_MAX)
        return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: a tablespace list of %d rows of %d "
                       "columns (1..%d rows of 3 expected)", l->where, rows, PQnfields(res),
                       PG_BB_TABLESPACES_MAX);
    pg_bb_tablespace_t *ts = calloc((size_t)rows, sizeof *ts);
    if (!ts)
        return bq_fail(e, BQ_E_NOMEM, "could not allocate the tablespace list");
    int64_t sum = 0;
    int mains = 0, unknown = 0;
    for (int i = 0; i < rows; i++) {
        uint64_t v;
        if (PQgetisnull(res, i, 0)) {
            ts[i].oid = 0;
            mains++;
        } else if (parse_u64(PQgetvalue(res, i, 0), UINT32_MAX, &v) != 0 || v == 0) {
            free(ts);
            return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: bad tablespace oid in row %d",
                           l->where, i);
        } else {
            ts[i].oid = (uint32_t)v;
        }
        const char *loc = PQgetisnull(res, i, 1) ? "" : PQgetvalue(res, i, 1);
        size_t llen = strlen(loc);
        if (llen >= PG_BB_LOCATION_MAX || (ts[i].oid == 0) != (llen == 0)) {
            free(ts);
            return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: bad tablespace location in row %d",
                           l->where, i);
        }
        memcpy(ts[i].location, loc, llen + 1);
        if (PQgetisnull(res, i, 2)) {
            ts[i].size_estimate = -1;
            unknown = 1;
        } else if (parse_u64(PQgetvalue(res, i, 2), (uint64_t)INT64_MAX / 1024 / 1024, &v)) {
            free(ts);
            return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: bad tablespace size in row %d",
                           l->where, i);
        } else {
            ts[i].size_estimate = (int64_t)v * 1024;
            sum += ts[i].size_estimate;
        }
        for (int j = 0; j < i; j++)
            if (ts[j].oid == ts[i].oid || strcmp(ts[j].location, ts[i].location) == 0) {
                unsigned oid = ts[i].oid;
                free(ts);
                return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: tablespace %u listed twice",
                               l->where, oid);
            }
    }
    if (mains != 1) {
        free(ts);
        return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: %d main data directories listed",
                       l->where, mains);
    }
    *out = ts;
    *nout = (size_t)rows;
    *total = unknown ? -1 : sum;
    return 0;
}

/* A result of one row: LSN, timeline. */
static int read_lsn_tli(link_t *l, const PGresult *res, const char *what, uint64_t *lsn,
                        uint32_t *tli, bq_errbuf_t *e)
{
    uint64_t t;
    if (PQntuples(res) != 1 || PQnfields(res) < 2 || PQgetisnull(res, 0, 0) ||
        pg_lsn_parse(PQgetvalue(res, 0, 0), lsn) != 0 ||
        parse_u64(PQgetvalue(res, 0, 1), UINT32_MAX, &t) != 0 || t == 0)
        return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: unreadable %s", l->where, what);
    *tli = (uint32_t)t;
    return 0;
}

typedef struct {
    link_t l;
    pg_bb_opts_t o;
    const pg_bb_callbacks_t *cb;
    void *arg;
    pg_bb_tablespace_t *ts;
    size_t nts;
    pg_bb_stream_t *stream;
    pg_bb_end_t end;
    notices_t notices;
} bb_t;

/* The COPY stream: each CopyData message to the decoder, within the stall timeout. */
static int read_copy(bb_t *b, bq_errbuf_t *e)
{
    link_t *l = &b->l;
    int64_t deadline = bq_mono_ms() + (int64_t)b->o.stall_timeout_s * 1000;
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(l->conn, &buf, 1);
        if (n > 0) {
            int rc = pg_bb_stream_message(b->stream, (const uint8_t *)buf, (size_t)n, e);
            PQfreemem(buf);
            if (rc)
                return rc;
            if (l->should_stop && l->should_stop(l->arg))
                return bq_fail(e, BQ_E_CANCELLED, "base backup of %s cancelled", l->where);
            deadline = bq_mono_ms() + (int64_t)b->o.stall_timeout_s * 1000;
            continue;
        }
        if (n == -1)
            return 0;
        if (n < -1) {
            char why[BQ_ERRMSG_MAX / 2];
            first_line(why, sizeof why, PQerrorMessage(l->conn));
            return bq_fail(e, BQ_E_PG, "base backup of %s: stream failed: %s", l->where, why);
        }
        int rc = wait_readable(l, deadline, "receiving the base backup", e);
        if (rc == BQ_E_TIMEOUT)
            return bq_fail(e, rc, "base backup of %s stalled: nothing received for %d s",
                           l->where, b->o.stall_timeout_s);
        if (rc == 0)
            rc = consume(l, "receiving the base backup", e);
        if (rc)
            return rc;
    }
}

static int run_backup(bb_t *b, const char *conninfo, const char *cmd, bq_errbuf_t *e)
{
    link_t *l = &b->l;
    const pg_bb_callbacks_t *cb = b->cb;
    int rc = repl_connect(l, conninfo, "database", b->o.connect_timeout_s, e);
    if (rc)
        return rc;
    b->notices.end = &b->end;
    b->notices.where = l->where;
    PQsetNoticeReceiver(l->conn, on_notice, &b->notices);

    pg_bb_start_t start = {0};
    start.server_version = PQserverVersion(l->conn);
    uint32_t cur_tli;
    rc = identify(l, b->o.stall_timeout_s, &start.system_identifier, &cur_tli,
                  &start.wal_segment_size, e);
    if (rc)
        return rc;

    if (!PQsendQuery(l->conn, cmd))
        return result_error(l, NULL, "BASE_BACKUP", e);
    PGresult *res;
    rc = next_result(l, b->o.start_timeout_s, "waiting for the backup to start (checkpoint)",
                     &res, e);
    if (rc)
        return rc;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = result_error(l, res, "BASE_BACKUP", e);
        PQclear(res);
        return rc;
    }
    rc = read_lsn_tli(l, res, "start position", &start.start_lsn, &start.timeline, e);
    PQclear(res);
    if (rc)
        return rc;

    rc = next_result(l, b->o.stall_timeout_s, "reading the tablespace list", &res, e);
    if (rc)
        return rc;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = result_error(l, res, "BASE_BACKUP", e);
        PQclear(res);
        return rc;
    }
    rc = read_tablespaces(l, res, &b->ts, &b->nts, &start.total_estimate, e);
    PQclear(res);
    if (rc)
        return rc;
    start.ntablespaces = b->nts;
    start.tablespaces = b->ts;
    if (cb->start && (rc = cb->start(b->arg, &start, e)) != 0)
        return rc;

    rc = pg_bb_stream_new(b->ts, b->nts, start.total_estimate, 1, cb, b->arg, &b->stream, e);
    if (rc)
        return rc;
    rc = next_result(l, b->o.stall_timeout_s, "waiting for the backup stream", &res, e);
    if (rc)
        return rc;
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        rc = PQresultStatus(res) == PGRES_FATAL_ERROR
                 ? result_error(l, res, "BASE_BACKUP", e)
                 : bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: %s instead of the COPY stream",
                           l->where, PQresStatus(PQresultStatus(res)));
        PQclear(res);
        return rc;
    }
    PQclear(res);
    rc = read_copy(b, e);
    if (rc)
        return rc;
    rc = pg_bb_stream_finish(b->stream, &b->end, e);
    if (rc)
        return rc;

    /* The stop position, then the command's end (or XX001 after checksum failures). */
    int have_stop = 0, corrupted = 0;
    for (int i = 0;; i++) {
        if (i >= RESULTS_MAX)
            return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: too many results", l->where);
        rc = next_result(l, b->o.stall_timeout_s, "waiting for the end of the backup", &res, e);
        if (rc)
            return rc;
        if (!res)
            break;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK && !have_stop) {
            rc = read_lsn_tli(l, res, "stop position", &b->end.stop_lsn, &b->end.timeline, e);
            have_stop = 1;
        } else if (st == PGRES_COMMAND_OK) {
            rc = 0;
        } else if (st == PGRES_FATAL_ERROR && PQresultErrorField(res, PG_DIAG_SQLSTATE) &&
                   strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "XX001") == 0) {
            corrupted = 1;
        } else if (st == PGRES_FATAL_ERROR) {
            rc = result_error(l, res, "BASE_BACKUP", e);
        } else {
            rc = bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: unexpected %s at the end",
                         l->where, PQresStatus(st));
        }
        PQclear(res);
        if (rc)
            return rc;
    }
    if (!have_stop)
        return bq_fail(e, BQ_E_PROTO, "BASE_BACKUP on %s: no stop position", l->where);

    uint64_t failures = b->notices.blocks > b->notices.total ? b->notices.blocks
                                                              : b->notices.total;
    if (corrupted && failures == 0)
        failures = 1;
    b->end.checksum_failures = failures;
    if (cb->end && (rc = cb->end(b->arg, &b->end, e)) != 0)
        return rc;
    if (failures) {
        char first[400] = "";
        if (b->end.nfailures)
            snprintf(first, sizeof first, " (first: file \"%s\", block %u)",
                     b->end.failures[0].file, (unsigned)b->end.failures[0].block);
        return bq_fail(e, BQ_E_PG, "base backup of %s is complete but the server found %" PRIu64
                       " page checksum failure%s%s", l->where, failures,
                       failures == 1 ? "" : "s", first);
    }
    return 0;
}

int pg_basebackup_run(const char *conninfo, const pg_bb_opts_t *opts,
                      const pg_bb_callbacks_t *cb, void *arg, bq_errbuf_t *e)
{
    static const pg_bb_callbacks_t none;
    bb_t *b = calloc(1, sizeof *b);
    if (!b)
        return bq_fail(e, BQ_E_NOMEM, "could not allocate a base backup");
    if (opts)
        b->o = *opts;
    else
        pg_bb_opts_init(&b->o);
    if (b->o.connect_timeout_s <= 0)
        b->o.connect_timeout_s = 10;
    if (b->o.start_timeout_s <= 0)
        b->o.start_timeout_s = 3600;
    if (b->o.stall_timeout_s <= 0)
        b->o.stall_timeout_s = 120;
    b->cb = cb ? cb : &none;
    b->arg = arg;
    b->l.should_stop = b->cb->should_stop;
    b->l.arg = arg;

    char cmd[1024];
    int rc = build_command(&b->o, cmd, sizeof cmd, e);
    if (rc == 0)
        rc = run_backup(b, conninfo, cmd, e);
    /* Closing the connection mid-stream makes the server abort the backup. */
    if (b->l.conn)
        PQfinish(b->l.conn);
    pg_bb_stream_destroy(&b->stream);
    free(b->ts);
    free(b);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* WAL */

struct pg_wal_conn {
    link_t l;
    pg_wal_opts_t o;
    char slot[64];
    uint64_t slot_lsn;
    int slot_created; /* the permanent slot was created by this connection */
    uint32_t slot_tli; /* the timeline of its restart LSN (0: unknown) */
    uint32_t seg_size, tli;
    uint64_t sysid;
};

void pg_wal_opts_init(pg_wal_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->create_slot = 1;
    o->connect_timeout_s = 10;
    o->stall_timeout_s = 120;
    o->status_interval_s = 10;
}

static int slot_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

static int slot_ensure(pg_wal_conn_t *w, bq_errbuf_t *e);

int pg_wal_open(const char *conninfo, const pg_wal_opts_t *opts, pg_wal_conn_t **out,
                bq_errbuf_t *e)
{
    static atomic_uint counter;
    if (!out)
        return bq_fail(e, BQ_E_INVAL, "pg_wal_open: out is required");
    *out = NULL;
    pg_wal_conn_t *w = calloc(1, sizeof *w);
    if (!w)
        return bq_fail(e, BQ_E_NOMEM, "could not allocate a WAL connection");
    if (opts)
        w->o = *opts;
    else
        pg_wal_opts_init(&w->o);
    if (w->o.connect_timeout_s <= 0)
        w->o.connect_timeout_s = 10;
    if (w->o.stall_timeout_s <= 0)
        w->o.stall_timeout_s = 120;
    if (w->o.status_interval_s <= 0)
        w->o.status_interval_s = 10;
    int rc = 0;
    if (w->o.slot_name) {
        if (!slot_name_ok(w->o.slot_name)) {
            char q[128];
            quote(q, sizeof q, w->o.slot_name, strlen(w->o.slot_name));
            rc = bq_fail(e, BQ_E_INVAL, "invalid replication slot name \"%s\" (1 to 63 of "
                         "a-z, 0-9, _)", q);
        } else {
            snprintf(w->slot, sizeof w->slot, "%s", w->o.slot_name);
        }
    } else if (w->o.create_slot) {
        snprintf(w->slot, sizeof w->slot, "barque_%ld_%u", (long)getpid(),
                 atomic_fetch_add(&counter, 1));
    }
    w->o.slot_name = NULL; /* not kept: the caller's string */
    if (rc == 0 && w->o.permanent && !w->slot[0])
        rc = bq_fail(e, BQ_E_INVAL, "a permanent replication slot needs a name");
    if (rc == 0)
        rc = repl_connect_as(&w->l, conninfo, "true", w->o.connect_timeout_s,
                             w->o.application_name, e);
    w->o.application_name = NULL; /* not kept: the caller's string */
    if (rc == 0)
        rc = identify(&w->l, w->o.stall_timeout_s, &w->sysid, &w->tli, &w->seg_size, e);
    if (rc == 0 && w->o.permanent) {
        rc = slot_ensure(w, e);
    } else if (rc == 0 && w->o.create_slot) {
        char sql[160];
        PGresult *res;
        snprintf(sql, sizeof sql, "CREATE_REPLICATION_SLOT %s TEMPORARY PHYSICAL (RESERVE_WAL)",
                 w->slot);
        rc = exec_tuples(&w->l, sql, w->o.stall_timeout_s, 1, &res, e);
        PQclear(res);
        if (rc == 0) {
            snprintf(sql, sizeof sql, "READ_REPLICATION_SLOT %s", w->slot);
            rc = exec_tuples(&w->l, sql, w->o.stall_timeout_s, 2, &res, e);
            if (rc == 0 && (PQgetisnull(res, 0, 1) ||
                            pg_lsn_parse(PQgetvalue(res, 0, 1), &w->slot_lsn) != 0))
                rc = bq_fail(e, BQ_E_PROTO, "READ_REPLICATION_SLOT %s on %s: no restart LSN",
                             w->slot, w->l.where);
            PQclear(res);
        }
    }
    if (rc) {
        pg_wal_close(&w);
        return rc;
    }
    *out = w;
    return 0;
}

/* READ_REPLICATION_SLOT: 1 and its restart LSN (0 when it has none yet), or 0 when there is no
 * such slot. */
static int slot_read(pg_wal_conn_t *w, int *exists, uint64_t *restart, bq_errbuf_t *e)
{
    w->slot_tli = 0;
    char sql[160];
    PGresult *res;
    snprintf(sql, sizeof sql, "READ_REPLICATION_SLOT %s", w->slot);
    int rc = exec_tuples(&w->l, sql, w->o.stall_timeout_s, 3, &res, e);
    if (rc)
        return rc;
    *exists = !PQgetisnull(res, 0, 0);
    *restart = 0;
    if (*exists && !PQgetisnull(res, 0, 1) && pg_lsn_parse(PQgetvalue(res, 0, 1), restart) != 0)
        rc = bq_fail(e, BQ_E_PROTO, "READ_REPLICATION_SLOT %s on %s: unreadable restart LSN",
                     w->slot, w->l.where);
    uint64_t t = 0;
    if (rc == 0 && *exists && !PQgetisnull(res, 0, 2) &&
        parse_u64(PQgetvalue(res, 0, 2), UINT32_MAX, &t) == 0)
        w->slot_tli = (uint32_t)t;
    if (rc == 0 && *exists && strcmp(PQgetvalue(res, 0, 0), "physical") != 0)
        rc = bq_fail(e, BQ_E_STATE, "replication slot %s on %s is a %s slot, not physical",
                     w->slot, w->l.where, PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* The permanent slot: created with RESERVE_WAL when absent (another receiver creating it at
 * the same time is fine), then its restart LSN read. */
static int slot_ensure(pg_wal_conn_t *w, bq_errbuf_t *e)
{
    int exists = 0;
    uint64_t restart = 0;
    int rc = slot_read(w, &exists, &restart, e);
    if (rc == 0 && !exists) {
        char sql[160];
        PGresult *res = NULL;
        snprintf(sql, sizeof sql, "CREATE_REPLICATION_SLOT %s PHYSICAL (RESERVE_WAL)", w->slot);
        bq_errbuf_t ce = {{0}};
        int crc = exec_tuples(&w->l, sql, w->o.stall_timeout_s, 1, &res, &ce);
        PQclear(res);
        if (crc == 0)
            w->slot_created = 1;
        rc = slot_read(w, &exists, &restart, e);
        if (rc == 0 && !exists)
            rc = bq_fail(e, crc ? crc : BQ_E_PROTO, "could not create replication slot %s on "
                         "%s: %s", w->slot, w->l.where, crc ? ce.msg : "it is not there after");
    }
    if (rc == 0)
        w->slot_lsn = restart;
    return rc;
}

int pg_wal_slot_created(const pg_wal_conn_t *w) { return w ? w->slot_created : 0; }

void pg_wal_close(pg_wal_conn_t **wp)
{
    if (!wp || !*wp)
        return;
    if ((*wp)->l.conn)
        PQfinish((*wp)->l.conn);
    free(*wp);
    *wp = NULL;
}

const char *pg_wal_slot(const pg_wal_conn_t *w) { return w ? w->slot : ""; }
uint64_t pg_wal_slot_lsn(const pg_wal_conn_t *w) { return w ? w->slot_lsn : 0; }
uint32_t pg_wal_seg_size(const pg_wal_conn_t *w) { return w ? w->seg_size : 0; }
uint32_t pg_wal_timeline(const pg_wal_conn_t *w) { return w ? w->tli : 0; }
uint64_t pg_wal_system_identifier(const pg_wal_conn_t *w) { return w ? w->sysid : 0; }

/* Standby status update: write = received, flush = accepted by the callbacks. */
static int send_status(pg_wal_conn_t *w, uint64_t written, uint64_t flushed, bq_errbuf_t *e)
{
    uint8_t m[34];
    m[0] = 'r';
    put_be64(m + 1, written);
    put_be64(m + 9, flushed);
    put_be64(m + 17, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t us = ((int64_t)ts.tv_sec - PG_EPOCH_OFFSET_S) * 1000000 + ts.tv_nsec / 1000;
    put_be64(m + 25, (uint64_t)us);
    m[33] = 0;
    if (PQputCopyData(w->l.conn, (const char *)m, sizeof m) <= 0 || PQflush(w->l.conn) != 0) {
        char why[BQ_ERRMSG_MAX / 2];
        first_line(why, sizeof why, PQerrorMessage(w->l.conn));
        return bq_fail(e, BQ_E_PG, "could not send a status update to %s: %s", w->l.where, why);
    }
    return 0;
}

typedef struct {
    pg_wal_conn_t *w;
    const pg_wal_callbacks_t *cb;
    void *arg;
    uint32_t tli;
    uint64_t pos, end, flushed;
} fetch_t;

/* WAL bytes at f->pos: split at segment boundaries, stop at f->end. */
static int wal_data(fetch_t *f, const uint8_t *p, size_t n, bq_errbuf_t *e)
{
    uint32_t seg = f->w->seg_size;
    while (n > 0 && f->pos < f->end) {
        uint64_t in_seg = f->pos % seg;
        if (in_seg == 0 && f->cb->segment_begin) {
            char name[PG_WAL_NAME_LEN + 1];
            pg_wal_file_name(f->tli, f->pos / seg, seg, name, sizeof name);
            int rc = f->cb->segment_begin(f->arg, name, f->tli, f->pos / seg, e);
            if (rc)
                return rc;
        }
        size_t k = n;
        if (k > seg - in_seg)
            k = (size_t)(seg - in_seg);
        if (k > f->end - f->pos)
            k = (size_t)(f->end - f->pos);
        if (f->cb->segment_data) {
            int rc = f->cb->segment_data(f->arg, p, k, e);
            if (rc)
                return rc;
        }
        p += k;
        n -= k;
        f->pos += k;
        if (f->pos % seg == 0) {
            if (f->cb->segment_end) {
                int rc = f->cb->segment_end(f->arg, e);
                if (rc)
                    return rc;
            }
            f->flushed = f->pos;
        }
    }
    return 0;
}

/* After START_REPLICATION has ended (either side): the rest of the command's results. */
static int drain_results(pg_wal_conn_t *w, bq_errbuf_t *e)
{
    for (int i = 0; i < RESULTS_MAX; i++) {
        PGresult *res;
        int rc = next_result(&w->l, w->o.stall_timeout_s, "ending the WAL stream", &res, e);
        if (rc)
            return rc;
        if (!res)
            return 0;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_FATAL_ERROR)
            rc = result_error(&w->l, res, "START_REPLICATION", e);
        else if (st == PGRES_COPY_BOTH || st == PGRES_COPY_OUT)
            rc = bq_fail(e, BQ_E_PROTO, "START_REPLICATION on %s: a second COPY", w->l.where);
        PQclear(res);
        if (rc)
            return rc;
    }
    return bq_fail(e, BQ_E_PROTO, "START_REPLICATION on %s: too many results", w->l.where);
}

static int stream_wal(fetch_t *f, bq_errbuf_t *e)
{
    pg_wal_conn_t *w = f->w;
    link_t *l = &w->l;
    int64_t now = bq_mono_ms();
    int64_t data_deadline = now + (int64_t)w->o.stall_timeout_s * 1000;
    int64_t next_status = now + (int64_t)w->o.status_interval_s * 1000;
    char a[24], b[24];
    while (f->pos < f->end) {
        char *buf = NULL;
        int n = PQgetCopyData(l->conn, &buf, 1);
        int rc = 0;
        if (n > 0) {
            const uint8_t *m = (const uint8_t *)buf;
            if (m[0] == 'w' && n >= 25) {
                uint64_t at = get_be64(m + 1);
                if (at != f->pos)
                    rc = bq_fail(e, BQ_E_PROTO, "WAL stream from %s: data at %s, expected %s",
                                 l->where, pg_lsn_format(at, a, sizeof a),
                                 pg_lsn_format(f->pos, b, sizeof b));
                else if (n > 25) {
                    rc = wal_data(f, m + 25, (size_t)n - 25, e);
                    data_deadline = bq_mono_ms() + (int64_t)w->o.stall_timeout_s * 1000;
                }
            } else if (m[0] == 'k' && n == 18) {
                if (m[17])
                    rc = send_status(w, f->pos, f->flushed, e);
            } else {
                char q[8];
                quote(q, sizeof q, buf, 1);
                rc = bq_fail(e, BQ_E_PROTO, "WAL stream from %s: unexpected message '%s' of %d "
                             "bytes", l->where, q, n);
            }
            PQfreemem(buf);
            if (rc)
                return rc;
        } else if (n == -1) {
            int drc = drain_results(w, e);
            if (drc)
                return drc;
            return bq_fail(e, BQ_E_PG, "WAL stream from %s: timeline %u ended at %s, before %s",
                           l->where, (unsigned)f->tli, pg_lsn_format(f->pos, a, sizeof a),
                           pg_lsn_format(f->end, b, sizeof b));
        } else if (n < -1) {
            char why[BQ_ERRMSG_MAX / 2];
            first_line(why, sizeof why, PQerrorMessage(l->conn));
            return bq_fail(e, BQ_E_PG, "WAL stream from %s failed: %s", l->where, why);
        } else {
            int64_t until = data_deadline < next_status ? data_deadline : next_status;
            rc = wait_readable(l, until, "streaming WAL", e);
            if (rc == BQ_E_TIMEOUT) {
                if (bq_mono_ms() >= data_deadline)
                    return bq_fail(e, BQ_E_TIMEOUT, "WAL stream from %s stalled: no WAL for %d s "
                                   "at %s (waiting for %s)", l->where, w->o.stall_timeout_s,
                                   pg_lsn_format(f->pos, a, sizeof a),
                                   pg_lsn_format(f->end, b, sizeof b));
                rc = 0;
            } else if (rc == 0) {
                rc = consume(l, "streaming WAL", e);
            }
            if (rc)
                return rc;
        }
        if (bq_mono_ms() >= next_status) {
            int rc2 = send_status(w, f->pos, f->flushed, e);
            if (rc2)
                return rc2;
            next_status = bq_mono_ms() + (int64_t)w->o.status_interval_s * 1000;
        }
    }
    return 0;
}

/* We have all we asked for: say so, end the COPY and read what is left of it. */
static int end_stream(fetch_t *f, bq_errbuf_t *e)
{
    pg_wal_conn_t *w = f->w;
    link_t *l = &w->l;
    int rc = send_status(w, f->pos, f->flushed, e);
    if (rc)
        return rc;
    if (PQputCopyEnd(l->conn, NULL) <= 0 || PQflush(l->conn) != 0)
        return result_error(l, NULL, "ending the WAL stream", e);
    int64_t deadline = bq_mono_ms() + (int64_t)w->o.stall_timeout_s * 1000;
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(l->conn, &buf, 1);
        if (n > 0) {
            PQfreemem(buf); /* WAL the server sent before it saw our CopyDone */
            continue;
        }
        if (n == -1)
            break;
        if (n < -1)
            return result_error(l, NULL, "ending the WAL stream", e);
        rc = wait_readable(l, deadline, "ending the WAL stream", e);
        if (rc == 0)
            rc = consume(l, "ending the WAL stream", e);
        if (rc)
            return rc;
    }
    return drain_results(w, e);
}

int pg_wal_fetch_range(pg_wal_conn_t *w, uint64_t start_lsn, uint64_t stop_lsn, uint32_t tli,
                       const pg_wal_callbacks_t *cb, void *arg, bq_errbuf_t *e)
{
    static const pg_wal_callbacks_t none;
    char a[24], b[24];
    if (!w)
        return bq_fail(e, BQ_E_INVAL, "pg_wal_fetch_range: no connection");
    if (!w->l.conn)
        return bq_fail(e, BQ_E_STATE, "the WAL connection to %s was closed after an earlier "
                       "failure (its temporary slot with it)", w->l.where);
    if (start_lsn > stop_lsn || tli == 0)
        return bq_fail(e, BQ_E_INVAL, "pg_wal_fetch_range: bad range %s..%s on timeline %u",
                       pg_lsn_format(start_lsn, a, sizeof a), pg_lsn_format(stop_lsn, b, sizeof b),
                       (unsigned)tli);
    if (w->slot_lsn && start_lsn < w->slot_lsn)
        return bq_fail(e, BQ_E_INVAL, "WAL from %s was not reserved: slot %s starts at %s",
                       pg_lsn_format(start_lsn, a, sizeof a), w->slot,
                       pg_lsn_format(w->slot_lsn, b, sizeof b));
    if (stop_lsn / w->seg_size >= UINT64_MAX / w->seg_size - 1)
        return bq_fail(e, BQ_E_INVAL, "pg_wal_fetch_range: stop LSN out of range");
    fetch_t f = {
        .w = w,
        .cb = cb ? cb : &none,
        .arg = arg,
        .tli = tli,
        .pos = start_lsn - start_lsn % w->seg_size,
        .end = (stop_lsn / w->seg_size + 1) * w->seg_size,
    };
    f.flushed = f.pos;
    w->l.should_stop = f.cb->should_stop;
    w->l.arg = arg;

    char cmd[160];
    if (w->slot[0])
        snprintf(cmd, sizeof cmd, "START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %u", w->slot,
                 pg_lsn_format(f.pos, a, sizeof a), (unsigned)tli);
    else
        snprintf(cmd, sizeof cmd, "START_REPLICATION PHYSICAL %s TIMELINE %u",
                 pg_lsn_format(f.pos, a, sizeof a), (unsigned)tli);
    int rc = 0;
    if (!PQsendQuery(w->l.conn, cmd))
        rc = result_error(&w->l, NULL, "START_REPLICATION", e);
    PGresult *res = NULL;
    if (rc == 0)
        rc = next_result(&w->l, w->o.stall_timeout_s, "starting the WAL stream", &res, e);
    if (rc == 0 && PQresultStatus(res) != PGRES_COPY_BOTH) {
        rc = PQresultStatus(res) == PGRES_FATAL_ERROR
                 ? result_error(&w->l, res, "START_REPLICATION", e)
                 : bq_fail(e, BQ_E_PROTO, "START_REPLICATION on %s: %s instead of a stream",
                           w->l.where, res ? PQresStatus(PQresultStatus(res)) : "no result");
        PQclear(res);
        res = NULL;
        /* the command is over: take what is left so the connection stays usable */
        bq_errbuf_t ignore;
        PGresult *r2;
        for (int i = 0; i < RESULTS_MAX; i++) {
            if (next_result(&w->l, w->o.stall_timeout_s, "reading results", &r2, &ignore) ||
                !r2)
                break;
            PQclear(r2);
        }
    }
    PQclear(res);
    int streaming = rc == 0;
    if (rc == 0)
        rc = stream_wal(&f, e);
    if (rc == 0)
        rc = end_stream(&f, e);
    w->l.should_stop = NULL;
    w->l.arg = NULL;
    if (rc && streaming) {
        /* Failed mid-stream: the connection cannot take another command; close it (and so
         * the temporary slot) rather than leave it in an unknown state. */
        PQfinish(w->l.conn);
        w->l.conn = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Continuous WAL streaming (a wal-stream job: docs/architecture.md, "WAL streaming") */

typedef struct {
    pg_wal_conn_t *w;
    const pg_wal_stream_cb_t *cb;
    void *arg;
    uint32_t tli;
    uint64_t pos;     /* the next byte expected */
    uint64_t synced;  /* everything before it is durable (the caller's sync said so) */
    int seg_open;
} stream_t;

static int st_sync(stream_t *s, bq_errbuf_t *e)
{
    if (s->synced == s->pos)
        return 0;
    int rc = s->cb->sync ? s->cb->sync(s->arg, e) : 0;
    if (rc == 0)
        s->synced = s->pos;
    return rc;
}

static int st_status(stream_t *s, bq_errbuf_t *e)
{
    int rc = send_status(s->w, s->pos, s->synced, e);
    if (rc == 0 && s->cb->position)
        s->cb->position(s->arg, s->tli, s->pos, s->synced);
    return rc;
}

/* WAL bytes at s->pos, split into segments: each ends with a sync and segment_end. */
static int st_data(stream_t *s, const uint8_t *p, size_t n, bq_errbuf_t *e)
{
    uint32_t seg = s->w->seg_size;
    while (n > 0) {
        if (!s->seg_open) {
            char name[PG_WAL_NAME_LEN + 1];
            pg_wal_file_name(s->tli, s->pos / seg, seg, name, sizeof name);
            int rc = s->cb->segment_begin ? s->cb->segment_begin(s->arg, name, s->tli,
                                                                 s->pos / seg, s->pos % seg, e)
                                          : 0;
            if (rc)
                return rc;
            s->seg_open = 1;
        }
        size_t k = n;
        if (k > seg - s->pos % seg)
            k = (size_t)(seg - s->pos % seg);
        int rc = s->cb->data ? s->cb->data(s->arg, p, k, e) : 0;
        if (rc)
            return rc;
        p += k;
        n -= k;
        s->pos += k;
        if (s->pos % seg == 0) {
            if ((rc = st_sync(s, e)) != 0 ||
                (rc = s->cb->segment_end ? s->cb->segment_end(s->arg, e) : 0) != 0)
                return rc;
            s->seg_open = 0;
        }
    }
    return 0;
}

/* One timeline's stream, until the server ends it (its timeline switched: *next_tli and
 * *next_lsn set) or an error. */
static int st_run(stream_t *s, uint32_t *next_tli, uint64_t *next_lsn, bq_errbuf_t *e)
{
    pg_wal_conn_t *w = s->w;
    link_t *l = &w->l;
    char a[24], b[24], cmd[160];
    snprintf(cmd, sizeof cmd, "START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %u", w->slot,
             pg_lsn_format(s->pos, a, sizeof a), (unsigned)s->tli);
    if (!PQsendQuery(l->conn, cmd))
        return result_error(l, NULL, "START_REPLICATION", e);
    PGresult *res = NULL;
    int rc = next_result(l, w->o.stall_timeout_s, "starting the WAL stream", &res, e);
    if (rc == 0 && PQresultStatus(res) == PGRES_TUPLES_OK && PQnfields(res) >= 2 &&
        PQntuples(res) == 1) {
        /* Asked for exactly the end of an old timeline: the server skips the COPY and names
         * the next timeline and where it starts. */
        uint64_t t = 0;
        if (parse_u64(PQgetvalue(res, 0, 0), UINT32_MAX, &t) != 0 || t == 0 ||
            pg_lsn_parse(PQgetvalue(res, 0, 1), next_lsn) != 0)
            rc = bq_fail(e, BQ_E_PROTO, "WAL stream from %s: unreadable next timeline", l->where);
        *next_tli = (uint32_t)t;
        PQclear(res);
        for (int i = 0; rc == 0 && i < RESULTS_MAX; i++) {
            if ((rc = next_result(l, w->o.stall_timeout_s, "ending the WAL stream", &res, e)) != 0 ||
                !res)
                break;
            if (PQresultStatus(res) == PGRES_FATAL_ERROR)
                rc = result_error(l, res, cmd, e);
            PQclear(res);
        }
        return rc;
    }
    if (rc == 0 && PQresultStatus(res) != PGRES_COPY_BOTH)
        rc = PQresultStatus(res) == PGRES_FATAL_ERROR
                 ? result_error(l, res, cmd, e)
                 : bq_fail(e, BQ_E_PROTO, "START_REPLICATION on %s: %s instead of a stream",
                           l->where, res ? PQresStatus(PQresultStatus(res)) : "no result");
    PQclear(res);
    if (rc)
        return rc;
    int64_t now = bq_mono_ms();
    int64_t deadline = now + (int64_t)w->o.stall_timeout_s * 1000;
    int64_t next_status = now; /* at once: the server learns our position */
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(l->conn, &buf, 1);
        if (n > 0) {
            const uint8_t *m = (const uint8_t *)buf;
            deadline = bq_mono_ms() + (int64_t)w->o.stall_timeout_s * 1000;
            if (m[0] == 'w' && n >= 25) {
                uint64_t at = get_be64(m + 1);
                if (at != s->pos)
                    rc = bq_fail(e, BQ_E_PROTO, "WAL stream from %s: data at %s, expected %s",
                                 l->where, pg_lsn_format(at, a, sizeof a),
                                 pg_lsn_format(s->pos, b, sizeof b));
                else
                    rc = st_data(s, m + 25, (size_t)n - 25, e);
            } else if (m[0] == 'k' && n == 18) {
                if (m[17])
                    next_status = 0; /* a reply is asked for */
            } else {
                char q[8];
                quote(q, sizeof q, buf, 1);
                rc = bq_fail(e, BQ_E_PROTO, "WAL stream from %s: unexpected message '%s' of %d "
                             "bytes", l->where, q, n);
            }
            PQfreemem(buf);
            if (rc)
                return rc;
            continue; /* read what is there before syncing */
        }
        if (n == -1)
            break; /* the server ended the stream */
        if (n < -1) {
            char why[BQ_ERRMSG_MAX / 2];
            first_line(why, sizeof why, PQerrorMessage(l->conn));
            return bq_fail(e, BQ_E_PG, "WAL stream from %s failed: %s", l->where, why);
        }
        /* Nothing more for now: make what came durable, then say so (a synchronous primary
         * waits for this flush position). */
        if (s->synced != s->pos) {
            if ((rc = st_sync(s, e)) != 0)
                return rc;
            next_status = 0;
        }
        if (bq_mono_ms() >= next_status) {
            if ((rc = st_status(s, e)) != 0)
                return rc;
            next_status = bq_mono_ms() + (int64_t)w->o.status_interval_s * 1000;
        }
        int64_t until = deadline < next_status ? deadline : next_status;
        int idle_ms = 0;
        if (s->cb->idle && (rc = s->cb->idle(s->arg, &idle_ms, e)) != 0)
            return rc;
        if (idle_ms > 0 && bq_mono_ms() + idle_ms < until)
            until = bq_mono_ms() + idle_ms;
        rc = wait_readable(l, until, "streaming WAL", e);
        if (rc == BQ_E_TIMEOUT) {
            if (bq_mono_ms() >= deadline)
                return bq_fail(e, BQ_E_TIMEOUT, "WAL stream from %s stalled: nothing for %d s at "
                               "%s", l->where, w->o.stall_timeout_s,
                               pg_lsn_format(s->pos, a, sizeof a));
            rc = 0;
        } else if (rc == 0) {
            rc = consume(l, "streaming WAL", e);
        }
        if (rc == BQ_E_CANCELLED) {
            bq_errbuf_t ignore;
            if (st_sync(s, &ignore) == 0)
                st_status(s, &ignore);
        }
        if (rc)
            return rc;
    }
    /* The server ended the COPY: its timeline ended here (CopyDone, then the next timeline),
     * or it failed (the error is in the results below). */
    if ((rc = st_sync(s, e)) != 0)
        return rc;
    if (PQputCopyEnd(l->conn, NULL) == 1) /* fails when the server's error ended the COPY */
        PQflush(l->conn);
    *next_tli = 0;
    for (int i = 0; i < RESULTS_MAX; i++) {
        rc = next_result(l, w->o.stall_timeout_s, "ending the WAL stream", &res, e);
        if (rc)
            return rc;
        if (!res)
            break;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK && PQnfields(res) >= 2 && PQntuples(res) == 1) {
            uint64_t t = 0;
            if (parse_u64(PQgetvalue(res, 0, 0), UINT32_MAX, &t) != 0 || t == 0 ||
                pg_lsn_parse(PQgetvalue(res, 0, 1), next_lsn) != 0)
                rc = bq_fail(e, BQ_E_PROTO, "WAL stream from %s: unreadable next timeline",
                             l->where);
            *next_tli = (uint32_t)t;
        } else if (st == PGRES_FATAL_ERROR) {
            rc = result_error(l, res, "START_REPLICATION", e);
        }
        PQclear(res);
        if (rc)
            return rc;
    }
    if (*next_tli == 0)
        return bq_fail(e, BQ_E_PG, "WAL stream from %s ended at %s on timeline %u (the server "
                       "is shutting down?)", l->where, pg_lsn_format(s->pos, a, sizeof a),
                       (unsigned)s->tli);
    return 0;
}

int pg_wal_stream(pg_wal_conn_t *w, uint64_t start_lsn, uint32_t tli, const pg_wal_stream_cb_t *cb,
                  void *arg, bq_errbuf_t *e)
{
    static const pg_wal_stream_cb_t none;
    char a[24], b[24];
    if (!w || !w->l.conn)
        return bq_fail(e, BQ_E_STATE, "pg_wal_stream: no open WAL connection");
    if (!w->slot[0])
        return bq_fail(e, BQ_E_INVAL, "pg_wal_stream needs a replication slot");
    if (tli == 0) /* the slot's: a promotion since then is then followed, not skipped */
        tli = w->slot_tli && w->slot_tli <= w->tli ? w->slot_tli : w->tli;
    stream_t s = {.w = w, .cb = cb ? cb : &none, .arg = arg, .tli = tli};
    s.pos = start_lsn - start_lsn % w->seg_size;
    s.synced = s.pos;
    w->l.should_stop = s.cb->should_stop;
    w->l.arg = arg;
    int rc = 0;
    for (int switches = 0; rc == 0; switches++) {
        uint32_t next_tli = 0;
        uint64_t next_lsn = 0;
        if ((rc = st_run(&s, &next_tli, &next_lsn, e)) != 0)
            break;
        if (next_tli <= s.tli || next_lsn < s.pos - s.pos % w->seg_size || switches > 1000) {
            rc = bq_fail(e, BQ_E_PROTO, "WAL stream from %s: timeline %u ended at %s, then "
                         "timeline %u at %s", w->l.where, (unsigned)s.tli,
                         pg_lsn_format(s.pos, a, sizeof a), (unsigned)next_tli,
                         pg_lsn_format(next_lsn, b, sizeof b));
            break;
        }
        /* The old timeline's last segment ends early: the caller keeps it as NAME.partial. */
        if (s.seg_open && s.cb->timeline_end && (rc = s.cb->timeline_end(arg, s.tli, s.pos, e)) != 0)
            break;
        s.seg_open = 0;
        char sql[64];
        PGresult *res = NULL;
        snprintf(sql, sizeof sql, "TIMELINE_HISTORY %u", (unsigned)next_tli);
        if ((rc = exec_tuples(&w->l, sql, w->o.stall_timeout_s, 2, &res, e)) != 0)
            break;
        if (s.cb->history)
            rc = s.cb->history(arg, next_tli, PQgetvalue(res, 0, 0),
                               (const uint8_t *)PQgetvalue(res, 0, 1),
                               (size_t)PQgetlength(res, 0, 1), e);
        PQclear(res);
        s.tli = next_tli;
        s.pos = next_lsn - next_lsn % w->seg_size; /* the new timeline's copy of the segment */
        s.synced = s.pos;
    }
    w->l.should_stop = NULL;
    w->l.arg = NULL;
    if (rc && w->l.conn) { /* mid-stream: the connection cannot take another command */
        PQfinish(w->l.conn);
        w->l.conn = NULL;
    }
    return rc;
}
