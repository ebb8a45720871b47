/* Backup manifests (docs/store.md, "Manifests"): the list of every file of a backup (path,
 * mode, mtime, size, checksum of the whole file (sha256 of its chunk ids), its chunk ids in
 * order) and opaque metadata
 * (key -> bytes) for the layers above.
 *
 * A manifest may hold millions of chunk references: it is written and read as a stream, with
 * bounded memory (a few 64 KiB buffers; a META value is held whole, at most 64 MiB).
 *
 * On disk it is sealed under the backup's data key (libsodium secretstream); the file is
 * written to FINAL.tmp.<pid> and only appears under its final name, durably, at commit. A
 * manifest read back is outside input: every length, count, path and checksum is checked and
 * every damage is BQ_E_IO "manifest NAME is damaged: WHY".
 *
 * Writers and readers are single-threaded objects: one per thread, never shared. */
#ifndef BQ_STORE_MANIFEST_H
#define BQ_STORE_MANIFEST_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_MANIFEST_ID_MAX 64                     /* backup id: 1..64 bytes */
#define STORE_MANIFEST_PATH_MAX 4095                 /* file path: 1..4095 bytes */
#define STORE_MANIFEST_KEY_MAX 255                   /* meta key: 1..255 bytes */
#define STORE_MANIFEST_VALUE_MAX ((size_t)64 << 20)  /* meta value: 0..64 MiB */
#define STORE_MANIFEST_CHUNKS_PER_RECORD 1024        /* ids per CHUNKS record (and item) */
#define STORE_MANIFEST_BLOCK_BYTES 65536             /* plaintext per sealed message */
#define STORE_MANIFEST_SHA256_BYTES 32
#define STORE_MANIFEST_DATA_KEY_BYTES 32

/* The HEADER record. backup_id: 1..64 bytes of [A-Za-z0-9._-], not starting with '.'. */
typedef struct {
    char backup_id[STORE_MANIFEST_ID_MAX + 1];
    int64_t created_ms;  /* wall clock, ms since the epoch */
    uint32_t chunk_size; /* 1..STORE_CHUNK_RAW_MAX */
    uint32_t key_id;     /* the data key the manifest is sealed with */
} store_manifest_header_t;

/* What a FILE record says when it starts; size, checksum and the chunk count come at its end.
 * path: 1..4095 bytes, relative, canonical: no leading '/', no empty, '.' or '..' component,
 * no NUL. mode: st_mode (type and permission bits), as the layer above records it.
 * mtime: seconds since the epoch. */
typedef struct {
    const char *path;
    uint32_t mode;
    int64_t mtime;
} store_manifest_file_t;

typedef enum {
    STORE_MANIFEST_META = 2,
    STORE_MANIFEST_FILE = 3,
    STORE_MANIFEST_CHUNKS = 4,
    STORE_MANIFEST_END = 5,
    STORE_MANIFEST_FILE_END = 6,
} store_manifest_kind_t;

/* One item read from a manifest. Pointers are borrowed from the reader: valid until the next
 * store_manifest_next or store_manifest_close. */
typedef struct {
    store_manifest_kind_t kind;
    union {
        struct {
            const char *key;      /* NUL-terminated, 1..255 bytes, no NUL inside */
            const uint8_t *value; /* len bytes (not NUL-terminated; non-NULL even when 0) */
            size_t len;
        } meta;
        store_manifest_file_t file; /* a FILE starts: CHUNKS items then one FILE_END follow */
        struct {
            const uint8_t *ids; /* n ids of 32 bytes each, in file order */
            size_t n;           /* 1..STORE_MANIFEST_CHUNKS_PER_RECORD */
        } chunks;
        struct {
            const char *path; /* the file that ends (the same as in its FILE item) */
            uint64_t nchunks; /* checked: the number of ids its CHUNKS items gave */
            uint64_t size;
            uint8_t sha256[STORE_MANIFEST_SHA256_BYTES];
        } file_end;
        struct {
            uint64_t nfiles;  /* checked against the FILE records read */
            uint64_t nchunks; /* checked against the chunk ids read (all files) */
        } end;
    };
} store_manifest_item_t;

typedef struct store_manifest_writer store_manifest_writer_t;
typedef struct store_manifest_reader store_manifest_reader_t;

/* ---- writing ---- */

/* Start a manifest that will become path_final at commit. Writes to path_final.tmp.<pid>
 * (mode 0600), sealed under key (32 bytes, copied into the stream state only) whose id is
 * key_id; the HEADER record carries backup_id, created_ms, chunk_size and key_id.
 * *out is owned by the caller: end it with store_manifest_commit or store_manifest_abort.
 * BQ_E_INVAL for a bad backup id or chunk size, BQ_E_EXISTS when path_final exists,
 * BQ_E_IO when the temp file cannot be created or written, BQ_E_NOMEM. */
int store_manifest_create(const char *path_final, const char *backup_id, int64_t created_ms,
                          uint32_t chunk_size, uint32_t key_id,
                          const uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES],
                          store_manifest_writer_t **out, bq_errbuf_t *e);
/* The same, writing to path_final.tmp.<tmp_suffix> (the store names it after the writer's
 * session, so GC can tell a live writer's temp manifest from a dead one's). */
