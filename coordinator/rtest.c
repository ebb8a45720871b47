/* Restore tests' arithmetic (issue 7); see rtest.h. */
#include "rtest.h"

#include "clock.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define RATE_MIN_WAL (4u << 20) /* less replayed WAL than this gives no rate */


static double mb(uint64_t b) { return (double)b / 1e6; }

int64_t rtest_predict(const bq_restore_test_t *t, uint64_t data_bytes, uint64_t wal_bytes,
                      char *detail, size_t len)
{
    if (detail && len)
        detail[0] = '\0';
    if (!t || t->fetch_ms <= 0 || t->bytes == 0 || t->rto_ms <= 0)
        return 0;
    double fetch = (double)data_bytes * (double)t->fetch_ms / (double)t->bytes;
    double fetch_rate = (double)t->bytes / (double)t->fetch_ms / 1000.0; /* MB/s */
    int rated = t->wal_bytes >= RATE_MIN_WAL && t->replay_ms > 0;
    double replay = rated ? (double)wal_bytes * (double)t->replay_ms / (double)t->wal_bytes
                          : (double)(t->replay_ms > 0 ? t->replay_ms : 0);
    int64_t other = t->rto_ms - t->fetch_ms - t->start_ms - t->replay_ms;
    if (other < 0)
        other = 0;
    double total = fetch + (double)(t->start_ms > 0 ? t->start_ms : 0) + replay + (double)other;
    if (detail && len) {
        char st[32], rp[32], ot[32];
        bq_duration_text(t->start_ms, st, sizeof st);
        bq_duration_text(other, ot, sizeof ot);
        if (rated)
            snprintf(rp, sizeof rp, "%.1f MB/s", (double)t->wal_bytes / (double)t->replay_ms / 1000.0);
        else
            bq_duration_text(t->replay_ms, rp, sizeof rp);
        snprintf(detail, len, "%.1f MB at %.1f MB/s + %s start + %.1f MB WAL %s %s + %s other",
                 mb(data_bytes), fetch_rate, st, mb(wal_bytes), rated ? "at" : "in (as measured)",
                 rp, ot);
    }
    return (int64_t)(total + 0.5);
}

int64_t rtest_drill_time(int64_t lo_ms, int64_t hi_ms, uint64_t rnd)
{
    if (hi_ms <= lo_ms)
        return lo_ms;
    uint64_t span = (uint64_t)(hi_ms - lo_ms) + 1;
    return lo_ms + (int64_t)(rnd % span);
}

int rtest_item(const bq_restore_test_t *last, const bq_restore_test_t *ok, int64_t max_age_ms,
               int64_t now_ms, char *detail, size_t len)
{
    char age[32], lim[32], rto[32];
    if (!last && max_age_ms <= 0)
        return -1;
    if (last && !last->ok) {
        snprintf(detail, len, "last restore test FAILED (job %" PRIu64 ", backup %s): %s",
                 last->job_id, last->backup_id, last->error[0] ? last->error : "no reason given");
        return BQ_SEV_CRITICAL;
    }
    if (max_age_ms > 0 && !ok) {
        snprintf(detail, len, "no restore test has passed (restore_test_max_age %s)",
                 bq_duration_text(max_age_ms, lim, sizeof lim));
        return BQ_SEV_CRITICAL;
    }
    if (!ok)
        return -1;
    bq_duration_text(now_ms - ok->finished_ms, age, sizeof age);
    if (max_age_ms > 0 && now_ms - ok->finished_ms > max_age_ms) {
        snprintf(detail, len, "the last restore test that passed (job %" PRIu64 ", backup %s) is "
                 "%s old, more than restore_test_max_age %s", ok->job_id, ok->backup_id, age,
                 bq_duration_text(max_age_ms, lim, sizeof lim));
        return BQ_SEV_CRITICAL;
    }
    snprintf(detail, len, "passed %s ago (job %" PRIu64 ", backup %s), recovery time %s", age,
             ok->job_id, ok->backup_id, bq_duration_text(ok->rto_ms, rto, sizeof rto));
    return BQ_SEV_OK;
}
