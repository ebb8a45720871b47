/* Verify of a whole store (store/store.h, docs/store.md "Verify"): packs, index, manifests and
 * the WAL area, streamed. What is kept in memory grows with the damage found, never with the
 * size of the store: the offsets of records that failed in each damaged pack, and the ids of
 * chunks that are damaged or missing. A chunk a manifest references is good when it is not in
 * that set and the index has it: step 2 put every index entry that does not lead to a good
 * record into the set. */
#include "store.h"

#include "index.h"
#include "manifest.h"
#include "pack.h"
#include "wal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VERIFY_KEY_CACHE 16

/* A pack whose scan found damage: records from good_end on were not read (UINT64_MAX when the
 * scan reached the end), and the records before it at offs[] did not open. */
typedef struct {
    uint64_t pack;
    uint64_t good_end;
    uint64_t *offs;
    size_t noffs, cap;
    int referenced_past; /* an index entry points at good_end or later */
    char *msg;           /* the scan's report, emitted after the index step */
} bad_pack_t;

enum { BAD_DAMAGED = 1, BAD_MISSING = 2 };

/* A chunk id that is damaged or missing (open addressing; used == 0 is an empty slot). */
typedef struct {
    uint8_t id[STORE_CHUNK_ID_BYTES];
    uint8_t used, reason, has_pack;
    uint64_t pack, offset;
    uint64_t last_file; /* file_seq of the last file it was reported for */
} bad_chunk_t;

typedef struct {
    store_t *s;
    const char *dir;
    store_index_t *idx;
    store_chunk_ctx_t *ctx;
    store_reader_t *rd; /* the bases of delta records */
    char wal_cluster[STORE_WAL_CLUSTER_MAX + 1]; /* the WAL area being verified */
    store_verify_fn fn;
    void *arg;
    store_verify_stats_t st;
    int stop;        /* fn's non-zero value */
    int fatal;       /* an operational error (NOMEM, the index), e filled */
    bq_errbuf_t *e;
    bq_errbuf_t first; /* the first problem's message */

    store_datakey_t *keys; /* VERIFY_KEY_CACHE slots, sodium_malloc */
    size_t nkeys, next_key;

    uint8_t *body, *plain;
    size_t body_cap, plain_cap;

    bad_pack_t *bad_packs;
    size_t nbad_packs, bad_packs_cap;
    bad_pack_t *cur_pack; /* the pack being scanned, once it has damage */
    uint64_t cur_pack_id;
    uint64_t matched; /* index entries whose record the scan found good at their location */

    bad_chunk_t *bad;
    size_t nbad, bad_cap; /* bad_cap: a power of two, or 0 */

    uint64_t exist_pack; /* the last pack whose existence was checked */
    int exist_known, exist;

    const char *backup_id; /* the manifest being read */
    char *path;            /* its open file */
    uint64_t file_seq;

    uint8_t *wal_buf;
    size_t wal_cap;
} verify_t;

const char *store_verify_kind_name(store_verify_kind_t kind)
{
    switch (kind) {
    case STORE_VERIFY_PACK_DAMAGED: return "pack damaged";
    case STORE_VERIFY_CHUNK_DAMAGED: return "chunk damaged";
    case STORE_VERIFY_CHUNK_MISSING: return "chunk missing";
    case STORE_VERIFY_INDEX_DANGLING: return "index entry dangling";
    case STORE_VERIFY_MANIFEST_DAMAGED: return "manifest damaged";
    case STORE_VERIFY_WAL_DAMAGED: return "WAL file damaged";
    case STORE_VERIFY_WAL_CONFLICT: return "WAL conflict";
    case STORE_VERIFY_PACK_TORN: return "pack torn (unreferenced)";
    }
    return "unknown";
}

/* Report one event; returns non-zero when the verify must stop. */
static int emit(verify_t *v, const store_verify_event_t *ev)
{
    if (ev->kind == STORE_VERIFY_WAL_CONFLICT || ev->kind == STORE_VERIFY_PACK_TORN) {
        v->st.warnings++;
    } else {
        if (v->st.problems++ == 0)
            snprintf(v->first.msg, sizeof v->first.msg, "%s", ev->message);
    }
    if (v->fn) {
        int rc = v->fn(ev, v->arg);
        if (rc != 0) {
            v->stop = rc;
            return 1;
        }
    }
    return 0;
}

