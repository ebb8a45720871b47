/* Importing a backup from another store (store.h, "importing"; docs/store.md, "Copies between
 * stores"): sealed bodies, as a peer stores them, go into this store's packs through the
 * backup writer's appender (store_int.h), under a writer session so that a GC beside the
 * import keeps what it relies on; the manifest comes last, checked against the index. */
#include "store.h"

#include "fsutil.h"
#include "log.h"
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMPORT_LOG "store"
/* Entries are indexed in small batches, so that an interrupted import loses little (what
 * is appended but not indexed is fetched again by the next attempt). */
#define IMPORT_FLUSH_ENTRIES 256
#define IMPORT_FLUSH_BYTES ((uint64_t)16 << 20)
#define IMPORT_NOTE_BATCH 256 /* ids per reference section of store_import_have */
#define IMPORT_COPY_BUF 65536

struct store_import {
    store_t *s;
    store_session_t *ss;
    pthread_mutex_t mu; /* fetch threads: everything below */
    store_appender_t app;
    store_import_stats_t st;
    int failed;         /* an append or a flush failed: only commit (refused) or end remain */
    bq_errbuf_t why;    /* that failure */
    uint32_t *keys;     /* the data keys of the chunks appended (a few: one per peer writer) */
    size_t nkeys, keys_cap;
    uint8_t notes[2 * STORE_MANIFEST_CHUNKS_PER_RECORD][STORE_CHUNK_ID_BYTES];
};

int store_import_begin(store_t *s, store_import_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    store_import_t *imp = calloc(1, sizeof *imp);
    if (!imp)
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting an import into store %s",
                       store_dir(s));
    int rc = store_session_new(store_dir(s), &imp->ss, e);
    if (rc != 0) {
        free(imp);
        return rc;
    }
    imp->s = s;
    pthread_mutex_init(&imp->mu, NULL);
    imp->app.s = s;
    imp->app.ss = imp->ss;
    snprintf(imp->app.what, sizeof imp->app.what, "chunks imported into store");
    imp->app.flush_entries = IMPORT_FLUSH_ENTRIES;
    imp->app.flush_bytes = IMPORT_FLUSH_BYTES;
    *out = imp;
    return 0;
}

/* The importer failed earlier: BQ_E_STATE with the reason. Called with mu held. */
static int usable(const store_import_t *imp, bq_errbuf_t *e)
{
    if (imp->failed)
        return bq_fail(e, BQ_E_STATE, "the import into store %s failed earlier (%s); it can "
                       "only be ended", store_dir(imp->s), imp->why.msg);
    return 0;
}

/* Remember that an append or flush failed (the pack's state is unknown). */
static int fail_import(store_import_t *imp, int rc, bq_errbuf_t *e)
{
    if (rc != 0 && !imp->failed) {
        imp->failed = 1;
        imp->why = *e;
    }
    return rc;
}

int store_import_have(store_import_t *imp, const uint8_t *ids, size_t n, uint8_t *have,
                      bq_errbuf_t *e)
{
    pthread_mutex_lock(&imp->mu);
    int rc = usable(imp, e);
    store_index_t *idx = store_index_handle(imp->s);
    for (size_t done = 0; rc == 0 && done < n;) {
        size_t k = n - done < IMPORT_NOTE_BATCH ? n - done : IMPORT_NOTE_BATCH, nnotes = 0;
        /* Lookups and notes in one reference section, as the backup writer's: a chunk found
         * is in a note a GC reads, or was looked up after that GC deleted what it deletes. */
        if ((rc = store_session_enter(imp->ss, e)) != 0)
            break;
        for (size_t i = done; rc == 0 && i < done + k; i++) {
            const uint8_t *id = ids + i * STORE_CHUNK_ID_BYTES;
            store_index_loc_t loc;
            have[i] = 0;
            if (store_appender_find(&imp->app, id)) {
                have[i] = 1; /* noted when it was imported */
                continue;
            }
            rc = store_index_get(idx, id, &loc, e);
            if (rc == 0) {
                have[i] = 1;
                memcpy(imp->notes[nnotes++], id, STORE_CHUNK_ID_BYTES);
            } else if (rc == BQ_E_NOTFOUND) {
                rc = 0;
            }
        }
        if (rc == 0)
            rc = store_session_note_chunks(imp->ss,
                                           (const uint8_t(*)[STORE_CHUNK_ID_BYTES])imp->notes,
                                           nnotes, e);
        store_session_leave(imp->ss);
        done += k;
    }
    pthread_mutex_unlock(&imp->mu);
    return rc;
}

