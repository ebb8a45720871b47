#include "wal.h"

#include "fsutil.h"

#include <dirent.h>
#include <lz4.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFLICT_SUFFIX ".conflict-"
#define CONFLICT_HEX 16
#define SHA_HEX (2 * STORE_WAL_SHA256_BYTES + 1)

/* ---- small helpers ---- */

static void put32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void put64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static char *sha_hex(const uint8_t sha[STORE_WAL_SHA256_BYTES], char out[SHA_HEX])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < STORE_WAL_SHA256_BYTES; i++) {
        out[2 * i] = digits[sha[i] >> 4];
        out[2 * i + 1] = digits[sha[i] & 15];
    }
    out[2 * STORE_WAL_SHA256_BYTES] = '\0';
    return out;
}

static int sha256(const void *data, size_t len, uint8_t out[STORE_WAL_SHA256_BYTES],
                  bq_errbuf_t *e)
{
    static const uint8_t empty[1] = {0};
    unsigned int n = 0;
    if (EVP_Digest(len ? data : empty, len, out, &n, EVP_sha256(), NULL) != 1 ||
        n != STORE_WAL_SHA256_BYTES)
        return bq_fail(e, BQ_E_NOMEM, "could not compute sha256: libcrypto failed");
    return 0;
}

static int is_uhex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static int all_uhex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_uhex(s[i]))
            return 0;
    return 1;
}

static uint32_t hex8(const char *s)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 4) | (uint32_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'A' + 10);
    return v;
}

static size_t pieces_of(uint64_t raw)
{
    return raw == 0 ? 1 : (size_t)((raw + STORE_WAL_PIECE - 1) / STORE_WAL_PIECE);
}

size_t store_wal_pieces(uint64_t raw_len)
{
    return pieces_of(raw_len);
}

/* The raw length of piece i of a raw-byte file. */
static size_t piece_len(uint64_t raw, size_t i)
{
    uint64_t pos = (uint64_t)i * STORE_WAL_PIECE;
    return raw - pos < STORE_WAL_PIECE ? (size_t)(raw - pos) : STORE_WAL_PIECE;
}

static int seg_size_ok(size_t s)
{
    return s >= STORE_WAL_SEG_MIN && s <= STORE_WAL_SEG_MAX && (s & (s - 1)) == 0;
}

/* Read up to n bytes; the count read (short only at end of file), or -1 with errno. */
static ssize_t read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (uint8_t *)buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int damaged(bq_errbuf_t *e, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int damaged(bq_errbuf_t *e, const char *path, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return bq_fail(e, BQ_E_IO, "WAL file %s is damaged (%s)", path, why);
}

static int fsync_path(const char *path, bq_errbuf_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return bq_fail(e, BQ_E_IO, "could not fsync %s: %s", path, strerror(err));
    }
    close(fd);
    return 0;
}

static int make_dir(const char *path, bq_errbuf_t *e)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return bq_fail(e, BQ_E_IO, "could not create directory %s: %s", path, strerror(errno));
    return 0;
}

/* ---- names ---- */

int store_wal_name_parse(const char *name, store_wal_kind_t *kind, uint32_t *tli, bq_errbuf_t *e)
{
    if (!name || !*name)
        return bq_fail(e, BQ_E_INVAL, "invalid WAL file name \"\" (empty)");
    size_t n = strnlen(name, STORE_WAL_NAME_MAX);
    store_wal_kind_t k;
    if (n == 24 && all_uhex(name, 24))
        k = STORE_WAL_SEGMENT;
    else if (n == 32 && all_uhex(name, 24) && strcmp(name + 24, ".partial") == 0)
        k = STORE_WAL_PARTIAL;
    else if (n == 16 && all_uhex(name, 8) && strcmp(name + 8, ".history") == 0)
        k = STORE_WAL_HISTORY;
    else if (n == 40 && all_uhex(name, 24) && name[24] == '.' && all_uhex(name + 25, 8) &&
             strcmp(name + 33, ".backup") == 0)
        k = STORE_WAL_BACKUP;
    else
        return bq_fail(e, BQ_E_INVAL,
                       "invalid WAL file name \"%.80s\" (not a segment, .partial, .history or "
                       ".backup file name in uppercase hex)",
                       name);
    uint32_t t = hex8(name);
    if (t == 0)
        return bq_fail(e, BQ_E_INVAL, "invalid WAL file name \"%s\" (timeline 0)", name);
    if (kind)
        *kind = k;
    if (tli)
        *tli = t;
    return 0;
}

