/* The chunk index on LMDB: see index.h and docs/store.md ("Index").
 *
 * Environment: STORE/index/ (0700; files 0600), MDB_NOTLS, maxdbs 4, default durability
 * (every commit fsyncs). Dbs:
 *   chunks  id (32) -> 28-byte location, 60 with a delta's base (store_index_loc_encode)
 *   meta    "format" -> u32 LE (1); "rebuild" -> present while a rebuild is under way
 *
 * Locks (one index shared by the threads of one process):
 *   wmutex  held across a whole write transaction, so this process runs one at a time;
 *   txlock  a rwlock every transaction holds shared while it is open; growing the map
 *           (mdb_env_set_mapsize, which needs no transaction open in the process) holds it
 *           exclusively. Writer-preferring, and never taken twice by one thread.
 * Order: wmutex, then txlock.
 *
 * A write that hits MDB_MAP_FULL is aborted, the map doubled (up to map_max) and the whole
 * batch written again, so a batch is all or nothing. */
#include "index.h"
#include "chunk.h"

#include "fsutil.h"
#include "log.h"

#include <lmdb.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDX_FORMAT 1u
#define IDX_MAXDBS 4
#define IDX_EACH_BATCH 4096
#define IDX_REBUILD_BATCH 8192
#define IDX_HINT "rebuild it with barque store verify --rebuild-index"

static const char IDX_LOG[] = "index";
static const char KEY_FORMAT[] = "format";
static const char KEY_REBUILD[] = "rebuild";

struct store_index {
    MDB_env *env;
    MDB_dbi chunks, meta;
    char dir[PATH_MAX];       /* STORE/index */
    uint64_t map_max;
    uint64_t map_size;        /* what LMDB maps now; read and written under txlock */
    pid_t pid;
    pthread_mutex_t wmutex;
    pthread_rwlock_t txlock;
};

/* ---- helpers -------------------------------------------------------------------------- */

static unsigned long long mib(uint64_t bytes) { return (unsigned long long)(bytes >> 20); }

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

