/* Backup manifests (store/manifest.h, docs/store.md "Manifests").
 *
 * File:      "BQMANENC" ‖ key_id u32 ‖ key check (16) ‖ secretstream header (24) ‖ messages
 * message:   clen u32 ‖ ciphertext (clen = plaintext length + 17), last one tagged FINAL
 * plaintext: "BQMANIF1" ‖ HEADER ‖ (META | FILE CHUNKS* FILE_END)* ‖ END
 * record:    type u8 ‖ len u32 ‖ payload (len bytes)
 * All integers little-endian, encoded and decoded byte by byte. */
#include "manifest.h"

#include "chunk.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENV_MAGIC "BQMANENC"
#define PLAIN_MAGIC "BQMANIF1"
#define MAGIC_LEN 8
#define KEYCHECK_LEN 16
#define KEYCHECK_LABEL "barque manifest key check"
#define ENV_AD_LEN (MAGIC_LEN + 4 + KEYCHECK_LEN) /* 28: associated data of every message */
#define SS_HEADER_LEN crypto_secretstream_xchacha20poly1305_HEADERBYTES /* 24 */
#define ENV_LEN (ENV_AD_LEN + SS_HEADER_LEN)                            /* 52 */
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES              /* 17 */
#define BLOCK STORE_MANIFEST_BLOCK_BYTES
#define CBLOCK_MAX (BLOCK + ABYTES)
#define REC_HDR_LEN 5
#define ID_LEN STORE_CHUNK_ID_BYTES
#define SHA_LEN STORE_MANIFEST_SHA256_BYTES
#define REC_SHRINK (256u << 10) /* a record buffer larger than this is freed after use */

enum {
    REC_HEADER = 1,
    REC_META = 2,
    REC_FILE = 3,
    REC_CHUNKS = 4,
    REC_END = 5,
    REC_FILE_END = 6,
};

/* Payload length bounds per record type (exact sizes are checked again when decoding). */
static const struct {
    const char *name;
    uint32_t min, max;
} rec_types[] = {
    [REC_HEADER] = {"HEADER", 1 + 1 + 16, 1 + STORE_MANIFEST_ID_MAX + 16},
    [REC_META] = {"META", 2 + 1, 2 + STORE_MANIFEST_KEY_MAX + STORE_MANIFEST_VALUE_MAX},
    [REC_FILE] = {"FILE", 2 + 12, 2 + 0xffff + 12}, /* path bounds: by the path check */
    [REC_CHUNKS] = {"CHUNKS", ID_LEN, ID_LEN * STORE_MANIFEST_CHUNKS_PER_RECORD},
    [REC_END] = {"END", 16 + SHA_LEN, 16 + SHA_LEN},
    [REC_FILE_END] = {"FILE_END", 16 + SHA_LEN, 16 + SHA_LEN},
};
#define REC_TYPE_MAX REC_FILE_END

/* ---- little-endian encoding ---- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* ---- shared checks ---- */

const char *store_manifest_path_problem(const char *path, size_t len)
{
    if (len == 0)
        return "is empty";
    if (len > STORE_MANIFEST_PATH_MAX)
        return "is longer than 4095 bytes";
    if (memchr(path, '\0', len))
        return "contains a NUL byte";
    if (path[0] == '/')
        return "is absolute";
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        size_t n = i - start;
        if (n == 0)
            return "has an empty component";
        if (n == 1 && path[start] == '.')
            return "has a '.' component";
        if (n == 2 && path[start] == '.' && path[start + 1] == '.')
            return "has a '..' component";
        start = i + 1;
    }
    return NULL;
}

