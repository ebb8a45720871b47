/* pg_tar: round trips of archives GNU tar writes (ustar, gnu, pax), fed whole, one byte at a
 * time and in random splits; PostgreSQL-style headers (octal with a trailing space, '/' after
 * directory and symlink names, base-256 sizes above 8 GiB); and a table of refusals, each with
 * the message it must produce. */
#include "tar.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- collecting what the parser reports ---- */

typedef struct {
    char *log;            /* one line per entry: path|type|mode|size|mtime|link|hash */
    size_t len, cap;
    char cur[PG_TAR_PATH_MAX * 2 + 128];
    uint64_t hash, got, want;
    int in_entry, ended;
    int fail_at_begin;    /* callback refusal test: fail on the n-th begin (1-based) */
    int nbegin;
} collect_t;

static void append(collect_t *c, const char *s)
{
    size_t n = strlen(s);
    if (c->len + n + 1 > c->cap) {
        c->cap = (c->len + n + 1) * 2;
        c->log = realloc(c->log, c->cap);
        assert_non_null(c->log);
    }
    memcpy(c->log + c->len, s, n + 1);
    c->len += n;
}

static int on_begin(void *arg, const pg_tar_entry_t *ent, bq_errbuf_t *e)
{
    collect_t *c = arg;
    assert_false(c->in_entry);
    assert_false(c->ended);
    c->nbegin++;
    if (c->fail_at_begin && c->nbegin == c->fail_at_begin)
        return bq_fail(e, BQ_E_IO, "disk full while writing %s", ent->path);
    assert_null(pg_tar_path_problem(ent->path, strlen(ent->path)));
    snprintf(c->cur, sizeof c->cur, "%s|%s|%04o|%llu|%lld|%s|", ent->path,
             pg_tar_type_name(ent->type), (unsigned)ent->mode, (unsigned long long)ent->size,
             (long long)ent->mtime, ent->link);
    c->hash = 1469598103934665603ULL;
    c->got = 0;
    c->want = ent->size;
    c->in_entry = 1;
    return 0;
}

static int on_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    collect_t *c = arg;
    assert_true(c->in_entry);
    assert_true(len > 0);
    for (size_t i = 0; i < len; i++)
        c->hash = (c->hash ^ buf[i]) * 1099511628211ULL;
    c->got += len;
    assert_true(c->got <= c->want);
    return 0;
}

static int on_end(void *arg, bq_errbuf_t *e)
{
    (void)e;
    collect_t *c = arg;
    assert_true(c->in_entry);
    assert_true(c->got == c->want);
    char h[32];
    snprintf(h, sizeof h, "%016llx\n", (unsigned long long)c->hash);
    append(c, c->cur);
    append(c, h);
    c->in_entry = 0;
    return 0;
}

static int on_archive_end(void *arg, bq_errbuf_t *e)
{
    (void)e;
    collect_t *c = arg;
    assert_false(c->in_entry);
    c->ended = 1;
    return 0;
}

static const pg_tar_callbacks_t callbacks = {on_begin, on_data, on_end, on_archive_end};

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

enum { WHOLE, ONE_BYTE, RANDOM };

/* Parse buf split per mode; returns the first non-zero code (feed or finish). */
static int parse(const uint8_t *buf, size_t len, int mode, collect_t *c, bq_errbuf_t *e)
{
    pg_tar_t *t = NULL;
    assert_int_equal(pg_tar_new("test.tar", &callbacks, c, &t, e), 0);
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < len) {
        size_t n = len - off;
        if (mode == ONE_BYTE)
            n = 1;
        else if (mode == RANDOM)
            n = 1 + (size_t)(rng() % (rng() % 4 == 0 ? 3000 : 700));
        if (n > len - off)
            n = len - off;
        /* a copy of exactly n bytes, so ASan sees any read past the piece */
        uint8_t *piece = malloc(n);
        assert_non_null(piece);
        memcpy(piece, buf + off, n);
        rc = pg_tar_feed(t, piece, n, e);
        free(piece);
        off += n;
    }
    if (rc == 0)
        rc = pg_tar_finish(t, e);
    if (rc != 0) {
        /* errors are sticky */
        bq_errbuf_t e2 = {{0}};
        assert_int_equal(pg_tar_feed(t, "x", 1, &e2), rc);
        assert_string_equal(e2.msg, e->msg);
        assert_int_equal(pg_tar_finish(t, &e2), rc);
    }
    pg_tar_destroy(&t);
    assert_null(t);
    return rc;
}

