/* Pack files: see pack.h and docs/store.md ("Packs").
 *
 * Writer: records are gathered in a 1 MiB buffer and written with pwrite at the writer's own
 * offset (a body larger than the buffer goes straight to the file). The first failed write
 * or fsync kills the writer for good: its message is kept and every later call returns it.
 *
 * Readers open the pack for each call, check its header, pread what they need and close it:
 * nothing is cached, so a pack deleted or replaced underneath is seen at once. Scans read
 * through a window (1 MiB, grown to the largest record seen) so that a pack of small records
 * costs one read per MiB. */
#include "pack.h"

#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define PACK_CRC_HW 1
#endif

#define PACK_WBUF (1u << 20)       /* writer buffer */
#define PACK_RWIN (1u << 20)       /* scan window */

static const uint8_t PACK_MAGIC[8] = {'B', 'Q', 'P', 'A', 'C', 'K', 0, 0};

/* ---- little-endian -------------------------------------------------------------------- */

static void le32_put(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8)
        b[i] = (uint8_t)v;
}

static void le64_put(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        b[i] = (uint8_t)v;
}

static uint32_t le32_get(const uint8_t *b)
{
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
           ((uint32_t)b[3] << 24);
}

static uint64_t le64_get(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

/* ---- crc32c --------------------------------------------------------------------------- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

/* Slicing-by-8 on the inverted crc. */
static uint32_t crc32c_sw(uint32_t c, const uint8_t *p, size_t n)
{
    pthread_once(&crc_once, crc_table_init);
    while (n >= 8) {
        uint32_t lo = c ^ le32_get(p);
        uint32_t hi = le32_get(p + 4);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
            crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return c;
}

#ifdef PACK_CRC_HW
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t c, const uint8_t *p,
                                                             size_t n)
{
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}
#endif

uint32_t store_pack_crc32c(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;
    if (len == 0)
        return crc;
#ifdef PACK_CRC_HW
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc32c_hw(c, p, len);
#endif
    return ~crc32c_sw(c, p, len);
}

/* ---- paths ---------------------------------------------------------------------------- */

int store_pack_path(const char *store_dir, uint64_t pack_id, char *buf, size_t len)
{
    int n;
    if (store_dir)
        n = snprintf(buf, len, "%s/packs/%02x/%016" PRIx64 ".pack", store_dir,
                     (unsigned)(pack_id & 0xff), pack_id);
    else
        n = snprintf(buf, len, "packs/%02x/%016" PRIx64 ".pack", (unsigned)(pack_id & 0xff),
                     pack_id);
    if (n < 0 || (size_t)n >= len) {
        if (len)
            buf[0] = '\0';
        return BQ_E_INVAL;
    }
    return 0;
}

static void rel_path(uint64_t pack_id, char rel[STORE_PACK_PATH_REL_MAX])
{
    store_pack_path(NULL, pack_id, rel, STORE_PACK_PATH_REL_MAX);
}

static int full_path(const char *store_dir, uint64_t pack_id, char *buf, size_t len,
                     bq_errbuf_t *e)
{
    if (!store_dir || !*store_dir)
        return bq_fail(e, BQ_E_INVAL, "no store directory for pack %016" PRIx64, pack_id);
    if (store_pack_path(store_dir, pack_id, buf, len) != 0)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", store_dir);
    return 0;
}

static void id_hex(const uint8_t id[STORE_CHUNK_ID_BYTES], char out[2 * STORE_CHUNK_ID_BYTES + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < STORE_CHUNK_ID_BYTES; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[2 * STORE_CHUNK_ID_BYTES] = '\0';
}

/* ---- raw I/O -------------------------------------------------------------------------- */

static int pwrite_all(int fd, const void *data, size_t n, uint64_t off)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Read exactly n bytes at off; -1 with errno on error, or with errno 0 at end of file. */
static int pread_all(int fd, void *data, size_t n, uint64_t off)
{
    uint8_t *p = data;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = 0;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static const char *read_error(void)
{
    return errno ? strerror(errno) : "unexpected end of file";
}

/* ---- header --------------------------------------------------------------------------- */

static void header_encode(uint8_t h[STORE_PACK_HEADER_LEN], uint64_t pack_id)
{
    memcpy(h, PACK_MAGIC, 8);
    le32_put(h + 8, STORE_PACK_FORMAT);
    le32_put(h + 12, 0);
    le64_put(h + 16, pack_id);
    le32_put(h + 24, store_pack_crc32c(0, h, 24));
    le32_put(h + 28, 0);
}

static int header_check(const char *rel, uint64_t pack_id, uint64_t size, int fd,
                        bq_errbuf_t *e)
{
    uint8_t h[STORE_PACK_HEADER_LEN];
    if (size < STORE_PACK_HEADER_LEN)
        return bq_fail(e, BQ_E_IO, "pack %s: truncated header (%" PRIu64 " bytes, expected %u)",
                       rel, size, STORE_PACK_HEADER_LEN);
    if (pread_all(fd, h, sizeof h, 0) != 0)
        return bq_fail(e, BQ_E_IO, "pack %s: could not read the header: %s", rel, read_error());
    if (memcmp(h, PACK_MAGIC, sizeof PACK_MAGIC) != 0)
        return bq_fail(e, BQ_E_IO, "pack %s: bad header magic (not a barque pack)", rel);
    uint32_t stored = le32_get(h + 24), computed = store_pack_crc32c(0, h, 24);
    if (stored != computed)
        return bq_fail(e, BQ_E_IO, "pack %s: header crc mismatch (stored 0x%08" PRIx32
                       ", computed 0x%08" PRIx32 ")", rel, stored, computed);
    uint32_t format = le32_get(h + 8), flags = le32_get(h + 12);
    if (format != STORE_PACK_FORMAT)
        return bq_fail(e, BQ_E_VERSION, "pack %s: format %" PRIu32 " (this barque reads format %u)",
                       rel, format, STORE_PACK_FORMAT);
    if (flags != 0)
        return bq_fail(e, BQ_E_VERSION, "pack %s: unknown header flags 0x%08" PRIx32, rel, flags);
    uint64_t hid = le64_get(h + 16);
    if (hid != pack_id)
        return bq_fail(e, BQ_E_IO, "pack %s: header names pack %016" PRIx64, rel, hid);
    uint32_t reserved = le32_get(h + 28);
    if (reserved != 0)
        return bq_fail(e, BQ_E_IO, "pack %s: reserved header field is 0x%08" PRIx32
                       ", expected 0", rel, reserved);
    return 0;
}

/* Open pack_id read-only, learn its size and check its header. */
static int pack_open_ro(const char *store_dir, uint64_t pack_id, const char *rel, int *fd_out,
                        uint64_t *size_out, bq_errbuf_t *e)
{
    char path[PATH_MAX];
    int rc = full_path(store_dir, pack_id, path, sizeof path, e);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "pack %s: %s: %s", rel,
                       errno == ENOENT ? "missing" : "could not open", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return bq_fail(e, BQ_E_IO, "pack %s: could not stat: %s", rel, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bq_fail(e, BQ_E_IO, "pack %s: not a regular file", rel);
    }
    rc = header_check(rel, pack_id, (uint64_t)st.st_size, fd, e);
    if (rc) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    *size_out = (uint64_t)st.st_size;
    return 0;
}

/* ---- writer --------------------------------------------------------------------------- */

struct store_pack_writer {
    int fd;
    uint64_t id;
    uint64_t size;        /* bytes of the pack: written + buffered */
    uint64_t written;     /* bytes handed to the file */
    uint64_t synced;      /* bytes covered by the last successful sync */
    uint8_t *buf;
    size_t buf_len;
    int dirs_synced;
    int dead;             /* 0, or the code that made the writer unusable */
    char why[BQ_ERRMSG_MAX];
    char rel[STORE_PACK_PATH_REL_MAX];
    char store[PATH_MAX];
};

/* Make the writer unusable for good, with msg as the reason; returns code with msg in e. */
static int writer_kill(store_pack_writer_t *w, int code, bq_errbuf_t *e, const char *msg)
{
    w->dead = code;
    snprintf(w->why, sizeof w->why, "%s", msg);
    return bq_fail(e, code, "%s", msg);
}

static int writer_usable(store_pack_writer_t *w, bq_errbuf_t *e)
{
    if (!w)
        return bq_fail(e, BQ_E_INVAL, "no pack writer");
    if (w->dead)
        return bq_fail(e, w->dead, "pack %s: writer unusable after an earlier error: %s", w->rel,
                       w->why);
    return 0;
}

static int writer_io_fail(store_pack_writer_t *w, bq_errbuf_t *e, const char *what, int err)
{
    char msg[BQ_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "pack %s: could not %s: %s", w->rel, what, strerror(err));
    return writer_kill(w, BQ_E_IO, e, msg);
}

static int writer_put(store_pack_writer_t *w, const void *data, size_t n, bq_errbuf_t *e)
{
    if (pwrite_all(w->fd, data, n, w->written) != 0)
        return writer_io_fail(w, e, "write", errno);
    w->written += n;
    return 0;
}

static int writer_flush(store_pack_writer_t *w, bq_errbuf_t *e)
{
    if (w->buf_len == 0)
        return 0;
    int rc = writer_put(w, w->buf, w->buf_len, e);
    if (rc == 0)
        w->buf_len = 0;
    return rc;
}

int store_pack_create(const char *store_dir, uint64_t pack_id, store_pack_writer_t **out,
                      bq_errbuf_t *e)
{
    *out = NULL;
    char path[PATH_MAX], dir[PATH_MAX];
    int rc = full_path(store_dir, pack_id, path, sizeof path, e);
    if (rc)
        return rc;
    store_pack_writer_t *w = calloc(1, sizeof *w);
    uint8_t *buf = malloc(PACK_WBUF);
    if (!w || !buf) {
        free(w);
        free(buf);
        return bq_fail(e, BQ_E_NOMEM, "out of memory creating pack %016" PRIx64, pack_id);
    }
    w->fd = -1;
    w->id = pack_id;
    w->buf = buf;
    rel_path(pack_id, w->rel);
    snprintf(w->store, sizeof w->store, "%s", store_dir);
    snprintf(dir, sizeof dir, "%s/packs/%02x", store_dir, (unsigned)(pack_id & 0xff));
    rc = bq_mkdir_p(dir, 0700, e);
    if (rc) {
        store_pack_abandon(&w);
        return rc;
    }
    w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        int err = errno;
        store_pack_abandon(&w);
        if (err == EEXIST)
            return bq_fail(e, BQ_E_EXISTS, "pack packs/%02x/%016" PRIx64 ".pack: already exists",
                           (unsigned)(pack_id & 0xff), pack_id);
        return bq_fail(e, BQ_E_IO, "pack packs/%02x/%016" PRIx64 ".pack: could not create: %s",
                       (unsigned)(pack_id & 0xff), pack_id, strerror(err));
    }
    header_encode(w->buf, pack_id);
    w->buf_len = STORE_PACK_HEADER_LEN;
    w->size = STORE_PACK_HEADER_LEN;
    *out = w;
    return 0;
}

int store_pack_append(store_pack_writer_t *w, const uint8_t id[STORE_CHUNK_ID_BYTES],
                      const void *body, size_t len, uint64_t *offset, uint32_t *rec_len,
                      bq_errbuf_t *e)
{
    int rc = writer_usable(w, e);
    if (rc)
        return rc;
    if (len > STORE_PACK_BODY_MAX)
        return bq_fail(e, BQ_E_INVAL, "pack %s: record body of %zu bytes exceeds the limit of %u bytes",
                       w->rel, len, STORE_PACK_BODY_MAX);
    if (len && !body)
        return bq_fail(e, BQ_E_INVAL, "pack %s: no body for a record of %zu bytes", w->rel, len);
    size_t rlen = STORE_PACK_RECORD_OVERHEAD + len;
    uint8_t pre[STORE_PACK_RECORD_PREFIX], tail[4];
    le32_put(pre, STORE_PACK_RECORD_MAGIC);
    le32_put(pre + 4, (uint32_t)len);
    memcpy(pre + 8, id, STORE_CHUNK_ID_BYTES);
    uint32_t crc = store_pack_crc32c(0, pre + 4, STORE_PACK_RECORD_PREFIX - 4);
    crc = store_pack_crc32c(crc, body, len);
    le32_put(tail, crc);

    uint64_t at = w->size;
    if (w->buf_len + rlen > PACK_WBUF && (rc = writer_flush(w, e)) != 0)
        return rc;
    if (rlen <= PACK_WBUF) {
        memcpy(w->buf + w->buf_len, pre, sizeof pre);
        if (len)
            memcpy(w->buf + w->buf_len + sizeof pre, body, len);
        memcpy(w->buf + w->buf_len + sizeof pre + len, tail, sizeof tail);
        w->buf_len += rlen;
    } else if ((rc = writer_put(w, pre, sizeof pre, e)) != 0 ||
               (rc = writer_put(w, body, len, e)) != 0 ||
               (rc = writer_put(w, tail, sizeof tail, e)) != 0) {
        return rc;
    }
    w->size += rlen;
    if (offset)
        *offset = at;
    if (rec_len)
        *rec_len = (uint32_t)rlen;
    return 0;
}

uint64_t store_pack_size(const store_pack_writer_t *w)
{
    return w ? w->size : 0;
}

uint64_t store_pack_id(const store_pack_writer_t *w)
{
    return w ? w->id : 0;
}

int store_pack_sync(store_pack_writer_t *w, bq_errbuf_t *e)
{
    int rc = writer_usable(w, e);
    if (rc)
        return rc;
    if ((rc = writer_flush(w, e)) != 0)
        return rc;
    if (w->synced == w->size && w->dirs_synced)
        return 0;
    if (fsync(w->fd) != 0)
        return writer_io_fail(w, e, "fsync", errno);
    if (!w->dirs_synced) {
        /* The new file's name (and, for the first pack, its directories) must be durable. */
        char dir[PATH_MAX];
        bq_errbuf_t de;
        for (int level = 0; level < 3; level++) {
            if (level == 0)
                snprintf(dir, sizeof dir, "%s/packs/%02x", w->store, (unsigned)(w->id & 0xff));
            else if (level == 1)
                snprintf(dir, sizeof dir, "%s/packs", w->store);
            else
                snprintf(dir, sizeof dir, "%s", w->store);
            if (bq_fsync_dir_of(dir, &de) != 0) {
                char msg[BQ_ERRMSG_MAX];
                snprintf(msg, sizeof msg, "pack %s: %s", w->rel, de.msg);
                return writer_kill(w, BQ_E_IO, e, msg);
            }
        }
        w->dirs_synced = 1;
    }
    w->synced = w->size;
    return 0;
}

int store_pack_close(store_pack_writer_t **w_p, bq_errbuf_t *e)
{
    if (!w_p || !*w_p)
        return 0;
    store_pack_writer_t *w = *w_p;
    int rc = store_pack_sync(w, e);
    if (rc == 0 && close(w->fd) != 0) {
        int err = errno;
        w->fd = -1;
        rc = writer_io_fail(w, e, "close", err);
    }
    w->fd = -1;
    store_pack_abandon(w_p);
    return rc;
}

void store_pack_abandon(store_pack_writer_t **w_p)
{
    if (!w_p || !*w_p)
        return;
    store_pack_writer_t *w = *w_p;
    if (w->fd >= 0)
        close(w->fd);
    free(w->buf);
    free(w);
    *w_p = NULL;
}

/* ---- records -------------------------------------------------------------------------- */

/* Check a record's prefix (magic, body length bound); *body_len gets the length. */
static int prefix_check(const char *rel, uint64_t off, const uint8_t pre[STORE_PACK_RECORD_PREFIX],
                        uint32_t *body_len, bq_errbuf_t *e)
{
    uint32_t magic = le32_get(pre);
    if (magic != STORE_PACK_RECORD_MAGIC)
        return bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": bad magic 0x%08" PRIx32
                       " (expected 0x%08x)", rel, off, magic, STORE_PACK_RECORD_MAGIC);
    uint32_t len = le32_get(pre + 4);
    if (len > STORE_PACK_BODY_MAX)
        return bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": body length %" PRIu32
                       " exceeds the limit of %u bytes", rel, off, len, STORE_PACK_BODY_MAX);
    *body_len = len;
    return 0;
}