int store_wal_check(const char *name, size_t seg_size, size_t len, bq_errbuf_t *e)
{
    store_wal_kind_t kind;
    int rc = store_wal_name_parse(name, &kind, NULL, e);
    if (rc)
        return rc;
    if (!seg_size_ok(seg_size))
        return bq_fail(e, BQ_E_INVAL,
                       "invalid WAL segment size %zu for %s (a power of two from 1 MiB to 1 GiB)",
                       seg_size, name);
    if (kind != STORE_WAL_HISTORY) {
        /* 24 digits: timeline, log, segment; a log holds 4 GiB of segments */
        uint64_t per_log = ((uint64_t)1 << 32) / seg_size;
        if (hex8(name + 16) >= per_log)
            return bq_fail(e, BQ_E_INVAL,
                           "invalid WAL file name \"%s\" (segment number %08X is above %08X for "
                           "a segment size of %zu)",
                           name, (unsigned)hex8(name + 16), (unsigned)(per_log - 1), seg_size);
    }
    switch (kind) {
    case STORE_WAL_SEGMENT:
        if (len != seg_size)
            return bq_fail(e, BQ_E_INVAL, "WAL segment %s holds %zu bytes, not the segment size %zu",
                           name, len, seg_size);
        break;
    case STORE_WAL_PARTIAL:
        if (len > seg_size)
            return bq_fail(e, BQ_E_INVAL,
                           "partial WAL segment %s holds %zu bytes, more than the segment size %zu",
                           name, len, seg_size);
        break;
    case STORE_WAL_HISTORY:
    case STORE_WAL_BACKUP:
        if (len > STORE_WAL_SMALL_MAX)
            return bq_fail(e, BQ_E_INVAL, "%s file %s holds %zu bytes, more than the limit of %zu",
                           kind == STORE_WAL_HISTORY ? "timeline history" : "backup history",
                           name, len, STORE_WAL_SMALL_MAX);
        break;
    }
    return 0;
}

/* ---- paths ---- */

typedef struct {
    char root[PATH_MAX]; /* STORE/wal */
    char wal[PATH_MAX];  /* STORE/wal/CLUSTER */
    char tli[PATH_MAX];  /* STORE/wal/CLUSTER/TLI */
    char file[PATH_MAX]; /* STORE/wal/CLUSTER/TLI/NAME */
} wal_paths_t;

int store_wal_cluster_valid(const char *c)
{
    size_t n = c ? strlen(c) : 0;
    if (n == 0 || n > STORE_WAL_CLUSTER_MAX || c[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= 'A' && c[i] <= 'Z') ||
              (c[i] >= '0' && c[i] <= '9') || c[i] == '.' || c[i] == '_' || c[i] == '-'))
            return 0;
    return 1;
}

static int cluster_check(const char *cluster, bq_errbuf_t *e)
{
    if (store_wal_cluster_valid(cluster))
        return 0;
    return bq_fail(e, BQ_E_INVAL, "invalid cluster name \"%.80s\" for the WAL area (1 to %d of "
                   "[A-Za-z0-9._-], not starting with '.')", cluster ? cluster : "",
                   STORE_WAL_CLUSTER_MAX);
}

static int make_paths(const char *store_dir, const char *cluster, const char *name,
                      wal_paths_t *p, bq_errbuf_t *e)
{
    int rc = cluster_check(cluster, e);
    if (rc)
        return rc;
    if (snprintf(p->root, sizeof p->root, "%s/wal", store_dir) >= (int)sizeof p->root ||
        snprintf(p->wal, sizeof p->wal, "%s/%s", p->root, cluster) >= (int)sizeof p->wal ||
        snprintf(p->tli, sizeof p->tli, "%s/%.8s", p->wal, name) >= (int)sizeof p->tli ||
        snprintf(p->file, sizeof p->file, "%s/%s", p->tli, name) >= (int)sizeof p->file)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s/wal/%s/%.8s/%s", store_dir, cluster,
                       name, name);
    return 0;
}

/* ---- reading a stored file ---- */

typedef struct {
    int version;                         /* 1: BQWAL001, 2: BQWAL002 */
    uint8_t sha[STORE_WAL_SHA256_BYTES]; /* version 1: sha256; 2: the content id */
    uint64_t raw;
    uint64_t size; /* of the file */
} wal_head_t;

/* Open path and check its header against kind: *fd is left after the header. BQ_E_NOTFOUND
 * only when path does not exist. */
