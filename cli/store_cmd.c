/* barque store init|ls|show|stats|verify|rotate-key: offline verbs on a store directory (see
 * store_cmd.h). */
#include "store_cmd.h"

#include "clock.h"
#include "manifest.h"
#include "output.h"
#include "store.h"
#include "store_keys.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "barque: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

static int fail(int code, const char *msg)
{
    fprintf(stderr, "barque: %s\n", msg);
    return bq_err_exit_status(code) ? bq_err_exit_status(code) : 1;
}

/* ---- shared steps ------------------------------------------------------------------------ */

static int need_key(const char *verb, const store_cmd_opts_t *o)
{
    if (!o->key_file)
        return usage_err("store %s: --key FILE is required (the store master key, made by "
                         "barque keygen NAME --store-key)", verb);
    return 0;
}

/* Load the master key and open the store at args[0]. On failure prints and returns the exit
 * status; *s is the caller's (store_close) and *m is wiped by the caller. */
static int open_store(const char *verb, const store_cmd_opts_t *o, store_master_t *m,
                      store_t **s)
{
    int rc = need_key(verb, o);
    if (rc)
        return rc;
    bq_errbuf_t e;
    rc = store_master_key_load(o->key_file, m, &e);
    if (rc == 0)
        rc = store_open(o->args[0], m, s, &e);
    if (rc) {
        char msg[BQ_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "store %s: %s", verb, e.msg);
        return fail(rc, msg);
    }
    return 0;
}

/* A backup id as store_backup_begin requires: 1..64 of [A-Za-z0-9._-], not starting with '.'.
 * Checked here too, since the id becomes part of a path. */
static int backup_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > STORE_MANIFEST_ID_MAX || id[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

typedef struct {
    const char *dir;
    const store_master_t *m;
} key_arg_t;

static int manifest_key(void *arg, uint32_t key_id, uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES],
                        bq_errbuf_t *e)
{
    const key_arg_t *ka = arg;
    store_datakey_t dk;
    int rc = store_datakey_load(ka->dir, ka->m, key_id, &dk, e);
    if (rc == 0)
        memcpy(key, dk.key, STORE_MANIFEST_DATA_KEY_BYTES);
    store_datakey_clear(&dk);
    return rc;
}

/* Open the manifest of backup id. The layout (DIR/backups/ID.manifest, sealed under the data
 * key it names) is docs/store.md's; store.h has no reader of manifests alone, and store_
 * backup_read would open every chunk. */
static int manifest_open(store_t *s, const store_master_t *m, const char *id,
                         store_manifest_reader_t **r, bq_errbuf_t *e)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/backups/%s.manifest", store_dir(s), id) >=
        (int)sizeof path)
        return bq_fail(e, BQ_E_INVAL, "backup %s in store %s: path too long", id, store_dir(s));
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return bq_fail(e, BQ_E_NOTFOUND, "backup %s does not exist in store %s", id,
                       store_dir(s));
    key_arg_t ka = {store_dir(s), m};
    return store_manifest_open(path, manifest_key, &ka, r, e);
}

typedef struct {
    int64_t created_ms;
    uint32_t chunk_size;
    uint32_t key_id;
    uint64_t files;
    uint64_t logical_bytes;
    uint64_t chunks;
    uint64_t meta;
} backup_sum_t;

/* Visitor of one manifest's items (META, FILE_END; others too); non-zero stops the walk. */
typedef int (*item_fn)(void *arg, const store_manifest_item_t *it, bq_errbuf_t *e);

/* Read backup id's manifest to its END (checked), summing it into *sum (may be NULL) and
 * giving each item to fn (may be NULL). */
static int backup_walk(store_t *s, const store_master_t *m, const char *id, backup_sum_t *sum,
                       item_fn fn, void *arg, bq_errbuf_t *e)
{
    store_manifest_reader_t *r = NULL;
    int rc = manifest_open(s, m, id, &r, e);
    if (rc)
        return rc;
    backup_sum_t b;
    memset(&b, 0, sizeof b);
    const store_manifest_header_t *h = store_manifest_header(r);
    b.created_ms = h->created_ms;
    b.chunk_size = h->chunk_size;
    b.key_id = h->key_id;
    store_manifest_item_t it;
    while ((rc = store_manifest_next(r, &it, e)) == 0) {
        if (it.kind == STORE_MANIFEST_FILE_END) {
            b.files++;
            b.logical_bytes += it.file_end.size;
            b.chunks += it.file_end.nchunks;
        } else if (it.kind == STORE_MANIFEST_META) {
            b.meta++;
        }
        if (fn && (rc = fn(arg, &it, e)) != 0)
            break;
        if (it.kind == STORE_MANIFEST_END)
            break;
    }
    store_manifest_close(&r);
    if (rc == 0 && sum)
        *sum = b;
    return rc;
}

