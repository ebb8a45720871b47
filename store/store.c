#include "store.h"

#include "crew.h"
#include "fsutil.h"
#include "index.h"
#include "log.h"
#include "manifest.h"
#include "pack.h"
#include "session.h"
#include "store_int.h"
#include "wal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define STORE_MARKER "BARQUE_STORE"
#define STORE_MARKER_MAX 4096

/* Copy the first line of s into dst with anything unprintable shown as '?', for messages. */
static void printable_line(char *dst, size_t size, const char *s)
{
    size_t i = 0;
    for (; s[i] && s[i] != '\n' && i + 1 < size; i++)
        dst[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    dst[i] = '\0';
}

/* The marker is exactly "format=N\n". Returns 0 and *format, or BQ_E_STATE when damaged. */
static int marker_parse(const char *path, const char *text, size_t len, long *format,
                        bq_errbuf_t *e)
{
    static const char key[] = "format=";
    const size_t klen = sizeof key - 1;
    if (strlen(text) == len && strncmp(text, key, klen) == 0 &&
        isdigit((unsigned char)text[klen])) {
        char *end = NULL;
        errno = 0;
        long v = strtol(text + klen, &end, 10);
        if (errno == 0 && strcmp(end, "\n") == 0) {
            *format = v;
            return 0;
        }
    }
    char seen[64];
    printable_line(seen, sizeof seen, text);
    return bq_fail(e, BQ_E_STATE,
                   "store marker %s is damaged: expected \"format=%d\", found \"%s\"", path,
                   BQ_STORE_FORMAT, seen);
}

/* Check an existing marker: 0 when it names our format. */
static int marker_check(const char *path, bq_errbuf_t *e)
{
    char *text = NULL;
    size_t len = 0;
    int rc = bq_file_read_small(path, STORE_MARKER_MAX, &text, &len, e);
    if (rc == BQ_E_TOOBIG)
        return bq_fail(e, BQ_E_STATE, "store marker %s is damaged: larger than %d bytes", path,
                       STORE_MARKER_MAX);
    if (rc != 0)
        return rc;
    long format = 0;
    rc = marker_parse(path, text, len, &format, e);
    free(text);
    if (rc != 0)
        return rc;
    if (format != BQ_STORE_FORMAT)
        return bq_fail(e, BQ_E_VERSION,
                       "store marker %s has format %ld; this barque supports format %d", path,
                       format, BQ_STORE_FORMAT);
    return 0;
}

int store_init(const char *dir, bq_errbuf_t *e)
{
    if (!dir || !*dir)
        return bq_fail(e, BQ_E_INVAL, "store directory is not set");
    char marker[PATH_MAX];
    if (snprintf(marker, sizeof marker, "%s/%s", dir, STORE_MARKER) >= (int)sizeof marker)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", dir);

    int rc = bq_mkdir_p(dir, 0700, e);
    if (rc != 0)
        return rc;
    struct stat st;
    if (stat(dir, &st) != 0)
        return bq_fail(e, BQ_E_IO, "could not stat store %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return bq_fail(e, BQ_E_INVAL, "store path %s is not a directory", dir);

    if (lstat(marker, &st) == 0)
        return marker_check(marker, e);
    if (errno != ENOENT)
        return bq_fail(e, BQ_E_IO, "could not stat %s: %s", marker, strerror(errno));

    char text[32];
    int n = snprintf(text, sizeof text, "format=%d\n", BQ_STORE_FORMAT);
    rc = bq_file_write_durable(marker, text, (size_t)n, 0600, 1, e);
    if (rc == BQ_E_EXISTS)   /* another process initialised it first: check what it wrote */
        return marker_check(marker, e);
    return rc;
}

int store_space(const char *dir, uint64_t *free_bytes, uint64_t *total_bytes, bq_errbuf_t *e)
{
    unsigned long long f = 0, t = 0;
    int rc = bq_fs_space(dir, &f, &t, e);
    if (rc != 0)
        return rc;
    if (free_bytes)
        *free_bytes = (uint64_t)f;
    if (total_bytes)
        *total_bytes = (uint64_t)t;
    return 0;
}

/* ---- the store ---------------------------------------------------------------------------- */

#define STORE_CONF "store.conf"
#define STORE_CONF_MAX 4096
#define STORE_INDEX_MAP_MAX ((uint64_t)16 << 30)
#define STORE_KEY_CACHE_MAX 256
#define STORE_ID_KEY_DERIVE "barque id key 1" /* keyed BLAKE2b of it under the master key */

struct store {
    char dir[PATH_MAX];
    store_master_t master;
    uint8_t idkey[STORE_KEY_BYTES];
    uint32_t chunk_size;
    store_comp_t comp;
    int level;
    store_index_t *idx;
    int lock_fd;
    unsigned threads; /* backup writer threads; 0: one per online CPU */
    /* the WAL area's data key: a fresh one each UTC day (store_wal_archive) */
    pthread_mutex_t wal_mu;
    store_datakey_t wal_dk;
    int64_t wal_dk_day; /* days since the epoch; -1: none yet */
};

static int path_join(char *buf, size_t size, const char *dir, const char *name, bq_errbuf_t *e)
{
    if (snprintf(buf, size, "%s/%s", dir, name) >= (int)size)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s/%s", dir, name);
    return 0;
}

static int opts_check(const store_opts_t *o, bq_errbuf_t *e)
{
    if (o->chunk_size < STORE_CHUNK_SIZE_ALIGN || o->chunk_size > STORE_CHUNK_RAW_MAX ||
        o->chunk_size % STORE_CHUNK_SIZE_ALIGN != 0)
        return bq_fail(e, BQ_E_INVAL, "chunk size %" PRIu32 " is not a multiple of 8 KiB "
                       "between 8 KiB and 16 MiB", o->chunk_size);
    switch (o->comp) {
    case STORE_COMP_NONE:
        if (o->level != 0)
            return bq_fail(e, BQ_E_INVAL, "compression none takes no level (got %d)", o->level);
        return 0;
    case STORE_COMP_ZSTD:
        if (o->level < ZSTD_minCLevel() || o->level > ZSTD_maxCLevel())
            return bq_fail(e, BQ_E_INVAL, "zstd level %d is not in %d..%d", o->level,
                           ZSTD_minCLevel(), ZSTD_maxCLevel());
        return 0;
    case STORE_COMP_LZ4:
        if (o->level < 0 || o->level > 65537)
            return bq_fail(e, BQ_E_INVAL, "lz4 acceleration %d is not in 0..65537", o->level);
        return 0;
    case STORE_COMP_ZSTD_DELTA:
        break; /* a body's, not a store's */
    }
    return bq_fail(e, BQ_E_INVAL, "unknown compression %d", (int)o->comp);
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int store_create(const char *dir, const store_master_t *master, const store_opts_t *opts,
                 bq_errbuf_t *e)
{
    if (!dir || !*dir || !master)
        return bq_fail(e, BQ_E_INVAL, "could not create store: missing argument");
    store_opts_t o = {STORE_CHUNK_SIZE_DEFAULT, STORE_COMP_ZSTD, STORE_LEVEL_DEFAULT};
    if (opts) {
        o = *opts;
        if (o.chunk_size == 0)
            o.chunk_size = STORE_CHUNK_SIZE_DEFAULT;
        if (o.comp == STORE_COMP_ZSTD && o.level == 0)
            o.level = STORE_LEVEL_DEFAULT;
    }
    char conf[PATH_MAX], sub[PATH_MAX];
    int rc = opts_check(&o, e);
    if (rc == 0)
        rc = path_join(conf, sizeof conf, dir, STORE_CONF, e);
    if (rc != 0)
        return rc;
    struct stat st;
    if (lstat(conf, &st) == 0)
        return bq_fail(e, BQ_E_EXISTS, "could not create store %s: it already has %s", dir,
                       STORE_CONF);
    if (errno != ENOENT && errno != ENOTDIR)
        return bq_fail(e, BQ_E_IO, "could not stat %s: %s", conf, strerror(errno));
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not create store %s: libsodium cannot start", dir);
    if ((rc = store_init(dir, e)) != 0)
        return rc;

    static const char *const dirs[] = {"keys", "backups"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if ((rc = path_join(sub, sizeof sub, dir, dirs[i], e)) != 0 ||
            (rc = bq_mkdir_p(sub, 0700, e)) != 0)
            return rc;
    }
    if ((rc = path_join(sub, sizeof sub, dir, "lock", e)) != 0)
        return rc;
    if (lstat(sub, &st) != 0 && (rc = bq_file_write_durable(sub, "", 0, 0600, 0, e)) != 0)
        return rc;
    if ((rc = bq_fsync_dir_of(dir, e)) != 0)
        return rc;

    store_index_t *idx = NULL;
    if ((rc = store_index_open(dir, 0, STORE_INDEX_MAP_MAX, 0, &idx, e)) != 0)
        return rc;
    store_index_close(&idx);

    /* The id key is derived from the master key, so that every store made under one
     * deployment key names chunks alike and copies of backups between them dedup
     * (docs/store.md, "Keys"). A store made earlier with a random one keeps it. */
    uint8_t idkey[STORE_KEY_BYTES], wrapped[STORE_WRAPPED_BYTES];
    crypto_generichash(idkey, sizeof idkey, (const unsigned char *)STORE_ID_KEY_DERIVE,
                       sizeof STORE_ID_KEY_DERIVE - 1, master->key, sizeof master->key);
    rc = store_key_wrap(master, STORE_LABEL_ID_KEY, idkey, wrapped, e);
    sodium_memzero(idkey, sizeof idkey);
    if (rc != 0)
        return rc;
    char hex[2 * STORE_WRAPPED_BYTES + 1];
    hex_encode(wrapped, sizeof wrapped, hex);
    char text[512];
    int n = snprintf(text, sizeof text,
                     "format=%d\nchunk_size=%" PRIu32 "\ncompression=%s\nlevel=%d\nid_key=%s\n",
                     BQ_STORE_FORMAT, o.chunk_size, store_comp_name(o.comp), o.level, hex);
    rc = bq_file_write_durable(conf, text, (size_t)n, 0600, 1, e);
    if (rc == BQ_E_EXISTS)
        return bq_fail(e, BQ_E_EXISTS, "could not create store %s: it already has %s", dir,
                       STORE_CONF);
    return rc;
}

/* Parse store.conf into s (chunk size, compression, level) and wrapped. */
static int conf_parse(const char *path, char *text, store_t *s,
                      uint8_t wrapped[STORE_WRAPPED_BYTES], bq_errbuf_t *e)
{
    enum { F_FORMAT = 1, F_CHUNK = 2, F_COMP = 4, F_LEVEL = 8, F_KEY = 16, F_ALL = 31 };
    unsigned seen = 0;
    int lineno = 0;
    char *p = text;
    while (*p) {
        lineno++;
        char *nl = strchr(p, '\n');
        if (!nl)
            return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: no newline at "
                           "the end", path, lineno);
        *nl = '\0';
        char *line = p;
        p = nl + 1;
        char *eq = strchr(line, '=');
        if (!eq)
            return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: not key=value",
                           path, lineno);
        *eq = '\0';
        const char *key = line, *val = eq + 1;
        unsigned bit;
        char *end = NULL;
        long v = 0;
        if (strcmp(key, "id_key") == 0) {
            bit = F_KEY;
            if (strlen(val) != 2 * STORE_WRAPPED_BYTES)
                return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: id_key is "
                               "not %d hex digits", path, lineno, 2 * STORE_WRAPPED_BYTES);
            for (size_t i = 0; i < STORE_WRAPPED_BYTES; i++) {
                int hi = hex_digit(val[2 * i]), lo = hex_digit(val[2 * i + 1]);
                if (hi < 0 || lo < 0)
                    return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: id_key "
                                   "is not %d hex digits", path, lineno,
                                   2 * STORE_WRAPPED_BYTES);
                wrapped[i] = (uint8_t)(hi << 4 | lo);
            }
        } else if (strcmp(key, "compression") == 0) {
            bit = F_COMP;
            if (store_comp_parse(val, &s->comp) != 0)
                return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: unknown "
                               "compression \"%.32s\"", path, lineno, val);
        } else if (strcmp(key, "format") == 0 || strcmp(key, "chunk_size") == 0 ||
                   strcmp(key, "level") == 0) {
            bit = key[0] == 'f' ? F_FORMAT : key[0] == 'c' ? F_CHUNK : F_LEVEL;
            errno = 0;
            if (*val && (isdigit((unsigned char)*val) || *val == '-'))
                v = strtol(val, &end, 10);
            if (!end || *end || errno != 0 || end == val)
                return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: %s is not "
                               "a number", path, lineno, key);
            if (bit == F_FORMAT && v != BQ_STORE_FORMAT)
                return bq_fail(e, BQ_E_VERSION, "store config %s has format %ld; this barque "
                               "supports format %d", path, v, BQ_STORE_FORMAT);
            if (bit == F_CHUNK) {
                if (v < 0 || v > (long)STORE_CHUNK_RAW_MAX)
                    return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: "
                                   "chunk_size %ld is out of range", path, lineno, v);
                s->chunk_size = (uint32_t)v;
            } else if (bit == F_LEVEL) {
                if (v < INT_MIN / 2 || v > INT_MAX / 2)
                    return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: "
                                   "level %ld is out of range", path, lineno, v);
                s->level = (int)v;
            }
        } else {
            char shown[64];
            printable_line(shown, sizeof shown, key);
            return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: unknown key "
                           "\"%s\"", path, lineno, shown);
        }
        if (seen & bit)
            return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: %s given twice",
                           path, lineno, key);
        seen |= bit;
    }
    if (seen != F_ALL) {
        static const char *const names[] = {"format", "chunk_size", "compression", "level",
                                            "id_key"};
        size_t i = 0;
        while (seen & (1u << i))
            i++;
        return bq_fail(e, BQ_E_STATE, "store config %s is damaged: line %d: %s is missing",
                       path, lineno + 1, names[i]);
    }
    store_opts_t o = {s->chunk_size, s->comp, s->level};
    bq_errbuf_t why;
    if (opts_check(&o, &why) != 0)
        return bq_fail(e, BQ_E_STATE, "store config %s is damaged: %s", path, why.msg);
    return 0;
}