static int backup_id_ok(const char *id, size_t len)
{
    if (len == 0 || len > STORE_MANIFEST_ID_MAX || id[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Printable form of untrusted bytes for messages: at most 96 of them, others as \xNN. */
static const char *printable(const char *s, size_t len, char out[512])
{
    size_t o = 0;
    size_t n = len < 96 ? len : 96;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
    }
    if (n < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* The key check of the file header: keyed BLAKE2b-128 (key = the data key) of the label and
 * the key id, so a wrong key is told apart from damage before any message is opened. */
static void key_check(const uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES], uint32_t key_id,
                      uint8_t out[KEYCHECK_LEN])
{
    uint8_t msg[sizeof KEYCHECK_LABEL - 1 + 4];
    memcpy(msg, KEYCHECK_LABEL, sizeof KEYCHECK_LABEL - 1);
    put_u32(msg + sizeof KEYCHECK_LABEL - 1, key_id);
    crypto_generichash(out, KEYCHECK_LEN, msg, sizeof msg, key, STORE_MANIFEST_DATA_KEY_BYTES);
}

/* ======================================================================================== */
/* writer                                                                                   */
/* ======================================================================================== */

struct store_manifest_writer {
    char final_path[PATH_MAX];
    char tmp_path[PATH_MAX];
    int fd;
    int failed; /* an I/O failure happened: every later call is refused */
    int in_file;
    crypto_secretstream_xchacha20poly1305_state ss;
    crypto_hash_sha256_state sha;
    uint8_t ad[ENV_AD_LEN];
    uint64_t nfiles, nchunkrefs, file_nchunks;
    size_t block_len, nids;
    uint8_t block[BLOCK];          /* plaintext not yet sealed */
    uint8_t cbuf[4 + CBLOCK_MAX];  /* one sealed message */
    uint8_t ids[ID_LEN * STORE_MANIFEST_CHUNKS_PER_RECORD]; /* chunk ids not yet written */
};

static int w_io_fail(store_manifest_writer_t *w, bq_errbuf_t *e, const char *what, int err)
{
    w->failed = 1;
    return bq_fail(e, BQ_E_IO, "could not %s manifest %s: %s", what, w->tmp_path, strerror(err));
}

static int w_usable(store_manifest_writer_t *w, bq_errbuf_t *e)
{
    if (!w)
        return bq_fail(e, BQ_E_INVAL, "no manifest writer");
    if (w->failed)
        return bq_fail(e, BQ_E_STATE, "manifest writer for %s failed earlier", w->final_path);
    return 0;
}

static int w_write_all(store_manifest_writer_t *w, const uint8_t *p, size_t n, bq_errbuf_t *e)
{
    while (n) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return w_io_fail(w, e, "write", errno);
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Seal the buffered plaintext as one message (tag MESSAGE or FINAL) and write it. */
static int w_seal(store_manifest_writer_t *w, unsigned char tag, bq_errbuf_t *e)
{
    unsigned long long clen = 0;
    if (crypto_secretstream_xchacha20poly1305_push(&w->ss, w->cbuf + 4, &clen, w->block,
                                                   w->block_len, w->ad, sizeof w->ad, tag) != 0) {
        w->failed = 1;
        return bq_fail(e, BQ_E_KEY, "could not seal manifest %s", w->tmp_path);
    }
    put_u32(w->cbuf, (uint32_t)clen);
    w->block_len = 0;
    return w_write_all(w, w->cbuf, 4 + (size_t)clen, e);
}

/* Append plaintext bytes to the stream (and to the running sha256 when hash). A full block is
 * sealed only when more bytes follow, so the FINAL message is never empty. */
static int w_emit(store_manifest_writer_t *w, const void *data, size_t n, int hash, bq_errbuf_t *e)
{
    const uint8_t *p = data;
    if (hash && n)
        crypto_hash_sha256_update(&w->sha, p, n);
    while (n) {
        if (w->block_len == BLOCK) {
            int rc = w_seal(w, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, e);
            if (rc)
                return rc;
        }
        size_t k = BLOCK - w->block_len;
        if (k > n)
            k = n;
        memcpy(w->block + w->block_len, p, k);
        w->block_len += k;
        p += k;
        n -= k;
    }
    return 0;
}

static int w_rec_begin(store_manifest_writer_t *w, uint8_t type, size_t len, bq_errbuf_t *e)
{
    uint8_t h[REC_HDR_LEN];
    h[0] = type;
    put_u32(h + 1, (uint32_t)len);
    return w_emit(w, h, sizeof h, type != REC_END, e);
}

static int w_flush_chunks(store_manifest_writer_t *w, bq_errbuf_t *e)
{
    if (!w->nids)
        return 0;
    int rc = w_rec_begin(w, REC_CHUNKS, w->nids * ID_LEN, e);
    if (!rc)
        rc = w_emit(w, w->ids, w->nids * ID_LEN, 1, e);
    w->nids = 0;
    return rc;
}

static void w_free(store_manifest_writer_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    sodium_memzero(&w->ss, sizeof w->ss);
    sodium_memzero(w->block, sizeof w->block);
    free(w);
}

int store_manifest_create(const char *path_final, const char *backup_id, int64_t created_ms,
                          uint32_t chunk_size, uint32_t key_id,
                          const uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES],
                          store_manifest_writer_t **out, bq_errbuf_t *e)
{
    char suffix[32];
    snprintf(suffix, sizeof suffix, "%ld", (long)getpid());
    return store_manifest_create_at(path_final, suffix, backup_id, created_ms, chunk_size, key_id,
                                    key, out, e);
}

int store_manifest_create_at(const char *path_final, const char *tmp_suffix,
                             const char *backup_id, int64_t created_ms, uint32_t chunk_size,
                             uint32_t key_id, const uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES],
                             store_manifest_writer_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (!path_final || !backup_id || !key)
        return bq_fail(e, BQ_E_INVAL, "could not create manifest: missing argument");
    size_t idlen = strlen(backup_id);
    if (!backup_id_ok(backup_id, idlen)) {
        char pb[512];
        return bq_fail(e, BQ_E_INVAL,
                       "could not create manifest %s: backup id \"%s\" is not 1..64 characters "
                       "of [A-Za-z0-9._-] not starting with '.'",
                       path_final, printable(backup_id, idlen, pb));
    }
    if (chunk_size == 0 || chunk_size > STORE_CHUNK_RAW_MAX)
        return bq_fail(e, BQ_E_INVAL,
                       "could not create manifest %s: chunk size %u is not in 1..%u", path_final,
                       chunk_size, (unsigned)STORE_CHUNK_RAW_MAX);
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not create manifest %s: libsodium cannot start",
                       path_final);
    store_manifest_writer_t *w = calloc(1, sizeof *w);
    if (!w)
        return bq_fail(e, BQ_E_NOMEM, "out of memory creating manifest %s", path_final);
    w->fd = -1;
    if (snprintf(w->final_path, sizeof w->final_path, "%s", path_final) >=
            (int)sizeof w->final_path ||
        snprintf(w->tmp_path, sizeof w->tmp_path, "%s.tmp.%s", path_final, tmp_suffix) >=
            (int)sizeof w->tmp_path) {
        free(w);
        return bq_fail(e, BQ_E_INVAL, "could not create manifest %s: path too long", path_final);
    }
    if (access(path_final, F_OK) == 0) {
        free(w);
        return bq_fail(e, BQ_E_EXISTS, "could not create manifest %s: file exists", path_final);
    }
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        int err = errno;
        bq_fail(e, BQ_E_IO, "could not create manifest %s: %s", w->tmp_path, strerror(err));
        free(w);
        return BQ_E_IO;
    }

    /* file header: magic ‖ key id ‖ key check ‖ stream header */
    uint8_t env[ENV_LEN];
    memcpy(env, ENV_MAGIC, MAGIC_LEN);
    put_u32(env + MAGIC_LEN, key_id);
    key_check(key, key_id, env + MAGIC_LEN + 4);
    memcpy(w->ad, env, ENV_AD_LEN);
    crypto_secretstream_xchacha20poly1305_init_push(&w->ss, env + ENV_AD_LEN, key);
    crypto_hash_sha256_init(&w->sha);
    int rc = w_write_all(w, env, sizeof env, e);

    /* plaintext: magic ‖ HEADER */
    uint8_t hdr[1 + STORE_MANIFEST_ID_MAX + 16];
    size_t hl = 0;
    hdr[hl++] = (uint8_t)idlen;
    memcpy(hdr + hl, backup_id, idlen);
    hl += idlen;
    put_u64(hdr + hl, (uint64_t)created_ms);
    put_u32(hdr + hl + 8, chunk_size);
    put_u32(hdr + hl + 12, key_id);
    hl += 16;
    if (!rc)
        rc = w_emit(w, PLAIN_MAGIC, MAGIC_LEN, 1, e);
    if (!rc)
        rc = w_rec_begin(w, REC_HEADER, hl, e);
    if (!rc)
        rc = w_emit(w, hdr, hl, 1, e);
    if (rc) {
        store_manifest_abort(&w);
        return rc;
    }
    *out = w;
    return 0;
}

