/* cli/metrics: the strict checker of the text format on tables of good and bad expositions
 * (each bad one with the exact error), then metrics_write on fixtures: the checker accepts
 * the output, the samples have the values they must, and promtool check metrics finds
 * nothing to say about it (without /usr/bin/promtool that test is skipped, or fails when
 * the environment variable CI is set). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "metrics.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PROMTOOL
#define PROMTOOL "/usr/bin/promtool"
#endif
#define NOW_MS INT64_C(1764643200123) /* 2025-12-02 02:40:00.123 UTC */
#define HOUR_MS INT64_C(3600000)

/* ---- helpers --------------------------------------------------------------------------- */

/* metrics_write's output; the caller frees it. */
static char *render(const metrics_input_t *in)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(metrics_write(f, in), 0);
    assert_int_equal(fclose(f), 0);
    assert_non_null(buf);
    return buf;
}

static void assert_parses(const char *text)
{
    char why[256];
    int rc = metrics_parse_check(text, why, sizeof why);
    if (rc != 0)
        print_error("metrics_parse_check: %s\n--- text ---\n%s------------\n", why, text);
    assert_int_equal(rc, 0);
}

/* The value of series key (name{labels} exactly as written) in text, NULL when absent. */
static const char *value_of(const char *text, const char *key, char *val, size_t len)
{
    size_t kl = strlen(key);
    for (const char *l = text; *l; l = strchr(l, '\n') + 1) {
        if (strncmp(l, key, kl) == 0 && l[kl] == ' ') {
            const char *v = l + kl + 1;
            size_t vl = strcspn(v, " \n");
            assert_true(vl < len);
            memcpy(val, v, vl);
            val[vl] = '\0';
            return val;
        }
    }
    return NULL;
}

#define assert_sample(text, key, expected)                                                 \
    do {                                                                                   \
        char v_[64];                                                                       \
        const char *got_ = value_of((text), (key), v_, sizeof v_);                         \
        if (!got_)                                                                         \
            print_error("no sample %s\n", (key));                                          \
        assert_non_null(got_);                                                             \
        assert_string_equal(got_, (expected));                                             \
    } while (0)

#define assert_no_sample(text, key)                                                        \
    do {                                                                                   \
        char v_[64];                                                                       \
        assert_null(value_of((text), (key), v_, sizeof v_));                               \
    } while (0)

/* The samples in text whose line starts with prefix. */
static size_t count_lines(const char *text, const char *prefix)
{
    size_t n = 0, pl = strlen(prefix);
    for (const char *l = text; *l; l = strchr(l, '\n') + 1)
        n += strncmp(l, prefix, pl) == 0;
    return n;
}

/* Whether promtool is there; when it is not, a failure if CI is set, else a message. */
static int promtool_available(void)
{
    if (access(PROMTOOL, X_OK) == 0)
        return 1;
    if (getenv("CI"))
        fail_msg("%s is missing and CI is set: deploy/install-deps.sh installs it (Debian "
                 "package prometheus)", PROMTOOL);
    print_message("%s is not installed (Debian package prometheus): promtool checks skipped\n",
                  PROMTOOL);
    return 0;
}

/* Run promtool check metrics on text: its exit status, and what it printed (stdout and
 * stderr) in out. */
static void promtool_check(const char *text, int *status, char *out, size_t outlen)
{
    char path[] = "/tmp/metrics_test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char cmd[256];
    assert_true(snprintf(cmd, sizeof cmd, "%s check metrics >%s 2>&1", PROMTOOL, path) <
                (int)sizeof cmd);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    FILE *p = popen(cmd, "w");
    assert_non_null(p);
    assert_true(fputs(text, p) >= 0);
    int st = pclose(p);
    signal(SIGPIPE, old);
    assert_true(WIFEXITED(st));
    *status = WEXITSTATUS(st);
    ssize_t n = read(fd, out, outlen - 1);
    assert_true(n >= 0);
    out[n] = '\0';
    close(fd);
    unlink(path);
}

static void assert_promtool_clean(const char *what, const char *text)
{
    int status;
    char out[4096];
    promtool_check(text, &status, out, sizeof out);
    if (status != 0 || out[0])
        print_error("promtool check metrics on the %s fixture: exit %d\n%s", what, status, out);
    assert_int_equal(status, 0);
    assert_string_equal(out, "");
}

/* ---- the checker ----------------------------------------------------------------------- */

#define H "# HELP a x\n# TYPE a gauge\n"

