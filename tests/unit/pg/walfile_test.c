/* WAL page headers and timeline history files (pg/walfile.h); a spool's archived segment
 * reused as its next .prealloc (pg_wal_spool_recycle), on real files in a mkdtemp directory. */
#include "walfile.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- the spool: an archived segment recycled as the next .prealloc ---- */

#define SEG (1u << 20) /* 1 MiB segments (initdb --wal-segsize=1) */
#define SEG_NAME "000000010000000000000003"

static char spool[64]; /* a fresh mkdtemp directory per test */

static int spool_setup(void **state)
{
    (void)state;
    snprintf(spool, sizeof spool, "/tmp/bq_walfile_test.XXXXXX");
    return mkdtemp(spool) ? 0 : -1;
}

static int spool_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", spool);
    return system(cmd) == 0 ? 0 : -1;
}

/* dir/name, in one of four rotating buffers (a few may be live at once). */
static const char *in_spool(const char *name)
{
    static char paths[4][PATH_MAX];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", spool, name);
    return p;
}

/* Byte i of a segment's content, never zero (a WAL segment as a server wrote it). */
static uint8_t seg_byte(size_t i) { return (uint8_t)(1 + (i * 7 + i / 4096) % 251); }

/* Write spool file name: len bytes, each seg_byte(i) (fill -1) or fill; its inode. */
static ino_t put_file(const char *name, size_t len, int fill)
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    for (size_t i = 0; i < len; i++)
        b[i] = fill >= 0 ? (uint8_t)fill : seg_byte(i);
    int fd = open(in_spool(name), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, len), (ssize_t)len);
    free(b);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    close(fd);
    return sb.st_ino;
}

/* Inode of spool file name; 0 when there is no such name (lstat: ENOENT). */
static ino_t ino_of(const char *name)
{
    struct stat sb;
    if (lstat(in_spool(name), &sb) != 0) {
        assert_int_equal(errno, ENOENT);
        return 0;
    }
    assert_true(sb.st_ino != 0);
    return sb.st_ino;
}

/* The spool's entries, sorted, comma-separated ("" when empty). */
static const char *listing(void)
{
    static char out[1024];
    struct dirent **ents;
    int n = scandir(spool, &ents, NULL, alphasort);
    assert_true(n >= 0);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *d = ents[i]->d_name;
        if (strcmp(d, ".") != 0 && strcmp(d, "..") != 0)
            snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", out[0] ? "," : "", d);
        free(ents[i]);
    }
    free(ents);
    return out;
}

/* Fail unless fd's file holds exactly len bytes, each seg_byte(i) (fill -1) or fill. */
static void check_fd_content(int fd, size_t len, int fill, const char *what)
{
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    if ((uint64_t)sb.st_size != len)
        fail_msg("%s: %lld bytes, not %zu", what, (long long)sb.st_size, len);
    uint8_t *b = malloc(len + 1);
    assert_non_null(b);
    size_t got = 0;
    ssize_t r;
    while ((r = pread(fd, b + got, len + 1 - got, (off_t)got)) > 0)
        got += (size_t)r;
    assert_int_equal(r, 0);
    assert_int_equal(got, len);
    for (size_t i = 0; i < len; i++) {
        uint8_t want = fill >= 0 ? (uint8_t)fill : seg_byte(i);
        if (b[i] != want) {
            unsigned bad = b[i];
            free(b);
            fail_msg("%s: byte %zu is 0x%02x, not 0x%02x", what, i, bad, want);
        }
    }
    free(b);
}

