/* Test helper for integration.pg_basebackup: runs pg/basebackup.h against a live cluster and
 * writes a plain data directory, as a restore would.
 *
 *     pg_backup_tool backup CONNINFO DEST [options]
 *         --no-wal              do not fetch WAL (no slot either)
 *         --spread              CHECKPOINT 'spread'
 *         --no-tablespace-map   pg_tblspc symlinks in base.tar instead of tablespace_map
 *         --cancel-after N      should_stop says yes once N bytes of files were written
 *         --stall S             stall timeout (seconds)
 *     pg_backup_tool wal-stall CONNINFO STALL_S
 *         asks for three segments more than the server has: must time out
 *     pg_backup_tool stream CONNINFO DIR SLOT APPNAME [START_LSN]
 *         a synchronous standby's receiver (pg_wal_stream) on permanent slot SLOT as
 *         APPNAME, writing DIR/NAME.partial (full size, as pg_receivewal) and renaming it to
 *         NAME when complete, history files too, until SIGTERM
 *     pg_backup_tool wal-check FILE SYSID
 *         pg_wal_segment_check of FILE's first page against its name and system SYSID
 *
 * The main data directory goes to DEST, tablespace OID to DEST_tsOID with DEST/pg_tblspc/OID a
 * symlink to it (whatever the archive says: relocated), the server's backup_manifest to
 * DEST/backup_manifest and the WAL segments from start to stop to DEST/pg_wal. tablespace_map,
 * if any, is written as the server sent it: pg_verifybackup checks it against the manifest; the
 * test rewrites it before starting a server on DEST.
 *
 * Prints one line per event ("start ...", "archive ...", "end ...", "failure ...", "wal ...",
 * "done ...") and exits 0; on an error prints "error: BQ_E_NAME: message" and exits 1; 2 for
 * bad arguments. */
#include "basebackup.h"
#include "walfile.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char dest[PATH_MAX];
    char root[PATH_MAX];       /* of the current archive */
    uint32_t oid;              /* of the current archive */
    const pg_bb_tablespace_t *ts;
    size_t nts;
    int fd;                    /* the file being written */
    char cur[PATH_MAX];
    uint64_t files, dirs, links, bytes, progress_calls, last_progress, manifest_bytes;
    uint64_t cancel_after;
    uint64_t start_lsn, stop_lsn;
    uint32_t tli;
    uint64_t wal_segments, wal_bytes;
    FILE *manifest;
} tool_t;

static int io_fail(bq_errbuf_t *e, const char *what, const char *path)
{
    return bq_fail(e, BQ_E_IO, "could not %s %s: %s", what, path, strerror(errno));
}

static int mkdir_ok(const char *path, mode_t mode, bq_errbuf_t *e)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return io_fail(e, "create directory", path);
    return 0;
}

static int on_start(void *arg, const pg_bb_start_t *s, bq_errbuf_t *e)
{
    tool_t *t = arg;
    char lsn[32];
    printf("start lsn=%s tli=%u sysid=%" PRIu64 " version=%d segsize=%u tablespaces=%zu "
           "estimate=%" PRId64 "\n",
           pg_lsn_format(s->start_lsn, lsn, sizeof lsn), s->timeline, s->system_identifier,
           s->server_version, s->wal_segment_size, s->ntablespaces, s->total_estimate);
    t->start_lsn = s->start_lsn;
    t->tli = s->timeline;
    t->nts = s->ntablespaces;
    if (s->tablespaces[s->ntablespaces - 1].oid != 0)
        return bq_fail(e, BQ_E_PROTO, "the main data directory is not last in the list");
    for (size_t i = 0; i < s->ntablespaces; i++)
        printf("tablespace oid=%u location=%s estimate=%" PRId64 "\n", s->tablespaces[i].oid,
               s->tablespaces[i].location, s->tablespaces[i].size_estimate);
    int rc = mkdir_ok(t->dest, 0700, e);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/pg_tblspc", t->dest);
    if (rc == 0 && s->ntablespaces > 1)
        rc = mkdir_ok(p, 0700, e);
    /* Every tablespace relocated next to DEST, linked from pg_tblspc. */
    for (size_t i = 0; rc == 0 && i < s->ntablespaces; i++) {
        if (!s->tablespaces[i].oid)
            continue;
        char dir[PATH_MAX], lnk[PATH_MAX];
        snprintf(dir, sizeof dir, "%s_ts%u", t->dest, s->tablespaces[i].oid);
        snprintf(lnk, sizeof lnk, "%s/pg_tblspc/%u", t->dest, s->tablespaces[i].oid);
        rc = mkdir_ok(dir, 0700, e);
        if (rc == 0 && symlink(dir, lnk) != 0)
            rc = io_fail(e, "create symlink", lnk);
    }
    return rc;
}