static void test_parse_good(void **state)
{
    (void)state;
    static const char *const good[] = {
        "",
        H "a 1\n",
        H "a{x=\"q\\\"b\\\\s\\nn\",} -1.5e+3 1764643200123\n",
        H "a{} 0\n",
        H "a NaN\n",
        H "a +Inf\n",
        H "a{x=\"1\"} -Inf\na{x=\"2\"} .5\na{x=\"3\"} 5.\na{x=\"4\"} 1E-7 -5\n",
        "  # a comment, not HELP or TYPE\n\n" H "\t a { x = \"1\" , y=\"2\" } 1 \n\n",
        H "a{x=\"1\"}2\n",
        "# HELP c_total x\n# TYPE c_total counter\nc_total 3\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
        "h_sum 3\nh_count 2\n",
        "# TYPE s summary\n# HELP s x\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n",
        "# HELP a back\\\\slash \\n newline\n# TYPE a untyped\na 1\n",
        "# HELP ns:a_b x\n# TYPE ns:a_b gauge\nns:a_b{x=\"1\"} 1\nns:a_b{y=\"1\"} 1\n",
        H "a 1\n# HELP b x\n# TYPE b gauge\nb{x=\"1\"} 1\n",
        "#HELP a x\n#TYPE a gauge\na 1\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_parses(good[i]);
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *why;
    } bad[] = {
        {H "a 1", "line 3: no newline at the end"},
        {H "1a 1\n", "line 3: bad metric name"},
        {H "a-b 1\n", "line 3: bad metric name"},
        {H "a{1x=\"v\"} 1\n", "line 3: bad label name in a sample of a"},
        {H "a{__name__=\"v\"} 1\n", "line 3: label name __name__ is reserved"},
        {H "a{x=\"1\",x=\"2\"} 1\n", "line 3: label x twice"},
        {H "a{x:\"1\"} 1\n", "line 3: expected '=' after label x"},
        {H "a{x=1} 1\n", "line 3: expected '\"' to open the value of label x"},
        {H "a{x=\"\\t\"} 1\n", "line 3: bad escape in the value of label x"},
        {H "a{x=\"1} 1\n", "line 3: unterminated value of label x"},
        {H "a{x=\"1\" y=\"2\"} 1\n", "line 3: expected ',' or '}' after label x"},
        {H "a{x=\"1\",\n", "line 3: unterminated label set of a"},
        {H "a\n", "line 3: no value for a"},
        {H "a{x=\"1\"}\n", "line 3: no value for a"},
        {H "a one\n", "line 3: bad value \"one\" for a"},
        {H "a 0x10\n", "line 3: bad value \"0x10\" for a"},
        {H "a inf\n", "line 3: bad value \"inf\" for a"},
        {H "a 1e\n", "line 3: bad value \"1e\" for a"},
        {H "a 1\r\n", "line 3: bad value \"1\r\" for a"},
        {H "a 1 1.5\n", "line 3: bad timestamp \"1.5\" for a"},
        {H "a 1 99999999999999999999\n", "line 3: bad timestamp \"99999999999999999999\" for a"},
        {H "a 1 2 3\n", "line 3: text after the timestamp of a"},
        {"b 1\n", "line 1: sample of b with no TYPE"},
        {"# HELP a x\na 1\n", "line 2: sample of a with no TYPE"},
        {"# TYPE a gauge\na 1\n", "line 2: sample of a with no HELP"},
        {H "# TYPE a counter\na 1\n", "line 3: TYPE for a twice (first at line 2)"},
        {H "a 1\n# HELP a y\n", "line 4: HELP for a twice (first at line 1)"},
        {H "a 1\n# TYPE b gauges\n", "line 4: unknown type \"gauges\" for b"},
        {H "a 1\n# TYPE b gauge x\n", "line 4: text after the type of b"},
        {"# HELP\n", "line 1: HELP with no metric name"},
        {"# TYPE  \n", "line 1: TYPE with no metric name"},
        {"# TYPE 1a gauge\n", "line 1: bad metric name in TYPE"},
        {"# HELP a-b x\n", "line 1: bad metric name in HELP"},
        {"# HELP a\n", "line 1: HELP for a with no text"},
        {"# HELP a  \t\n", "line 1: HELP for a with no text"},
        {"# HELP a bad \\t escape\n", "line 1: bad escape in the help of a"},
        {H "a 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n", "line 7: samples of a are not contiguous"},
        {H "a 1\na 2\n", "line 4: series of a with these labels twice (first at line 3)"},
        {H "a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n",
         "line 4: series of a with these labels twice (first at line 3)"},
        {"# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\nb 1\n",
         "line 1: HELP or TYPE of a with no samples"},
        {H "a 1\n# HELP b x\n", "line 4: HELP or TYPE of b with no samples"},
        {"# HELP h x\n# TYPE h histogram\nh 1\n", "line 3: h is no sample name of histogram family h"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[256] = "unset";
        int rc = metrics_parse_check(bad[i].text, why, sizeof why);
        if (rc != -1 || strcmp(why, bad[i].why) != 0)
            print_error("case %zu: rc %d, why \"%s\", want \"%s\"\n", i, rc, why, bad[i].why);
        assert_int_equal(rc, -1);
        assert_string_equal(why, bad[i].why);
    }
}

#undef H

/* ---- fixtures -------------------------------------------------------------------------- */

static bq_backup_t backup(const char *cluster, const char *id, bq_backup_state_t st,
                          int64_t stop_ms)
{
    bq_backup_t b;
    memset(&b, 0, sizeof b);
    snprintf(b.cluster, sizeof b.cluster, "%s", cluster);
    snprintf(b.id, sizeof b.id, "%s", id);
    b.state = st;
    b.stop_ms = stop_ms;
    b.start_ms = stop_ms ? stop_ms - 90500 : 0;
    b.duration_ms = stop_ms ? 90500 : 0;
    return b;
}

/* Three clusters, backups in every state, workers online and offline, checks. */
typedef struct {
    bq_cluster_t clusters[3];
    bq_backup_t backups[16];
    bq_worker_t workers[3];
    metrics_check_t checks[3];
    metrics_input_t in;
} fixture_t;

static void fixture_make(fixture_t *fx)
{
    memset(fx, 0, sizeof *fx);
    bq_cluster_t *c = fx->clusters;
    snprintf(c[0].name, sizeof c[0].name, "main");
    snprintf(c[0].site, sizeof c[0].site, "paris");
    snprintf(c[0].wal_mode, sizeof c[0].wal_mode, "stream");
    c[0].wal_last_ms = NOW_MS - 61000;
    c[0].wal_gaps = 2;
    snprintf(c[0].stream_state, sizeof c[0].stream_state, "RUNNING");
    c[0].stream_received = 5000;
    c[0].stream_flushed = 1200;
    /* a site no config allows, to see the escaping of a label value */
    snprintf(c[1].name, sizeof c[1].name, "reporting");
    snprintf(c[1].site, sizeof c[1].site, "lyon \"b\"\\x\ny");
    snprintf(c[1].wal_mode, sizeof c[1].wal_mode, "archive");
    c[1].check_status = BQ_SEV_WARNING; /* older than its checks[] entry */
    c[1].check_ms = NOW_MS - 2 * HOUR_MS;
    c[1].check_failed = 1;
    snprintf(c[2].name, sizeof c[2].name, "empty.db-2");
    snprintf(c[2].site, sizeof c[2].site, "paris");
    snprintf(c[2].wal_mode, sizeof c[2].wal_mode, "stream");
    snprintf(c[2].stream_state, sizeof c[2].stream_state, "QUEUED");
    c[2].stream_received = 10; /* behind flushed: no lag */
    c[2].stream_flushed = 20;
    /* restore tests: main's last one passed; reporting's failed after one that passed;
     * empty.db-2 never tested (its check item warns) */
    c[0].rt_last_ms = NOW_MS - 2 * HOUR_MS;
    c[0].rt_last_ok = 1;
    snprintf(c[0].rt_last_backup, sizeof c[0].rt_last_backup, "20251201T014000");
    c[0].rt_ok_ms = c[0].rt_last_ms;
    snprintf(c[0].rt_ok_backup, sizeof c[0].rt_ok_backup, "20251201T014000");
    c[0].rt_ok_rto_ms = 754250;
    c[0].rt_predicted_ms = 812000;
    c[1].rt_last_ms = NOW_MS - 3 * HOUR_MS;
    c[1].rt_last_ok = 0;
    snprintf(c[1].rt_last_error, sizeof c[1].rt_last_error, "pg_amcheck: 2 corrupt pages");
    c[1].rt_ok_ms = NOW_MS - 27 * HOUR_MS;
    c[1].rt_ok_rto_ms = 61000;
    c[1].rt_severity = BQ_SEV_CRITICAL;
    c[2].rt_severity = BQ_SEV_WARNING;
    /* geo copies: main copies to lyon (one behind, WAL lagging) and to nantes (never copied) */
    c[0].nreplicas = 2;
    snprintf(c[0].replicas[0].site, sizeof c[0].replicas[0].site, "lyon");
    c[0].replicas[0].copies_done = 3;
    c[0].replicas[0].copies_behind = 1;
    c[0].replicas[0].wal_missing = 2;
    c[0].replicas[0].wal_lag_bytes = 33554432;
    c[0].replicas[0].last_copy_ms = NOW_MS - HOUR_MS;
    snprintf(c[0].replicas[1].site, sizeof c[0].replicas[1].site, "nantes");
    c[0].replicas[1].copies_failed = 1;

    bq_backup_t *b = fx->backups;
    size_t n = 0;
    b[n] = backup("main", "20251201T014000", BQ_BACKUP_DONE, NOW_MS - HOUR_MS);
    b[n].data_bytes = UINT64_C(123456789012345);
    b[n].stored_bytes = 987654321;
    n++;
    b[n++] = backup("main", "20251130T014000", BQ_BACKUP_DONE, NOW_MS - 25 * HOUR_MS);
    b[n++] = backup("main", "20251202T010000", BQ_BACKUP_FAILED, NOW_MS - 1000);
    b[n++] = backup("main", "20251202T020000", BQ_BACKUP_STARTED, 0);
    b[n++] = backup("main", "20251202T013000", BQ_BACKUP_WAITING_FOR_WALS, 0);
    b[n++] = backup("main", "20251101T010000", BQ_BACKUP_DELETING, NOW_MS - 800 * HOUR_MS);
    b[n++] = backup("main", "20251102T010000", BQ_BACKUP_DELETING, NOW_MS - 790 * HOUR_MS);
    b[n++] = backup("main", "20251103T010000", BQ_BACKUP_NONE, 0); /* not counted */
    /* reporting: the newer of two DONE backups stopped at .100 */
    b[n] = backup("reporting", "20251201T000000", BQ_BACKUP_DONE, INT64_C(1764540000100));
    b[n].data_bytes = 4096;
    b[n].stored_bytes = 0;
    n++;
    b[n++] = backup("reporting", "20251201T010000", BQ_BACKUP_FAILED, INT64_C(1764550000000));
    b[n++] = backup("reporting", "20251130T000000", BQ_BACKUP_DONE, INT64_C(1764450000000));
    /* a cluster not in the configuration: not shown */
    b[n++] = backup("gone", "20251201T000000", BQ_BACKUP_DONE, NOW_MS - HOUR_MS);
    fx->in.nbackups = n;

    bq_worker_t *w = fx->workers;
    snprintf(w[0].name, sizeof w[0].name, "w1");
    snprintf(w[0].site, sizeof w[0].site, "paris");
    w[0].online = 1;
    w[0].store_free = UINT64_C(1099511627776);
    w[0].store_total = UINT64_C(4398046511104);
    w[0].running = 2;
    w[0].max_jobs = 4;
    w[0].last_seen_ms = NOW_MS - 1500;
    snprintf(w[1].name, sizeof w[1].name, "w2.lyon");
    snprintf(w[1].site, sizeof w[1].site, "lyon \"b\"\\x\ny");
    w[1].online = 0;
    w[1].max_jobs = 1;
    w[1].last_seen_ms = 0; /* never seen */
    w[2] = w[0]; /* the same name again: skipped */
    w[2].online = 0;

    metrics_check_t *ch = fx->checks;
    snprintf(ch[0].cluster, sizeof ch[0].cluster, "main");
    ch[0].status = BQ_SEV_OK;
    ch[0].time_ms = NOW_MS - 300000;
    snprintf(ch[1].cluster, sizeof ch[1].cluster, "reporting");
    ch[1].status = BQ_SEV_CRITICAL;
    ch[1].time_ms = NOW_MS - 600000;
    ch[1].nfailed = 3;
    snprintf(ch[2].cluster, sizeof ch[2].cluster, "main"); /* older: not the last */
    ch[2].status = BQ_SEV_CRITICAL;
    ch[2].time_ms = NOW_MS - 900000;
    ch[2].nfailed = 5;

    fx->in.clusters = fx->clusters;
    fx->in.nclusters = 3;
    fx->in.backups = fx->backups;
    fx->in.workers = fx->workers;
    fx->in.nworkers = 3;
    fx->in.checks = fx->checks;
    fx->in.nchecks = 3;
    fx->in.now_ms = NOW_MS;
}

/* ---- metrics_write --------------------------------------------------------------------- */

static void test_write_no_clusters(void **state)
{
    (void)state;
    metrics_input_t in = {.now_ms = NOW_MS};
    char *out = render(&in);
    assert_string_equal(out, "# HELP barque_up Whether the coordinator answered (1) or not (0).\n"
                             "# TYPE barque_up gauge\n"
                             "barque_up 1\n");
    assert_parses(out);
    free(out);
}

static void test_write_down(void **state)
{
    (void)state;
    char *out = render(NULL);
    assert_string_equal(out, "# HELP barque_up Whether the coordinator answered (1) or not (0).\n"
                             "# TYPE barque_up gauge\n"
                             "barque_up 0\n");
    free(out);
}

/* One cluster, one DONE backup, one worker, one check. */
static char *golden_render(void)
{
    bq_cluster_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "db1");
    snprintf(c.site, sizeof c.site, "s1");
    snprintf(c.wal_mode, sizeof c.wal_mode, "archive");
    c.wal_last_ms = INT64_C(1764643100000);
    bq_backup_t b = backup("db1", "20251202T010000", BQ_BACKUP_DONE, INT64_C(1764639600120));
    b.data_bytes = 1000;
    b.stored_bytes = 400;
    bq_worker_t w;
    memset(&w, 0, sizeof w);
    snprintf(w.name, sizeof w.name, "w1");
    snprintf(w.site, sizeof w.site, "s1");
    w.online = 1;
    w.store_free = 10;
    w.store_total = 20;
    w.max_jobs = 2;
    w.last_seen_ms = INT64_C(1764643199999);
    metrics_check_t ch = {.cluster = "db1", .status = 0, .time_ms = INT64_C(1764643000000)};
    metrics_input_t in = {&c, 1, &b, 1, &w, 1, &ch, 1, NOW_MS};
    return render(&in);
}

