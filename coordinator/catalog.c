/* The coordinator's catalog on LMDB (see catalog.h for the layout).
 *
 * Records:
 *   meta      "schema_version" -> u32 BE (1), "next_job_id" -> u64 BE
 *   sites     name -> the name's bytes again (no NUL). A Site record holds nothing but its
 *             name, and proto/ has no Site codec; should Site grow fields, the value becomes
 *             the encoded Site message and schema_version goes to 2.
 *   clusters  name -> proto_cluster_encode, workers name -> proto_worker_encode,
 *   jobs      u64 BE id -> proto_job_encode,
 *   backups   cluster name, a NUL byte, backup id (YYYYMMDDTHHMMSS) -> proto_backup_encode:
 *             one cluster's backups are adjacent and in id (= time) order. The db came
 *             with issue 4 without a schema change: opening an older catalog creates it
 *             (empty), and an older coordinator never opens it.
 *   wal       cluster name, a NUL byte, WAL file name (bq_wal_name_valid) -> proto_wal_file_encode:
 *             one cluster's WAL files are adjacent and in name order, which for uppercase
 *             hex is timeline, then segment order (TLI.history sorts before the timeline's
 *             segments, NAME.partial right after NAME). Came with issue 5 the same way.
 * Name keys are the name's bytes without the NUL.
 *
 * Environment: MDB_NOTLS (reader slots belong to transactions, not threads), maxdbs 32,
 * maxreaders 126, default durability (every write commit fsyncs). mdb_reader_check runs
 * on open. The map starts at min(64 MiB, map_max), or at the environment's own size when
 * that is bigger; it never shrinks.
 *
 * Failures:
 * - every LMDB error becomes BQ_E_CATALOG (or BQ_E_NOTFOUND, BQ_E_MAPFULL) with a message
 *   naming the operation, the db, the key and mdb_strerror;
 * - a failed put or delete in a write transaction (MDB_MAP_FULL above all) aborts the
 *   LMDB transaction at once: the catalog_txn_t stays allocated but is dead; every later
 *   call on it returns the error that killed it, commit frees it and returns that error,
 *   abort just frees it;
 * - the map is grown (catalog_grow) only with no transaction open in this process, since
 *   mdb_env_set_mapsize remaps the file under every open transaction. The same holds when
 *   another process has grown the map (MDB_MAP_RESIZED on begin): the new size is adopted
 *   and the begin retried once, but only when no other transaction is open here.
 *
 * A catalog is bound to the process that opened it: after fork() the child must neither use
 * nor close it through LMDB (catalog_destroy in a child only frees memory). */
#include "catalog.h"

#include "fsutil.h"
#include "log.h"
#include "proto.h"

#include <lmdb.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CAT_SCHEMA_VERSION 1u
#define CAT_MAP_INITIAL (64ull << 20)
#define CAT_MAXDBS 32
#define CAT_MAXREADERS 126
#define CAT_KEY_MAX (BQ_NAME_MAX + 64) /* a key as shown in messages */
#define CAT_BACKUP_KEY_MAX (BQ_NAME_MAX + BQ_BACKUP_ID_MAX) /* cluster, NUL, id */
#define CAT_WAL_KEY_MAX (BQ_NAME_MAX + BQ_WAL_FILE_MAX)     /* cluster, NUL, name */

static const char CAT_LOG[] = "catalog";
static const char KEY_SCHEMA[] = "schema_version";
static const char KEY_NEXT_JOB[] = "next_job_id";

struct catalog {
    MDB_env *env;
    MDB_dbi meta, sites, clusters, workers, jobs, backups, wal, rtests;
    char dir[PATH_MAX];
    uint64_t map_max;
    uint64_t map_size;   /* the size LMDB maps now */
    pid_t pid;           /* the process that opened the environment */
    int ntxn;            /* LMDB transactions open in this process */
    int writing;         /* one of them is the write transaction */
};

struct catalog_txn {
    catalog_t *c;
    MDB_txn *txn;        /* NULL once the transaction died */
    int write;
    int dead;            /* 0, or the BQ_E_* code that killed the transaction */
    char why[BQ_ERRMSG_MAX];
};

/* ---- helpers -------------------------------------------------------------------------- */

static unsigned long long mib(uint64_t bytes) { return (unsigned long long)(bytes >> 20); }

