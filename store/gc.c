/* Garbage collection of a store (store/store.h "garbage collection", docs/store.md "GC"),
 * beside running writers: mark the chunks every manifest references; then, holding refs.lock
 * exclusively, add what the live writer sessions noted and the manifests committed since,
 * and delete the index entries of the others; then remove the packs nothing live points
 * into and repack the sparse ones, leaving the live writers' packs alone. Every step leaves a store that verifies clean: index entries go before the packs they
 * point into, copies are fsynced before the index points at them, and a pack left behind by an
 * interruption is unreferenced, which the next run removes. */
#include "store.h"

#include "fsutil.h"
#include "index.h"
#include "log.h"
#include "manifest.h"
#include "pack.h"
#include "session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define GC_LOG "gc"
#define GC_DEL_BATCH 1024

/* The live chunk ids (open addressing; ids are keyed hashes, so their first bytes hash well). */
typedef struct {
    uint8_t (*ids)[STORE_CHUNK_ID_BYTES];
    uint8_t *used;
    size_t n, cap; /* cap: a power of two, kept at most half full */
} idset_t;

/* Packs that hold live records: how many, and their bytes (from the index). */
typedef struct {
    uint64_t pack;
    uint64_t live_n;
    uint64_t live_bytes;
    uint8_t used;
} packslot_t;

typedef struct {
    packslot_t *slots;
    size_t n, cap;
} packmap_t;

typedef struct {
    store_t *s;
    const char *dir;
    store_index_t *idx;
    double repack_below;
    store_gc_stats_t st;
    bq_errbuf_t *e;
    int rc; /* a callback's error, e filled */

    idset_t live;
    packmap_t packs;

    uint8_t (*del)[STORE_CHUNK_ID_BYTES]; /* index entries to delete, GC_DEL_BATCH */
    size_t ndel;

    uint64_t *pack_ids; /* the packs present when the sweep starts */
    size_t npack_ids, pack_ids_cap;
    uint64_t *busy; /* packs of live writer sessions: never swept */
    size_t nbusy, busy_cap;

    char **marked; /* backups marked, sorted (strcmp) */
    size_t nmarked, marked_cap;
    int remark; /* the second listing: mark only backups not in marked */

    /* repacking */
    store_pack_writer_t *w;
    uint64_t old_pack;
    store_index_entry_t *moved; /* new locations of the current old pack's live records */
    size_t nmoved, moved_cap;
    uint64_t moved_bytes;
} gc_t;

static size_t id_slot(const uint8_t id[STORE_CHUNK_ID_BYTES], size_t cap)
{
    uint64_t h;
    memcpy(&h, id, sizeof h);
    return (size_t)h & (cap - 1);
}

static int idset_has(const idset_t *s, const uint8_t id[STORE_CHUNK_ID_BYTES])
{
    if (s->cap == 0)
        return 0;
    for (size_t i = id_slot(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i])
            return 0;
        if (memcmp(s->ids[i], id, STORE_CHUNK_ID_BYTES) == 0)
            return 1;
    }
}

static void idset_put(idset_t *s, const uint8_t id[STORE_CHUNK_ID_BYTES])
{
    size_t i = id_slot(id, s->cap);
    while (s->used[i]) {
        if (memcmp(s->ids[i], id, STORE_CHUNK_ID_BYTES) == 0)
            return;
        i = (i + 1) & (s->cap - 1);
    }
    s->used[i] = 1;
    memcpy(s->ids[i], id, STORE_CHUNK_ID_BYTES);
    s->n++;
}

static int idset_add(idset_t *s, const uint8_t id[STORE_CHUNK_ID_BYTES], bq_errbuf_t *e)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        idset_t t = {calloc(cap, STORE_CHUNK_ID_BYTES), calloc(cap, 1), 0, cap};
        if (!t.ids || !t.used) {
            free(t.ids);
            free(t.used);
            return bq_fail(e, BQ_E_NOMEM, "out of memory marking live chunks (%zu so far)", s->n);
        }
        for (size_t i = 0; i < s->cap; i++)
            if (s->used[i])
                idset_put(&t, s->ids[i]);
        free(s->ids);
        free(s->used);
        *s = t;
    }
    idset_put(s, id);
    return 0;
}