static const char *time_text(int64_t ms, char *buf, size_t len)
{
    return ms ? bq_wall_format(ms, buf, len) : "-";
}

static json_t *time_json(int64_t ms)
{
    char buf[32];
    return ms ? json_string(bq_wall_format(ms, buf, sizeof buf)) : json_null();
}

/* The fields ls and show share for one backup. */
static json_t *backup_json(const char *id, const backup_sum_t *b)
{
    return json_pack("{s:s, s:o, s:I, s:I, s:I, s:I}", "id", id, "created",
                     time_json(b->created_ms), "created_ms", (json_int_t)b->created_ms, "files",
                     (json_int_t)b->files, "logical_bytes", (json_int_t)b->logical_bytes,
                     "chunks", (json_int_t)b->chunks);
}

/* ---- store init ---------------------------------------------------------------------------- */

/* "65536", "64K", "64KiB", "1M", "1MiB" (case-insensitive suffix) into bytes. */
static int parse_size(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    if (!s[0] || s[0] == '-' || s[0] == '+')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    unsigned long long mul = 1;
    if (*end) {
        char u = (char)(*end | 0x20);
        if (u == 'k')
            mul = 1024;
        else if (u == 'm')
            mul = 1024 * 1024;
        else
            return -1;
        end++;
        if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0 && strcmp(end, "ib") != 0 &&
            strcmp(end, "B") != 0 && strcmp(end, "b") != 0)
            return -1;
    }
    if (v > UINT32_MAX / mul)
        return -1;
    *out = (uint32_t)(v * mul);
    return 0;
}

int store_cmd_init(const store_cmd_opts_t *o)
{
    int rc = need_key("init", o);
    if (rc)
        return rc;
    store_opts_t so = {.chunk_size = STORE_CHUNK_SIZE_DEFAULT, .comp = STORE_COMP_ZSTD};
    if (o->compression && store_comp_parse(o->compression, &so.comp) != 0)
        return usage_err("store init: --compression %s: not one of zstd, lz4, none",
                         o->compression);
    if (o->level) {
        char *end;
        errno = 0;
        long v = strtol(o->level, &end, 10);
        if (errno || end == o->level || *end || v < INT32_MIN || v > INT32_MAX)
            return usage_err("store init: --level %s: not a number", o->level);
        if (so.comp == STORE_COMP_NONE && v != 0)
            return usage_err("store init: --level %s: compression none has no level", o->level);
        so.level = (int)v;
    }
    if (so.comp == STORE_COMP_ZSTD && so.level == 0)
        so.level = STORE_LEVEL_DEFAULT;
    if (o->chunk_size &&
        (parse_size(o->chunk_size, &so.chunk_size) != 0 || so.chunk_size < STORE_CHUNK_SIZE_ALIGN ||
         so.chunk_size > STORE_CHUNK_RAW_MAX || so.chunk_size % STORE_CHUNK_SIZE_ALIGN != 0))
        return usage_err("store init: --chunk-size %s: not a size from 8K to 16M in steps of 8K "
                         "(e.g. 64K, 1M)", o->chunk_size);

    store_master_t m;
    bq_errbuf_t e;
    const char *dir = o->args[0];
    rc = store_master_key_load(o->key_file, &m, &e);
    if (rc == 0)
        rc = store_create(dir, &m, &so, &e);
    store_master_clear(&m);
    if (rc) {
        char msg[BQ_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "store init: %s", e.msg);
        return fail(rc, msg);
    }
    char size[32];
    if (o->json)
        out_json_print(stdout, json_pack("{s:s, s:s, s:I, s:s, s:i}", "store", dir, "key_file",
                                         o->key_file, "chunk_size", (json_int_t)so.chunk_size,
                                         "compression", store_comp_name(so.comp), "level",
                                         so.level));
    else
        printf("created store %s (chunk size %s, compression %s level %d) under the master key "
               "in %s: keep a copy of that key somewhere safe: without it no backup can be read\n",
               dir, out_bytes(so.chunk_size, size, sizeof size), store_comp_name(so.comp),
               so.level, o->key_file);
    return 0;
}

