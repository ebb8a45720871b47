/* Pack files (store/pack.h): crc32c, round trips, scan, list, a table of damage with the
 * exact error each must produce, and writers whose file fails underneath them. */
#include "pack.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

typedef struct {
    char root[256];
    char store[300];
} fixture_t;

#define REL2A "pack packs/2a/000000000000002a.pack"

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_mkdtemp(f->root, sizeof f->root, "pack_test") != 0) {
        free(f);
        return -1;
    }
    snprintf(f->store, sizeof f->store, "%s/store", f->root);
    if (mkdir(f->store, 0700) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = test_rmtree(f->root);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* ---- helpers -------------------------------------------------------------------------- */

static void make_id(uint64_t n, uint8_t id[STORE_CHUNK_ID_BYTES])
{
    uint64_t x = n * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = 0; i < STORE_CHUNK_ID_BYTES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id[i] = (uint8_t)x;
    }
}

static void make_body(uint64_t n, uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(n * 31 + i * 7 + (i >> 9));
}

static void hex(const uint8_t *id, char out[65])
{
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
           ((uint32_t)b[3] << 24);
}

static void put32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8)
        b[i] = (uint8_t)v;
}

static void pack_file(const fixture_t *f, uint64_t id, char *buf, size_t len)
{
    assert_int_equal(store_pack_path(f->store, id, buf, len), 0);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void spill(const char *path, const uint8_t *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* The writer's descriptor, found in /proc/self/fd by the pack's path. */
static int writer_fd(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *de;
    int found = -1;
    char real[PATH_MAX];
    assert_non_null(realpath(path, real));
    while ((de = readdir(d))) {
        char link[64], target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, real) == 0)
            found = atoi(de->d_name);
    }
    closedir(d);
    assert_true(found >= 0);
    return found;
}

typedef struct {
    uint64_t offset;
    uint32_t rec_len;
} loc_t;

/* Write pack id with n records of the given body lengths (record i: make_id(i), make_body(i)). */
static void write_pack(const fixture_t *f, uint64_t id, const size_t *lens, size_t n, loc_t *locs)
{
    bq_errbuf_t e = {{0}};
    store_pack_writer_t *w = NULL;
    assert_int_equal(store_pack_create(f->store, id, &w, &e), 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t cid[32];
        uint8_t *body = malloc(lens[i] + 1);
        assert_non_null(body);
        make_id(i, cid);
        make_body(i, body, lens[i]);
        uint64_t off = 0;
        uint32_t rl = 0;
        assert_int_equal(store_pack_append(w, cid, body, lens[i], &off, &rl, &e), 0);
        if (locs) {
            locs[i].offset = off;
            locs[i].rec_len = rl;
        }
        free(body);
    }
    assert_int_equal(store_pack_close(&w, &e), 0);
    assert_null(w);
}

/* ---- crc32c and paths ----------------------------------------------------------------- */

