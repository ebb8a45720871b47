/* hook_run (worker/hooks.h) with real /bin/sh scripts in a temporary directory: Barman's retry
 * convention for pre hooks (0, 62, 63, anything else retried a bounded number of times),
 * post hooks run once and never fail the operation, the environment, timeouts and cancels
 * that kill the hook's whole process group (grandchildren included), output capture that a
 * chatty hook cannot block, no inherited fd, a fresh signal state, and hooks run from several
 * threads at once. The test process is a child subreaper so the orphaned grandchildren of
 * killed hooks come back to it and are reaped here: kill(pid, 0) == ESRCH then really means
 * gone, whatever PID 1 does with zombies. */
#include "hooks.h"

#include "clock.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static char g_dir[PATH_MAX];       /* the test's temporary directory */
static char g_tvar[PATH_MAX + 8];  /* "BQ_T=<g_dir>": scripts find their files with $BQ_T */
static const char *g_env[] = {g_tvar, NULL};

/* ---- helpers ---- */

static void path_of(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", g_dir, name);
}

/* Write script NAME (a #!/bin/sh file, mode 0755) and put its path into path. */
static void script(char *path, size_t size, const char *name, const char *body)
{
    path_of(path, size, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

/* The content of file NAME in the test directory (caller frees), or NULL. */
static char *slurp(const char *name)
{
    char path[PATH_MAX];
    path_of(path, sizeof path, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* The pid written in file NAME by a script. */
static pid_t pid_in(const char *name)
{
    char *s = slurp(name);
    assert_non_null(s);
    long v = strtol(s, NULL, 10);
    free(s);
    assert_true(v > 1);
    return (pid_t)v;
}

/* Wait (at most 5 s, 500 looks) for pid to be gone, reaping it (and its group's zombies)
 * if it came back to this subreaper. 1 when gone. */
static int wait_gone(pid_t pid, pid_t pgid)
{
    for (int i = 0; i < 500; i++) {
        while (waitpid(pid, NULL, WNOHANG) > 0) {
        }
        if (pgid > 1)
            while (waitpid(-pgid, NULL, WNOHANG) > 0) {
            }
        if (kill(pid, 0) == -1 && errno == ESRCH)
            return 1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Wait (at most 5 s) for process group pgid to be empty. 1 when it is. */
static int wait_group_gone(pid_t pgid)
{
    for (int i = 0; i < 500; i++) {
        while (waitpid(-pgid, NULL, WNOHANG) > 0) {
        }
        if (kill(-pgid, 0) == -1 && errno == ESRCH)
            return 1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static hook_t mk(const char *name, const char *command, hook_phase_t phase)
{
    hook_t h = {
        .name = name,
        .command = command,
        .phase = phase,
        .timeout_ms = 10000, /* bounds every test's hook */
        .retries = 0,
        .retry_sleep_ms = 10,
        .env = g_env,
    };
    return h;
}

/* Is "LINE\n" a whole line of text? How many lines start with prefix? */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static int count_prefix(const char *text, const char *prefix)
{
    int c = 0;
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, n) == 0)
            c++;
    return c;
}

typedef struct {
    volatile int *flag;
    int delay_ms;
} canceller_t;

static void *canceller(void *arg)
{
    canceller_t *c = arg;
    struct timespec ts = {c->delay_ms / 1000, (long)(c->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    __atomic_store_n(c->flag, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* ---- no hook, success, environment ---- */

static void test_no_hook(void **state)
{
    (void)state;
    hook_result_t res;
    hook_t h = mk("pre_backup", NULL, HOOK_PRE);
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_RAN_NONE);
    assert_int_equal(res.attempts, 0);
    assert_string_equal(res.message, "");
    h.command = "";
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_RAN_NONE);
    assert_string_equal(hook_outcome_name(res.outcome), "none");
}

static void test_exit_zero_ok(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "ok.sh", "echo all good\nexit 0");
    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_OK);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.attempts, 1);
    assert_string_equal(res.output, "all good\n");
    assert_string_equal(res.message, "pre_backup hook exited 0");
    assert_true(res.duration_ms >= 0 && res.duration_ms < 5000);

    h = mk("post_backup", path, HOOK_POST);
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_OK);
    assert_string_equal(res.message, "post_backup hook exited 0");
}

static void test_env_vars(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "env.sh", "env > \"$BQ_T/env.out\"");
    assert_int_equal(setenv("BQ_HOOK_TEST_PARENT", "from-parent", 1), 0);
    assert_int_equal(setenv("BQ_HOOK_TEST_OVERRIDE", "parent", 1), 0);

    hook_env_t env;
    hook_env_init(&env);
    assert_int_equal(hook_env_add(&env, "BQ_T", g_dir), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_HOOK", "pre_backup"), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_PHASE", "pre"), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_CLUSTER", "main"), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_SITE", "paris"), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_BACKUP_ID", "20261125T013000"), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_ERROR", ""), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_DEST", "/srv/pg data"), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_RETRY", "1"), 0);
    assert_int_equal(hook_env_add(&env, "BQ_HOOK_TEST_OVERRIDE", "hook"), 0);
    assert_int_equal(hook_env_add(&env, "BARQUE_ATTEMPT", "99"), 0); /* hook_run's wins */

    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    h.env = hook_env_vars(&env);
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_OK);
    unsetenv("BQ_HOOK_TEST_PARENT");
    unsetenv("BQ_HOOK_TEST_OVERRIDE");

    char *out = slurp("env.out");
    assert_non_null(out);
    assert_true(has_line(out, "BARQUE_HOOK=pre_backup"));
    assert_true(has_line(out, "BARQUE_PHASE=pre"));
    assert_true(has_line(out, "BARQUE_CLUSTER=main"));
    assert_true(has_line(out, "BARQUE_SITE=paris"));
    assert_true(has_line(out, "BARQUE_BACKUP_ID=20261125T013000"));
    assert_true(has_line(out, "BARQUE_ERROR="));
    assert_true(has_line(out, "BARQUE_DEST=/srv/pg data"));
    assert_true(has_line(out, "BARQUE_RETRY=1"));
    assert_true(has_line(out, "BQ_HOOK_TEST_PARENT=from-parent")); /* the worker's own */
    assert_int_equal(count_prefix(out, "PATH="), 1);
    assert_true(has_line(out, "BQ_HOOK_TEST_OVERRIDE=hook")); /* the hook's wins, once */
    assert_int_equal(count_prefix(out, "BQ_HOOK_TEST_OVERRIDE="), 1);
    assert_true(has_line(out, "BARQUE_ATTEMPT=1"));
    assert_int_equal(count_prefix(out, "BARQUE_ATTEMPT="), 1);
    free(out);
}