static int wal_open(const char *path, store_wal_kind_t kind, int *fd_out, wal_head_t *h,
                    bq_errbuf_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return bq_fail(e, BQ_E_NOTFOUND, "WAL file %s does not exist", path);
        return bq_fail(e, BQ_E_IO, "could not open WAL file %s: %s", path, strerror(errno));
    }
    int rc;
    struct stat st;
    uint8_t hd[STORE_WAL_HEADER_BYTES];
    if (fstat(fd, &st) != 0) {
        rc = bq_fail(e, BQ_E_IO, "could not stat WAL file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = damaged(e, path, "not a regular file");
        goto fail;
    }
    ssize_t r = read_full(fd, hd, sizeof hd);
    if (r < 0) {
        rc = bq_fail(e, BQ_E_IO, "could not read WAL file %s: %s", path, strerror(errno));
        goto fail;
    }
    if ((size_t)r < sizeof hd) {
        rc = damaged(e, path, "%zd-byte file, shorter than the %d-byte header", r,
                     STORE_WAL_HEADER_BYTES);
        goto fail;
    }
    if (memcmp(hd, STORE_WAL_MAGIC, 8) == 0)
        h->version = 2;
    else if (memcmp(hd, STORE_WAL_MAGIC_V1, 8) == 0)
        h->version = 1;
    else {
        rc = damaged(e, path, "bad magic");
        goto fail;
    }
    memcpy(h->sha, hd + 8, STORE_WAL_SHA256_BYTES);
    h->raw = get64le(hd + 40);
    h->size = (uint64_t)st.st_size;
    uint64_t raw = h->raw;
    int ok;
    switch (kind) {
    case STORE_WAL_SEGMENT:
        ok = raw >= STORE_WAL_SEG_MIN && raw <= STORE_WAL_SEG_MAX && (raw & (raw - 1)) == 0;
        break;
    case STORE_WAL_PARTIAL:
        ok = raw <= STORE_WAL_SEG_MAX;
        break;
    default:
        ok = raw <= STORE_WAL_SMALL_MAX;
    }
    if (!ok) {
        rc = damaged(e, path, "length %llu is not possible for its name", (unsigned long long)raw);
        goto fail;
    }
    uint64_t overhead = STORE_WAL_HEADER_BYTES + (uint64_t)pieces_of(raw) *
                                                     (STORE_WAL_PIECE_HEADER_BYTES +
                                                      STORE_CHUNK_OVERHEAD);
    if (h->size < overhead || h->size > overhead + raw) {
        rc = damaged(e, path, "%llu-byte file cannot hold %llu bytes",
                     (unsigned long long)h->size, (unsigned long long)raw);
        goto fail;
    }
    *fd_out = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

int store_wal_stat(const char *store_dir, const char *cluster, const char *name, uint64_t *len,
                   int *version, uint8_t digest_out[STORE_WAL_SHA256_BYTES], bq_errbuf_t *e)
{
    store_wal_kind_t kind;
    wal_paths_t p;
    wal_head_t h;
    int fd = -1;
    int rc = store_wal_name_parse(name, &kind, NULL, e);
    if (!rc)
        rc = make_paths(store_dir, cluster, name, &p, e);
    if (!rc)
        rc = wal_open(p.file, kind, &fd, &h, e);
    if (rc)
        return rc;
    close(fd);
    if (len)
        *len = h.raw;
    if (version)
        *version = h.version;
    if (digest_out)
        memcpy(digest_out, h.sha, STORE_WAL_SHA256_BYTES);
    return 0;
}

int store_wal_get(const char *store_dir, const char *cluster, store_chunk_ctx_t *ctx, store_wal_key_fn key_lookup,
                  void *arg, const char *name, void *buf, size_t cap, size_t *len,
                  bq_errbuf_t *e)
{
    store_wal_kind_t kind;
    wal_paths_t p;
    wal_head_t h;
    int fd = -1;
    int rc = store_wal_name_parse(name, &kind, NULL, e);
    if (!rc)
        rc = make_paths(store_dir, cluster, name, &p, e);
    if (!rc)
        rc = wal_open(p.file, kind, &fd, &h, e);
    if (rc)
        return rc;
    if (h.raw > cap) {
        close(fd);
        return bq_fail(e, BQ_E_TOOBIG, "WAL file %s holds %llu bytes, more than the %zu-byte buffer",
                       p.file, (unsigned long long)h.raw, cap);
    }

    char where[PATH_MAX + 32];
    snprintf(where, sizeof where, "in WAL file %s", p.file);
    size_t npieces = pieces_of(h.raw);
    size_t body_max = store_chunk_seal_bound(h.raw < STORE_WAL_PIECE ? (size_t)h.raw
                                                                     : STORE_WAL_PIECE);
    uint8_t *body = malloc(body_max);
    if (!body) {
        close(fd);
        return bq_fail(e, BQ_E_NOMEM, "out of memory reading WAL file %s", p.file);
    }
    store_datakey_t dk = {0};
    int have_key = 0;
    size_t pos = 0;
    uint8_t first_id[STORE_CHUNK_ID_BYTES] = {0};
    for (size_t i = 0; i < npieces; i++) {
        size_t want = (size_t)h.raw - pos < STORE_WAL_PIECE ? (size_t)h.raw - pos : STORE_WAL_PIECE;
        uint8_t ph[STORE_WAL_PIECE_HEADER_BYTES];
        ssize_t r = read_full(fd, ph, sizeof ph);
        if (r < 0)
            goto read_error;
        if ((size_t)r < sizeof ph) {
            rc = damaged(e, p.file, "cut inside the header of piece %zu", i);
            goto out;
        }
        const uint8_t *id = ph;
        if (i == 0)
            memcpy(first_id, id, sizeof first_id);
        uint32_t blen = get32le(ph + STORE_CHUNK_ID_BYTES);
        if (blen < STORE_CHUNK_OVERHEAD || blen > store_chunk_seal_bound(want)) {
            rc = damaged(e, p.file, "piece %zu has a %u-byte body for %zu bytes", i,
                         (unsigned)blen, want);
            goto out;
        }
        r = read_full(fd, body, blen);
        if (r < 0)
            goto read_error;
        if ((size_t)r < blen) {
            rc = damaged(e, p.file, "cut inside the body of piece %zu", i);
            goto out;
        }
        store_chunk_head_t ch;
        rc = store_chunk_head(id, body, blen, &ch, where, e);
        if (rc)
            goto out;
        if (ch.raw_len != want) {
            rc = damaged(e, p.file, "piece %zu holds %u bytes, not %zu", i, (unsigned)ch.raw_len,
                         want);
            goto out;
        }
        if (!have_key || dk.id != ch.key_id) {
            store_datakey_clear(&dk);
            rc = key_lookup(arg, ch.key_id, &dk, e);
            if (rc) {
                /* NOTFOUND means "WAL file not archived" to restore_command: not this */
                char msg[BQ_ERRMSG_MAX];
                snprintf(msg, sizeof msg, "%s", e ? e->msg : "");
                rc = bq_fail(e, rc == BQ_E_NOTFOUND ? BQ_E_KEY : rc,
                             "could not get data key %08x for WAL file %s: %s",
                             (unsigned)ch.key_id, p.file, msg);
            }
            if (rc)
                goto out;
            have_key = 1;
        }
        size_t got = 0;
        rc = store_chunk_open(ctx, id, &dk, body, blen, want ? (uint8_t *)buf + pos : buf, want,
                              &got, where, e);
        if (rc)
            goto out;
        pos += got;
    }
    uint8_t extra;
    ssize_t r = read_full(fd, &extra, 1);
    if (r < 0)
        goto read_error;
    if (r > 0) {
        rc = damaged(e, p.file, "bytes after the last piece");
        goto out;
    }
    /* the whole against the header: version 1 holds the sha256; version 2 the content id,
     * which for a file of one piece is that piece's id, checked by store_chunk_open */
    uint8_t sha[STORE_WAL_SHA256_BYTES];
    if (h.version == 1)
        rc = sha256(buf, pos, sha, e);
    else if (npieces == 1)
        memcpy(sha, first_id, sizeof sha);
    else if (store_chunk_ctx_id(ctx, buf, pos, sha) != 0)
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory hashing WAL file %s", p.file);
    if (rc)
        goto out;
    if (memcmp(sha, h.sha, sizeof sha) != 0) {
        char a[SHA_HEX], b[SHA_HEX];
        rc = damaged(e, p.file, "%s %s of the content is not the %s of its header",
                     h.version == 1 ? "sha256" : "content id", sha_hex(sha, a),
                     sha_hex(h.sha, b));
        goto out;
    }
    *len = pos;
    rc = 0;
    goto out;
read_error:
    rc = bq_fail(e, BQ_E_IO, "could not read WAL file %s: %s", p.file, strerror(errno));
out:
    store_datakey_clear(&dk);
    free(body);
    close(fd);
    return rc;
}

/* ---- writing ---- */

/* The whole file for len bytes of data whose content id is cid: header and pieces, in a new
 * buffer (*out, caller frees). packed (may be NULL): the pieces as they came compressed. */
static int wal_build(store_chunk_ctx_t *ctx, const store_datakey_t *dk, store_comp_t comp,
                     int level, const char *name, const void *data, size_t len,
                     const store_wal_piece_t *packed, const uint8_t cid[STORE_CHUNK_ID_BYTES],
                     uint8_t **out, size_t *out_len, bq_errbuf_t *e)
{
    size_t npieces = pieces_of(len);
    size_t cap = STORE_WAL_HEADER_BYTES +
                 npieces * (STORE_WAL_PIECE_HEADER_BYTES + STORE_CHUNK_OVERHEAD) + len;
    uint8_t *f = malloc(cap);
    if (!f)
        return bq_fail(e, BQ_E_NOMEM, "out of memory archiving WAL file %s", name);
    memcpy(f, STORE_WAL_MAGIC, 8);
    memcpy(f + 8, cid, STORE_CHUNK_ID_BYTES);
    put64le(f + 40, len);
    size_t off = STORE_WAL_HEADER_BYTES, pos = 0;
    for (size_t i = 0; i < npieces; i++) {
        size_t n = piece_len(len, i);
        const uint8_t *piece = len ? (const uint8_t *)data + pos : data;
        uint8_t *id = f + off;
        int rc = 0;
        if (npieces == 1) /* the content id is the id of its only piece */
            memcpy(id, cid, STORE_CHUNK_ID_BYTES);
        else if ((rc = store_chunk_ctx_id(ctx, piece, n, id)) != 0) {
            free(f);
            return bq_fail(e, rc, "could not hash WAL file %s", name);
        }
        size_t blen = 0;
        uint8_t *body = f + off + STORE_WAL_PIECE_HEADER_BYTES;
        size_t room = cap - off - STORE_WAL_PIECE_HEADER_BYTES;
        if (packed && packed[i].comp != STORE_COMP_NONE && comp != STORE_COMP_NONE)
            rc = store_chunk_seal_packed(id, dk, packed[i].comp, n, packed[i].data,
                                         packed[i].len, body, room, &blen, e);
        else
            rc = store_chunk_seal(ctx, id, dk, comp, level, piece, n, body, room, &blen, e);
        if (rc) {
            free(f);
            return rc;
        }
        put32le(f + off + STORE_CHUNK_ID_BYTES, (uint32_t)blen);
        off += STORE_WAL_PIECE_HEADER_BYTES + blen;
        pos += n;
    }
    *out = f;
    *out_len = off;
    return 0;
}

/* The directories above a file just written or found again: wal/ and the store itself. */
static int sync_parents(const char *store_dir, const wal_paths_t *p, bq_errbuf_t *e)
{
    int rc = fsync_path(p->wal, e);
    if (rc == 0)
        rc = fsync_path(p->root, e);
    return rc ? rc : fsync_path(store_dir, e);
}

/* Keep the new content of a conflicting put at path.conflict-<sha prefix>, durably. */
static int keep_conflict(const char *path, const uint8_t *file, size_t file_len,
                         const uint8_t sha[STORE_WAL_SHA256_BYTES], char *cpath, size_t cpath_cap,
                         bq_errbuf_t *e)
{
    char hex[SHA_HEX];
    sha_hex(sha, hex);
    if (snprintf(cpath, cpath_cap, "%s" CONFLICT_SUFFIX "%.16s", path, hex) >= (int)cpath_cap)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s" CONFLICT_SUFFIX "%.16s", path, hex);
    int rc = bq_file_write_durable(cpath, file, file_len, 0600, 1, e);
    if (rc == BQ_E_EXISTS) { /* kept by an earlier attempt: make sure it is durable */
        rc = fsync_path(cpath, e);
        if (!rc)
            rc = bq_fsync_dir_of(cpath, e);
    }
    return rc;
}

int store_wal_put(const char *store_dir, const char *cluster, store_chunk_ctx_t *ctx,
                  const store_datakey_t *dk, store_comp_t comp, int level, size_t seg_size,
                  const char *name, const void *data, size_t len,
                  const store_wal_piece_t *packed, bq_errbuf_t *e)
{
    store_wal_kind_t kind;
    wal_paths_t p;
    int rc = store_wal_check(name, seg_size, len, e);
    if (!rc)
        rc = store_wal_name_parse(name, &kind, NULL, e);
    if (!rc)
        rc = make_paths(store_dir, cluster, name, &p, e);
    if (rc)
        return rc;
    /* one pass of hashing for a file of one piece (a 16 MiB segment): its id is the content
     * id (BQWAL002) */
    uint8_t cid[STORE_CHUNK_ID_BYTES];
    if (store_chunk_ctx_id(ctx, data, len, cid) != 0)
        return bq_fail(e, BQ_E_NOMEM, "out of memory hashing WAL file %s", name);
    rc = make_dir(p.root, e);
    if (rc == 0)
        rc = make_dir(p.wal, e);
    if (!rc)
        rc = make_dir(p.tli, e);
    if (rc)
        return rc;

    uint8_t *file = NULL;
    size_t file_len = 0;
    /* Twice at most: a concurrent put of the same name may create it between the look and the
     * link; the second look then compares with it. */
    for (int attempt = 0; attempt < 2; attempt++) {
        wal_head_t h;
        int fd = -1;
        rc = wal_open(p.file, kind, &fd, &h, e);
        if (rc == 0) {
            close(fd);
            /* like with like: a BQWAL001 file holds the sha256 of its content */
            uint8_t mine[STORE_WAL_SHA256_BYTES];
            memcpy(mine, cid, sizeof mine);
            if (h.version == 1 && (rc = sha256(data, len, mine, e)) != 0)
                break;
            const char *what = h.version == 1 ? "sha256" : "content id";
            if (memcmp(h.sha, mine, sizeof mine) == 0) {
                /* archived again with the same bytes: success once it is durable */
                rc = fsync_path(p.file, e);
                if (!rc)
                    rc = fsync_path(p.tli, e);
                if (!rc)
                    rc = sync_parents(store_dir, &p, e);
                free(file);
                return rc;
            }
            if (!file)
                rc = wal_build(ctx, dk, comp, level, name, data, len, packed, cid, &file,
                               &file_len, e);
            char cpath[PATH_MAX + 32], kept[PATH_MAX + 64];
            bq_errbuf_t ce;
            if (!rc)
                rc = keep_conflict(p.file, file, file_len, cid, cpath, sizeof cpath, &ce);
            else
                snprintf(ce.msg, sizeof ce.msg, "%s", e ? e->msg : "");
            if (!rc)
                snprintf(kept, sizeof kept, "the new content is kept in %s", cpath);
            else
                snprintf(kept, sizeof kept, "the new content could not be kept: %s", ce.msg);
            free(file);
            char a[SHA_HEX], b[SHA_HEX];
            return bq_fail(e, BQ_E_EXISTS,
                           "could not archive WAL file %s: %s holds other content (stored "
                           "%s %s, new %s %s); %s",
                           name, p.file, what, sha_hex(h.sha, a), what, sha_hex(mine, b), kept);
        }
        if (rc != BQ_E_NOTFOUND)
            break;
        if (!file) {
            rc = wal_build(ctx, dk, comp, level, name, data, len, packed, cid, &file, &file_len,
                           e);
            if (rc)
                break;
        }
        /* a WAL file is written once and read at a recovery: not kept in the page cache */
        rc = bq_file_write_durable(p.file, file, file_len, 0600,
                                   BQ_WRITE_EXCLUSIVE | BQ_WRITE_DROP_CACHE, e);
        if (rc == BQ_E_EXISTS)
            continue;
        if (!rc)
            rc = sync_parents(store_dir, &p, e);
        break;
    }
    free(file);
    return rc;
}

/* ---- packing for the wire ---- */

#define FRAME_LZ4 0x80000000u

int store_wal_pack(const void *data, size_t len, uint8_t **out, size_t *out_len, bq_errbuf_t *e)
{
    size_t npieces = pieces_of(len);
    size_t cap = npieces * 4 + len;
    uint8_t *o = malloc(cap ? cap : 1);
    if (!o)
        return bq_fail(e, BQ_E_NOMEM, "out of memory compressing a WAL file");
    size_t off = 0;
    for (size_t i = 0; i < npieces; i++) {
        size_t n = piece_len(len, i);
        const char *piece = n ? (const char *)data + (size_t)i * STORE_WAL_PIECE : data;
        /* room for n - 1 bytes: what does not fit did not shrink and goes as it is */
        int r = n > 1 ? LZ4_compress_default(piece, (char *)o + off + 4, (int)n, (int)(n - 1))
                      : 0;
        if (r > 0) {
            put32le(o + off, FRAME_LZ4 | (uint32_t)r);
            off += 4 + (size_t)r;
        } else {
            put32le(o + off, (uint32_t)n);
            if (n)
                memcpy(o + off + 4, piece, n);
            off += 4 + n;
        }
    }
    *out = o;
    *out_len = off;
    return 0;
}

int store_wal_unpack(const uint8_t *packed, size_t plen, uint64_t raw_len, uint8_t *raw,
                     store_wal_piece_t *pieces, size_t npieces, bq_errbuf_t *e)
{
    if (raw_len > STORE_WAL_SEG_MAX)
        return bq_fail(e, BQ_E_INVAL, "packed WAL file: %llu bytes, more than %zu",
                       (unsigned long long)raw_len, STORE_WAL_SEG_MAX);
    if (npieces != pieces_of(raw_len))
        return bq_fail(e, BQ_E_INVAL, "packed WAL file: %zu pieces for %llu bytes, not %zu",
                       npieces, (unsigned long long)raw_len, pieces_of(raw_len));
    size_t off = 0;
    for (size_t i = 0; i < npieces; i++) {
        size_t n = piece_len(raw_len, i);
        uint8_t *dst = raw + (size_t)i * STORE_WAL_PIECE;
        if (plen - off < 4)
            return bq_fail(e, BQ_E_INVAL, "packed WAL file: cut before piece %zu", i);
        uint32_t fr = get32le(packed + off);
        size_t flen = fr & ~FRAME_LZ4;
        off += 4;
        if (flen > plen - off)
            return bq_fail(e, BQ_E_INVAL, "packed WAL file: piece %zu of %zu bytes runs past "
                           "the end", i, flen);
        if (!(fr & FRAME_LZ4)) {
            if (flen != n)
                return bq_fail(e, BQ_E_INVAL, "packed WAL file: piece %zu holds %zu bytes, "
                               "not %zu", i, flen, n);
            if (n)
                memcpy(dst, packed + off, n);
            pieces[i] = (store_wal_piece_t){STORE_COMP_NONE, dst, n};
        } else {
            if (flen == 0 || flen >= n)
                return bq_fail(e, BQ_E_INVAL, "packed WAL file: piece %zu compressed to %zu "
                               "bytes for %zu", i, flen, n);
            int r = LZ4_decompress_safe((const char *)packed + off, (char *)dst, (int)flen,
                                        (int)n);
            if (r < 0 || (size_t)r != n)
                return bq_fail(e, BQ_E_INVAL, "packed WAL file: piece %zu does not decompress "
                               "to %zu bytes (lz4)", i, n);
            pieces[i] = (store_wal_piece_t){STORE_COMP_LZ4, packed + off, flen};
        }
        off += flen;
    }
    if (off != plen)
        return bq_fail(e, BQ_E_INVAL, "packed WAL file: %zu bytes after the last piece",
                       plen - off);
    return 0;
}

/* ---- listing ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Whether name (in directory tli_dir) is listed: a WAL file name, or with conflicts a conflict
 * file name, of that timeline. */
static int listed(const char *name, const char *tli_dir, int conflicts)
{
    char base[STORE_WAL_NAME_MAX];
    size_t n = strnlen(name, STORE_WAL_NAME_MAX);
    if (n >= STORE_WAL_NAME_MAX || strncmp(name, tli_dir, 8) != 0)
        return 0;
    if (conflicts) {
        size_t sfx = strlen(CONFLICT_SUFFIX) + CONFLICT_HEX;
        if (n <= sfx || strncmp(name + n - sfx, CONFLICT_SUFFIX, strlen(CONFLICT_SUFFIX)) != 0)
            return 0;
        for (size_t i = n - CONFLICT_HEX; i < n; i++)
            if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
                return 0;
        memcpy(base, name, n - sfx);
        base[n - sfx] = '\0';
        name = base;
    }
    return store_wal_name_parse(name, NULL, NULL, NULL) == 0;
}

static int list_tli(const char *dir, const char *tli_dir, uint32_t tli, int conflicts,
                    store_wal_list_fn fn, void *arg, bq_errbuf_t *e)
{
    DIR *d = opendir(dir);
    if (!d)
        return bq_fail(e, BQ_E_IO, "could not open directory %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (!listed(de->d_name, tli_dir, conflicts))
            continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 256;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", dir);
                goto out;
            }
            names = nn;
            cap = ncap;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", dir);
            goto out;
        }
        n++;
        errno = 0;
    }
    if (errno) {
        rc = bq_fail(e, BQ_E_IO, "could not read directory %s: %s", dir, strerror(errno));
        goto out;
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && !rc; i++)
        rc = fn(tli, names[i], arg);
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