static int marker_require(const char *dir, bq_errbuf_t *e)
{
    char marker[PATH_MAX];
    int rc = path_join(marker, sizeof marker, dir, STORE_MARKER, e);
    if (rc != 0)
        return rc;
    struct stat st;
    if (lstat(marker, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return bq_fail(e, BQ_E_NOTFOUND, "%s is not a barque store (no %s)", dir,
                           STORE_MARKER);
        return bq_fail(e, BQ_E_IO, "could not stat %s: %s", marker, strerror(errno));
    }
    return marker_check(marker, e);
}

int store_open(const char *dir, const store_master_t *master, store_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (!dir || !*dir || !master)
        return bq_fail(e, BQ_E_INVAL, "could not open store: missing argument");
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not open store %s: libsodium cannot start", dir);
    int rc = marker_require(dir, e);
    if (rc != 0)
        return rc;
    store_t *s = calloc(1, sizeof *s);
    if (!s)
        return bq_fail(e, BQ_E_NOMEM, "out of memory opening store %s", dir);
    s->lock_fd = -1;
    pthread_mutex_init(&s->wal_mu, NULL);
    s->wal_dk_day = -1;
    if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int)sizeof s->dir) {
        free(s);
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", dir);
    }
    s->master = *master;

    char path[PATH_MAX];
    char *text = NULL;
    uint8_t wrapped[STORE_WRAPPED_BYTES];
    /* The lock first: store.conf (the wrapped id key) is read under it, so a rotate-key that
     * holds it exclusively cannot change the keys between that read and this open's writes. */
    if ((rc = path_join(path, sizeof path, dir, "lock", e)) != 0)
        goto fail;
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        rc = bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(s->lock_fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            rc = bq_fail(e, BQ_E_STATE, "store %s is held exclusively by another process (gc, "
                         "delete or rotate-key)\nhint: try again when it is done", dir);
        else
            rc = bq_fail(e, BQ_E_IO, "could not lock %s: %s", path, strerror(errno));
        goto fail;
    }
    if ((rc = path_join(path, sizeof path, dir, STORE_CONF, e)) != 0)
        goto fail;
    size_t len = 0;
    rc = bq_file_read_small(path, STORE_CONF_MAX, &text, &len, e);
    if (rc == BQ_E_TOOBIG)
        rc = bq_fail(e, BQ_E_STATE, "store config %s is damaged: larger than %d bytes", path,
                     STORE_CONF_MAX);
    else if (rc == BQ_E_NOTFOUND && access(path, F_OK) != 0 && errno == ENOENT)
        rc = bq_fail(e, BQ_E_NOTFOUND, "store %s has no %s (not created with store create, "
                     "or its creation was interrupted)", dir, STORE_CONF);
    if (rc != 0)
        goto fail;
    if (strlen(text) != len)
        rc = bq_fail(e, BQ_E_STATE, "store config %s is damaged: it holds a NUL byte", path);
    else
        rc = conf_parse(path, text, s, wrapped, e);
    free(text);
    if (rc != 0)
        goto fail;
    bq_errbuf_t why;
    if (store_key_unwrap(master, STORE_LABEL_ID_KEY, wrapped, s->idkey, "the id key", &why) !=
        0) {
        rc = bq_fail(e, BQ_E_KEY, "wrong store key for %s (the key in %s does not open the id "
                     "key in %s)", dir, master->path, STORE_CONF);
        goto fail;
    }

    if ((rc = store_index_open(dir, 0, STORE_INDEX_MAP_MAX, 0, &s->idx, e)) != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    store_close(&s);
    return rc;
}

void store_close(store_t **s_p)
{
    if (!s_p || !*s_p)
        return;
    store_t *s = *s_p;
    store_index_close(&s->idx);
    pthread_mutex_destroy(&s->wal_mu);
    store_datakey_clear(&s->wal_dk);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    sodium_memzero(s, sizeof *s);
    free(s);
    *s_p = NULL;
}

const char *store_dir(const store_t *s)
{
    return s->dir;
}

uint32_t store_chunk_size(const store_t *s)
{
    return s->chunk_size;
}

/* Backup ids as manifests require them (checked here too: the id becomes a file name). */
static int backup_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > STORE_MANIFEST_ID_MAX || id[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
    }
    return 1;
}

static int manifest_path(const store_t *s, const char *id, char *buf, size_t size, bq_errbuf_t *e)
{
    if (!backup_id_valid(id)) {
        char shown[80];
        printable_line(shown, sizeof shown, id ? id : "");
        return bq_fail(e, BQ_E_INVAL, "backup id \"%s\" is not 1..64 characters of "
                       "[A-Za-z0-9._-] not starting with '.'", shown);
    }
    if (snprintf(buf, size, "%s/backups/%s.manifest", s->dir, id) >= (int)size)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", s->dir);
    return 0;
}

/* ---- data keys and manifests (writer and readers) ----------------------------------------- */

typedef struct {
    store_t *s;
    store_datakey_t *keys;
    size_t nkeys, cap;
} key_cache_t;

static int key_get(key_cache_t *kc, uint32_t id, const store_datakey_t **out, bq_errbuf_t *e)
{
    for (size_t i = 0; i < kc->nkeys; i++)
        if (kc->keys[i].id == id) {
            *out = &kc->keys[i];
            return 0;
        }
    if (kc->nkeys == STORE_KEY_CACHE_MAX) { /* bounded: forget the oldest half */
        size_t half = kc->nkeys / 2;
        sodium_memzero(kc->keys, half * sizeof *kc->keys);
        memmove(kc->keys, kc->keys + half, (kc->nkeys - half) * sizeof *kc->keys);
        kc->nkeys -= half;
    }
    if (kc->nkeys == kc->cap) {
        size_t cap = kc->cap ? kc->cap * 2 : 8;
        store_datakey_t *k = sodium_malloc(cap * sizeof *k);
        if (!k)
            return bq_fail(e, BQ_E_NOMEM, "out of memory caching data keys");
        if (kc->keys) {
            memcpy(k, kc->keys, kc->nkeys * sizeof *k);
            sodium_free(kc->keys);
        }
        kc->keys = k;
        kc->cap = cap;
    }
    int rc = store_datakey_load(kc->s->dir, &kc->s->master, id, &kc->keys[kc->nkeys], e);
    if (rc != 0)
        return rc;
    *out = &kc->keys[kc->nkeys++];
    return 0;
}

static void key_cache_free(key_cache_t *kc)
{
    if (kc->keys)
        sodium_free(kc->keys); /* wipes */
    kc->keys = NULL;
    kc->nkeys = kc->cap = 0;
}

static int manifest_key(void *arg, uint32_t key_id, uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES],
                        bq_errbuf_t *e)
{
    const store_datakey_t *dk = NULL;
    int rc = key_get(arg, key_id, &dk, e);
    if (rc == 0)
        memcpy(key, dk->key, STORE_MANIFEST_DATA_KEY_BYTES);
    return rc;
}

static int manifest_open(store_t *s, const char *backup_id, key_cache_t *kc,
                         store_manifest_reader_t **r, bq_errbuf_t *e)
{
    char path[PATH_MAX];
    int rc = manifest_path(s, backup_id, path, sizeof path, e);
    if (rc != 0)
        return rc;
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return bq_fail(e, BQ_E_NOTFOUND, "backup %s does not exist in store %s", backup_id,
                       s->dir);
    return store_manifest_open(path, manifest_key, kc, r, e);
}

/* ---- writing a backup --------------------------------------------------------------------- */

/* The writer collects the caller's files in a batch of chunk slots (about BATCH_BYTES), with
 * the events that place them (file begin, chunk, file end). A full batch is processed in four
 * steps: (1) the crew hashes every slot (chunk ids); (2) in one reference section (store/session.h) each id is looked up (an
 * earlier slot of the batch, the chunks appended since the last pack sync, then the index) and
 * the ids the backup will rely on are noted for GC; (3) the crew seals the new chunks only;
 * (4) in order, new chunks are appended to the pack and every event goes to the manifest, each
 * file's checksum (sha256 of its chunk ids, which are keyed hashes of its content: no second
 * pass over the bytes) with its end. */