static int on_archive_begin(void *arg, const pg_bb_tablespace_t *ts, const char *name,
                            bq_errbuf_t *e)
{
    (void)e;
    tool_t *t = arg;
    printf("archive name=%s oid=%u location=%s\n", name, ts->oid, ts->location);
    t->oid = ts->oid;
    if (ts->oid)
        snprintf(t->root, sizeof t->root, "%s_ts%u", t->dest, ts->oid);
    else
        snprintf(t->root, sizeof t->root, "%s", t->dest);
    return 0;
}

static int on_file_begin(void *arg, const pg_tar_entry_t *ent, bq_errbuf_t *e)
{
    tool_t *t = arg;
    char full[PATH_MAX * 2];
    snprintf(full, sizeof full, "%s/%s", t->root, ent->path);
    switch (ent->type) {
    case PG_TAR_DIR:
        t->dirs++;
        if (mkdir_ok(full, 0700, e))
            return BQ_E_IO;
        if (chmod(full, (ent->mode & 0777) | 0700) != 0)
            return io_fail(e, "chmod", full);
        return 0;
    case PG_TAR_SYMLINK: {
        t->links++;
        unsigned oid;
        char extra;
        if (t->oid == 0 && sscanf(ent->path, "pg_tblspc/%u%c", &oid, &extra) == 1) {
            struct stat st;
            if (lstat(full, &st) == 0 && S_ISLNK(st.st_mode))
                return 0; /* made by on_start, relocated */
        }
        if (symlink(ent->link, full) != 0)
            return io_fail(e, "create symlink", full);
        return 0;
    }
    case PG_TAR_HARDLINK: {
        char target[PATH_MAX * 2];
        snprintf(target, sizeof target, "%s/%s", t->root, ent->link);
        if (link(target, full) != 0)
            return io_fail(e, "link", full);
        return 0;
    }
    case PG_TAR_FILE:
        t->files++;
        t->fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, (ent->mode & 0777) | 0600);
        if (t->fd < 0)
            return io_fail(e, "create", full);
        snprintf(t->cur, sizeof t->cur, "%s", full);
        return 0;
    }
    return bq_fail(e, BQ_E_INVAL, "unknown entry type");
}

static int on_file_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    tool_t *t = arg;
    while (len) {
        ssize_t n = write(t->fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return io_fail(e, "write", t->cur);
        buf += n;
        len -= (size_t)n;
        t->bytes += (uint64_t)n;
    }
    return 0;
}

static int on_file_end(void *arg, bq_errbuf_t *e)
{
    tool_t *t = arg;
    if (t->fd >= 0) {
        int rc = close(t->fd);
        t->fd = -1;
        if (rc != 0)
            return io_fail(e, "close", t->cur);
    }
    return 0;
}

static int on_archive_end(void *arg, const pg_bb_tablespace_t *ts, bq_errbuf_t *e)
{
    (void)arg;
    (void)e;
    printf("archive_end oid=%u\n", ts->oid);
    return 0;
}

static int on_progress(void *arg, uint64_t done, int64_t total, bq_errbuf_t *e)
{
    tool_t *t = arg;
    if (done < t->last_progress)
        return bq_fail(e, BQ_E_PROTO, "progress went backwards");
    t->progress_calls++;
    t->last_progress = done;
    (void)total;
    return 0;
}

static int on_manifest(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    tool_t *t = arg;
    if (!t->manifest) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/backup_manifest", t->dest);
        t->manifest = fopen(p, "wbx");
        if (!t->manifest)
            return io_fail(e, "create", p);
    }
    if (fwrite(buf, 1, len, t->manifest) != len)
        return io_fail(e, "write", "backup_manifest");
    t->manifest_bytes += len;
    return 0;
}