static void collect_free(collect_t *c)
{
    free(c->log);
    memset(c, 0, sizeof *c);
}

/* ---- archives made by GNU tar ---- */

static char tmpdir[64];

static void write_file(const char *rel, const uint8_t *data, size_t len, mode_t mode)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/src/%s", tmpdir, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    chmod(path, mode);
}

static void make_dir(const char *rel, mode_t mode)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/src/%s", tmpdir, rel);
    assert_int_equal(mkdir(path, mode), 0);
    chmod(path, mode);
}

#define DEEP1 "d1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define DEEP2 "d2yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
#define DEEPF "fzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"

static char longname[201];
static char longtarget[151];
static uint8_t pattern[1000], block[512];

static int setup_tree(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bq_tar_test.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char path[1024];
    snprintf(path, sizeof path, "%s/src", tmpdir);
    assert_int_equal(mkdir(path, 0755), 0);
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 7 % 251);
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (uint8_t)(255 - i % 256);
    memset(longname, 'n', 200);
    memcpy(longname, "long_", 5);
    memset(longtarget, 't', 150);
    longtarget[0] = '/';

    write_file("a.txt", (const uint8_t *)"hello, barque\n", 14, 0644);
    make_dir("dir", 0755);
    write_file("dir/b.bin", pattern, sizeof pattern, 0600);
    make_dir("dir/sub", 0700);
    write_file("dir/sub/exact.bin", block, sizeof block, 0640);
    write_file("empty", NULL, 0, 0444);
    make_dir(DEEP1, 0755);
    make_dir(DEEP1 "/" DEEP2, 0755);
    write_file(DEEP1 "/" DEEP2 "/" DEEPF, (const uint8_t *)"deep\n", 5, 0644);
    write_file(longname, pattern, 333, 0644);
    snprintf(path, sizeof path, "%s/src/a.txt", tmpdir);
    char p2[1024];
    snprintf(p2, sizeof p2, "%s/src/hard", tmpdir);
    assert_int_equal(link(path, p2), 0);
    snprintf(p2, sizeof p2, "%s/src/link", tmpdir);
    assert_int_equal(symlink("a.txt", p2), 0);
    snprintf(p2, sizeof p2, "%s/src/longlink", tmpdir);
    assert_int_equal(symlink(longtarget, p2), 0);
    return 0;
}