static int crc_check(const char *rel, uint64_t off, const uint8_t pre[STORE_PACK_RECORD_PREFIX],
                     const void *body, size_t len, const uint8_t tail[4], bq_errbuf_t *e)
{
    uint32_t computed = store_pack_crc32c(0, pre + 4, STORE_PACK_RECORD_PREFIX - 4);
    computed = store_pack_crc32c(computed, body, len);
    uint32_t stored = le32_get(tail);
    if (stored != computed)
        return bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": crc mismatch (stored "
                       "0x%08" PRIx32 ", computed 0x%08" PRIx32 ")", rel, off, stored, computed);
    return 0;
}

/* Read the record's prefix, body and crc with one preadv. */
static int pread_record(int fd, uint8_t *pre, void *body, size_t len, uint8_t *tail,
                        uint64_t offset)
{
    struct iovec iov[3] = {{pre, STORE_PACK_RECORD_PREFIX}, {body, len}, {tail, 4}};
    size_t want = STORE_PACK_RECORD_PREFIX + len + 4;
    ssize_t n;
    do
        n = preadv(fd, iov, 3, (off_t)offset);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)want)
        return 0;
    if (n >= 0) { /* short (a file that shrank?): fall back to the careful path */
        if (pread_all(fd, pre, STORE_PACK_RECORD_PREFIX, offset) != 0 ||
            (len && pread_all(fd, body, len, offset + STORE_PACK_RECORD_PREFIX) != 0) ||
            pread_all(fd, tail, 4, offset + STORE_PACK_RECORD_PREFIX + len) != 0)
            return -1;
        return 0;
    }
    return -1;
}