static void be64_put(uint8_t b[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t be64_get(const uint8_t b[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

static void be32_put(uint8_t b[4], uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint32_t be32_get(const uint8_t b[4])
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static void map_size_refresh(catalog_t *c)
{
    MDB_envinfo info;
    if (mdb_env_info(c->env, &info) == 0)
        c->map_size = (uint64_t)info.me_mapsize;
}

/* An LMDB failure of op on (db, key), on a whole db when key is NULL, or on the environment
 * when db is NULL too. */
static int mdb_fail(catalog_t *c, bq_errbuf_t *e, int rc, const char *op, const char *db,
                    const char *key)
{
    int code = rc == MDB_NOTFOUND ? BQ_E_NOTFOUND : rc == MDB_MAP_FULL ? BQ_E_MAPFULL
                                                                         : BQ_E_CATALOG;
    if (rc == MDB_MAP_FULL) {
        if (db && key)
            return bq_fail(e, code, "catalog %s is full (map %llu MiB): could not %s %s in db %s, "
                           "transaction aborted", c->dir, mib(c->map_size), op, key, db);
        return bq_fail(e, code, "catalog %s is full (map %llu MiB): could not %s it, "
                       "transaction aborted", c->dir, mib(c->map_size), op);
    }
    if (db && key)
        return bq_fail(e, code, "could not %s %s in db %s of catalog %s: %s", op, key, db,
                       c->dir, mdb_strerror(rc));
    if (db)
        return bq_fail(e, code, "could not %s db %s of catalog %s: %s", op, db, c->dir,
                       mdb_strerror(rc));
    return bq_fail(e, code, "could not %s catalog %s: %s", op, c->dir, mdb_strerror(rc));
}

static void txn_release(catalog_txn_t *t)
{
    if (t->txn) {
        t->c->ntxn--;
        if (t->write)
            t->c->writing = 0;
        t->txn = NULL;
    }
}

/* A write failed: LMDB only allows the transaction to be aborted now. */
static int txn_kill(catalog_txn_t *t, int code, bq_errbuf_t *e)
{
    if (t->txn) {
        mdb_txn_abort(t->txn); /* also frees the write transaction's cursors */
        txn_release(t);
    }
    t->dead = code;
    snprintf(t->why, sizeof t->why, "%s", e ? e->msg : bq_err_text(code));
    return code;
}

/* Refuse to use a dead transaction, or to write in a read transaction. */
static int txn_usable(catalog_txn_t *t, int write, bq_errbuf_t *e)
{
    if (!t)
        return bq_fail(e, BQ_E_INVAL, "no catalog transaction");
    if (t->dead)
        return bq_fail(e, t->dead, "catalog %s: transaction was aborted by an earlier error: %s",
                       t->c->dir, t->why);
    if (write && !t->write)
        return bq_fail(e, BQ_E_STATE, "catalog %s: write in a read-only transaction", t->c->dir);
    return 0;
}

static int name_key(const char *name, const char *what, MDB_val *k, bq_errbuf_t *e)
{
    size_t n = name ? strnlen(name, BQ_NAME_MAX) : 0;
    if (n == 0 || n >= BQ_NAME_MAX)
        return bq_fail(e, BQ_E_INVAL, "invalid %s name for the catalog: %s", what,
                       n == 0 ? "empty" : "too long");
    k->mv_data = (void *)name;
    k->mv_size = n;
    return 0;
}

static void name_show(char *buf, size_t len, const char *what, const MDB_val *k)
{
    int n = k->mv_size > INT_MAX ? INT_MAX : (int)k->mv_size;
    snprintf(buf, len, "%s \"%.*s\"", what, n, (const char *)k->mv_data);
}

/* put (k, v) in dbi; a failure kills the transaction. */
static int txn_put(catalog_txn_t *t, MDB_dbi dbi, const char *db, const char *key, MDB_val *k,
                   MDB_val *v, unsigned flags, bq_errbuf_t *e)
{
    int rc = mdb_put(t->txn, dbi, k, v, flags);
    if (rc == 0)
        return 0;
    if (rc == MDB_KEYEXIST && (flags & MDB_APPEND))
        bq_fail(e, BQ_E_CATALOG, "could not put %s in db %s of catalog %s: a later key is "
                "already there (next_job_id is behind the jobs)", key, db, t->c->dir);
    else
        mdb_fail(t->c, e, rc, "put", db, key);
    return txn_kill(t, rc == MDB_MAP_FULL ? BQ_E_MAPFULL : BQ_E_CATALOG, e);
}

/* Put the record encode made (rc, buf, len, its message in pe) under k in dbi, and free buf:
 * a failed encode is the caller's error naming key, nothing is written. */
static int put_encoded(catalog_txn_t *t, MDB_dbi dbi, const char *db, const char *key,
                       MDB_val *k, unsigned flags, int rc, uint8_t *buf, size_t len,
                       const bq_errbuf_t *pe, bq_errbuf_t *e)
{
    if (rc) {
        free(buf);
        return bq_fail(e, rc, "could not store %s in catalog %s: %s", key, t->c->dir, pe->msg);
    }
    MDB_val v = {len, buf};
    rc = txn_put(t, dbi, db, key, k, &v, flags, e);
    free(buf);
    return rc;
}

static int txn_get(catalog_txn_t *t, MDB_dbi dbi, const char *db, const char *key, MDB_val *k,
                   MDB_val *v, bq_errbuf_t *e)
{
    int rc = mdb_get(t->txn, dbi, k, v);
    return rc ? mdb_fail(t->c, e, rc, "get", db, key) : 0;
}

/* ---- open / close --------------------------------------------------------------------- */

static int meta_u64(catalog_txn_t *t, const char *name, uint64_t dflt, uint64_t *out,
                    bq_errbuf_t *e)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(t->txn, t->c->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *out = dflt;
        return 0;
    }
    if (rc)
        return mdb_fail(t->c, e, rc, "get", "meta", name);
    if (v.mv_size != 8)
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: meta/%s has %zu bytes, expected 8",
                       t->c->dir, name, v.mv_size);
    *out = be64_get(v.mv_data);
    return 0;
}

static int meta_put_u64(catalog_txn_t *t, const char *name, uint64_t val, bq_errbuf_t *e)
{
    uint8_t b[8];
    be64_put(b, val);
    MDB_val k = {strlen(name), (void *)name}, v = {sizeof b, b};
    return txn_put(t, t->c->meta, "meta", name, &k, &v, 0, e);
}

static int dbi_open(catalog_txn_t *t, const char *name, unsigned flags, MDB_dbi *dbi,
                    bq_errbuf_t *e)
{
    int rc = mdb_dbi_open(t->txn, name, flags, dbi);
    if (rc == 0 || rc == MDB_NOTFOUND)
        return rc == 0 ? 0 : BQ_E_NOTFOUND;
    return bq_fail(e, BQ_E_CATALOG, "could not open db %s of catalog %s: %s", name ? name : "(main)",
                   t->c->dir, mdb_strerror(rc));
}

/* Open or create the named dbs and check (or write) the schema version. */
static int catalog_init(catalog_t *c, bq_errbuf_t *e)
{
    catalog_txn_t *t;
    int rc = catalog_txn_begin(c, 1, &t, e);
    if (rc)
        return rc;
    int fresh = 0;
    rc = dbi_open(t, "meta", 0, &c->meta, e);
    if (rc == BQ_E_NOTFOUND) {
        /* no meta: a new catalog, unless the environment already holds someone else's data */
        MDB_dbi main_dbi;
        MDB_stat st;
        rc = dbi_open(t, NULL, 0, &main_dbi, e);
        if (rc == 0 && (rc = mdb_stat(t->txn, main_dbi, &st)) != 0)
            rc = mdb_fail(c, e, rc, "read the main db of", NULL, NULL);
        if (rc == 0 && st.ms_entries > 0)
            rc = bq_fail(e, BQ_E_CATALOG, "%s holds an LMDB environment that is not a barque "
                         "catalog (no meta db): give [coordinator] catalog an empty directory",
                         c->dir);
        if (rc == 0)
            rc = dbi_open(t, "meta", MDB_CREATE, &c->meta, e);
        fresh = 1;
    }
    if (rc == 0)
        rc = dbi_open(t, "sites", MDB_CREATE, &c->sites, e);
    if (rc == 0)
        rc = dbi_open(t, "clusters", MDB_CREATE, &c->clusters, e);
    if (rc == 0)
        rc = dbi_open(t, "workers", MDB_CREATE, &c->workers, e);
    if (rc == 0)
        rc = dbi_open(t, "jobs", MDB_CREATE, &c->jobs, e);
    if (rc == 0) /* issue 4: created in catalogs made before it too */
        rc = dbi_open(t, "backups", MDB_CREATE, &c->backups, e);
    if (rc == 0) /* issue 5: likewise */
        rc = dbi_open(t, "wal", MDB_CREATE, &c->wal, e);
    if (rc == 0) /* issue 7: likewise */
        rc = dbi_open(t, "restore_tests", MDB_CREATE, &c->rtests, e);
    if (rc) {
        catalog_txn_abort(&t);
        return rc;
    }

    MDB_val k = {strlen(KEY_SCHEMA), (void *)KEY_SCHEMA}, v;
    rc = mdb_get(t->txn, c->meta, &k, &v);
    if (rc == MDB_NOTFOUND && fresh) {
        uint8_t b[4];
        be32_put(b, CAT_SCHEMA_VERSION);
        v.mv_data = b;
        v.mv_size = sizeof b;
        rc = txn_put(t, c->meta, "meta", KEY_SCHEMA, &k, &v, 0, e);
        if (rc == 0)
            rc = meta_put_u64(t, KEY_NEXT_JOB, 1, e);
        if (rc == 0)
            bq_info(CAT_LOG, 0, "created catalog %s (schema version %u)", c->dir,
                    CAT_SCHEMA_VERSION);
    } else if (rc == MDB_NOTFOUND) {
        rc = bq_fail(e, BQ_E_CATALOG, "catalog %s has no meta/%s: not a barque catalog, or "
                     "damaged", c->dir, KEY_SCHEMA);
    } else if (rc) {
        rc = mdb_fail(c, e, rc, "get", "meta", KEY_SCHEMA);
    } else if (v.mv_size != 4) {
        rc = bq_fail(e, BQ_E_CATALOG, "catalog %s: meta/%s has %zu bytes, expected 4", c->dir,
                     KEY_SCHEMA, v.mv_size);
    } else if (be32_get(v.mv_data) != CAT_SCHEMA_VERSION) {
        rc = bq_fail(e, BQ_E_CATALOG, "catalog %s has schema version %" PRIu32 ", this "
                     "barque-coordinator knows version %u only: run the barque version that "
                     "wrote it", c->dir, be32_get(v.mv_data), CAT_SCHEMA_VERSION);
    }
    if (rc) {
        catalog_txn_abort(&t);
        return rc;
    }
    return catalog_txn_commit(&t, e);
}

int catalog_open(const char *dir, uint64_t map_max, catalog_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (!dir || !*dir)
        return bq_fail(e, BQ_E_INVAL, "no catalog directory");
    if (map_max < (1u << 20))
        return bq_fail(e, BQ_E_INVAL, "catalog %s: maximum size %llu bytes is below 1 MiB", dir,
                       (unsigned long long)map_max);
    catalog_t *c = calloc(1, sizeof *c);
    if (!c)
        return bq_fail(e, BQ_E_NOMEM, "out of memory opening catalog %s", dir);
    if (snprintf(c->dir, sizeof c->dir, "%s", dir) >= (int)sizeof c->dir) {
        free(c);
        return bq_fail(e, BQ_E_INVAL, "catalog directory name too long: %s", dir);
    }
    c->map_max = map_max;
    int rc = bq_mkdir_p(dir, 0700, e);
    if (rc) {
        free(c);
        return rc;
    }
    rc = mdb_env_create(&c->env);
    if (rc) {
        free(c);
        return bq_fail(e, BQ_E_CATALOG, "could not create LMDB environment for catalog %s: %s",
                       dir, mdb_strerror(rc));
    }
    if ((rc = mdb_env_set_maxdbs(c->env, CAT_MAXDBS)) != 0 ||
        (rc = mdb_env_set_maxreaders(c->env, CAT_MAXREADERS)) != 0 ||
        (rc = mdb_env_open(c->env, dir, MDB_NOTLS, 0600)) != 0) {
        mdb_env_close(c->env); /* required even when mdb_env_open failed */
        free(c);
        return bq_fail(e, BQ_E_CATALOG, "could not open catalog %s: %s", dir, mdb_strerror(rc));
    }
    c->pid = getpid();

    rc = catalog_reader_check(c, e);
    if (rc) {
        catalog_destroy(&c);
        return rc;
    }

    /* Not set before mdb_env_open, the map is the environment's own size (1 MiB for a new
     * one); take the bigger of that and min(64 MiB, map_max). */
    map_size_refresh(c);
    uint64_t want = map_max < CAT_MAP_INITIAL ? map_max : CAT_MAP_INITIAL;
    if (want > c->map_size) {
        rc = mdb_env_set_mapsize(c->env, (size_t)want);
        if (rc) {
            mdb_fail(c, e, rc, "set the map size of", NULL, NULL);
            catalog_destroy(&c);
            return BQ_E_CATALOG;
        }
        map_size_refresh(c);
    }

    rc = catalog_init(c, e);
    if (rc) {
        catalog_destroy(&c);
        return rc;
    }
    bq_debug(CAT_LOG, 0, "opened catalog %s (map %llu MiB, max %llu MiB)", dir, mib(c->map_size),
             mib(c->map_max));
    *out = c;
    return 0;
}

void catalog_destroy(catalog_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    catalog_t *c = *self_p;
    /* In a forked child, mdb_env_close would release the parent's reader slots. */
    if (c->env && c->pid == getpid())
        mdb_env_close(c->env);
    free(c);
    *self_p = NULL;
}

/* ---- transactions --------------------------------------------------------------------- */

int catalog_txn_begin(catalog_t *c, int write, catalog_txn_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (c->pid != getpid())
        return bq_fail(e, BQ_E_STATE, "catalog %s was opened by process %ld: not usable after "
                       "fork", c->dir, (long)c->pid);
    if (write && c->writing)
        return bq_fail(e, BQ_E_STATE, "catalog %s: a write transaction is already open",
                       c->dir);
    catalog_txn_t *t = calloc(1, sizeof *t);
    if (!t)
        return bq_fail(e, BQ_E_NOMEM, "out of memory for a transaction on catalog %s", c->dir);
    t->c = c;
    t->write = write != 0;
    unsigned flags = write ? 0 : MDB_RDONLY;
    int rc = mdb_txn_begin(c->env, NULL, flags, &t->txn);
    if (rc == MDB_MAP_RESIZED) {
        /* another process grew the map: adopt its size, which needs no transaction open here */
        if (c->ntxn > 0) {
            free(t);
            return bq_fail(e, BQ_E_CATALOG, "catalog %s was grown by another process while a "
                           "transaction is open here: retry when it ends", c->dir);
        }
        uint64_t old = c->map_size;
        rc = mdb_env_set_mapsize(c->env, 0);
        if (rc == 0) {
            map_size_refresh(c);
            bq_info(CAT_LOG, 0, "catalog %s: map grown by another process from %llu to %llu MiB",
                    c->dir, mib(old), mib(c->map_size));
            rc = mdb_txn_begin(c->env, NULL, flags, &t->txn);
        }
    }
    if (rc) {
        free(t);
        return mdb_fail(c, e, rc, write ? "begin a write transaction on" :
                        "begin a read transaction on", NULL, NULL);
    }
    c->ntxn++;
    if (write)
        c->writing = 1;
    *out = t;
    return 0;
}

int catalog_txn_commit(catalog_txn_t **txn_p, bq_errbuf_t *e)
{
    if (!txn_p || !*txn_p)
        return bq_fail(e, BQ_E_INVAL, "no catalog transaction to commit");
    catalog_txn_t *t = *txn_p;
    *txn_p = NULL;
    int rc = 0;
    if (t->dead) {
        rc = bq_fail(e, t->dead, "could not commit to catalog %s: the transaction was aborted "
                     "by an earlier error: %s", t->c->dir, t->why);
    } else {
        int mrc = mdb_txn_commit(t->txn); /* frees the LMDB transaction, even on failure */
        t->txn = NULL;
        t->c->ntxn--;
        if (t->write)
            t->c->writing = 0;
        if (mrc)
            rc = mdb_fail(t->c, e, mrc, "commit a transaction to", NULL, NULL);
    }
    free(t);
    return rc;
}

void catalog_txn_abort(catalog_txn_t **txn_p)
{
    if (!txn_p || !*txn_p)
        return;
    catalog_txn_t *t = *txn_p;
    if (t->txn) {
        mdb_txn_abort(t->txn);
        txn_release(t);
    }
    free(t);
    *txn_p = NULL;
}

int catalog_grow(catalog_t *c, bq_errbuf_t *e)
{
    if (c->ntxn > 0)
        return bq_fail(e, BQ_E_STATE, "catalog %s: cannot grow the map with %d transaction%s "
                       "open", c->dir, c->ntxn, c->ntxn == 1 ? "" : "s");
    if (c->pid != getpid())
        return bq_fail(e, BQ_E_STATE, "catalog %s was opened by process %ld: not usable after "
                       "fork", c->dir, (long)c->pid);
    map_size_refresh(c);
    if (c->map_size >= c->map_max)
        return bq_fail(e, BQ_E_MAPFULL, "catalog %s is full (%llu MiB of %llu MiB): raise "
                       "catalog_max_size in [coordinator]", c->dir, mib(c->map_size),
                       mib(c->map_max));
    uint64_t old = c->map_size;
    uint64_t want = old > c->map_max / 2 ? c->map_max : old * 2;
    int rc = mdb_env_set_mapsize(c->env, (size_t)want);
    if (rc)
        return mdb_fail(c, e, rc, "grow the map of", NULL, NULL);
    map_size_refresh(c);
    bq_info(CAT_LOG, 0, "catalog %s: map grown from %llu to %llu MiB (max %llu MiB)", c->dir,
            mib(old), mib(c->map_size), mib(c->map_max));
    return 0;
}

/* ---- iteration ------------------------------------------------------------------------ */

/* Decode (copy) one record and hand it to the caller's function; *fnrc gets its result. */
typedef int (*visit_fn)(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, void *ctx,
                        int *fnrc, bq_errbuf_t *e);

/* Visit every record of dbi in key order, or with prefix only those whose key starts with
 * prefix's bytes. */
static int cat_each(catalog_txn_t *t, MDB_dbi dbi, const char *db, const MDB_val *prefix,
                    visit_fn visit, void *ctx, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = mdb_cursor_open(t->txn, dbi, &cur);
    if (rc)
        return mdb_fail(t->c, e, rc, "open a cursor on", db, NULL);
    MDB_val k, v;
    if (prefix)
        k = *prefix;
    int write = t->write;
    for (rc = mdb_cursor_get(cur, &k, &v, prefix ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (prefix && (k.mv_size < prefix->mv_size ||
                       memcmp(k.mv_data, prefix->mv_data, prefix->mv_size) != 0)) {
            rc = MDB_NOTFOUND; /* past the prefix */
            break;
        }
        int fnrc = 0;
        int vrc = visit(t, &k, &v, ctx, &fnrc, e);
        if (!t->txn) {
            /* fn's write killed the transaction, and with it a write transaction's cursors */
            if (!write)
                mdb_cursor_close(cur);
            return fnrc ? fnrc : t->dead;
        }
        if (vrc || fnrc) {
            mdb_cursor_close(cur);
            return vrc ? vrc : fnrc;
        }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return mdb_fail(t->c, e, rc, "iterate over", db, NULL);
    return 0;
}

/* ---- jobs ----------------------------------------------------------------------------- */

/* A job's key (u64 BE in kb) and its name in messages. */
static MDB_val job_key(uint64_t id, uint8_t kb[8], char key[CAT_KEY_MAX])
{
    snprintf(key, CAT_KEY_MAX, "job %" PRIu64, id);
    be64_put(kb, id);
    return (MDB_val){8, kb};
}

static int job_store(catalog_txn_t *t, const bq_job_t *j, unsigned flags, bq_errbuf_t *e)
{
    char key[CAT_KEY_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t pe = {{0}};
    int rc = proto_job_encode(j, &buf, &len, &pe);
    uint8_t kb[8];
    MDB_val k = job_key(j->id, kb, key);
    return put_encoded(t, t->c->jobs, "jobs", key, &k, flags, rc, buf, len, &pe, e);
}

int catalog_job_new(catalog_txn_t *t, bq_job_t *j, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 1, e);
    if (rc)
        return rc;
    uint64_t id;
    rc = meta_u64(t, KEY_NEXT_JOB, 1, &id, e);
    if (rc)
        return rc;
    if (id == 0 || id == UINT64_MAX)
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: meta/%s is %" PRIu64 ": out of job ids",
                       t->c->dir, KEY_NEXT_JOB, id);
    uint64_t old = j->id;
    j->id = id;
    /* MDB_APPEND: ids only ascend, so pages fill up instead of splitting in half, and an id
     * that is not above every stored one is refused instead of overwriting a job. */
    rc = job_store(t, j, MDB_APPEND, e);
    if (rc == 0)
        rc = meta_put_u64(t, KEY_NEXT_JOB, id + 1, e);
    if (rc)
        j->id = old;
    return rc;
}

int catalog_job_put(catalog_txn_t *t, const bq_job_t *j, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 1, e);
    if (rc)
        return rc;
    uint64_t next;
    rc = meta_u64(t, KEY_NEXT_JOB, 1, &next, e);
    if (rc)
        return rc;
    if (j->id == 0 || j->id >= next)
        return bq_fail(e, BQ_E_INVAL, "could not put job %" PRIu64 " in catalog %s: no such id "
                       "was assigned (next is %" PRIu64 "); use catalog_job_new", j->id,
                       t->c->dir, next);
    return job_store(t, j, 0, e);
}

static int job_decode(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, bq_job_t *out,
                      bq_errbuf_t *e)
{
    if (k->mv_size != 8)
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db jobs has a key of %zu bytes, expected 8",
                       t->c->dir, k->mv_size);
    uint64_t id = be64_get(k->mv_data);
    bq_errbuf_t pe = {{0}};
    int rc = proto_job_decode(v->mv_data, v->mv_size, out, &pe);
    if (rc)
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db jobs, job %" PRIu64 ": %s", t->c->dir,
                       id, pe.msg);
    out->id = id;
    return 0;
}

int catalog_job_get(catalog_txn_t *t, uint64_t id, bq_job_t *out, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    if (rc)
        return rc;
    char key[CAT_KEY_MAX];
    uint8_t kb[8];
    MDB_val k = job_key(id, kb, key), v;
    rc = txn_get(t, t->c->jobs, "jobs", key, &k, &v, e);
    return rc ? rc : job_decode(t, &k, &v, out, e);
}

int catalog_job_next_id(catalog_txn_t *t, uint64_t *next, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    return rc ? rc : meta_u64(t, KEY_NEXT_JOB, 1, next, e);
}

int catalog_job_del(catalog_txn_t *t, uint64_t id, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 1, e);
    if (rc)
        return rc;
    char key[CAT_KEY_MAX];
    uint8_t kb[8];
    MDB_val k = job_key(id, kb, key);
    int mrc = mdb_del(t->txn, t->c->jobs, &k, NULL);
    if (mrc == 0)
        return 0;
    rc = mdb_fail(t->c, e, mrc, "delete", "jobs", key);
    return mrc == MDB_NOTFOUND ? rc : txn_kill(t, rc, e);
}

