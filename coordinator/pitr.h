/* Point-in-time recovery's questions to the catalog (barque recover --target-*): which backup
 * a target starts from (BACKUP_ID auto), and whether the WAL index can take a recovery from
 * that backup to the target. Pure functions of a read transaction. */
#ifndef BQ_COORD_PITR_H
#define BQ_COORD_PITR_H

#include "catalog.h"
#include "types.h"

/* Whether backup b (DONE) ends before target r: its stop time (time) or stop LSN (lsn) is
 * not after the target; any backup for the other kinds. */
int pitr_backup_before(const bq_backup_t *b, const bq_recovery_t *r);

/* Can a recovery from backup b reach target r with the WAL in the index of b's cluster?
 * streams: the cluster streams its WAL (the segment being received is not indexed yet, but
 * wal-get serves it). 0, or BQ_E_STATE with e saying why: a timeline not in the archive or
 * older than the backup's, a time in the future (now_ms), a segment missing between the
 * backup and the target (or, with no time or LSN target, anywhere after the backup: recovery
 * would stop there), the archive ending before a time or LSN target. */
int pitr_check(catalog_txn_t *t, const bq_backup_t *b, const bq_recovery_t *r, int streams,
               int64_t now_ms, bq_errbuf_t *e);

#endif