void store_pack_cache_close(store_pack_cache_t *pc)
{
    if (pc && pc->fd >= 0)
        close(pc->fd);
    if (pc)
        *pc = (store_pack_cache_t)STORE_PACK_CACHE_INIT;
}

int store_pack_read_cached(store_pack_cache_t *pc, const char *store_dir, uint64_t pack_id,
                           uint64_t offset, uint32_t rec_len, const uint8_t *expect_id,
                           uint8_t id_out[STORE_CHUNK_ID_BYTES], void *body_buf, size_t cap,
                           size_t *body_len, bq_errbuf_t *e)
{
    char rel[STORE_PACK_PATH_REL_MAX];
    rel_path(pack_id, rel);
    if (body_len)
        *body_len = 0;
    if (cap && !body_buf)
        return bq_fail(e, BQ_E_INVAL, "pack %s: no buffer for a record body", rel);
    int fd = -1;
    uint64_t size = 0;
    int rc = 0;
    if (pc && pc->fd >= 0 && pc->pack_id == pack_id) {
        fd = pc->fd;
        size = pc->size;
        struct stat st;
        if ((offset > size || rec_len > size - offset) && fstat(fd, &st) == 0)
            size = pc->size = (uint64_t)st.st_size; /* a pack still being written grew */
    } else {
        store_pack_cache_close(pc);
        if ((rc = pack_open_ro(store_dir, pack_id, rel, &fd, &size, e)) != 0)
            return rc;
        if (pc) {
            pc->fd = fd;
            pc->pack_id = pack_id;
            pc->size = size;
        }
    }
    uint8_t pre[STORE_PACK_RECORD_PREFIX], tail[4];
    uint32_t len = 0;
    if (offset < STORE_PACK_HEADER_LEN) {
        rc = bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": offset inside the "
                     "header", rel, offset);
    } else if (rec_len < STORE_PACK_RECORD_OVERHEAD || rec_len > STORE_PACK_REC_MAX) {
        rc = bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": length %" PRIu32
                     " out of range (%u to %u)", rel, offset, rec_len, STORE_PACK_RECORD_OVERHEAD,
                     STORE_PACK_REC_MAX);
    } else if (offset > size || rec_len > size - offset) {
        rc = bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": %" PRIu32 " bytes "
                     "would end past the end of the file (%" PRIu64 " bytes)", rel, offset,
                     rec_len, size);
    } else if (rec_len - STORE_PACK_RECORD_OVERHEAD > cap) {
        rc = bq_fail(e, BQ_E_TOOBIG, "pack %s: record at offset %" PRIu64 ": body of %" PRIu32
                     " bytes does not fit a buffer of %zu", rel, offset,
                     rec_len - STORE_PACK_RECORD_OVERHEAD, cap);
    } else if (pread_record(fd, pre, body_buf, rec_len - STORE_PACK_RECORD_OVERHEAD, tail,
                            offset) != 0) {
        rc = bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": could not read: %s",
                     rel, offset, read_error());
    } else if ((rc = prefix_check(rel, offset, pre, &len, e)) != 0) {
        /* reported */
    } else if (len != rec_len - STORE_PACK_RECORD_OVERHEAD) {
        rc = bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": length mismatch "
                     "(expected %" PRIu32 " bytes, the record holds %" PRIu32 ")", rel, offset,
                     rec_len, len + STORE_PACK_RECORD_OVERHEAD);
    } else if ((rc = crc_check(rel, offset, pre, body_buf, len, tail, e)) != 0) {
        /* reported */
    } else if (expect_id && memcmp(expect_id, pre + 8, STORE_CHUNK_ID_BYTES) != 0) {
        char want[2 * STORE_CHUNK_ID_BYTES + 1], got[2 * STORE_CHUNK_ID_BYTES + 1];
        id_hex(expect_id, want);
        id_hex(pre + 8, got);
        rc = bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": holds chunk %s, "
                     "expected %s", rel, offset, got, want);
    }
    if (!pc)
        close(fd);
    else if (rc)
        store_pack_cache_close(pc); /* look again from scratch next time */
    if (rc)
        return rc;
    if (id_out)
        memcpy(id_out, pre + 8, STORE_CHUNK_ID_BYTES);
    if (body_len)
        *body_len = len;
    return 0;
}