/* The golden fixture: the whole text. */
static void test_write_golden(void **state)
{
    (void)state;
    char *out = golden_render();
    static const char want[] =
        "# HELP barque_up Whether the coordinator answered (1) or not (0).\n"
        "# TYPE barque_up gauge\n"
        "barque_up 1\n"
        "# HELP barque_cluster_info A cluster in the coordinator's configuration, with its site and WAL mode.\n"
        "# TYPE barque_cluster_info gauge\n"
        "barque_cluster_info{cluster=\"db1\",site=\"s1\",wal_mode=\"archive\"} 1\n"
        "# HELP barque_backup_last_success_timestamp_seconds When the cluster's newest successful backup ended, seconds since the epoch.\n"
        "# TYPE barque_backup_last_success_timestamp_seconds gauge\n"
        "barque_backup_last_success_timestamp_seconds{cluster=\"db1\"} 1764639600.12\n"
        "# HELP barque_backup_last_duration_seconds How long the cluster's newest successful backup took.\n"
        "# TYPE barque_backup_last_duration_seconds gauge\n"
        "barque_backup_last_duration_seconds{cluster=\"db1\"} 90.5\n"
        "# HELP barque_backup_last_size_bytes Bytes of data in the cluster's newest successful backup.\n"
        "# TYPE barque_backup_last_size_bytes gauge\n"
        "barque_backup_last_size_bytes{cluster=\"db1\"} 1000\n"
        "# HELP barque_backup_last_stored_bytes Bytes the cluster's newest successful backup added to its store.\n"
        "# TYPE barque_backup_last_stored_bytes gauge\n"
        "barque_backup_last_stored_bytes{cluster=\"db1\"} 400\n"
        "# HELP barque_backups Backups of the cluster in the catalog, by state.\n"
        "# TYPE barque_backups gauge\n"
        "barque_backups{cluster=\"db1\",state=\"done\"} 1\n"
        "barque_backups{cluster=\"db1\",state=\"failed\"} 0\n"
        "barque_backups{cluster=\"db1\",state=\"started\"} 0\n"
        "barque_backups{cluster=\"db1\",state=\"waiting_for_wals\"} 0\n"
        "barque_backups{cluster=\"db1\",state=\"deleting\"} 0\n"
        "# HELP barque_backup_age_seconds Seconds since the cluster's newest successful backup ended.\n"
        "# TYPE barque_backup_age_seconds gauge\n"
        "barque_backup_age_seconds{cluster=\"db1\"} 3600.003\n"
        "# HELP barque_wal_last_archived_timestamp_seconds When the newest WAL file of the cluster was archived, seconds since the epoch.\n"
        "# TYPE barque_wal_last_archived_timestamp_seconds gauge\n"
        "barque_wal_last_archived_timestamp_seconds{cluster=\"db1\"} 1764643100\n"
        "# HELP barque_wal_archive_gaps Ranges of WAL segments missing from the cluster's archive.\n"
        "# TYPE barque_wal_archive_gaps gauge\n"
        "barque_wal_archive_gaps{cluster=\"db1\"} 0\n"
        "# HELP barque_check_status The cluster's last check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n"
        "# TYPE barque_check_status gauge\n"
        "barque_check_status{cluster=\"db1\"} 0\n"
        "# HELP barque_check_timestamp_seconds When the cluster's last check ran, seconds since the epoch.\n"
        "# TYPE barque_check_timestamp_seconds gauge\n"
        "barque_check_timestamp_seconds{cluster=\"db1\"} 1764643000\n"
        "# HELP barque_check_failed_items Items of the cluster's last check that were not OK.\n"
        "# TYPE barque_check_failed_items gauge\n"
        "barque_check_failed_items{cluster=\"db1\"} 0\n"
        "# HELP barque_restore_test_status The cluster's restore test check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n"
        "# TYPE barque_restore_test_status gauge\n"
        "barque_restore_test_status{cluster=\"db1\"} 0\n"
        "# HELP barque_worker_online Whether the worker is connected to the coordinator (1) or not (0).\n"
        "# TYPE barque_worker_online gauge\n"
        "barque_worker_online{worker=\"w1\",site=\"s1\"} 1\n"
        "# HELP barque_worker_store_free_bytes Free bytes of the worker's store.\n"
        "# TYPE barque_worker_store_free_bytes gauge\n"
        "barque_worker_store_free_bytes{worker=\"w1\",site=\"s1\"} 10\n"
        "# HELP barque_worker_store_size_bytes Total bytes of the worker's store.\n"
        "# TYPE barque_worker_store_size_bytes gauge\n"
        "barque_worker_store_size_bytes{worker=\"w1\",site=\"s1\"} 20\n"
        "# HELP barque_worker_jobs_running Jobs the worker is running.\n"
        "# TYPE barque_worker_jobs_running gauge\n"
        "barque_worker_jobs_running{worker=\"w1\",site=\"s1\"} 0\n"
        "# HELP barque_worker_jobs_max Jobs the worker runs at most at once.\n"
        "# TYPE barque_worker_jobs_max gauge\n"
        "barque_worker_jobs_max{worker=\"w1\",site=\"s1\"} 2\n"
        "# HELP barque_worker_last_seen_timestamp_seconds When the coordinator last heard from the worker, seconds since the epoch.\n"
        "# TYPE barque_worker_last_seen_timestamp_seconds gauge\n"
        "barque_worker_last_seen_timestamp_seconds{worker=\"w1\",site=\"s1\"} 1764643199.999\n";
    assert_string_equal(out, want);
    assert_parses(out);
    free(out);
}