static void id_hex(const uint8_t *id, char out[2 * STORE_CHUNK_ID_BYTES + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < STORE_CHUNK_ID_BYTES; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[2 * STORE_CHUNK_ID_BYTES] = '\0';
}

static int mdb_damage(int rc)
{
    return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
           rc == MDB_VERSION_MISMATCH;
}

/* An LMDB failure rc while doing "what" (a phrase: "get chunk ab12..."). */
static int mdb_fail(store_index_t *idx, bq_errbuf_t *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int mdb_fail(store_index_t *idx, bq_errbuf_t *e, int rc, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (rc == MDB_NOTFOUND)
        return bq_fail(e, BQ_E_NOTFOUND, "index %s: could not %s: not found", idx->dir, what);
    if (rc == MDB_MAP_FULL)
        return bq_fail(e, BQ_E_MAPFULL, "index %s is full (map %llu MiB of at most %llu MiB): "
                       "could not %s", idx->dir, mib(idx->map_size), mib(idx->map_max), what);
    if (mdb_damage(rc))
        return bq_fail(e, BQ_E_IO, "index %s is damaged (could not %s: %s): " IDX_HINT, idx->dir,
                       what, mdb_strerror(rc));
    return bq_fail(e, BQ_E_IO, "index %s: could not %s: %s", idx->dir, what, mdb_strerror(rc));
}

static void map_size_refresh(store_index_t *idx)
{
    MDB_envinfo info;
    if (mdb_env_info(idx->env, &info) == 0)
        idx->map_size = (uint64_t)info.me_mapsize;
}

/* ---- locations ------------------------------------------------------------------------ */

size_t store_index_loc_encode(const store_index_loc_t *loc, uint8_t *out)
{
    le64_put(out, loc->pack);
    le64_put(out + 8, loc->offset);
    le32_put(out + 16, loc->rec_len);
    le32_put(out + 20, loc->raw_len);
    le32_put(out + 24, loc->flags);
    if (!(loc->flags & STORE_INDEX_F_DELTA))
        return STORE_INDEX_VALUE_LEN;
    memcpy(out + STORE_INDEX_VALUE_LEN, loc->base, STORE_CHUNK_ID_BYTES);
    return STORE_INDEX_VALUE_DELTA_LEN;
}

/* Why loc cannot be a record, or NULL when it can. */
static const char *loc_invalid(const store_index_loc_t *loc, char *why, size_t len)
{
    if (loc->offset < STORE_PACK_HEADER_LEN)
        snprintf(why, len, "offset %" PRIu64 " is inside the pack header", loc->offset);
    else if (loc->rec_len < STORE_PACK_RECORD_OVERHEAD || loc->rec_len > STORE_PACK_REC_MAX)
        snprintf(why, len, "record length %" PRIu32 " out of range (%u to %u)", loc->rec_len,
                 STORE_PACK_RECORD_OVERHEAD, STORE_PACK_REC_MAX);
    else if (loc->offset > UINT64_MAX - loc->rec_len)
        snprintf(why, len, "offset %" PRIu64 " plus length %" PRIu32 " overflows", loc->offset,
                 loc->rec_len);
    else
        return NULL;
    return why;
}

int store_index_loc_decode(const void *buf, size_t len, store_index_loc_t *loc, bq_errbuf_t *e)
{
    if (len != STORE_INDEX_VALUE_LEN && len != STORE_INDEX_VALUE_DELTA_LEN)
        return bq_fail(e, BQ_E_IO, "index value of %zu bytes, expected %d or %d", len,
                       STORE_INDEX_VALUE_LEN, STORE_INDEX_VALUE_DELTA_LEN);
    const uint8_t *b = buf;
    store_index_loc_t l = {
        .pack = le64_get(b),
        .offset = le64_get(b + 8),
        .rec_len = le32_get(b + 16),
        .raw_len = le32_get(b + 20),
        .flags = le32_get(b + 24),
    };
    int delta = (l.flags & STORE_INDEX_F_DELTA) != 0;
    if (delta != (len == STORE_INDEX_VALUE_DELTA_LEN))
        return bq_fail(e, BQ_E_IO, "index value of %zu bytes %s the delta flag", len,
                       delta ? "with" : "without");
    if (delta)
        memcpy(l.base, b + STORE_INDEX_VALUE_LEN, STORE_CHUNK_ID_BYTES);
    char why[128];
    if (loc_invalid(&l, why, sizeof why))
        return bq_fail(e, BQ_E_IO, "index value names an impossible record: %s", why);
    *loc = l;
    return 0;
}

/* Decode a value found under id, with the damage message for the index. */
static int value_decode(store_index_t *idx, const uint8_t *id, const MDB_val *v,
                        store_index_loc_t *loc, bq_errbuf_t *e)
{
    bq_errbuf_t de;
    if (store_index_loc_decode(v->mv_data, v->mv_size, loc, &de) == 0)
        return 0;
    char hex[2 * STORE_CHUNK_ID_BYTES + 1];
    id_hex(id, hex);
    return bq_fail(e, BQ_E_IO, "index %s is damaged (chunk %s: %s): " IDX_HINT, idx->dir, hex,
                   de.msg);
}

/* ---- transactions --------------------------------------------------------------------- */

static int usable(store_index_t *idx, bq_errbuf_t *e)
{
    if (!idx)
        return bq_fail(e, BQ_E_INVAL, "no index");
    if (idx->pid != getpid())
        return bq_fail(e, BQ_E_STATE, "index %s was opened by process %ld: not usable after fork",
                       idx->dir, (long)idx->pid);
    return 0;
}

/* Adopt a map grown by another process: needs every transaction of ours closed. */
static int map_adopt(store_index_t *idx, bq_errbuf_t *e)
{
    pthread_rwlock_wrlock(&idx->txlock);
    uint64_t old = idx->map_size;
    int rc = mdb_env_set_mapsize(idx->env, 0);
    if (rc == 0)
        map_size_refresh(idx);
    pthread_rwlock_unlock(&idx->txlock);
    if (rc)
        return mdb_fail(idx, e, rc, "adopt the map size set by another process");
    if (idx->map_size != old)
        bq_info(IDX_LOG, 0, "index %s: map grown by another process from %llu to %llu MiB",
                idx->dir, mib(old), mib(idx->map_size));
    return 0;
}

/* Begin a transaction holding txlock shared; txn_end releases both. */
static int txn_begin(store_index_t *idx, int write, MDB_txn **txn, bq_errbuf_t *e)
{
    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&idx->txlock);
        int rc = mdb_txn_begin(idx->env, NULL, write ? 0 : MDB_RDONLY, txn);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&idx->txlock);
        if (rc != MDB_MAP_RESIZED || attempt >= 3)
            return mdb_fail(idx, e, rc, "begin a %s transaction", write ? "write" : "read");
        if ((rc = map_adopt(idx, e)) != 0)
            return rc;
    }
}

static void txn_abort(store_index_t *idx, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&idx->txlock);
}

static int txn_commit(store_index_t *idx, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn); /* frees txn, even on failure */
    pthread_rwlock_unlock(&idx->txlock);
    return rc;
}