/* Raw hook_t.env: of two strings with one key the later wins; a string with no '=' is
 * ignored. */
static void test_env_raw_precedence(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "env2.sh", "env > \"$BQ_T/env2.out\"");
    const char *vars[] = {g_tvar, "BQ_DUP=first", "NOEQUALS", "BQ_DUP=second", NULL};
    hook_result_t res;
    hook_t h = mk("post_wal", path, HOOK_POST);
    h.env = vars;
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_OK);
    char *out = slurp("env2.out");
    assert_non_null(out);
    assert_true(has_line(out, "BQ_DUP=second"));
    assert_int_equal(count_prefix(out, "BQ_DUP="), 1);
    assert_int_equal(count_prefix(out, "NOEQUALS"), 0);
    free(out);
}

/* ---- pre hooks: the retry convention ---- */

static void test_pre_abort_continue(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "cont.sh", "echo replica lagging, going on\nexit 62");
    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    h.retries = 5;
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_ABORT_CONTINUE);
    assert_int_equal(res.status, 62);
    assert_int_equal(res.attempts, 1);
    assert_string_equal(res.message,
                        "pre_backup hook exited 62 (ABORT_CONTINUE): replica lagging, going on");
}

static void test_pre_abort_stop(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "stop.sh", "echo disk nearly full >&2\nexit 63");
    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    h.retries = 5;
    int rc = hook_run(&h, &res);
    assert_int_not_equal(rc, 0);
    assert_int_equal(rc, BQ_E_STATE);
    assert_int_equal(res.outcome, HOOK_ABORT_STOP);
    assert_int_equal(res.status, 63);
    assert_int_equal(res.attempts, 1);
    assert_string_equal(res.message, "pre_backup hook exited 63 (ABORT_STOP): disk nearly full");
}