static int fatal(verify_t *v, int rc)
{
    v->fatal = rc;
    return 1;
}

static int grow(uint8_t **buf, size_t *cap, size_t need, bq_errbuf_t *e)
{
    if (need == 0)
        need = 1;
    if (*cap >= need)
        return 0;
    uint8_t *p = realloc(*buf, need);
    if (!p)
        return bq_fail(e, BQ_E_NOMEM, "out of memory verifying: a buffer of %zu bytes", need);
    *buf = p;
    *cap = need;
    return 0;
}

/* ---- data keys: a small cache in locked memory ---- */

static int key_get(verify_t *v, uint32_t id, const store_datakey_t **out, bq_errbuf_t *e)
{
    for (size_t i = 0; i < v->nkeys; i++)
        if (v->keys[i].id == id) {
            *out = &v->keys[i];
            return 0;
        }
    size_t slot = v->nkeys < VERIFY_KEY_CACHE ? v->nkeys : v->next_key++ % VERIFY_KEY_CACHE;
    store_datakey_t dk;
    int rc = store_datakey_get(v->s, id, &dk, e);
    if (rc == BQ_E_NOTFOUND)
        rc = bq_fail(e, BQ_E_KEY, "data key %08" PRIx32 " is missing from %s/keys", id, v->dir);
    if (rc != 0)
        return rc;
    v->keys[slot] = dk;
    store_datakey_clear(&dk);
    if (slot == v->nkeys)
        v->nkeys++;
    *out = &v->keys[slot];
    return 0;
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

static int wal_key(void *arg, uint32_t key_id, store_datakey_t *out, bq_errbuf_t *e)
{
    const store_datakey_t *dk = NULL;
    int rc = key_get(arg, key_id, &dk, e);
    if (rc == 0)
        *out = *dk;
    return rc;
}

/* ---- the set of damaged and missing chunks ---- */

static size_t id_slot(const uint8_t id[STORE_CHUNK_ID_BYTES], size_t cap)
{
    uint64_t h;
    memcpy(&h, id, sizeof h); /* ids are keyed hashes: any 8 bytes are uniform */
    return (size_t)h & (cap - 1);
}

static bad_chunk_t *bad_find(verify_t *v, const uint8_t id[STORE_CHUNK_ID_BYTES])
{
    if (v->bad_cap == 0)
        return NULL;
    for (size_t i = id_slot(id, v->bad_cap);; i = (i + 1) & (v->bad_cap - 1)) {
        if (!v->bad[i].used)
            return NULL;
        if (memcmp(v->bad[i].id, id, STORE_CHUNK_ID_BYTES) == 0)
            return &v->bad[i];
    }
}

static bad_chunk_t *bad_slot(bad_chunk_t *tab, size_t cap, const uint8_t *id)
{
    size_t i = id_slot(id, cap);
    while (tab[i].used && memcmp(tab[i].id, id, STORE_CHUNK_ID_BYTES) != 0)
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

/* Add (or update) id; its first reason stays. */
static int bad_add(verify_t *v, const uint8_t id[STORE_CHUNK_ID_BYTES], int reason, int has_pack,
                   uint64_t pack, uint64_t offset)
{
    if ((v->nbad + 1) * 2 > v->bad_cap) {
        size_t cap = v->bad_cap ? v->bad_cap * 2 : 64;
        bad_chunk_t *tab = calloc(cap, sizeof *tab);
        if (!tab)
            return bq_fail(v->e, BQ_E_NOMEM, "out of memory verifying store %s: %zu damaged "
                           "chunks", v->dir, v->nbad);
        for (size_t i = 0; i < v->bad_cap; i++)
            if (v->bad[i].used)
                *bad_slot(tab, cap, v->bad[i].id) = v->bad[i];
        free(v->bad);
        v->bad = tab;
        v->bad_cap = cap;
    }
    bad_chunk_t *b = bad_slot(v->bad, v->bad_cap, id);
    if (b->used)
        return 0;
    memcpy(b->id, id, STORE_CHUNK_ID_BYTES);
    b->used = 1;
    b->reason = (uint8_t)reason;
    b->has_pack = (uint8_t)has_pack;
    b->pack = pack;
    b->offset = offset;
    b->last_file = 0;
    v->nbad++;
    return 0;
}

/* ---- damaged packs ---- */

static bad_pack_t *bad_pack_get(verify_t *v, uint64_t pack)
{
    for (size_t i = 0; i < v->nbad_packs; i++)
        if (v->bad_packs[i].pack == pack)
            return &v->bad_packs[i];
    return NULL;
}

static bad_pack_t *bad_pack_add(verify_t *v, uint64_t pack)
{
    bad_pack_t *p = bad_pack_get(v, pack);
    if (p)
        return p;
    if (v->nbad_packs == v->bad_packs_cap) {
        size_t cap = v->bad_packs_cap ? v->bad_packs_cap * 2 : 8;
        bad_pack_t *n = realloc(v->bad_packs, cap * sizeof *n);
        if (!n) {
            bq_fail(v->e, BQ_E_NOMEM, "out of memory verifying store %s", v->dir);
            return NULL;
        }
        v->bad_packs = n;
        v->bad_packs_cap = cap;
    }
    p = &v->bad_packs[v->nbad_packs++];
    memset(p, 0, sizeof *p);
    p->pack = pack;
    p->good_end = UINT64_MAX;
    return p;
}

static int bad_pack_has(const bad_pack_t *p, uint64_t offset)
{
    for (size_t i = 0; i < p->noffs; i++)
        if (p->offs[i] == offset)
            return 1;
    return 0;
}

/* ---- one record: head, data key, open (tag, id) ---- */

static int open_body(verify_t *v, const uint8_t id[STORE_CHUNK_ID_BYTES], uint64_t pack,
                     uint64_t offset, const void *body, size_t body_len, bq_errbuf_t *why)
{
    char where[80];
    snprintf(where, sizeof where, "in pack %016" PRIx64 " at offset %" PRIu64, pack, offset);
    store_chunk_head_t head;
    const store_datakey_t *dk = NULL;
    size_t plain_len = 0;
    int rc = store_chunk_head(id, body, body_len, &head, where, why);
    if (rc == 0)
        rc = key_get(v, head.key_id, &dk, why);
    if (rc == 0)
        rc = grow(&v->plain, &v->plain_cap, head.raw_len, why);
    /* A delta opens only with its base: one that is missing or damaged makes it damaged. */
    const uint8_t *base = NULL;
    size_t base_len = 0;
    if (rc == 0 && head.delta) {
        bq_errbuf_t bwhy = {{0}};
        if (!v->rd)
            rc = store_reader_new(v->s, &v->rd, why);
        if (rc == 0 && (rc = store_reader_chunk(v->rd, head.base, &base, &base_len, &bwhy)) != 0) {
            if (rc != BQ_E_NOMEM)
                rc = BQ_E_IO;
            char hex[STORE_CHUNK_ID_HEX];
            bq_fail(why, rc, "chunk %s %s is a delta whose base cannot be read: %s",
                    store_id_hex(id, hex), where, bwhy.msg);
        }
    }
    if (rc == 0)
        rc = store_chunk_open_delta(v->ctx, id, dk, body, body_len, base, base_len, v->plain,
                                    v->plain_cap, &plain_len, where, why);
    return rc;
}

/* ---- step 1: the packs ---- */

static int on_record(const uint8_t id[STORE_CHUNK_ID_BYTES], uint64_t offset, uint32_t rec_len,
                     const void *body, size_t body_len, void *arg)
{
    verify_t *v = arg;
    v->st.records++;
    bq_errbuf_t why = {{0}};
    int rc = open_body(v, id, v->cur_pack_id, offset, body, body_len, &why);
    if (rc == BQ_E_NOMEM) {
        *v->e = why;
        return fatal(v, rc);
    }
    if (rc != 0) {
        bad_pack_t *p = v->cur_pack ? v->cur_pack : bad_pack_add(v, v->cur_pack_id);
        if (!p)
            return fatal(v, BQ_E_NOMEM);
        v->cur_pack = p;
        if (p->noffs == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 8;
            uint64_t *o = realloc(p->offs, cap * sizeof *o);
            if (!o)
                return fatal(v, bq_fail(v->e, BQ_E_NOMEM, "out of memory verifying store %s",
                                        v->dir));
            p->offs = o;
            p->cap = cap;
        }
        p->offs[p->noffs++] = offset;
        char hex[STORE_CHUNK_ID_HEX];
        char msg[sizeof why.msg + PATH_MAX + 16];
        snprintf(msg, sizeof msg, "store %s: %s", v->dir, why.msg);
        store_verify_event_t ev = {.kind = STORE_VERIFY_CHUNK_DAMAGED, .has_pack = 1,
                                   .pack = v->cur_pack_id, .offset = offset,
                                   .chunk = store_id_hex(id, hex), .message = msg};
        return emit(v, &ev);
    }
    store_index_loc_t loc;
    rc = store_index_get(v->idx, id, &loc, &why);
    if (rc == 0 && loc.pack == v->cur_pack_id && loc.offset == offset && loc.rec_len == rec_len)
        v->matched++;
    else if (rc != 0 && rc != BQ_E_NOTFOUND) {
        *v->e = why;
        return fatal(v, rc);
    }
    return 0;
}

static int on_pack(uint64_t pack_id, void *arg)
{
    verify_t *v = arg;
    v->st.packs++;
    v->cur_pack_id = pack_id;
    v->cur_pack = NULL;
    uint64_t good_end = 0;
    bq_errbuf_t why = {{0}};
    int rc = store_pack_scan(v->dir, pack_id, on_record, v, &good_end, &why);
    if (rc > 0 || v->stop || v->fatal)
        return 1;
    if (rc == BQ_E_NOMEM) {
        *v->e = why;
        return fatal(v, rc);
    }
    if (rc != 0) {
        bad_pack_t *p = v->cur_pack ? v->cur_pack : bad_pack_add(v, pack_id);
        if (!p)
            return fatal(v, BQ_E_NOMEM);
        p->good_end = good_end;
        /* Reported after the index step: a tail nothing refers to is a killed writer's. */
        size_t n = sizeof why.msg + 512;
        if (!(p->msg = malloc(n)))
            return fatal(v, bq_fail(v->e, BQ_E_NOMEM, "out of memory verifying store %s", v->dir));
        snprintf(p->msg, n, "store %s: %s", v->dir, why.msg);
    }
    return 0;
}

/* Report the packs whose scan stopped: damage when anything indexed lies in them past the
 * stop or a record before it did not open; otherwise an unreferenced torn tail (warning). */
static int report_bad_packs(verify_t *v)
{
    for (size_t i = 0; i < v->nbad_packs; i++) {
        bad_pack_t *p = &v->bad_packs[i];
        if (!p->msg)
            continue;
        int torn = !p->referenced_past && p->noffs == 0;
        char msg[BQ_ERRMSG_MAX + 768];
        snprintf(msg, sizeof msg, "%s; %s", p->msg,
                 torn ? "no index entry refers to the rest: an unfinished write, which GC reclaims"
                      : "indexed records from there on were read one by one");
        store_verify_event_t ev = {.kind = torn ? STORE_VERIFY_PACK_TORN
                                                : STORE_VERIFY_PACK_DAMAGED,
                                   .has_pack = 1, .pack = p->pack, .offset = p->good_end,
                                   .message = msg};
        if (emit(v, &ev))
            return 1;
    }
    return 0;
}

/* ---- step 2: the index ---- */

static int pack_exists(verify_t *v, uint64_t pack)
{
    if (v->exist_known && v->exist_pack == pack)
        return v->exist;
    char path[PATH_MAX];
    struct stat st;
    if (store_pack_path(v->dir, pack, path, sizeof path) != 0)
        return -1;
    int ex = stat(path, &st) == 0;
    if (!ex && errno != ENOENT)
        return -1;
    v->exist_known = 1;
    v->exist_pack = pack;
    v->exist = ex;
    return ex;
}

static int on_entry(const uint8_t id[STORE_CHUNK_ID_BYTES], const store_index_loc_t *loc,
                    void *arg)
{
    verify_t *v = arg;
    char hex[STORE_CHUNK_ID_HEX];
    char msg[BQ_ERRMSG_MAX + 512];
    store_id_hex(id, hex);
    int ex = pack_exists(v, loc->pack);
    if (ex < 0)
        return fatal(v, bq_fail(v->e, BQ_E_IO, "could not check pack %016" PRIx64 " of store "
                                "%s: %s", loc->pack, v->dir, strerror(errno)));
    if (!ex) {
        if (bad_add(v, id, BAD_MISSING, 1, loc->pack, loc->offset) != 0)
            return fatal(v, BQ_E_NOMEM);
        char rel[STORE_PACK_PATH_REL_MAX];
        store_pack_path(NULL, loc->pack, rel, sizeof rel);
        snprintf(msg, sizeof msg, "store %s: index entry for chunk %s points at pack %s, which "
                 "is missing", v->dir, hex, rel);
        store_verify_event_t ev = {.kind = STORE_VERIFY_INDEX_DANGLING, .has_pack = 1,
                                   .pack = loc->pack, .offset = loc->offset, .chunk = hex,
                                   .message = msg};
        return emit(v, &ev);
    }
    bad_pack_t *bp = bad_pack_get(v, loc->pack);
    if (bp && bp->good_end != UINT64_MAX && loc->offset >= bp->good_end)
        bp->referenced_past = 1;
    if (bp && bad_pack_has(bp, loc->offset)) /* reported by the scan */
        return bad_add(v, id, BAD_DAMAGED, 1, loc->pack, loc->offset) != 0 ? fatal(v, BQ_E_NOMEM)
                                                                           : 0;
    /* matched < entries: find the entries the scan did not vouch for by reading each */
    bq_errbuf_t why = {{0}};
    int rc = 0;
    size_t body_len = 0;
    if (loc->rec_len < STORE_PACK_RECORD_OVERHEAD)
        rc = bq_fail(&why, BQ_E_IO, "index gives a record of %" PRIu32 " bytes", loc->rec_len);
    if (rc == 0)
        rc = grow(&v->body, &v->body_cap, loc->rec_len - STORE_PACK_RECORD_OVERHEAD, &why);
    if (rc == 0)
        rc = store_pack_read(v->dir, loc->pack, loc->offset, loc->rec_len, id, NULL, v->body,
                             v->body_cap, &body_len, &why);
    int read_ok = rc == 0;
    if (rc == 0)
        rc = open_body(v, id, loc->pack, loc->offset, v->body, body_len, &why);
    if (rc == BQ_E_NOMEM) {
        *v->e = why;
        return fatal(v, rc);
    }
    if (rc == 0)
        return 0;
    int damaged = read_ok || bp; /* a record in a damaged pack, or one that does not open */
    if (bad_add(v, id, damaged ? BAD_DAMAGED : BAD_MISSING, 1, loc->pack, loc->offset) != 0)
        return fatal(v, BQ_E_NOMEM);
    snprintf(msg, sizeof msg, "store %s: index entry for chunk %s (pack %016" PRIx64 " offset "
             "%" PRIu64 "): %s", v->dir, hex, loc->pack, loc->offset, why.msg);
    store_verify_event_t ev = {.kind = damaged ? STORE_VERIFY_CHUNK_DAMAGED
                                               : STORE_VERIFY_INDEX_DANGLING,
                               .has_pack = 1, .pack = loc->pack, .offset = loc->offset,
                               .chunk = hex, .message = msg};
    return emit(v, &ev);
}

/* ---- step 3: the manifests ---- */

static int check_ref(verify_t *v, const uint8_t id[STORE_CHUNK_ID_BYTES])
{
    v->st.chunk_refs++;
    bad_chunk_t *b = bad_find(v, id);
    if (!b) {
        store_index_loc_t loc;
        bq_errbuf_t why = {{0}};
        int rc = store_index_get(v->idx, id, &loc, &why);
        if (rc == 0)
            return 0;
        if (rc != BQ_E_NOTFOUND) {
            *v->e = why;
            return fatal(v, rc);
        }
        if (bad_add(v, id, BAD_MISSING, 0, 0, 0) != 0)
            return fatal(v, BQ_E_NOMEM);
        b = bad_find(v, id);
    }
    if (b->last_file == v->file_seq) /* once per file */
        return 0;
    b->last_file = v->file_seq;
    char hex[STORE_CHUNK_ID_HEX];
    char msg[PATH_MAX + 4096 + 512];
    store_id_hex(id, hex);
    if (b->reason == BAD_DAMAGED)
        snprintf(msg, sizeof msg, "backup %s in store %s: file %s needs chunk %s, which is "
                 "damaged (pack %016" PRIx64 " offset %" PRIu64 ")", v->backup_id, v->dir,
                 v->path, hex, b->pack, b->offset);
    else if (b->has_pack)
        snprintf(msg, sizeof msg, "backup %s in store %s: file %s needs chunk %s, which is "
                 "missing (its index entry points at pack %016" PRIx64 " offset %" PRIu64
                 ", not there)", v->backup_id, v->dir, v->path, hex, b->pack, b->offset);
    else
        snprintf(msg, sizeof msg, "backup %s in store %s: file %s needs chunk %s, which is "
                 "missing (not in the index)", v->backup_id, v->dir, v->path, hex);
    store_verify_event_t ev = {.kind = b->reason == BAD_DAMAGED ? STORE_VERIFY_CHUNK_DAMAGED
                                                                : STORE_VERIFY_CHUNK_MISSING,
                               .has_pack = b->has_pack, .pack = b->pack, .offset = b->offset,
                               .chunk = hex, .backup_id = v->backup_id, .path = v->path,
                               .message = msg};
    return emit(v, &ev);
}

static int on_backup(const char *backup_id, void *arg)
{
    verify_t *v = arg;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/backups/%s.manifest", v->dir, backup_id) >=
        (int)sizeof path)
        return fatal(v, bq_fail(v->e, BQ_E_INVAL, "store path too long: %s", v->dir));
    v->backup_id = backup_id;
    v->path[0] = '\0';
    bq_errbuf_t why = {{0}};
    store_manifest_reader_t *mr = NULL;
    int rc = store_manifest_open(path, manifest_key, v, &mr, &why);
    if (rc == BQ_E_NOTFOUND && !mr) { /* deleted meanwhile */
        struct stat st;
        if (stat(path, &st) != 0 && errno == ENOENT)
            return 0;
    }
    v->st.backups++;
    int in_file = 0;
    while (rc == 0) {
        store_manifest_item_t it;
        if ((rc = store_manifest_next(mr, &it, &why)) != 0 || it.kind == STORE_MANIFEST_END)
            break;
        if (it.kind == STORE_MANIFEST_FILE) {
            v->st.files++;
            v->file_seq++;
            in_file = 1;
            snprintf(v->path, STORE_MANIFEST_PATH_MAX + 1, "%s", it.file.path);
        } else if (it.kind == STORE_MANIFEST_FILE_END) {
            in_file = 0;
        } else if (it.kind == STORE_MANIFEST_CHUNKS) {
            for (size_t i = 0; i < it.chunks.n; i++)
                if (check_ref(v, it.chunks.ids + i * STORE_CHUNK_ID_BYTES))
                    break;
            if (v->stop || v->fatal)
                break;
        }
    }
    store_manifest_close(&mr);
    if (v->stop || v->fatal)
        return 1;
    if (rc == BQ_E_NOMEM) {
        *v->e = why;
        return fatal(v, rc);
    }
    if (rc != 0) {
        char msg[BQ_ERRMSG_MAX + PATH_MAX + 4096 + 256];
        if (in_file)
            snprintf(msg, sizeof msg, "backup %s in store %s cannot be restored (damaged inside "
                     "file %s): %s", backup_id, v->dir, v->path, why.msg);
        else
            snprintf(msg, sizeof msg, "backup %s in store %s cannot be restored: %s", backup_id,
                     v->dir, why.msg);
        store_verify_event_t ev = {.kind = STORE_VERIFY_MANIFEST_DAMAGED,
                                   .backup_id = backup_id, .path = in_file ? v->path : NULL,
                                   .message = msg};
        return emit(v, &ev);
    }
    return 0;
}

/* ---- step 4: the WAL area ---- */

static int on_wal(uint32_t tli, const char *name, void *arg)
{
    (void)tli;
    verify_t *v = arg;
    bq_errbuf_t why = {{0}};
    uint64_t len = 0;
    size_t got = 0;
    int rc = store_wal_stat(v->dir, v->wal_cluster, name, &len, NULL, NULL, &why);
    if (rc == BQ_E_NOTFOUND)
        return 0; /* removed meanwhile */
    if (rc == 0 && len > STORE_WAL_SEG_MAX)
        rc = bq_fail(&why, BQ_E_IO, "WAL file %s in store %s is damaged: its header gives %"
                     PRIu64 " bytes", name, v->dir, len);
    if (rc == 0)
        rc = grow(&v->wal_buf, &v->wal_cap, (size_t)len, &why);
    if (rc == 0)
        rc = store_wal_get(v->dir, v->wal_cluster, v->ctx, wal_key, v, name, v->wal_buf,
                           v->wal_cap, &got, &why);
    if (rc == BQ_E_NOTFOUND)
        return 0;
    v->st.wal_files++;
    if (rc == BQ_E_NOMEM) {
        *v->e = why;
        return fatal(v, rc);
    }
    if (rc != 0) {
        char msg[BQ_ERRMSG_MAX + 256];
        snprintf(msg, sizeof msg, "store %s: WAL file %s of cluster %s: %s", v->dir, name,
                 v->wal_cluster, why.msg);
        store_verify_event_t ev = {.kind = STORE_VERIFY_WAL_DAMAGED, .wal = name,
                                   .message = msg};
        return emit(v, &ev);
    }
    return 0;
}

static int on_conflict(uint32_t tli, const char *name, void *arg)
{
    verify_t *v = arg;
    char msg[PATH_MAX + 512];
    snprintf(msg, sizeof msg, "store %s: wal/%s/%08" PRIX32 "/%s holds content that was "
             "refused for a WAL file already archived under that name (kept for the operator)",
             v->dir, v->wal_cluster, tli, name);
    store_verify_event_t ev = {.kind = STORE_VERIFY_WAL_CONFLICT, .wal = name, .message = msg};
    return emit(v, &ev);
}

static int step_result(const verify_t *v, int rc);

/* One cluster's WAL area: its files, then its conflict files. */
static int on_wal_cluster(const char *cluster, void *arg)
{
    verify_t *v = arg;
    snprintf(v->wal_cluster, sizeof v->wal_cluster, "%s", cluster);
    int rc = step_result(v, store_wal_list(v->dir, cluster, on_wal, v, v->e));
    if (rc == 0)
        rc = step_result(v, store_wal_conflicts(v->dir, cluster, on_conflict, v, v->e));
    return rc;
}

/* ---- the whole ---- */

/* The result of a listing step: 0 to go on, else what store_verify returns. */
static int step_result(const verify_t *v, int rc)
{
    if (v->stop)
        return v->stop;
    if (v->fatal)
        return v->fatal;
    return rc < 0 ? rc : 0; /* the listing's own error, in e */
}

int store_verify(store_t *s, store_verify_fn fn, void *arg, store_verify_stats_t *st,
                 bq_errbuf_t *e)
{
    verify_t v = {.s = s, .dir = store_dir(s), .idx = store_index_handle(s), .fn = fn,
                  .arg = arg, .e = e};
    if (st)
        memset(st, 0, sizeof *st);
    int lock_fd = -1;
    int rc = store_lock_gc(s, 0, "verify", &lock_fd, e);
    if (rc == 0)
        rc = store_chunk_ctx_for(s, &v.ctx, e);
    if (rc == 0 && !(v.keys = sodium_malloc(VERIFY_KEY_CACHE * sizeof *v.keys)))
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory verifying store %s", v.dir);
    if (rc == 0 && !(v.path = calloc(1, STORE_MANIFEST_PATH_MAX + 1)))
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory verifying store %s", v.dir);
    if (rc == 0)
        rc = step_result(&v, store_pack_list(v.dir, on_pack, &v, e));
    if (rc == 0)
        rc = store_index_count(v.idx, &v.st.chunks, e);
    if (rc == 0 && v.matched != v.st.chunks)
        rc = step_result(&v, store_index_each(v.idx, on_entry, &v, e));
    if (rc == 0)
        rc = report_bad_packs(&v) ? step_result(&v, 1) : 0;
    if (rc == 0)
        rc = step_result(&v, store_backup_list(s, on_backup, &v, e));
    if (rc == 0)
        rc = step_result(&v, store_wal_clusters(v.dir, on_wal_cluster, &v, e));
    if (rc == 0 && v.st.problems > 0)
        rc = bq_fail(e, BQ_E_IO, "store %s: %" PRIu64 " problem%s found (first: %s)", v.dir,
                     v.st.problems, v.st.problems == 1 ? "" : "s", v.first.msg);

    if (st)
        *st = v.st;
    store_chunk_ctx_destroy(&v.ctx);
    store_reader_destroy(&v.rd);
    if (v.keys)
        sodium_free(v.keys); /* wipes */
    if (v.plain) {
        sodium_memzero(v.plain, v.plain_cap);
        free(v.plain);
    }
    if (v.wal_buf) {
        sodium_memzero(v.wal_buf, v.wal_cap);
        free(v.wal_buf);
    }
    free(v.body);
    free(v.path);
    for (size_t i = 0; i < v.nbad_packs; i++) {
        free(v.bad_packs[i].offs);
        free(v.bad_packs[i].msg);
    }
    free(v.bad_packs);
    free(v.bad);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}