/* Double the map (up to map_max) unless someone already grew it past seen. Holds wmutex. */
static int map_grow(store_index_t *idx, uint64_t seen, const char *what, bq_errbuf_t *e)
{
    pthread_rwlock_wrlock(&idx->txlock);
    int rc = 0;
    map_size_refresh(idx);
    uint64_t old = idx->map_size;
    if (old > seen) {
        pthread_rwlock_unlock(&idx->txlock);
        return 0;
    }
    if (old >= idx->map_max) {
        pthread_rwlock_unlock(&idx->txlock);
        return bq_fail(e, BQ_E_MAPFULL, "index %s is full (map %llu MiB of at most %llu MiB): "
                       "could not %s; raise the index's maximum map size", idx->dir, mib(old),
                       mib(idx->map_max), what);
    }
    uint64_t want = old > idx->map_max / 2 ? idx->map_max : old * 2;
    rc = mdb_env_set_mapsize(idx->env, (size_t)want);
    if (rc == 0)
        map_size_refresh(idx);
    pthread_rwlock_unlock(&idx->txlock);
    if (rc)
        return mdb_fail(idx, e, rc, "grow the map to %llu MiB", mib(want));
    bq_info(IDX_LOG, 0, "index %s: map grown from %llu to %llu MiB (at most %llu MiB)", idx->dir,
            mib(old), mib(idx->map_size), mib(idx->map_max));
    return 0;
}

/* The body of a write transaction: 0, a negative BQ_E code (the transaction is aborted), or
 * WRITE_GROW when LMDB said MDB_MAP_FULL (aborted, the map grown, the body run again, so it
 * must start from scratch each time). */
#define WRITE_GROW 1
typedef int (*write_body_fn)(store_index_t *idx, MDB_txn *txn, void *ctx, bq_errbuf_t *e);

static int index_write(store_index_t *idx, write_body_fn body, void *ctx, const char *what,
                       bq_errbuf_t *e)
{
    int rc = usable(idx, e);
    if (rc)
        return rc;
    pthread_mutex_lock(&idx->wmutex);
    for (;;) {
        MDB_txn *txn;
        if ((rc = txn_begin(idx, 1, &txn, e)) != 0)
            break;
        uint64_t seen = idx->map_size;
        rc = body(idx, txn, ctx, e);
        if (rc == 0) {
            int mrc = txn_commit(idx, txn);
            if (mrc == MDB_MAP_FULL)
                rc = WRITE_GROW;
            else if (mrc)
                rc = mdb_fail(idx, e, mrc, "commit (%s)", what);
        } else {
            txn_abort(idx, txn);
        }
        if (rc != WRITE_GROW)
            break;
        if ((rc = map_grow(idx, seen, what, e)) != 0)
            break;
    }
    pthread_mutex_unlock(&idx->wmutex);
    return rc;
}

/* ---- open / close --------------------------------------------------------------------- */

typedef struct {
    const char *store_dir;
    int repair;         /* STORE_INDEX_OPEN_REPAIR */
    int fresh;          /* out: the index had no format key (new) */
    int rebuilding;     /* out: a rebuild mark was found (or set, see open_body) */
} open_check_t;

static int any_pack(uint64_t pack_id, void *arg)
{
    (void)pack_id;
    *(int *)arg = 1;
    return 1;
}