static int key_note(store_import_t *imp, uint32_t key_id, bq_errbuf_t *e)
{
    for (size_t i = 0; i < imp->nkeys; i++)
        if (imp->keys[i] == key_id)
            return 0;
    if (imp->nkeys == imp->keys_cap) {
        size_t cap = imp->keys_cap ? imp->keys_cap * 2 : 8;
        uint32_t *k = realloc(imp->keys, cap * sizeof *k);
        if (!k)
            return bq_fail(e, BQ_E_NOMEM, "out of memory importing into store %s",
                           store_dir(imp->s));
        imp->keys = k;
        imp->keys_cap = cap;
    }
    imp->keys[imp->nkeys++] = key_id;
    return 0;
}

/* Whether chunk id is present (pending here, or indexed), noting it, and for a delta (head)
 * that its base is no delta here: in one reference section. *present: 1 to skip it. */
static int chunk_decide(store_import_t *imp, const uint8_t id[STORE_CHUNK_ID_BYTES],
                        const store_chunk_head_t *head, int *present, bq_errbuf_t *e)
{
    store_index_t *idx = store_index_handle(imp->s);
    store_index_loc_t loc;
    *present = store_appender_find(&imp->app, id) != NULL;
    if (*present)
        return 0;
    int rc = store_session_enter(imp->ss, e);
    if (rc == 0) {
        rc = store_index_get(idx, id, &loc, e);
        *present = rc == 0;
        if (rc == BQ_E_NOTFOUND)
            rc = 0;
    }
    if (rc == 0 && !*present && head->delta) {
        /* A base is never itself a delta (docs/store.md, "Chunks"): this store may hold the
         * peer's base as a delta of its own, and then this body cannot be used here. */
        const store_index_entry_t *pend = store_appender_find(&imp->app, head->base);
        int base_delta = pend && (pend->loc.flags & STORE_INDEX_F_DELTA);
        if (!pend && store_index_get(idx, head->base, &loc, NULL) == 0)
            base_delta = (loc.flags & STORE_INDEX_F_DELTA) != 0;
        if (base_delta) {
            char hex[STORE_CHUNK_ID_HEX], bhex[STORE_CHUNK_ID_HEX];
            rc = bq_fail(e, BQ_E_STATE, "could not import chunk %s into store %s: it is a delta "
                         "against chunk %s, which that store holds as a delta itself",
                         store_id_hex(id, hex), store_dir(imp->s), store_id_hex(head->base, bhex));
        }
    }
    if (rc == 0) {
        /* It, and the base of a new delta (its entry is not indexed yet, so a GC that walks
         * the index for the bases of live deltas does not see it). */
        memcpy(imp->notes[0], id, STORE_CHUNK_ID_BYTES);
        memcpy(imp->notes[1], head->base, STORE_CHUNK_ID_BYTES);
        rc = store_session_note_chunks(imp->ss,
                                       (const uint8_t(*)[STORE_CHUNK_ID_BYTES])imp->notes,
                                       !*present && head->delta ? 2 : 1, e);
    }
    store_session_leave(imp->ss);
    return rc;
}