#define BATCH_BYTES ((size_t)4 << 20)
#define BATCH_SLOTS_MAX 512

enum { EV_FILE_BEGIN = 1, EV_CHUNK = 2, EV_FILE_END = 3 };
enum { SLOT_NEW = 1, SLOT_KNOWN = 2, SLOT_PEND = 3, SLOT_DUP = 4 };

typedef struct {
    uint8_t kind;
    uint32_t arg;   /* EV_CHUNK: the slot; EV_FILE_BEGIN: offset of the path in paths */
    uint32_t mode;  /* EV_FILE_BEGIN */
    int64_t mtime;  /* EV_FILE_BEGIN */
    uint64_t size;  /* EV_FILE_END */
} wevent_t;

typedef struct {
    uint8_t *data; /* chunk_size bytes */
    size_t len;
    uint8_t id[STORE_CHUNK_ID_BYTES];
    int verdict;
    uint8_t *sealed; /* sealed_cap bytes */
    size_t sealed_len;
    int rc;
    bq_errbuf_t err;
    /* deltas: the base backup's chunk at the same place, the base chosen, the outcome */
    uint8_t has_prev, has_base, delta;
    uint8_t prev[STORE_CHUNK_ID_BYTES];
    uint8_t base[STORE_CHUNK_ID_BYTES];
} wslot_t;

/* The base backup of a writer (store_backup_set_base): its files by path hash, and a cursor
 * that walks its manifest alongside the backup (files come in the same order from one
 * backup to the next: PostgreSQL sends them in directory order). */
#define BASE_FILES_MAX ((size_t)1 << 20)

typedef struct {
    key_cache_t kc;
    store_manifest_reader_t *mr; /* the cursor; NULL once it ended or failed */
    uint64_t *hash;              /* path hashes (0: an empty slot) */
    uint32_t *ord;               /* their file numbers (UINT32_MAX: two paths, one hash) */
    size_t cap, n;
    int64_t cur;                 /* the number of the last FILE read (-1: none yet) */
    int fresh;                   /* no CHUNKS of that file read yet */
    int active;                  /* the backup's open file is that file: chunks follow */
    uint8_t ids[STORE_MANIFEST_CHUNKS_PER_RECORD][STORE_CHUNK_ID_BYTES];
    size_t nids, pos;
    char name[STORE_MANIFEST_ID_MAX + 1];
} wbase_t;

struct store_backup {
    store_t *s;
    char id[STORE_MANIFEST_ID_MAX + 1];
    store_datakey_t dk;
    store_crew_t *crew;
    store_chunk_ctx_t *ctx[STORE_CREW_MAX]; /* one per crew thread */
    store_session_t *ss;
    store_appender_t app; /* the packs and the entries not indexed yet */
    store_manifest_writer_t *man;
    size_t sealed_cap;
    /* the batch: slots[nslots] is the one being filled */
    wslot_t *slots;
    size_t nslots, slots_max;
    wevent_t *ev;
    size_t nev, ev_cap;
    char *paths;
    size_t paths_len, paths_cap;
    uint32_t *bset; /* ids of the batch's slots (slot + 1), open addressing */
    size_t bset_cap;
    uint32_t *newslots; /* the slots step 3 seals */
    size_t nnew;
    uint8_t (*notes)[STORE_CHUNK_ID_BYTES];
    store_sha256_t *fsha; /* the open file's checksum: sha256 of its chunk ids, in order */
    int in_file;
    uint64_t file_size;
    int failed;
    int started;                            /* a file was begun */
    wbase_t *base;                          /* store_backup_set_base, or NULL */
    store_reader_t *rd[STORE_CREW_MAX];     /* with a base: one per crew thread */
    uint8_t *dbuf[STORE_CREW_MAX];          /* with a base: delta bodies, sealed_cap bytes */
    int delta_level;
    _Atomic uint64_t base_errors;
    store_backup_stats_t st;
};

static uint64_t id_hash(const uint8_t id[STORE_CHUNK_ID_BYTES])
{
    uint64_t h; /* ids are keyed hashes: any 8 bytes are uniform */
    memcpy(&h, id, sizeof h);
    return h;
}

/* ---- the appender (store_int.h): the writer's and the importer's way into packs ---- */

/* The pending entry of id, or NULL. */
const store_index_entry_t *store_appender_find(const store_appender_t *a,
                                               const uint8_t id[STORE_CHUNK_ID_BYTES])
{
    if (a->set_cap == 0)
        return NULL;
    size_t mask = a->set_cap - 1;
    for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
        uint32_t v = a->set[i];
        if (v == 0)
            return NULL;
        if (memcmp(a->pend[v - 1].id, id, STORE_CHUNK_ID_BYTES) == 0)
            return &a->pend[v - 1];
    }
}

static void set_insert(uint32_t *set, size_t cap, const uint8_t id[STORE_CHUNK_ID_BYTES],
                       uint32_t value)
{
    size_t mask = cap - 1;
    size_t i = id_hash(id) & mask;
    while (set[i] != 0)
        i = (i + 1) & mask;
    set[i] = value;
}

static int pend_add(store_appender_t *a, const store_index_entry_t *ent, bq_errbuf_t *e)
{
    if (a->npend == a->pend_cap) {
        size_t cap = a->pend_cap ? a->pend_cap * 2 : 1024;
        if (cap > UINT32_MAX / 4)
            return bq_fail(e, BQ_E_NOMEM, "%s: too many chunks pending in one pack", a->what);
        store_index_entry_t *p = realloc(a->pend, cap * sizeof *p);
        uint32_t *set = calloc(cap * 2, sizeof *set);
        if (!p || !set) {
            if (p)
                a->pend = p;
            free(set);
            return bq_fail(e, BQ_E_NOMEM, "out of memory writing %s", a->what);
        }
        a->pend = p;
        a->pend_cap = cap;
        free(a->set);
        a->set = set;
        a->set_cap = cap * 2;
        for (size_t i = 0; i < a->npend; i++)
            set_insert(a->set, a->set_cap, a->pend[i].id, (uint32_t)i + 1);
    }
    a->pend[a->npend] = *ent;
    a->npend++;
    a->pend_bytes += ent->loc.rec_len;
    set_insert(a->set, a->set_cap, ent->id, (uint32_t)a->npend);
    return 0;
}

int store_appender_flush(store_appender_t *a, int close_it, bq_errbuf_t *e)
{
    int rc = a->pack ? store_pack_sync(a->pack, e) : 0;
    if (rc == 0 && a->npend > 0) {
        rc = store_index_put_new(a->s->idx, a->pend, a->npend, e);
        a->flushes += rc == 0;
    }
    if (rc != 0)
        return rc;
    a->npend = 0;
    a->pend_bytes = 0;
    if (a->set)
        memset(a->set, 0, a->set_cap * sizeof *a->set);
    if (close_it && a->pack)
        rc = store_pack_close(&a->pack, e);
    return rc;
}

static int pend_full(const store_appender_t *a)
{
    return a->npend >= a->flush_entries || (a->flush_bytes && a->pend_bytes >= a->flush_bytes);
}

/* A new pack with a fresh random id, noted in the session before it exists. */
static int pack_start(store_appender_t *a, bq_errbuf_t *e)
{
    int rc = store_session_enter(a->ss, e);
    for (int tries = 0; rc == 0; tries++) {
        uint64_t pid = 0;
        while (pid == 0)
            randombytes_buf(&pid, sizeof pid);
        if ((rc = store_session_note_pack(a->ss, pid, e)) != 0)
            break;
        rc = store_pack_create(a->s->dir, pid, &a->pack, e);
        if (rc != BQ_E_EXISTS)
            break;
        if (tries >= 8) {
            rc = bq_fail(e, BQ_E_IO, "%s: could not find a free pack id in %s", a->what,
                         a->s->dir);
            break;
        }
        rc = 0;
    }
    store_session_leave(a->ss);
    return rc;
}

int store_appender_append(store_appender_t *a, const uint8_t id[STORE_CHUNK_ID_BYTES],
                          uint32_t raw_len, const uint8_t *base, const void *body, size_t len,
                          uint32_t *rec_len, bq_errbuf_t *e)
{
    int rc;
    if (!a->pack && (rc = pack_start(a, e)) != 0)
        return rc;
    store_index_entry_t ent;
    memset(&ent, 0, sizeof ent);
    memcpy(ent.id, id, sizeof ent.id);
    ent.loc.pack = store_pack_id(a->pack);
    ent.loc.raw_len = raw_len;
    if (base) {
        ent.loc.flags = STORE_INDEX_F_DELTA;
        memcpy(ent.loc.base, base, STORE_CHUNK_ID_BYTES);
    }
    if ((rc = store_pack_append(a->pack, id, body, len, &ent.loc.offset, &ent.loc.rec_len,
                                e)) != 0 ||
        (rc = pend_add(a, &ent, e)) != 0)
        return rc;
    if (rec_len)
        *rec_len = ent.loc.rec_len;
    /* A full pack is synced and closed; its entries stay pending (the session notes the pack,
     * so GC leaves it alone) until the bounds say they go. */
    if (store_pack_size(a->pack) >= STORE_PACK_TARGET)
        return pend_full(a) ? store_appender_flush(a, 1, e) : store_pack_close(&a->pack, e);
    return pend_full(a) ? store_appender_flush(a, 0, e) : 0;
}

void store_appender_free(store_appender_t *a)
{
    store_pack_abandon(&a->pack);
    free(a->pend);
    free(a->set);
    a->pend = NULL;
    a->set = NULL;
    a->npend = a->pend_cap = a->set_cap = 0;
    a->pend_bytes = 0;
}

/* ---- the base backup ---- */

static int bw_usable(store_backup_t *bw, bq_errbuf_t *e);

static uint64_t path_hash(const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h | 1; /* never 0: 0 marks an empty slot */
}

static void base_free(wbase_t **b_p)
{
    wbase_t *b = *b_p;
    if (!b)
        return;
    store_manifest_close(&b->mr);
    key_cache_free(&b->kc);
    free(b->hash);
    free(b->ord);
    free(b);
    *b_p = NULL;
}

/* The number of the base's file whose path hashes to h, or -1. */
static int64_t base_find(const wbase_t *b, uint64_t h)
{
    if (b->cap == 0)
        return -1;
    for (size_t i = (size_t)(h >> 7) & (b->cap - 1);; i = (i + 1) & (b->cap - 1)) {
        if (b->hash[i] == 0)
            return -1;
        if (b->hash[i] == h)
            return b->ord[i] == UINT32_MAX ? -1 : (int64_t)b->ord[i];
    }
}