static void test_crc32c(void **state)
{
    (void)state;
    uint8_t buf[32];
    assert_int_equal(store_pack_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(store_pack_crc32c(0, "", 0), 0);
    memset(buf, 0, sizeof buf);
    assert_int_equal(store_pack_crc32c(0, buf, 32), 0x8a9136aau);   /* RFC 3720 B.4 */
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(store_pack_crc32c(0, buf, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(store_pack_crc32c(0, buf, 32), 0x46dd794eu);
    /* continuation over any split, odd lengths and alignments included */
    uint8_t big[1000];
    make_body(7, big, sizeof big);
    uint32_t whole = store_pack_crc32c(0, big, sizeof big);
    for (size_t cut = 0; cut <= sizeof big; cut += 37)
        assert_int_equal(store_pack_crc32c(store_pack_crc32c(0, big, cut), big + cut,
                                           sizeof big - cut), whole);
    assert_int_equal(store_pack_crc32c(0, big + 3, 17),
                     store_pack_crc32c(store_pack_crc32c(0, big + 3, 5), big + 8, 12));
}

static void test_paths(void **state)
{
    (void)state;
    char buf[128];
    assert_int_equal(store_pack_path("/srv/s", 0x2a, buf, sizeof buf), 0);
    assert_string_equal(buf, "/srv/s/packs/2a/000000000000002a.pack");
    assert_int_equal(store_pack_path(NULL, 0x123456789abcdef0ULL, buf, sizeof buf), 0);
    assert_string_equal(buf, "packs/f0/123456789abcdef0.pack");
    assert_int_equal(store_pack_path("/srv/s", 1, buf, 10), BQ_E_INVAL);
    assert_string_equal(buf, "");
}

/* ---- round trips ---------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    static const size_t lens[] = {0, 1, 1u << 20, 2u << 20, STORE_PACK_BODY_MAX, 5};
    const size_t n = sizeof lens / sizeof lens[0];
    uint8_t *body = malloc(STORE_PACK_BODY_MAX + 1), *got = malloc(STORE_PACK_BODY_MAX);
    assert_non_null(body);
    assert_non_null(got);
    loc_t locs[6];
    store_pack_writer_t *w = NULL;
    assert_int_equal(store_pack_create(f->store, 0x2a, &w, &e), 0);
    assert_int_equal(store_pack_id(w), 0x2a);
    assert_int_equal(store_pack_size(w), STORE_PACK_HEADER_LEN);
    uint64_t expect_off = STORE_PACK_HEADER_LEN;
    for (size_t i = 0; i < n; i++) {
        uint8_t cid[32];
        make_id(i, cid);
        make_body(i, body, lens[i]);
        assert_int_equal(store_pack_append(w, cid, lens[i] ? body : NULL, lens[i],
                                           &locs[i].offset, &locs[i].rec_len, &e), 0);
        assert_int_equal(locs[i].offset, expect_off);
        assert_int_equal(locs[i].rec_len, lens[i] + STORE_PACK_RECORD_OVERHEAD);
        expect_off += locs[i].rec_len;
        assert_int_equal(store_pack_size(w), expect_off);
        if (i == 2) {
            /* synced records are readable while the writer is open */
            assert_int_equal(store_pack_sync(w, &e), 0);
            size_t bl = 0;
            uint8_t sid[32];
            assert_int_equal(store_pack_read(f->store, 0x2a, locs[2].offset, locs[2].rec_len,
                                             cid, sid, got, STORE_PACK_BODY_MAX, &bl, &e), 0);
            assert_int_equal(bl, lens[2]);
            assert_memory_equal(sid, cid, 32);
            assert_memory_equal(got, body, bl);
        }
    }
    /* a body above the limit is refused, and the writer goes on */
    uint8_t cid[32];
    make_id(99, cid);
    assert_int_equal(store_pack_append(w, cid, body, STORE_PACK_BODY_MAX + 1, NULL, NULL, &e),
                     BQ_E_INVAL);
    assert_string_equal(e.msg, REL2A ": record body of 16781313 bytes exceeds the limit of 16781312 bytes");
    assert_int_equal(store_pack_close(&w, &e), 0);
    assert_null(w);

    char path[512];
    pack_file(f, 0x2a, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, expect_off);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/packs/2a", f->store);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    for (size_t i = 0; i < n; i++) {
        size_t bl = 99;
        uint8_t want[32], sid[32];
        make_id(i, want);
        make_body(i, body, lens[i]);
        assert_int_equal(store_pack_read(f->store, 0x2a, locs[i].offset, locs[i].rec_len, want,
                                         sid, got, STORE_PACK_BODY_MAX, &bl, &e), 0);
        assert_int_equal(bl, lens[i]);
        assert_memory_equal(sid, want, 32);
        if (bl)
            assert_memory_equal(got, body, bl);
        /* no expected id, no id out */
        assert_int_equal(store_pack_read(f->store, 0x2a, locs[i].offset, locs[i].rec_len, NULL,
                                         NULL, got, STORE_PACK_BODY_MAX, &bl, &e), 0);
    }
    /* a buffer too small for the body */
    size_t bl = 0;
    assert_int_equal(store_pack_read(f->store, 0x2a, locs[1].offset, locs[1].rec_len, NULL, NULL,
                                     NULL, 0, &bl, &e), BQ_E_TOOBIG);
    assert_string_equal(e.msg, REL2A ": record at offset 76: body of 1 bytes does not fit a "
                        "buffer of 0");
    assert_int_equal(store_pack_read(f->store, 0x2a, locs[0].offset, locs[0].rec_len, NULL, NULL,
                                     NULL, 0, &bl, &e), 0);
    assert_int_equal(bl, 0);
    assert_int_equal(store_pack_file_sync(f->store, 0x2a, &e), 0);
    free(body);
    free(got);
}

typedef struct {
    size_t n;
    size_t max;
    uint64_t next_off;
    uint64_t stop_at;     /* stop (return 7) when n reaches this; 0 never */
} scan_check_t;

