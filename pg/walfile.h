/* PostgreSQL's WAL files as bytes: the page header that starts every WAL segment, and the
 * timeline history files (NNNNNNNN.history). Both come from outside (a server, an
 * archive_command's %p, a peer's store) and are parsed as hostile input: every length is
 * bounded, nothing is read past len.
 *
 * WAL page header (PostgreSQL 15, access/xlog_internal.h), in the server's byte order
 * (little-endian on every platform Barque runs on):
 *     magic u16 (0xD110) ‖ info u16 ‖ tli u32 ‖ pageaddr u64 ‖ rem_len u32 ‖ padding (4)
 * and, on the first page of a segment (info has XLP_LONG_HEADER):
 *     system identifier u64 ‖ segment size u32 ‖ page size u32                  = 40 bytes
 *
 * History file: one line per earlier timeline, "PARENT_TLI<tab>SWITCH_LSN<tab>reason", where
 * SWITCH_LSN ("X/X", hex) is where that timeline ended; blank lines and lines starting with
 * '#' are comments (PostgreSQL's readTimeLineHistory). Timelines ascend, each below the file's
 * own; switch points do not go back. */
#ifndef BQ_PG_WALFILE_H
#define BQ_PG_WALFILE_H

#include "err.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define PG_WAL_PAGE_MAGIC 0xD110u /* PostgreSQL 15 */
#define PG_WAL_SHORT_HEADER 24
#define PG_WAL_LONG_HEADER 40
#define PG_WAL_XLP_LONG_HEADER 0x0002u
#define PG_WAL_XLP_ALL_FLAGS 0x000Fu
#define PG_TLI_HISTORY_MAX 4096 /* entries: far more than any cluster makes */

typedef struct {
    uint16_t magic, info;
    uint32_t tli;
    uint64_t pageaddr;
    uint32_t rem_len;
    int long_header;    /* then the three fields below are set */
    uint64_t sysid;
    uint32_t seg_size;
    uint32_t page_size;
} pg_wal_page_t;

/* Parse the page header at buf (len bytes). BQ_E_INVAL "WAL page header: WHY" for a short
 * buffer, another magic (naming it: a WAL file of another PostgreSQL version), unknown info
 * bits, timeline 0, a long header's impossible segment or page size. */
int pg_wal_page_parse(const void *buf, size_t len, pg_wal_page_t *out, bq_errbuf_t *e);

/* Check that len bytes are WAL file name (24 hex digits, optionally ".partial") of the
 * cluster whose system identifier is sysid (0: do not check) and segment size seg_size (0:
 * any): the first page's long header names the same timeline, segment (pageaddr = segno *
 * seg_size), system identifier and segment size. BQ_E_INVAL naming the file and what differs
 * ("WAL file NAME belongs to system 7.., not 7.."). */
int pg_wal_segment_check(const char *name, const void *buf, size_t len, uint64_t sysid,
                         uint32_t seg_size, bq_errbuf_t *e);

typedef struct {
    uint32_t tli;  /* an earlier timeline */
    uint64_t end;  /* where it ended (the next one's start) */
} pg_tli_entry_t;

/* Parse a history file of timeline file_tli (text, len bytes; no NUL needed) into out (cap
 * entries): *n entries in file order. BQ_E_INVAL "timeline history NNNNNNNN.history line L:
 * WHY" (unreadable line, a timeline not below file_tli or not ascending, a switch point that
 * goes back, a NUL byte); BQ_E_TOOBIG for more than cap entries. */
int pg_tli_history_parse(const char *text, size_t len, uint32_t file_tli, pg_tli_entry_t *out,
                         size_t cap, size_t *n, bq_errbuf_t *e);

/* ---- a receiver's spool: the segment being received, as pg_receivewal keeps it ---- */

/* DIR/NAME.partial, full size (zeros past what came: usable as the segment by a recovery),
 * written in place; NAME once complete. fdatasync moves no extents (the zeros are written). */
typedef struct {
    char dir[PATH_MAX - 64];
    char name[40];     /* the open segment ("" when none) */
    int fd;            /* -1 when none */
    uint64_t off;      /* where the next byte goes */
    uint32_t seg_size;
} pg_wal_spool_t;

/* A spool in directory dir (which exists) for segments of seg_size bytes; nothing open. */
void pg_wal_spool_init(pg_wal_spool_t *s, const char *dir, uint32_t seg_size);
/* Open (creating, zero-filled to full size, fsynced with its directory) NAME.partial; the next
 * byte goes at offset. An existing partial is reused (rewritten in place). BQ_E_IO. */
int pg_wal_spool_begin(pg_wal_spool_t *s, const char *name, uint64_t offset, bq_errbuf_t *e);
int pg_wal_spool_write(pg_wal_spool_t *s, const void *buf, size_t len, bq_errbuf_t *e);
/* Make dir/.prealloc (zero-filled, seg_size bytes, synced; through a temp file, so it is
 * whole whenever it exists) unless it is there: the next pg_wal_spool_begin of a new segment
 * renames it into place. May run on another thread than the spool's. */
int pg_wal_spool_prealloc(const char *dir, uint32_t seg_size, bq_errbuf_t *e);
/* Done with complete segment file path (archived): reused as dir/.prealloc when there is
 * none, zeros written over it in place (its disk blocks and cached pages serve again: no new
 * file to allocate and fill while the server streams), else removed. Readers of a spool
 * segment hold flock LOCK_SH on it and check the name still leads to it after locking; one
 * being read (the lock is taken) is removed, never overwritten. BQ_E_IO. */
int pg_wal_spool_recycle(const char *dir, const char *path, uint32_t seg_size, bq_errbuf_t *e);
/* fdatasync of the open segment (nothing when none is open). */
int pg_wal_spool_sync(pg_wal_spool_t *s, bq_errbuf_t *e);
/* The open segment is complete: closed, NAME.partial renamed NAME, the directory fsynced. */
int pg_wal_spool_complete(pg_wal_spool_t *s, bq_errbuf_t *e);
/* Close the open segment, leaving it NAME.partial (a timeline ended inside it). */
void pg_wal_spool_close(pg_wal_spool_t *s);

#endif