static int on_end(void *arg, const pg_bb_end_t *end, bq_errbuf_t *e)
{
    tool_t *t = arg;
    char lsn[32];
    t->stop_lsn = end->stop_lsn;
    printf("end lsn=%s tli=%u archive_bytes=%" PRIu64 " manifest_bytes=%" PRIu64
           " checksum_failures=%" PRIu64 "\n",
           pg_lsn_format(end->stop_lsn, lsn, sizeof lsn), end->timeline, end->archive_bytes,
           end->manifest_bytes, end->checksum_failures);
    for (size_t i = 0; i < end->nfailures; i++)
        printf("failure file=%s block=%u\n", end->failures[i].file, end->failures[i].block);
    if (t->manifest && fclose(t->manifest) != 0) {
        t->manifest = NULL;
        return io_fail(e, "close", "backup_manifest");
    }
    t->manifest = NULL;
    return 0;
}

static int should_stop(void *arg)
{
    tool_t *t = arg;
    return t->cancel_after && t->bytes >= t->cancel_after;
}

/* WAL segments into DEST/pg_wal. */
static int seg_begin(void *arg, const char *name, uint32_t tli, uint64_t segno, bq_errbuf_t *e)
{
    (void)tli;
    (void)segno;
    tool_t *t = arg;
    snprintf(t->cur, sizeof t->cur, "%s/pg_wal/%s", t->dest, name);
    t->fd = open(t->cur, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (t->fd < 0)
        return io_fail(e, "create", t->cur);
    printf("wal segment=%s\n", name);
    return 0;
}

static int seg_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    tool_t *t = arg;
    t->wal_bytes += len;
    uint64_t before = t->bytes;
    int rc = on_file_data(arg, buf, len, e);
    t->bytes = before;
    return rc;
}

static int seg_end(void *arg, bq_errbuf_t *e)
{
    tool_t *t = arg;
    t->wal_segments++;
    return on_file_end(arg, e);
}

static int count_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)buf;
    (void)e;
    ((tool_t *)arg)->wal_bytes += len;
    return 0;
}

static int report(int rc, const bq_errbuf_t *e)
{
    printf("error: %s: %s\n", bq_err_name(rc), e->msg);
    return 1;
}

static int cmd_backup(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    const char *conninfo = argv[2];
    tool_t t = {.fd = -1};
    snprintf(t.dest, sizeof t.dest, "%s", argv[3]);
    pg_bb_opts_t o;
    pg_bb_opts_init(&o);
    o.label = "barque integration test";
    int wal = 1;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--no-wal") == 0)
            wal = 0;
        else if (strcmp(argv[i], "--spread") == 0)
            o.fast_checkpoint = 0;
        else if (strcmp(argv[i], "--no-tablespace-map") == 0)
            o.tablespace_map = 0;
        else if (strcmp(argv[i], "--cancel-after") == 0 && i + 1 < argc)
            t.cancel_after = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--stall") == 0 && i + 1 < argc)
            o.stall_timeout_s = atoi(argv[++i]);
        else
            return 2;
    }
    bq_errbuf_t e = {{0}};
    pg_wal_conn_t *w = NULL;
    int rc = 0;
    if (wal) {
        pg_wal_opts_t wo;
        pg_wal_opts_init(&wo);
        wo.stall_timeout_s = o.stall_timeout_s;
        rc = pg_wal_open(conninfo, &wo, &w, &e);
        if (rc)
            return report(rc, &e);
        char lsn[32];
        printf("slot name=%s restart_lsn=%s\n", pg_wal_slot(w),
               pg_lsn_format(pg_wal_slot_lsn(w), lsn, sizeof lsn));
    }
    pg_bb_callbacks_t cb = {
        .start = on_start,
        .archive_begin = on_archive_begin,
        .file_begin = on_file_begin,
        .file_data = on_file_data,
        .file_end = on_file_end,
        .archive_end = on_archive_end,
        .progress = on_progress,
        .manifest_data = on_manifest,
        .end = on_end,
        .should_stop = should_stop,
    };
    rc = pg_basebackup_run(conninfo, &o, &cb, &t, &e);
    if (t.fd >= 0)
        close(t.fd);
    t.fd = -1;
    if (t.manifest)
        fclose(t.manifest);
    if (rc) {
        pg_wal_close(&w);
        return report(rc, &e);
    }
    if (w) {
        pg_wal_callbacks_t wcb = {.segment_begin = seg_begin, .segment_data = seg_data,
                                  .segment_end = seg_end};
        rc = pg_wal_fetch_range(w, t.start_lsn, t.stop_lsn, t.tli, &wcb, &t, &e);
        if (t.fd >= 0)
            close(t.fd);
        pg_wal_close(&w);
        if (rc)
            return report(rc, &e);
    }
    printf("done files=%" PRIu64 " dirs=%" PRIu64 " symlinks=%" PRIu64 " bytes=%" PRIu64
           " progress_calls=%" PRIu64 " last_progress=%" PRIu64 " manifest_bytes=%" PRIu64
           " wal_segments=%" PRIu64 " wal_bytes=%" PRIu64 "\n",
           t.files, t.dirs, t.links, t.bytes, t.progress_calls, t.last_progress,
           t.manifest_bytes, t.wal_segments, t.wal_bytes);
    return 0;
}