static int list_all(const char *store_dir, const char *cluster, int conflicts,
                    store_wal_list_fn fn, void *arg, bq_errbuf_t *e)
{
    char wal[PATH_MAX];
    int crc = cluster_check(cluster, e);
    if (crc)
        return crc;
    if (snprintf(wal, sizeof wal, "%s/wal/%s", store_dir, cluster) >= (int)sizeof wal)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s/wal/%s", store_dir, cluster);
    DIR *d = opendir(wal);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return bq_fail(e, BQ_E_IO, "could not open directory %s: %s", wal, strerror(errno));
    }
    uint32_t *tlis = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strlen(de->d_name) != 8 || !all_uhex(de->d_name, 8) || hex8(de->d_name) == 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            uint32_t *nt = realloc(tlis, ncap * sizeof *nt);
            if (!nt) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", wal);
                goto out;
            }
            tlis = nt;
            cap = ncap;
        }
        tlis[n++] = hex8(de->d_name);
        errno = 0;
    }
    if (errno) {
        rc = bq_fail(e, BQ_E_IO, "could not read directory %s: %s", wal, strerror(errno));
        goto out;
    }
    if (n)
        qsort(tlis, n, sizeof *tlis, cmp_u32);
    for (size_t i = 0; i < n && !rc; i++) {
        char tli_dir[9], dir[PATH_MAX];
        snprintf(tli_dir, sizeof tli_dir, "%08X", (unsigned)tlis[i]);
        if (snprintf(dir, sizeof dir, "%s/%s", wal, tli_dir) >= (int)sizeof dir) {
            rc = bq_fail(e, BQ_E_INVAL, "path too long: %s/%s", wal, tli_dir);
            break;
        }
        rc = list_tli(dir, tli_dir, tlis[i], conflicts, fn, arg, e);
    }