static int open_body(store_index_t *idx, MDB_txn *txn, void *ctx, bq_errbuf_t *e)
{
    open_check_t *oc = ctx;
    oc->fresh = oc->rebuilding = 0;
    int rc;
    if ((rc = mdb_dbi_open(txn, "chunks", MDB_CREATE, &idx->chunks)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &idx->meta)) != 0)
        return rc == MDB_MAP_FULL ? WRITE_GROW : mdb_fail(idx, e, rc, "open its dbs");
    MDB_val k = {sizeof KEY_FORMAT - 1, (void *)KEY_FORMAT}, v;
    rc = mdb_get(txn, idx->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        uint8_t f[4];
        le32_put(f, IDX_FORMAT);
        v.mv_size = sizeof f;
        v.mv_data = f;
        if ((rc = mdb_put(txn, idx->meta, &k, &v, 0)) != 0)
            return rc == MDB_MAP_FULL ? WRITE_GROW : mdb_fail(idx, e, rc, "put meta/format");
        oc->fresh = 1;
    } else if (rc) {
        return mdb_fail(idx, e, rc, "get meta/format");
    } else if (v.mv_size != 4) {
        return bq_fail(e, BQ_E_IO, "index %s is damaged (meta/format has %zu bytes, expected 4): "
                       IDX_HINT, idx->dir, v.mv_size);
    } else if (le32_get(v.mv_data) != IDX_FORMAT) {
        return bq_fail(e, BQ_E_VERSION, "index %s has format %" PRIu32 "; this barque reads "
                       "format %u", idx->dir, le32_get(v.mv_data), IDX_FORMAT);
    }
    MDB_val rk = {sizeof KEY_REBUILD - 1, (void *)KEY_REBUILD};
    rc = mdb_get(txn, idx->meta, &rk, &v);
    if (rc == 0)
        oc->rebuilding = 1;
    else if (rc != MDB_NOTFOUND)
        return mdb_fail(idx, e, rc, "get meta/rebuild");
    if (oc->fresh) {
        /* A new index in a store that has packs lost its entries (deleted, truncated): it
         * must not pass for an empty one. A repair marks it as being rebuilt at once, so
         * that a crash before the rebuild ends leaves it refused, not empty. */
        MDB_stat st;
        int packs = 0;
        if ((rc = mdb_stat(txn, idx->chunks, &st)) != 0)
            return mdb_fail(idx, e, rc, "read the statistics of db chunks");
        if (st.ms_entries > 0 && !oc->repair)
            return bq_fail(e, BQ_E_IO, "index %s is damaged (db chunks has entries but no "
                           "meta/format): " IDX_HINT, idx->dir);
        rc = store_pack_list(oc->store_dir, any_pack, &packs, e);
        if (rc < 0)
            return rc;
        if (packs && !oc->repair)
            return bq_fail(e, BQ_E_IO, "index %s is missing or empty but the store holds packs: "
                           IDX_HINT, idx->dir);
        if (packs) {
            if ((rc = mdb_put(txn, idx->meta, &rk, &(MDB_val){1, "1"}, 0)) != 0)
                return rc == MDB_MAP_FULL ? WRITE_GROW : mdb_fail(idx, e, rc, "put meta/rebuild");
            oc->rebuilding = 1;
        }
    }
    return 0;
}

/* Remove the environment's files (repair of a damaged index). */
static int env_remove(const char *dir, bq_errbuf_t *e)
{
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            return bq_fail(e, BQ_E_IO, "index %s: could not remove %s: %s", dir, files[i],
                           strerror(errno));
    }
    return bq_fsync_dir_of(dir, e);
}

static int env_open(store_index_t *idx, bq_errbuf_t *e)
{
    int rc = mdb_env_create(&idx->env);
    if (rc) {
        idx->env = NULL;
        return bq_fail(e, BQ_E_IO, "index %s: could not create an LMDB environment: %s", idx->dir,
                       mdb_strerror(rc));
    }
    if ((rc = mdb_env_set_maxdbs(idx->env, IDX_MAXDBS)) != 0 ||
        (rc = mdb_env_open(idx->env, idx->dir, MDB_NOTLS, 0600)) != 0) {
        mdb_env_close(idx->env); /* required even when mdb_env_open failed */
        idx->env = NULL;
        if (mdb_damage(rc))
            return bq_fail(e, BQ_E_IO, "index %s is damaged (could not open: %s): " IDX_HINT,
                           idx->dir, mdb_strerror(rc));
        return bq_fail(e, BQ_E_IO, "index %s: could not open: %s", idx->dir, mdb_strerror(rc));
    }
    return 0;
}

/* Open the environment, clear stale readers, size the map, open the dbs and check meta.
 * On failure the environment is closed again. */
static int open_steps(store_index_t *idx, uint64_t map_initial, open_check_t *oc, bq_errbuf_t *e)
{
    int rc = env_open(idx, e);
    if (rc == 0)
        rc = store_index_reader_check(idx, e);
    if (rc == 0) {
        /* The map: the environment's own size, raised to min(map_initial, map_max). */
        map_size_refresh(idx);
        uint64_t want = map_initial ? map_initial : STORE_INDEX_MAP_INITIAL;
        if (want > idx->map_max)
            want = idx->map_max;
        if (want > idx->map_size) {
            int mrc = mdb_env_set_mapsize(idx->env, (size_t)want);
            if (mrc)
                rc = mdb_fail(idx, e, mrc, "set the map size to %llu MiB", mib(want));
            map_size_refresh(idx);
        }
    }
    if (rc == 0)
        rc = index_write(idx, open_body, oc, "open the index", e);
    if (rc && idx->env) {
        mdb_env_close(idx->env);
        idx->env = NULL;
    }
    return rc;
}

