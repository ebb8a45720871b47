#include "types.h"

#include <stdlib.h>
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