out:
    free(tlis);
    closedir(d);
    return rc;
}

int store_wal_remove(const char *store_dir, const char *cluster, const char *name,
                     uint64_t *bytes, bq_errbuf_t *e)
{
    store_wal_kind_t kind;
    uint32_t tli;
    wal_paths_t p;
    int rc;
    if (bytes)
        *bytes = 0;
    if ((rc = store_wal_name_parse(name, &kind, &tli, e)) != 0 ||
        (rc = make_paths(store_dir, cluster, name, &p, e)) != 0)
        return rc;
    struct stat st;
    if (lstat(p.file, &st) != 0)
        return errno == ENOENT ? bq_fail(e, BQ_E_NOTFOUND, "WAL file %s of cluster %s is not in "
                                         "store %s", name, cluster, store_dir)
                               : bq_fail(e, BQ_E_IO, "could not stat %s: %s", p.file, strerror(errno));
    if (unlink(p.file) != 0)
        return errno == ENOENT ? bq_fail(e, BQ_E_NOTFOUND, "WAL file %s of cluster %s is not in "
                                         "store %s", name, cluster, store_dir)
                               : bq_fail(e, BQ_E_IO, "could not remove %s: %s", p.file, strerror(errno));
    if (bytes)
        *bytes = (uint64_t)st.st_size;
    return fsync_path(p.tli, e);
}