int store_manifest_create_at(const char *path_final, const char *tmp_suffix,
                             const char *backup_id, int64_t created_ms, uint32_t chunk_size,
                             uint32_t key_id, const uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES],
                             store_manifest_writer_t **out, bq_errbuf_t *e);
/* Add a META record: key (NUL-terminated, 1..255 bytes) -> value (len bytes, at most 64 MiB;
 * value may be NULL when len is 0). Allowed anywhere outside a file (before, between or after
 * files). BQ_E_INVAL for a bad key, BQ_E_TOOBIG for a value above 64 MiB, BQ_E_STATE inside a
 * file, BQ_E_IO when writing fails. */
int store_manifest_meta(store_manifest_writer_t *w, const char *key, const void *value, size_t len,
                        bq_errbuf_t *e);
/* Start a file (writes its FILE record). BQ_E_INVAL for a bad path (nothing is written, the
 * writer stays usable), BQ_E_STATE when a file is already open, BQ_E_IO. */
int store_manifest_file_begin(store_manifest_writer_t *w, const store_manifest_file_t *file,
                              bq_errbuf_t *e);
/* Append the next chunk id (32 bytes) of the open file; buffered into CHUNKS records of up to
 * 1024 ids. BQ_E_STATE outside a file, BQ_E_IO. */
int store_manifest_file_chunk(store_manifest_writer_t *w, const uint8_t id[32], bq_errbuf_t *e);
/* End the open file: its remaining CHUNKS, then its FILE_END record (number of chunk ids given,
 * size, checksum of the whole file: store.c makes it the sha256 of the chunk ids). BQ_E_STATE
 * outside a file, BQ_E_IO. */
int store_manifest_file_end(store_manifest_writer_t *w,
                            const uint8_t sha256[STORE_MANIFEST_SHA256_BYTES], uint64_t size,
                            bq_errbuf_t *e);
/* Finish: END record (counts and sha256), final stream message, fsync of the file, then it is
 * linked under path_final (never replacing an existing file: BQ_E_EXISTS), the temp name
 * removed and the directory fsynced. Takes ownership of *w in every case and nulls it; on
 * failure the temp file is removed and nothing appears under path_final. BQ_E_STATE when a
 * file is still open or the writer failed earlier, BQ_E_IO (an fsync that fails is a
 * failure, never retried). */
int store_manifest_commit(store_manifest_writer_t **w, bq_errbuf_t *e);
/* Abandon a manifest: remove the temp file, wipe the key state, free. Accepts NULL and a NULL
 * *w; nulls the caller's pointer. */
void store_manifest_abort(store_manifest_writer_t **w);

/* ---- reading ---- */

/* Give the 32-byte data key whose id is key_id into key; 0, or a negative BQ_E_ code with e
 * filled (BQ_E_NOTFOUND, BQ_E_KEY, ...), which store_manifest_open returns as is. */
typedef int (*store_manifest_key_fn)(void *arg, uint32_t key_id,
                                     uint8_t key[STORE_MANIFEST_DATA_KEY_BYTES], bq_errbuf_t *e);

/* Open a sealed manifest file and read its HEADER. key_lookup(arg, id, key, e) gives the data
 * key named by the file (the copy is wiped once the stream is set up). *out is owned by the
 * caller: store_manifest_close. BQ_E_NOTFOUND when the file is absent, BQ_E_KEY when the key
 * does not open it ("wrong data key for manifest PATH (key 0000002a does not open it)") or the
 * lookup's own error, BQ_E_IO "manifest PATH is damaged: ..." for any damage, BQ_E_NOMEM. */
int store_manifest_open(const char *path, store_manifest_key_fn key_lookup, void *arg,
                        store_manifest_reader_t **out, bq_errbuf_t *e);
/* A reader over len bytes of plaintext record stream ("BQMANIF1" ‖ records) in memory, with the
 * same record decoder and checks as store_manifest_open (for tests, the fuzzer and tools). buf
 * is borrowed: it must outlive the reader. name (may be NULL: "<memory>") is used in messages.
 * The data key id of the HEADER is not checked against anything. Errors as store_manifest_open
 * (BQ_E_IO damage, BQ_E_NOMEM). */
int store_manifest_open_plain(const void *buf, size_t len, const char *name,
                              store_manifest_reader_t **out, bq_errbuf_t *e);
/* The HEADER of an open manifest (borrowed from r). */
const store_manifest_header_t *store_manifest_header(const store_manifest_reader_t *r);
/* The next item: META, FILE, CHUNKS (of the open file), FILE_END, and last END, which is
 * returned only after the counts, the sha256 of the stream and the end of the file (final
 * message, no byte after it) all checked out. Once END was returned, further calls return END
 * again. BQ_E_IO "manifest NAME is damaged: ..." for every damage, then the same error on
 * every later call; BQ_E_NOMEM. Items read before a damage was found must be treated as
 * unverified by the caller (e.g. a restore fails as a whole). */
int store_manifest_next(store_manifest_reader_t *r, store_manifest_item_t *item, bq_errbuf_t *e);
/* Close a reader, wipe its stream state, free. Accepts NULL and a NULL *r; nulls the pointer. */
void store_manifest_close(store_manifest_reader_t **r);

/* Check a path as FILE records require; NULL when it is valid, else why not ("is absolute",
 * "has a '..' component", ...). len is the number of bytes (NUL bytes inside are refused). */
const char *store_manifest_path_problem(const char *path, size_t len);

#endif