int store_import_chunk(store_import_t *imp, const uint8_t id[STORE_CHUNK_ID_BYTES],
                       const void *body, size_t len, bq_errbuf_t *e)
{
    store_chunk_head_t head;
    int rc = store_chunk_head(id, body, len, &head, "from another store", e);
    if (rc != 0)
        return rc;
    if (len > STORE_PACK_BODY_MAX) { /* (the head bounds raw_len; a body holds it, sealed) */
        char hex[STORE_CHUNK_ID_HEX];
        return bq_fail(e, BQ_E_INVAL, "could not import chunk %s: a body of %zu bytes is above "
                       "the %u-byte limit", store_id_hex(id, hex), len, STORE_PACK_BODY_MAX);
    }
    pthread_mutex_lock(&imp->mu);
    int present = 0;
    rc = usable(imp, e);
    if (rc == 0)
        rc = chunk_decide(imp, id, &head, &present, e);
    if (rc == 0 && !present)
        rc = key_note(imp, head.key_id, e);
    if (rc == 0 && !present) {
        uint32_t rec_len = 0;
        uint64_t flushes = imp->app.flushes;
        rc = fail_import(imp, store_appender_append(&imp->app, id, head.raw_len,
                                                    head.delta ? head.base : NULL, body, len,
                                                    &rec_len, e),
                         e);
        if (rc == 0) {
            imp->st.chunks++;
            imp->st.bytes += rec_len;
        }
        imp->st.flushes += imp->app.flushes - flushes;
    }
    pthread_mutex_unlock(&imp->mu);
    return rc;
}

/* Sync and index what is pending (close the pack when close_it). Called with mu held, or
 * when no other thread uses imp. */
static int import_flush(store_import_t *imp, int close_it, bq_errbuf_t *e)
{
    int rc = usable(imp, e);
    if (rc != 0)
        return rc;
    uint64_t flushes = imp->app.flushes;
    rc = fail_import(imp, store_appender_flush(&imp->app, close_it, e), e);
    imp->st.flushes += imp->app.flushes - flushes;
    return rc;
}

int store_import_flush(store_import_t *imp, bq_errbuf_t *e)
{
    pthread_mutex_lock(&imp->mu);
    int rc = import_flush(imp, 0, e);
    pthread_mutex_unlock(&imp->mu);
    return rc;
}

static void import_free(store_import_t **imp_p, store_import_stats_t *st)
{
    store_import_t *imp = *imp_p;
    if (st)
        *st = imp->st;
    store_appender_free(&imp->app);
    store_session_end(&imp->ss); /* (leaves a reference section still entered) */
    pthread_mutex_destroy(&imp->mu);
    free(imp->keys);
    free(imp);
    *imp_p = NULL;
}

void store_import_end(store_import_t **imp_p, store_import_stats_t *st)
{
    if (!imp_p || !*imp_p)
        return;
    store_import_t *imp = *imp_p;
    bq_errbuf_t why = {{0}};
    /* What was appended goes into the index, so that an import resumed later finds it and
     * does not fetch it again. */
    if (!imp->failed && import_flush(imp, 1, &why) != 0)
        bq_warn(IMPORT_LOG, 0, "store %s: the chunks of an ended import were not all indexed "
                "(they will be fetched again): %s", store_dir(imp->s), why.msg);
    import_free(imp_p, st);
}

/* ---- data keys ---- */

int store_import_datakey(store_t *s, uint32_t key_id, const uint8_t *wrapped, size_t len,
                         bq_errbuf_t *e)
{
    const char *dir = store_dir(s);
    if (len != STORE_WRAPPED_BYTES || key_id == 0)
        return bq_fail(e, BQ_E_INVAL, "could not import data key %08" PRIx32 " into store %s: "
                       "%s", key_id, dir, key_id == 0 ? "0 is not a data key id" :
                       "a data key file holds 72 bytes");
    char label[STORE_LABEL_MAX], path[PATH_MAX];
    store_datakey_label(key_id, label);
    store_datakey_t dk = {.id = key_id}, have = {0};
    bq_errbuf_t why = {{0}};
    if (store_key_unwrap(store_master_of(s), label, wrapped, dk.key, "it", &why) != 0)
        return bq_fail(e, BQ_E_KEY, "could not import data key %08" PRIx32 " into store %s: "
                       "the key in %s does not open it (wrapped under another master key?)",
                       key_id, dir, store_master_of(s)->path);
    char keys[PATH_MAX];
    int rc = 0;
    if (snprintf(keys, sizeof keys, "%s/keys", dir) >= (int)sizeof keys ||
        snprintf(path, sizeof path, "%s/%08" PRIx32 ".datakey", keys, key_id) >= (int)sizeof path)
        rc = bq_fail(e, BQ_E_INVAL, "store path too long: %s", dir);
    /* Absent: written (exclusively). Present, or put by another import meanwhile: compared. */
    int present = rc == 0 && access(path, F_OK) == 0;
    if (rc == 0 && !present && (rc = bq_mkdir_p(keys, 0700, e)) == 0) {
        rc = bq_file_write_durable(path, wrapped, len, 0600, BQ_WRITE_EXCLUSIVE, e);
        present = rc == BQ_E_EXISTS;
        if (present)
            rc = 0;
    }
    if (rc == 0 && present) {
        char *old = NULL;
        size_t old_len = 0;
        rc = bq_file_read_small(path, STORE_WRAPPED_BYTES, &old, &old_len, &why);
        int same = rc == 0 && old_len == len && memcmp(old, wrapped, len) == 0;
        free(old);
        /* Other bytes (another nonce; a store whose master key was rotated since): the same
         * key when both open to it. */
        if (!same && (rc = store_datakey_get(s, key_id, &have, &why)) == 0 &&
            sodium_memcmp(have.key, dk.key, sizeof dk.key) != 0)
            rc = bq_fail(e, BQ_E_EXISTS, "could not import data key %08" PRIx32 " into store "
                         "%s: its keys/%08" PRIx32 ".datakey holds another key", key_id, dir,
                         key_id);
        else if (!same && rc != 0)
            rc = bq_fail(e, rc, "could not import data key %08" PRIx32 " into store %s: %s",
                         key_id, dir, why.msg);
        else
            rc = 0;
        if (!same)
            store_datakey_clear(&have);
    }
    store_datakey_clear(&dk);
    return rc;
}