/* The three-cluster fixture: the checker accepts it; the values. */
static void test_write_fixture(void **state)
{
    (void)state;
    fixture_t fx;
    fixture_make(&fx);
    char *out = render(&fx.in);
    assert_parses(out);
    size_t len = strlen(out);
    assert_true(len > 0 && out[len - 1] == '\n');

    assert_sample(out, "barque_up", "1");
    assert_sample(out, "barque_cluster_info{cluster=\"main\",site=\"paris\",wal_mode=\"stream\"}", "1");
    assert_sample(out, "barque_cluster_info{cluster=\"reporting\",site=\"lyon \\\"b\\\"\\\\x\\ny\","
                       "wal_mode=\"archive\"}", "1");
    assert_sample(out, "barque_cluster_info{cluster=\"empty.db-2\",site=\"paris\",wal_mode=\"stream\"}", "1");

    /* main: the newest DONE backup stopped an hour ago */
    assert_sample(out, "barque_backup_last_success_timestamp_seconds{cluster=\"main\"}", "1764639600.123");
    assert_sample(out, "barque_backup_age_seconds{cluster=\"main\"}", "3600");
    assert_sample(out, "barque_backup_last_duration_seconds{cluster=\"main\"}", "90.5");
    assert_sample(out, "barque_backup_last_size_bytes{cluster=\"main\"}", "123456789012345");
    assert_sample(out, "barque_backup_last_stored_bytes{cluster=\"main\"}", "987654321");
    assert_sample(out, "barque_backups{cluster=\"main\",state=\"done\"}", "2");
    assert_sample(out, "barque_backups{cluster=\"main\",state=\"failed\"}", "1");
    assert_sample(out, "barque_backups{cluster=\"main\",state=\"started\"}", "1");
    assert_sample(out, "barque_backups{cluster=\"main\",state=\"waiting_for_wals\"}", "1");
    assert_sample(out, "barque_backups{cluster=\"main\",state=\"deleting\"}", "2");
    /* reporting: the newest of two DONE backups, not the FAILED one after it */
    assert_sample(out, "barque_backup_last_success_timestamp_seconds{cluster=\"reporting\"}", "1764540000.1");
    assert_sample(out, "barque_backup_age_seconds{cluster=\"reporting\"}", "103200.023");
    assert_sample(out, "barque_backup_last_size_bytes{cluster=\"reporting\"}", "4096");
    assert_sample(out, "barque_backup_last_stored_bytes{cluster=\"reporting\"}", "0");
    assert_sample(out, "barque_backups{cluster=\"reporting\",state=\"done\"}", "2");
    assert_sample(out, "barque_backups{cluster=\"reporting\",state=\"failed\"}", "1");
    assert_sample(out, "barque_backups{cluster=\"reporting\",state=\"deleting\"}", "0");
    /* empty.db-2: no backup, so no last_* and no age, but all five counts */
    assert_no_sample(out, "barque_backup_last_success_timestamp_seconds{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_backup_last_duration_seconds{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_backup_last_size_bytes{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_backup_last_stored_bytes{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_backup_age_seconds{cluster=\"empty.db-2\"}");
    for (const char *st = "done\0failed\0started\0waiting_for_wals\0deleting\0"; *st; st += strlen(st) + 1) {
        char key[128];
        snprintf(key, sizeof key, "barque_backups{cluster=\"empty.db-2\",state=\"%s\"}", st);
        assert_sample(out, key, "0");
    }
    assert_int_equal(count_lines(out, "barque_backups{"), 15);
    /* the cluster that is not configured */
    assert_null(strstr(out, "cluster=\"gone\""));

    /* WAL */
    assert_sample(out, "barque_wal_last_archived_timestamp_seconds{cluster=\"main\"}", "1764643139.123");
    assert_no_sample(out, "barque_wal_last_archived_timestamp_seconds{cluster=\"reporting\"}");
    assert_sample(out, "barque_wal_archive_gaps{cluster=\"main\"}", "2");
    assert_sample(out, "barque_wal_archive_gaps{cluster=\"reporting\"}", "0");
    assert_sample(out, "barque_wal_stream_lag_bytes{cluster=\"main\"}", "3800");
    assert_no_sample(out, "barque_wal_stream_lag_bytes{cluster=\"reporting\"}");
    assert_sample(out, "barque_wal_stream_lag_bytes{cluster=\"empty.db-2\"}", "0");

    /* checks: main's newest entry (OK), reporting's entry (newer than its own fields),
     * empty.db-2 never checked */
    assert_sample(out, "barque_check_status{cluster=\"main\"}", "0");
    assert_sample(out, "barque_check_timestamp_seconds{cluster=\"main\"}", "1764642900.123");
    assert_sample(out, "barque_check_failed_items{cluster=\"main\"}", "0");
    assert_sample(out, "barque_check_status{cluster=\"reporting\"}", "2");
    assert_sample(out, "barque_check_timestamp_seconds{cluster=\"reporting\"}", "1764642600.123");
    assert_sample(out, "barque_check_failed_items{cluster=\"reporting\"}", "3");
    assert_sample(out, "barque_check_status{cluster=\"empty.db-2\"}", "3");
    assert_no_sample(out, "barque_check_timestamp_seconds{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_check_failed_items{cluster=\"empty.db-2\"}");

    /* restore tests: main passed, reporting failed (its last pass still shown), empty.db-2
     * never tested: only its status */
    assert_sample(out, "barque_restore_test_last_timestamp_seconds{cluster=\"main\"}", "1764636000.123");
    assert_sample(out, "barque_restore_test_last_success{cluster=\"main\"}", "1");
    assert_sample(out, "barque_restore_test_last_success_timestamp_seconds{cluster=\"main\"}",
                  "1764636000.123");
    assert_sample(out, "barque_restore_test_rto_seconds{cluster=\"main\"}", "754.25");
    assert_sample(out, "barque_restore_test_predicted_rto_seconds{cluster=\"main\"}", "812");
    assert_sample(out, "barque_replica_copies_done{cluster=\"main\",site=\"lyon\"}", "3");
    assert_sample(out, "barque_replica_copies_behind{cluster=\"main\",site=\"lyon\"}", "1");
    assert_sample(out, "barque_replica_copies_failed{cluster=\"main\",site=\"nantes\"}", "1");
    assert_sample(out, "barque_replica_wal_missing_files{cluster=\"main\",site=\"lyon\"}", "2");
    assert_sample(out, "barque_replica_wal_lag_bytes{cluster=\"main\",site=\"lyon\"}", "33554432");
    assert_no_sample(out, "barque_replica_last_copy_timestamp_seconds{cluster=\"main\",site=\"nantes\"}");
    assert_no_sample(out, "barque_replica_copies_done{cluster=\"reporting\",site=\"lyon\"}");
    assert_sample(out, "barque_restore_test_status{cluster=\"main\"}", "0");
    assert_sample(out, "barque_restore_test_last_timestamp_seconds{cluster=\"reporting\"}", "1764632400.123");
    assert_sample(out, "barque_restore_test_last_success{cluster=\"reporting\"}", "0");
    assert_sample(out, "barque_restore_test_last_success_timestamp_seconds{cluster=\"reporting\"}",
                  "1764546000.123");
    assert_sample(out, "barque_restore_test_rto_seconds{cluster=\"reporting\"}", "61");
    assert_no_sample(out, "barque_restore_test_predicted_rto_seconds{cluster=\"reporting\"}");
    assert_sample(out, "barque_restore_test_status{cluster=\"reporting\"}", "2");
    assert_no_sample(out, "barque_restore_test_last_timestamp_seconds{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_restore_test_last_success{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_restore_test_last_success_timestamp_seconds{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_restore_test_rto_seconds{cluster=\"empty.db-2\"}");
    assert_no_sample(out, "barque_restore_test_predicted_rto_seconds{cluster=\"empty.db-2\"}");
    assert_sample(out, "barque_restore_test_status{cluster=\"empty.db-2\"}", "1");
    assert_int_equal(count_lines(out, "barque_restore_test_status{"), 3);

    /* workers: w1 once (its second entry skipped), w2 offline and never seen */
    const char *w1 = "{worker=\"w1\",site=\"paris\"}";
    const char *w2 = "{worker=\"w2.lyon\",site=\"lyon \\\"b\\\"\\\\x\\ny\"}";
    char key[160];
#define WKEY(fam, lab) (snprintf(key, sizeof key, "%s%s", (fam), (lab)), key)
    assert_sample(out, WKEY("barque_worker_online", w1), "1");
    assert_sample(out, WKEY("barque_worker_store_free_bytes", w1), "1099511627776");
    assert_sample(out, WKEY("barque_worker_store_size_bytes", w1), "4398046511104");
    assert_sample(out, WKEY("barque_worker_jobs_running", w1), "2");
    assert_sample(out, WKEY("barque_worker_jobs_max", w1), "4");
    assert_sample(out, WKEY("barque_worker_last_seen_timestamp_seconds", w1), "1764643198.623");
    assert_sample(out, WKEY("barque_worker_online", w2), "0");
    assert_sample(out, WKEY("barque_worker_store_free_bytes", w2), "0");
    assert_sample(out, WKEY("barque_worker_jobs_max", w2), "1");
    assert_no_sample(out, WKEY("barque_worker_last_seen_timestamp_seconds", w2));
#undef WKEY
    assert_int_equal(count_lines(out, "barque_worker_online{"), 2);

    free(out);
}