static int cmd_wal_stall(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    pg_wal_opts_t wo;
    pg_wal_opts_init(&wo);
    wo.stall_timeout_s = atoi(argv[3]);
    bq_errbuf_t e = {{0}};
    pg_wal_conn_t *w = NULL;
    int rc = pg_wal_open(argv[2], &wo, &w, &e);
    if (rc)
        return report(rc, &e);
    tool_t t = {.fd = -1};
    snprintf(t.dest, sizeof t.dest, "/nonexistent");
    uint64_t from = pg_wal_slot_lsn(w);
    uint64_t to = from + 3ULL * pg_wal_seg_size(w);
    pg_wal_callbacks_t wcb = {.segment_data = count_data}; /* counts, writes nothing */
    t.fd = -1;
    rc = pg_wal_fetch_range(w, from, to, pg_wal_timeline(w), &wcb, &t, &e);
    /* after a failure mid-stream the connection is closed: a second call says so */
    bq_errbuf_t e2 = {{0}};
    int rc2 = pg_wal_fetch_range(w, from, to, pg_wal_timeline(w), &wcb, &t, &e2);
    printf("second call: %s: %s\n", bq_err_name(rc2), e2.msg);
    pg_wal_close(&w);
    printf("wal_bytes=%" PRIu64 "\n", t.wal_bytes);
    return rc ? report(rc, &e) : 0;
}

/* ---- stream: a synchronous standby's receiver (pg_wal_stream) into a directory ---- */

typedef struct {
    char dir[PATH_MAX];
    pg_wal_spool_t sp; /* the segment being received (pg/walfile.h, as the worker's) */
    uint32_t seg_size;
    long segments;
} wstream_t;

static volatile sig_atomic_t stream_stop;
static void on_term(int sig) { (void)sig; stream_stop = 1; }
static int ws_should_stop(void *arg) { (void)arg; return stream_stop; }

static int dir_sync(const char *dir, bq_errbuf_t *e)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        return io_fail(e, "fsync", dir);
    }
    close(fd);
    return 0;
}

static int ws_begin(void *arg, const char *name, uint32_t tli, uint64_t segno, uint64_t offset,
                    bq_errbuf_t *e)
{
    (void)tli;
    (void)segno;
    wstream_t *w = arg;
    int rc = pg_wal_spool_begin(&w->sp, name, offset, e);
    if (rc == 0)
        printf("segment %s from %" PRIu64 "\n", name, offset);
    return rc;
}

static int ws_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    return pg_wal_spool_write(&((wstream_t *)arg)->sp, buf, len, e);
}

static int ws_sync(void *arg, bq_errbuf_t *e)
{
    return pg_wal_spool_sync(&((wstream_t *)arg)->sp, e);
}

static int ws_end(void *arg, bq_errbuf_t *e)
{
    wstream_t *w = arg;
    int rc = pg_wal_spool_complete(&w->sp, e);
    if (rc == 0)
        printf("complete %s\n", w->sp.name);
    w->segments++;
    return rc;
}

static int ws_tl_end(void *arg, uint32_t tli, uint64_t end_lsn, bq_errbuf_t *e)
{
    (void)e;
    wstream_t *w = arg;
    char l[24];
    pg_wal_spool_close(&w->sp); /* stays NAME.partial */
    printf("timeline %u ended at %s in %s\n", (unsigned)tli, pg_lsn_format(end_lsn, l, sizeof l),
           w->sp.name);
    return 0;
}

