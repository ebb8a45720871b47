#include "clock.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t bq_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bq_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *bq_wall_format(int64_t wall_ms, char *buf, size_t len)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && len)
        buf[0] = '\0';
    return buf;
}

int bq_duration_parse(const char *s, int64_t *out_ms)
{
    if (!s || !*s)
        return BQ_E_INVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 0)
        return BQ_E_INVAL;
    long long mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        mult = 86400LL * 1000;
    else
        return BQ_E_INVAL;
    if (v > INT64_MAX / mult)
        return BQ_E_INVAL;
    *out_ms = v * mult;
    return 0;
}

char *bq_duration_text(int64_t ms, char *buf, size_t len)
{
    if (ms < 0)
        ms = 0;
    int64_t s = ms / 1000;
    if (ms < 60000)
        snprintf(buf, len, "%.1f s", (double)ms / 1000);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(buf, len, "%lldh%02lldm%02llds", (long long)(s / 3600),
                 (long long)(s / 60 % 60), (long long)(s % 60));
    return buf;
}

void bq_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
