/* The grammars of the coordinator's policy keys (issue 6), shared by the config loader
 * (which checks them) and the coordinator (which uses the parsed values):
 *   backup_schedule  "" | N(s|m|h|d|w) | HH:MM[,HH:MM...] (UTC)
 *   backup_jitter    "" | a duration (s|m|h|d|w), shorter than the schedule's period
 *   retention_policy "" | REDUNDANCY n | RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS
 * Each check returns 0, or -1 with the reason in why. */
#ifndef BQ_POLICY_H
#define BQ_POLICY_H

#include <stddef.h>
#include <stdint.h>

int bq_schedule_check(const char *spec, char *why, size_t len);
int bq_duration_check(const char *v, char *why, size_t len);
int bq_schedule_jitter_check(const char *spec, const char *jitter, char *why, size_t len);
int bq_retention_check(const char *policy, char *why, size_t len);

#endif