static packslot_t *packmap_find(const packmap_t *m, uint64_t pack, int *found)
{
    *found = 0;
    if (m->cap == 0)
        return NULL;
    uint64_t h = pack * 0x9e3779b97f4a7c15ull;
    for (size_t i = (size_t)(h >> 32) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].used)
            return &m->slots[i];
        if (m->slots[i].pack == pack) {
            *found = 1;
            return &m->slots[i];
        }
    }
}

static int packmap_add(packmap_t *m, uint64_t pack, uint32_t rec_len, bq_errbuf_t *e)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        packmap_t t = {calloc(cap, sizeof *t.slots), 0, cap};
        if (!t.slots)
            return bq_fail(e, BQ_E_NOMEM, "out of memory counting live packs (%zu so far)", m->n);
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].used) {
                int found;
                *packmap_find(&t, m->slots[i].pack, &found) = m->slots[i];
                t.n++;
            }
        free(m->slots);
        *m = t;
    }
    int found;
    packslot_t *p = packmap_find(m, pack, &found);
    if (!found) {
        *p = (packslot_t){.used = 1, .pack = pack};
        m->n++;
    }
    p->live_n++;
    p->live_bytes += rec_len;
    return 0;
}

/* ---- step 1: temp manifests ---- */

static int remove_temp_manifests(gc_t *g)
{
    char dir[PATH_MAX], path[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/backups", g->dir) >= (int)sizeof dir)
        return bq_fail(g->e, BQ_E_INVAL, "store path too long: %s", g->dir);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : bq_fail(g->e, BQ_E_IO, "could not list %s: %s", dir,
                                             strerror(errno));
    int rc = 0;
    uint64_t removed = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *t = strstr(de->d_name, ".manifest.tmp.");
        if (de->d_name[0] == '.' || !t)
            continue;
        if (store_session_alive(g->dir, t + strlen(".manifest.tmp."))) {
            errno = 0; /* (readdir's end is told by errno) */
            continue; /* a writer at work */
        }
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path)
            continue;
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = bq_fail(g->e, BQ_E_IO, "could not remove %s: %s", path, strerror(errno));
            break;
        }
        removed++;
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = bq_fail(g->e, BQ_E_IO, "could not list %s: %s", dir, strerror(errno));
    closedir(d);
    if (rc == 0 && removed > 0)
        rc = bq_fsync_dir_of(dir, g->e);
    g->st.temp_manifests += removed;
    return rc;
}

/* ---- step 2: mark ---- */