typedef struct {
    catalog_job_fn fn;
    void *arg;
    bq_job_t *job;
} job_each_ctx_t;

static int job_visit(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, void *ctx, int *fnrc,
                     bq_errbuf_t *e)
{
    job_each_ctx_t *x = ctx;
    int rc = job_decode(t, k, v, x->job, e);
    if (rc)
        return rc;
    *fnrc = x->fn(x->job, x->arg);
    return 0;
}

int catalog_job_each(catalog_txn_t *t, catalog_job_fn fn, void *arg, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    if (rc)
        return rc;
    job_each_ctx_t x = {fn, arg, malloc(sizeof(bq_job_t))}; /* a job is ~11 KiB */
    if (!x.job)
        return bq_fail(e, BQ_E_NOMEM, "out of memory listing the jobs of catalog %s",
                       t->c->dir);
    rc = cat_each(t, t->c->jobs, "jobs", NULL, job_visit, &x, e);
    free(x.job);
    return rc;
}

/* ---- workers and clusters: records kept by name --------------------------------------- */

/* Room for one decoded record of any kind kept by name. */
typedef union {
    bq_worker_t worker;
    bq_cluster_t cluster;
} named_rec_t;

/* The callback of catalog_worker_each or catalog_cluster_each. */
typedef union {
    catalog_worker_fn worker;
    catalog_cluster_fn cluster;
} named_fn_t;