static int scan_check(const uint8_t id[32], uint64_t offset, uint32_t rec_len, const void *body,
                      size_t body_len, void *arg)
{
    scan_check_t *c = arg;
    uint8_t want[32], *wb = malloc(body_len + 1);
    assert_non_null(wb);
    make_id(c->n, want);
    make_body(c->n, wb, body_len);
    assert_memory_equal(id, want, 32);
    if (body_len)
        assert_memory_equal(body, wb, body_len);
    free(wb);
    assert_int_equal(offset, c->next_off);
    assert_int_equal(rec_len, body_len + STORE_PACK_RECORD_OVERHEAD);
    c->next_off += rec_len;
    c->n++;
    return c->stop_at && c->n == c->stop_at ? 7 : 0;
}

static void test_many_records(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    const size_t n = 10000;
    size_t *lens = malloc(n * sizeof *lens);
    loc_t *locs = malloc(n * sizeof *locs);
    assert_non_null(lens);
    assert_non_null(locs);
    for (size_t i = 0; i < n; i++)
        lens[i] = (i * 379) % 3001; /* 0 .. 3000 */
    lens[5000] = (1u << 20) + 3;    /* one larger than the writer's buffer */
    write_pack(f, 0x2a, lens, n, locs);

    scan_check_t c = {.next_off = STORE_PACK_HEADER_LEN};
    uint64_t good_end = 0;
    assert_int_equal(store_pack_scan(f->store, 0x2a, scan_check, &c, &good_end, &e), 0);
    assert_int_equal(c.n, n);
    assert_int_equal(good_end, c.next_off);

    uint8_t *got = malloc(STORE_PACK_BODY_MAX), *want = malloc(STORE_PACK_BODY_MAX);
    assert_non_null(got);
    assert_non_null(want);
    for (size_t i = 0; i < n; i++) {
        uint8_t cid[32];
        size_t bl = 0;
        make_id(i, cid);
        assert_int_equal(store_pack_read(f->store, 0x2a, locs[i].offset, locs[i].rec_len, cid,
                                         NULL, got, STORE_PACK_BODY_MAX, &bl, &e), 0);
        make_body(i, want, lens[i]);
        assert_int_equal(bl, lens[i]);
        if (bl)
            assert_memory_equal(got, want, bl);
    }
    /* a callback's non-zero result stops the scan and is returned */
    scan_check_t stop = {.next_off = STORE_PACK_HEADER_LEN, .stop_at = 3};
    assert_int_equal(store_pack_scan(f->store, 0x2a, scan_check, &stop, NULL, &e), 7);
    assert_int_equal(stop.n, 3);
    free(got);
    free(want);
    free(lens);
    free(locs);
}