int store_wal_list(const char *store_dir, const char *cluster, store_wal_list_fn fn, void *arg,
                   bq_errbuf_t *e)
{
    return list_all(store_dir, cluster, 0, fn, arg, e);
}

int store_wal_conflicts(const char *store_dir, const char *cluster, store_wal_list_fn fn,
                        void *arg, bq_errbuf_t *e)
{
    return list_all(store_dir, cluster, 1, fn, arg, e);
}

int store_wal_clusters(const char *store_dir, store_wal_cluster_fn fn, void *arg, bq_errbuf_t *e)
{
    char wal[PATH_MAX];
    if (snprintf(wal, sizeof wal, "%s/wal", store_dir) >= (int)sizeof wal)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s/wal", store_dir);
    DIR *d = opendir(wal);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return bq_fail(e, BQ_E_IO, "could not open directory %s: %s", wal, strerror(errno));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (!store_wal_cluster_valid(de->d_name))
            continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", wal);
                break;
            }
            names = nn;
            cap = ncap;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", wal);
            break;
        }
        n++;
        errno = 0;
    }
    if (rc == 0 && errno)
        rc = bq_fail(e, BQ_E_IO, "could not read directory %s: %s", wal, strerror(errno));
    closedir(d);
    if (rc == 0 && n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(names[i], arg);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