static int base_add(wbase_t *b, uint64_t h, uint32_t ord)
{
    if ((b->n + 1) * 2 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        uint64_t *hash = calloc(cap, sizeof *hash);
        uint32_t *o = calloc(cap, sizeof *o);
        if (!hash || !o) {
            free(hash);
            free(o);
            return BQ_E_NOMEM;
        }
        for (size_t i = 0; i < b->cap; i++) {
            if (b->hash[i] == 0)
                continue;
            size_t k = (size_t)(b->hash[i] >> 7) & (cap - 1);
            while (hash[k] != 0)
                k = (k + 1) & (cap - 1);
            hash[k] = b->hash[i];
            o[k] = b->ord[i];
        }
        free(b->hash);
        free(b->ord);
        b->hash = hash;
        b->ord = o;
        b->cap = cap;
    }
    size_t i = (size_t)(h >> 7) & (b->cap - 1);
    for (; b->hash[i] != 0; i = (i + 1) & (b->cap - 1))
        if (b->hash[i] == h) {
            b->ord[i] = UINT32_MAX; /* ambiguous: neither file gets a base */
            return 0;
        }
    b->hash[i] = h;
    b->ord[i] = ord;
    b->n++;
    return 0;
}

/* The cursor could not go on: the rest of the backup is stored without deltas. */
static void base_stop(store_backup_t *bw, const char *why)
{
    wbase_t *b = bw->base;
    if (why)
        bq_warn("store", 0, "backup %s: base backup %s: %s; the rest is stored without deltas",
                bw->id, b->name, why);
    store_manifest_close(&b->mr);
    b->active = 0;
}

/* The backup begins file path: put the cursor at the base's file of that path, if it is
 * ahead. */
static void base_seek(store_backup_t *bw, const char *path)
{
    wbase_t *b = bw->base;
    b->active = 0;
    if (!b->mr)
        return;
    int64_t want = base_find(b, path_hash(path));
    if (want < 0 || want < b->cur || (want == b->cur && !b->fresh))
        return; /* not in the base, or passed: files came in another order */
    bq_errbuf_t why = {{0}};
    store_manifest_item_t it;
    while (b->cur < want) {
        if (store_manifest_next(b->mr, &it, &why) != 0)
            return base_stop(bw, why.msg);
        if (it.kind == STORE_MANIFEST_END)
            return base_stop(bw, NULL);
        if (it.kind == STORE_MANIFEST_FILE) {
            b->cur++;
            b->fresh = 1;
        }
    }
    b->active = 1;
    b->nids = b->pos = 0;
}

/* The base's id of the open file's next chunk: 1 and id, or 0 (past its end, no base). */
static int base_next(store_backup_t *bw, uint8_t id[STORE_CHUNK_ID_BYTES])
{
    wbase_t *b = bw->base;
    if (!b->active || !b->mr)
        return 0;
    if (b->pos == b->nids) {
        bq_errbuf_t why = {{0}};
        store_manifest_item_t it;
        if (store_manifest_next(b->mr, &it, &why) != 0) {
            base_stop(bw, why.msg);
            return 0;
        }
        if (it.kind != STORE_MANIFEST_CHUNKS) {
            b->active = 0;
            if (it.kind == STORE_MANIFEST_FILE) {
                b->cur++;
                b->fresh = 1;
            } else if (it.kind == STORE_MANIFEST_END) {
                base_stop(bw, NULL);
            }
            return 0;
        }
        memcpy(b->ids, it.chunks.ids, it.chunks.n * STORE_CHUNK_ID_BYTES);
        b->nids = it.chunks.n;
        b->pos = 0;
        b->fresh = 0;
    }
    memcpy(id, b->ids[b->pos++], STORE_CHUNK_ID_BYTES);
    return 1;
}

/* Step 0, in order: each slot's chunk in the base (the events give files and chunks in
 * order). */
static void batch_bases(store_backup_t *bw)
{
    for (size_t i = 0; i < bw->nev; i++) {
        const wevent_t *ev = &bw->ev[i];
        if (ev->kind == EV_FILE_BEGIN) {
            base_seek(bw, bw->paths + ev->arg);
        } else if (ev->kind == EV_CHUNK) {
            wslot_t *sl = &bw->slots[ev->arg];
            sl->has_prev = (uint8_t)base_next(bw, sl->prev);
        } else if (ev->kind == EV_FILE_END) {
            bw->base->active = 0;
        }
    }
}

int store_backup_set_base(store_backup_t *bw, const char *base_id, bq_errbuf_t *e)
{
    int rc = bw_usable(bw, e);
    if (rc != 0)
        return rc;
    if (bw->started || bw->base)
        return bq_fail(e, BQ_E_STATE, "backup %s: a base is set before the first file, once",
                       bw->id);
    if (bw->s->comp == STORE_COMP_NONE)
        return 0; /* uncompressed by choice: no deltas either */
    wbase_t *b = calloc(1, sizeof *b);
    if (!b)
        return bq_fail(e, BQ_E_NOMEM, "out of memory reading base backup %s", base_id);
    b->kc.s = bw->s;
    b->cur = -1;
    snprintf(b->name, sizeof b->name, "%s", base_id ? base_id : "");
    /* Pass 1: the base's files by path. */
    store_manifest_reader_t *mr = NULL;
    rc = manifest_open(bw->s, base_id, &b->kc, &mr, e);
    store_manifest_item_t it;
    uint32_t nfiles = 0;
    while (rc == 0 && (rc = store_manifest_next(mr, &it, e)) == 0 &&
           it.kind != STORE_MANIFEST_END) {
        if (it.kind != STORE_MANIFEST_FILE)
            continue;
        if (nfiles < BASE_FILES_MAX && base_add(b, path_hash(it.file.path), nfiles) != 0)
            rc = bq_fail(e, BQ_E_NOMEM, "out of memory reading base backup %s", base_id);
        nfiles++;
    }
    store_manifest_close(&mr);
    /* Pass 2 is the cursor, which walks along the backup. */
    if (rc == 0)
        rc = manifest_open(bw->s, base_id, &b->kc, &b->mr, e);
    for (unsigned i = 0; rc == 0 && i < store_crew_size(bw->crew); i++) {
        if ((rc = store_reader_new(bw->s, &bw->rd[i], e)) == 0 &&
            !(bw->dbuf[i] = malloc(bw->sealed_cap)))
            rc = bq_fail(e, BQ_E_NOMEM, "out of memory starting backup %s", bw->id);
    }
    if (rc != 0) {
        base_free(&b);
        for (unsigned i = 0; i < STORE_CREW_MAX; i++) {
            store_reader_destroy(&bw->rd[i]);
            free(bw->dbuf[i]);
            bw->dbuf[i] = NULL;
        }
        return rc;
    }
    bw->delta_level = bw->s->comp == STORE_COMP_ZSTD ? bw->s->level : 1;
    bw->base = b;
    return 0;
}

/* Step 1, on a crew thread: hash slot task. */
static void hash_task(void *arg, size_t task, unsigned thread)
{
    store_backup_t *bw = arg;
    wslot_t *sl = &bw->slots[task];
    sl->rc = store_chunk_ctx_id(bw->ctx[thread], sl->data, sl->len, sl->id);
    if (sl->rc != 0)
        bq_fail(&sl->err, sl->rc, "backup %s: could not hash a chunk", bw->id);
}

/* Step 3, on a crew thread: seal one new chunk. */
static void seal_task(void *arg, size_t task, unsigned thread)
{
    store_backup_t *bw = arg;
    wslot_t *sl = &bw->slots[bw->newslots[task]];
    sl->rc = store_chunk_seal(bw->ctx[thread], sl->id, &bw->dk, bw->s->comp, bw->s->level,
                              sl->data, sl->len, sl->sealed, bw->sealed_cap, &sl->sealed_len,
                              &sl->err);
    sl->delta = 0;
    if (sl->rc != 0 || !sl->has_base)
        return;
    /* The base's plaintext (a base is never a delta itself), then the delta, kept when it is
     * at least 1/8 shorter than the whole chunk sealed. */
    const uint8_t *body = NULL, *base = NULL;
    size_t blen = 0, base_len = 0, dlen = 0;
    uint8_t again[STORE_CHUNK_ID_BYTES];
    bq_errbuf_t why = {{0}};
    int rc = store_reader_sealed(bw->rd[thread], sl->base, &body, &blen, &why);
    if (rc == 0 && store_chunk_body_base(body, blen, again))
        return;
    if (rc == 0)
        rc = store_reader_open(bw->rd[thread], sl->base, body, blen, NULL, 0, NULL, &base,
                               &base_len, &why);
    if (rc != 0) {
        if (atomic_fetch_add(&bw->base_errors, 1) == 0)
            bq_warn("store", 0, "backup %s: a base chunk could not be read (chunks are stored "
                    "whole instead): %s", bw->id, why.msg);
        return;
    }
    rc = store_chunk_seal_delta(bw->ctx[thread], sl->id, &bw->dk, bw->delta_level, sl->data,
                                sl->len, sl->base, base, base_len,
                                sl->sealed_len - sl->sealed_len / 8, bw->dbuf[thread],
                                bw->sealed_cap, &dlen, &why);
    if (rc == 0) {
        memcpy(sl->sealed, bw->dbuf[thread], dlen);
        sl->sealed_len = dlen;
        sl->delta = 1;
    } else if (rc < 0) {
        sl->rc = rc;
        sl->err = why;
    }
}

static int slots_check(store_backup_t *bw, bq_errbuf_t *e)
{
    for (size_t i = 0; i < bw->nslots; i++)
        if (bw->slots[i].rc != 0)
            return bq_fail(e, bw->slots[i].rc, "%s", bw->slots[i].err.msg);
    return 0;
}

/* Step 2: decide each slot's fate, and note what the backup will rely on. */
static int batch_decide(store_backup_t *bw, bq_errbuf_t *e)
{
    size_t mask = bw->bset_cap - 1, nnotes = 0;
    memset(bw->bset, 0, bw->bset_cap * sizeof *bw->bset);
    bw->nnew = 0;
    int rc = store_session_enter(bw->ss, e);
    for (size_t k = 0; rc == 0 && k < bw->nslots; k++) {
        wslot_t *sl = &bw->slots[k];
        size_t i = id_hash(sl->id) & mask;
        int dup = 0;
        for (; bw->bset[i] != 0; i = (i + 1) & mask)
            if (memcmp(bw->slots[bw->bset[i] - 1].id, sl->id, STORE_CHUNK_ID_BYTES) == 0) {
                dup = 1;
                break;
            }
        if (dup) {
            sl->verdict = SLOT_DUP;
            continue;
        }
        bw->bset[i] = (uint32_t)k + 1;
        if (store_appender_find(&bw->app, sl->id)) {
            sl->verdict = SLOT_PEND; /* noted when it was new */
            continue;
        }
        store_index_loc_t loc;
        rc = store_index_get(bw->s->idx, sl->id, &loc, e);
        if (rc == 0) {
            sl->verdict = SLOT_KNOWN;
        } else if (rc == BQ_E_NOTFOUND) {
            sl->verdict = SLOT_NEW;
            bw->newslots[bw->nnew++] = (uint32_t)k;
            rc = 0;
        } else {
            break;
        }
        memcpy(bw->notes[nnotes++], sl->id, STORE_CHUNK_ID_BYTES);
        /* A new chunk whose place in the base holds a stored chunk: that chunk (or its own
         * base) is the delta's base, noted so that GC keeps it. */
        sl->has_base = 0;
        if (sl->verdict == SLOT_NEW && sl->has_prev &&
            store_index_get(bw->s->idx, sl->prev, &loc, NULL) == 0) {
            memcpy(sl->base, loc.flags & STORE_INDEX_F_DELTA ? loc.base : sl->prev,
                   STORE_CHUNK_ID_BYTES);
            sl->has_base = 1;
            memcpy(bw->notes[nnotes++], sl->base, STORE_CHUNK_ID_BYTES);
        }
    }
    if (rc == 0)
        rc = store_session_note_chunks(bw->ss, (const uint8_t(*)[STORE_CHUNK_ID_BYTES])bw->notes,
                                       nnotes, e);
    store_session_leave(bw->ss);
    return rc;
}