int store_manifest_meta(store_manifest_writer_t *w, const char *key, const void *value, size_t len,
                        bq_errbuf_t *e)
{
    int rc = w_usable(w, e);
    if (rc)
        return rc;
    size_t klen = key ? strlen(key) : 0;
    if (klen == 0 || klen > STORE_MANIFEST_KEY_MAX)
        return bq_fail(e, BQ_E_INVAL, "could not add meta to manifest %s: key is not 1..255 bytes",
                       w->final_path);
    if (len > STORE_MANIFEST_VALUE_MAX)
        return bq_fail(e, BQ_E_TOOBIG,
                       "could not add meta %s to manifest %s: value of %zu bytes is above 64 MiB",
                       key, w->final_path, len);
    if (len && !value)
        return bq_fail(e, BQ_E_INVAL, "could not add meta %s to manifest %s: no value", key,
                       w->final_path);
    if (w->in_file)
        return bq_fail(e, BQ_E_STATE, "could not add meta %s to manifest %s: a file is open", key,
                       w->final_path);
    uint8_t kb[2 + STORE_MANIFEST_KEY_MAX];
    put_u16(kb, (uint16_t)klen);
    memcpy(kb + 2, key, klen);
    rc = w_rec_begin(w, REC_META, 2 + klen + len, e);
    if (!rc)
        rc = w_emit(w, kb, 2 + klen, 1, e);
    if (!rc && len)
        rc = w_emit(w, value, len, 1, e);
    return rc;
}

int store_manifest_file_begin(store_manifest_writer_t *w, const store_manifest_file_t *file,
                              bq_errbuf_t *e)
{
    int rc = w_usable(w, e);
    if (rc)
        return rc;
    if (!file || !file->path)
        return bq_fail(e, BQ_E_INVAL, "could not add file to manifest %s: no path", w->final_path);
    size_t plen = strlen(file->path);
    const char *why = store_manifest_path_problem(file->path, plen);
    if (why) {
        char pb[512];
        return bq_fail(e, BQ_E_INVAL, "could not add file to manifest %s: path \"%s\" %s",
                       w->final_path, printable(file->path, plen, pb), why);
    }
    if (w->in_file)
        return bq_fail(e, BQ_E_STATE,
                       "could not add file %s to manifest %s: the previous file is not ended",
                       file->path, w->final_path);
    uint8_t rec[2 + STORE_MANIFEST_PATH_MAX + 12];
    put_u16(rec, (uint16_t)plen);
    memcpy(rec + 2, file->path, plen);
    put_u32(rec + 2 + plen, file->mode);
    put_u64(rec + 2 + plen + 4, (uint64_t)file->mtime);
    size_t len = 2 + plen + 12;
    rc = w_rec_begin(w, REC_FILE, len, e);
    if (!rc)
        rc = w_emit(w, rec, len, 1, e);
    if (rc)
        return rc;
    w->in_file = 1;
    w->file_nchunks = 0;
    w->nids = 0;
    return 0;
}