static void test_empty_pack_and_exists(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_pack_writer_t *w = NULL;
    assert_int_equal(store_pack_create(f->store, 0x2a, &w, &e), 0);
    assert_int_equal(store_pack_close(&w, &e), 0);
    scan_check_t c = {.next_off = STORE_PACK_HEADER_LEN};
    uint64_t good_end = 0;
    assert_int_equal(store_pack_scan(f->store, 0x2a, scan_check, &c, &good_end, &e), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(good_end, STORE_PACK_HEADER_LEN);
    /* a pack is never rewritten */
    assert_int_equal(store_pack_create(f->store, 0x2a, &w, &e), BQ_E_EXISTS);
    assert_null(w);
    assert_string_equal(e.msg, REL2A ": already exists");
    /* close and abandon accept NULL */
    assert_int_equal(store_pack_close(NULL, &e), 0);
    assert_int_equal(store_pack_close(&w, &e), 0);
    store_pack_abandon(&w);
    store_pack_abandon(NULL);
}

/* ---- list ----------------------------------------------------------------------------- */

typedef struct {
    uint64_t ids[16];
    size_t n;
    size_t stop_after;
} list_t;

static int list_collect(uint64_t id, void *arg)
{
    list_t *l = arg;
    assert_true(l->n < 16);
    l->ids[l->n++] = id;
    return l->stop_after && l->n == l->stop_after ? 5 : 0;
}

static void test_list(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    list_t l = {0};
    /* no packs directory: no packs */
    assert_int_equal(store_pack_list(f->store, list_collect, &l, &e), 0);
    assert_int_equal(l.n, 0);

    static const uint64_t ids[] = {0x12a, 0x2a, 0xffffffffffffffffULL, 1, 0x100};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        write_pack(f, ids[i], NULL, 0, NULL);
    /* names that are not packs, or not where their id puts them */
    char path[512];
    snprintf(path, sizeof path, "%s/packs/2a/foo.pack", f->store);
    spill(path, (const uint8_t *)"x", 1);
    snprintf(path, sizeof path, "%s/packs/2a/000000000000002A.pack", f->store);
    spill(path, (const uint8_t *)"x", 1);
    snprintf(path, sizeof path, "%s/packs/2a/000000000000002a.pack.tmp", f->store);
    spill(path, (const uint8_t *)"x", 1);
    snprintf(path, sizeof path, "%s/packs/2b", f->store);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/packs/2b/000000000000002a.pack", f->store);
    spill(path, (const uint8_t *)"x", 1);
    snprintf(path, sizeof path, "%s/packs/zz", f->store);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/packs/README", f->store);
    spill(path, (const uint8_t *)"x", 1);

    assert_int_equal(store_pack_list(f->store, list_collect, &l, &e), 0);
    assert_int_equal(l.n, 5);
    static const uint64_t sorted[] = {1, 0x2a, 0x100, 0x12a, 0xffffffffffffffffULL};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(l.ids[i], sorted[i]);

    list_t stop = {.stop_after = 2};
    assert_int_equal(store_pack_list(f->store, list_collect, &stop, &e), 5);
    assert_int_equal(stop.n, 2);
}

/* ---- damage --------------------------------------------------------------------------- */

/* The base pack 0x2a: three records with bodies of 100, 200 and 300 bytes:
 *   record 0 at 32 (144 bytes), record 1 at 176 (244), record 2 at 420 (344); 764 bytes. */
#define R1 176u
#define R1_LEN 244u
#define BASE_SIZE 764u

enum { M_NONE, M_XOR, M_PUT32, M_TRUNC };

typedef struct {
    const char *name;
    int kind;
    size_t at;            /* byte to change, or the length to truncate to */
    uint32_t val;         /* xor mask (low byte) or value */
    uint32_t read_len;    /* rec_len given to store_pack_read (R1_LEN unless set) */
    int read_rc;
    const char *read_msg; /* NULL: "record at offset 176: crc mismatch (...)", computed */
    int scan_rc;
    const char *scan_msg; /* NULL: crc mismatch at scan_crc_at, computed */
    uint64_t scan_crc_at;
    uint64_t good_end;
    size_t scanned;       /* records the scan delivered */
} damage_t;

static const damage_t damages[] = {
    {"header magic", M_XOR, 3, 0x01, 0, BQ_E_IO,
     REL2A ": bad header magic (not a barque pack)", BQ_E_IO,
     REL2A ": bad header magic (not a barque pack)", 0, 0, 0},
    {"header pack id", M_XOR, 16, 0x01, 0, BQ_E_IO, "HDRCRC", BQ_E_IO, "HDRCRC", 0, 0, 0},
    {"header format", M_XOR, 8, 0x01, 0, BQ_E_IO, "HDRCRC", BQ_E_IO, "HDRCRC", 0, 0, 0},
    {"header crc", M_XOR, 25, 0x80, 0, BQ_E_IO, "HDRCRC", BQ_E_IO, "HDRCRC", 0, 0, 0},
    {"header reserved", M_XOR, 28, 0x01, 0, BQ_E_IO,
     REL2A ": reserved header field is 0x00000001, expected 0", BQ_E_IO,
     REL2A ": reserved header field is 0x00000001, expected 0", 0, 0, 0},
    {"truncated header", M_TRUNC, 20, 0, 0, BQ_E_IO,
     REL2A ": truncated header (20 bytes, expected 32)", BQ_E_IO,
     REL2A ": truncated header (20 bytes, expected 32)", 0, 0, 0},
    {"empty file", M_TRUNC, 0, 0, 0, BQ_E_IO,
     REL2A ": truncated header (0 bytes, expected 32)", BQ_E_IO,
     REL2A ": truncated header (0 bytes, expected 32)", 0, 0, 0},
    {"record magic", M_XOR, R1, 0x01, 0, BQ_E_IO,
     REL2A ": record at offset 176: bad magic 0x52514232 (expected 0x52514233)", BQ_E_IO,
     REL2A ": record at offset 176: bad magic 0x52514232 (expected 0x52514233)", 0, R1, 1},
    {"record length +1", M_XOR, R1 + 4, 0x01, 0, BQ_E_IO,
     REL2A ": record at offset 176: length mismatch (expected 244 bytes, the record holds 245)",
     BQ_E_IO, NULL, R1, R1, 1},
    {"record length over the limit", M_PUT32, R1 + 4, 0x01001001, 0, BQ_E_IO,
     REL2A ": record at offset 176: body length 16781313 exceeds the limit of 16781312 bytes", BQ_E_IO,
     REL2A ": record at offset 176: body length 16781313 exceeds the limit of 16781312 bytes", 0, R1, 1},
    {"record length past the end", M_PUT32, R1 + 4, 100000, 0, BQ_E_IO,
     REL2A ": record at offset 176: length mismatch (expected 244 bytes, the record holds "
     "100044)", BQ_E_IO,
     REL2A ": truncated record at offset 176 (the file ends 588 bytes into a record of 100044; "
     "records are good up to offset 176)", 0, R1, 1},
    {"record id", M_XOR, R1 + 8 + 5, 0x10, 0, BQ_E_IO, NULL, BQ_E_IO, NULL, R1, R1, 1},
    {"record body", M_XOR, R1 + 40 + 150, 0x04, 0, BQ_E_IO, NULL, BQ_E_IO, NULL, R1, R1, 1},
    {"record crc", M_XOR, R1 + 40 + 200 + 3, 0x80, 0, BQ_E_IO, NULL, BQ_E_IO, NULL, R1, R1, 1},
    {"last record body", M_XOR, 420 + 40 + 299, 0x01, 0, 0, "", BQ_E_IO, NULL, 420, 420, 2},
    {"truncated mid-record", M_TRUNC, R1 + 100, 0, 0, BQ_E_IO,
     REL2A ": record at offset 176: 244 bytes would end past the end of the file (276 bytes)",
     BQ_E_IO,
     REL2A ": truncated record at offset 176 (the file ends 100 bytes into a record of 244; "
     "records are good up to offset 176)", 0, R1, 1},
    {"truncated in a record's prefix", M_TRUNC, R1 + 10, 0, 0, BQ_E_IO,
     REL2A ": record at offset 176: 244 bytes would end past the end of the file (186 bytes)",
     BQ_E_IO,
     REL2A ": truncated record at offset 176 (the file ends 10 bytes into it; records are good "
     "up to offset 176)", 0, R1, 1},
    {"truncated last record", M_TRUNC, BASE_SIZE - 1, 0, 0, 0, "", BQ_E_IO,
     REL2A ": truncated record at offset 420 (the file ends 343 bytes into a record of 344; "
     "records are good up to offset 420)", 0, 420, 2},
    {"index length too short", M_NONE, 0, 0, 43, BQ_E_IO,
     REL2A ": record at offset 176: length 43 out of range (44 to 16781356)", 0, "", 0,
     BASE_SIZE, 3},
    {"index length mismatch", M_NONE, 0, 0, 245, BQ_E_IO,
     REL2A ": record at offset 176: length mismatch (expected 245 bytes, the record holds 244)",
     0, "", 0, BASE_SIZE, 3},
    {"trailing garbage", M_TRUNC, BASE_SIZE + 3, 0, 0, 0, "", BQ_E_IO,
     REL2A ": truncated record at offset 764 (the file ends 3 bytes into it; records are good "
     "up to offset 764)", 0, BASE_SIZE, 3},
};

static int count_records(const uint8_t id[32], uint64_t offset, uint32_t rec_len,
                         const void *body, size_t body_len, void *arg)
{
    (void)id, (void)offset, (void)rec_len, (void)body, (void)body_len;
    (*(size_t *)arg)++;
    return 0;
}

static void crc_msg(char *out, size_t len, const uint8_t *file, uint64_t off)
{
    uint32_t bl = le32(file + off + 4);
    uint32_t stored = le32(file + off + 40 + bl);
    uint32_t computed = store_pack_crc32c(0, file + off + 4, 36 + (size_t)bl);
    snprintf(out, len, REL2A ": record at offset %llu: crc mismatch (stored 0x%08x, computed "
             "0x%08x)", (unsigned long long)off, stored, computed);
}

static void hdr_crc_msg(char *out, size_t len, const uint8_t *file)
{
    snprintf(out, len, REL2A ": header crc mismatch (stored 0x%08x, computed 0x%08x)",
             le32(file + 24), store_pack_crc32c(0, file, 24));
}

static void test_damage_table(void **state)
{
    fixture_t *f = *state;
    static const size_t lens[] = {100, 200, 300};
    loc_t locs[3];
    write_pack(f, 0x2a, lens, 3, locs);
    assert_int_equal(locs[1].offset, R1);
    assert_int_equal(locs[1].rec_len, R1_LEN);
    assert_int_equal(locs[2].offset, 420);
    char path[512];
    pack_file(f, 0x2a, path, sizeof path);
    size_t size = 0;
    uint8_t *orig = slurp(path, &size);
    assert_int_equal(size, BASE_SIZE);
    uint8_t *file = malloc(BASE_SIZE + 16), *buf = malloc(1024);
    assert_non_null(file);
    assert_non_null(buf);

    for (size_t t = 0; t < sizeof damages / sizeof damages[0]; t++) {
        const damage_t *d = &damages[t];
        size_t n = BASE_SIZE;
        memcpy(file, orig, BASE_SIZE);
        memset(file + BASE_SIZE, 0x5a, 16);
        if (d->kind == M_XOR)
            file[d->at] ^= (uint8_t)d->val;
        else if (d->kind == M_PUT32)
            put32(file + d->at, d->val);
        else if (d->kind == M_TRUNC)
            n = d->at;
        spill(path, file, n);

        char want[1024];
        bq_errbuf_t e = {{0}};
        uint8_t cid[32];
        size_t bl = 0;
        make_id(1, cid);
        int rc = store_pack_read(f->store, 0x2a, R1, d->read_len ? d->read_len : R1_LEN, cid,
                                 NULL, buf, 1024, &bl, &e);
        if (rc != d->read_rc)
            fail_msg("%s: read returned %d (%s), expected %d", d->name, rc, e.msg, d->read_rc);
        if (!d->read_msg)
            crc_msg(want, sizeof want, file, R1);
        else if (strcmp(d->read_msg, "HDRCRC") == 0)
            hdr_crc_msg(want, sizeof want, file);
        else
            snprintf(want, sizeof want, "%s", d->read_msg);
        if (rc && strcmp(e.msg, want) != 0)
            fail_msg("%s: read said\n  \"%s\", expected\n  \"%s\"", d->name, e.msg, want);

        size_t seen = 0;
        uint64_t good_end = 12345;
        memset(&e, 0, sizeof e);
        rc = store_pack_scan(f->store, 0x2a, count_records, &seen, &good_end, &e);
        if (rc != d->scan_rc)
            fail_msg("%s: scan returned %d (%s), expected %d", d->name, rc, e.msg, d->scan_rc);
        if (!d->scan_msg)
            crc_msg(want, sizeof want, file, d->scan_crc_at);
        else if (strcmp(d->scan_msg, "HDRCRC") == 0)
            hdr_crc_msg(want, sizeof want, file);
        else
            snprintf(want, sizeof want, "%s", d->scan_msg);
        if (rc && strcmp(e.msg, want) != 0)
            fail_msg("%s: scan said\n  \"%s\", expected\n  \"%s\"", d->name, e.msg, want);
        if (good_end != d->good_end || seen != d->scanned)
            fail_msg("%s: scan gave good_end %llu after %zu records, expected %llu after %zu",
                     d->name, (unsigned long long)good_end, seen,
                     (unsigned long long)d->good_end, d->scanned);
    }
    free(orig);
    free(file);
    free(buf);
}

static void test_read_errors(void **state)
{
    fixture_t *f = *state;
    static const size_t lens[] = {100, 200, 300};
    write_pack(f, 0x2a, lens, 3, NULL);
    bq_errbuf_t e = {{0}};
    uint8_t buf[512], id0[32], id1[32];
    size_t bl = 0;
    char want[512], h0[65], h1[65];
    make_id(0, id0);
    make_id(1, id1);
    hex(id0, h0);
    hex(id1, h1);

    /* the record at that place holds another chunk */
    assert_int_equal(store_pack_read(f->store, 0x2a, R1, R1_LEN, id0, NULL, buf, sizeof buf,
                                     &bl, &e), BQ_E_IO);
    snprintf(want, sizeof want, REL2A ": record at offset 176: holds chunk %s, expected %s", h1,
             h0);
    assert_string_equal(e.msg, want);
    /* a missing pack */
    assert_int_equal(store_pack_read(f->store, 0x2b, R1, R1_LEN, NULL, NULL, buf, sizeof buf,
                                     &bl, &e), BQ_E_IO);
    assert_string_equal(e.msg, "pack packs/2b/000000000000002b.pack: missing: No such file or "
                        "directory");
    /* an offset inside the header, or past the end */
    assert_int_equal(store_pack_read(f->store, 0x2a, 0, R1_LEN, NULL, NULL, buf, sizeof buf, &bl,
                                     &e), BQ_E_IO);
    assert_string_equal(e.msg, REL2A ": record at offset 0: offset inside the header");
    assert_int_equal(store_pack_read(f->store, 0x2a, UINT64_MAX - 10, R1_LEN, NULL, NULL, buf,
                                     sizeof buf, &bl, &e), BQ_E_IO);
    assert_string_equal(e.msg, REL2A ": record at offset 18446744073709551605: 244 bytes would "
                        "end past the end of the file (764 bytes)");
    assert_int_equal(store_pack_read(f->store, 0x2a, R1, 0xffffffffu, NULL, NULL, buf,
                                     sizeof buf, &bl, &e), BQ_E_IO);
    assert_string_equal(e.msg, REL2A ": record at offset 176: length 4294967295 out of range (44 "
                        "to 16781356)");
    /* a record boundary that is not one */
    assert_int_equal(store_pack_read(f->store, 0x2a, R1 + 1, R1_LEN, NULL, NULL, buf, sizeof buf,
                                     &bl, &e), BQ_E_IO);
    assert_non_null(strstr(e.msg, ": record at offset 177: bad magic 0x"));
    /* the scan of a missing pack */
    uint64_t good_end = 5;
    assert_int_equal(store_pack_scan(f->store, 0x2b, NULL, NULL, &good_end, &e), BQ_E_IO);
    assert_int_equal(good_end, 0);
    assert_int_equal(store_pack_file_sync(f->store, 0x2b, &e), BQ_E_IO);

    /* a well-formed header of another format, and one naming another pack */
    char path[512], other[512];
    pack_file(f, 0x2a, path, sizeof path);
    size_t size = 0;
    uint8_t *file = slurp(path, &size);
    put32(file + 8, 2);
    put32(file + 24, store_pack_crc32c(0, file, 24));
    spill(path, file, size);
    assert_int_equal(store_pack_read(f->store, 0x2a, R1, R1_LEN, NULL, NULL, buf, sizeof buf, &bl,
                                     &e), BQ_E_VERSION);
    assert_string_equal(e.msg, REL2A ": format 2 (this barque reads format 1)");
    put32(file + 8, 1);
    put32(file + 12, 4);
    put32(file + 24, store_pack_crc32c(0, file, 24));
    spill(path, file, size);
    assert_int_equal(store_pack_scan(f->store, 0x2a, NULL, NULL, NULL, &e), BQ_E_VERSION);
    assert_string_equal(e.msg, REL2A ": unknown header flags 0x00000004");
    put32(file + 12, 0);
    put32(file + 24, store_pack_crc32c(0, file, 24));
    pack_file(f, 0x12a, other, sizeof other);
    spill(other, file, size);
    assert_int_equal(store_pack_scan(f->store, 0x12a, NULL, NULL, NULL, &e), BQ_E_IO);
    assert_string_equal(e.msg, "pack packs/2a/000000000000012a.pack: header names pack "
                        "000000000000002a");
    free(file);
}

/* ---- failing writers ------------------------------------------------------------------ */

static void expect_dead(store_pack_writer_t **w, const char *why)
{
    bq_errbuf_t e = {{0}};
    uint8_t cid[32] = {1};
    char want[512];
    snprintf(want, sizeof want, REL2A ": writer unusable after an earlier error: %s", why);
    assert_int_equal(store_pack_append(*w, cid, "x", 1, NULL, NULL, &e), BQ_E_IO);
    assert_string_equal(e.msg, want);
    assert_int_equal(store_pack_sync(*w, &e), BQ_E_IO);
    assert_string_equal(e.msg, want);
    assert_int_equal(store_pack_close(w, &e), BQ_E_IO);
    assert_string_equal(e.msg, want);
    assert_null(*w);
}

/* The records synced before the failure are intact. */
static void expect_first_record(const fixture_t *f, uint64_t off, uint32_t rl)
{
    bq_errbuf_t e = {{0}};
    uint8_t cid[32], buf[64];
    size_t bl = 0;
    make_id(0, cid);
    assert_int_equal(store_pack_read(f->store, 0x2a, off, rl, cid, NULL, buf, sizeof buf, &bl,
                                     &e), 0);
    assert_int_equal(bl, 10);
}

static void test_writer_write_fails(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    char path[512];
    pack_file(f, 0x2a, path, sizeof path);
    uint8_t cid[32], body[10];
    make_id(0, cid);
    make_body(0, body, sizeof body);
    store_pack_writer_t *w = NULL;
    uint64_t off;
    uint32_t rl;
    assert_int_equal(store_pack_create(f->store, 0x2a, &w, &e), 0);
    assert_int_equal(store_pack_append(w, cid, body, sizeof body, &off, &rl, &e), 0);
    assert_int_equal(store_pack_sync(w, &e), 0);

    /* the descriptor now refers to a read-only file: the next write fails with EBADF */
    int fd = writer_fd(path);
    int ro = open("/dev/null", O_RDONLY);
    assert_true(ro >= 0);
    assert_int_equal(dup2(ro, fd), fd);
    close(ro);
    /* buffered: the append succeeds, the sync's write fails */
    assert_int_equal(store_pack_append(w, cid, body, sizeof body, NULL, NULL, &e), 0);
    assert_int_equal(store_pack_sync(w, &e), BQ_E_IO);
    assert_string_equal(e.msg, REL2A ": could not write: Bad file descriptor");
    expect_dead(&w, "pack packs/2a/000000000000002a.pack: could not write: Bad file descriptor");
    expect_first_record(f, off, rl);
}

static void test_writer_enospc(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    char path[512];
    pack_file(f, 0x2a, path, sizeof path);
    uint8_t cid[32], body[10];
    make_id(0, cid);
    make_body(0, body, sizeof body);
    store_pack_writer_t *w = NULL;
    uint64_t off;
    uint32_t rl;
    assert_int_equal(store_pack_create(f->store, 0x2a, &w, &e), 0);
    assert_int_equal(store_pack_append(w, cid, body, sizeof body, &off, &rl, &e), 0);
    assert_int_equal(store_pack_sync(w, &e), 0);

    int fd = writer_fd(path);
    int full = open("/dev/full", O_WRONLY);
    if (full < 0) {
        store_pack_abandon(&w);
        skip();
    }
    assert_int_equal(dup2(full, fd), fd);
    close(full);
    /* a body larger than the writer's buffer is written at once: the append itself fails */
    uint8_t *big = calloc(1, 2u << 20);
    assert_non_null(big);
    assert_int_equal(store_pack_append(w, cid, big, 2u << 20, NULL, NULL, &e), BQ_E_IO);
    free(big);
    assert_string_equal(e.msg, REL2A ": could not write: No space left on device");
    expect_dead(&w, "pack packs/2a/000000000000002a.pack: could not write: No space left on "
                "device");
    expect_first_record(f, off, rl);
}

static void test_writer_fsync_fails(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    char path[512];
    pack_file(f, 0x2a, path, sizeof path);
    uint8_t cid[32], body[10];
    make_id(0, cid);
    make_body(0, body, sizeof body);
    store_pack_writer_t *w = NULL;
    uint64_t off;
    uint32_t rl;
    assert_int_equal(store_pack_create(f->store, 0x2a, &w, &e), 0);
    assert_int_equal(store_pack_append(w, cid, body, sizeof body, &off, &rl, &e), 0);
    assert_int_equal(store_pack_sync(w, &e), 0);
    /* a large body is written by the append; then the file is swapped for one whose fsync
     * fails (EINVAL): the sync must fail, and stay failed */
    uint8_t *big = calloc(1, 2u << 20);
    assert_non_null(big);
    assert_int_equal(store_pack_append(w, cid, big, 2u << 20, NULL, NULL, &e), 0);
    free(big);
    int fd = writer_fd(path);
    int ro = open("/dev/null", O_RDONLY);
    assert_true(ro >= 0);
    assert_int_equal(dup2(ro, fd), fd);
    close(ro);
    assert_int_equal(store_pack_sync(w, &e), BQ_E_IO);
    assert_string_equal(e.msg, REL2A ": could not fsync: Invalid argument");
    expect_dead(&w, "pack packs/2a/000000000000002a.pack: could not fsync: Invalid argument");
    expect_first_record(f, off, rl);
}

static void test_create_fails(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_pack_writer_t *w = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/packs", f->store);
    spill(path, (const uint8_t *)"x", 1); /* a file where the packs directory should be */
    assert_int_equal(store_pack_create(f->store, 0x2a, &w, &e), BQ_E_IO);
    assert_null(w);
    assert_non_null(strstr(e.msg, "could not create directory"));
    assert_int_equal(store_pack_create(NULL, 0x2a, &w, &e), BQ_E_INVAL);
    assert_int_equal(store_pack_create("", 0x2a, &w, &e), BQ_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_paths),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_pack_and_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_write_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_fsync_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_fails, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