int store_pack_read(const char *store_dir, uint64_t pack_id, uint64_t offset, uint32_t rec_len,
                    const uint8_t *expect_id, uint8_t id_out[STORE_CHUNK_ID_BYTES],
                    void *body_buf, size_t cap, size_t *body_len, bq_errbuf_t *e)
{
    return store_pack_read_cached(NULL, store_dir, pack_id, offset, rec_len, expect_id, id_out,
                                  body_buf, cap, body_len, e);
}

/* ---- scan ----------------------------------------------------------------------------- */

typedef struct {
    int fd;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t off;      /* file offset of buf[0] */
    size_t len;        /* valid bytes in buf */
} window_t;

/* Make [off, off + n) (within the file) available; returns a pointer into the window, or
 * NULL with errno set (ENOMEM, a read error, or 0 for a short file). */
static const uint8_t *window_get(window_t *w, uint64_t off, size_t n)
{
    if (off >= w->off && off + n <= w->off + w->len)
        return w->buf + (off - w->off);
    if (n > w->cap) {
        size_t cap = n > PACK_RWIN ? n : PACK_RWIN;
        uint8_t *b = realloc(w->buf, cap);
        if (!b) {
            errno = ENOMEM;
            return NULL;
        }
        w->buf = b;
        w->cap = cap;
    }
    uint64_t left = w->size - off;
    size_t want = left < w->cap ? (size_t)left : w->cap;
    if (want < n || pread_all(w->fd, w->buf, want, off) != 0) {
        w->len = 0;
        if (want < n)
            errno = 0;
        return NULL;
    }
    w->off = off;
    w->len = want;
    return w->buf;
}