int store_manifest_file_chunk(store_manifest_writer_t *w, const uint8_t id[32], bq_errbuf_t *e)
{
    int rc = w_usable(w, e);
    if (rc)
        return rc;
    if (!w->in_file)
        return bq_fail(e, BQ_E_STATE, "could not add a chunk to manifest %s: no file is open",
                       w->final_path);
    if (w->nids == STORE_MANIFEST_CHUNKS_PER_RECORD && (rc = w_flush_chunks(w, e)) != 0)
        return rc;
    memcpy(w->ids + w->nids * ID_LEN, id, ID_LEN);
    w->nids++;
    w->file_nchunks++;
    w->nchunkrefs++;
    return 0;
}

int store_manifest_file_end(store_manifest_writer_t *w,
                            const uint8_t sha256[STORE_MANIFEST_SHA256_BYTES], uint64_t size,
                            bq_errbuf_t *e)
{
    int rc = w_usable(w, e);
    if (rc)
        return rc;
    if (!w->in_file)
        return bq_fail(e, BQ_E_STATE, "could not end a file in manifest %s: no file is open",
                       w->final_path);
    if ((rc = w_flush_chunks(w, e)) != 0)
        return rc;
    uint8_t rec[16 + SHA_LEN];
    put_u64(rec, w->file_nchunks);
    put_u64(rec + 8, size);
    memcpy(rec + 16, sha256, SHA_LEN);
    rc = w_rec_begin(w, REC_FILE_END, sizeof rec, e);
    if (!rc)
        rc = w_emit(w, rec, sizeof rec, 1, e);
    if (rc)
        return rc;
    w->in_file = 0;
    w->nfiles++;
    return 0;
}

int store_manifest_commit(store_manifest_writer_t **wp, bq_errbuf_t *e)
{
    store_manifest_writer_t *w = wp ? *wp : NULL;
    int rc = w_usable(w, e);
    if (rc) {
        store_manifest_abort(wp);
        return rc;
    }
    if (w->in_file) {
        rc = bq_fail(e, BQ_E_STATE, "could not commit manifest %s: a file is still open",
                     w->final_path);
        store_manifest_abort(wp);
        return rc;
    }
    uint8_t rec[16 + SHA_LEN];
    put_u64(rec, w->nfiles);
    put_u64(rec + 8, w->nchunkrefs);
    crypto_hash_sha256_final(&w->sha, rec + 16);
    rc = w_rec_begin(w, REC_END, sizeof rec, e);
    if (!rc)
        rc = w_emit(w, rec, sizeof rec, 0, e);
    if (!rc)
        rc = w_seal(w, crypto_secretstream_xchacha20poly1305_TAG_FINAL, e);
    if (!rc && fsync(w->fd) != 0)
        rc = w_io_fail(w, e, "fsync", errno);
    if (!rc) {
        int fd = w->fd;
        w->fd = -1;
        if (close(fd) != 0)
            rc = w_io_fail(w, e, "close", errno);
    }
    if (!rc && link(w->tmp_path, w->final_path) != 0) {
        int err = errno;
        if (err == EEXIST)
            rc = bq_fail(e, BQ_E_EXISTS, "could not commit manifest %s: file exists",
                         w->final_path);
        else
            rc = bq_fail(e, BQ_E_IO, "could not commit manifest %s: %s", w->final_path,
                         strerror(err));
    }
    if (rc) {
        store_manifest_abort(wp);
        return rc;
    }
    unlink(w->tmp_path);
    rc = bq_fsync_dir_of(w->final_path, e);
    if (rc) /* not durable: a failed commit leaves no manifest behind */
        unlink(w->final_path);
    w_free(w);
    *wp = NULL;
    return rc;
}

void store_manifest_abort(store_manifest_writer_t **wp)
{
    if (!wp || !*wp)
        return;
    store_manifest_writer_t *w = *wp;
    unlink(w->tmp_path);
    w_free(w);
    *wp = NULL;
}

/* ======================================================================================== */
/* reader                                                                                   */
/* ======================================================================================== */