static void test_pre_retry_then_ok(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "flaky.sh",
           "n=$(cat \"$BQ_T/flaky.count\" 2>/dev/null || echo 0)\n"
           "n=$((n + 1))\n"
           "echo $n > \"$BQ_T/flaky.count\"\n"
           "echo \"attempt $BARQUE_ATTEMPT\" >> \"$BQ_T/flaky.log\"\n"
           "[ $n -ge 3 ] && { echo ready; exit 0; }\n"
           "echo not yet\n"
           "exit 1");
    hook_result_t res;
    hook_t h = mk("pre_recover", path, HOOK_PRE);
    h.retries = 5;
    h.retry_sleep_ms = 50;
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_OK);
    assert_int_equal(res.attempts, 3);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.output, "ready\n"); /* the last attempt's */
    assert_string_equal(res.message, "pre_recover hook exited 0 on attempt 3");
    assert_true(res.duration_ms >= 100); /* two pauses */
    char *log = slurp("flaky.log");
    assert_non_null(log);
    assert_string_equal(log, "attempt 1\nattempt 2\nattempt 3\n");
    free(log);
}

static void test_pre_retries_exhausted(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "boom.sh",
           "echo x >> \"$BQ_T/boom.runs\"\necho boom\necho second line\nexit 1");
    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    h.retries = 2;
    h.retry_sleep_ms = 30;
    int rc = hook_run(&h, &res);
    assert_int_equal(rc, BQ_E_STATE);
    assert_int_equal(res.outcome, HOOK_FAILED);
    assert_int_equal(res.attempts, 3);
    assert_int_equal(res.status, 1);
    assert_string_equal(res.message, "pre_backup hook failed 3 times (last exit 1): boom");
    assert_true(res.duration_ms >= 60);
    char *runs = slurp("boom.runs");
    assert_non_null(runs);
    assert_string_equal(runs, "x\nx\nx\n");
    free(runs);
}

static void test_pre_no_retries(void **state)
{
    (void)state;
    hook_result_t res;
    hook_t h = mk("pre_backup", "exit 7", HOOK_PRE);
    h.retries = 0;
    assert_int_equal(hook_run(&h, &res), BQ_E_STATE);
    assert_int_equal(res.outcome, HOOK_FAILED);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.status, 7);
    assert_string_equal(res.message, "pre_backup hook exited 7");
}

/* ---- timeouts ---- */

#define GROUP_SCRIPT(tag)                                                                    \
    "cut -d' ' -f5 /proc/$$/stat > \"$BQ_T/" tag ".pgid\"\n"                                 \
    "echo $$ > \"$BQ_T/" tag ".sh\"\n"                                                       \
    "sleep 60 &\n"                                                                           \
    "echo $! > \"$BQ_T/" tag ".bg\"\n"                                                       \
    "echo started\n"

/* The hook's shell, its background grandchild and its group are gone afterwards. */
static void assert_tree_gone(const char *tag)
{
    char name[64];
    snprintf(name, sizeof name, "%s.pgid", tag);
    pid_t pgid = pid_in(name);
    snprintf(name, sizeof name, "%s.sh", tag);
    pid_t sh = pid_in(name);
    snprintf(name, sizeof name, "%s.bg", tag);
    pid_t bg = pid_in(name);
    assert_int_not_equal(pgid, getpgrp()); /* the hook had a group of its own */
    assert_true(wait_gone(sh, pgid));
    assert_true(wait_gone(bg, pgid));
    assert_true(wait_group_gone(pgid));
}