int store_index_open(const char *store_dir, uint64_t map_initial, uint64_t map_max,
                     unsigned flags, store_index_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (!store_dir || !*store_dir)
        return bq_fail(e, BQ_E_INVAL, "no store directory for the index");
    if (map_max < (1u << 20))
        return bq_fail(e, BQ_E_INVAL, "index of store %s: maximum map size %llu bytes is below "
                       "1 MiB", store_dir, (unsigned long long)map_max);
    store_index_t *idx = calloc(1, sizeof *idx);
    if (!idx)
        return bq_fail(e, BQ_E_NOMEM, "out of memory opening the index of store %s", store_dir);
    if (snprintf(idx->dir, sizeof idx->dir, "%s/index", store_dir) >= (int)sizeof idx->dir) {
        free(idx);
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", store_dir);
    }
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&idx->txlock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&idx->wmutex, NULL);
    idx->map_max = map_max;
    idx->pid = getpid();

    open_check_t oc = {.store_dir = store_dir, .repair = (flags & STORE_INDEX_OPEN_REPAIR) != 0};
    int rc = bq_mkdir_p(idx->dir, 0700, e);
    if (rc == 0 && chmod(idx->dir, 0700) != 0)
        rc = bq_fail(e, BQ_E_IO, "index %s: could not set its mode: %s", idx->dir,
                     strerror(errno));
    if (rc == 0) {
        rc = open_steps(idx, map_initial, &oc, e);
        if (rc && (flags & STORE_INDEX_OPEN_REPAIR) && rc != BQ_E_NOMEM && rc != BQ_E_INVAL) {
            bq_warn(IDX_LOG, 0, "index %s: removing its files to start afresh (%s)", idx->dir,
                    e ? e->msg : "open failed");
            if ((rc = env_remove(idx->dir, e)) == 0)
                rc = open_steps(idx, map_initial, &oc, e);
        }
    }
    if (rc == 0 && oc.rebuilding && !oc.repair)
        rc = bq_fail(e, BQ_E_IO, "index %s is incomplete (a rebuild was interrupted): " IDX_HINT,
                     idx->dir);
    if (rc) {
        store_index_close(&idx);
        return rc;
    }
    bq_debug(IDX_LOG, 0, "opened index %s (map %llu MiB, at most %llu MiB)", idx->dir,
             mib(idx->map_size), mib(idx->map_max));
    *out = idx;
    return 0;
}

void store_index_close(store_index_t **idx_p)
{
    if (!idx_p || !*idx_p)
        return;
    store_index_t *idx = *idx_p;
    /* In a forked child, mdb_env_close would release the parent's reader slots. */
    if (idx->env && idx->pid == getpid())
        mdb_env_close(idx->env);
    pthread_rwlock_destroy(&idx->txlock);
    pthread_mutex_destroy(&idx->wmutex);
    free(idx);
    *idx_p = NULL;
}

int store_index_reader_check(store_index_t *idx, bq_errbuf_t *e)
{
    int rc = usable(idx, e);
    if (rc)
        return rc;
    int dead = 0;
    if ((rc = mdb_reader_check(idx->env, &dead)) != 0)
        return mdb_fail(idx, e, rc, "check its readers");
    if (dead > 0)
        bq_info(IDX_LOG, 0, "index %s: cleared %d stale reader%s", idx->dir, dead,
                dead == 1 ? "" : "s");
    return 0;
}

/* ---- get / put / delete --------------------------------------------------------------- */

int store_index_get(store_index_t *idx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                    store_index_loc_t *loc, bq_errbuf_t *e)
{
    int rc = usable(idx, e);
    if (rc)
        return rc;
    MDB_txn *txn;
    if ((rc = txn_begin(idx, 0, &txn, e)) != 0)
        return rc;
    MDB_val k = {STORE_CHUNK_ID_BYTES, (void *)id}, v;
    rc = mdb_get(txn, idx->chunks, &k, &v);
    if (rc == 0) {
        rc = value_decode(idx, id, &v, loc, e); /* copies out before the txn ends */
    } else {
        char hex[2 * STORE_CHUNK_ID_BYTES + 1];
        id_hex(id, hex);
        rc = rc == MDB_NOTFOUND
                 ? bq_fail(e, BQ_E_NOTFOUND, "index %s: no chunk %s", idx->dir, hex)
                 : mdb_fail(idx, e, rc, "get chunk %s", hex);
    }
    txn_abort(idx, txn);
    return rc;
}

typedef struct {
    const store_index_entry_t *entries;
    size_t n;
    unsigned put_flags;      /* 0, or MDB_NOOVERWRITE (rebuild) */
    uint64_t existing;       /* out: entries skipped under MDB_NOOVERWRITE */
} put_ctx_t;