/* ---- the manifest ---- */

/* Read up to n bytes of fd (fewer only at its end): the count, or -1 with errno. */
static ssize_t read_full(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* *same = whether files a and b hold the same bytes. BQ_E_IO, BQ_E_NOMEM. */
static int files_same(const char *a, const char *b, int *same, bq_errbuf_t *e)
{
    *same = 0;
    int fa = open(a, O_RDONLY | O_CLOEXEC), fb = fa < 0 ? -1 : open(b, O_RDONLY | O_CLOEXEC);
    uint8_t *buf = fb < 0 ? NULL : malloc(2 * IMPORT_COPY_BUF);
    int rc = 0;
    if (fa < 0 || fb < 0)
        rc = bq_fail(e, BQ_E_IO, "could not open %s: %s", fa < 0 ? a : b, strerror(errno));
    else if (!buf)
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory comparing %s with %s", a, b);
    while (rc == 0) {
        ssize_t na = read_full(fa, buf, IMPORT_COPY_BUF);
        ssize_t nb = na < 0 ? 0 : read_full(fb, buf + IMPORT_COPY_BUF, IMPORT_COPY_BUF);
        if (na < 0 || nb < 0)
            rc = bq_fail(e, BQ_E_IO, "could not read %s: %s", na < 0 ? a : b, strerror(errno));
        else if (na != nb || memcmp(buf, buf + IMPORT_COPY_BUF, (size_t)na) != 0)
            break;
        else if (na == 0) {
            *same = 1;
            break;
        }
    }
    if (fa >= 0)
        close(fa);
    if (fb >= 0)
        close(fb);
    free(buf);
    return rc;
}

/* Copy src to dst (created, O_EXCL) and fsync it; dst is removed on failure. */
static int file_copy_synced(const char *src, const char *dst, bq_errbuf_t *e)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return bq_fail(e, errno == ENOENT ? BQ_E_NOTFOUND : BQ_E_IO, "could not open %s: %s",
                       src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    uint8_t *buf = out < 0 ? NULL : malloc(IMPORT_COPY_BUF);
    int rc = 0;
    if (out < 0)
        rc = bq_fail(e, BQ_E_IO, "could not create %s: %s", dst, strerror(errno));
    else if (!buf)
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory copying %s", src);
    while (rc == 0) {
        ssize_t n = read(in, buf, IMPORT_COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = bq_fail(e, BQ_E_IO, "could not read %s: %s", src, strerror(errno));
        if (n <= 0)
            break;
        for (ssize_t off = 0; rc == 0 && off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", dst,
                             w < 0 ? strerror(errno) : "no progress");
            else
                off += w;
        }
    }
    if (rc == 0 && fsync(out) != 0)
        rc = bq_fail(e, BQ_E_IO, "could not fsync %s: %s", dst, strerror(errno));
    if (out >= 0 && close(out) != 0 && rc == 0)
        rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", dst, strerror(errno));
    close(in);
    free(buf);
    if (rc != 0 && out >= 0)
        unlink(dst);
    return rc;
}

/* The chunks (n ids) of file path: each, and the base of each delta, is in the index (and
 * that base no delta); noted in one reference section, so a GC keeps them until the
 * manifest lands. BQ_E_IO naming the chunk otherwise. */
static int check_chunks(store_import_t *imp, const uint8_t *ids, size_t n, const char *path,
                        bq_errbuf_t *e)
{
    store_index_t *idx = store_index_handle(imp->s);
    char hex[STORE_CHUNK_ID_HEX], bhex[STORE_CHUNK_ID_HEX];
    size_t nnotes = 0;
    int rc = store_session_enter(imp->ss, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const uint8_t *id = ids + i * STORE_CHUNK_ID_BYTES;
        store_index_loc_t loc, bloc;
        bq_errbuf_t why = {{0}};
        rc = store_index_get(idx, id, &loc, &why);
        if (rc == BQ_E_NOTFOUND)
            rc = bq_fail(e, BQ_E_IO, "chunk %s of file %s is not in store %s",
                         store_id_hex(id, hex), path, store_dir(imp->s));
        else if (rc != 0)
            rc = bq_fail(e, rc, "%s", why.msg);
        if (rc != 0)
            break;
        memcpy(imp->notes[nnotes++], id, STORE_CHUNK_ID_BYTES);
        if (!(loc.flags & STORE_INDEX_F_DELTA))
            continue;
        rc = store_index_get(idx, loc.base, &bloc, &why);
        if (rc == BQ_E_NOTFOUND)
            rc = bq_fail(e, BQ_E_IO, "chunk %s (the base of chunk %s) of file %s is not in "
                         "store %s", store_id_hex(loc.base, bhex), store_id_hex(id, hex), path,
                         store_dir(imp->s));
        else if (rc == 0 && (bloc.flags & STORE_INDEX_F_DELTA))
            rc = bq_fail(e, BQ_E_IO, "chunk %s of file %s is a delta against chunk %s, which "
                         "store %s holds as a delta itself", store_id_hex(id, hex), path,
                         store_id_hex(loc.base, bhex), store_dir(imp->s));
        else if (rc != 0)
            rc = bq_fail(e, rc, "%s", why.msg);
        if (rc == 0)
            memcpy(imp->notes[nnotes++], loc.base, STORE_CHUNK_ID_BYTES);
    }
    if (rc == 0)
        rc = store_session_note_chunks(imp->ss, (const uint8_t(*)[STORE_CHUNK_ID_BYTES])imp->notes,
                                       nnotes, e);
    store_session_leave(imp->ss);
    return rc;
}

/* Read manifest tmp (a copy of the one to import) to its END with the store's keys: its
 * backup id is backup_id and every chunk it names is in the store (check_chunks). */
static int check_manifest(store_import_t *imp, const char *backup_id, const char *tmp,
                          const char *src, bq_errbuf_t *e)
{
    store_manifest_reader_t *mr = NULL;
    char *path = malloc(STORE_MANIFEST_PATH_MAX + 1);
    int rc = path ? store_manifest_open_keys(imp->s, tmp, &mr, e)
                  : bq_fail(e, BQ_E_NOMEM, "out of memory reading manifest %s", src);
    if (rc == 0 && strcmp(store_manifest_header(mr)->backup_id, backup_id) != 0)
        rc = bq_fail(e, BQ_E_INVAL, "manifest %s is of backup %s, not %s", src,
                     store_manifest_header(mr)->backup_id, backup_id);
    store_manifest_item_t it;
    while (rc == 0 && (rc = store_manifest_next(mr, &it, e)) == 0 &&
           it.kind != STORE_MANIFEST_END) {
        if (it.kind == STORE_MANIFEST_FILE)
            snprintf(path, STORE_MANIFEST_PATH_MAX + 1, "%s", it.file.path);
        else if (it.kind == STORE_MANIFEST_CHUNKS)
            rc = check_chunks(imp, it.chunks.ids, it.chunks.n, path, e);
    }
    store_manifest_close(&mr);
    free(path);
    return rc;
}

/* The chunks appended were sealed with data keys this store must hold (imported first). */
static int check_keys(store_import_t *imp, bq_errbuf_t *e)
{
    for (size_t i = 0; i < imp->nkeys; i++) {
        store_datakey_t dk;
        int rc = store_datakey_get(imp->s, imp->keys[i], &dk, e);
        store_datakey_clear(&dk);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Link tmp under final (never replacing), remove tmp, fsync backups/; the same bytes already
 * there are success. *linked: final was made here. */
static int manifest_link(const char *tmp, const char *final, const char *backup_id,
                         const char *dir, int *linked, bq_errbuf_t *e)
{
    int rc = 0, same = 0;
    *linked = link(tmp, final) == 0;
    if (!*linked && errno != EEXIST)
        rc = bq_fail(e, BQ_E_IO, "could not link %s: %s", final, strerror(errno));
    else if (!*linked && (rc = files_same(final, tmp, &same, e)) == 0 && !same)
        rc = bq_fail(e, BQ_E_EXISTS, "backup %s already exists in store %s with another "
                     "manifest", backup_id, dir);
    unlink(tmp);
    if (rc == 0)
        rc = bq_fsync_dir_of(final, e);
    if (rc != 0 && *linked) /* not durable: a failed import leaves no manifest behind */
        unlink(final);
    return rc;
}

int store_import_commit(store_import_t **imp_p, const char *backup_id, const char *src_path,
                        store_import_stats_t *st, bq_errbuf_t *e)
{
    if (!imp_p || !*imp_p)
        return bq_fail(e, BQ_E_INVAL, "no import");
    store_import_t *imp = *imp_p;
    const char *dir = store_dir(imp->s);
    char name[STORE_MANIFEST_ID_MAX + 32], final[PATH_MAX], tmp[PATH_MAX];
    bq_errbuf_t why = {{0}};
    int rc = 0, same = 0, linked = 0, made_tmp = 0;
    if (!backup_id || strlen(backup_id) > STORE_MANIFEST_ID_MAX ||
        snprintf(name, sizeof name, "backups/%s.manifest", backup_id) >= (int)sizeof name ||
        !store_export_name_valid(name))
        rc = bq_fail(e, BQ_E_INVAL, "could not import a backup into store %s: its id is not "
                     "1..64 characters of [A-Za-z0-9._-] not starting with '.'", dir);
    else if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final ||
             snprintf(tmp, sizeof tmp, "%s.tmp.%s", final, store_session_name(imp->ss)) >=
                 (int)sizeof tmp)
        rc = bq_fail(e, BQ_E_INVAL, "store path too long: %s", dir);
    if (rc == 0)
        rc = import_flush(imp, 1, e);
    if (rc == 0 && access(final, F_OK) == 0) {
        /* An earlier attempt got that far: the same bytes again are success. */
        if ((rc = files_same(final, src_path, &same, e)) == 0 && !same)
            rc = bq_fail(e, BQ_E_EXISTS, "backup %s already exists in store %s with another "
                         "manifest", backup_id, dir);
        goto out;
    }
    /* The copy is what is checked and then linked: the source may change meanwhile. */
    if (rc == 0)
        made_tmp = (rc = file_copy_synced(src_path, tmp, &why)) == 0;
    if (rc == 0)
        rc = check_manifest(imp, backup_id, tmp, src_path, &why);
    if (rc == 0)
        rc = check_keys(imp, &why);
    if (rc != 0 && why.msg[0])
        rc = bq_fail(e, rc, "could not import backup %s into store %s: %s", backup_id, dir,
                     why.msg);
    /* The manifest is linked and the session removed inside one reference section: a GC sees
     * the one or the other (docs/store.md, "Concurrency"). */
    if (rc == 0)
        rc = store_session_enter(imp->ss, e);
    if (rc == 0) {
        rc = manifest_link(tmp, final, backup_id, dir, &linked, e);
        made_tmp = 0;
    }
out:
    if (made_tmp)
        unlink(tmp);
    import_free(imp_p, st); /* ends the session: inside the section entered above */
    return rc;
}