static void test_timeout_kills_group(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "slow.sh", GROUP_SCRIPT("t1") "sleep 30");
    hook_result_t res;
    hook_t h = mk("post_backup", path, HOOK_POST);
    h.timeout_ms = 300;
    int64_t t0 = bq_mono_ms();
    assert_int_equal(hook_run(&h, &res), 0); /* post: never fails the operation */
    int64_t took = bq_mono_ms() - t0;
    assert_int_equal(res.outcome, HOOK_TIMEOUT);
    assert_int_equal(res.status, -SIGTERM);
    assert_int_equal(res.attempts, 1);
    assert_true(took >= 300);
    assert_true(took < 4000); /* SIGTERM did it, well before the SIGKILL grace */
    assert_string_equal(res.output, "started\n");
    assert_string_equal(res.message, "post_backup hook timed out after 300 ms: started");
    assert_tree_gone("t1");
}

/* A hook that ignores SIGTERM gets SIGKILL HOOK_KILL_GRACE_MS later. */
static void test_timeout_term_ignored(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "stubborn.sh", "trap '' TERM\n" GROUP_SCRIPT("t2") "sleep 30");
    hook_result_t res;
    char command[PATH_MAX + 32];
    snprintf(command, sizeof command, "trap '' TERM; %s", path); /* sh -c does not exec it */
    hook_t h = mk("post_recover", command, HOOK_POST);
    h.timeout_ms = 200;
    int64_t t0 = bq_mono_ms();
    assert_int_equal(hook_run(&h, &res), 0);
    int64_t took = bq_mono_ms() - t0;
    assert_int_equal(res.outcome, HOOK_TIMEOUT);
    assert_int_equal(res.status, -SIGKILL);
    assert_true(took >= 200 + HOOK_KILL_GRACE_MS - 50);
    assert_true(took < 200 + HOOK_KILL_GRACE_MS + 2000);
    assert_tree_gone("t2");
}

/* The hook's shell dies at SIGTERM, a grandchild ignoring it does not: it gets SIGKILL as soon
 * as the shell is gone, with no wait for the grace. */
static void test_timeout_grandchild_ignores_term(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "orphan.sh",
           "cut -d' ' -f5 /proc/$$/stat > \"$BQ_T/t3.pgid\"\n"
           "echo $$ > \"$BQ_T/t3.sh\"\n"
           "(trap '' TERM; exec sleep 60) &\n"
           "echo $! > \"$BQ_T/t3.bg\"\n"
           "sleep 30");
    hook_result_t res;
    hook_t h = mk("post_backup", path, HOOK_POST);
    h.timeout_ms = 300;
    int64_t t0 = bq_mono_ms();
    assert_int_equal(hook_run(&h, &res), 0);
    int64_t took = bq_mono_ms() - t0;
    assert_int_equal(res.outcome, HOOK_TIMEOUT);
    assert_int_equal(res.status, -SIGTERM);
    assert_true(took < 4000);
    assert_tree_gone("t3");
}

static void test_pre_timeout_retried(void **state)
{
    (void)state;
    hook_result_t res;
    hook_t h = mk("pre_backup", "sleep 30", HOOK_PRE);
    h.timeout_ms = 200;
    h.retries = 1;
    int64_t t0 = bq_mono_ms();
    assert_int_equal(hook_run(&h, &res), BQ_E_TIMEOUT);
    int64_t took = bq_mono_ms() - t0;
    assert_int_equal(res.outcome, HOOK_TIMEOUT);
    assert_int_equal(res.attempts, 2);
    assert_true(took >= 400 && took < 5000);
    assert_string_equal(res.message, "pre_backup hook failed 2 times (last timed out after 200 ms)");
}