/* ---- store ls ------------------------------------------------------------------------------ */

typedef struct {
    store_t *s;
    const store_master_t *m;
    int json;
    json_t *arr;
    uint64_t n;
    bq_errbuf_t *e;
} ls_t;

static int ls_one(const char *id, void *arg)
{
    ls_t *l = arg;
    backup_sum_t b;
    int rc = backup_walk(l->s, l->m, id, &b, NULL, NULL, l->e);
    if (rc == BQ_E_NOTFOUND) /* deleted since the listing */
        return 0;
    if (rc)
        return rc;
    l->n++;
    if (l->json) {
        json_array_append_new(l->arr, backup_json(id, &b));
        return 0;
    }
    char t[32], sz[32];
    if (l->n == 1)
        printf("%-24s %-20s %10s %12s\n", "BACKUP", "CREATED", "FILES", "LOGICAL SIZE");
    printf("%-24s %-20s %10" PRIu64 " %12s\n", id, time_text(b.created_ms, t, sizeof t), b.files,
           out_bytes(b.logical_bytes, sz, sizeof sz));
    return 0;
}

int store_cmd_ls(const store_cmd_opts_t *o)
{
    store_master_t m;
    store_t *s = NULL;
    int rc = open_store("ls", o, &m, &s);
    if (rc) {
        store_master_clear(&m);
        return rc;
    }
    bq_errbuf_t e;
    ls_t l = {s, &m, o->json, o->json ? json_array() : NULL, 0, &e};
    rc = store_backup_list(s, ls_one, &l, &e);
    if (rc == 0) {
        if (o->json)
            out_json_print(stdout, l.arr);
        else if (l.n == 0)
            printf("no backups in store %s\n", store_dir(s));
        l.arr = NULL;
    }
    json_decref(l.arr);
    store_close(&s);
    store_master_clear(&m);
    if (rc) {
        fflush(stdout);
        char msg[BQ_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "store ls: %s", e.msg);
        return fail(rc, msg);
    }
    return 0;
}

/* ---- store show ---------------------------------------------------------------------------- */

typedef struct {
    int json;
    int meta_pass; /* 1: META items only; 0: FILE items only */
    json_t *meta, *files;
    uint64_t n;
    uint32_t mode;
    int64_t mtime;
} show_t;

/* "-rw-r--r--" */
static const char *mode_text(uint32_t mode, char buf[11])
{
    char t = '?';
    switch (mode & S_IFMT) {
    case S_IFREG: t = '-'; break;
    case S_IFDIR: t = 'd'; break;
    case S_IFLNK: t = 'l'; break;
    case S_IFIFO: t = 'p'; break;
    case S_IFCHR: t = 'c'; break;
    case S_IFBLK: t = 'b'; break;
    case S_IFSOCK: t = 's'; break;
    case 0: t = '-'; break;
    }
    static const char rwx[] = "rwxrwxrwx";
    buf[0] = t;
    for (int i = 0; i < 9; i++)
        buf[1 + i] = (mode & (0400u >> i)) ? rwx[i] : '-';
    buf[10] = '\0';
    return buf;
}

static int show_item(void *arg, const store_manifest_item_t *it, bq_errbuf_t *e)
{
    show_t *sh = arg;
    if (sh->meta_pass) {
        if (it->kind != STORE_MANIFEST_META)
            return 0;
        if (sh->json)
            json_array_append_new(sh->meta, json_pack("{s:s, s:I}", "key", it->meta.key, "size",
                                                      (json_int_t)it->meta.len));
        else
            printf("  %-40s %zu bytes\n", it->meta.key, it->meta.len);
        return 0;
    }
    if (it->kind == STORE_MANIFEST_FILE) {
        sh->mode = it->file.mode;
        sh->mtime = it->file.mtime;
        return 0;
    }
    if (it->kind != STORE_MANIFEST_FILE_END)
        return 0;
    sh->n++;
    if (sh->json) {
        char oct[16];
        snprintf(oct, sizeof oct, "%o", (unsigned)sh->mode);
        json_array_append_new(
            sh->files, json_pack("{s:s, s:I, s:s, s:I, s:I, s:I}", "path", it->file_end.path,
                                 "mode", (json_int_t)sh->mode, "mode_octal", oct, "mtime",
                                 (json_int_t)sh->mtime, "size", (json_int_t)it->file_end.size,
                                 "chunks", (json_int_t)it->file_end.nchunks));
        return 0;
    }
    char mb[11];
    if (sh->n == 1)
        printf("  %-10s %14s %8s  %s\n", "MODE", "SIZE", "CHUNKS", "PATH");
    printf("  %-10s %14" PRIu64 " %8" PRIu64 "  %s\n", mode_text(sh->mode, mb),
           it->file_end.size, it->file_end.nchunks, it->file_end.path);
    return 0;
}