struct store_manifest_reader {
    char name[PATH_MAX];
    int fd;                   /* -1 for a plaintext reader over memory */
    int err;                  /* first error: returned again by every later call */
    char errmsg[BQ_ERRMSG_MAX];
    int done;                 /* END was read and checked */
    int final_seen;           /* no more plaintext will come */
    crypto_secretstream_xchacha20poly1305_state ss;
    crypto_hash_sha256_state sha;
    uint8_t ad[ENV_AD_LEN];
    uint64_t file_off;        /* bytes of the file read so far */
    const uint8_t *avail;     /* plaintext not consumed yet */
    size_t navail;
    uint64_t poff;            /* plaintext bytes consumed */
    uint8_t *rec;             /* the current record's payload */
    size_t rec_cap;
    store_manifest_header_t hdr;
    uint32_t env_key_id;
    int in_file;
    uint64_t file_nchunks, nfiles, nchunkrefs;
    char path[STORE_MANIFEST_PATH_MAX + 1];
    char key[STORE_MANIFEST_KEY_MAX + 1];
    uint8_t *pbuf;            /* BLOCK: one opened message (file readers only) */
    uint8_t *cbuf;            /* CBLOCK_MAX: one sealed message (file readers only) */
};

/* Record a damage (sticky) and return BQ_E_IO "manifest NAME is damaged: WHY". */
__attribute__((format(printf, 3, 4))) static int r_damaged(store_manifest_reader_t *r,
                                                          bq_errbuf_t *e, const char *fmt, ...)
{
    char why[BQ_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    r->err = BQ_E_IO;
    snprintf(r->errmsg, sizeof r->errmsg, "manifest %s is damaged: %s", r->name, why);
    return bq_fail(e, r->err, "%s", r->errmsg);
}

static int r_other(store_manifest_reader_t *r, bq_errbuf_t *e, int code, const char *msg)
{
    r->err = code;
    snprintf(r->errmsg, sizeof r->errmsg, "%s", msg);
    return bq_fail(e, code, "%s", msg);
}

/* Read up to n bytes of the file; *got receives how many (fewer only at end of file). */
static int r_read_file(store_manifest_reader_t *r, uint8_t *p, size_t n, size_t *got,
                       bq_errbuf_t *e)
{
    *got = 0;
    while (*got < n) {
        ssize_t k = read(r->fd, p + *got, n - *got);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            char m[BQ_ERRMSG_MAX];
            snprintf(m, sizeof m, "could not read manifest %s: %s", r->name, strerror(errno));
            return r_other(r, e, BQ_E_IO, m);
        }
        if (k == 0)
            break;
        *got += (size_t)k;
    }
    r->file_off += *got;
    return 0;
}

/* Make more plaintext available: 0 when navail > 0, 1 at the end of the plaintext (after the
 * FINAL message, or of the memory buffer), else an error. */
static int r_more(store_manifest_reader_t *r, bq_errbuf_t *e)
{
    while (r->navail == 0) {
        if (r->final_seen)
            return 1;
        uint64_t at = r->file_off;
        uint8_t lb[4];
        size_t got;
        int rc = r_read_file(r, lb, 4, &got, e);
        if (rc)
            return rc;
        if (got == 0)
            return r_damaged(r, e, "it ends before its final block (truncated at byte %llu)",
                             (unsigned long long)at);
        if (got < 4)
            return r_damaged(r, e, "truncated at byte %llu (inside the length of the block at "
                             "offset %llu)", (unsigned long long)r->file_off,
                             (unsigned long long)at);
        uint32_t clen = get_u32(lb);
        if (clen < ABYTES || clen > CBLOCK_MAX)
            return r_damaged(r, e, "block at offset %llu has an impossible length %u",
                             (unsigned long long)at, clen);
        if ((rc = r_read_file(r, r->cbuf, clen, &got, e)) != 0)
            return rc;
        if (got < clen)
            return r_damaged(r, e, "truncated at byte %llu (the block at offset %llu needs %u "
                             "bytes)", (unsigned long long)r->file_off, (unsigned long long)at,
                             clen);
        unsigned long long mlen = 0;
        unsigned char tag = 0;
        if (crypto_secretstream_xchacha20poly1305_pull(&r->ss, r->pbuf, &mlen, &tag, r->cbuf, clen,
                                                       r->ad, sizeof r->ad) != 0)
            return r_damaged(r, e, "block at offset %llu failed authentication",
                             (unsigned long long)at);
        if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
            uint8_t extra;
            if ((rc = r_read_file(r, &extra, 1, &got, e)) != 0)
                return rc;
            if (got)
                return r_damaged(r, e, "trailing bytes after the final block (from byte %llu)",
                                 (unsigned long long)(r->file_off - 1));
            r->final_seen = 1;
        } else if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
            return r_damaged(r, e, "block at offset %llu has an unexpected tag %u",
                             (unsigned long long)at, (unsigned)tag);
        }
        r->avail = r->pbuf;
        r->navail = (size_t)mlen;
    }
    return 0;
}

/* Copy n plaintext bytes to dst. 0, or 1 when the plaintext ended first (*got says how many
 * bytes were copied), or an error. */
static int r_take(store_manifest_reader_t *r, uint8_t *dst, size_t n, size_t *got,
                  bq_errbuf_t *e)
{
    *got = 0;
    while (*got < n) {
        int rc = r_more(r, e);
        if (rc)
            return rc;
        size_t k = n - *got < r->navail ? n - *got : r->navail;
        memcpy(dst + *got, r->avail, k);
        r->avail += k;
        r->navail -= k;
        r->poff += k;
        *got += k;
    }
    return 0;
}