int store_pack_scan(const char *store_dir, uint64_t pack_id, store_pack_scan_fn fn, void *arg,
                    uint64_t *good_end, bq_errbuf_t *e)
{
    char rel[STORE_PACK_PATH_REL_MAX];
    rel_path(pack_id, rel);
    if (good_end)
        *good_end = 0;
    window_t w = {.fd = -1};
    int rc = pack_open_ro(store_dir, pack_id, rel, &w.fd, &w.size, e);
    if (rc)
        return rc;
    uint64_t off = STORE_PACK_HEADER_LEN;
    while (off < w.size) {
        if (good_end)
            *good_end = off;
        uint64_t left = w.size - off;
        const uint8_t *p;
        uint32_t len = 0;
        if (left < STORE_PACK_RECORD_PREFIX) {
            rc = bq_fail(e, BQ_E_IO, "pack %s: truncated record at offset %" PRIu64 " (the file "
                         "ends %" PRIu64 " bytes into it; records are good up to offset %" PRIu64
                         ")", rel, off, left, off);
            break;
        }
        if (!(p = window_get(&w, off, STORE_PACK_RECORD_PREFIX))) {
            rc = bq_fail(e, BQ_E_IO, "pack %s: record at offset %" PRIu64 ": could not read: %s",
                         rel, off, read_error());
            break;
        }
        if ((rc = prefix_check(rel, off, p, &len, e)) != 0)
            break;
        size_t rlen = (size_t)len + STORE_PACK_RECORD_OVERHEAD;
        if (left < rlen) {
            rc = bq_fail(e, BQ_E_IO, "pack %s: truncated record at offset %" PRIu64 " (the file "
                         "ends %" PRIu64 " bytes into a record of %zu; records are good up to "
                         "offset %" PRIu64 ")", rel, off, left, rlen, off);
            break;
        }
        if (!(p = window_get(&w, off, rlen))) {
            rc = bq_fail(e, errno == ENOMEM ? BQ_E_NOMEM : BQ_E_IO, "pack %s: record at offset %"
                         PRIu64 ": could not read: %s", rel, off, read_error());
            break;
        }
        if ((rc = crc_check(rel, off, p, p + STORE_PACK_RECORD_PREFIX, len,
                            p + STORE_PACK_RECORD_PREFIX + len, e)) != 0)
            break;
        if (fn &&
            (rc = fn(p + 8, off, (uint32_t)rlen, p + STORE_PACK_RECORD_PREFIX, len, arg)) != 0)
            break;
        off += rlen;
    }
    if (rc == 0 && good_end)
        *good_end = w.size;
    close(w.fd);
    free(w.buf);
    return rc;
}

