/* What list-wal shows of a cluster's WAL index: per timeline (the first 8 hex digits of each
 * name), the first and last complete segment, how many there are and their bytes, the
 * segments missing between first and last (at most WAL_SUMMARY_GAPS ranges, then one line
 * "... N more missing segments"), whether TLI.history is recorded, and the NAME.partial
 * files (at most WAL_SUMMARY_PARTIALS, then "... N more partials").
 *
 * Pure: no catalog, no I/O. Files come one at a time in the catalog's name order
 * (catalog_wal_each), so memory grows with the timelines, never with the segments.
 *
 * Segment arithmetic is PostgreSQL's: NAME = TLI (8 hex) ‖ hi (8 hex) ‖ lo (8 hex), and
 * segno = hi × (2^32 / seg_size) + lo. The coordinator is not told a cluster's
 * wal_segment_size, so it is taken from the size of the first complete segment recorded
 * (archived segments are exactly seg_size bytes, store_wal_check) when that is a power of two
 * from 1 MiB to 1 GiB, else PostgreSQL's default of 16 MiB. A segment whose lo is not below
 * 2^32 / seg_size (no such name exists at that size) counts, but makes no gap. */
#ifndef BQ_WAL_SUMMARY_H
#define BQ_WAL_SUMMARY_H

#include "err.h"
#include "types.h"

#include <stddef.h>
#include <stdint.h>

#define WAL_SUMMARY_GAPS 32          /* gap ranges listed per timeline */
#define WAL_SUMMARY_PARTIALS 32      /* partial files listed per timeline */
#define WAL_SUMMARY_TIMELINES 1000   /* timelines per cluster, at most */
#define WAL_SUMMARY_SEG_DEFAULT (16u << 20)

typedef struct {
    uint32_t seg_size;        /* 0 until the first complete segment */
    bq_wal_timeline_t *tl;    /* owned; ascending tli */
    size_t ntl, cap;
    uint64_t last_segno;      /* of the last timeline's last complete segment */
    uint64_t more_missing;    /* of the last timeline: missing segments past the listed ranges */
    uint64_t more_partials;   /* ... and partial files past the listed ones */
} wal_summary_t;

void wal_summary_init(wal_summary_t *s);
/* One recorded file (size: its bytes). Names must come in ascending byte order: BQ_E_INVAL for
 * a name that is not a WAL file name (bq_wal_name_valid) or comes after a later timeline's,
 * BQ_E_TOOBIG past WAL_SUMMARY_TIMELINES timelines, BQ_E_NOMEM. After a failure only
 * wal_summary_clear may be called. */
int wal_summary_add(wal_summary_t *s, const char *name, uint64_t size, bq_errbuf_t *e);
/* Close the last timeline and hand over the array (*out, free() it; NULL when *n is 0);
 * s is left empty. */
void wal_summary_end(wal_summary_t *s, bq_wal_timeline_t **out, size_t *n);
/* Free what s holds. Accepts NULL. */
void wal_summary_clear(wal_summary_t *s);

#endif
