/* A streaming parser for the tar archives PostgreSQL's BASE_BACKUP sends.
 *
 * PostgreSQL 15 writes POSIX ustar headers (src/port/tar.c: names of at most 99 bytes, a '/'
 * after the names of directories and of the symlinks in pg_tblspc, numbers in octal followed
 * by a space, sizes above 8 GiB in GNU base-256), and ends each archive with two zero blocks.
 * The parser also reads what GNU tar and bsdtar write (GNU magic, 'L'/'K' long names, pax 'x'
 * headers with path, linkpath, size, mtime, uid, gid), so that archives from other tools and
 * tests can be fed to it.
 *
 * The stream is hostile input. Every header's checksum is verified, numbers are parsed
 * strictly (octal digits then only NUL or space; base-256 only positive and below 2^63),
 * extended headers are bounded (PG_TAR_PATH_MAX for names, PG_TAR_PAX_MAX for pax records),
 * paths are refused when absolute, with an empty, "." or ".." component (after a leading "./"),
 * or a NUL byte, and
 * anything but zero bytes after the end-of-archive blocks is refused. Memory is the parser
 * itself (about 34 KiB), whatever the archive holds: file data goes to the callback straight
 * from the caller's buffer.
 *
 * Errors are sticky: after one, every call returns the same code and message. */
#ifndef BQ_PG_TAR_H
#define BQ_PG_TAR_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define PG_TAR_BLOCK 512
#define PG_TAR_PATH_MAX 4096  /* bytes of a path or link target, with its NUL */
#define PG_TAR_PAX_MAX 16384  /* bytes of one pax extended header */

typedef enum {
    PG_TAR_FILE = 0,
    PG_TAR_DIR = 1,
    PG_TAR_SYMLINK = 2,
    PG_TAR_HARDLINK = 3,
} pg_tar_type_t;

/* "file", "directory", "symlink", "hardlink". */
const char *pg_tar_type_name(pg_tar_type_t t);

/* One entry, valid during the begin callback only (copy what you keep). */
typedef struct {
    const char *path;     /* relative, canonical: no leading or trailing '/', no "", "." or
                             ".." component; directories and symlinks lose the '/', and a
                             leading "./" (PostgreSQL's "./pg_wal/archive_status") is dropped;
                             the "./" entry of the root itself is skipped */
    pg_tar_type_t type;
    uint32_t mode;        /* permission bits (& 07777) */
    uint64_t uid, gid;
    uint64_t size;        /* bytes of data that follow: 0 except for files */
    int64_t mtime;        /* seconds since 1970, never negative */
    const char *link;     /* target of a symlink (any non-empty string without NUL) or of a
                             hardlink (a path as above, leading "./" dropped); "" for files
                             and directories */
    uint64_t offset;      /* byte offset of the entry's first header in the stream */
} pg_tar_entry_t;

/* Callbacks return 0, or a negative BQ_E_* code (with e filled) that stops the parser: the
 * feed call returns that code and message, and the parser stays failed. Any may be NULL. */
typedef struct {
    int (*begin)(void *arg, const pg_tar_entry_t *entry, bq_errbuf_t *e);
    /* Pieces of the current file's data, in order; their lengths add up to entry->size. */
    int (*data)(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e);
    /* After the last piece (or at once for entries without data). */
    int (*end)(void *arg, bq_errbuf_t *e);
    /* After the second zero block. */
    int (*archive_end)(void *arg, bq_errbuf_t *e);
} pg_tar_callbacks_t;

typedef struct pg_tar pg_tar_t;

/* A parser for one archive. name (e.g. "base.tar") is copied and starts every error message:
 * "tar archive base.tar: ...". cb is copied; arg is passed to the callbacks.
 * *out is freed by pg_tar_destroy. Errors: BQ_E_INVAL, BQ_E_NOMEM. */
int pg_tar_new(const char *name, const pg_tar_callbacks_t *cb, void *arg, pg_tar_t **out,
               bq_errbuf_t *e);

/* Parse the next len bytes of the stream; any split of the stream is fine (one byte at a
 * time too). Errors: BQ_E_PROTO for a malformed archive, naming the entry and the byte
 * offset; or what a callback returned. */
int pg_tar_feed(pg_tar_t *t, const void *buf, size_t len, bq_errbuf_t *e);

/* The stream has ended: 0 when the end-of-archive blocks were seen, else BQ_E_PROTO
 * ("truncated ..." naming where it stopped). */
int pg_tar_finish(pg_tar_t *t, bq_errbuf_t *e);

/* Bytes fed so far, and 1 once the end-of-archive blocks were seen. */
uint64_t pg_tar_offset(const pg_tar_t *t);
int pg_tar_ended(const pg_tar_t *t);

/* Accepts NULL; nulls *t. */
void pg_tar_destroy(pg_tar_t **t);

/* 0 when path[0..len) is a canonical relative path as above, else a static reason. */
const char *pg_tar_path_problem(const char *path, size_t len);

#endif
