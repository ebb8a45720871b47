/* Point-in-time recovery against the WAL index (pitr.h). */
#include "pitr.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PITR_TLI_MAX 64            /* timelines looked at */
#define PITR_SEGMENTS_MAX 4000000u /* segments walked, at most (64 TiB of 16 MiB ones) */

int pitr_backup_before(const bq_backup_t *b, const bq_recovery_t *r)
{
    if (strcmp(r->kind, "time") == 0)
        return b->stop_ms <= r->time_ms;
    if (strcmp(r->kind, "lsn") == 0)
        return b->stop_lsn <= r->lsn;
    return 1;
}

/* What the index holds of one cluster: its timelines, the highest segment of each, and the
 * segment size (from the first complete segment). */
typedef struct {
    uint32_t tlis[PITR_TLI_MAX];
    size_t ntlis;
    int history[PITR_TLI_MAX];
    uint64_t seg_size;
    uint64_t last[PITR_TLI_MAX];   /* highest segment number + 1 (0: none) */
} wal_view_t;

static int tli_slot(wal_view_t *v, uint32_t tli)
{
    for (size_t i = 0; i < v->ntlis; i++)
        if (v->tlis[i] == tli)
            return (int)i;
    if (v->ntlis == PITR_TLI_MAX)
        return -1;
    v->tlis[v->ntlis] = tli;
    return (int)v->ntlis++;
}

static uint64_t per_log(uint64_t seg)
{
    return seg && (seg & (seg - 1)) == 0 && seg >= (1u << 20) && seg <= (1u << 30)
               ? 0x100000000ull / seg
               : 256;
}

static int view_visit(const bq_wal_file_t *w, void *arg)
{
    wal_view_t *v = arg;
    uint32_t tli, hi, lo;
    if (strlen(w->name) == 16 && strcmp(w->name + 8, ".history") == 0) {
        tli = (uint32_t)strtoul(w->name, NULL, 16);
        int k = tli_slot(v, tli);
        if (k >= 0)
            v->history[k] = 1;
        return 0;
    }
    if (bq_wal_segment_parse(w->name, &tli, &hi, &lo) != 0)
        return 0; /* .partial, .backup */
    if (!v->seg_size)
        v->seg_size = w->size;
    int k = tli_slot(v, tli);
    uint64_t n = (uint64_t)hi * per_log(v->seg_size) + lo;
    if (k >= 0 && n + 1 > v->last[k])
        v->last[k] = n + 1;
    return 0;
}

static void seg_name(uint32_t tli, uint64_t n, uint64_t per, char out[32])
{
    snprintf(out, 32, "%08X%08X%08X", (unsigned)tli, (unsigned)(n / per), (unsigned)(n % per));
}