/* ---- cancel ---- */

static void test_cancel_kills_group(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "cancel.sh", GROUP_SCRIPT("c1") "wait");
    volatile int flag = 0;
    canceller_t c = {&flag, 200};
    pthread_t th;
    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    h.retries = 3;
    h.cancel = &flag;
    int64_t t0 = bq_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, canceller, &c), 0);
    int rc = hook_run(&h, &res);
    int64_t took = bq_mono_ms() - t0;
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(rc, BQ_E_CANCELLED);
    assert_int_equal(res.outcome, HOOK_CANCELLED);
    assert_int_equal(res.attempts, 1);
    assert_true(took >= 200 && took < 3000);
    assert_string_equal(res.message, "pre_backup hook cancelled (attempt 1)");
    assert_tree_gone("c1");
}

static void test_cancel_before_run(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "never.sh", "echo ran > \"$BQ_T/never.out\"");
    volatile int flag = 1;
    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    h.cancel = &flag;
    assert_int_equal(hook_run(&h, &res), BQ_E_CANCELLED);
    assert_int_equal(res.outcome, HOOK_CANCELLED);
    assert_int_equal(res.attempts, 0);
    assert_string_equal(res.message, "pre_backup hook cancelled before it ran");
    char *out = slurp("never.out");
    assert_null(out);
}

static void test_cancel_during_nap(void **state)
{
    (void)state;
    volatile int flag = 0;
    canceller_t c = {&flag, 200};
    pthread_t th;
    hook_result_t res;
    hook_t h = mk("pre_backup", "echo nope; exit 1", HOOK_PRE);
    h.retries = 5;
    h.retry_sleep_ms = 10000;
    h.cancel = &flag;
    int64_t t0 = bq_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, canceller, &c), 0);
    int rc = hook_run(&h, &res);
    int64_t took = bq_mono_ms() - t0;
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(rc, BQ_E_CANCELLED);
    assert_int_equal(res.outcome, HOOK_CANCELLED);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.status, 1);
    assert_string_equal(res.output, "nope\n");
    assert_true(took < 2000);
}

/* ---- output ---- */

static void test_output_100k(void **state)
{
    (void)state;
    char path[PATH_MAX];
    /* seq 1 20000: about 108 KB, far beyond a pipe's buffer */
    script(path, sizeof path, "chatty.sh", "seq 1 20000\necho tail >&2\nexit 0");
    hook_result_t res;
    hook_t h = mk("post_wal", path, HOOK_POST);
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_OK);
    char want[HOOK_OUTPUT_MAX + 16];
    size_t len = 0;
    for (int i = 1; len < HOOK_OUTPUT_MAX - 1; i++)
        len += (size_t)snprintf(want + len, sizeof want - len, "%d\n", i);
    want[HOOK_OUTPUT_MAX - 1] = '\0';
    assert_int_equal(strlen(res.output), HOOK_OUTPUT_MAX - 1);
    assert_string_equal(res.output, want);
}

static void test_output_stderr_nonprintable(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "mixed.sh",
           "echo out-line\necho err-line >&2\nprintf 'a\\001\\033\\tb\\r\\n'\nexit 1");
    hook_result_t res;
    hook_t h = mk("post_backup", path, HOOK_POST);
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_FAILED);
    assert_string_equal(res.output, "out-line\nerr-line\na??\tb?\n");
    assert_string_equal(res.message, "post_backup hook exited 1: out-line");
}

/* A hook that writes forever neither blocks nor hangs the worker: it times out. */
static void test_output_endless(void **state)
{
    (void)state;
    hook_result_t res;
    hook_t h = mk("post_wal", "yes", HOOK_POST);
    h.timeout_ms = 300;
    int64_t t0 = bq_mono_ms();
    assert_int_equal(hook_run(&h, &res), 0);
    int64_t took = bq_mono_ms() - t0;
    assert_int_equal(res.outcome, HOOK_TIMEOUT);
    assert_true(took < 4000);
    assert_int_equal(strlen(res.output), HOOK_OUTPUT_MAX - 1);
    assert_memory_equal(res.output, "y\ny\ny\n", 6);
}