int store_pack_file_sync(const char *store_dir, uint64_t pack_id, bq_errbuf_t *e)
{
    char path[PATH_MAX], rel[STORE_PACK_PATH_REL_MAX];
    int rc = full_path(store_dir, pack_id, path, sizeof path, e);
    if (rc)
        return rc;
    rel_path(pack_id, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "pack %s: %s: %s", rel,
                       errno == ENOENT ? "missing" : "could not open", strerror(errno));
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return bq_fail(e, BQ_E_IO, "pack %s: could not fsync: %s", rel, strerror(err));
    }
    close(fd);
    return 0;
}

/* ---- list ----------------------------------------------------------------------------- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parse exactly n lowercase hex digits. */
static int hex_parse(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = hex_digit(s[i]);
        if (d < 0)
            return -1;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return 0;
}

static int id_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    uint64_t *ids;
    size_t n, cap;
} id_list_t;

static int list_subdir(const char *dir, uint64_t xx, id_list_t *l, bq_errbuf_t *e)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOTDIR || errno == ENOENT)
            return 0;
        return bq_fail(e, BQ_E_IO, "could not list %s: %s", dir, strerror(errno));
    }
    struct dirent *de;
    int rc = 0;
    errno = 0;
    while ((de = readdir(d))) {
        uint64_t id;
        if (strlen(de->d_name) != 21 || strcmp(de->d_name + 16, ".pack") != 0 ||
            hex_parse(de->d_name, 16, &id) != 0 || (id & 0xff) != xx)
            continue;
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 256;
            uint64_t *ids = realloc(l->ids, cap * sizeof *ids);
            if (!ids) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", dir);
                break;
            }
            l->ids = ids;
            l->cap = cap;
        }
        l->ids[l->n++] = id;
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = bq_fail(e, BQ_E_IO, "could not list %s: %s", dir, strerror(errno));
    closedir(d);
    return rc;
}