int store_cmd_show(const store_cmd_opts_t *o)
{
    const char *id = o->args[1];
    if (!backup_id_valid(id))
        return usage_err("store show: %s is not a backup id (1-64 of A-Z a-z 0-9 . _ -, not "
                         "starting with '.')", id);
    store_master_t m;
    store_t *s = NULL;
    int rc = open_store("show", o, &m, &s);
    if (rc) {
        store_master_clear(&m);
        return rc;
    }
    bq_errbuf_t e;
    backup_sum_t b;
    show_t sh = {.json = o->json, .meta_pass = 1};
    if (o->json) {
        sh.meta = json_array();
        sh.files = json_array();
    }
    /* two passes over the manifest, bounded memory in text mode: the totals and the meta keys
     * first (so the header comes before the list), then the files */
    rc = backup_walk(s, &m, id, &b, NULL, NULL, &e);
    if (rc == 0 && !o->json) {
        char t[32], sz[32], cs[32];
        printf("backup       %s\n", id);
        printf("store        %s\n", store_dir(s));
        printf("created      %s\n", time_text(b.created_ms, t, sizeof t));
        printf("chunk size   %s\n", out_bytes(b.chunk_size, cs, sizeof cs));
        printf("data key     %08" PRIx32 "\n", b.key_id);
        printf("files        %" PRIu64 "\n", b.files);
        printf("logical size %s (%" PRIu64 " bytes)\n", out_bytes(b.logical_bytes, sz, sizeof sz),
               b.logical_bytes);
        printf("chunks       %" PRIu64 "\n", b.chunks);
        printf("\nmeta keys (%" PRIu64 "):\n", b.meta);
    }
    if (rc == 0)
        rc = backup_walk(s, &m, id, NULL, show_item, &sh, &e);
    if (rc == 0 && !o->json)
        printf("\nfiles (%" PRIu64 "):\n", b.files);
    sh.meta_pass = 0;
    if (rc == 0)
        rc = backup_walk(s, &m, id, NULL, show_item, &sh, &e);
    if (rc == 0 && o->json) {
        json_t *bj = backup_json(id, &b);
        char key[16];
        snprintf(key, sizeof key, "%08" PRIx32, b.key_id);
        json_object_set_new(bj, "chunk_size", json_integer((json_int_t)b.chunk_size));
        json_object_set_new(bj, "data_key", json_string(key));
        out_json_print(stdout, json_pack("{s:s, s:o, s:o, s:o}", "store", store_dir(s), "backup",
                                         bj, "meta", sh.meta, "files", sh.files));
        sh.meta = sh.files = NULL;
    }
    json_decref(sh.meta);
    json_decref(sh.files);
    store_close(&s);
    store_master_clear(&m);
    if (rc) {
        fflush(stdout);
        char msg[BQ_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "store show: %s", e.msg);
        return fail(rc, msg);
    }
    return 0;
}

/* ---- store stats --------------------------------------------------------------------------- */