/* A background process that keeps the pipe open does not hold hook_run once the hook has
 * exited. */
static void test_background_keeps_pipe(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "bg.sh", "sleep 30 &\necho $! > \"$BQ_T/bg.pid\"\necho bye\nexit 0");
    hook_result_t res;
    hook_t h = mk("post_backup", path, HOOK_POST);
    int64_t t0 = bq_mono_ms();
    assert_int_equal(hook_run(&h, &res), 0);
    int64_t took = bq_mono_ms() - t0;
    assert_int_equal(res.outcome, HOOK_OK);
    assert_string_equal(res.output, "bye\n");
    assert_true(took < 2000);
    pid_t bg = pid_in("bg.pid");
    assert_int_equal(kill(bg, SIGKILL), 0);
    assert_true(wait_gone(bg, 0));
}

/* ---- post hooks ---- */

static void test_post_failed(void **state)
{
    (void)state;
    char path[PATH_MAX];
    script(path, sizeof path, "postfail.sh",
           "echo x >> \"$BQ_T/postfail.runs\"\necho could not notify\nexit 1");
    hook_result_t res;
    hook_t h = mk("post_backup", path, HOOK_POST);
    h.retries = 5; /* not for post hooks */
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_FAILED);
    assert_int_equal(res.status, 1);
    assert_int_equal(res.attempts, 1);
    assert_string_equal(res.message, "post_backup hook exited 1: could not notify");
    char *runs = slurp("postfail.runs");
    assert_non_null(runs);
    assert_string_equal(runs, "x\n");
    free(runs);

    /* 63 from a post hook is reported, and the operation still goes on */
    h = mk("post_recover", "exit 63", HOOK_POST);
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_ABORT_STOP);

    /* killed by a signal */
    h = mk("post_wal", "echo dying; kill -KILL $$", HOOK_POST);
    assert_int_equal(hook_run(&h, &res), 0);
    assert_int_equal(res.outcome, HOOK_FAILED);
    assert_int_equal(res.status, -SIGKILL);
    assert_string_equal(res.message, "post_wal hook was killed by signal 9 (SIGKILL): dying");
}

/* ---- environment builder ---- */

static void test_env_add_overflow(void **state)
{
    (void)state;
    hook_env_t env;
    hook_env_init(&env);
    assert_null(hook_env_vars(&env)[0]);

    /* bad keys */
    assert_int_equal(hook_env_add(&env, "", "x"), -1);
    assert_int_equal(hook_env_add(&env, NULL, "x"), -1);
    assert_int_equal(hook_env_add(&env, "A=B", "x"), -1);
    assert_int_equal(env.n, 0);

    /* slots: HOOK_ENV_SLOTS - 1 variables, then -1 */
    char key[32];
    for (int i = 0; i < HOOK_ENV_SLOTS - 1; i++) {
        snprintf(key, sizeof key, "BQ_V%d", i);
        assert_int_equal(hook_env_add(&env, key, "v"), 0);
    }
    assert_int_equal(hook_env_add(&env, "BQ_ONE_MORE", "v"), -1);
    assert_int_equal(hook_env_add(&env, "BQ_V3", "replaced"), 0); /* a replacement fits */
    const char *const *vars = hook_env_vars(&env);
    assert_string_equal(vars[3], "BQ_V3=replaced");
    assert_null(vars[HOOK_ENV_SLOTS - 1]);
    assert_int_equal(env.n, HOOK_ENV_SLOTS - 1);

    /* bytes: a value larger than the buffer, then one that just fits, then one byte more */
    hook_env_init(&env);
    char big[HOOK_ENV_BUF + 16];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(hook_env_add(&env, "BIG", big), -1);
    assert_int_equal(env.n, 0);
    assert_int_equal(env.used, 0);
    big[HOOK_ENV_BUF - 5] = '\0'; /* "BIG=" + value + NUL == HOOK_ENV_BUF */
    assert_int_equal(hook_env_add(&env, "BIG", big), 0);
    assert_int_equal(env.used, HOOK_ENV_BUF);
    assert_int_equal(hook_env_add(&env, "B", ""), -1);
    assert_int_equal(env.n, 1);
    assert_int_equal(strlen(hook_env_vars(&env)[0]), HOOK_ENV_BUF - 1);
    assert_null(hook_env_vars(&env)[1]);
}