/* One kind of record kept by name: its db (the offset of its handle in catalog_t), what
 * its keys and its db are called in messages, its codec, and how a record of it is handed
 * to an each callback. */
typedef struct {
    size_t dbi;
    const char *what;
    const char *db;
    int (*encode)(const void *rec, uint8_t **buf, size_t *len, bq_errbuf_t *e);
    int (*decode)(const uint8_t *buf, size_t len, void *rec, bq_errbuf_t *e);
    int (*call)(named_fn_t fn, const named_rec_t *rec, void *arg);
} named_kind_t;

static int worker_encode(const void *r, uint8_t **b, size_t *n, bq_errbuf_t *e)
{
    return proto_worker_encode(r, b, n, e);
}

static int worker_decode(const uint8_t *b, size_t n, void *r, bq_errbuf_t *e)
{
    return proto_worker_decode(b, n, r, e);
}

static int worker_call(named_fn_t fn, const named_rec_t *r, void *arg)
{
    return fn.worker(&r->worker, arg);
}

static int cluster_encode(const void *r, uint8_t **b, size_t *n, bq_errbuf_t *e)
{
    return proto_cluster_encode(r, b, n, e);
}

static int cluster_decode(const uint8_t *b, size_t n, void *r, bq_errbuf_t *e)
{
    return proto_cluster_decode(b, n, r, e);
}

static int cluster_call(named_fn_t fn, const named_rec_t *r, void *arg)
{
    return fn.cluster(&r->cluster, arg);
}

static const named_kind_t named_workers = {offsetof(catalog_t, workers), "worker", "workers",
                                           worker_encode, worker_decode, worker_call};
static const named_kind_t named_clusters = {offsetof(catalog_t, clusters), "cluster",
                                            "clusters", cluster_encode, cluster_decode,
                                            cluster_call};

static MDB_dbi named_dbi(const catalog_txn_t *t, const named_kind_t *kind)
{
    return *(const MDB_dbi *)((const char *)t->c + kind->dbi);
}

/* The key of name in kind's db, and how it is shown in messages. */
static int named_key(catalog_txn_t *t, int write, const named_kind_t *kind, const char *name,
                     MDB_val *k, char key[CAT_KEY_MAX], bq_errbuf_t *e)
{
    int rc = txn_usable(t, write, e);
    if (rc || (rc = name_key(name, kind->what, k, e)) != 0)
        return rc;
    name_show(key, CAT_KEY_MAX, kind->what, k);
    return 0;
}

static int named_put(catalog_txn_t *t, const named_kind_t *kind, const char *name,
                     const void *rec, bq_errbuf_t *e)
{
    MDB_val k;
    char key[CAT_KEY_MAX];
    int rc = named_key(t, 1, kind, name, &k, key, e);
    if (rc)
        return rc;
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t pe = {{0}};
    rc = kind->encode(rec, &buf, &len, &pe);
    return put_encoded(t, named_dbi(t, kind), kind->db, key, &k, 0, rc, buf, len, &pe, e);
}

static int named_decode(catalog_txn_t *t, const named_kind_t *kind, const MDB_val *k,
                        const MDB_val *v, void *out, bq_errbuf_t *e)
{
    bq_errbuf_t pe = {{0}};
    int rc = kind->decode(v->mv_data, v->mv_size, out, &pe);
    if (rc) {
        char key[CAT_KEY_MAX];
        name_show(key, sizeof key, kind->what, k);
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db %s, %s: %s", t->c->dir, kind->db, key,
                       pe.msg);
    }
    return 0;
}

static int named_get(catalog_txn_t *t, const named_kind_t *kind, const char *name, void *out,
                     bq_errbuf_t *e)
{
    MDB_val k, v;
    char key[CAT_KEY_MAX];
    int rc = named_key(t, 0, kind, name, &k, key, e);
    if (rc)
        return rc;
    rc = txn_get(t, named_dbi(t, kind), kind->db, key, &k, &v, e);
    return rc ? rc : named_decode(t, kind, &k, &v, out, e);
}

