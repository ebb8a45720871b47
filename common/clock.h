/* Time: monotonic milliseconds for leases and timeouts (immune to clock jumps),
 * wall-clock milliseconds for what is stored and shown. */
#ifndef BQ_CLOCK_H
#define BQ_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t bq_mono_ms(void);
int64_t bq_wall_ms(void);
/* "2026-11-25T01:30:00Z" into buf (UTC). Returns buf. */
char *bq_wall_format(int64_t wall_ms, char *buf, size_t len);
/* Parse a duration: "250ms", "5s", "2m", "1h", "1d", a bare number is seconds.
 * Returns 0 or BQ_E_INVAL. */
int bq_duration_parse(const char *s, int64_t *out_ms);
/* A duration for people: "3.2 s", "4m12s", "2h05m00s" (negative: 0). Returns buf. */
char *bq_duration_text(int64_t ms, char *buf, size_t len);
/* Sleep ms milliseconds (<= 0: not at all), through EINTR. */
void bq_sleep_ms(int64_t ms);

#endif