int store_cmd_stats(const store_cmd_opts_t *o)
{
    store_master_t m;
    store_t *s = NULL;
    int rc = open_store("stats", o, &m, &s);
    if (rc) {
        store_master_clear(&m);
        return rc;
    }
    bq_errbuf_t e;
    store_stats_t st;
    rc = store_stats(s, &st, &e);
    if (rc == 0 && o->json) {
        out_json_print(stdout, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f}", "store",
                                         store_dir(s), "chunk_size",
                                         (json_int_t)store_chunk_size(s), "backups",
                                         (json_int_t)st.backups, "chunks", (json_int_t)st.chunks,
                                         "stored_bytes", (json_int_t)st.stored_bytes,
                                         "logical_bytes", (json_int_t)st.logical_bytes,
                                         "dedup_ratio", st.dedup_ratio));
    } else if (rc == 0) {
        char a[32], b[32], c[32];
        printf("store         %s\n", store_dir(s));
        printf("chunk size    %s\n", out_bytes(store_chunk_size(s), c, sizeof c));
        printf("backups       %" PRIu64 "\n", st.backups);
        printf("chunks        %" PRIu64 "\n", st.chunks);
        printf("stored bytes  %s (%" PRIu64 ")\n", out_bytes(st.stored_bytes, a, sizeof a),
               st.stored_bytes);
        printf("logical bytes %s (%" PRIu64 ")\n", out_bytes(st.logical_bytes, b, sizeof b),
               st.logical_bytes);
        printf("dedup ratio   %.2f\n", st.dedup_ratio);
    }
    store_close(&s);
    store_master_clear(&m);
    if (rc) {
        char msg[BQ_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "store stats: %s", e.msg);
        return fail(rc, msg);
    }
    return 0;
}

/* store verify: one line per problem or warning as it is found (a JSON array of events with
 * --json), then the counts. Exit 1 when any problem was found. */
typedef struct {
    int json;
    json_t *events;
} verify_out_t;

static int verify_event(const store_verify_event_t *ev, void *arg)
{
    verify_out_t *v = arg;
    int warning = ev->kind == STORE_VERIFY_WAL_CONFLICT || ev->kind == STORE_VERIFY_PACK_TORN;
    if (v->json) {
        json_t *o = json_pack("{s:s, s:b, s:s}", "kind", store_verify_kind_name(ev->kind),
                              "warning", warning, "message", ev->message ? ev->message : "");
        if (ev->chunk)
            json_object_set_new(o, "chunk", json_string(ev->chunk));
        if (ev->backup_id)
            json_object_set_new(o, "backup", json_string(ev->backup_id));
        if (ev->path)
            json_object_set_new(o, "file", json_string(ev->path));
        if (ev->wal)
            json_object_set_new(o, "wal", json_string(ev->wal));
        json_array_append_new(v->events, o);
    } else {
        printf("%s: %s", warning ? "WARNING" : "DAMAGED", store_verify_kind_name(ev->kind));
        if (ev->backup_id)
            printf(": backup %s file %s", ev->backup_id, ev->path ? ev->path : "-");
        if (ev->chunk)
            printf(": chunk %s", ev->chunk);
        printf("\n    %s\n", ev->message ? ev->message : "");
    }
    return 0;
}

int store_cmd_verify(const store_cmd_opts_t *o)
{
    store_master_t m;
    store_t *s = NULL;
    int rc = open_store("verify", o, &m, &s);
    if (rc) {
        store_master_clear(&m);
        return rc;
    }
    verify_out_t v = {.json = o->json, .events = o->json ? json_array() : NULL};
    store_verify_stats_t st;
    bq_errbuf_t e = {{0}};
    rc = store_verify(s, verify_event, &v, &st, &e);
    int done = rc == 0 || rc == BQ_E_IO; /* BQ_E_IO: it ran and found problems */
    if (done && o->json) {
        json_t *out = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
                                "store", store_dir(s), "ok", rc == 0, "packs",
                                (json_int_t)st.packs, "records", (json_int_t)st.records,
                                "chunks", (json_int_t)st.chunks, "chunk_refs",
                                (json_int_t)st.chunk_refs, "backups", (json_int_t)st.backups,
                                "files", (json_int_t)st.files, "wal_files",
                                (json_int_t)st.wal_files, "problems", (json_int_t)st.problems,
                                "warnings", (json_int_t)st.warnings, "events", v.events);
        v.events = NULL;
        out_json_print(stdout, out);
    } else if (done) {
        printf("store %s: %s\n  %" PRIu64 " packs, %" PRIu64 " records, %" PRIu64
               " indexed chunks, %" PRIu64 " backups, %" PRIu64 " files (%" PRIu64
               " chunk references), %" PRIu64 " WAL files: %" PRIu64 " problems, %" PRIu64
               " warnings\n",
               store_dir(s), rc == 0 ? "OK" : "DAMAGED", st.packs, st.records, st.chunks,
               st.backups, st.files, st.chunk_refs, st.wal_files, st.problems, st.warnings);
    }
    json_decref(v.events);
    store_close(&s);
    store_master_clear(&m);
    if (rc) {
        char msg[BQ_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "store verify: %s", e.msg);
        return fail(rc, msg);
    }
    return 0;
}