static int manifest_key(void *arg, uint32_t key_id, uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES],
                        bq_errbuf_t *e)
{
    gc_t *g = arg;
    store_datakey_t dk;
    int rc = store_datakey_get(g->s, key_id, &dk, e);
    if (rc == 0)
        memcpy(key, dk.key, STORE_MANIFEST_DATA_KEY_BYTES);
    store_datakey_clear(&dk);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int marked_add(gc_t *g, const char *backup_id)
{
    if (g->nmarked == g->marked_cap) {
        size_t cap = g->marked_cap ? g->marked_cap * 2 : 64;
        char **p = realloc(g->marked, cap * sizeof *p);
        if (!p)
            return bq_fail(g->e, BQ_E_NOMEM, "out of memory listing the backups of %s", g->dir);
        g->marked = p;
        g->marked_cap = cap;
    }
    if (!(g->marked[g->nmarked] = strdup(backup_id)))
        return bq_fail(g->e, BQ_E_NOMEM, "out of memory listing the backups of %s", g->dir);
    g->nmarked++;
    return 0;
}

static int mark_backup(const char *backup_id, void *arg)
{
    gc_t *g = arg;
    if (g->remark && g->nmarked > 0 &&
        bsearch(&backup_id, g->marked, g->nmarked, sizeof *g->marked, cmp_str))
        return 0; /* marked by the first listing */
    if (!g->remark && (g->rc = marked_add(g, backup_id)) != 0)
        return 1;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/backups/%s.manifest", g->dir, backup_id) >=
        (int)sizeof path) {
        g->rc = bq_fail(g->e, BQ_E_INVAL, "store path too long: %s", g->dir);
        return 1;
    }
    bq_errbuf_t why = {{0}};
    store_manifest_reader_t *mr = NULL;
    int rc = store_manifest_open(path, manifest_key, g, &mr, &why);
    if (rc == BQ_E_NOTFOUND && access(path, F_OK) != 0 && errno == ENOENT)
        return 0; /* removed by hand since the listing */
    store_manifest_item_t it;
    while (rc == 0 && (rc = store_manifest_next(mr, &it, &why)) == 0 &&
           it.kind != STORE_MANIFEST_END) {
        if (it.kind != STORE_MANIFEST_CHUNKS)
            continue;
        for (size_t i = 0; rc == 0 && i < it.chunks.n; i++)
            rc = idset_add(&g->live, it.chunks.ids + i * STORE_CHUNK_ID_BYTES, &why);
    }
    store_manifest_close(&mr);
    if (rc != 0) {
        g->rc = bq_fail(g->e, rc, "GC of store %s not run: backup %s: %s", g->dir, backup_id,
                        why.msg);
        return 1;
    }
    g->st.backups++;
    return 0;
}

/* What live writer sessions rely on (store/session.h): their chunks are live, their packs
 * busy. */
static int session_chunk(void *arg, const uint8_t id[STORE_CHUNK_ID_BYTES])
{
    gc_t *g = arg;
    return idset_add(&g->live, id, g->e);
}

static int session_pack(void *arg, uint64_t pack)
{
    gc_t *g = arg;
    if (g->nbusy == g->busy_cap) {
        size_t cap = g->busy_cap ? g->busy_cap * 2 : 16;
        uint64_t *p = realloc(g->busy, cap * sizeof *p);
        if (!p)
            return bq_fail(g->e, BQ_E_NOMEM, "out of memory reading writer sessions of %s",
                           g->dir);
        g->busy = p;
        g->busy_cap = cap;
    }
    g->busy[g->nbusy++] = pack;
    return 0;
}

static int pack_busy(const gc_t *g, uint64_t pack)
{
    for (size_t i = 0; i < g->nbusy; i++)
        if (g->busy[i] == pack)
            return 1;
    return 0;
}

/* ---- step 3: the index ---- */

static int del_flush(gc_t *g)
{
    if (g->ndel == 0)
        return 0;
    size_t deleted = 0;
    int rc = store_index_del_batch(g->idx, (const uint8_t(*)[STORE_CHUNK_ID_BYTES])g->del,
                                   g->ndel, &deleted, g->e);
    if (rc == 0)
        g->st.chunks_removed += deleted;
    g->ndel = 0;
    return rc;
}

/* A live delta keeps its base live (bases are never deltas: one pass is enough). */
static int on_base(const uint8_t id[STORE_CHUNK_ID_BYTES], const store_index_loc_t *loc,
                   void *arg)
{
    gc_t *g = arg;
    if ((loc->flags & STORE_INDEX_F_DELTA) && idset_has(&g->live, id) &&
        !idset_has(&g->live, loc->base)) {
        g->rc = idset_add(&g->live, loc->base, g->e);
        g->st.bases_kept++;
        return g->rc != 0;
    }
    return 0;
}