/* ---- the child's process state ---- */

static void test_no_fd_leak(void **state)
{
    (void)state;
    char path[PATH_MAX], victim[PATH_MAX];
    path_of(victim, sizeof victim, "victim");
    int fd = open(victim, O_WRONLY | O_CREAT, 0600); /* no O_CLOEXEC, as another thread might */
    assert_true(fd > 2);
    int high = dup2(fd, 100);
    assert_int_equal(high, 100);
    /* into the hook's output, with no redirection (dash would save the redirected fd in a
     * spare fd of its own while ls runs): the shell's fds, then where 0, 1, 2 lead */
    script(path, sizeof path, "fds.sh",
           "ls /proc/$$/fd\necho --\nreadlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2");
    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    assert_int_equal(hook_run(&h, &res), 0);
    close(fd);
    close(high);
    assert_int_equal(res.outcome, HOOK_OK);

    char *sep = strstr(res.output, "--\n");
    assert_non_null(sep);
    *sep = '\0';
    int seen[3] = {0, 0, 0}, others = 0;
    for (char *line = strtok(res.output, "\n"); line; line = strtok(NULL, "\n")) {
        int n = (int)strtol(line, NULL, 10);
        assert_int_not_equal(n, fd);
        assert_int_not_equal(n, 100);
        if (n <= 2)
            seen[n] = 1;
        else
            others++; /* the shell's own: dash holds its script open */
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    assert_true(others <= 1);

    char t0[64] = "", t1[64] = "", t2[64] = "";
    assert_int_equal(sscanf(sep + 3, "%63s %63s %63s", t0, t1, t2), 3);
    assert_string_equal(t0, "/dev/null"); /* stdin */
    assert_memory_equal(t1, "pipe:", 5);  /* stdout: the worker's pipe */
    assert_string_equal(t1, t2);          /* stderr: the same pipe */
}

/* Blocked and ignored signals of the worker do not reach the hook. */
static void test_signals_reset(void **state)
{
    (void)state;
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGUSR1);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
    struct sigaction sa_ign = {.sa_handler = SIG_IGN}, old_pipe, old_hup;
    sigemptyset(&sa_ign.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &sa_ign, &old_pipe), 0);
    assert_int_equal(sigaction(SIGHUP, &sa_ign, &old_hup), 0);

    char path[PATH_MAX];
    script(path, sizeof path, "sigs.sh", "grep -E '^Sig(Blk|Ign):' /proc/self/status");
    hook_result_t res;
    hook_t h = mk("pre_backup", path, HOOK_PRE);
    int rc = hook_run(&h, &res);

    /* and a blocked SIGTERM in the worker does not stop a timeout from killing the hook */
    hook_result_t res2;
    hook_t h2 = mk("post_backup", "sleep 30", HOOK_POST);
    h2.timeout_ms = 200;
    int64_t t0 = bq_mono_ms();
    int rc2 = hook_run(&h2, &res2);
    int64_t took = bq_mono_ms() - t0;

    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    assert_int_equal(rc, 0);
    assert_int_equal(res.outcome, HOOK_OK);
    /* SigBlk: none. SigIgn: none of the standard signals 1..31; glibc's
     * posix_spawn leaves its two internal real-time signals (32, 33: bits 0x180000000)
     * ignored in every child it starts, which no program using SIGRTMIN (34) notices */
    unsigned long long blk = 1, ign = 1;
    assert_int_equal(sscanf(res.output, "SigBlk:\t%llx\nSigIgn:\t%llx", &blk, &ign), 2);
    assert_int_equal(blk, 0);
    assert_int_equal(ign & 0x7fffffffULL, 0); /* signals 1..31 */
    assert_int_equal(rc2, 0);
    assert_int_equal(res2.outcome, HOOK_TIMEOUT);
    assert_int_equal(res2.status, -SIGTERM);
    assert_true(took < 4000);
}