static int teardown_tree(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run GNU tar (fixed mtime, owner and order) over names; the archive into *out. */
static size_t make_tar(const char *format, const char *names, uint8_t **out)
{
    char cmd[2048], file[128];
    snprintf(file, sizeof file, "%s/out.tar", tmpdir);
    snprintf(cmd, sizeof cmd,
             "tar --format=%s --sort=name --owner=0 --group=0 --numeric-owner "
             "--mtime=@1700000000 -C '%s/src' -cf '%s' %s",
             format, tmpdir, file, names);
    if (system(cmd) != 0)
        fail_msg("%s failed", cmd);
    FILE *f = fopen(file, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    assert_non_null(*out);
    assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return (size_t)n;
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void expect_line(collect_t *c, const char *path, const char *type, unsigned mode,
                        const uint8_t *data, size_t size, const char *link)
{
    char line[PG_TAR_PATH_MAX + 512];
    snprintf(line, sizeof line, "%s|%s|%04o|%zu|1700000000|%s|%016llx\n", path, type, mode,
             size, link, (unsigned long long)fnv(data, size));
    append(c, line);
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of log, sorted, joined again (archives of "-C dir ." come in readdir order). */
static char *sorted_lines(const char *log)
{
    char *copy = strdup(log), *lines[64], *save = NULL;
    size_t n = 0;
    assert_non_null(copy);
    for (char *l = strtok_r(copy, "\n", &save); l && n < 64; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    qsort(lines, n, sizeof lines[0], cmp_line);
    char *out = calloc(1, strlen(log) + 2);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        strcat(out, lines[i]);
        strcat(out, "\n");
    }
    free(copy);
    return out;
}

static void check_format(const char *format, int with_long, int whole_dir)
{
    char names[1024];
    snprintf(names, sizeof names, "a.txt dir empty hard link %s%s%s", DEEP1,
             with_long ? " longlink " : "", with_long ? longname : "");
    if (whole_dir) /* "./" first, then "./a.txt"...; hard links to "./a.txt" */
        snprintf(names, sizeof names, ".");
    uint8_t *tar;
    size_t len = make_tar(format, names, &tar);

    collect_t want = {0};
    expect_line(&want, "a.txt", "file", 0644, (const uint8_t *)"hello, barque\n", 14, "");
    expect_line(&want, "dir", "directory", 0755, NULL, 0, "");
    expect_line(&want, "dir/b.bin", "file", 0600, pattern, sizeof pattern, "");
    expect_line(&want, "dir/sub", "directory", 0700, NULL, 0, "");
    expect_line(&want, "dir/sub/exact.bin", "file", 0640, block, sizeof block, "");
    expect_line(&want, "empty", "file", 0444, NULL, 0, "");
    expect_line(&want, "hard", "hardlink", 0644, NULL, 0, "a.txt");
    expect_line(&want, "link", "symlink", 0777, NULL, 0, "a.txt");
    expect_line(&want, DEEP1, "directory", 0755, NULL, 0, "");
    expect_line(&want, DEEP1 "/" DEEP2, "directory", 0755, NULL, 0, "");
    expect_line(&want, DEEP1 "/" DEEP2 "/" DEEPF, "file", 0644, (const uint8_t *)"deep\n", 5,
                "");
    if (with_long) {
        expect_line(&want, "longlink", "symlink", 0777, NULL, 0, longtarget);
        expect_line(&want, longname, "file", 0644, pattern, 333, "");
    }

    for (int mode = WHOLE; mode <= RANDOM; mode++) {
        for (int round = 0; round < (mode == RANDOM ? 20 : 1); round++) {
            collect_t got = {0};
            bq_errbuf_t e = {{0}};
            int rc = parse(tar, len, mode, &got, &e);
            if (rc)
                fail_msg("format %s, mode %d: %s", format, mode, e.msg);
            assert_true(got.ended);
            if (whole_dir) {
                char *a = sorted_lines(got.log), *b = sorted_lines(want.log);
                assert_string_equal(a, b);
                free(a);
                free(b);
            } else {
                assert_string_equal(got.log, want.log);
            }
            collect_free(&got);
        }
    }
    collect_free(&want);
    free(tar);
}

static void test_gnu_tar_ustar(void **state)
{
    (void)state;
    check_format("ustar", 0, 0); /* the deep path needs the prefix field */
}

static void test_gnu_tar_gnu(void **state)
{
    (void)state;
    check_format("gnu", 1, 0); /* 'L' and 'K' entries */
}

static void test_gnu_tar_pax(void **state)
{
    (void)state;
    check_format("pax", 1, 0); /* 'x' headers with path, linkpath, mtime, atime, ctime */
}

static void test_gnu_tar_whole_dir(void **state)
{
    (void)state;
    check_format("gnu", 1, 1); /* tar -C dir -cf - . */
}

/* ---- hand-made headers ---- */

static void set_octal(uint8_t *f, size_t len, uint64_t v, int pg_style)
{
    /* PostgreSQL: len-1 digits and a space; GNU tar: len-1 digits and a NUL */
    for (size_t i = len - 1; i-- > 0;) {
        f[i] = (uint8_t)('0' + (v & 7));
        v >>= 3;
    }
    f[len - 1] = pg_style ? ' ' : '\0';
}

static void set_checksum(uint8_t *h)
{
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

/* A valid ustar header in PostgreSQL's style. */
static void header(uint8_t *h, const char *name, char type, uint64_t size, const char *link)
{
    memset(h, 0, 512);
    memcpy(h, name, strnlen(name, 100));
    set_octal(h + 100, 8, type == '5' ? 0700 : 0600, 1);
    set_octal(h + 108, 8, 26, 1);
    set_octal(h + 116, 8, 26, 1);
    set_octal(h + 124, 12, size, 1);
    set_octal(h + 136, 12, 1700000000, 1);
    h[156] = (uint8_t)type;
    if (link)
        memcpy(h + 157, link, strnlen(link, 100));
    memcpy(h + 257, "ustar\0" "00", 8);
    memcpy(h + 265, "postgres", 8);
    set_checksum(h);
}

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 1024;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_zeros(buf_t *b, size_t n)
{
    static const uint8_t z[1024];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        put(b, z, k);
        n -= k;
    }
}

static void put_entry(buf_t *b, const char *name, char type, const void *data, size_t size,
                      const char *link)
{
    uint8_t h[512];
    header(h, name, type, size, link);
    put(b, h, 512);
    if (size) {
        put(b, data, size);
        put_zeros(b, (512 - size % 512) % 512);
    }
}

/* The content of a pax header holding one record key=value. */
static size_t pax_record(char *out, size_t size, const char *key, const char *value, size_t vlen)
{
    size_t base = strlen(key) + vlen + 3; /* ' ', '=', '\n' */
    size_t n = base + 1;
    for (int i = 0; i < 3; i++) {
        char d[16];
        n = base + (size_t)snprintf(d, sizeof d, "%zu", n);
    }
    size_t o = (size_t)snprintf(out, size, "%zu %s=", n, key);
    memcpy(out + o, value, vlen);
    out[o + vlen] = '\n';
    return o + vlen + 1;
}

static void test_postgres_style(void **state)
{
    (void)state;
    buf_t b = {0};
    put_entry(&b, "./", '5', NULL, 0, NULL); /* the root itself: skipped */
    put_entry(&b, "PG_VERSION", '0', "15\n", 3, NULL);
    put_entry(&b, "base/", '5', NULL, 0, NULL);
    put_entry(&b, "./pg_wal/archive_status/", '5', NULL, 0, NULL);
    put_entry(&b, "pg_tblspc/16384/", '2', NULL, 0, "/srv/ts");
    put_entry(&b, "global/pg_control", '0', pattern, 1000, NULL);
    put_zeros(&b, 1024);

    collect_t want = {0};
    char line[256];
    snprintf(line, sizeof line, "PG_VERSION|file|0600|3|1700000000||%016llx\n",
             (unsigned long long)fnv((const uint8_t *)"15\n", 3));
    append(&want, line);
    snprintf(line, sizeof line, "base|directory|0700|0|1700000000||%016llx\n",
             (unsigned long long)fnv(NULL, 0));
    append(&want, line);
    snprintf(line, sizeof line, "pg_wal/archive_status|directory|0700|0|1700000000||%016llx\n",
             (unsigned long long)fnv(NULL, 0));
    append(&want, line);
    snprintf(line, sizeof line, "pg_tblspc/16384|symlink|0600|0|1700000000|/srv/ts|%016llx\n",
             (unsigned long long)fnv(NULL, 0));
    append(&want, line);
    snprintf(line, sizeof line, "global/pg_control|file|0600|1000|1700000000||%016llx\n",
             (unsigned long long)fnv(pattern, 1000));
    append(&want, line);
    for (int mode = WHOLE; mode <= RANDOM; mode++) {
        collect_t got = {0};
        bq_errbuf_t e = {{0}};
        if (parse(b.p, b.len, mode, &got, &e))
            fail_msg("%s", e.msg);
        assert_string_equal(got.log, want.log);
        collect_free(&got);
    }

    /* Zero bytes after the end (GNU tar pads to 10 KiB records) are fine; and offsets. */
    put_zeros(&b, 8704);
    collect_t got = {0};
    pg_tar_t *t = NULL;
    bq_errbuf_t e = {{0}};
    assert_int_equal(pg_tar_new("base.tar", &callbacks, &got, &t, &e), 0);
    assert_int_equal(pg_tar_feed(t, b.p, b.len, &e), 0);
    assert_int_equal(pg_tar_ended(t), 1);
    assert_true(pg_tar_offset(t) == b.len);
    assert_int_equal(pg_tar_finish(t, &e), 0);
    pg_tar_destroy(&t);
    pg_tar_destroy(&t); /* NULL is fine */
    collect_free(&got);
    collect_free(&want);
    free(b.p);
}

/* A file above 8 GiB: its size in base-256. The data is fed in 1 MiB pieces of zeros. */
static int big_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)buf;
    (void)e;
    *(uint64_t *)arg += len;
    return 0;
}

static int big_begin(void *arg, const pg_tar_entry_t *ent, bq_errbuf_t *e)
{
    (void)arg;
    (void)e;
    assert_string_equal(ent->path, "base/5/16384");
    assert_true(ent->size == (8ULL << 30) + 4097);
    return 0;
}

static void test_base256_size(void **state)
{
    (void)state;
    uint64_t size = (8ULL << 30) + 4097, got = 0;
    uint8_t h[512];
    header(h, "base/5/16384", '0', 0, NULL);
    h[124] = 0x80;
    uint64_t v = size;
    for (int i = 11; i >= 1; i--) {
        h[124 + i] = (uint8_t)v;
        v >>= 8;
    }
    set_checksum(h);
    pg_tar_callbacks_t cb = {.begin = big_begin, .data = big_data};
    pg_tar_t *t = NULL;
    bq_errbuf_t e = {{0}};
    assert_int_equal(pg_tar_new("base.tar", &cb, &got, &t, &e), 0);
    assert_int_equal(pg_tar_feed(t, h, 512, &e), 0);
    uint8_t *zeros = calloc(1, 1 << 20);
    assert_non_null(zeros);
    uint64_t left = size + (512 - size % 512) % 512 + 1024;
    while (left) {
        size_t n = left < (1 << 20) ? (size_t)left : (1 << 20);
        if (pg_tar_feed(t, zeros, n, &e) != 0)
            fail_msg("%s", e.msg);
        left -= n;
    }
    free(zeros);
    assert_int_equal(pg_tar_finish(t, &e), 0);
    assert_true(got == size);
    pg_tar_destroy(&t);
}

/* ---- refusals ---- */

typedef enum {
    M_CHECKSUM, M_SIZE_DIGIT, M_SIZE_GARBAGE, M_MODE_EMPTY, M_MAGIC, M_NEG_SIZE, M_BIG256,
} mutation_t;

static void mutate(uint8_t *h, mutation_t m)
{
    switch (m) {
    case M_CHECKSUM:
        h[0] ^= 1;
        return; /* no new checksum */
    case M_SIZE_DIGIT:
        h[124 + 5] = '8';
        break;
    case M_SIZE_GARBAGE:
        h[124 + 11] = 'x';
        break;
    case M_MODE_EMPTY:
        memset(h + 100, ' ', 8);
        break;
    case M_MAGIC:
        memcpy(h + 257, "ustaR", 5);
        break;
    case M_NEG_SIZE:
        memset(h + 124, 0xff, 12);
        break;
    case M_BIG256:
        memset(h + 124, 0, 12);
        h[124] = 0x80;
        h[125] = 0x80; /* 2^87 */
        break;
    }
    set_checksum(h);
}

typedef struct {
    const char *what;
    void (*build)(buf_t *b, int arg);
    int arg;
    const char *msg; /* the whole message after "tar archive test.tar: " */
} refusal_t;

static void b_mutated(buf_t *b, int m)
{
    uint8_t h[512];
    header(h, "base/1/1259", '0', 10, NULL);
    mutate(h, (mutation_t)m);
    put(b, h, 512);
    put(b, pattern, 10);
    put_zeros(b, 502 + 1024);
}

static void b_path(buf_t *b, int which)
{
    static const char *const paths[] = {"/etc/passwd", "base/../../etc", "base/./1", "base//1",
                                        "..", "base/..", "./../x", "././"};
    put_entry(b, paths[which], '0', "x", 1, NULL);
    put_zeros(b, 1024);
}

static void b_type(buf_t *b, int type)
{
    put_entry(b, "dev/null", (char)type, NULL, 0, NULL);
    put_zeros(b, 1024);
}

static void b_dir_size(buf_t *b, int unused)
{
    (void)unused;
    put_entry(b, "base/", '5', pattern, 10, NULL);
    put_zeros(b, 1024);
}

static void b_link(buf_t *b, int which)
{
    if (which == 0)
        put_entry(b, "pg_tblspc/16384/", '2', NULL, 0, NULL);
    else
        put_entry(b, "hard", '1', NULL, 0, "../outside");
    put_zeros(b, 1024);
}

static void b_ext(buf_t *b, int which)
{
    char rec[PG_TAR_PAX_MAX + 64];
    size_t n = 0;
    char type = 'x';
    switch (which) {
    case 0: /* 'L' too long */
        type = 'L';
        n = PG_TAR_PATH_MAX + 1;
        memset(rec, 'a', n);
        break;
    case 1: /* 'L' with a NUL inside */
        type = 'L';
        memcpy(rec, "abc\0def\0", 8);
        n = 8;
        break;
    case 2: /* pax path with a NUL */
        n = pax_record(rec, sizeof rec, "path", "ab\0cd", 5);
        break;
    case 3: /* pax record whose length runs past the header */
        n = (size_t)snprintf(rec, sizeof rec, "99 path=abc\n");
        break;
    case 4: /* pax size not a number */
        n = pax_record(rec, sizeof rec, "size", "12a", 3);
        break;
    case 5: /* sparse */
        n = pax_record(rec, sizeof rec, "GNU.sparse.map", "0,0", 3);
        break;
    case 6: /* pax path with ".." */
        n = pax_record(rec, sizeof rec, "path", "a/../../b", 9);
        break;
    case 7: /* record without a key */
        n = (size_t)snprintf(rec, sizeof rec, "7 =abc\n");
        break;
    case 8: /* two 'L' for one entry */
        type = 'L';
        memcpy(rec, "abc", 4);
        n = 4;
        put_entry(b, "././@LongLink", 'L', rec, n, NULL);
        break;
    }
    uint8_t h[512];
    header(h, "././@LongLink", type, n, NULL);
    put(b, h, 512);
    put(b, rec, n);
    put_zeros(b, (512 - n % 512) % 512);
    put_entry(b, "short", '0', "x", 1, NULL);
    put_zeros(b, 1024);
}

static void b_ext_then_end(buf_t *b, int unused)
{
    (void)unused;
    char rec[64];
    size_t n = pax_record(rec, sizeof rec, "path", "abc", 3);
    put_entry(b, "PaxHeaders/abc", 'x', rec, n, NULL);
    put_zeros(b, 1024);
}

static void b_global(buf_t *b, int unused)
{
    (void)unused;
    char rec[64];
    size_t n = pax_record(rec, sizeof rec, "comment", "hi", 2);
    put_entry(b, "pax_global_header", 'g', rec, n, NULL);
    put_zeros(b, 1024);
}

static void b_single_zero(buf_t *b, int unused)
{
    (void)unused;
    put_entry(b, "a", '0', "x", 1, NULL);
    put_zeros(b, 512);
    put_entry(b, "b", '0', "y", 1, NULL);
    put_zeros(b, 1024);
}

static void b_garbage(buf_t *b, int unused)
{
    (void)unused;
    put_entry(b, "a", '0', "x", 1, NULL);
    put_zeros(b, 1024 + 100);
    put(b, "junk", 4);
}

static void b_truncated(buf_t *b, int which)
{
    put_entry(b, "a", '0', pattern, 600, NULL); /* 512 + 1024 bytes */
    switch (which) {
    case 0: b->len = 300; break;           /* inside the header */
    case 1: b->len = 512 + 100; break;     /* inside the data */
    case 2: b->len = 512 + 700; break;     /* inside the padding */
    case 3: break;                          /* no end blocks */
    case 4: put_zeros(b, 512); break;      /* one end block */
    case 5: put_zeros(b, 700); break;      /* inside the second end block */
    }
}

static void b_empty(buf_t *b, int unused)
{
    (void)unused;
    (void)b;
}

static const refusal_t refusals[] = {
    {"bad checksum", b_mutated, M_CHECKSUM,
     "header at offset 0 (\"case/1/1259\"): checksum mismatch (stored 4886, computed 4887)"},
    {"8 in an octal field", b_mutated, M_SIZE_DIGIT,
     "header at offset 0 (\"base/1/1259\"): bad size field"},
    {"garbage after the digits", b_mutated, M_SIZE_GARBAGE,
     "header at offset 0 (\"base/1/1259\"): bad size field"},
    {"no digits", b_mutated, M_MODE_EMPTY,
     "header at offset 0 (\"base/1/1259\"): bad mode field"},
    {"unknown magic", b_mutated, M_MAGIC,
     "header at offset 0 (\"base/1/1259\"): not a ustar or GNU header"},
    {"negative base-256", b_mutated, M_NEG_SIZE,
     "header at offset 0 (\"base/1/1259\"): bad size field"},
    {"base-256 above 2^63", b_mutated, M_BIG256,
     "header at offset 0 (\"base/1/1259\"): bad size field"},
    {"absolute path", b_path, 0, "entry \"/etc/passwd\" at offset 0: path is absolute"},
    {"..", b_path, 1, "entry \"base/../../etc\" at offset 0: path has a \"..\" component"},
    {"/./", b_path, 2, "entry \"base/./1\" at offset 0: path has a \".\" component"},
    {"./..", b_path, 6, "entry \"../x\" at offset 0: path has a \"..\" component"},
    {"./ as a file", b_path, 7, "entry \"\" at offset 0: path is empty"},
    {"//", b_path, 3, "entry \"base//1\" at offset 0: path has an empty component"},
    {"only ..", b_path, 4, "entry \"..\" at offset 0: path has a \"..\" component"},
    {"trailing ..", b_path, 5, "entry \"base/..\" at offset 0: path has a \"..\" component"},
    {"char device", b_type, '3', "entry \"dev/null\" at offset 0: unsupported entry type '3'"},
    {"fifo", b_type, '6', "entry \"dev/null\" at offset 0: unsupported entry type '6'"},
    {"GNU sparse", b_type, 'S', "entry \"dev/null\" at offset 0: unsupported entry type 'S'"},
    {"directory with data", b_dir_size, 0,
     "directory \"base\" at offset 0 has a size of 10 (must be 0)"},
    {"symlink without target", b_link, 0, "symlink \"pg_tblspc/16384\" at offset 0 has no target"},
    {"hardlink out of the tree", b_link, 1,
     "hardlink \"hard\" at offset 0: target has a \"..\" component"},
    {"long name too long", b_ext, 0, "'L' header at offset 0: size 4097 is out of range (1..4096)"},
    {"long name with NUL", b_ext, 1, "GNU long name at offset 0 contains a NUL byte"},
    {"pax path with NUL", b_ext, 2,
     "pax header at offset 0: bad path (empty, too long or with a NUL byte)"},
    {"pax bad length", b_ext, 3, "pax header at offset 0: record 0 has a bad length"},
    {"pax bad size", b_ext, 4, "pax header at offset 0: bad number for size"},
    {"pax sparse", b_ext, 5, "pax header at offset 0: sparse files are not supported"},
    {"pax path with ..", b_ext, 6,
     "entry \"a/../../b\" at offset 0: path has a \"..\" component"},
    {"pax record without key", b_ext, 7, "pax header at offset 0: record 0 has no key"},
    {"two long names", b_ext, 8, "header at offset 1024: a second 'L' header for the same entry"},
    {"extended header, then the end", b_ext_then_end, 0,
     "extended header at offset 0 is not followed by an entry"},
    {"pax global header", b_global, 0,
     "header at offset 0: pax global headers are not supported"},
    {"single zero block", b_single_zero, 0,
     "a single zero block at offset 1024, then data: not an end of archive"},
    {"garbage after the end", b_garbage, 0, "garbage after the end of the archive at offset 2148"},
    {"truncated header", b_truncated, 0, "truncated at offset 300 inside a header (300 of 512 bytes)"},
    {"truncated data", b_truncated, 1,
     "truncated at offset 612 inside the data of \"a\" (entry at offset 0, 100 of 600 bytes)"},
    {"truncated padding", b_truncated, 2,
     "truncated at offset 1212 inside the padding of entry at offset 0"},
    {"no end blocks", b_truncated, 3, "truncated at offset 1536: no end-of-archive blocks"},
    {"one end block", b_truncated, 4,
     "truncated at offset 2048 after one end-of-archive block (two are needed)"},
    {"half an end block", b_truncated, 5,
     "truncated at offset 2236 after one end-of-archive block (two are needed)"},
    {"empty stream", b_empty, 0, "truncated at offset 0: no end-of-archive blocks"},
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        const refusal_t *r = &refusals[i];
        buf_t b = {0};
        r->build(&b, r->arg);
        char want[BQ_ERRMSG_MAX];
        snprintf(want, sizeof want, "tar archive test.tar: %s", r->msg);
        for (int mode = WHOLE; mode <= RANDOM; mode++) {
            collect_t got = {0};
            bq_errbuf_t e = {{0}};
            int rc = parse(b.p, b.len, mode, &got, &e);
            if (rc != BQ_E_PROTO || strcmp(e.msg, want) != 0)
                fail_msg("%s (mode %d): got %s \"%s\", want BQ_E_PROTO \"%s\"", r->what, mode,
                         bq_err_name(rc), e.msg, want);
            assert_null(strchr(e.msg, '\n'));
            collect_free(&got);
        }
        free(b.p);
    }
}

/* A callback's error stops the parser and comes back unchanged. */
static void test_callback_error(void **state)
{
    (void)state;
    buf_t b = {0};
    put_entry(&b, "one", '0', "1", 1, NULL);
    put_entry(&b, "two", '0', "2", 1, NULL);
    put_zeros(&b, 1024);
    collect_t got = {.fail_at_begin = 2};
    bq_errbuf_t e = {{0}};
    assert_int_equal(parse(b.p, b.len, ONE_BYTE, &got, &e), BQ_E_IO);
    assert_string_equal(e.msg, "disk full while writing two");
    assert_int_equal(got.nbegin, 2);
    collect_free(&got);
    free(b.p);
}

/* A path of the longest length (4095) is fine through pax; the long name bound holds. */
static void test_long_pax_path(void **state)
{
    (void)state;
    char path[PG_TAR_PATH_MAX];
    for (size_t i = 0; i < sizeof path - 1; i++)
        path[i] = (i % 50 == 49) ? '/' : 'p';
    path[sizeof path - 1] = '\0';
    char rec[PG_TAR_PAX_MAX];
    size_t n = pax_record(rec, sizeof rec, "path", path, strlen(path));
    buf_t b = {0};
    put_entry(&b, "PaxHeaders/p", 'x', rec, n, NULL);
    put_entry(&b, "ppp", '0', "data", 4, NULL);
    put_zeros(&b, 1024);
    collect_t got = {0};
    bq_errbuf_t e = {{0}};
    if (parse(b.p, b.len, RANDOM, &got, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(strncmp(got.log, path, strlen(path)), 0);
    collect_free(&got);
    free(b.p);

    /* One byte more and it is refused. */
    char longer[PG_TAR_PATH_MAX + 1];
    memset(longer, 'q', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    n = pax_record(rec, sizeof rec, "path", longer, strlen(longer));
    b = (buf_t){0};
    put_entry(&b, "PaxHeaders/p", 'x', rec, n, NULL);
    put_entry(&b, "ppp", '0', "data", 4, NULL);
    put_zeros(&b, 1024);
    got = (collect_t){0};
    assert_int_equal(parse(b.p, b.len, WHOLE, &got, &e), BQ_E_PROTO);
    assert_string_equal(e.msg, "tar archive test.tar: pax header at offset 0: bad path (empty, "
                               "too long or with a NUL byte)");
    collect_free(&got);
    free(b.p);
}

static void test_path_problem(void **state)
{
    (void)state;
    assert_null(pg_tar_path_problem("base/1/2", 8));
    assert_null(pg_tar_path_problem("a..b/.c/..d", 11));
    assert_string_equal(pg_tar_path_problem("", 0), "is empty");
    assert_string_equal(pg_tar_path_problem("a/", 2), "has an empty component");
    assert_string_equal(pg_tar_path_problem("a\0b", 3), "contains a NUL byte");
    assert_string_equal(pg_tar_type_name(PG_TAR_HARDLINK), "hardlink");
    bq_errbuf_t e;
    pg_tar_t *t = NULL;
    assert_int_equal(pg_tar_new(NULL, NULL, NULL, &t, &e), BQ_E_INVAL);
    assert_int_equal(pg_tar_feed(NULL, "", 0, &e), BQ_E_INVAL);
}

/* The seeds of the fuzz target are valid archives (so mutations start from accepted input). */
static void test_fuzz_seeds(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        int entries;
    } seeds[] = {
        {"ustar.tar", 8}, {"gnu_longname.tar", 7}, {"pax_longname.tar", 4},
        {"postgres_style.tar", 7},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", BQ_TAR_CORPUS, seeds[i].file);
        FILE *f = fopen(path, "rb");
        if (!f)
            fail_msg("cannot open %s", path);
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        collect_t got = {0};
        bq_errbuf_t e = {{0}};
        if (parse(buf, n, RANDOM, &got, &e))
            fail_msg("%s: %s", seeds[i].file, e.msg);
        int lines = 0;
        for (size_t k = 0; k < got.len; k++)
            lines += got.log[k] == '\n';
        if (lines != seeds[i].entries)
            fail_msg("%s: %d entries, want %d", seeds[i].file, lines, seeds[i].entries);
        collect_free(&got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_problem),
        cmocka_unit_test(test_gnu_tar_ustar),
        cmocka_unit_test(test_gnu_tar_gnu),
        cmocka_unit_test(test_gnu_tar_pax),
        cmocka_unit_test(test_gnu_tar_whole_dir),
        cmocka_unit_test(test_postgres_style),
        cmocka_unit_test(test_base256_size),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_callback_error),
        cmocka_unit_test(test_long_pax_path),
        cmocka_unit_test(test_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, setup_tree, teardown_tree);
}