/* The families come in the documented order, each once. */
static void test_write_family_order(void **state)
{
    (void)state;
    static const char *const order[] = {
        "barque_up",
        "barque_cluster_info",
        "barque_backup_last_success_timestamp_seconds",
        "barque_backup_last_duration_seconds",
        "barque_backup_last_size_bytes",
        "barque_backup_last_stored_bytes",
        "barque_backups",
        "barque_backup_age_seconds",
        "barque_wal_last_archived_timestamp_seconds",
        "barque_wal_archive_gaps",
        "barque_wal_stream_lag_bytes",
        "barque_check_status",
        "barque_check_timestamp_seconds",
        "barque_check_failed_items",
        "barque_restore_test_last_timestamp_seconds",
        "barque_restore_test_last_success",
        "barque_restore_test_last_success_timestamp_seconds",
        "barque_restore_test_rto_seconds",
        "barque_restore_test_predicted_rto_seconds",
        "barque_restore_test_status",
        "barque_replica_copies_done",
        "barque_replica_copies_behind",
        "barque_replica_copies_failed",
        "barque_replica_wal_missing_files",
        "barque_replica_wal_lag_bytes",
        "barque_replica_last_copy_timestamp_seconds",
        "barque_worker_online",
        "barque_worker_store_free_bytes",
        "barque_worker_store_size_bytes",
        "barque_worker_jobs_running",
        "barque_worker_jobs_max",
        "barque_worker_last_seen_timestamp_seconds",
    };
    fixture_t fx;
    fixture_make(&fx);
    char *out = render(&fx.in);
    size_t n = 0;
    for (const char *l = out; *l; l = strchr(l, '\n') + 1) {
        if (strncmp(l, "# TYPE ", 7) != 0)
            continue;
        assert_true(n < sizeof order / sizeof order[0]);
        char want[128];
        snprintf(want, sizeof want, "# TYPE %s gauge\n", order[n]);
        assert_memory_equal(l, want, strlen(want));
        n++;
    }
    assert_int_equal(n, sizeof order / sizeof order[0]);
    assert_int_equal(count_lines(out, "# HELP "), n);
    free(out);
}