typedef struct {
    const named_kind_t *kind;
    named_fn_t fn;
    void *arg;
} named_each_ctx_t;

static int named_visit(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, void *ctx,
                       int *fnrc, bq_errbuf_t *e)
{
    named_each_ctx_t *x = ctx;
    named_rec_t rec;
    int rc = named_decode(t, x->kind, k, v, &rec, e);
    if (rc)
        return rc;
    *fnrc = x->kind->call(x->fn, &rec, x->arg);
    return 0;
}

static int named_each(catalog_txn_t *t, const named_kind_t *kind, named_fn_t fn, void *arg,
                      bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    if (rc)
        return rc;
    named_each_ctx_t x = {kind, fn, arg};
    return cat_each(t, named_dbi(t, kind), kind->db, NULL, named_visit, &x, e);
}

int catalog_worker_put(catalog_txn_t *t, const bq_worker_t *w, bq_errbuf_t *e)
{
    return named_put(t, &named_workers, w->name, w, e);
}

int catalog_worker_get(catalog_txn_t *t, const char *name, bq_worker_t *out, bq_errbuf_t *e)
{
    return named_get(t, &named_workers, name, out, e);
}

int catalog_worker_each(catalog_txn_t *t, catalog_worker_fn fn, void *arg, bq_errbuf_t *e)
{
    return named_each(t, &named_workers, (named_fn_t){.worker = fn}, arg, e);
}

int catalog_cluster_put(catalog_txn_t *t, const bq_cluster_t *cl, bq_errbuf_t *e)
{
    return named_put(t, &named_clusters, cl->name, cl, e);
}

int catalog_cluster_get(catalog_txn_t *t, const char *name, bq_cluster_t *out, bq_errbuf_t *e)
{
    return named_get(t, &named_clusters, name, out, e);
}

int catalog_cluster_del(catalog_txn_t *t, const char *name, bq_errbuf_t *e)
{
    MDB_val k;
    char key[CAT_KEY_MAX];
    int rc = named_key(t, 1, &named_clusters, name, &k, key, e);
    if (rc)
        return rc;
    int mrc = mdb_del(t->txn, t->c->clusters, &k, NULL);
    if (mrc == 0)
        return 0;
    rc = mdb_fail(t->c, e, mrc, "delete", "clusters", key);
    return mrc == MDB_NOTFOUND ? rc : txn_kill(t, rc, e);
}

int catalog_cluster_each(catalog_txn_t *t, catalog_cluster_fn fn, void *arg, bq_errbuf_t *e)
{
    return named_each(t, &named_clusters, (named_fn_t){.cluster = fn}, arg, e);
}

/* ---- backups -------------------------------------------------------------------------- */

/* The key "CLUSTER\0PART" into kb (cap bytes), after the checks every such key needs; what
 * ("a backup", "a WAL file") names it in messages. The caller checks part. */
static int cluster_pair_key(catalog_txn_t *t, int write, const char *cluster, const char *what,
                            const char *part, uint8_t *kb, size_t cap, MDB_val *k,
                            bq_errbuf_t *e)
{
    int rc = txn_usable(t, write, e);
    if (rc)
        return rc;
    size_t cn = cluster ? strnlen(cluster, BQ_NAME_MAX) : 0;
    if (cn == 0 || cn >= BQ_NAME_MAX)
        return bq_fail(e, BQ_E_INVAL, "invalid cluster name for %s in the catalog: %s", what,
                       cn == 0 ? "empty" : "too long");
    size_t pn = strlen(part);
    if (cn + 1 + pn > cap)
        return bq_fail(e, BQ_E_INVAL, "catalog key of %s of cluster %s is too long", what,
                       cluster);
    memcpy(kb, cluster, cn);
    kb[cn] = '\0';
    memcpy(kb + cn + 1, part, pn);
    k->mv_data = kb;
    k->mv_size = cn + 1 + pn;
    return 0;
}

/* The key of (cluster, id) into kb, and how it is shown in messages. */
static int backup_key(catalog_txn_t *t, int write, const char *cluster, const char *id,
                      uint8_t kb[CAT_BACKUP_KEY_MAX], MDB_val *k, char key[CAT_KEY_MAX],
                      bq_errbuf_t *e)
{
    if (txn_usable(t, write, e) == 0 && !bq_backup_id_valid(id))
        return bq_fail(e, BQ_E_INVAL, "invalid backup id \"%.*s\" of cluster %s for the catalog: "
                       "expected YYYYMMDDTHHMMSS", BQ_BACKUP_ID_MAX, id ? id : "",
                       cluster ? cluster : "");
    int rc = cluster_pair_key(t, write, cluster, "a backup", id ? id : "", kb, CAT_BACKUP_KEY_MAX,
                              k, e);
    if (rc == 0)
        snprintf(key, CAT_KEY_MAX, "backup %s of cluster \"%s\"", id, cluster);
    return rc;
}

/* Split a stored key into cluster and id; BQ_E_CATALOG when it is not one of ours. */
static int backup_key_parse(catalog_txn_t *t, const MDB_val *k, char cluster[BQ_NAME_MAX],
                            char id[BQ_BACKUP_ID_MAX], bq_errbuf_t *e)
{
    const char *p = k->mv_data;
    const char *nul = k->mv_size ? memchr(p, '\0', k->mv_size) : NULL;
    size_t cn = nul ? (size_t)(nul - p) : 0;
    size_t idn = nul ? k->mv_size - cn - 1 : 0;
    if (!nul || cn == 0 || cn >= BQ_NAME_MAX || idn == 0 || idn >= BQ_BACKUP_ID_MAX ||
        memchr(nul + 1, '\0', idn))
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db backups has a key of %zu bytes that is "
                       "not a cluster name, a NUL and a backup id", t->c->dir, k->mv_size);
    memcpy(cluster, p, cn);
    cluster[cn] = '\0';
    memcpy(id, nul + 1, idn);
    id[idn] = '\0';
    if (!bq_backup_id_valid(id))
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db backups has a key of cluster %s with "
                       "backup id \"%s\", which is not YYYYMMDDTHHMMSS", t->c->dir, cluster, id);
    return 0;
}

/* Decode a stored backup; cluster and id come from the key. */
static int backup_decode(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, bq_backup_t *out,
                         bq_errbuf_t *e)
{
    char cluster[BQ_NAME_MAX], id[BQ_BACKUP_ID_MAX];
    int rc = backup_key_parse(t, k, cluster, id, e);
    if (rc)
        return rc;
    bq_errbuf_t pe = {{0}};
    rc = proto_backup_decode(v->mv_data, v->mv_size, out, &pe);
    if (rc)
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db backups, backup %s of cluster %s: %s",
                       t->c->dir, id, cluster, pe.msg);
    memset(out->cluster, 0, sizeof out->cluster);
    memset(out->id, 0, sizeof out->id);
    snprintf(out->cluster, sizeof out->cluster, "%s", cluster);
    snprintf(out->id, sizeof out->id, "%s", id);
    return 0;
}

int catalog_backup_put(catalog_txn_t *t, const bq_backup_t *b, bq_errbuf_t *e)
{
    uint8_t kb[CAT_BACKUP_KEY_MAX];
    MDB_val k;
    char key[CAT_KEY_MAX];
    int rc = backup_key(t, 1, b->cluster, b->id, kb, &k, key, e);
    if (rc)
        return rc;
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t pe = {{0}};
    rc = proto_backup_encode(b, &buf, &len, &pe);
    return put_encoded(t, t->c->backups, "backups", key, &k, 0, rc, buf, len, &pe, e);
}

int catalog_backup_get(catalog_txn_t *t, const char *cluster, const char *id, bq_backup_t *out,
                       bq_errbuf_t *e)
{
    uint8_t kb[CAT_BACKUP_KEY_MAX];
    MDB_val k, v;
    char key[CAT_KEY_MAX];
    int rc = backup_key(t, 0, cluster, id, kb, &k, key, e);
    if (rc)
        return rc;
    rc = txn_get(t, t->c->backups, "backups", key, &k, &v, e);
    return rc ? rc : backup_decode(t, &k, &v, out, e);
}