static int on_entry(const uint8_t id[STORE_CHUNK_ID_BYTES], const store_index_loc_t *loc,
                    void *arg)
{
    gc_t *g = arg;
    if (idset_has(&g->live, id)) {
        g->rc = packmap_add(&g->packs, loc->pack, loc->rec_len, g->e);
        return g->rc != 0;
    }
    memcpy(g->del[g->ndel++], id, STORE_CHUNK_ID_BYTES);
    if (g->ndel == GC_DEL_BATCH && (g->rc = del_flush(g)) != 0)
        return 1;
    return 0;
}

/* ---- step 4: the packs ---- */

static int collect_pack(uint64_t pack_id, void *arg)
{
    gc_t *g = arg;
    if (g->npack_ids == g->pack_ids_cap) {
        size_t cap = g->pack_ids_cap ? g->pack_ids_cap * 2 : 256;
        uint64_t *p = realloc(g->pack_ids, cap * sizeof *p);
        if (!p) {
            g->rc = bq_fail(g->e, BQ_E_NOMEM, "out of memory listing the packs of %s", g->dir);
            return 1;
        }
        g->pack_ids = p;
        g->pack_ids_cap = cap;
    }
    g->pack_ids[g->npack_ids++] = pack_id;
    return 0;
}

/* Unlink a pack nothing in the index points into any more, then fsync its directory. */
static int pack_remove(gc_t *g, uint64_t pack, const char *path, uint64_t size)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return bq_fail(g->e, BQ_E_IO, "could not remove %s: %s", path, strerror(errno));
    int rc = bq_fsync_dir_of(path, g->e);
    if (rc == 0) {
        g->st.bytes_reclaimed += size;
        bq_debug(GC_LOG, 0, "store %s: removed pack %016" PRIx64 " (%" PRIu64 " bytes)", g->dir,
                 pack, size);
    }
    return rc;
}

static int writer_start(gc_t *g)
{
    for (int tries = 0; tries < 8; tries++) {
        uint64_t pid = 0;
        while (pid == 0)
            randombytes_buf(&pid, sizeof pid);
        int rc = store_pack_create(g->dir, pid, &g->w, g->e);
        if (rc == 0)
            g->st.packs_written++;
        if (rc != BQ_E_EXISTS)
            return rc;
    }
    return bq_fail(g->e, BQ_E_IO, "GC of store %s: could not find a free pack id", g->dir);
}

/* Close the new pack (synced); its bytes count against what was reclaimed. */
static int writer_close(gc_t *g)
{
    if (!g->w)
        return 0;
    uint64_t size = store_pack_size(g->w);
    int rc = store_pack_close(&g->w, g->e);
    g->st.bytes_reclaimed -= size < g->st.bytes_reclaimed ? size : g->st.bytes_reclaimed;
    return rc;
}

static int copy_record(const uint8_t id[STORE_CHUNK_ID_BYTES], uint64_t offset, uint32_t rec_len,
                       const void *body, size_t body_len, void *arg)
{
    gc_t *g = arg;
    store_index_loc_t loc;
    bq_errbuf_t why;
    int rc = store_index_get(g->idx, id, &loc, &why);
    if (rc == BQ_E_NOTFOUND)
        return 0;
    if (rc != 0) {
        g->rc = bq_fail(g->e, rc, "%s", why.msg);
        return 1;
    }
    if (loc.pack != g->old_pack || loc.offset != offset || loc.rec_len != rec_len)
        return 0; /* dead, or a duplicate of a record indexed elsewhere */
    if (!g->w && (g->rc = writer_start(g)) != 0)
        return 1;
    if (g->nmoved == g->moved_cap) {
        size_t cap = g->moved_cap ? g->moved_cap * 2 : 256;
        store_index_entry_t *p = realloc(g->moved, cap * sizeof *p);
        if (!p) {
            g->rc = bq_fail(g->e, BQ_E_NOMEM, "out of memory repacking %s", g->dir);
            return 1;
        }
        g->moved = p;
        g->moved_cap = cap;
    }
    store_index_entry_t *ent = &g->moved[g->nmoved];
    memcpy(ent->id, id, STORE_CHUNK_ID_BYTES);
    ent->loc = loc;
    ent->loc.pack = store_pack_id(g->w);
    if ((g->rc = store_pack_append(g->w, id, body, body_len, &ent->loc.offset, &ent->loc.rec_len,
                                   g->e)) != 0)
        return 1;
    g->nmoved++;
    g->moved_bytes += rec_len;
    return 0;
}