/* Which check is a cluster's: the newest of its checks[] entries and its own fields; a
 * status out of range is UNKNOWN; never checked is UNKNOWN alone. */
static char *checks_render(void)
{
    bq_cluster_t c[6];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 6; i++)
        snprintf(c[i].name, sizeof c[i].name, "c%d", i);
    c[1].check_status = BQ_SEV_WARNING; /* only its own fields */
    c[1].check_ms = NOW_MS - 1000;
    c[1].check_failed = 2;
    c[2].check_status = BQ_SEV_WARNING; /* newer than its entry: it wins */
    c[2].check_ms = NOW_MS - 1000;
    c[2].check_failed = 1;
    metrics_check_t ch[] = {
        {.cluster = "c0", .status = BQ_SEV_OK, .time_ms = NOW_MS - 5000},
        {.cluster = "c2", .status = BQ_SEV_CRITICAL, .time_ms = NOW_MS - 5000, .nfailed = 4},
        {.cluster = "c3", .status = BQ_SEV_UNKNOWN, .time_ms = 0, .nfailed = 1},
        {.cluster = "c5", .status = 9, .time_ms = NOW_MS, .nfailed = 1},
        {.cluster = "c0", .status = BQ_SEV_CRITICAL, .time_ms = NOW_MS - 5000}, /* a tie: later wins */
        {.cluster = "nope", .status = BQ_SEV_CRITICAL, .time_ms = NOW_MS},
    };
    metrics_input_t in = {.clusters = c, .nclusters = 6, .checks = ch,
                          .nchecks = sizeof ch / sizeof ch[0], .now_ms = NOW_MS};
    return render(&in);
}

