/* Retention decisions, as Barman makes them (retention.h). */
#include "retention.h"

#include <stdio.h>
#include <string.h>

#define MS_DAY INT64_C(86400000)
#define WORDS_MAX 6 /* more words than any policy has: enough to say it is not one */

static const char EXPECTED[] = "expected REDUNDANCY n or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS";

static void say(char *why, size_t whylen, const char *msg)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", msg);
}

/* Python's \s on ASCII, with no locale. */
static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The word [w, w+n) is kw, ignoring ASCII case (kw is lowercase). */
static int word_is(const char *w, size_t n, const char *kw)
{
    if (strlen(kw) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = w[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != kw[i])
            return 0;
    }
    return 1;
}

/* The word is decimal digits (Barman's \d+): 0 and its value, capped past the maximum, else -1. */
static int word_number(const char *w, size_t n, uint32_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < '0' || w[i] > '9')
            return -1;
        if (x <= RETENTION_N_MAX)
            x = x * 10 + (uint64_t)(w[i] - '0');
    }
    *v = x > RETENTION_N_MAX ? RETENTION_N_MAX + 1 : (uint32_t)x;
    return 0;
}

int retention_policy_parse(const char *s, retention_policy_t *p, char *why, size_t whylen)
{
    memset(p, 0, sizeof *p);
    /* Barman's expressions are words separated by \s+ with \s* around: split on blanks. */
    const char *w[WORDS_MAX];
    size_t len[WORDS_MAX], nw = 0;
    for (const char *c = s ? s : ""; *c;) {
        if (blank(*c)) {
            c++;
            continue;
        }
        const char *start = c;
        while (*c && !blank(*c))
            c++;
        if (nw == WORDS_MAX) {
            say(why, whylen, EXPECTED);
            return -1;
        }
        w[nw] = start;
        len[nw++] = (size_t)(c - start);
    }
    if (nw == 0)
        return 0; /* RETENTION_NONE */

    retention_policy_t r = {RETENTION_NONE, 0, 0};
    const char *num = NULL;
    size_t numlen = 0;
    if (nw == 2 && word_is(w[0], len[0], "redundancy")) {
        r.kind = RETENTION_REDUNDANCY;
        num = w[1];
        numlen = len[1];
    } else if (nw == 5 && word_is(w[0], len[0], "recovery") && word_is(w[1], len[1], "window") &&
               word_is(w[2], len[2], "of")) {
        /* (day|month|week)s? */
        static const struct { const char *one, *many; char unit; } units[] = {
            {"day", "days", 'd'}, {"week", "weeks", 'w'}, {"month", "months", 'm'}};
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (word_is(w[4], len[4], units[i].one) || word_is(w[4], len[4], units[i].many))
                r.unit = units[i].unit;
        if (r.unit) {
            r.kind = RETENTION_WINDOW;
            num = w[3];
            numlen = len[3];
        }
    }
    if (!num || word_number(num, numlen, &r.value) != 0) {
        say(why, whylen, EXPECTED);
        return -1;
    }
    if (r.value < 1) {
        say(why, whylen, "n must be at least 1");
        return -1;
    }
    if (r.value > RETENTION_N_MAX) {
        say(why, whylen, "n must be at most 100000");
        return -1;
    }
    *p = r;
    return 0;
}

static const char *unit_word(char unit)
{
    switch (unit) {
    case 'd': return "DAYS";
    case 'w': return "WEEKS";
    case 'm': return "MONTHS";
    default: return NULL;
    }
}

void retention_policy_format(const retention_policy_t *p, char *buf, size_t len)
{
    if (!len)
        return;
    buf[0] = '\0';
    if (p->kind == RETENTION_REDUNDANCY)
        snprintf(buf, len, "REDUNDANCY %u", (unsigned)p->value);
    else if (p->kind == RETENTION_WINDOW && unit_word(p->unit))
        snprintf(buf, len, "RECOVERY WINDOW OF %u %s", (unsigned)p->value, unit_word(p->unit));
}

int64_t retention_window_ms(const retention_policy_t *p)
{
    if (p->kind != RETENTION_WINDOW)
        return 0;
    int64_t days = p->unit == 'd' ? 1 : p->unit == 'w' ? 7 : p->unit == 'm' ? 31 : 0;
    return (int64_t)p->value * days * MS_DAY;
}

const char *retention_status_name(retention_status_t s)
{
    switch (s) {
    case RETENTION_STATUS_NONE: return "-";
    case RETENTION_STATUS_VALID: return "VALID";
    case RETENTION_STATUS_OBSOLETE: return "OBSOLETE";
    case RETENTION_STATUS_KEEP_FULL: return "KEEP:FULL";
    case RETENTION_STATUS_KEEP_STANDALONE: return "KEEP:STANDALONE";
    }
    return "?";
}

/* A DONE backup's keep status, or NONE when it has none (Barman's get_keep_target: any
 * target other than standalone counts as full, for safety). */
