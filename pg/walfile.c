#include "walfile.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

static int pow2_in(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

int pg_wal_page_parse(const void *buf, size_t len, pg_wal_page_t *out, bq_errbuf_t *e)
{
    const uint8_t *p = buf;
    memset(out, 0, sizeof *out);
    if (!p || len < PG_WAL_SHORT_HEADER)
        return bq_fail(e, BQ_E_INVAL, "WAL page header: %zu bytes, shorter than %d", len,
                       PG_WAL_SHORT_HEADER);
    out->magic = le16(p);
    out->info = le16(p + 2);
    out->tli = le32(p + 4);
    out->pageaddr = le64(p + 8);
    out->rem_len = le32(p + 16);
    if (out->magic != PG_WAL_PAGE_MAGIC)
        return bq_fail(e, BQ_E_INVAL, "WAL page header: magic 0x%04X, not PostgreSQL 15's 0x%04X",
                       (unsigned)out->magic, PG_WAL_PAGE_MAGIC);
    if (out->info & ~PG_WAL_XLP_ALL_FLAGS)
        return bq_fail(e, BQ_E_INVAL, "WAL page header: unknown info bits 0x%04X",
                       (unsigned)out->info);
    if (out->tli == 0)
        return bq_fail(e, BQ_E_INVAL, "WAL page header: timeline 0");
    if (!(out->info & PG_WAL_XLP_LONG_HEADER))
        return 0;
    if (len < PG_WAL_LONG_HEADER)
        return bq_fail(e, BQ_E_INVAL, "WAL page header: a long header in %zu bytes, shorter "
                       "than %d", len, PG_WAL_LONG_HEADER);
    out->long_header = 1;
    out->sysid = le64(p + 24);
    out->seg_size = le32(p + 32);
    out->page_size = le32(p + 36);
    if (!pow2_in(out->seg_size, 1u << 20, 1u << 30))
        return bq_fail(e, BQ_E_INVAL, "WAL page header: segment size %" PRIu32 " is not a power "
                       "of two from 1 MiB to 1 GiB", out->seg_size);
    if (!pow2_in(out->page_size, 1024, 65536))
        return bq_fail(e, BQ_E_INVAL, "WAL page header: page size %" PRIu32 " is not a power of "
                       "two from 1 KiB to 64 KiB", out->page_size);
    if (out->pageaddr % out->seg_size != 0)
        return bq_fail(e, BQ_E_INVAL, "WAL page header: a long header at %" PRIX64 ", not at a "
                       "segment start", out->pageaddr);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 8 uppercase hex digits at s. */
static int hex8(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        int d = hexval(s[i]);
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

int pg_wal_segment_check(const char *name, const void *buf, size_t len, uint64_t sysid,
                         uint32_t seg_size, bq_errbuf_t *e)
{
    size_t nl = name ? strlen(name) : 0;
    uint32_t tli = 0, hi = 0, lo = 0;
    if (!(nl == 24 || (nl == 32 && strcmp(name + 24, ".partial") == 0)) || hex8(name, &tli) ||
        hex8(name + 8, &hi) || hex8(name + 16, &lo) || tli == 0)
        return bq_fail(e, BQ_E_INVAL, "\"%.40s\" is not a WAL segment name", name ? name : "");
    bq_errbuf_t why;
    pg_wal_page_t pg;
    if (pg_wal_page_parse(buf, len, &pg, &why) != 0)
        return bq_fail(e, BQ_E_INVAL, "WAL file %s: %s", name, why.msg);
    if (!pg.long_header)
        return bq_fail(e, BQ_E_INVAL, "WAL file %s: its first page has no long header", name);
    if (seg_size && pg.seg_size != seg_size)
        return bq_fail(e, BQ_E_INVAL, "WAL file %s has segments of %" PRIu32 " bytes, not %" PRIu32,
                       name, pg.seg_size, seg_size);
    if (sysid && pg.sysid != sysid)
        return bq_fail(e, BQ_E_INVAL, "WAL file %s belongs to system %" PRIu64 ", not %" PRIu64,
                       name, pg.sysid, sysid);
    uint64_t per_id = 0x100000000ull / pg.seg_size; /* segments per "xlogid" */
    if (lo >= per_id)
        return bq_fail(e, BQ_E_INVAL, "WAL file %s: segment number %08" PRIX32 " out of range for "
                       "%" PRIu32 "-byte segments", name, lo, pg.seg_size);
    uint64_t segno = (uint64_t)hi * per_id + lo;
    if (pg.tli != tli || pg.pageaddr != segno * pg.seg_size)
        return bq_fail(e, BQ_E_INVAL, "WAL file %s holds timeline %" PRIu32 " at %" PRIX64
                       "/%08" PRIX64 ", not its own place", name, pg.tli, pg.pageaddr >> 32,
                       pg.pageaddr & 0xffffffffu);
    return 0;
}

/* "X/X" hex (1-8 digits each side, either case) in [p, end); *used bytes. */
static int lsn_at(const char *p, const char *end, uint64_t *lsn, size_t *used)
{
    uint64_t part[2] = {0, 0};
    const char *s = p;
    for (int k = 0; k < 2; k++) {
        int nd = 0;
        for (; s < end && nd < 9; s++, nd++) {
            int d = hexval(*s >= 'a' && *s <= 'f' ? (char)(*s - 32) : *s);
            if (d < 0)
                break;
            part[k] = part[k] << 4 | (uint64_t)d;
        }
        if (nd == 0 || nd > 8)
            return -1;
        if (k == 0) {
            if (s >= end || *s != '/')
                return -1;
            s++;
        }
    }
    *lsn = part[0] << 32 | part[1];
    *used = (size_t)(s - p);
    return 0;
}

int pg_tli_history_parse(const char *text, size_t len, uint32_t file_tli, pg_tli_entry_t *out,
                         size_t cap, size_t *n, bq_errbuf_t *e)
{
    *n = 0;
    char fname[24];
    snprintf(fname, sizeof fname, "%08" PRIX32 ".history", file_tli);
    if (file_tli < 2)
        return bq_fail(e, BQ_E_INVAL, "timeline history %s: timeline %" PRIu32 " has none",
                       fname, file_tli);
    if (len > 0 && !text)
        return bq_fail(e, BQ_E_INVAL, "timeline history %s: no text", fname);
    if (len > 0 && memchr(text, '\0', len))
        return bq_fail(e, BQ_E_INVAL, "timeline history %s: a NUL byte", fname);
    const char *p = text, *end = text + len;
    uint32_t last_tli = 0;
    uint64_t last_end = 0;
    for (size_t line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *s = p;
        p = nl ? nl + 1 : end;
        while (s < le && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        if (s == le || *s == '#')
            continue;
        uint64_t tli = 0;
        int nd = 0;
        for (; s < le && *s >= '0' && *s <= '9' && nd < 11; s++, nd++)
            tli = tli * 10 + (uint64_t)(*s - '0');
        if (nd == 0 || nd > 10 || tli > UINT32_MAX || s >= le || (*s != '\t' && *s != ' '))
            return bq_fail(e, BQ_E_INVAL, "timeline history %s line %zu: no timeline number",
                           fname, line);
        while (s < le && (*s == '\t' || *s == ' '))
            s++;
        uint64_t lsn = 0;
        size_t used = 0;
        if (lsn_at(s, le, &lsn, &used) != 0)
            return bq_fail(e, BQ_E_INVAL, "timeline history %s line %zu: no switch point (X/X)",
                           fname, line);
        s += used;
        if (s < le && *s != '\t' && *s != ' ' && *s != '\r')
            return bq_fail(e, BQ_E_INVAL, "timeline history %s line %zu: text after the switch "
                           "point", fname, line);
        if (tli == 0 || tli >= file_tli || tli <= last_tli)
            return bq_fail(e, BQ_E_INVAL, "timeline history %s line %zu: timeline %" PRIu64 " is "
                           "not between %" PRIu32 " and %" PRIu32, fname, line, tli, last_tli,
                           file_tli);
        if (lsn < last_end)
            return bq_fail(e, BQ_E_INVAL, "timeline history %s line %zu: switch point goes back",
                           fname, line);
        if (*n == cap)
            return bq_fail(e, BQ_E_TOOBIG, "timeline history %s: more than %zu entries", fname,
                           cap);
        out[*n].tli = (uint32_t)tli;
        out[*n].end = lsn;
        (*n)++;
        last_tli = (uint32_t)tli;
        last_end = lsn;
    }
    return 0;
}

/* ---- the spool ---- */

static int spool_fail(bq_errbuf_t *e, const char *what, const char *path)
{
    return bq_fail(e, BQ_E_IO, "could not %s %s: %s", what, path, strerror(errno));
}

void pg_wal_spool_init(pg_wal_spool_t *s, const char *dir, uint32_t seg_size)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->fd = -1;
    s->seg_size = seg_size;
}

#define SPOOL_PREALLOC ".prealloc"

int pg_wal_spool_begin(pg_wal_spool_t *s, const char *name, uint64_t offset, bq_errbuf_t *e)
{
    char path[PATH_MAX];
    pg_wal_spool_close(s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(path, sizeof path, "%s/%s.partial", s->dir, name);
    s->fd = open(path, O_WRONLY | O_CLOEXEC);
    if (s->fd < 0 && errno == ENOENT) {
        /* a zero-filled file made ahead (pg_wal_spool_prealloc) saves writing 16 MiB of zeros
         * and an fsync while the server waits */
        char pre[PATH_MAX];
        snprintf(pre, sizeof pre, "%s/" SPOOL_PREALLOC, s->dir);
        if (rename(pre, path) == 0) {
            int rc = bq_fsync_dir_of(path, e);
            if (rc)
                return rc;
        }
        s->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    }
    if (s->fd < 0)
        return spool_fail(e, "open", path);
    struct stat sb;
    if (fstat(s->fd, &sb) != 0)
        return spool_fail(e, "stat", path);
    if ((uint64_t)sb.st_size < s->seg_size) {
        static const uint8_t zero[65536];
        /* the last piece ends at seg_size, whatever size a killed writer left */
        for (uint64_t o = (uint64_t)sb.st_size; o < s->seg_size;) {
            size_t n = s->seg_size - o < sizeof zero ? (size_t)(s->seg_size - o) : sizeof zero;
            if (pwrite(s->fd, zero, n, (off_t)o) != (ssize_t)n)
                return spool_fail(e, "write", path);
            o += n;
        }
        if (fsync(s->fd) != 0)
            return spool_fail(e, "fsync", path);
        int rc = bq_fsync_dir_of(path, e);
        if (rc)
            return rc;
    }
    s->off = offset;
    return 0;
}

/* A temp name of its own for each caller: the archiver thread and a timeline's end on the
 * receiver's thread may make or recycle the .prealloc at once (the last rename wins; both
 * files are whole zeros). */
static void prealloc_tmp(const char *pre, char *tmp, size_t cap)
{
    static atomic_uint seq;
    snprintf(tmp, cap, "%s.tmp.%ld.%u", pre, (long)getpid(), atomic_fetch_add(&seq, 1));
}

/* Zeros over the first seg_size bytes of fd (the file tmp), synced, closed, renamed to pre
 * with its directory synced; tmp removed on failure. data_only: the file's size is already
 * seg_size (fdatasync is enough). */
static int zero_into_place(int fd, const char *tmp, const char *pre, uint32_t seg_size,
                           int data_only, bq_errbuf_t *e)
{
    static const uint8_t zero[65536];
    int rc = 0;
    for (uint64_t o = 0; rc == 0 && o < seg_size; o += sizeof zero)
        if (pwrite(fd, zero, sizeof zero, (off_t)o) != (ssize_t)sizeof zero)
            rc = spool_fail(e, "write", tmp);
    if (rc == 0 && (data_only ? fdatasync(fd) : fsync(fd)) != 0)
        rc = spool_fail(e, data_only ? "fdatasync" : "fsync", tmp);
    close(fd);
    if (rc == 0 && rename(tmp, pre) != 0)
        rc = spool_fail(e, "rename", tmp);
    if (rc == 0)
        rc = bq_fsync_dir_of(pre, e);
    if (rc)
        unlink(tmp);
    return rc;
}

int pg_wal_spool_prealloc(const char *dir, uint32_t seg_size, bq_errbuf_t *e)
{
    char pre[PATH_MAX], tmp[PATH_MAX + 32];
    snprintf(pre, sizeof pre, "%s/" SPOOL_PREALLOC, dir);
    struct stat sb;
    if (stat(pre, &sb) == 0 && (uint64_t)sb.st_size == seg_size)
        return 0;
    prealloc_tmp(pre, tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return spool_fail(e, "open", tmp);
    return zero_into_place(fd, tmp, pre, seg_size, 0, e);
}

int pg_wal_spool_recycle(const char *dir, const char *path, uint32_t seg_size, bq_errbuf_t *e)
{
    char pre[PATH_MAX], tmp[PATH_MAX + 32];
    snprintf(pre, sizeof pre, "%s/" SPOOL_PREALLOC, dir);
    prealloc_tmp(pre, tmp, sizeof tmp);
    struct stat sb;
    int fd = -1;
    if (stat(pre, &sb) != 0 || (uint64_t)sb.st_size != seg_size)
        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &sb) != 0 ||
                    !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != seg_size)) {
        close(fd); /* being read, or not a whole segment: not this one */
        fd = -1;
    }
    if (fd < 0) {
        if (unlink(path) != 0 && errno != ENOENT)
            return spool_fail(e, "remove", path);
        return 0;
    }
    /* out of readers' sight first (they check the name after their lock), then zeroed */
    if (rename(path, tmp) != 0) {
        close(fd);
        return spool_fail(e, "rename", path);
    }
    return zero_into_place(fd, tmp, pre, seg_size, 1, e);
}

int pg_wal_spool_write(pg_wal_spool_t *s, const void *buf, size_t len, bq_errbuf_t *e)
{
    if (s->fd < 0)
        return bq_fail(e, BQ_E_STATE, "no WAL segment is open in %s", s->dir);
    if (s->off + len > s->seg_size)
        return bq_fail(e, BQ_E_INVAL, "WAL segment %s: %zu bytes at %" PRIu64 " pass its end",
                       s->name, len, s->off);
    if (pwrite(s->fd, buf, len, (off_t)s->off) != (ssize_t)len)
        return spool_fail(e, "write", s->name);
    s->off += len;
    return 0;
}

int pg_wal_spool_sync(pg_wal_spool_t *s, bq_errbuf_t *e)
{
    if (s->fd >= 0 && fdatasync(s->fd) != 0)
        return spool_fail(e, "fdatasync", s->name);
    return 0;
}

int pg_wal_spool_complete(pg_wal_spool_t *s, bq_errbuf_t *e)
{
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof from, "%s/%s.partial", s->dir, s->name);
    snprintf(to, sizeof to, "%s/%s", s->dir, s->name);
    pg_wal_spool_close(s);
    if (rename(from, to) != 0)
        return spool_fail(e, "rename", from);
    return bq_fsync_dir_of(to, e);
}

void pg_wal_spool_close(pg_wal_spool_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}