static void test_write_checks(void **state)
{
    (void)state;
    char *out = checks_render();
    assert_parses(out);
    assert_sample(out, "barque_check_status{cluster=\"c0\"}", "2");
    assert_sample(out, "barque_check_timestamp_seconds{cluster=\"c0\"}", "1764643195.123");
    assert_sample(out, "barque_check_status{cluster=\"c1\"}", "1");
    assert_sample(out, "barque_check_failed_items{cluster=\"c1\"}", "2");
    assert_sample(out, "barque_check_timestamp_seconds{cluster=\"c1\"}", "1764643199.123");
    assert_sample(out, "barque_check_status{cluster=\"c2\"}", "1");
    assert_sample(out, "barque_check_failed_items{cluster=\"c2\"}", "1");
    assert_sample(out, "barque_check_status{cluster=\"c3\"}", "3");
    assert_sample(out, "barque_check_failed_items{cluster=\"c3\"}", "1");
    assert_no_sample(out, "barque_check_timestamp_seconds{cluster=\"c3\"}");
    assert_sample(out, "barque_check_status{cluster=\"c4\"}", "3");
    assert_no_sample(out, "barque_check_timestamp_seconds{cluster=\"c4\"}");
    assert_no_sample(out, "barque_check_failed_items{cluster=\"c4\"}");
    assert_sample(out, "barque_check_status{cluster=\"c5\"}", "3");
    assert_null(strstr(out, "nope"));
    /* no backups at all: no last_* or age family, not even its HELP */
    assert_null(strstr(out, "barque_backup_last_"));
    assert_null(strstr(out, "barque_backup_age_seconds"));
    assert_int_equal(count_lines(out, "barque_backups{"), 30);
    free(out);
}

/* Restore tests at their edges: failed with no pass ever, a prediction with no test, a
 * severity out of range, a cluster never tested; with no tested cluster at all, the
 * families of tests are left out whole, HELP and TYPE too. */
static char *rtests_render(void)
{
    bq_cluster_t c[4];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 4; i++)
        snprintf(c[i].name, sizeof c[i].name, "r%d", i);
    c[0].rt_last_ms = NOW_MS - 1000; /* failed, never passed */
    c[0].rt_severity = BQ_SEV_CRITICAL;
    c[1].rt_predicted_ms = 4500; /* never tested, but predicted */
    c[1].rt_severity = BQ_SEV_WARNING;
    c[2].rt_last_ms = NOW_MS; /* passed, severity out of range */
    c[2].rt_last_ok = 1;
    c[2].rt_ok_ms = NOW_MS;
    c[2].rt_ok_rto_ms = 1;
    c[2].rt_severity = 7;
    metrics_input_t in = {.clusters = c, .nclusters = 4, .now_ms = NOW_MS};
    return render(&in);
}

static void test_write_restore_tests(void **state)
{
    (void)state;
    char *out = rtests_render();
    assert_parses(out);
    assert_sample(out, "barque_restore_test_last_timestamp_seconds{cluster=\"r0\"}", "1764643199.123");
    assert_sample(out, "barque_restore_test_last_success{cluster=\"r0\"}", "0");
    assert_no_sample(out, "barque_restore_test_last_success_timestamp_seconds{cluster=\"r0\"}");
    assert_no_sample(out, "barque_restore_test_rto_seconds{cluster=\"r0\"}");
    assert_sample(out, "barque_restore_test_status{cluster=\"r0\"}", "2");
    assert_no_sample(out, "barque_restore_test_last_timestamp_seconds{cluster=\"r1\"}");
    assert_no_sample(out, "barque_restore_test_last_success{cluster=\"r1\"}");
    assert_sample(out, "barque_restore_test_predicted_rto_seconds{cluster=\"r1\"}", "4.5");
    assert_sample(out, "barque_restore_test_status{cluster=\"r1\"}", "1");
    assert_sample(out, "barque_restore_test_last_success{cluster=\"r2\"}", "1");
    assert_sample(out, "barque_restore_test_last_success_timestamp_seconds{cluster=\"r2\"}", "1764643200.123");
    assert_sample(out, "barque_restore_test_rto_seconds{cluster=\"r2\"}", "0.001");
    assert_sample(out, "barque_restore_test_status{cluster=\"r2\"}", "3");
    assert_sample(out, "barque_restore_test_status{cluster=\"r3\"}", "0");
    for (const char *f = "last_timestamp_seconds\0last_success\0predicted_rto_seconds\0"; *f;
         f += strlen(f) + 1) {
        char key[128];
        snprintf(key, sizeof key, "barque_restore_test_%s{cluster=\"r3\"}", f);
        assert_no_sample(out, key);
    }
    assert_int_equal(count_lines(out, "barque_restore_test_last_success{"), 2);
    assert_int_equal(count_lines(out, "barque_restore_test_rto_seconds{"), 1);
    free(out);

    /* no cluster tested and none predicted: only the status family of the tests */
    bq_cluster_t u;
    memset(&u, 0, sizeof u);
    snprintf(u.name, sizeof u.name, "u");
    metrics_input_t in = {.clusters = &u, .nclusters = 1, .now_ms = NOW_MS};
    out = render(&in);
    assert_parses(out);
    assert_null(strstr(out, "barque_restore_test_last_"));
    assert_null(strstr(out, "barque_restore_test_rto_seconds"));
    assert_null(strstr(out, "barque_restore_test_predicted_rto_seconds"));
    assert_sample(out, "barque_restore_test_status{cluster=\"u\"}", "0");
    free(out);
}