/* Fail unless spool file name holds len bytes of fill (-1: the segment content). */
static void check_content(const char *name, size_t len, int fill)
{
    int fd = open(in_spool(name), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        fail_msg("%s: %s", name, strerror(errno));
    check_fd_content(fd, len, fill, name);
    close(fd);
}

static void recycle_ok(const char *name)
{
    bq_errbuf_t e = {{0}};
    int rc = pg_wal_spool_recycle(spool, in_spool(name), SEG, &e);
    if (rc != 0)
        fail_msg("recycle %s: %s \"%s\"", name, bq_err_name(rc), e.msg);
}

/* No .prealloc: the complete segment becomes it, in place: same inode, zeros over it. */
static void test_recycle_reuses(void **state)
{
    (void)state;
    ino_t ino = put_file(SEG_NAME, SEG, -1);
    check_content(SEG_NAME, SEG, -1);
    recycle_ok(SEG_NAME);
    assert_int_equal(ino_of(SEG_NAME), 0);
    assert_int_equal(ino_of(".prealloc.tmp"), 0);
    assert_int_equal(ino_of(".prealloc"), ino);
    check_content(".prealloc", SEG, 0);
    assert_string_equal(listing(), ".prealloc");
}

/* A whole .prealloc is there: the segment is removed, .prealloc untouched (its content is a
 * marker here, so a segment zeroed and renamed over it would show). */
static void test_recycle_prealloc_there(void **state)
{
    (void)state;
    ino_t pre = put_file(".prealloc", SEG, 0xA5);
    ino_t ino = put_file(SEG_NAME, SEG, -1);
    assert_true(pre != ino);
    recycle_ok(SEG_NAME);
    assert_int_equal(ino_of(SEG_NAME), 0);
    assert_int_equal(ino_of(".prealloc"), pre);
    check_content(".prealloc", SEG, 0xA5);
    assert_string_equal(listing(), ".prealloc");
}

/* A .prealloc of another size (a smaller cluster's, a torn copy) is no .prealloc: the segment
 * replaces it, as when there is none. */
static void test_recycle_prealloc_wrong_size(void **state)
{
    (void)state;
    static const size_t sizes[] = {SEG / 4, SEG - 1, SEG + 1, 0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ino_t pre = put_file(".prealloc", sizes[i], 0xA5);
        ino_t ino = put_file(SEG_NAME, SEG, -1);
        recycle_ok(SEG_NAME);
        if (ino_of(".prealloc") != ino)
            fail_msg(".prealloc of %zu bytes: not replaced by the segment (inode %llu, old "
                     "%llu, segment %llu)", sizes[i], (unsigned long long)ino_of(".prealloc"),
                     (unsigned long long)pre, (unsigned long long)ino);
        assert_int_equal(ino_of(SEG_NAME), 0);
        check_content(".prealloc", SEG, 0);
        assert_string_equal(listing(), ".prealloc");
        assert_int_equal(unlink(in_spool(".prealloc")), 0);
    }
}

/* A reader holds LOCK_SH (peer.c's spool_partial_read): the name goes, the bytes stay. */
static void test_recycle_locked(void **state)
{
    (void)state;
    ino_t ino = put_file(SEG_NAME, SEG, -1);
    int rfd = open(in_spool(SEG_NAME), O_RDONLY | O_CLOEXEC);
    assert_true(rfd >= 0);
    assert_int_equal(flock(rfd, LOCK_SH), 0);
    recycle_ok(SEG_NAME);
    assert_int_equal(ino_of(SEG_NAME), 0);
    assert_int_equal(ino_of(".prealloc"), 0);
    assert_int_equal(ino_of(".prealloc.tmp"), 0);
    assert_string_equal(listing(), "");
    struct stat sb;
    assert_int_equal(fstat(rfd, &sb), 0);
    assert_int_equal(sb.st_ino, ino);
    assert_int_equal(sb.st_nlink, 0); /* removed, not renamed somewhere */
    check_fd_content(rfd, SEG, -1, "the reader's segment");
    close(rfd);
    /* a .prealloc of the wrong size is not replaced by a locked segment either */
    ino_t pre = put_file(".prealloc", SEG / 2, 0xA5);
    put_file(SEG_NAME, SEG, -1);
    rfd = open(in_spool(SEG_NAME), O_RDONLY | O_CLOEXEC);
    assert_true(rfd >= 0);
    assert_int_equal(flock(rfd, LOCK_SH), 0);
    recycle_ok(SEG_NAME);
    assert_int_equal(ino_of(SEG_NAME), 0);
    assert_int_equal(ino_of(".prealloc"), pre);
    check_content(".prealloc", SEG / 2, 0xA5);
    check_fd_content(rfd, SEG, -1, "the reader's segment");
    assert_string_equal(listing(), ".prealloc");
    close(rfd);
}

/* Not a whole segment (a .partial cut short, a history file): removed, never made .prealloc;
 * an unlocked reader's fd still sees the bytes (not zeroed before the unlink). */
static void test_recycle_wrong_size(void **state)
{
    (void)state;
    static const size_t sizes[] = {SEG / 2, SEG - 1, SEG + 1, 0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        put_file(SEG_NAME, sizes[i], -1);
        int rfd = open(in_spool(SEG_NAME), O_RDONLY | O_CLOEXEC);
        assert_true(rfd >= 0);
        recycle_ok(SEG_NAME);
        if (ino_of(SEG_NAME) != 0 || ino_of(".prealloc") != 0)
            fail_msg("a file of %zu bytes: spool holds \"%s\"", sizes[i], listing());
        assert_string_equal(listing(), "");
        check_fd_content(rfd, sizes[i], -1, "the removed file");
        close(rfd);
    }
}

/* Nothing there (archived and removed before): 0, and nothing is made. */
static void test_recycle_missing(void **state)
{
    (void)state;
    bq_errbuf_t e = {{0}};
    assert_int_equal(pg_wal_spool_recycle(spool, in_spool(SEG_NAME), SEG, &e), 0);
    assert_string_equal(listing(), "");
    ino_t pre = put_file(".prealloc", SEG, 0xA5);
    assert_int_equal(pg_wal_spool_recycle(spool, in_spool(SEG_NAME), SEG, &e), 0);
    assert_string_equal(listing(), ".prealloc");
    assert_int_equal(ino_of(".prealloc"), pre);
    check_content(".prealloc", SEG, 0xA5);
}

/* A .partial cut mid-way by a killed writer (not a multiple of the 64 KiB zero buffer) is
 * zero-filled to exactly the segment size, its received bytes kept. */
static void test_begin_odd_partial(void **state)
{
    (void)state;
    put_file("000000010000000000000007.partial", 4096 + 3, 0xA5);
    pg_wal_spool_t s;
    bq_errbuf_t e = {{0}};
    pg_wal_spool_init(&s, spool, SEG);
    int rc = pg_wal_spool_begin(&s, "000000010000000000000007", 4099, &e);
    if (rc != 0)
        fail_msg("begin: %s \"%s\"", bq_err_name(rc), e.msg);
    pg_wal_spool_close(&s);
    struct stat sb;
    assert_int_equal(stat(in_spool("000000010000000000000007.partial"), &sb), 0);
    assert_int_equal(sb.st_size, SEG);
    int fd = open(in_spool("000000010000000000000007.partial"), O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    uint8_t b[2];
    assert_int_equal(pread(fd, b, 2, 4098), 2);
    close(fd);
    assert_int_equal(b[0], 0xA5); /* the last byte received */
    assert_int_equal(b[1], 0);    /* then zeros */
}

/* The recycled file serves the next segment: pg_wal_spool_begin renames it into place and
 * writes no zeros (its mtime, set back here, stays), and the data lands in it. */
static void test_recycle_then_begin(void **state)
{
    (void)state;
    ino_t ino = put_file(SEG_NAME, SEG, -1);
    recycle_ok(SEG_NAME);
    assert_int_equal(ino_of(".prealloc"), ino);
    const struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, in_spool(".prealloc"), old, 0), 0);
    pg_wal_spool_t s;
    bq_errbuf_t e = {{0}};
    pg_wal_spool_init(&s, spool, SEG);
    int rc = pg_wal_spool_begin(&s, "000000010000000000000004", 0, &e);
    if (rc != 0)
        fail_msg("begin: %s \"%s\"", bq_err_name(rc), e.msg);
    assert_string_equal(listing(), "000000010000000000000004.partial");
    assert_int_equal(ino_of("000000010000000000000004.partial"), ino);
    struct stat sb;
    assert_int_equal(stat(in_spool("000000010000000000000004.partial"), &sb), 0);
    assert_int_equal(sb.st_mtim.tv_sec, 1000000000);
    check_content("000000010000000000000004.partial", SEG, 0);
    /* the stream's first bytes go at offset 0 of that file */
    assert_int_equal(pg_wal_spool_write(&s, "\x10\xD1", 2, &e), 0);
    pg_wal_spool_close(&s);
    int fd = open(in_spool("000000010000000000000004.partial"), O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    uint8_t b[3];
    assert_int_equal(pread(fd, b, 3, 0), 3);
    close(fd);
    assert_int_equal(b[0], 0x10);
    assert_int_equal(b[1], 0xD1);
    assert_int_equal(b[2], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_header),
        cmocka_unit_test(test_history),
        cmocka_unit_test_setup_teardown(test_recycle_reuses, spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_recycle_prealloc_there, spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_recycle_prealloc_wrong_size, spool_setup,
                                        spool_teardown),
        cmocka_unit_test_setup_teardown(test_recycle_locked, spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_recycle_wrong_size, spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_recycle_missing, spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_recycle_then_begin, spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_begin_odd_partial, spool_setup, spool_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