/* store gc: store_gc (it opens the store itself, exclusively); prints what was reclaimed. */
int store_cmd_gc(const store_cmd_opts_t *o)
{
    int rc = need_key("gc", o);
    if (rc)
        return rc;
    store_master_t m;
    store_gc_stats_t st;
    bq_errbuf_t e;
    memset(&m, 0, sizeof m);
    rc = store_master_key_load(o->key_file, &m, &e);
    if (rc == 0)
        rc = store_gc(o->args[0], &m, NULL, &st, &e);
    store_master_clear(&m);
    if (rc) {
        char msg[BQ_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "store gc: %s", e.msg);
        return fail(rc, msg);
    }
    if (o->json)
        out_json_print(stdout,
                       json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                                 "store", o->args[0], "backups", (json_int_t)st.backups,
                                 "live_chunks", (json_int_t)st.live_chunks, "chunks_removed",
                                 (json_int_t)st.chunks_removed, "packs", (json_int_t)st.packs,
                                 "packs_deleted", (json_int_t)st.packs_deleted, "packs_repacked",
                                 (json_int_t)st.packs_repacked, "packs_written",
                                 (json_int_t)st.packs_written, "packs_skipped",
                                 (json_int_t)st.packs_skipped, "temp_manifests",
                                 (json_int_t)st.temp_manifests, "bytes_reclaimed",
                                 (json_int_t)st.bytes_reclaimed));
    else
        printf("store %s: %" PRIu64 " backups, %" PRIu64 " live chunks; removed %" PRIu64
               " chunks, %" PRIu64 " of %" PRIu64 " packs deleted, %" PRIu64 " repacked into %"
               PRIu64 " new, %" PRIu64 " temp manifests; %" PRIu64 " bytes reclaimed\n",
               o->args[0], st.backups, st.live_chunks, st.chunks_removed, st.packs_deleted,
               st.packs, st.packs_repacked, st.packs_written, st.temp_manifests,
               st.bytes_reclaimed);
    if (st.packs_skipped)
        fprintf(stderr, "barque: store gc: %" PRIu64 " damaged packs were left as they are "
                "(run barque store verify)\n", st.packs_skipped);
    return 0;
}

/* store rotate-key: both keys loaded first (a bad file is refused before the store is
 * touched), then store_rotate_key. */
int store_cmd_rotate_key(const store_cmd_opts_t *o)
{
    int rc = need_key("rotate-key", o);
    if (rc)
        return rc;
    if (!o->new_key_file)
        return usage_err("store rotate-key: --new-key FILE is required (the new store master "
                         "key, made by barque keygen NAME --store-key)");
    store_master_t old_m, new_m;
    store_rotate_stats_t st;
    bq_errbuf_t e;
    memset(&old_m, 0, sizeof old_m);
    memset(&new_m, 0, sizeof new_m);
    rc = store_master_key_load(o->key_file, &old_m, &e);
    if (rc == 0)
        rc = store_master_key_load(o->new_key_file, &new_m, &e);
    if (rc == 0)
        rc = store_rotate_key(o->args[0], &old_m, &new_m, &st, &e);
    store_master_clear(&old_m);
    store_master_clear(&new_m);
    if (rc) {
        char msg[BQ_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "store rotate-key: %s", e.msg);
        return fail(rc, msg);
    }
    if (o->json)
        out_json_print(stdout, json_pack("{s:s, s:s, s:I, s:I, s:b}", "store", o->args[0],
                                         "key_file", o->new_key_file, "data_keys",
                                         (json_int_t)st.data_keys, "data_keys_rewrapped",
                                         (json_int_t)st.data_keys_rewrapped, "id_key_rewrapped",
                                         st.id_key_rewrapped));
    else
        printf("store %s: now under the key in %s (%" PRIu64 " of %" PRIu64 " data keys "
               "re-wrapped, id key %s)\n",
               o->args[0], o->new_key_file, st.data_keys_rewrapped, st.data_keys,
               st.id_key_rewrapped ? "re-wrapped" : "already re-wrapped");
    return 0;
}