int catalog_backup_del(catalog_txn_t *t, const char *cluster, const char *id, bq_errbuf_t *e)
{
    uint8_t kb[CAT_BACKUP_KEY_MAX];
    MDB_val k;
    char key[CAT_KEY_MAX];
    int rc = backup_key(t, 1, cluster, id, kb, &k, key, e);
    if (rc)
        return rc;
    int mrc = mdb_del(t->txn, t->c->backups, &k, NULL);
    if (mrc == 0)
        return 0;
    rc = mdb_fail(t->c, e, mrc, "delete", "backups", key);
    return mrc == MDB_NOTFOUND ? rc : txn_kill(t, rc, e);
}

typedef struct {
    catalog_backup_fn fn;
    void *arg;
    bq_backup_t *backup;
} backup_each_ctx_t;

static int backup_visit(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, void *ctx,
                        int *fnrc, bq_errbuf_t *e)
{
    backup_each_ctx_t *x = ctx;
    int rc = backup_decode(t, k, v, x->backup, e);
    if (rc)
        return rc;
    *fnrc = x->fn(x->backup, x->arg);
    return 0;
}

/* The key prefix of cluster's backups (name and NUL) into kb. */
static int backup_prefix(const char *cluster, uint8_t kb[CAT_BACKUP_KEY_MAX], MDB_val *k,
                         bq_errbuf_t *e)
{
    size_t cn = strnlen(cluster, BQ_NAME_MAX);
    if (cn == 0 || cn >= BQ_NAME_MAX)
        return bq_fail(e, BQ_E_INVAL, "invalid cluster name for the backups in the catalog: %s",
                       cn == 0 ? "empty" : "too long");
    memcpy(kb, cluster, cn);
    kb[cn] = '\0';
    k->mv_data = kb;
    k->mv_size = cn + 1;
    return 0;
}

int catalog_backup_each(catalog_txn_t *t, const char *cluster, catalog_backup_fn fn, void *arg,
                        bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    if (rc)
        return rc;
    uint8_t kb[CAT_BACKUP_KEY_MAX];
    MDB_val prefix;
    if (cluster && (rc = backup_prefix(cluster, kb, &prefix, e)) != 0)
        return rc;
    backup_each_ctx_t x = {fn, arg, malloc(sizeof(bq_backup_t))}; /* ~2 KiB */
    if (!x.backup)
        return bq_fail(e, BQ_E_NOMEM, "out of memory listing the backups of catalog %s",
                       t->c->dir);
    rc = cat_each(t, t->c->backups, "backups", cluster ? &prefix : NULL, backup_visit, &x, e);
    free(x.backup);
    return rc;
}

/* ---- WAL index ------------------------------------------------------------------------ */

/* The key of (cluster, name) into kb, and how it is shown in messages. */
static int wal_key(catalog_txn_t *t, int write, const char *cluster, const char *name,
                   uint8_t kb[CAT_WAL_KEY_MAX], MDB_val *k, char key[CAT_KEY_MAX], bq_errbuf_t *e)
{
    if (txn_usable(t, write, e) == 0 && !bq_wal_name_valid(name))
        return bq_fail(e, BQ_E_INVAL, "invalid WAL file name \"%.*s\" of cluster %s for the "
                       "catalog", BQ_WAL_FILE_MAX, name ? name : "", cluster ? cluster : "");
    int rc = cluster_pair_key(t, write, cluster, "a WAL file", name ? name : "", kb,
                              CAT_WAL_KEY_MAX, k, e);
    if (rc == 0)
        snprintf(key, CAT_KEY_MAX, "WAL file %s of cluster \"%s\"", name, cluster);
    return rc;
}

/* Decode a stored WAL file; cluster and name come from the key. */
static int wal_decode(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, bq_wal_file_t *out,
                      bq_errbuf_t *e)
{
    const char *p = k->mv_data;
    const char *nul = k->mv_size ? memchr(p, '\0', k->mv_size) : NULL;
    size_t cn = nul ? (size_t)(nul - p) : 0;
    size_t nn = nul ? k->mv_size - cn - 1 : 0;
    char cluster[BQ_NAME_MAX], name[BQ_WAL_FILE_MAX];
    if (!nul || cn == 0 || cn >= BQ_NAME_MAX || nn == 0 || nn >= BQ_WAL_FILE_MAX ||
        memchr(nul + 1, '\0', nn))
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db wal has a key of %zu bytes that is not a "
                       "cluster name, a NUL and a WAL file name", t->c->dir, k->mv_size);
    memcpy(cluster, p, cn);
    cluster[cn] = '\0';
    memcpy(name, nul + 1, nn);
    name[nn] = '\0';
    if (!bq_wal_name_valid(name))
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db wal has a key of cluster %s with \"%s\", "
                       "which is not a WAL file name", t->c->dir, cluster, name);
    bq_errbuf_t pe = {{0}};
    int rc = proto_wal_file_decode(v->mv_data, v->mv_size, out, &pe);
    if (rc)
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db wal, WAL file %s of cluster %s: %s",
                       t->c->dir, name, cluster, pe.msg);
    memset(out->cluster, 0, sizeof out->cluster);
    memset(out->name, 0, sizeof out->name);
    memcpy(out->cluster, cluster, cn + 1);
    memcpy(out->name, name, nn + 1);
    return 0;
}

int catalog_wal_get(catalog_txn_t *t, const char *cluster, const char *name, bq_wal_file_t *out,
                    bq_errbuf_t *e)
{
    uint8_t kb[CAT_WAL_KEY_MAX];
    MDB_val k, v;
    char key[CAT_KEY_MAX];
    int rc = wal_key(t, 0, cluster, name, kb, &k, key, e);
    if (rc)
        return rc;
    rc = txn_get(t, t->c->wal, "wal", key, &k, &v, e);
    return rc ? rc : wal_decode(t, &k, &v, out, e);
}

/* Nonzero when name is one of the names joined by ',' in list. */
static int list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0)
            return 1;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