/* ---- threads ---- */

#define NTHREADS 6

typedef struct {
    int i;
    char command[128];
    hook_result_t res;
    int rc;
} runner_t;

static void *runner(void *arg)
{
    runner_t *r = arg;
    hook_t h = mk("post_wal", r->command, HOOK_POST);
    if (r->i == 0) /* one of them times out meanwhile */
        h.timeout_ms = 300;
    r->rc = hook_run(&h, &r->res);
    return NULL;
}

static void test_concurrent_hooks(void **state)
{
    (void)state;
    runner_t r[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        r[i].i = i;
        if (i == 0)
            snprintf(r[i].command, sizeof r[i].command, "echo thread-0; sleep 30");
        else
            snprintf(r[i].command, sizeof r[i].command,
                     "echo thread-%d; echo \"attempt $BARQUE_ATTEMPT\" >&2; sleep 0.2; exit %d",
                     i, i);
    }
    int64_t t0 = bq_mono_ms();
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, runner, &r[i]), 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    int64_t took = bq_mono_ms() - t0;
    assert_true(took < 5000);
    assert_int_equal(r[0].res.outcome, HOOK_TIMEOUT);
    assert_string_equal(r[0].res.output, "thread-0\n");
    for (int i = 1; i < NTHREADS; i++) {
        char want[64];
        snprintf(want, sizeof want, "thread-%d\nattempt 1\n", i);
        assert_int_equal(r[i].rc, 0);
        assert_int_equal(r[i].res.status, i);
        assert_string_equal(r[i].res.output, want);
        assert_int_equal(r[i].res.outcome, HOOK_FAILED);
    }
}

/* ---- setup ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/bq-hooks-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_tvar, sizeof g_tvar, "BQ_T=%s", g_dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    /* orphaned grandchildren of killed hooks come back here, to be reaped by wait_gone */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        perror("prctl(PR_SET_CHILD_SUBREAPER)");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_hook),
        cmocka_unit_test(test_exit_zero_ok),
        cmocka_unit_test(test_env_vars),
        cmocka_unit_test(test_env_raw_precedence),
        cmocka_unit_test(test_pre_abort_continue),
        cmocka_unit_test(test_pre_abort_stop),
        cmocka_unit_test(test_pre_retry_then_ok),
        cmocka_unit_test(test_pre_retries_exhausted),
        cmocka_unit_test(test_pre_no_retries),
        cmocka_unit_test(test_timeout_kills_group),
        cmocka_unit_test(test_timeout_term_ignored),
        cmocka_unit_test(test_timeout_grandchild_ignores_term),
        cmocka_unit_test(test_pre_timeout_retried),
        cmocka_unit_test(test_cancel_kills_group),
        cmocka_unit_test(test_cancel_before_run),
        cmocka_unit_test(test_cancel_during_nap),
        cmocka_unit_test(test_output_100k),
        cmocka_unit_test(test_output_stderr_nonprintable),
        cmocka_unit_test(test_output_endless),
        cmocka_unit_test(test_background_keeps_pipe),
        cmocka_unit_test(test_post_failed),
        cmocka_unit_test(test_env_add_overflow),
        cmocka_unit_test(test_no_fd_leak),
        cmocka_unit_test(test_signals_reset),
        cmocka_unit_test(test_concurrent_hooks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