/* Read a payload of len bytes into r->rec. The buffer grows with the bytes that actually
 * arrive, so a length field alone never makes the reader allocate. 1 when the plaintext ends
 * first. */
static int r_take_payload(store_manifest_reader_t *r, size_t len, bq_errbuf_t *e)
{
    size_t have = 0;
    while (have < len) {
        int rc = r_more(r, e);
        if (rc)
            return rc;
        size_t k = len - have < r->navail ? len - have : r->navail;
        if (have + k > r->rec_cap) {
            size_t cap = r->rec_cap ? r->rec_cap : 4096;
            while (cap < have + k)
                cap *= 2;
            if (cap > len)
                cap = len;
            uint8_t *p = realloc(r->rec, cap);
            if (!p) {
                char m[BQ_ERRMSG_MAX];
                snprintf(m, sizeof m, "out of memory reading manifest %s", r->name);
                return r_other(r, e, BQ_E_NOMEM, m);
            }
            r->rec = p;
            r->rec_cap = cap;
        }
        memcpy(r->rec + have, r->avail, k);
        r->avail += k;
        r->navail -= k;
        r->poff += k;
        have += k;
    }
    return 0;
}

/* Read one record: its type, length (checked against the type's bounds) and payload (in
 * r->rec). Every byte but the END record's is added to the running sha256. */
static int r_record(store_manifest_reader_t *r, uint8_t *type, uint32_t *len, uint64_t *at,
                    bq_errbuf_t *e)
{
    uint8_t h[REC_HDR_LEN];
    size_t got;
    *at = r->poff;
    int rc = r_take(r, h, sizeof h, &got, e);
    if (rc < 0)
        return rc;
    if (rc == 1 && got == 0)
        return r_damaged(r, e, "it ends without an END record (at offset %llu)",
                         (unsigned long long)*at);
    if (rc == 1)
        return r_damaged(r, e, "truncated record header at offset %llu",
                         (unsigned long long)*at);
    *type = h[0];
    *len = get_u32(h + 1);
    if (*type == 0 || *type > REC_TYPE_MAX)
        return r_damaged(r, e, "unknown record type %u at offset %llu", (unsigned)*type,
                         (unsigned long long)*at);
    if (*len < rec_types[*type].min || *len > rec_types[*type].max)
        return r_damaged(r, e, "%s record at offset %llu has an impossible length %u",
                         rec_types[*type].name, (unsigned long long)*at, *len);
    if (*type != REC_END)
        crypto_hash_sha256_update(&r->sha, h, sizeof h);
    rc = r_take_payload(r, *len, e);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return r_damaged(r, e, "%s record at offset %llu (%u bytes) runs past the end",
                         rec_types[*type].name, (unsigned long long)*at, *len);
    if (*type != REC_END)
        crypto_hash_sha256_update(&r->sha, r->rec, *len);
    return 0;
}

/* The plaintext's magic and HEADER record. */
static int r_start(store_manifest_reader_t *r, bq_errbuf_t *e)
{
    uint8_t m[MAGIC_LEN];
    size_t got;
    int rc = r_take(r, m, sizeof m, &got, e);
    if (rc < 0)
        return rc;
    if (rc == 1 || memcmp(m, PLAIN_MAGIC, MAGIC_LEN) != 0)
        return r_damaged(r, e, "wrong magic (not a barque manifest)");
    crypto_hash_sha256_update(&r->sha, m, sizeof m);

    uint8_t type;
    uint32_t len;
    uint64_t at;
    if ((rc = r_record(r, &type, &len, &at, e)) != 0)
        return rc;
    if (type != REC_HEADER)
        return r_damaged(r, e, "first record is %s, not HEADER", rec_types[type].name);
    const uint8_t *p = r->rec;
    size_t idlen = p[0];
    if (len != 1 + idlen + 16)
        return r_damaged(r, e, "HEADER record has length %u for a backup id of %zu bytes", len,
                         idlen);
    char pb[512];
    if (!backup_id_ok((const char *)p + 1, idlen))
        return r_damaged(r, e, "HEADER names an invalid backup id \"%s\"",
                         printable((const char *)p + 1, idlen, pb));
    memcpy(r->hdr.backup_id, p + 1, idlen);
    r->hdr.backup_id[idlen] = '\0';
    p += 1 + idlen;
    r->hdr.created_ms = (int64_t)get_u64(p);
    r->hdr.chunk_size = get_u32(p + 8);
    r->hdr.key_id = get_u32(p + 12);
    if (r->hdr.chunk_size == 0 || r->hdr.chunk_size > STORE_CHUNK_RAW_MAX)
        return r_damaged(r, e, "HEADER has an impossible chunk size %u", r->hdr.chunk_size);
    if (r->fd >= 0 && r->hdr.key_id != r->env_key_id)
        return r_damaged(r, e, "HEADER names data key %08x but the file is sealed with key %08x",
                         r->hdr.key_id, r->env_key_id);
    return 0;
}