/* A cluster or worker named twice is shown once (the first). */
static void test_write_duplicates(void **state)
{
    (void)state;
    bq_cluster_t c[3];
    memset(c, 0, sizeof c);
    snprintf(c[0].name, sizeof c[0].name, "db");
    snprintf(c[0].site, sizeof c[0].site, "first");
    c[1] = c[0];
    snprintf(c[1].site, sizeof c[1].site, "site-of-the-twin");
    snprintf(c[2].name, sizeof c[2].name, "da");
    bq_backup_t b = backup("db", "20251202T010000", BQ_BACKUP_DONE, NOW_MS - 1000);
    bq_worker_t w[2];
    memset(w, 0, sizeof w);
    snprintf(w[0].name, sizeof w[0].name, "w");
    w[1] = w[0];
    w[1].online = 1;
    metrics_input_t in = {c, 3, &b, 1, w, 2, NULL, 0, NOW_MS};
    char *out = render(&in);
    assert_parses(out);
    assert_sample(out, "barque_cluster_info{cluster=\"db\",site=\"first\",wal_mode=\"\"}", "1");
    assert_null(strstr(out, "site-of-the-twin"));
    assert_sample(out, "barque_backups{cluster=\"db\",state=\"done\"}", "1");
    assert_int_equal(count_lines(out, "barque_cluster_info{"), 2);
    /* input order, not name order */
    assert_true(strstr(out, "cluster_info{cluster=\"db\"") < strstr(out, "cluster_info{cluster=\"da\""));
    assert_sample(out, "barque_worker_online{worker=\"w\",site=\"\"}", "0");
    assert_int_equal(count_lines(out, "barque_worker_online{"), 1);
    free(out);
}

/* Times: exact milliseconds, no trailing zeros; an age is never below 0. */
static void test_write_times(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {INT64_C(1764643200123), "1764643200.123"},
        {INT64_C(1764643200120), "1764643200.12"},
        {INT64_C(1764643200100), "1764643200.1"},
        {INT64_C(1764643200000), "1764643200"},
        {INT64_C(1764643200001), "1764643200.001"},
        {INT64_C(1764643200010), "1764643200.01"},
        {1, "0.001"},
        {INT64_MAX, "9223372036854775.807"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bq_worker_t w;
        memset(&w, 0, sizeof w);
        snprintf(w.name, sizeof w.name, "w");
        w.last_seen_ms = cases[i].ms;
        metrics_input_t in = {.workers = &w, .nworkers = 1};
        char *out = render(&in);
        assert_sample(out, "barque_worker_last_seen_timestamp_seconds{worker=\"w\",site=\"\"}",
                      cases[i].want);
        free(out);
    }
    bq_cluster_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "db");
    bq_backup_t b = backup("db", "20251202T010000", BQ_BACKUP_DONE, NOW_MS + 5000);
    metrics_input_t in = {.clusters = &c, .nclusters = 1, .backups = &b, .nbackups = 1,
                          .now_ms = NOW_MS};
    char *out = render(&in);
    assert_sample(out, "barque_backup_age_seconds{cluster=\"db\"}", "0");
    free(out);
}

/* A failing write is -1. */
static void test_write_fails(void **state)
{
    (void)state;
    fixture_t fx;
    fixture_make(&fx);
    FILE *f = fopen("/dev/full", "w");
    assert_non_null(f);
    assert_int_equal(metrics_write(f, &fx.in), -1);
    fclose(f);
    f = fopen("/dev/full", "w");
    assert_non_null(f);
    assert_int_equal(metrics_write(f, NULL), -1);
    fclose(f);
}

/* promtool check metrics has nothing to say about any fixture's output; and it does
 * complain about a bad name (so that its silence means something). */
static void test_promtool(void **state)
{
    (void)state;
    if (!promtool_available()) {
        skip();
        return;
    }
    metrics_input_t empty = {.now_ms = NOW_MS};
    fixture_t fx;
    fixture_make(&fx);
    struct {
        const char *what;
        char *text;
    } outs[] = {
        {"no-clusters", render(&empty)},
        {"down", render(NULL)},
        {"golden", golden_render()},
        {"three-cluster", render(&fx.in)},
        {"checks", checks_render()},
        {"restore-tests", rtests_render()},
    };
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        assert_promtool_clean(outs[i].what, outs[i].text);
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        free(outs[i].text);

    int status;
    char out[4096];
    promtool_check("# HELP barque_x_ms x\n# TYPE barque_x_ms counter\nbarque_x_ms 1\n", &status,
                   out, sizeof out);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(out, "abbreviated units"));
    assert_non_null(strstr(out, "_total"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_write_no_clusters),
        cmocka_unit_test(test_write_down),
        cmocka_unit_test(test_write_golden),
        cmocka_unit_test(test_write_fixture),
        cmocka_unit_test(test_write_family_order),
        cmocka_unit_test(test_write_checks),
        cmocka_unit_test(test_write_restore_tests),
        cmocka_unit_test(test_write_duplicates),
        cmocka_unit_test(test_write_times),
        cmocka_unit_test(test_write_fails),
        cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