int catalog_wal_put(catalog_txn_t *t, const bq_wal_file_t *w, bq_errbuf_t *e)
{
    uint8_t kb[CAT_WAL_KEY_MAX];
    MDB_val k, v;
    char key[CAT_KEY_MAX];
    int rc = wal_key(t, 1, w->cluster, w->name, kb, &k, key, e);
    if (rc)
        return rc;
    if (strnlen(w->stores, sizeof w->stores) == sizeof w->stores)
        return bq_fail(e, BQ_E_INVAL, "could not store %s in catalog %s: its stores are not "
                       "NUL-terminated", key, t->c->dir);
    bq_wal_file_t rec = *w;
    int mrc = mdb_get(t->txn, t->c->wal, &k, &v);
    if (mrc == 0) {
        /* recorded already: keep its size and time, add the stores it lacks */
        bq_wal_file_t old;
        if ((rc = wal_decode(t, &k, &v, &old, e)) != 0)
            return rc;
        if (old.size != w->size)
            bq_warn(CAT_LOG, 0, "catalog %s: %s is recorded with %" PRIu64 " bytes, now reported "
                    "with %" PRIu64 " by %s: the record keeps %" PRIu64, t->c->dir, key, old.size,
                    w->size, w->stores[0] ? w->stores : "(no store)", old.size);
        rec = old;
        size_t used = strlen(rec.stores);
        char add[BQ_STORES_MAX];
        memcpy(add, w->stores, sizeof add);
        char *save = NULL;
        for (char *s = strtok_r(add, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            if (list_has(rec.stores, s))
                continue;
            size_t n = strlen(s), need = used + (used ? 1 : 0) + n;
            if (need >= sizeof rec.stores)
                return bq_fail(e, BQ_E_INVAL, "could not store %s in catalog %s: adding store "
                               "%s would make its stores longer than %zu bytes", key, t->c->dir, s,
                               sizeof rec.stores - 1);
            if (used)
                rec.stores[used++] = ',';
            memcpy(rec.stores + used, s, n + 1);
            used += n;
        }
        if (strcmp(rec.stores, old.stores) == 0)
            return 0; /* nothing new: no write */
    } else if (mrc != MDB_NOTFOUND) {
        return mdb_fail(t->c, e, mrc, "get", "wal", key);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t pe = {{0}};
    rc = proto_wal_file_encode(&rec, &buf, &len, &pe);
    return put_encoded(t, t->c->wal, "wal", key, &k, 0, rc, buf, len, &pe, e);
}

int catalog_wal_drop_store(catalog_txn_t *t, const char *cluster, const char *name,
                           const char *store, int *removed, bq_errbuf_t *e)
{
    uint8_t kb[CAT_WAL_KEY_MAX];
    MDB_val k, v;
    char key[CAT_KEY_MAX];
    *removed = 0;
    int rc = wal_key(t, 1, cluster, name, kb, &k, key, e);
    if (rc)
        return rc;
    bq_wal_file_t rec;
    if ((rc = txn_get(t, t->c->wal, "wal", key, &k, &v, e)) != 0 ||
        (rc = wal_decode(t, &k, &v, &rec, e)) != 0)
        return rc;
    /* the stores without `store` */
    char left[BQ_STORES_MAX] = "";
    size_t used = 0;
    char all[BQ_STORES_MAX];
    memcpy(all, rec.stores, sizeof all);
    char *save = NULL;
    for (char *s = strtok_r(all, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        if (strcmp(s, store) == 0)
            continue;
        size_t n = strlen(s);
        if (used)
            left[used++] = ',';
        memcpy(left + used, s, n + 1);
        used += n;
    }
    if (strcmp(left, rec.stores) == 0)
        return 0;
    if (!left[0]) {
        int mrc = mdb_del(t->txn, t->c->wal, &k, NULL);
        if (mrc)
            return txn_kill(t, mdb_fail(t->c, e, mrc, "delete", "wal", key), e);
        *removed = 1;
        return 0;
    }
    memcpy(rec.stores, left, sizeof rec.stores);
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t pe = {{0}};
    rc = proto_wal_file_encode(&rec, &buf, &len, &pe);
    return put_encoded(t, t->c->wal, "wal", key, &k, 0, rc, buf, len, &pe, e);
}

/* meta key of a cluster's scheduler slot: "sched:" + name */
static void sched_key(const char *kind, const char *cluster, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%s", kind, cluster);
}

int catalog_sched_get(catalog_txn_t *t, const char *kind, const char *cluster,
                      int64_t *last_slot_ms, bq_errbuf_t *e)
{
    char key[16 + BQ_NAME_MAX];
    uint64_t v = 0;
    if (!bq_name_valid(cluster))
        return bq_fail(e, BQ_E_INVAL, "invalid cluster name for the scheduler's record");
    sched_key(kind, cluster, key, sizeof key);
    int rc = txn_usable(t, 0, e);
    if (rc == 0)
        rc = meta_u64(t, key, 0, &v, e);
    *last_slot_ms = rc ? 0 : (int64_t)v;
    return rc;
}

int catalog_sched_put(catalog_txn_t *t, const char *kind, const char *cluster,
                      int64_t last_slot_ms, bq_errbuf_t *e)
{
    char key[16 + BQ_NAME_MAX];
    if (!bq_name_valid(cluster))
        return bq_fail(e, BQ_E_INVAL, "invalid cluster name for the scheduler's record");
    sched_key(kind, cluster, key, sizeof key);
    int rc = txn_usable(t, 1, e);
    return rc ? rc : meta_put_u64(t, key, (uint64_t)last_slot_ms, e);
}

/* ---- restore tests (issue 7) ---------------------------------------------------------- */

/* The key of (cluster, job id) into kb: name, NUL, the id big-endian (creation order). */
static int rtest_key(catalog_txn_t *t, int write, const char *cluster, uint64_t job_id,
                     uint8_t kb[BQ_NAME_MAX + 9], MDB_val *k, char key[CAT_KEY_MAX], bq_errbuf_t *e)
{
    uint8_t id[8];
    be64_put(id, job_id);
    int rc = txn_usable(t, write, e);
    size_t cn = cluster ? strnlen(cluster, BQ_NAME_MAX) : 0;
    if (rc == 0 && (cn == 0 || cn >= BQ_NAME_MAX))
        rc = bq_fail(e, BQ_E_INVAL, "invalid cluster name for a restore test in the catalog");
    if (rc)
        return rc;
    memcpy(kb, cluster, cn);
    kb[cn] = '\0';
    memcpy(kb + cn + 1, id, 8);
    k->mv_data = kb;
    k->mv_size = cn + 9;
    snprintf(key, CAT_KEY_MAX, "restore test %" PRIu64 " of cluster \"%s\"", job_id, cluster);
    return 0;
}

int catalog_rtest_put(catalog_txn_t *t, const bq_restore_test_t *r, bq_errbuf_t *e)
{
    uint8_t kb[BQ_NAME_MAX + 9];
    MDB_val k;
    char key[CAT_KEY_MAX];
    int rc = rtest_key(t, 1, r->cluster, r->job_id, kb, &k, key, e);
    if (rc)
        return rc;
    uint8_t *buf = NULL;
    size_t len = 0;
    bq_errbuf_t pe = {{0}};
    rc = proto_rtest_encode(r, &buf, &len, &pe);
    return put_encoded(t, t->c->rtests, "restore_tests", key, &k, 0, rc, buf, len, &pe, e);
}

typedef struct {
    catalog_rtest_fn fn;
    void *arg;
    bq_restore_test_t *rec;
} rtest_each_ctx_t;

static int rtest_visit(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, void *ctx, int *fnrc,
                       bq_errbuf_t *e)
{
    rtest_each_ctx_t *x = ctx;
    const char *p = k->mv_data;
    const char *nul = k->mv_size > 9 ? memchr(p, '\0', k->mv_size) : NULL;
    if (!nul || (size_t)(nul - p) + 9 != k->mv_size)
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db restore_tests has a key of %zu bytes that "
                       "is not a cluster name, a NUL and a job id", t->c->dir, k->mv_size);
    bq_errbuf_t pe = {{0}};
    if (proto_rtest_decode(v->mv_data, v->mv_size, x->rec, &pe) != 0)
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db restore_tests, cluster %s: %s", t->c->dir,
                       p, pe.msg);
    snprintf(x->rec->cluster, sizeof x->rec->cluster, "%s", p);
    x->rec->job_id = be64_get((const uint8_t *)nul + 1);
    *fnrc = x->fn(x->rec, x->arg);
    return 0;
}

int catalog_rtest_each(catalog_txn_t *t, const char *cluster, catalog_rtest_fn fn, void *arg,
                       bq_errbuf_t *e)
{
    uint8_t kb[CAT_BACKUP_KEY_MAX];
    MDB_val prefix;
    int rc = backup_prefix(cluster, kb, &prefix, e);
    if (rc)
        return rc;
    rtest_each_ctx_t x = {fn, arg, malloc(sizeof(bq_restore_test_t))};
    if (!x.rec)
        return bq_fail(e, BQ_E_NOMEM, "out of memory listing the restore tests of catalog %s",
                       t->c->dir);
    rc = cat_each(t, t->c->rtests, "restore_tests", &prefix, rtest_visit, &x, e);
    free(x.rec);
    return rc;
}

typedef struct {
    catalog_wal_fn fn;
    void *arg;
    bq_wal_file_t rec;
} wal_each_ctx_t;

static int wal_visit(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, void *ctx, int *fnrc,
                     bq_errbuf_t *e)
{
    wal_each_ctx_t *x = ctx;
    int rc = wal_decode(t, k, v, &x->rec, e);
    if (rc)
        return rc;
    *fnrc = x->fn(&x->rec, x->arg);
    return 0;
}

int catalog_wal_each(catalog_txn_t *t, const char *cluster, catalog_wal_fn fn, void *arg,
                     bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    if (rc)
        return rc;
    uint8_t kb[CAT_WAL_KEY_MAX];
    MDB_val prefix;
    if (cluster) {
        size_t cn = strnlen(cluster, BQ_NAME_MAX);
        if (cn == 0 || cn >= BQ_NAME_MAX)
            return bq_fail(e, BQ_E_INVAL, "invalid cluster name for the WAL files in the "
                           "catalog: %s", cn == 0 ? "empty" : "too long");
        memcpy(kb, cluster, cn);
        kb[cn] = '\0';
        prefix.mv_data = kb;
        prefix.mv_size = cn + 1;
    }
    wal_each_ctx_t x = {.fn = fn, .arg = arg};
    return cat_each(t, t->c->wal, "wal", cluster ? &prefix : NULL, wal_visit, &x, e);
}

/* Seconds since the epoch of a valid backup id (UTC). */
static int64_t backup_id_time(const char *id)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int v[6];
    static const int at[6] = {0, 4, 6, 9, 11, 13}, len[6] = {4, 2, 2, 2, 2, 2};
    for (int i = 0; i < 6; i++) {
        v[i] = 0;
        for (int k = 0; k < len[i]; k++)
            v[i] = v[i] * 10 + (id[at[i] + k] - '0');
    }
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    return (int64_t)timegm(&tm);
}