/* Step 4: one new chunk into the pack. */
static int chunk_append(store_backup_t *bw, wslot_t *sl, bq_errbuf_t *e)
{
    uint32_t rec_len = 0;
    int rc = store_appender_append(&bw->app, sl->id, (uint32_t)sl->len,
                                   sl->delta ? sl->base : NULL, sl->sealed, sl->sealed_len,
                                   &rec_len, e);
    if (rc != 0)
        return rc;
    bw->st.new_chunks++;
    bw->st.new_bytes += rec_len;
    if (sl->delta) {
        bw->st.delta_chunks++;
        bw->st.delta_bytes += rec_len;
    }
    return 0;
}

/* Process the batch (steps 1-4) and empty it. */
static int batch_run(store_backup_t *bw, bq_errbuf_t *e)
{
    if (bw->nev == 0)
        return 0;
    if (bw->base)
        batch_bases(bw);
    store_crew_run(bw->crew, hash_task, bw, bw->nslots);
    int rc = slots_check(bw, e);
    if (rc == 0)
        rc = batch_decide(bw, e);
    if (rc == 0) {
        store_crew_run(bw->crew, seal_task, bw, bw->nnew);
        rc = slots_check(bw, e);
    }
    for (size_t i = 0; rc == 0 && i < bw->nev; i++) {
        const wevent_t *ev = &bw->ev[i];
        if (ev->kind == EV_FILE_BEGIN) {
            store_manifest_file_t f = {bw->paths + ev->arg, ev->mode, ev->mtime};
            rc = store_manifest_file_begin(bw->man, &f, e);
            store_sha256_init(bw->fsha);
        } else if (ev->kind == EV_FILE_END) {
            uint8_t sum[32];
            if (store_sha256_final(bw->fsha, sum) != 0)
                rc = bq_fail(e, BQ_E_NOMEM, "backup %s: could not compute a file's checksum",
                             bw->id);
            if (rc == 0)
                rc = store_manifest_file_end(bw->man, sum, ev->size, e);
            bw->st.files++;
            bw->st.logical_bytes += ev->size;
        } else {
            wslot_t *sl = &bw->slots[ev->arg];
            if (sl->verdict == SLOT_NEW) {
                rc = chunk_append(bw, sl, e);
            } else {
                bw->st.dedup_chunks++;
                bw->st.dedup_bytes += sl->len;
            }
            bw->st.chunks++;
            store_sha256_update(bw->fsha, sl->id, STORE_CHUNK_ID_BYTES);
            if (rc == 0)
                rc = store_manifest_file_chunk(bw->man, sl->id, e);
        }
    }
    for (size_t i = 0; i < bw->nslots; i++)
        bw->slots[i].len = 0;
    bw->nslots = 0;
    bw->nev = 0;
    bw->paths_len = 0;
    return rc;
}

static wevent_t *ev_push(store_backup_t *bw, uint8_t kind, uint32_t arg)
{
    wevent_t *ev = &bw->ev[bw->nev++]; /* room is made by file_begin (see there) */
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->arg = arg;
    return ev;
}

/* The slot being filled is complete: into the batch, which runs when it is full. */
static int slot_close(store_backup_t *bw, bq_errbuf_t *e)
{
    ev_push(bw, EV_CHUNK, (uint32_t)bw->nslots);
    bw->nslots++;
    return bw->nslots == bw->slots_max ? batch_run(bw, e) : 0;
}

void store_backup_abort(store_backup_t **bw_p)
{
    if (!bw_p || !*bw_p)
        return;
    store_backup_t *bw = *bw_p;
    store_manifest_abort(&bw->man);
    store_appender_free(&bw->app);
    store_session_end(&bw->ss); /* after the temp manifest is gone (docs/store.md, "GC") */
    store_crew_destroy(&bw->crew);
    for (unsigned i = 0; i < STORE_CREW_MAX; i++)
        store_chunk_ctx_destroy(&bw->ctx[i]);
    store_datakey_clear(&bw->dk);
    base_free(&bw->base);
    for (unsigned i = 0; i < STORE_CREW_MAX; i++) {
        store_reader_destroy(&bw->rd[i]);
        free(bw->dbuf[i]);
    }
    if (bw->slots) {
        for (size_t i = 0; i < bw->slots_max; i++) {
            if (bw->slots[i].data) {
                sodium_memzero(bw->slots[i].data, bw->s->chunk_size);
                free(bw->slots[i].data);
            }
            free(bw->slots[i].sealed);
        }
        free(bw->slots);
    }
    free(bw->ev);
    free(bw->paths);
    free(bw->bset);
    free(bw->newslots);
    free(bw->notes);
    store_sha256_destroy(&bw->fsha);
    free(bw);
    *bw_p = NULL;
}

void store_set_threads(store_t *s, unsigned n)
{
    s->threads = n > STORE_CREW_MAX ? STORE_CREW_MAX : n;
}

static int batch_alloc(store_backup_t *bw, bq_errbuf_t *e)
{
    const size_t cs = bw->s->chunk_size;
    size_t n = BATCH_BYTES / cs;
    unsigned threads = store_crew_size(bw->crew);
    if (n < 2 * (size_t)threads)
        n = 2 * (size_t)threads;
    if (n > BATCH_SLOTS_MAX)
        n = BATCH_SLOTS_MAX;
    bw->slots_max = n;
    bw->ev_cap = 3 * n + 8;
    bw->paths_cap = 64 * 1024;
    for (bw->bset_cap = 16; bw->bset_cap < 2 * n; bw->bset_cap *= 2)
        ;
    bw->slots = calloc(n, sizeof *bw->slots);
    bw->ev = calloc(bw->ev_cap, sizeof *bw->ev);
    bw->paths = malloc(bw->paths_cap);
    bw->bset = calloc(bw->bset_cap, sizeof *bw->bset);
    bw->newslots = calloc(n, sizeof *bw->newslots);
    bw->notes = calloc(2 * n, sizeof *bw->notes); /* the new chunks and their bases */
    if (!bw->slots || !bw->ev || !bw->paths || !bw->bset || !bw->newslots || !bw->notes)
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting backup %s", bw->id);
    for (size_t i = 0; i < n; i++) {
        bw->slots[i].data = malloc(cs);
        bw->slots[i].sealed = malloc(bw->sealed_cap);
        if (!bw->slots[i].data || !bw->slots[i].sealed)
            return bq_fail(e, BQ_E_NOMEM, "out of memory starting backup %s", bw->id);
    }
    return 0;
}

int store_backup_begin(store_t *s, const char *backup_id, store_backup_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    char path[PATH_MAX];
    int rc = manifest_path(s, backup_id, path, sizeof path, e);
    if (rc != 0)
        return rc;
    if (access(path, F_OK) == 0)
        return bq_fail(e, BQ_E_EXISTS, "backup %s already exists in store %s", backup_id,
                       s->dir);
    store_backup_t *bw = calloc(1, sizeof *bw);
    if (!bw)
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting backup %s", backup_id);
    bw->s = s;
    snprintf(bw->id, sizeof bw->id, "%s", backup_id);
    bw->app.s = s;
    snprintf(bw->app.what, sizeof bw->app.what, "backup %s", backup_id);
    bw->app.flush_entries = STORE_PEND_MAX;
    bw->sealed_cap = store_chunk_seal_bound(s->chunk_size);
    unsigned threads = s->threads ? s->threads : store_crew_default_size();
    char sub[PATH_MAX];
    if ((rc = store_crew_new(threads, &bw->crew, e)) != 0 || (rc = batch_alloc(bw, e)) != 0 ||
        (rc = store_sha256_new(&bw->fsha, e)) != 0)
        goto fail;
    for (unsigned i = 0; i < threads; i++)
        if ((rc = store_chunk_ctx_new(s->idkey, &bw->ctx[i], e)) != 0)
            goto fail;
    if ((rc = path_join(sub, sizeof sub, s->dir, "backups", e)) != 0 ||
        (rc = bq_mkdir_p(sub, 0700, e)) != 0 ||
        (rc = store_datakey_new(s->dir, &s->master, &bw->dk, e)) != 0 ||
        (rc = store_session_new(s->dir, &bw->ss, e)) != 0)
        goto fail;
    bw->app.ss = bw->ss;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t created = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    rc = store_manifest_create_at(path, store_session_name(bw->ss), backup_id, created,
                                  s->chunk_size, bw->dk.id, bw->dk.key, &bw->man, e);
    if (rc == BQ_E_EXISTS)
        rc = bq_fail(e, BQ_E_EXISTS, "backup %s already exists in store %s", backup_id, s->dir);
    if (rc != 0)
        goto fail;
    *out = bw;
    return 0;
fail:
    store_backup_abort(&bw);
    return rc;
}

/* Mark the writer failed when rc is an error (except where the caller says it stays usable). */
static int bw_result(store_backup_t *bw, int rc)
{
    if (rc != 0)
        bw->failed = 1;
    return rc;
}

static int bw_usable(store_backup_t *bw, bq_errbuf_t *e)
{
    if (!bw)
        return bq_fail(e, BQ_E_INVAL, "no backup writer");
    if (bw->failed)
        return bq_fail(e, BQ_E_STATE, "backup %s failed earlier; it can only be aborted",
                       bw->id);
    return 0;
}

int store_backup_file_begin(store_backup_t *bw, const char *path, uint32_t mode, int64_t mtime,
                            bq_errbuf_t *e)
{
    int rc = bw_usable(bw, e);
    if (rc != 0)
        return rc;
    if (bw->in_file)
        return bq_fail(e, BQ_E_STATE, "backup %s: a file is already open", bw->id);
    size_t plen = path ? strlen(path) : 0;
    const char *why = path ? store_manifest_path_problem(path, plen) : "no path";
    if (why) {
        char pb[256];
        printable_line(pb, sizeof pb, path ? path : "");
        return bq_fail(e, BQ_E_INVAL, "backup %s: bad file path \"%s\": %s", bw->id, pb, why);
    }
    /* Room for this file's events whatever its size: its FILE_BEGIN, a chunk for each free
     * slot and its FILE_END (a full batch runs before more are added). */
    if (bw->nev + (bw->slots_max - bw->nslots) + 2 > bw->ev_cap ||
        bw->paths_len + plen + 1 > bw->paths_cap) {
        if ((rc = batch_run(bw, e)) != 0)
            return bw_result(bw, rc);
        if (plen + 1 > bw->paths_cap) {
            char *p = realloc(bw->paths, plen + 1);
            if (!p)
                return bw_result(bw, bq_fail(e, BQ_E_NOMEM, "out of memory writing backup %s",
                                             bw->id));
            bw->paths = p;
            bw->paths_cap = plen + 1;
        }
    }
    bw->started = 1;
    wevent_t *ev = ev_push(bw, EV_FILE_BEGIN, (uint32_t)bw->paths_len);
    ev->mode = mode;
    ev->mtime = mtime;
    memcpy(bw->paths + bw->paths_len, path, plen + 1);
    bw->paths_len += plen + 1;
    bw->in_file = 1;
    bw->file_size = 0;
    return 0;
}

