/* The crew of store/crew.h: a mutex, two condition variables and a round counter. Tasks are
 * claimed one at a time under the mutex: rounds have tens to hundreds of tasks of tens of
 * microseconds each, so the lock is not what limits them. */
#include "crew.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct store_crew {
    unsigned n; /* threads in all, counting the caller */
    pthread_t threads[STORE_CREW_MAX];
    unsigned started;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a round was posted, or stop */
    pthread_cond_t done; /* the last task of a round returned */
    unsigned long round; /* rounds posted */
    store_crew_fn fn;
    void *arg;
    size_t ntasks, next, finished;
    int stop;
};

typedef struct {
    store_crew_t *c;
    unsigned thread;
} crew_start_t;

/* Claim and run tasks of the current round until none is left; called with mu held, returns
 * with it held. */
static void crew_work(store_crew_t *c, unsigned thread)
{
    while (c->next < c->ntasks) {
        size_t task = c->next++;
        store_crew_fn fn = c->fn;
        void *arg = c->arg;
        pthread_mutex_unlock(&c->mu);
        fn(arg, task, thread);
        pthread_mutex_lock(&c->mu);
        if (++c->finished == c->ntasks)
            pthread_cond_broadcast(&c->done);
    }
}

static void *crew_main(void *p)
{
    crew_start_t *st = p;
    store_crew_t *c = st->c;
    unsigned thread = st->thread;
    free(st);
    unsigned long seen = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && c->round == seen)
            pthread_cond_wait(&c->work, &c->mu);
        if (c->stop)
            break;
        seen = c->round;
        crew_work(c, thread);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

unsigned store_crew_default_size(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > STORE_CREW_MAX ? STORE_CREW_MAX : (unsigned)n;
}

int store_crew_new(unsigned nthreads, store_crew_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    if (nthreads < 1 || nthreads > STORE_CREW_MAX)
        return bq_fail(e, BQ_E_INVAL, "a crew of %u threads is outside 1..%d", nthreads,
                       STORE_CREW_MAX);
    store_crew_t *c = calloc(1, sizeof *c);
    if (!c)
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting %u threads", nthreads);
    c->n = nthreads;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->done, NULL);
    for (unsigned i = 1; i < nthreads; i++) {
        crew_start_t *st = malloc(sizeof *st);
        int err = st ? 0 : ENOMEM;
        if (st) {
            st->c = c;
            st->thread = i;
            err = pthread_create(&c->threads[i], NULL, crew_main, st);
            if (err != 0)
                free(st);
        }
        if (err != 0) {
            store_crew_destroy(&c);
            return bq_fail(e, err == ENOMEM ? BQ_E_NOMEM : BQ_E_IO,
                           "could not start thread %u of %u: %s", i + 1, nthreads, strerror(err));
        }
        c->started = i;
    }
    *out = c;
    return 0;
}

void store_crew_destroy(store_crew_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_crew_t *c = *self_p;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->mu);
    for (unsigned i = 1; i <= c->started; i++)
        pthread_join(c->threads[i], NULL);
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->work);
    pthread_mutex_destroy(&c->mu);
    free(c);
    *self_p = NULL;
}

unsigned store_crew_size(const store_crew_t *c)
{
    return c->n;
}

void store_crew_run(store_crew_t *c, store_crew_fn fn, void *arg, size_t ntasks)
{
    if (ntasks == 0)
        return;
    if (c->n == 1 || ntasks == 1) {
        for (size_t i = 0; i < ntasks; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->fn = fn;
    c->arg = arg;
    c->ntasks = ntasks;
    c->next = 0;
    c->finished = 0;
    c->round++;
    pthread_cond_broadcast(&c->work);
    crew_work(c, 0);
    while (c->finished < c->ntasks)
        pthread_cond_wait(&c->done, &c->mu);
    pthread_mutex_unlock(&c->mu);
}