static int put_body(store_index_t *idx, MDB_txn *txn, void *ctx, bq_errbuf_t *e)
{
    put_ctx_t *pc = ctx;
    pc->existing = 0;
    for (size_t i = 0; i < pc->n; i++) {
        uint8_t val[STORE_INDEX_VALUE_MAX];
        size_t vlen = store_index_loc_encode(&pc->entries[i].loc, val);
        MDB_val k = {STORE_CHUNK_ID_BYTES, (void *)pc->entries[i].id};
        MDB_val v = {vlen, val};
        int rc = mdb_put(txn, idx->chunks, &k, &v, pc->put_flags);
        if (rc == MDB_KEYEXIST && (pc->put_flags & MDB_NOOVERWRITE)) {
            pc->existing++;
            continue;
        }
        if (rc == MDB_MAP_FULL)
            return WRITE_GROW;
        if (rc) {
            char hex[2 * STORE_CHUNK_ID_BYTES + 1];
            id_hex(pc->entries[i].id, hex);
            return mdb_fail(idx, e, rc, "put chunk %s", hex);
        }
    }
    return 0;
}

static int entries_check(store_index_t *idx, const store_index_entry_t *entries, size_t n,
                         bq_errbuf_t *e)
{
    for (size_t i = 0; i < n; i++) {
        char why[128];
        if (loc_invalid(&entries[i].loc, why, sizeof why)) {
            char hex[2 * STORE_CHUNK_ID_BYTES + 1];
            id_hex(entries[i].id, hex);
            return bq_fail(e, BQ_E_INVAL, "index %s: could not put chunk %s: %s", idx->dir, hex,
                           why);
        }
    }
    return 0;
}

static int put_entries(store_index_t *idx, const store_index_entry_t *entries, size_t n,
                       unsigned put_flags, bq_errbuf_t *e)
{
    int rc = usable(idx, e);
    if (rc || n == 0)
        return rc;
    if (!entries)
        return bq_fail(e, BQ_E_INVAL, "index %s: no entries to put", idx->dir);
    if ((rc = entries_check(idx, entries, n, e)) != 0)
        return rc;
    put_ctx_t pc = {.entries = entries, .n = n, .put_flags = put_flags};
    char what[64];
    snprintf(what, sizeof what, "put %zu entr%s", n, n == 1 ? "y" : "ies");
    return index_write(idx, put_body, &pc, what, e);
}

int store_index_put_batch(store_index_t *idx, const store_index_entry_t *entries, size_t n,
                          bq_errbuf_t *e)
{
    return put_entries(idx, entries, n, 0, e);
}

int store_index_put_new(store_index_t *idx, const store_index_entry_t *entries, size_t n,
                        bq_errbuf_t *e)
{
    return put_entries(idx, entries, n, MDB_NOOVERWRITE, e);
}

typedef struct {
    const uint8_t (*ids)[STORE_CHUNK_ID_BYTES];
    size_t n;
    size_t deleted;
} del_ctx_t;

static int del_body(store_index_t *idx, MDB_txn *txn, void *ctx, bq_errbuf_t *e)
{
    del_ctx_t *dc = ctx;
    dc->deleted = 0;
    for (size_t i = 0; i < dc->n; i++) {
        MDB_val k = {STORE_CHUNK_ID_BYTES, (void *)dc->ids[i]};
        int rc = mdb_del(txn, idx->chunks, &k, NULL);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc == MDB_MAP_FULL)
            return WRITE_GROW;
        if (rc) {
            char hex[2 * STORE_CHUNK_ID_BYTES + 1];
            id_hex(dc->ids[i], hex);
            return mdb_fail(idx, e, rc, "delete chunk %s", hex);
        }
        dc->deleted++;
    }
    return 0;
}

int store_index_del_batch(store_index_t *idx, const uint8_t (*ids)[STORE_CHUNK_ID_BYTES], size_t n,
                          size_t *deleted, bq_errbuf_t *e)
{
    if (deleted)
        *deleted = 0;
    int rc = usable(idx, e);
    if (rc || n == 0)
        return rc;
    if (!ids)
        return bq_fail(e, BQ_E_INVAL, "index %s: no ids to delete", idx->dir);
    del_ctx_t dc = {.ids = ids, .n = n};
    char what[64];
    snprintf(what, sizeof what, "delete %zu entr%s", n, n == 1 ? "y" : "ies");
    rc = index_write(idx, del_body, &dc, what, e);
    if (rc == 0 && deleted)
        *deleted = dc.deleted;
    return rc;
}

/* ---- walk and count ------------------------------------------------------------------- */