static void backup_id_format(int64_t secs, char id[BQ_BACKUP_ID_MAX])
{
    time_t tt = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(id, BQ_BACKUP_ID_MAX, "%Y%m%dT%H%M%S", &tm) == 0)
        id[0] = '\0';
}

/* Whether another cluster than `cluster` has a backup `id`: one seek per cluster (the keys
 * are "CLUSTER\0ID": after a cluster's keys, the next cluster's). */
static int id_taken_elsewhere(catalog_txn_t *t, const char *cluster, const char *id, int *taken,
                              bq_errbuf_t *e)
{
    *taken = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->c->backups, &cur);
    if (rc)
        return mdb_fail(t->c, e, rc, "open a cursor on", "backups", NULL);
    MDB_val k, v;
    uint8_t kb[CAT_BACKUP_KEY_MAX + 1];
    size_t idn = strlen(id);
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        const uint8_t *nul = memchr(k.mv_data, 0, k.mv_size);
        size_t cn = nul ? (size_t)(nul - (const uint8_t *)k.mv_data) : k.mv_size;
        if (cn == 0 || cn >= BQ_NAME_MAX || cn + 2 + idn > sizeof kb)
            break; /* not a backup key: catalog_backup_each reports damage */
        memcpy(kb, k.mv_data, cn);
        kb[cn] = '\0';
        if (strcmp((const char *)kb, cluster) != 0) {
            memcpy(kb + cn + 1, id, idn);
            MDB_val q = {cn + 1 + idn, kb}, qv;
            int g = mdb_get(t->txn, t->c->backups, &q, &qv);
            if (g == 0) {
                *taken = 1;
                break;
            }
            if (g != MDB_NOTFOUND) {
                rc = g;
                break;
            }
        }
        kb[cn + 1] = 0xff; /* past every key of this cluster */
        k = (MDB_val){cn + 2, kb};
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return mdb_fail(t->c, e, rc, "look for a backup id among the clusters in", "backups", NULL);
    return 0;
}

int catalog_backup_id_new(catalog_txn_t *t, const char *cluster, int64_t now_ms,
                          char id[BQ_BACKUP_ID_MAX], bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    if (rc)
        return rc;
    uint8_t kb[CAT_BACKUP_KEY_MAX + 1];
    MDB_val prefix;
    if ((rc = backup_prefix(cluster, kb, &prefix, e)) != 0)
        return rc;
    backup_id_format(now_ms / 1000, id);

    /* The cluster's last id: the key before the first one past "cluster\0\xff". */
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(t->txn, t->c->backups, &cur)) != 0)
        return mdb_fail(t->c, e, rc, "open a cursor on", "backups", NULL);
    kb[prefix.mv_size] = 0xff;
    MDB_val k = {prefix.mv_size + 1, kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    char last[BQ_BACKUP_ID_MAX] = "";
    if (rc == 0 && k.mv_size > prefix.mv_size &&
        memcmp(k.mv_data, prefix.mv_data, prefix.mv_size) == 0) {
        char kc[BQ_NAME_MAX];
        rc = backup_key_parse(t, &k, kc, last, e);
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = 0;
    } else {
        rc = mdb_fail(t->c, e, rc, "read the last backup of a cluster in", "backups", NULL);
    }
    mdb_cursor_close(cur);
    if (rc)
        return rc;
    if (last[0] && (!bq_backup_id_valid(id) || strcmp(last, id) >= 0))
        backup_id_format(backup_id_time(last) + 1, id);
    /* Unique across clusters too: a worker's store names a backup by its id alone, so two
     * clusters backed up by one worker in the same second would collide there. */
    for (int tries = 0; bq_backup_id_valid(id); tries++) {
        int taken = 0;
        if ((rc = id_taken_elsewhere(t, cluster, id, &taken, e)) != 0)
            return rc;
        if (!taken)
            break;
        if (tries == 1000)
            return bq_fail(e, BQ_E_CATALOG, "catalog %s: no free backup id for cluster %s "
                           "within 1000 s of %s", t->c->dir, cluster, id);
        backup_id_format(backup_id_time(id) + 1, id);
    }
    if (!bq_backup_id_valid(id))
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: could not make a backup id for cluster %s "
                       "(clock at %lld ms, last id \"%s\")", t->c->dir, cluster,
                       (long long)now_ms, last);
    return 0;
}

/* ---- sites ---------------------------------------------------------------------------- */

int catalog_site_put(catalog_txn_t *t, const char *name, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 1, e);
    MDB_val k;
    if (rc || (rc = name_key(name, "site", &k, e)) != 0)
        return rc;
    char key[CAT_KEY_MAX];
    name_show(key, sizeof key, "site", &k);
    MDB_val v = k;
    return txn_put(t, t->c->sites, "sites", key, &k, &v, 0, e);
}

typedef struct {
    catalog_site_fn fn;
    void *arg;
} site_each_ctx_t;

static int site_visit(catalog_txn_t *t, const MDB_val *k, const MDB_val *v, void *ctx, int *fnrc,
                      bq_errbuf_t *e)
{
    site_each_ctx_t *x = ctx;
    char name[BQ_NAME_MAX];
    if (k->mv_size == 0 || k->mv_size >= sizeof name || memchr(k->mv_data, '\0', k->mv_size))
        return bq_fail(e, BQ_E_CATALOG, "catalog %s: db sites has a key of %zu bytes that is not "
                       "a site name", t->c->dir, k->mv_size);
    memcpy(name, k->mv_data, k->mv_size);
    name[k->mv_size] = '\0';
    *fnrc = x->fn(name, x->arg);
    return 0;
}

int catalog_site_each(catalog_txn_t *t, catalog_site_fn fn, void *arg, bq_errbuf_t *e)
{
    int rc = txn_usable(t, 0, e);
    if (rc)
        return rc;
    site_each_ctx_t x = {fn, arg};
    return cat_each(t, t->c->sites, "sites", NULL, site_visit, &x, e);
}

/* ---- stats ---------------------------------------------------------------------------- */

int catalog_reader_check(catalog_t *c, bq_errbuf_t *e)
{
    int dead = 0;
    int rc = mdb_reader_check(c->env, &dead);
    if (rc) {
        mdb_fail(c, e, rc, "check the readers of", NULL, NULL);
        return BQ_E_CATALOG;
    }
    if (dead > 0)
        bq_info(CAT_LOG, 0, "catalog %s: cleared %d stale reader%s", c->dir, dead,
                dead == 1 ? "" : "s");
    return 0;
}

int catalog_stats(catalog_t *c, catalog_stats_t *out, bq_errbuf_t *e)
{
    memset(out, 0, sizeof *out);
    catalog_txn_t *t;
    int rc = catalog_txn_begin(c, 0, &t, e);
    if (rc)
        return rc;
    MDB_envinfo info;
    MDB_stat st;
    if ((rc = mdb_env_info(c->env, &info)) != 0 || (rc = mdb_env_stat(c->env, &st)) != 0) {
        catalog_txn_abort(&t);
        return mdb_fail(c, e, rc, "read the statistics of", NULL, NULL);
    }
    out->map_size = (uint64_t)info.me_mapsize;
    out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    struct {
        MDB_dbi dbi;
        const char *name;
        uint64_t *n;
    } dbs[] = {
        {c->jobs, "jobs", &out->njobs},
        {c->workers, "workers", &out->nworkers},
        {c->clusters, "clusters", &out->nclusters},
        {c->sites, "sites", &out->nsites},
        {c->backups, "backups", &out->nbackups},
        {c->wal, "wal", &out->nwal},
    };
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        if ((rc = mdb_stat(t->txn, dbs[i].dbi, &st)) != 0) {
            catalog_txn_abort(&t);
            return mdb_fail(c, e, rc, "read the statistics of", dbs[i].name, NULL);
        }
        *dbs[i].n = (uint64_t)st.ms_entries;
    }
    catalog_txn_abort(&t);
    return 0;
}