int store_backup_file_write(store_backup_t *bw, const void *data, size_t len, bq_errbuf_t *e)
{
    int rc = bw_usable(bw, e);
    if (rc != 0)
        return rc;
    if (!bw->in_file)
        return bq_fail(e, BQ_E_STATE, "backup %s: no file is open", bw->id);
    const uint8_t *p = data;
    const size_t cs = bw->s->chunk_size;
    bw->file_size += len;
    while (len > 0) {
        wslot_t *sl = &bw->slots[bw->nslots];
        size_t n = cs - sl->len < len ? cs - sl->len : len;
        memcpy(sl->data + sl->len, p, n);
        sl->len += n;
        p += n;
        len -= n;
        if (sl->len == cs && (rc = slot_close(bw, e)) != 0)
            return bw_result(bw, rc);
    }
    return 0;
}

int store_backup_file_end(store_backup_t *bw, bq_errbuf_t *e)
{
    int rc = bw_usable(bw, e);
    if (rc != 0)
        return rc;
    if (!bw->in_file)
        return bq_fail(e, BQ_E_STATE, "backup %s: no file is open", bw->id);
    if (bw->slots[bw->nslots].len > 0 && (rc = slot_close(bw, e)) != 0)
        return bw_result(bw, rc);
    ev_push(bw, EV_FILE_END, 0)->size = bw->file_size;
    bw->in_file = 0;
    return 0;
}

int store_backup_meta(store_backup_t *bw, const char *key, const void *val, size_t len,
                      bq_errbuf_t *e)
{
    int rc = bw_usable(bw, e);
    if (rc != 0)
        return rc;
    if (bw->in_file)
        return bq_fail(e, BQ_E_STATE, "backup %s: metadata cannot be added inside a file",
                       bw->id);
    if ((rc = batch_run(bw, e)) != 0) /* the files before it go first */
        return bw_result(bw, rc);
    rc = store_manifest_meta(bw->man, key, val, len, e);
    if (rc == BQ_E_INVAL || rc == BQ_E_TOOBIG)
        return rc; /* refused before anything was written */
    return bw_result(bw, rc);
}

int store_backup_commit(store_backup_t **bw_p, store_backup_stats_t *stats, bq_errbuf_t *e)
{
    if (!bw_p || !*bw_p)
        return bq_fail(e, BQ_E_INVAL, "no backup writer");
    store_backup_t *bw = *bw_p;
    int rc = bw_usable(bw, e);
    if (rc == 0 && bw->in_file)
        rc = bq_fail(e, BQ_E_STATE, "backup %s: file still open at commit", bw->id);
    if (rc == 0)
        rc = batch_run(bw, e);
    if (rc == 0)
        rc = store_appender_flush(&bw->app, 1, e);
    /* The manifest is linked and the session removed inside one reference section: a GC sees
     * the one or the other (docs/store.md, "Concurrency"). */
    if (rc == 0)
        rc = store_session_enter(bw->ss, e);
    if (rc == 0) {
        rc = store_manifest_commit(&bw->man, e);
        if (rc == BQ_E_EXISTS)
            rc = bq_fail(e, BQ_E_EXISTS, "backup %s already exists in store %s (committed by "
                         "another writer)", bw->id, bw->s->dir);
    }
    if (rc == 0 && stats) {
        *stats = bw->st;
        stats->base_errors = atomic_load(&bw->base_errors);
    }
    store_backup_abort(bw_p);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------ */


typedef struct {
    char **names;
    size_t n, cap;
} name_list_t;

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(name_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
}

/* The ids of every backups/ID.manifest, sorted. A missing backups/ is no backups. */
static int backup_names(const store_t *s, name_list_t *l, bq_errbuf_t *e)
{
    static const char suffix[] = ".manifest";
    const size_t slen = sizeof suffix - 1;
    memset(l, 0, sizeof *l);
    char dir[PATH_MAX];
    int rc = path_join(dir, sizeof dir, s->dir, "backups", e);
    if (rc != 0)
        return rc;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return bq_fail(e, BQ_E_IO, "could not list %s: %s", dir, strerror(errno));
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n <= slen || strcmp(de->d_name + n - slen, suffix) != 0)
            continue;
        char id[STORE_MANIFEST_ID_MAX + 1];
        if (n - slen > STORE_MANIFEST_ID_MAX)
            continue;
        memcpy(id, de->d_name, n - slen);
        id[n - slen] = '\0';
        if (!backup_id_valid(id))
            continue;
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 16;
            char **p = realloc(l->names, cap * sizeof *p);
            if (!p) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", dir);
                break;
            }
            l->names = p;
            l->cap = cap;
        }
        if (!(l->names[l->n] = strdup(id))) {
            rc = bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", dir);
            break;
        }
        l->n++;
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = bq_fail(e, BQ_E_IO, "could not list %s: %s", dir, strerror(errno));
    closedir(d);
    if (rc != 0) {
        names_free(l);
        memset(l, 0, sizeof *l);
        return rc;
    }
    if (l->n > 1)
        qsort(l->names, l->n, sizeof *l->names, cmp_names);
    return 0;
}

int store_backup_list(store_t *s, store_backup_list_fn fn, void *arg, bq_errbuf_t *e)
{
    name_list_t l;
    int rc = backup_names(s, &l, e);
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        rc = fn(l.names[i], arg);
    names_free(&l);
    return rc;
}

static int info_path(const store_t *s, const char *id, char *buf, size_t size, bq_errbuf_t *e)
{
    int rc = manifest_path(s, id, buf, size, e);
    if (rc == 0 && snprintf(buf, size, "%s/backups/%s.info", s->dir, id) >= (int)size)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", s->dir);
    return rc;
}

int store_backup_info_put(store_t *s, const char *backup_id, const void *text, size_t len,
                          bq_errbuf_t *e)
{
    char path[PATH_MAX];
    int rc = info_path(s, backup_id, path, sizeof path, e);
    if (rc == 0 && len > STORE_BACKUP_INFO_MAX)
        rc = bq_fail(e, BQ_E_TOOBIG, "the figures of backup %s are %zu bytes, more than %d",
                     backup_id, len, STORE_BACKUP_INFO_MAX);
    return rc ? rc : bq_file_write_durable(path, text, len, 0600, 0, e);
}

int store_backup_info_get(store_t *s, const char *backup_id, char *buf, size_t cap, size_t *len,
                          bq_errbuf_t *e)
{
    char path[PATH_MAX];
    int rc = info_path(s, backup_id, path, sizeof path, e);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? bq_fail(e, BQ_E_NOTFOUND, "backup %s of store %s has no %s",
                                         backup_id, s->dir, path)
                               : bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, cap ? cap - 1 : 0);
    int err = errno;
    close(fd);
    if (n < 0)
        return bq_fail(e, BQ_E_IO, "could not read %s: %s", path, strerror(err));
    buf[n] = '\0';
    *len = (size_t)n;
    return 0;
}

static int keep_path(const store_t *s, const char *id, char *buf, size_t size, bq_errbuf_t *e)
{
    int rc = manifest_path(s, id, buf, size, e);
    if (rc == 0 && snprintf(buf, size, "%s/backups/%s.keep", s->dir, id) >= (int)size)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", s->dir);
    return rc;
}