static retention_status_t keep_status(const retention_backup_t *b)
{
    if (b->keep == RETENTION_KEEP_NONE)
        return RETENTION_STATUS_NONE;
    return b->keep == RETENTION_KEEP_STANDALONE ? RETENTION_STATUS_KEEP_STANDALONE
                                                : RETENTION_STATUS_KEEP_FULL;
}

void retention_classify(const retention_policy_t *p, uint32_t minimum_redundancy, int64_t now_ms,
                        const retention_backup_t *b, size_t n, retention_status_t *out)
{
    int64_t window = retention_window_ms(p);
    int kind = p->kind == RETENTION_WINDOW && window == 0 ? RETENTION_NONE : (int)p->kind;
    /* REDUNDANCY below minimum_redundancy is raised to it (Barman warns and enforces it). */
    uint64_t redundancy = p->value < minimum_redundancy ? minimum_redundancy : p->value;
    int64_t por = now_ms - window; /* the point of recoverability */
    uint64_t counted = 0;          /* DONE backups seen (REDUNDANCY), or valid ones (WINDOW) */
    int found = 0;                 /* WINDOW: the first backup ending before por was seen */

    /* Newest first, as Barman walks sorted(ids, reverse=True). */
    for (size_t k = n; k-- > 0;) {
        if (!b[k].done) {
            out[k] = RETENTION_STATUS_NONE;
            continue;
        }
        retention_status_t keep = keep_status(&b[k]);
        if (kind == RETENTION_REDUNDANCY) {
            /* Every DONE backup takes a place, kept ones too. */
            out[k] = keep ? keep : counted < redundancy ? RETENTION_STATUS_VALID : RETENTION_STATUS_OBSOLETE;
            counted++;
        } else if (kind == RETENTION_WINDOW) {
            if (!found) {
                /* Inside the window, or the newest backup that ends before it: the base a
                 * recovery to the point of recoverability starts from. Barman compares
                 * end_time < point_of_recoverability strictly, so a backup ending exactly
                 * at now - window does not yet close the window. */
                out[k] = keep ? keep : RETENTION_STATUS_VALID;
                counted++;
                if (b[k].end_ms < por)
                    found = 1;
            } else if (counted < minimum_redundancy) {
                /* Barman's POTENTIALLY_OBSOLETE: kept for minimum_redundancy. */
                out[k] = keep ? keep : RETENTION_STATUS_VALID;
                counted++;
            } else {
                out[k] = keep ? keep : RETENTION_STATUS_OBSOLETE;
            }
        } else {
            out[k] = keep ? keep : RETENTION_STATUS_VALID;
        }
    }
}

int retention_may_delete(size_t done_count, uint32_t minimum_redundancy)
{
    return done_count > minimum_redundancy;
}

static int hex_upper(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

/* The segment name a WAL file is judged by (its first 24 characters, into seg), or -1 for a
 * name that is no segment, SEG.partial or SEG.XXXXXXXX.backup. */
static int file_segment(const char *name, char seg[25])
{
    size_t n = strnlen(name, 64);
    if (n < 24)
        return -1;
    memcpy(seg, name, 24);
    seg[24] = '\0';
    uint32_t tli, hi, lo;
    if (bq_wal_segment_parse(seg, &tli, &hi, &lo) != 0)
        return -1;
    const char *rest = name + 24;
    if (*rest == '\0' || strcmp(rest, ".partial") == 0)
        return 0;
    if (n == 40 && rest[0] == '.' && hex_upper(rest + 1, 8) && strcmp(rest + 9, ".backup") == 0)
        return 0;
    return -1;
}

int retention_wal_prunable(const char *name, const char *keep_from, const retention_wal_range_t *ranges,
                           size_t nranges)
{
    uint32_t tli, hi, lo;
    char seg[25];
    if (!name || !keep_from || bq_wal_segment_parse(keep_from, &tli, &hi, &lo) != 0)
        return 0; /* nothing to prune from */
    /* History files are kept (Barman keeps them always), as is any name not understood. */
    if (file_segment(name, seg) != 0)
        return 0;
    if (memcmp(seg, keep_from, 8) != 0)
        return 0; /* another timeline */
    if (strcmp(seg, keep_from) >= 0)
        return 0; /* the oldest backup that stays needs it */
    for (size_t i = 0; i < nranges; i++)
        if (strcmp(ranges[i].begin, seg) <= 0 && strcmp(seg, ranges[i].end) <= 0)
            return 0; /* a standalone backup's own WAL */
    return 1;
}

void retention_keep_from(const retention_stay_t *s, size_t n, char *out, size_t outlen)
{
    if (!outlen)
        return;
    out[0] = '\0';
    if (n == 0)
        return;
    const char *from = s[n - 1].wal_begin; /* all standalone: the newest one's */
    for (size_t i = 0; i < n; i++)
        if (!s[i].standalone) {
            from = s[i].wal_begin;
            break;
        }
    snprintf(out, outlen, "%s", from ? from : "");
}