static store_manifest_reader_t *r_new(const char *name)
{
    store_manifest_reader_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->fd = -1;
    snprintf(r->name, sizeof r->name, "%s", name ? name : "<memory>");
    crypto_hash_sha256_init(&r->sha);
    return r;
}

int store_manifest_open_plain(const void *buf, size_t len, const char *name,
                              store_manifest_reader_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not read manifest: libsodium cannot start");
    store_manifest_reader_t *r = r_new(name);
    if (!r)
        return bq_fail(e, BQ_E_NOMEM, "out of memory reading manifest %s",
                       name ? name : "<memory>");
    r->avail = buf;
    r->navail = buf ? len : 0;
    r->final_seen = 1;
    int rc = r_start(r, e);
    if (rc) {
        store_manifest_close(&r);
        return rc;
    }
    *out = r;
    return 0;
}

int store_manifest_open(const char *path, store_manifest_key_fn key_lookup, void *arg,
                        store_manifest_reader_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (!path || !key_lookup)
        return bq_fail(e, BQ_E_INVAL, "could not open manifest: missing argument");
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not open manifest %s: libsodium cannot start", path);
    store_manifest_reader_t *r = r_new(path);
    if (!r || !(r->pbuf = malloc(BLOCK)) || !(r->cbuf = malloc(CBLOCK_MAX))) {
        store_manifest_close(&r);
        return bq_fail(e, BQ_E_NOMEM, "out of memory opening manifest %s", path);
    }
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        int err = errno;
        store_manifest_close(&r);
        return bq_fail(e, err == ENOENT ? BQ_E_NOTFOUND : BQ_E_IO,
                       "could not open manifest %s: %s", path, strerror(err));
    }
    uint8_t env[ENV_LEN];
    size_t got;
    int rc = r_read_file(r, env, sizeof env, &got, e);
    if (!rc && memcmp(env, ENV_MAGIC, got < MAGIC_LEN ? got : MAGIC_LEN) != 0)
        rc = r_damaged(r, e, "wrong magic (not a barque manifest)");
    else if (!rc && got < sizeof env)
        rc = r_damaged(r, e, "truncated at byte %zu (inside the file header)", got);
    if (rc) {
        store_manifest_close(&r);
        return rc;
    }
    r->env_key_id = get_u32(env + MAGIC_LEN);
    memcpy(r->ad, env, ENV_AD_LEN);

    uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES];
    uint8_t check[KEYCHECK_LEN];
    rc = key_lookup(arg, r->env_key_id, key, e);
    if (rc) {
        sodium_memzero(key, sizeof key);
        store_manifest_close(&r);
        return rc < 0 ? rc : bq_fail(e, BQ_E_KEY, "no data key %08x for manifest %s",
                                     r->env_key_id, path);
    }
    key_check(key, r->env_key_id, check);
    if (sodium_memcmp(check, env + MAGIC_LEN + 4, KEYCHECK_LEN) != 0) {
        sodium_memzero(key, sizeof key);
        rc = bq_fail(e, BQ_E_KEY, "wrong data key for manifest %s (key %08x does not open it)",
                     path, r->env_key_id);
        store_manifest_close(&r);
        return rc;
    }
    rc = crypto_secretstream_xchacha20poly1305_init_pull(&r->ss, env + ENV_AD_LEN, key);
    sodium_memzero(key, sizeof key);
    if (rc != 0)
        rc = r_damaged(r, e, "bad stream header");
    if (!rc)
        rc = r_start(r, e);
    if (rc) {
        store_manifest_close(&r);
        return rc;
    }
    *out = r;
    return 0;
}

const store_manifest_header_t *store_manifest_header(const store_manifest_reader_t *r)
{
    return &r->hdr;
}

