/* list-wal's summary of a cluster's WAL index (wal_summary.h). */
#include "wal_summary.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wal_summary_init(wal_summary_t *s)
{
    memset(s, 0, sizeof *s);
}

void wal_summary_clear(wal_summary_t *s)
{
    if (!s)
        return;
    free(s->tl);
    memset(s, 0, sizeof *s);
}

static uint32_t hex8(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 4) | (uint32_t)(p[i] <= '9' ? p[i] - '0' : p[i] - 'A' + 10);
    return v;
}

static int seg_size_valid(uint64_t n)
{
    return n >= (1u << 20) && n <= (1u << 30) && (n & (n - 1)) == 0;
}

static uint64_t segs_per_hi(const wal_summary_t *s)
{
    return (UINT64_C(1) << 32) / s->seg_size;
}

static void seg_name(const wal_summary_t *s, uint32_t tli, uint64_t segno, char *buf, size_t len)
{
    uint64_t per = segs_per_hi(s);
    snprintf(buf, len, "%08" PRIX32 "%08" PRIX32 "%08" PRIX32, tli, (uint32_t)(segno / per),
             (uint32_t)(segno % per));
}

/* The segments from..to (inclusive) of the last timeline are missing. */
static void gap_add(wal_summary_t *s, uint64_t from, uint64_t to)
{
    bq_wal_timeline_t *t = &s->tl[s->ntl - 1];
    if (t->ngaps >= WAL_SUMMARY_GAPS) {
        s->more_missing += to - from + 1;
        return;
    }
    char a[BQ_WAL_FILE_MAX], b[BQ_WAL_FILE_MAX];
    seg_name(s, t->tli, from, a, sizeof a);
    if (from == to) {
        snprintf(t->gaps[t->ngaps++], BQ_WAL_GAP_MAX, "%s", a);
    } else {
        seg_name(s, t->tli, to, b, sizeof b);
        snprintf(t->gaps[t->ngaps++], BQ_WAL_GAP_MAX, "%s-%s", a, b);
    }
}

/* The last timeline is complete: say how much its lists left out. */
static void timeline_close(wal_summary_t *s)
{
    if (!s->ntl)
        return;
    bq_wal_timeline_t *t = &s->tl[s->ntl - 1];
    if (s->more_missing)
        snprintf(t->gaps[t->ngaps++], BQ_WAL_GAP_MAX, "... %" PRIu64 " more missing segment%s",
                 s->more_missing, s->more_missing == 1 ? "" : "s");
    if (s->more_partials)
        snprintf(t->partials[t->npartials++], BQ_WAL_FILE_MAX, "... %" PRIu64 " more partial%s",
                 s->more_partials, s->more_partials == 1 ? "" : "s");
    s->more_missing = s->more_partials = 0;
    s->last_segno = 0;
}

int wal_summary_add(wal_summary_t *s, const char *name, uint64_t size, bq_errbuf_t *e)
{
    if (!bq_wal_name_valid(name))
        return bq_fail(e, BQ_E_INVAL, "WAL index: \"%.*s\" is not a WAL file name",
                       BQ_WAL_FILE_MAX, name ? name : "");
    uint32_t tli = hex8(name);
    if (!s->ntl || s->tl[s->ntl - 1].tli != tli) {
        if (s->ntl && s->tl[s->ntl - 1].tli > tli)
            return bq_fail(e, BQ_E_INVAL, "WAL index: %s comes after timeline %" PRIu32 "'s files",
                           name, s->tl[s->ntl - 1].tli);
        if (s->ntl >= WAL_SUMMARY_TIMELINES)
            return bq_fail(e, BQ_E_TOOBIG, "WAL index: more than %d timelines",
                           WAL_SUMMARY_TIMELINES);
        timeline_close(s);
        if (s->ntl == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 4;
            bq_wal_timeline_t *p = realloc(s->tl, cap * sizeof *p);
            if (!p)
                return bq_fail(e, BQ_E_NOMEM, "out of memory summing up the WAL index");
            s->tl = p;
            s->cap = cap;
        }
        bq_wal_timeline_t *t = &s->tl[s->ntl++];
        memset(t, 0, sizeof *t);
        t->tli = tli;
    }
    bq_wal_timeline_t *t = &s->tl[s->ntl - 1];
    size_t n = strlen(name);
    if (n == 16) { /* TLI.history */
        t->history = 1;
        return 0;
    }
    if (n == 32) { /* NAME.partial */
        if (t->npartials < WAL_SUMMARY_PARTIALS)
            snprintf(t->partials[t->npartials++], BQ_WAL_FILE_MAX, "%s", name);
        else
            s->more_partials++;
        return 0;
    }
    if (!s->seg_size)
        s->seg_size = seg_size_valid(size) ? (uint32_t)size : WAL_SUMMARY_SEG_DEFAULT;
    uint64_t per = segs_per_hi(s), hi = hex8(name + 8), lo = hex8(name + 16);
    uint64_t segno = hi * per + lo;
    int in_range = lo < per;
    if (t->segments == 0) {
        snprintf(t->first, sizeof t->first, "%s", name);
        s->last_segno = segno;
    } else if (in_range && segno > s->last_segno) {
        if (segno > s->last_segno + 1)
            gap_add(s, s->last_segno + 1, segno - 1);
        s->last_segno = segno;
    }
    snprintf(t->last, sizeof t->last, "%s", name);
    t->segments++;
    t->bytes += size;
    return 0;
}

void wal_summary_end(wal_summary_t *s, bq_wal_timeline_t **out, size_t *n)
{
    timeline_close(s);
    *out = s->ntl ? s->tl : NULL;
    *n = s->ntl;
    if (!s->ntl)
        free(s->tl);
    memset(s, 0, sizeof *s);
}