static const char *lsn_str(uint64_t lsn, char buf[24])
{
    snprintf(buf, 24, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
    return buf;
}

static void time_str(int64_t ms, char buf[40])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, 40, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

int pitr_check(catalog_txn_t *t, const bq_backup_t *b, const bq_recovery_t *r, int streams,
               int64_t now_ms, bq_errbuf_t *e)
{
    char tb[40], lb[24];
    const char *kind = r->kind;
    if (strcmp(kind, "time") == 0 && r->time_ms > now_ms + 1000) {
        time_str(r->time_ms, tb);
        return bq_fail(e, BQ_E_STATE, "the target time %s is in the future", tb);
    }
    if (!pitr_backup_before(b, r)) {
        if (strcmp(kind, "time") == 0) {
            time_str(b->stop_ms, tb);
            return bq_fail(e, BQ_E_STATE, "backup %s of cluster %s ends at %s, after the target "
                           "time %s", b->id, b->cluster, tb, r->value);
        }
        return bq_fail(e, BQ_E_STATE, "backup %s of cluster %s ends at LSN %s, after the target "
                       "LSN %s", b->id, b->cluster, lsn_str(b->stop_lsn, lb), r->value);
    }
    if (strcmp(kind, "immediate") == 0 || !b->wal_begin[0])
        return 0; /* the backup carries the WAL to its end */
    wal_view_t *v = calloc(1, sizeof *v);
    if (!v)
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    int rc = catalog_wal_each(t, b->cluster, view_visit, v, e);
    if (rc > 0)
        rc = 0;
    /* the timelines a recovery may follow: the backup's up to the target's */
    uint32_t btli = b->timeline ? b->timeline : (uint32_t)strtoul(b->wal_begin, NULL, 16);
    uint32_t tmax = btli;
    if (rc == 0 && strcmp(r->tli, "current") != 0) {
        if (r->tli[0] && strcmp(r->tli, "latest") != 0) {
            tmax = (uint32_t)strtoul(r->tli, NULL, 10);
            int k = -1;
            for (size_t i = 0; i < v->ntlis; i++)
                if (v->tlis[i] == tmax)
                    k = (int)i;
            if (tmax < btli)
                rc = bq_fail(e, BQ_E_STATE, "target timeline %u is older than timeline %u of "
                             "backup %s: the backup is not on it", tmax, btli, b->id);
            else if (tmax != btli && (k < 0 || !v->history[k]))
                rc = bq_fail(e, BQ_E_STATE, "target timeline %u is not in the archive (no "
                             "%08X.history in the WAL index of cluster %s)", tmax, tmax,
                             b->cluster);
        } else {
            for (size_t i = 0; i < v->ntlis; i++)
                if (v->history[i] && v->tlis[i] > tmax)
                    tmax = v->tlis[i];
        }
    }
    uint32_t h, l, bt;
    if (rc == 0 && bq_wal_segment_parse(b->wal_begin, &bt, &h, &l) != 0)
        rc = bq_fail(e, BQ_E_STATE, "backup %s has no WAL start segment", b->id);
    if (rc) {
        free(v);
        return rc;
    }
    uint64_t seg = v->seg_size ? v->seg_size : (16u << 20), per = per_log(seg);
    uint64_t n0 = (uint64_t)h * per + l, last = 0; /* last: highest segment + 1 on the chain */
    for (size_t i = 0; i < v->ntlis; i++)
        if (v->tlis[i] >= btli && v->tlis[i] <= tmax && v->last[i] > last)
            last = v->last[i];
    uint64_t target_n = UINT64_MAX;
    if (strcmp(kind, "lsn") == 0)
        target_n = r->lsn / seg;
    int is_time = strcmp(kind, "time") == 0;
    char name[32], missing[32] = "";
    uint64_t n = n0;
    int reached = 0;
    int64_t prev_ms = 0; /* when the segment before the one looked at was archived */
    uint32_t low = btli; /* a replay that read a segment of timeline T never reads a lower one */
    for (uint64_t k = 0; k < PITR_SEGMENTS_MAX && !reached && !missing[0]; k++, n++) {
        int found = 0;
        for (uint32_t tl = tmax; tl >= low && tl > 0 && !found; tl--) {
            bq_wal_file_t w;
            bq_errbuf_t ge;
            seg_name(tl, n, per, name);
            if (catalog_wal_get(t, b->cluster, name, &w, &ge) == 0) {
                found = 1;
                low = tl;
                if (k > 0 && is_time && prev_ms >= r->time_ms)
                    reached = 1;
                prev_ms = w.archived_ms;
            }
            if (tl == low)
                break;
        }
        if (n == target_n && found)
            reached = 1;
        if (!found) {
            seg_name(low, n, per, missing);
            /* a segment archived after the target time may hold the target: PostgreSQL says
             * so if it does not (recovery ended before the target); refuse only what is sure */
            if (is_time && k > 0 && prev_ms >= r->time_ms)
                reached = 1;
        }
    }
    free(v);
    if (reached || !missing[0])
        return 0;
    n--; /* the missing one */
    if (n < last)
        return bq_fail(e, BQ_E_STATE, "WAL segment %s of cluster %s is missing from the archive "
                       "(a gap in the WAL index after backup %s): recovery cannot replay past "
                       "it; recover to a --target-time or --target-lsn before it", missing,
                       b->cluster, b->id);
    /* the end of the archive */
    if (!is_time && target_n == UINT64_MAX)
        return 0; /* to the end, an xid or a name: recovery ends where the archive does */
    /* the segment being streamed, which wal-get serves from the receiver's spool, can hold
     * a time target or an LSN target in it, nothing beyond */
    if (streams && n == (last ? last : n0) && (is_time || n == target_n))
        return 0;
    if (is_time)
        return bq_fail(e, BQ_E_STATE, "the archive of cluster %s ends before the target time "
                       "%s: segment %s is not archived yet", b->cluster, r->value, missing);
    return bq_fail(e, BQ_E_STATE, "the archive of cluster %s ends before the target LSN %s: "
                   "segment %s is not archived yet", b->cluster, r->value, missing);
}