int store_manifest_next(store_manifest_reader_t *r, store_manifest_item_t *item, bq_errbuf_t *e)
{
    if (r->err)
        return bq_fail(e, r->err, "%s", r->errmsg);
    if (r->done) {
        item->kind = STORE_MANIFEST_END;
        item->end.nfiles = r->nfiles;
        item->end.nchunks = r->nchunkrefs;
        return 0;
    }
    if (r->rec_cap > REC_SHRINK) { /* a large META value is not kept around */
        free(r->rec);
        r->rec = NULL;
        r->rec_cap = 0;
    }
    uint8_t type;
    uint32_t len;
    uint64_t at;
    int rc = r_record(r, &type, &len, &at, e);
    if (rc)
        return rc;
    const uint8_t *p = r->rec;
    char pb[512];
    switch (type) {
    case REC_HEADER:
        return r_damaged(r, e, "second HEADER record at offset %llu", (unsigned long long)at);

    case REC_META: {
        if (r->in_file)
            return r_damaged(r, e, "META record at offset %llu inside file \"%s\"",
                             (unsigned long long)at, printable(r->path, strlen(r->path), pb));
        size_t klen = get_u16(p);
        if (klen == 0 || klen > STORE_MANIFEST_KEY_MAX || 2 + klen > len)
            return r_damaged(r, e, "META record at offset %llu has a key of impossible length %zu",
                             (unsigned long long)at, klen);
        if (memchr(p + 2, '\0', klen))
            return r_damaged(r, e, "META record at offset %llu has a NUL byte in its key",
                             (unsigned long long)at);
        memcpy(r->key, p + 2, klen);
        r->key[klen] = '\0';
        item->kind = STORE_MANIFEST_META;
        item->meta.key = r->key;
        item->meta.value = p + 2 + klen;
        item->meta.len = len - 2 - klen;
        return 0;
    }

    case REC_FILE: {
        if (r->in_file)
            return r_damaged(r, e, "FILE record at offset %llu inside file \"%s\" (no FILE_END)",
                             (unsigned long long)at, printable(r->path, strlen(r->path), pb));
        size_t plen = get_u16(p);
        if (len != 2 + plen + 12)
            return r_damaged(r, e, "FILE record at offset %llu has length %u for a path of %zu "
                             "bytes", (unsigned long long)at, len, plen);
        const char *why = store_manifest_path_problem((const char *)p + 2, plen);
        if (why)
            return r_damaged(r, e, "FILE record at offset %llu: path \"%s\" %s",
                             (unsigned long long)at, printable((const char *)p + 2, plen, pb),
                             why);
        memcpy(r->path, p + 2, plen);
        r->path[plen] = '\0';
        r->in_file = 1;
        r->file_nchunks = 0;
        item->kind = STORE_MANIFEST_FILE;
        item->file.path = r->path;
        item->file.mode = get_u32(p + 2 + plen);
        item->file.mtime = (int64_t)get_u64(p + 2 + plen + 4);
        return 0;
    }

    case REC_CHUNKS:
        if (!r->in_file)
            return r_damaged(r, e, "CHUNKS record at offset %llu outside a FILE",
                             (unsigned long long)at);
        if (len % ID_LEN)
            return r_damaged(r, e, "CHUNKS record at offset %llu has length %u, not a multiple "
                             "of %d", (unsigned long long)at, len, ID_LEN);
        r->file_nchunks += len / ID_LEN;
        r->nchunkrefs += len / ID_LEN;
        item->kind = STORE_MANIFEST_CHUNKS;
        item->chunks.ids = p;
        item->chunks.n = len / ID_LEN;
        return 0;

    case REC_FILE_END: {
        if (!r->in_file)
            return r_damaged(r, e, "FILE_END record at offset %llu outside a FILE",
                             (unsigned long long)at);
        uint64_t n = get_u64(p);
        if (n != r->file_nchunks)
            return r_damaged(r, e, "FILE_END of \"%s\" says %llu chunks but %llu were listed",
                             printable(r->path, strlen(r->path), pb), (unsigned long long)n,
                             (unsigned long long)r->file_nchunks);
        r->in_file = 0;
        r->nfiles++;
        item->kind = STORE_MANIFEST_FILE_END;
        item->file_end.path = r->path;
        item->file_end.nchunks = n;
        item->file_end.size = get_u64(p + 8);
        memcpy(item->file_end.sha256, p + 16, SHA_LEN);
        return 0;
    }

    case REC_END: {
        if (r->in_file)
            return r_damaged(r, e, "END record at offset %llu inside file \"%s\" (no FILE_END)",
                             (unsigned long long)at, printable(r->path, strlen(r->path), pb));
        uint8_t digest[SHA_LEN]; /* of every byte before END (r_record does not hash END) */
        crypto_hash_sha256_final(&r->sha, digest);
        if (sodium_memcmp(digest, p + 16, SHA_LEN) != 0)
            return r_damaged(r, e, "sha256 at END does not match the manifest's bytes");
        uint64_t nfiles = get_u64(p), nchunks = get_u64(p + 8);
        if (nfiles != r->nfiles || nchunks != r->nchunkrefs)
            return r_damaged(r, e, "counts at END do not match (END says %llu files and %llu "
                             "chunk refs, the manifest lists %llu and %llu)",
                             (unsigned long long)nfiles, (unsigned long long)nchunks,
                             (unsigned long long)r->nfiles, (unsigned long long)r->nchunkrefs);
        uint64_t end_off = r->poff;
        rc = r_more(r, e);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return r_damaged(r, e, "data after the END record (at offset %llu)",
                             (unsigned long long)end_off);
        r->done = 1;
        item->kind = STORE_MANIFEST_END;
        item->end.nfiles = nfiles;
        item->end.nchunks = nchunks;
        return 0;
    }
    }
    return r_damaged(r, e, "unknown record type %u at offset %llu", (unsigned)type,
                     (unsigned long long)at); /* not reached: r_record checked the type */
}

void store_manifest_close(store_manifest_reader_t **rp)
{
    if (!rp || !*rp)
        return;
    store_manifest_reader_t *r = *rp;
    if (r->fd >= 0)
        close(r->fd);
    sodium_memzero(&r->ss, sizeof r->ss);
    free(r->rec);
    free(r->pbuf);
    free(r->cbuf);
    free(r);
    *rp = NULL;
}
