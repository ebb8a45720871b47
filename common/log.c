#include "log.h"

#include "err.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = BQ_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warning", "error"};

void bq_log_set_level(bq_log_level_t level) { atomic_store(&log_level, (int)level); }
bq_log_level_t bq_log_get_level(void) { return (bq_log_level_t)atomic_load(&log_level); }

int bq_log_level_parse(const char *s, bq_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (bq_log_level_t)i;
            return 0;
        }
    }
    return BQ_E_INVAL;
}

const char *bq_log_level_name(bq_log_level_t level)
{
    return (level >= 0 && level <= 3) ? level_names[level] : "?";
}

void bq_log(bq_log_level_t level, const char *component, uint64_t job_id, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ %s %s", ts.tv_nsec / 1000000,
                  bq_log_level_name(level), component);
    if (job_id)
        n += snprintf(line + n, sizeof line - (size_t)n, " job=%llu", (unsigned long long)job_id);
    n += snprintf(line + n, sizeof line - (size_t)n, ": ");
    va_list ap;
    va_start(ap, fmt);
    if (n < (int)sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof line - 1)
        n = (int)sizeof line - 2;
    /* one line per event: flatten embedded newlines */
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
