/* One line per event on stderr: time, level, component, job id where there is one.
 * Thread-safe (one write(2) per line). Never pass secrets. */
#ifndef BQ_LOG_H
#define BQ_LOG_H

#include <stdint.h>

typedef enum {
    BQ_LOG_DEBUG = 0,
    BQ_LOG_INFO = 1,
    BQ_LOG_WARNING = 2,
    BQ_LOG_ERROR = 3,
} bq_log_level_t;

/* Set the minimum level that is printed (default INFO). */
void bq_log_set_level(bq_log_level_t level);
bq_log_level_t bq_log_get_level(void);
/* Parse "debug|info|warning|error"; returns 0 or BQ_E_INVAL. */
int bq_log_level_parse(const char *s, bq_log_level_t *out);
const char *bq_log_level_name(bq_log_level_t level);

/* job_id 0 means "no job". */
void bq_log(bq_log_level_t level, const char *component, uint64_t job_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define bq_debug(comp, job, ...) bq_log(BQ_LOG_DEBUG, comp, job, __VA_ARGS__)
#define bq_info(comp, job, ...) bq_log(BQ_LOG_INFO, comp, job, __VA_ARGS__)
#define bq_warn(comp, job, ...) bq_log(BQ_LOG_WARNING, comp, job, __VA_ARGS__)
#define bq_error(comp, job, ...) bq_log(BQ_LOG_ERROR, comp, job, __VA_ARGS__)

#endif
