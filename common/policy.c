/* The config loader's checks of the policy keys: the grammars live with the code that uses
 * them (schedule.c, retention.c); these only say yes or why not. */
#include "policy.h"

#include "retention.h"
#include "schedule.h"

#include <string.h>

/* schedule.c's reasons start with the key's name; the loader names the key itself. */
static int unprefixed(int rc, char *why)
{
    static const char *const keys[] = {"backup_schedule: ", "backup_jitter: "};
    for (size_t i = 0; rc && i < 2; i++) {
        size_t n = strlen(keys[i]);
        if (strncmp(why, keys[i], n) == 0)
            memmove(why, why + n, strlen(why + n) + 1);
    }
    return rc ? -1 : 0;
}

int bq_schedule_check(const char *spec, char *why, size_t len)
{
    schedule_t s;
    return unprefixed(schedule_parse(spec, "", &s, why, len), why);
}

int bq_duration_check(const char *v, char *why, size_t len)
{
    int64_t ms;
    return !v[0] ? 0 : unprefixed(schedule_duration_parse(v, &ms, why, len), why);
}

int bq_schedule_jitter_check(const char *spec, const char *jitter, char *why, size_t len)
{
    schedule_t s;
    return unprefixed(schedule_parse(spec, jitter, &s, why, len), why);
}

int bq_retention_check(const char *policy, char *why, size_t len)
{
    retention_policy_t p;
    return retention_policy_parse(policy, &p, why, len) == 0 ? 0 : -1;
}