/* Copy the live records of pack (path, size) into the GC's own pack, point the index at the
 * copies once they are durable, then remove the old pack. */
static int repack(gc_t *g, uint64_t pack, const char *path, uint64_t size,
                  const packslot_t *live)
{
    g->old_pack = pack;
    g->nmoved = 0;
    g->moved_bytes = 0;
    g->rc = 0;
    bq_errbuf_t why = {{0}};
    int rc = store_pack_scan(g->dir, pack, copy_record, g, NULL, &why);
    if (g->rc != 0)
        return g->rc;
    if (rc != 0 || g->nmoved != live->live_n) {
        /* Damage (or an index entry past it): the records copied so far stay unindexed in
         * the new pack, garbage for the next run; the old pack is left for verify to report. */
        bq_warn(GC_LOG, 0, "store %s: pack %016" PRIx64 " not repacked: %s", g->dir, pack,
                rc != 0 ? why.msg : "its records do not match the index");
        g->st.packs_skipped++;
        return 0;
    }
    if (g->nmoved > 0) {
        if ((rc = store_pack_sync(g->w, g->e)) != 0)
            return rc;
        if ((rc = store_index_put_batch(g->idx, g->moved, g->nmoved, g->e)) != 0)
            return rc;
    }
    if ((rc = pack_remove(g, pack, path, size)) != 0)
        return rc;
    g->st.packs_repacked++;
    g->st.records_moved += g->nmoved;
    if (g->w && store_pack_size(g->w) >= STORE_PACK_TARGET)
        rc = writer_close(g);
    return rc;
}

static int sweep_pack(gc_t *g, uint64_t pack)
{
    if (pack_busy(g, pack))
        return 0; /* a live writer's: its chunks are indexed only when it is durable */
    char path[PATH_MAX];
    if (store_pack_path(g->dir, pack, path, sizeof path) != 0)
        return bq_fail(g->e, BQ_E_INVAL, "store path too long: %s", g->dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return bq_fail(g->e, BQ_E_IO, "could not stat %s: %s", path, strerror(errno));
    }
    uint64_t size = (uint64_t)sb.st_size;
    int found;
    const packslot_t *live = packmap_find(&g->packs, pack, &found);
    if (!found) {
        int rc = pack_remove(g, pack, path, size);
        if (rc == 0)
            g->st.packs_deleted++;
        return rc;
    }
    if (g->repack_below > 0 && (double)live->live_bytes < g->repack_below * (double)size)
        return repack(g, pack, path, size, live);
    return 0;
}