/* Copy up to max entries after *last (from the first when !*have_last) into out. */
static int each_fetch(store_index_t *idx, uint8_t last[STORE_CHUNK_ID_BYTES], int *have_last,
                      store_index_entry_t *out, size_t max, size_t *got, bq_errbuf_t *e)
{
    *got = 0;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin(idx, 0, &txn, e);
    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, idx->chunks, &cur)) != 0) {
        txn_abort(idx, txn);
        return mdb_fail(idx, e, rc, "open a cursor on db chunks");
    }
    MDB_val k = {STORE_CHUNK_ID_BYTES, last}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, *have_last ? MDB_SET_RANGE : MDB_FIRST);
    if (mrc == 0 && *have_last && k.mv_size == STORE_CHUNK_ID_BYTES &&
        memcmp(k.mv_data, last, STORE_CHUNK_ID_BYTES) == 0)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    for (; mrc == 0 && *got < max; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != STORE_CHUNK_ID_BYTES) {
            rc = bq_fail(e, BQ_E_IO, "index %s is damaged (db chunks has a key of %zu bytes, "
                         "expected %d): " IDX_HINT, idx->dir, k.mv_size, STORE_CHUNK_ID_BYTES);
            break;
        }
        store_index_entry_t *en = &out[*got];
        memcpy(en->id, k.mv_data, STORE_CHUNK_ID_BYTES);
        if ((rc = value_decode(idx, en->id, &v, &en->loc, e)) != 0)
            break;
        (*got)++;
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = mdb_fail(idx, e, mrc, "walk db chunks");
    mdb_cursor_close(cur);
    txn_abort(idx, txn);
    if (rc == 0 && *got) {
        memcpy(last, out[*got - 1].id, STORE_CHUNK_ID_BYTES);
        *have_last = 1;
    }
    return rc;
}

int store_index_each(store_index_t *idx, store_index_each_fn fn, void *arg, bq_errbuf_t *e)
{
    int rc = usable(idx, e);
    if (rc)
        return rc;
    store_index_entry_t *batch = malloc(IDX_EACH_BATCH * sizeof *batch);
    if (!batch)
        return bq_fail(e, BQ_E_NOMEM, "out of memory walking index %s", idx->dir);
    uint8_t last[STORE_CHUNK_ID_BYTES] = {0};
    int have_last = 0;
    for (;;) {
        size_t got = 0;
        if ((rc = each_fetch(idx, last, &have_last, batch, IDX_EACH_BATCH, &got, e)) != 0)
            break;
        for (size_t i = 0; i < got && rc == 0; i++)
            rc = fn(batch[i].id, &batch[i].loc, arg);
        if (rc || got < IDX_EACH_BATCH)
            break;
    }
    free(batch);
    return rc;
}

int store_index_count(store_index_t *idx, uint64_t *n, bq_errbuf_t *e)
{
    *n = 0;
    int rc = usable(idx, e);
    if (rc)
        return rc;
    MDB_txn *txn;
    if ((rc = txn_begin(idx, 0, &txn, e)) != 0)
        return rc;
    MDB_stat st;
    int mrc = mdb_stat(txn, idx->chunks, &st);
    txn_abort(idx, txn);
    if (mrc)
        return mdb_fail(idx, e, mrc, "read the statistics of db chunks");
    *n = (uint64_t)st.ms_entries;
    return 0;
}

/* ---- rebuild -------------------------------------------------------------------------- */

static int rebuild_begin_body(store_index_t *idx, MDB_txn *txn, void *ctx, bq_errbuf_t *e)
{
    (void)ctx;
    int rc = mdb_drop(txn, idx->chunks, 0);
    if (rc)
        return rc == MDB_MAP_FULL ? WRITE_GROW : mdb_fail(idx, e, rc, "empty db chunks");
    MDB_val k = {sizeof KEY_REBUILD - 1, (void *)KEY_REBUILD}, v = {1, "1"};
    rc = mdb_put(txn, idx->meta, &k, &v, 0);
    if (rc)
        return rc == MDB_MAP_FULL ? WRITE_GROW : mdb_fail(idx, e, rc, "put meta/rebuild");
    return 0;
}