int store_backup_keep_set(store_t *s, const char *backup_id, int keep, bq_errbuf_t *e)
{
    char path[PATH_MAX], man[PATH_MAX];
    int rc = keep_path(s, backup_id, path, sizeof path, e);
    if (rc == 0)
        rc = manifest_path(s, backup_id, man, sizeof man, e);
    if (rc)
        return rc;
    if (access(man, F_OK) != 0)
        return bq_fail(e, BQ_E_NOTFOUND, "backup %s does not exist in store %s", backup_id, s->dir);
    if (keep == 1 || keep == 2) {
        const char *text = keep == 1 ? "full\n" : "standalone\n";
        return bq_file_write_durable(path, text, strlen(text), 0600, 0, e);
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return bq_fail(e, BQ_E_IO, "could not remove %s: %s", path, strerror(errno));
    return bq_fsync_dir_of(path, e);
}

int store_backup_keep_get(store_t *s, const char *backup_id, int *keep, bq_errbuf_t *e)
{
    char path[PATH_MAX], buf[32];
    *keep = 0;
    int rc = keep_path(s, backup_id, path, sizeof path, e);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    *keep = strcmp(buf, "standalone\n") == 0 ? 2 : 1; /* anything else: full, the safer one */
    return 0;
}

int store_backup_delete(store_t *s, const char *backup_id, bq_errbuf_t *e)
{
    char path[PATH_MAX], info[PATH_MAX], keep[PATH_MAX];
    int rc = manifest_path(s, backup_id, path, sizeof path, e);
    if (rc == 0)
        rc = info_path(s, backup_id, info, sizeof info, e);
    if (rc == 0)
        rc = keep_path(s, backup_id, keep, sizeof keep, e);
    if (rc != 0)
        return rc;
    /* the figures and the keep mark go first: a manifest alone is whole */
    if ((unlink(info) != 0 && errno != ENOENT) || (unlink(keep) != 0 && errno != ENOENT))
        return bq_fail(e, BQ_E_IO, "could not delete backup %s from store %s: %s", backup_id,
                       s->dir, strerror(errno));
    if (unlink(path) != 0) {
        if (errno == ENOENT)
            return bq_fail(e, BQ_E_NOTFOUND, "backup %s does not exist in store %s", backup_id,
                           s->dir);
        return bq_fail(e, BQ_E_IO, "could not delete backup %s from store %s: unlink %s: %s",
                       backup_id, s->dir, path, strerror(errno));
    }
    bq_errbuf_t why;
    if ((rc = bq_fsync_dir_of(path, &why)) != 0)
        return bq_fail(e, rc, "could not delete backup %s from store %s durably: %s", backup_id,
                       s->dir, why.msg);
    return 0;
}

int store_backup_walk(store_t *s, const char *backup_id, const store_read_cb_t *cb, void *arg,
                      bq_errbuf_t *e)
{
    static const store_read_cb_t none = {0};
    if (!cb)
        cb = &none;
    key_cache_t kc = {.s = s};
    store_manifest_reader_t *mr = NULL;
    int rc = manifest_open(s, backup_id, &kc, &mr, e);
    while (rc == 0) {
        store_manifest_item_t it;
        if ((rc = store_manifest_next(mr, &it, e)) != 0 || it.kind == STORE_MANIFEST_END)
            break;
        if (it.kind == STORE_MANIFEST_META && cb->meta)
            rc = cb->meta(arg, it.meta.key, it.meta.value, it.meta.len, e);
        else if (it.kind == STORE_MANIFEST_FILE && cb->file_begin)
            rc = cb->file_begin(arg, it.file.path, it.file.mode, it.file.mtime, e);
        else if (it.kind == STORE_MANIFEST_CHUNKS && cb->chunks)
            rc = cb->chunks(arg, it.chunks.ids, it.chunks.n, e);
        else if (it.kind == STORE_MANIFEST_FILE_END && cb->file_end)
            rc = cb->file_end(arg, it.file_end.path, it.file_end.size, it.file_end.sha256, e);
    }
    store_manifest_close(&mr);
    key_cache_free(&kc);
    return rc;
}

struct store_reader {
    store_t *s;
    key_cache_t kc;
    store_chunk_ctx_t *ctx;
    uint8_t *body;
    size_t body_cap;
    uint8_t *plain;
    size_t plain_cap;
    store_pack_cache_t pc; /* the pack read last, kept open */
    /* a delta's base: its record, its plaintext, and the pack of the base read last */
    uint8_t *bbody;
    size_t bbody_cap;
    uint8_t *bplain;
    size_t bplain_cap;
    store_pack_cache_t bpc;
};

typedef struct {
    store_t *s;
    const char *backup_id;
    store_reader_t *rd;
    char *path; /* the open file, for messages */
    store_sha256_t *sha;
    uint64_t size;
} reader_t;

static int grow(uint8_t **buf, size_t *cap, size_t need, bq_errbuf_t *e)
{
    if (*cap >= need)
        return 0;
    uint8_t *p = realloc(*buf, need);
    if (!p)
        return bq_fail(e, BQ_E_NOMEM, "out of memory reading a chunk of %zu bytes", need);
    *buf = p;
    *cap = need;
    return 0;
}

int store_reader_new(store_t *s, store_reader_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    store_reader_t *r = calloc(1, sizeof *r);
    if (!r)
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting a store reader");
    r->s = s;
    r->kc.s = s;
    r->pc = (store_pack_cache_t)STORE_PACK_CACHE_INIT;
    r->bpc = (store_pack_cache_t)STORE_PACK_CACHE_INIT;
    int rc = store_chunk_ctx_new(s->idkey, &r->ctx, e);
    if (rc != 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void store_reader_destroy(store_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_reader_t *r = *self_p;
    store_pack_cache_close(&r->pc);
    store_pack_cache_close(&r->bpc);
    store_chunk_ctx_destroy(&r->ctx);
    key_cache_free(&r->kc);
    if (r->plain) {
        sodium_memzero(r->plain, r->plain_cap);
        free(r->plain);
    }
    if (r->bplain) {
        sodium_memzero(r->bplain, r->bplain_cap);
        free(r->bplain);
    }
    free(r->body);
    free(r->bbody);
    free(r);
    *self_p = NULL;
}

/* Find chunk id (index, then its pack record) into *buf (*cap bytes, grown) through pack
 * cache pc: *body_len bytes; where says where it was found, for messages. */
static int fetch_into(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES], uint8_t **buf,
                      size_t *cap, store_pack_cache_t *pc, size_t *body_len, char *where,
                      size_t where_len, bq_errbuf_t *why)
{
    store_index_loc_t loc = {0};
    int rc = store_index_get(r->s->idx, id, &loc, why);
    if (rc == BQ_E_NOTFOUND)
        snprintf(why->msg, sizeof why->msg, "not in the index");
    *body_len = 0;
    if (rc == 0 && loc.rec_len < STORE_PACK_RECORD_OVERHEAD)
        rc = bq_fail(why, BQ_E_IO, "index gives a record of %" PRIu32 " bytes", loc.rec_len);
    if (rc == 0)
        rc = grow(buf, cap, loc.rec_len - STORE_PACK_RECORD_OVERHEAD, why);
    if (rc == 0)
        rc = store_pack_read_cached(pc, r->s->dir, loc.pack, loc.offset, loc.rec_len, id,
                                    NULL, *buf, *cap, body_len, why);
    if (rc != 0 && loc.rec_len >= STORE_PACK_RECORD_OVERHEAD) {
        /* A GC running beside us may have moved the chunk to a new pack and removed the old
         * one (it points the index at the copy first): look again, once. */
        store_index_loc_t again;
        if (store_index_get(r->s->idx, id, &again, NULL) == 0 &&
            (again.pack != loc.pack || again.offset != loc.offset) &&
            again.rec_len >= STORE_PACK_RECORD_OVERHEAD &&
            grow(buf, cap, again.rec_len - STORE_PACK_RECORD_OVERHEAD, why) == 0) {
            loc = again;
            rc = store_pack_read_cached(pc, r->s->dir, loc.pack, loc.offset, loc.rec_len,
                                        id, NULL, *buf, *cap, body_len, why);
        }
    }
    snprintf(where, where_len, "in pack %016" PRIx64 " at offset %" PRIu64, loc.pack,
             loc.offset);
    return rc;
}

static int reader_fetch(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                        size_t *body_len, char *where, size_t where_len, bq_errbuf_t *why)
{
    return fetch_into(r, id, &r->body, &r->body_cap, &r->pc, body_len, where, where_len, why);
}

/* Open sealed body (len bytes) of chunk id into *plain (*cap, grown), with base (base_len
 * bytes of plaintext) when it is a delta. */
static int open_into(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                     const uint8_t *body, size_t body_len, const uint8_t *base, size_t base_len,
                     const char *where, uint8_t **plain, size_t *cap, size_t *plain_len,
                     bq_errbuf_t *why)
{
    store_chunk_head_t head;
    int rc = store_chunk_head(id, body, body_len, &head, where, why);
    const store_datakey_t *dk = NULL;
    if (rc == 0)
        rc = key_get(&r->kc, head.key_id, &dk, why);
    if (rc == 0)
        rc = grow(plain, cap, head.raw_len ? head.raw_len : 1, why);
    if (rc == 0)
        rc = store_chunk_open_delta(r->ctx, id, dk, body, body_len, base, base_len, *plain, *cap,
                                    plain_len, where, why);
    return rc;
}

/* The plaintext of base chunk id (from base_body when given, else from this store) into
 * r->bplain: a base is never itself a delta. */
static int base_open(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                     const uint8_t *base_body, size_t base_body_len, const char *where,
                     size_t *plain_len, bq_errbuf_t *why)
{
    char bwhere[96];
    snprintf(bwhere, sizeof bwhere, "%s", where ? where : "");
    int rc = 0;
    if (!base_body) {
        rc = fetch_into(r, id, &r->bbody, &r->bbody_cap, &r->bpc, &base_body_len, bwhere,
                        sizeof bwhere, why);
        base_body = r->bbody;
    }
    uint8_t again[STORE_CHUNK_ID_BYTES];
    if (rc == 0 && store_chunk_body_base(base_body, base_body_len, again))
        rc = bq_fail(why, BQ_E_IO, "it is itself a delta %s", bwhere);
    if (rc == 0)
        rc = open_into(r, id, base_body, base_body_len, NULL, 0, bwhere, &r->bplain,
                       &r->bplain_cap, plain_len, why);
    return rc;
}

/* Open sealed body (len bytes) of chunk id into r->plain; a delta with its base, from
 * base_body when given, else from this store. */
static int reader_open(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                       const uint8_t *body, size_t body_len, const uint8_t *base_body,
                       size_t base_body_len, const char *where, size_t *plain_len,
                       bq_errbuf_t *why)
{
    uint8_t base_id[STORE_CHUNK_ID_BYTES];
    const uint8_t *base = NULL;
    size_t base_len = 0;
    if (store_chunk_body_base(body, body_len, base_id)) {
        bq_errbuf_t bwhy = {{0}};
        int rc = base_open(r, base_id, base_body, base_body_len, where, &base_len, &bwhy);
        if (rc != 0) {
            char hex[STORE_CHUNK_ID_HEX];
            return bq_fail(why, rc == BQ_E_NOTFOUND || rc == BQ_E_TOOBIG ? BQ_E_IO : rc,
                           "its base chunk %s: %s", store_id_hex(base_id, hex), bwhy.msg);
        }
        base = r->bplain;
    }
    return open_into(r, id, body, body_len, base, base_len, where, &r->plain, &r->plain_cap,
                     plain_len, why);
}

int store_reader_chunk(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                       const uint8_t **data, size_t *len, bq_errbuf_t *e)
{
    char hex[STORE_CHUNK_ID_HEX];
    bq_errbuf_t why = {{0}};
    char where[80];
    size_t body_len = 0, plain_len = 0;
    int rc = reader_fetch(r, id, &body_len, where, sizeof where, &why);
    if (rc == 0)
        rc = reader_open(r, id, r->body, body_len, NULL, 0, where, &plain_len, &why);
    if (rc == BQ_E_NOTFOUND || rc == BQ_E_TOOBIG)
        rc = BQ_E_IO;
    if (rc != 0)
        return bq_fail(e, rc, "chunk %s: %s", store_id_hex(id, hex), why.msg);
    *data = r->plain;
    *len = plain_len;
    return 0;
}

int store_reader_sealed(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                        const uint8_t **body, size_t *len, bq_errbuf_t *e)
{
    char hex[STORE_CHUNK_ID_HEX];
    bq_errbuf_t why = {{0}};
    char where[80];
    size_t body_len = 0;
    int rc = reader_fetch(r, id, &body_len, where, sizeof where, &why);
    if (rc == BQ_E_TOOBIG)
        rc = BQ_E_IO;
    if (rc != 0)
        return bq_fail(e, rc, "chunk %s: %s", store_id_hex(id, hex), why.msg);
    *body = r->body;
    *len = body_len;
    return 0;
}

int store_reader_open(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                      const uint8_t *body, size_t body_len, const uint8_t *base_body,
                      size_t base_len, const char *where, const uint8_t **data, size_t *len,
                      bq_errbuf_t *e)
{
    char hex[STORE_CHUNK_ID_HEX];
    bq_errbuf_t why = {{0}};
    size_t plain_len = 0;
    int rc = reader_open(r, id, body, body_len, base_body, base_len, where, &plain_len, &why);
    if (rc == BQ_E_NOTFOUND || rc == BQ_E_TOOBIG)
        rc = BQ_E_IO;
    if (rc != 0)
        return bq_fail(e, rc, "chunk %s: %s", store_id_hex(id, hex), why.msg);
    *data = r->plain;
    *len = plain_len;
    return 0;
}

/* Read, open and hand over one chunk of the open file. */
static int read_chunk(reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                      const store_read_cb_t *cb, void *arg, bq_errbuf_t *e)
{
    bq_errbuf_t why = {{0}};
    const uint8_t *data = NULL;
    size_t len = 0;
    int rc = store_reader_chunk(r->rd, id, &data, &len, &why);
    if (rc != 0)
        return bq_fail(e, rc, "backup %s in store %s: file %s: %s", r->backup_id, r->s->dir,
                       r->path, why.msg);
    store_sha256_update(r->sha, id, STORE_CHUNK_ID_BYTES); /* the id was re-hashed from the data */
    r->size += len;
    if (cb->data)
        return cb->data(arg, data, len, e);
    return 0;
}

int store_backup_read(store_t *s, const char *backup_id, const store_read_cb_t *cb, void *arg,
                      bq_errbuf_t *e)
{
    static const store_read_cb_t none = {0};
    if (!cb)
        cb = &none;
    reader_t r = {.s = s, .backup_id = backup_id};
    store_manifest_reader_t *mr = NULL;
    key_cache_t mkc = {.s = s}; /* the manifest's key */
    int rc = store_reader_new(s, &r.rd, e);
    if (rc == 0 && !(r.path = malloc(STORE_MANIFEST_PATH_MAX + 1)))
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory reading backup %s", backup_id);
    if (rc == 0)
        rc = store_sha256_new(&r.sha, e);
    if (rc == 0)
        rc = manifest_open(s, backup_id, &mkc, &mr, e);
    int skip = 0; /* file_begin said STORE_READ_SKIP: its chunks are not read */
    while (rc == 0) {
        store_manifest_item_t it;
        if ((rc = store_manifest_next(mr, &it, e)) != 0)
            break;
        if (it.kind == STORE_MANIFEST_END)
            break;
        if (skip && (it.kind == STORE_MANIFEST_CHUNKS || it.kind == STORE_MANIFEST_FILE_END)) {
            skip = it.kind != STORE_MANIFEST_FILE_END;
            continue;
        }
        switch (it.kind) {
        case STORE_MANIFEST_META:
            if (cb->meta)
                rc = cb->meta(arg, it.meta.key, it.meta.value, it.meta.len, e);
            break;
        case STORE_MANIFEST_FILE:
            snprintf(r.path, STORE_MANIFEST_PATH_MAX + 1, "%s", it.file.path);
            store_sha256_init(r.sha);
            r.size = 0;
            if (cb->file_begin)
                rc = cb->file_begin(arg, it.file.path, it.file.mode, it.file.mtime, e);
            if (rc == STORE_READ_SKIP) {
                rc = 0;
                skip = 1;
            }
            break;
        case STORE_MANIFEST_CHUNKS:
            for (size_t i = 0; rc == 0 && i < it.chunks.n; i++)
                rc = read_chunk(&r, it.chunks.ids + i * STORE_CHUNK_ID_BYTES, cb, arg, e);
            break;
        case STORE_MANIFEST_FILE_END: {
            uint8_t sha[32];
            if (store_sha256_final(r.sha, sha) != 0)
                rc = bq_fail(e, BQ_E_NOMEM, "backup %s: could not compute the checksum of %s",
                             backup_id, r.path);
            else if (r.size != it.file_end.size)
                rc = bq_fail(e, BQ_E_IO, "backup %s in store %s: file %s is damaged: its chunks "
                             "hold %" PRIu64 " bytes, the manifest says %" PRIu64, backup_id,
                             s->dir, r.path, r.size, it.file_end.size);
            else if (sodium_memcmp(sha, it.file_end.sha256, sizeof sha) != 0)
                rc = bq_fail(e, BQ_E_IO, "backup %s in store %s: file %s is damaged: its checksum "
                             "does not match the manifest", backup_id, s->dir, r.path);
            else if (cb->file_end)
                rc = cb->file_end(arg, it.file_end.path, it.file_end.size, sha, e);
            break;
        }
        default:
            break;
        }
    }
    store_manifest_close(&mr);
    store_reader_destroy(&r.rd);
    key_cache_free(&mkc);
    free(r.path);
    store_sha256_destroy(&r.sha);
    return rc;
}

/* ---- the WAL area -------------------------------------------------------------------------- */

int store_wal_archive(store_t *s, const char *cluster, size_t seg_size, const char *name,
                      const void *data, size_t len, const store_wal_piece_t *packed,
                      bq_errbuf_t *e)
{
    store_chunk_ctx_t *ctx = NULL;
    int rc = store_chunk_ctx_new(s->idkey, &ctx, e);
    if (rc)
        return rc;
    store_datakey_t dk;
    int64_t day = (int64_t)time(NULL) / 86400;
    pthread_mutex_lock(&s->wal_mu);
    if (s->wal_dk_day != day) {
        store_datakey_t fresh;
        rc = store_datakey_new(s->dir, &s->master, &fresh, e);
        if (rc == 0) {
            store_datakey_clear(&s->wal_dk);
            s->wal_dk = fresh;
            s->wal_dk_day = day;
        }
    }
    dk = s->wal_dk;
    pthread_mutex_unlock(&s->wal_mu);
    /* WAL is compressed with lz4 whatever the store's setting (none stays none): it is
     * archived while the server waits (archive_command, a synchronous receiver) and read once
     * at recovery, so speed beats ratio here; each sealed piece records its compression. */
    store_comp_t comp = s->comp == STORE_COMP_NONE ? STORE_COMP_NONE : STORE_COMP_LZ4;
    int level = comp == STORE_COMP_LZ4 ? 1 : s->level;
    if (rc == 0)
        rc = store_wal_put(s->dir, cluster, ctx, &dk, comp, level, seg_size, name, data, len,
                           packed, e);
    store_datakey_clear(&dk);
    store_chunk_ctx_destroy(&ctx);
    return rc;
}

static int wal_key(void *arg, uint32_t key_id, store_datakey_t *out, bq_errbuf_t *e)
{
    return store_datakey_get(arg, key_id, out, e);
}

int store_wal_fetch(store_t *s, const char *cluster, const char *name, void *buf, size_t cap,
                    size_t *len, bq_errbuf_t *e)
{
    store_chunk_ctx_t *ctx = NULL;
    int rc = store_chunk_ctx_new(s->idkey, &ctx, e);
    if (rc == 0)
        rc = store_wal_get(s->dir, cluster, ctx, wal_key, s, name, buf, cap, len, e);
    store_chunk_ctx_destroy(&ctx);
    return rc;
}

/* ---- figures ------------------------------------------------------------------------------ */

typedef struct {
    const char *dir;
    uint64_t bytes;
    bq_errbuf_t *e;
    int rc;
} pack_sum_t;

static int pack_add(uint64_t pack_id, void *arg)
{
    pack_sum_t *ps = arg;
    char path[PATH_MAX];
    struct stat st;
    if (store_pack_path(ps->dir, pack_id, path, sizeof path) != 0) {
        ps->rc = bq_fail(ps->e, BQ_E_INVAL, "store path too long: %s", ps->dir);
        return 1;
    }
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0; /* removed meanwhile */
        ps->rc = bq_fail(ps->e, BQ_E_IO, "could not stat %s: %s", path, strerror(errno));
        return 1;
    }
    ps->bytes += (uint64_t)st.st_size;
    return 0;
}

int store_stats(store_t *s, store_stats_t *st, bq_errbuf_t *e)
{
    memset(st, 0, sizeof *st);
    int rc = store_index_count(s->idx, &st->chunks, e);
    if (rc != 0)
        return rc;
    pack_sum_t ps = {s->dir, 0, e, 0};
    rc = store_pack_list(s->dir, pack_add, &ps, e);
    if (ps.rc != 0)
        return ps.rc;
    if (rc < 0)
        return rc;
    st->stored_bytes = ps.bytes;

    name_list_t l;
    if ((rc = backup_names(s, &l, e)) != 0)
        return rc;
    key_cache_t kc = {.s = s};
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        store_manifest_reader_t *mr = NULL;
        rc = manifest_open(s, l.names[i], &kc, &mr, e);
        if (rc == BQ_E_NOTFOUND) { /* deleted meanwhile */
            rc = 0;
            continue;
        }
        store_manifest_item_t it;
        while (rc == 0 && (rc = store_manifest_next(mr, &it, e)) == 0 &&
               it.kind != STORE_MANIFEST_END)
            if (it.kind == STORE_MANIFEST_FILE_END)
                st->logical_bytes += it.file_end.size;
        store_manifest_close(&mr);
        if (rc == 0)
            st->backups++;
    }
    key_cache_free(&kc);
    names_free(&l);
    if (rc == 0 && st->stored_bytes > 0)
        st->dedup_ratio = (double)st->logical_bytes / (double)st->stored_bytes;
    return rc;
}

