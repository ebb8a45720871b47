/* A small crew of threads that run the tasks of one round in parallel (the backup writer's
 * hashing and sealing, store/store.c). The thread that posts a round works on it too, so a
 * crew of n threads has n - 1 of its own; with n = 1 everything runs in the caller.
 *
 * A round is fn(arg, task, thread) for task = 0 .. ntasks - 1, each called once, in any order
 * and on any crew thread (thread 0 is the caller; 1 .. n - 1 the crew's own), so per-thread
 * state (a hash or compression context) is indexed by thread. Tasks report failure through
 * what arg points at: a round always runs every task.
 *
 * Not usable after fork; one round at a time, posted by the thread that made the crew. */
#ifndef BQ_STORE_CREW_H
#define BQ_STORE_CREW_H

#include "err.h"

#include <stddef.h>

#define STORE_CREW_MAX 16

typedef struct store_crew store_crew_t;
typedef void (*store_crew_fn)(void *arg, size_t task, unsigned thread);

/* Start a crew of nthreads (1..STORE_CREW_MAX) threads in all, counting the caller. *out is
 * the caller's: store_crew_destroy. BQ_E_INVAL, BQ_E_NOMEM, BQ_E_IO when a thread cannot start. */
int store_crew_new(unsigned nthreads, store_crew_t **out, bq_errbuf_t *e);
/* Stop and join the crew's threads; accepts NULL and *self_p == NULL; nulls *self_p. */
void store_crew_destroy(store_crew_t **self_p);
/* Threads in all, counting the caller. */
unsigned store_crew_size(const store_crew_t *c);
/* Run one round and return when every task has returned. */
void store_crew_run(store_crew_t *c, store_crew_fn fn, void *arg, size_t ntasks);
/* Online CPUs, at least 1 and at most STORE_CREW_MAX. */
unsigned store_crew_default_size(void);

#endif