static int rebuild_end_body(store_index_t *idx, MDB_txn *txn, void *ctx, bq_errbuf_t *e)
{
    (void)ctx;
    MDB_val k = {sizeof KEY_REBUILD - 1, (void *)KEY_REBUILD};
    int rc = mdb_del(txn, idx->meta, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc == MDB_MAP_FULL ? WRITE_GROW : mdb_fail(idx, e, rc, "delete meta/rebuild");
    return 0;
}

typedef struct {
    store_index_t *idx;
    const char *store_dir;
    store_index_derive_fn derive;
    void *arg;
    store_index_rebuild_stats_t st;
    store_index_entry_t *batch;
    size_t n;
    uint64_t pack;
    int cb_rc;              /* the error that stopped a scan from inside its callback */
    bq_errbuf_t *e;
} rebuild_t;

static int rebuild_flush(rebuild_t *r)
{
    if (r->n == 0)
        return 0;
    put_ctx_t pc = {.entries = r->batch, .n = r->n, .put_flags = MDB_NOOVERWRITE};
    int rc = index_write(r->idx, put_body, &pc, "put the entries of a rebuild", r->e);
    if (rc)
        return rc;
    r->st.records += r->n - pc.existing;
    r->st.duplicates += pc.existing;
    r->n = 0;
    return 0;
}

static int rebuild_record(const uint8_t id[STORE_CHUNK_ID_BYTES], uint64_t offset, uint32_t rec_len,
                          const void *body, size_t body_len, void *arg)
{
    rebuild_t *r = arg;
    store_index_entry_t *en = &r->batch[r->n];
    memcpy(en->id, id, STORE_CHUNK_ID_BYTES);
    en->loc = (store_index_loc_t){.pack = r->pack, .offset = offset, .rec_len = rec_len};
    if (r->derive) {
        int rc = r->derive(id, body, body_len, &en->loc.raw_len, &en->loc.flags, r->arg);
        if (rc > 0) {
            r->st.skipped++;
            return 0;
        }
        if (rc < 0) {
            char hex[2 * STORE_CHUNK_ID_BYTES + 1];
            id_hex(id, hex);
            r->cb_rc = bq_fail(r->e, rc, "rebuilding index %s: chunk %s in pack %016" PRIx64
                               " at offset %" PRIu64 ": %s", r->idx->dir, hex, r->pack, offset,
                               bq_err_text(rc));
            return r->cb_rc;
        }
    }
    store_chunk_head_t head;
    bq_errbuf_t why;
    en->loc.flags &= ~STORE_INDEX_F_DELTA;
    if (store_chunk_head(id, body, body_len, &head, NULL, &why) == 0 && head.delta) {
        en->loc.flags |= STORE_INDEX_F_DELTA;
        memcpy(en->loc.base, head.base, STORE_CHUNK_ID_BYTES);
    }
    if (++r->n == IDX_REBUILD_BATCH && (r->cb_rc = rebuild_flush(r)) != 0)
        return r->cb_rc;
    return 0;
}

static int rebuild_pack(uint64_t pack_id, void *arg)
{
    rebuild_t *r = arg;
    bq_errbuf_t pe;
    uint64_t good_end = 0;
    r->pack = pack_id;
    r->cb_rc = 0;
    r->st.packs++;
    int rc = store_pack_file_sync(r->store_dir, pack_id, &pe);
    if (rc == 0)
        rc = store_pack_scan(r->store_dir, pack_id, rebuild_record, r, &good_end, &pe);
    if (r->cb_rc)
        return r->cb_rc; /* r->e holds the message */
    if (rc) {
        char path[PATH_MAX];
        struct stat sb;
        uint64_t size = 0;
        if (store_pack_path(r->store_dir, pack_id, path, sizeof path) == 0 && stat(path, &sb) == 0)
            size = (uint64_t)sb.st_size;
        r->st.damaged_packs++;
        r->st.damaged_bytes += size > good_end ? size - good_end : 0;
        bq_warn(IDX_LOG, 0, "rebuilding index %s: %s; records before offset %" PRIu64
                " indexed", r->idx->dir, pe.msg, good_end);
    }
    return rebuild_flush(r);
}

int store_index_rebuild(store_index_t *idx, const char *store_dir, store_index_derive_fn derive,
                        void *arg, store_index_rebuild_stats_t *stats, bq_errbuf_t *e)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    int rc = usable(idx, e);
    if (rc)
        return rc;
    rebuild_t r = {.idx = idx, .store_dir = store_dir, .derive = derive, .arg = arg, .e = e};
    r.batch = malloc(IDX_REBUILD_BATCH * sizeof *r.batch);
    if (!r.batch)
        return bq_fail(e, BQ_E_NOMEM, "out of memory rebuilding index %s", idx->dir);
    rc = index_write(idx, rebuild_begin_body, NULL, "empty the index for a rebuild", e);
    if (rc == 0)
        rc = store_pack_list(store_dir, rebuild_pack, &r, e);
    if (rc == 0)
        rc = index_write(idx, rebuild_end_body, NULL, "end a rebuild", e);
    free(r.batch);
    if (stats)
        *stats = r.st;
    if (rc == 0)
        bq_info(IDX_LOG, 0, "rebuilt index %s from %" PRIu64 " pack%s: %" PRIu64 " entries, %"
                PRIu64 " duplicates, %" PRIu64 " skipped, %" PRIu64 " damaged pack%s",
                idx->dir, r.st.packs, r.st.packs == 1 ? "" : "s", r.st.records, r.st.duplicates,
                r.st.skipped, r.st.damaged_packs, r.st.damaged_packs == 1 ? "" : "s");
    return rc;
}
