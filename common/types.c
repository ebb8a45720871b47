#include "types.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

const char *bq_job_type_name(bq_job_type_t t)
{
    switch (t) {
    case BQ_JOB_CHECK: return "check";
    case BQ_JOB_SLEEP: return "sleep";
    case BQ_JOB_BACKUP: return "backup";
    case BQ_JOB_RESTORE: return "restore";
    case BQ_JOB_LIST_FILES: return "list-files";
    case BQ_JOB_DELETE: return "delete";
    case BQ_JOB_WAL_STREAM: return "wal-stream";
    case BQ_JOB_SWITCH_WAL: return "switch-wal";
    case BQ_JOB_WAL_PRUNE: return "wal-prune";
    case BQ_JOB_INVENTORY: return "inventory";
    case BQ_JOB_KEEP: return "keep";
    case BQ_JOB_RESTORE_TEST: return "restore-test";
    case BQ_JOB_REPLICATE: return "replicate";
    case BQ_JOB_REPLICATE_WAL: return "replicate-wal";
    default: return "?";
    }
}

const char *bq_copy_state_name(bq_copy_state_t s)
{
    switch (s) {
    case BQ_COPY_QUEUED: return "QUEUED";
    case BQ_COPY_COPYING: return "COPYING";
    case BQ_COPY_WAITING_FOR_WALS: return "WAITING_FOR_WALS";
    case BQ_COPY_DONE: return "DONE";
    case BQ_COPY_FAILED: return "FAILED";
    case BQ_COPY_DELETED: return "DELETED";
    default: return "?";
    }
}

const char *bq_job_state_name(bq_job_state_t s)
{
    switch (s) {
    case BQ_JOB_QUEUED: return "QUEUED";
    case BQ_JOB_ASSIGNED: return "ASSIGNED";
    case BQ_JOB_RUNNING: return "RUNNING";
    case BQ_JOB_SUCCEEDED: return "SUCCEEDED";
    case BQ_JOB_FAILED: return "FAILED";
    case BQ_JOB_CANCELLED: return "CANCELLED";
    default: return "?";
    }
}

int bq_job_state_terminal(bq_job_state_t s)
{
    return s == BQ_JOB_SUCCEEDED || s == BQ_JOB_FAILED || s == BQ_JOB_CANCELLED;
}

const char *bq_backup_state_name(bq_backup_state_t s)
{
    switch (s) {
    case BQ_BACKUP_STARTED: return "STARTED";
    case BQ_BACKUP_DONE: return "DONE";
    case BQ_BACKUP_FAILED: return "FAILED";
    case BQ_BACKUP_WAITING_FOR_WALS: return "WAITING_FOR_WALS";
    case BQ_BACKUP_DELETING: return "DELETING";
    default: return "?";
    }
}

static int digits2(const char *p, int lo, int hi)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return 0;
    int v = (p[0] - '0') * 10 + (p[1] - '0');
    return v >= lo && v <= hi;
}

int bq_backup_id_valid(const char *id)
{
    if (!id || strnlen(id, 16) != 15 || id[8] != 'T')
        return 0;
    return digits2(id, 0, 99) && digits2(id + 2, 0, 99) && digits2(id + 4, 1, 12) &&
           digits2(id + 6, 1, 31) && digits2(id + 9, 0, 23) && digits2(id + 11, 0, 59) &&
           digits2(id + 13, 0, 59);
}

static int hex_upper(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'F')))
            return 0;
    return 1;
}

int bq_wal_name_valid(const char *name)
{
    if (!name)
        return 0;
    size_t n = strnlen(name, BQ_WAL_FILE_MAX);
    int ok;
    if (n == 24 || (n == 32 && strcmp(name + 24, ".partial") == 0))
        ok = hex_upper(name, 24);
    else if (n == 16 && strcmp(name + 8, ".history") == 0)
        ok = hex_upper(name, 8);
    else
        return 0;
    return ok && strncmp(name, "00000000", 8) != 0;
}

int bq_wal_segment_parse(const char *name, uint32_t *tli, uint32_t *hi, uint32_t *lo)
{
    if (!name || strnlen(name, 25) != 24 || !hex_upper(name, 24))
        return -1;
    uint32_t v[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 8; i++) {
            char ch = name[8 * k + i];
            v[k] = v[k] << 4 | (uint32_t)(ch <= '9' ? ch - '0' : ch - 'A' + 10);
        }
    if (v[0] == 0)
        return -1;
    *tli = v[0];
    *hi = v[1];
    *lo = v[2];
    return 0;
}

void bq_files_free(bq_file_entry_t *files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++)
        free(files[i].path);
    free(files);
}

int bq_recovery_valid(const bq_recovery_t *r, char *why, size_t whylen)
{
    static const char *const kinds[] = {"", "time", "xid", "lsn", "name", "immediate"};
    static const char *const actions[] = {"", "pause", "promote", "shutdown"};
    int ok = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        ok |= strcmp(r->kind, kinds[i]) == 0;
    if (!ok) {
        snprintf(why, whylen, "unknown recovery target kind \"%.16s\"", r->kind);
        return -1;
    }
    ok = 0;
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        ok |= strcmp(r->action, actions[i]) == 0;
    if (!ok) {
        snprintf(why, whylen, "unknown recovery target action \"%.16s\"", r->action);
        return -1;
    }
    if (r->tli[0] && strcmp(r->tli, "current") != 0 && strcmp(r->tli, "latest") != 0) {
        char *end;
        unsigned long v = strtoul(r->tli, &end, 10);
        if (*end || v < 1 || v > 0xFFFFFFFFul || strspn(r->tli, "0123456789") != strlen(r->tli)) {
            snprintf(why, whylen, "recovery target timeline \"%.16s\" is not current, latest "
                     "or a timeline number", r->tli);
            return -1;
        }
    }
    for (const unsigned char *p = (const unsigned char *)r->value; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '\'' || *p == '\\') {
            snprintf(why, whylen, "recovery target value \"%.40s\" has a quote, backslash or "
                     "control character", r->value);
            return -1;
        }
    int needs_value = r->kind[0] && strcmp(r->kind, "immediate") != 0;
    if (needs_value != (r->value[0] != '\0')) {
        snprintf(why, whylen, needs_value ? "recovery target %s has no value"
                                          : "recovery target %s takes no value",
                 r->kind[0] ? r->kind : "(none)");
        return -1;
    }
    return 0;
}

const char *bq_severity_name(int sev)
{
    switch (sev) {
    case BQ_SEV_OK: return "OK";
    case BQ_SEV_WARNING: return "WARNING";
    case BQ_SEV_CRITICAL: return "CRITICAL";
    default: return "UNKNOWN";
    }
}