/* ---- for the store's own modules (store/verify.c) ------------------------------------------ */

int store_id_key_same(const store_t *a, const store_t *b)
{
    return sodium_memcmp(a->idkey, b->idkey, sizeof a->idkey) == 0;
}

const store_master_t *store_master_of(const store_t *s)
{
    return &s->master;
}

int store_manifest_open_keys(store_t *s, const char *path, store_manifest_reader_t **out,
                             bq_errbuf_t *e)
{
    key_cache_t kc = {.s = s}; /* the stream holds its own copy of the key once open */
    int rc = store_manifest_open(path, manifest_key, &kc, out, e);
    key_cache_free(&kc);
    return rc;
}

store_index_t *store_index_handle(store_t *s)
{
    return s->idx;
}

int store_chunk_ctx_for(store_t *s, store_chunk_ctx_t **out, bq_errbuf_t *e)
{
    return store_chunk_ctx_new(s->idkey, out, e);
}

int store_datakey_get(store_t *s, uint32_t id, store_datakey_t *out, bq_errbuf_t *e)
{
    return store_datakey_load(s->dir, &s->master, id, out, e);
}

int store_lock_gc(store_t *s, int exclusive, const char *what, int *fd_out, bq_errbuf_t *e)
{
    char path[PATH_MAX];
    int rc = path_join(path, sizeof path, s->dir, "gc.lock", e);
    if (rc != 0)
        return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) {
        *fd_out = fd;
        return 0;
    }
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK)
        return bq_fail(e, BQ_E_STATE, "store %s: %s; %s not run\nhint: try again when it is "
                       "done", s->dir, exclusive ? "a GC or a verify is running" :
                       "a GC is running", what);
    return bq_fail(e, BQ_E_IO, "could not lock %s: %s", path, strerror(err));
}

int store_file_checksum(store_t *s, int fd, uint64_t *size, uint8_t out[32], bq_errbuf_t *e)
{
    store_chunk_ctx_t *ctx = NULL;
    store_sha256_t *sha = NULL;
    uint8_t *buf = malloc(s->chunk_size);
    int rc = buf ? 0 : bq_fail(e, BQ_E_NOMEM, "out of memory reading a file");
    if (rc == 0)
        rc = store_chunk_ctx_new(s->idkey, &ctx, e);
    if (rc == 0)
        rc = store_sha256_new(&sha, e);
    uint64_t total = 0;
    for (int eof = 0; rc == 0 && !eof;) {
        size_t have = 0;
        while (have < s->chunk_size) { /* a whole chunk, as the writer cut it */
            ssize_t n = read(fd, buf + have, s->chunk_size - have);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = bq_fail(e, BQ_E_IO, "could not read: %s", strerror(errno));
                break;
            }
            if (n == 0) {
                eof = 1;
                break;
            }
            have += (size_t)n;
        }
        if (rc == 0 && have > 0) {
            uint8_t id[STORE_CHUNK_ID_BYTES];
            if ((rc = store_chunk_ctx_id(ctx, buf, have, id)) != 0)
                rc = bq_fail(e, rc, "could not hash a chunk");
            else
                store_sha256_update(sha, id, sizeof id);
            total += have;
        }
    }
    if (rc == 0 && store_sha256_final(sha, out) != 0)
        rc = bq_fail(e, BQ_E_NOMEM, "could not compute a checksum");
    if (rc == 0 && size)
        *size = total;
    store_sha256_destroy(&sha);
    store_chunk_ctx_destroy(&ctx);
    free(buf);
    return rc;
}