int store_pack_list(const char *store_dir, store_pack_list_fn fn, void *arg, bq_errbuf_t *e)
{
    char packs[PATH_MAX], sub[PATH_MAX];
    if (!store_dir || !*store_dir)
        return bq_fail(e, BQ_E_INVAL, "no store directory to list packs of");
    if (snprintf(packs, sizeof packs, "%s/packs", store_dir) >= (int)sizeof packs)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", store_dir);
    DIR *d = opendir(packs);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return bq_fail(e, BQ_E_IO, "could not list %s: %s", packs, strerror(errno));
    }
    id_list_t l = {0};
    struct dirent *de;
    int rc = 0;
    errno = 0;
    while ((de = readdir(d))) {
        uint64_t xx;
        if (strlen(de->d_name) != 2 || hex_parse(de->d_name, 2, &xx) != 0) {
            errno = 0;
            continue;
        }
        snprintf(sub, sizeof sub, "%s/%s", packs, de->d_name);
        if ((rc = list_subdir(sub, xx, &l, e)) != 0)
            break;
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = bq_fail(e, BQ_E_IO, "could not list %s: %s", packs, strerror(errno));
    closedir(d);
    if (rc == 0 && l.n) {
        qsort(l.ids, l.n, sizeof *l.ids, id_cmp);
        for (size_t i = 0; i < l.n && rc == 0; i++)
            rc = fn(l.ids[i], arg);
    }
    free(l.ids);
    return rc;
}