/* Steps 2b-3 under refs.lock held exclusively: no writer looks a chunk up meanwhile. */
static int gc_exclusive(gc_t *g)
{
    int fd = -1;
    int rc = store_refs_lock_exclusive(g->dir, &fd, g->e);
    if (rc != 0)
        return rc;
    /* The packs first: a writer notes a pack before it creates it, so a pack listed here is
     * in a note read below. */
    rc = store_pack_list(g->dir, collect_pack, g, g->e);
    if (g->rc != 0 || rc != 0)
        rc = g->rc ? g->rc : rc;
    uint64_t live = 0, dead = 0;
    static const store_session_fn_t fns = {session_chunk, session_pack};
    if (rc == 0)
        rc = store_sessions_scan(g->dir, &fns, g, &live, &dead, g->e);
    if (rc == 0) {
        g->st.sessions_live = live;
        /* Backups committed since the first listing (their writers' notes are gone). */
        if (g->nmarked > 1)
            qsort(g->marked, g->nmarked, sizeof *g->marked, cmp_str);
        g->remark = 1;
        rc = store_backup_list(g->s, mark_backup, g, g->e);
        if (g->rc != 0 || rc != 0)
            rc = g->rc ? g->rc : rc;
    }
    if (rc == 0) {
        rc = store_index_each(g->idx, on_base, g, g->e);
        if (g->rc != 0 || rc != 0)
            rc = g->rc ? g->rc : rc;
    }
    if (rc == 0) {
        g->st.live_chunks = g->live.n;
        rc = store_index_each(g->idx, on_entry, g, g->e);
        if (g->rc != 0 || rc != 0)
            rc = g->rc ? g->rc : rc;
    }
    if (rc == 0)
        rc = del_flush(g);
    if (rc == 0)
        rc = store_sessions_reap(g->dir, &g->st.sessions_reaped, g->e);
    close(fd);
    return rc;
}

int store_gc_run(store_t *s, const store_gc_opts_t *opts, store_gc_stats_t *st, bq_errbuf_t *e)
{
    if (st)
        memset(st, 0, sizeof *st);
    gc_t g = {.e = e, .repack_below = STORE_GC_REPACK_BELOW};
    if (opts && opts->repack_below != 0)
        g.repack_below = opts->repack_below;
    if (g.repack_below > 1)
        return bq_fail(e, BQ_E_INVAL, "GC: repack threshold %g is above 1", g.repack_below);
    g.s = s;
    int rc, lock_fd = -1;
    g.dir = store_dir(g.s);
    g.idx = store_index_handle(g.s);
    if ((rc = store_lock_gc(g.s, 1, "GC", &lock_fd, e)) != 0)
        goto out;
    if ((rc = remove_temp_manifests(&g)) != 0)
        goto out;

    /* Step 2, beside the writers: the manifests that exist now. */
    rc = store_backup_list(g.s, mark_backup, &g, e);
    if (g.rc != 0 || rc != 0) {
        rc = g.rc ? g.rc : rc;
        goto out;
    }
    if (!(g.del = malloc(GC_DEL_BATCH * sizeof *g.del))) {
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory collecting garbage in %s", g.dir);
        goto out;
    }
    if ((rc = gc_exclusive(&g)) != 0)
        goto out;

    g.st.packs = g.npack_ids;
    for (size_t i = 0; rc == 0 && i < g.npack_ids; i++)
        rc = sweep_pack(&g, g.pack_ids[i]);
    if (rc == 0)
        rc = writer_close(&g);
    if (rc == 0)
        bq_info(GC_LOG, 0, "store %s: GC removed %" PRIu64 " chunks, %" PRIu64 " packs deleted, %"
                PRIu64 " repacked, %" PRIu64 " bytes reclaimed", g.dir, g.st.chunks_removed,
                g.st.packs_deleted, g.st.packs_repacked, g.st.bytes_reclaimed);
out:
    if (g.w) /* a failure mid-repack: its unindexed copies are garbage for the next run */
        store_pack_abandon(&g.w);
    if (st)
        *st = g.st;
    free(g.live.ids);
    free(g.live.used);
    free(g.packs.slots);
    free(g.del);
    free(g.pack_ids);
    free(g.busy);
    for (size_t i = 0; i < g.nmarked; i++)
        free(g.marked[i]);
    free(g.marked);
    free(g.moved);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}

int store_gc(const char *dir, const store_master_t *master, const store_gc_opts_t *opts,
             store_gc_stats_t *st, bq_errbuf_t *e)
{
    if (st)
        memset(st, 0, sizeof *st);
    store_t *s = NULL;
    int rc = store_open(dir, master, &s, e);
    if (rc == 0)
        rc = store_gc_run(s, opts, st, e);
    store_close(&s);
    return rc;
}