static int ws_history(void *arg, uint32_t tli, const char *name, const uint8_t *content,
                      size_t len, bq_errbuf_t *e)
{
    wstream_t *w = arg;
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", w->dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, content, len) != (ssize_t)len || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        return io_fail(e, "write", path);
    }
    close(fd);
    printf("history %s for timeline %u\n", name, (unsigned)tli);
    return dir_sync(w->dir, e);
}

static void ws_position(void *arg, uint32_t tli, uint64_t written, uint64_t flushed)
{
    (void)arg;
    static uint64_t last = UINT64_MAX;
    if (flushed == last)
        return;
    last = flushed;
    char a[24], b[24];
    printf("position %u %s %s\n", (unsigned)tli, pg_lsn_format(written, a, sizeof a),
           pg_lsn_format(flushed, b, sizeof b));
}

/* stream CONNINFO DIR SLOT APPNAME [START_LSN]: until SIGTERM (exit 0) or an error. */
static int cmd_stream(int argc, char **argv)
{
    if (argc < 6 || argc > 7)
        return 2;
    bq_errbuf_t e = {{0}};
    wstream_t w = {.sp = {.fd = -1}};
    snprintf(w.dir, sizeof w.dir, "%s", argv[3]);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    pg_wal_opts_t o;
    pg_wal_opts_init(&o);
    o.slot_name = argv[4];
    o.permanent = 1;
    o.application_name = argv[5];
    o.status_interval_s = 1;
    o.stall_timeout_s = 60;
    pg_wal_conn_t *c = NULL;
    int rc = pg_wal_open(argv[2], &o, &c, &e);
    uint64_t start = 0;
    if (rc == 0) {
        w.seg_size = pg_wal_seg_size(c);
        pg_wal_spool_init(&w.sp, w.dir, w.seg_size);
        start = pg_wal_slot_lsn(c);
        if (argc == 7 && pg_lsn_parse(argv[6], &start) != 0)
            rc = bq_fail(&e, BQ_E_INVAL, "bad start LSN %s", argv[6]);
    }
    if (rc == 0) {
        char l[24];
        printf("slot %s %s restart %s\n", pg_wal_slot(c),
               pg_wal_slot_created(c) ? "created" : "existing", pg_lsn_format(start, l, sizeof l));
        static const pg_wal_stream_cb_t cb = {
            .segment_begin = ws_begin, .data = ws_data, .sync = ws_sync, .segment_end = ws_end,
            .timeline_end = ws_tl_end, .history = ws_history, .position = ws_position,
            .should_stop = ws_should_stop};
        rc = pg_wal_stream(c, start, 0, &cb, &w, &e);
    }
    pg_wal_close(&c);
    pg_wal_spool_close(&w.sp);
    if (rc == BQ_E_CANCELLED) {
        printf("stopped after %ld complete segments\n", w.segments);
        return 0;
    }
    printf("error: %s: %s\n", bq_err_name(rc), e.msg);
    return 1;
}

/* wal-check FILE SYSID: pg_wal_segment_check on a WAL file (its name is the file's). */
static int cmd_wal_check(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    uint8_t page[PG_WAL_LONG_HEADER];
    FILE *f = fopen(argv[2], "rb");
    size_t n = f ? fread(page, 1, sizeof page, f) : 0;
    if (f)
        fclose(f);
    const char *name = strrchr(argv[2], '/') ? strrchr(argv[2], '/') + 1 : argv[2];
    bq_errbuf_t e = {{0}};
    uint64_t sysid = strtoull(argv[3], NULL, 10);
    int rc = pg_wal_segment_check(name, page, n, sysid, 0, &e);
    if (rc) {
        printf("error: %s: %s\n", bq_err_name(rc), e.msg);
        return 1;
    }
    printf("ok %s\n", name);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = 2;
    if (argc >= 2 && strcmp(argv[1], "backup") == 0)
        rc = cmd_backup(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "wal-stall") == 0)
        rc = cmd_wal_stall(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "stream") == 0)
        rc = cmd_stream(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "wal-check") == 0)
        rc = cmd_wal_check(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: pg_backup_tool backup CONNINFO DEST [--no-wal] [--spread] "
                        "[--no-tablespace-map] [--cancel-after N] [--stall S]\n"
                        "       pg_backup_tool wal-stall CONNINFO STALL_S\n"
                        "       pg_backup_tool stream CONNINFO DIR SLOT APPNAME [START_LSN]\n"
                        "       pg_backup_tool wal-check FILE SYSID\n");
    return rc;
}
