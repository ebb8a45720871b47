/* Hook scripts (worker/hooks.h). One attempt is a posix_spawn of /bin/sh -c COMMAND (glibc
 * spawns with clone(CLONE_VM|CLONE_VFORK) and does the file actions in the child with raw
 * system calls: safe in a multi-threaded process), then a loop that reads the hook's pipe
 * with a 100 ms tick, watching the deadline and the cancel flag, until the child exits. The
 * child is only observed (waitid WNOWAIT) until the end: while it is an unreaped zombie its
 * pid, and so its process group id, cannot be reused, so kill(-pid) never hits a stranger. */
#include "hooks.h"

#include "clock.h"
#include "fsutil.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 34)
#error "worker/hooks.c needs glibc 2.34 or later (posix_spawn_file_actions_addclosefrom_np)"
#endif

#define TICK_MS 100
#define READ_CHUNK 16384
#define READ_BURST (1024 * 1024) /* bytes read between two looks at the clock and the child */
#define ATTEMPT_VAR "BARQUE_ATTEMPT"
#define STATUS_NOT_RUN 127

/* What one attempt came to. */
enum { ATT_EXITED, ATT_TIMEOUT, ATT_CANCELLED, ATT_NOT_RUN };

typedef struct {
    hook_result_t *res;
    size_t len; /* bytes of res->output kept */
} capture_t;

static int cancel_set(const hook_t *h)
{
    return h->cancel && __atomic_load_n(h->cancel, __ATOMIC_ACQUIRE) != 0;
}


/* Length of the KEY of "KEY=VALUE"; 0 when there is no '=' or the key is empty. */
static size_t key_len(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : 0;
}

static int same_key(const char *kv, const char *key, size_t klen)
{
    return strncmp(kv, key, klen) == 0 && kv[klen] == '=';
}

/* Is KEY (klen bytes) the key of a usable string of extra from index `from` on? */
static int extra_has(const char *const *extra, size_t from, const char *key, size_t klen)
{
    for (size_t i = from; extra && extra[i]; i++)
        if (key_len(extra[i]) == klen && same_key(extra[i], key, klen))
            return 1;
    return 0;
}

/* environ + extra + attempt_var ("BARQUE_ATTEMPT=N", which wins over both), in a new array
 * the caller frees (the strings are borrowed). NULL when out of memory. */
static char **env_build(const char *const *extra, const char *attempt_var)
{
    size_t n_env = 0, n_extra = 0;
    while (environ && environ[n_env])
        n_env++;
    while (extra && extra[n_extra])
        n_extra++;
    char **envp = malloc((n_env + n_extra + 2) * sizeof *envp);
    if (!envp)
        return NULL;
    const size_t alen = strlen(ATTEMPT_VAR);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        const char *kv = environ[i];
        size_t kl = key_len(kv);
        if (kl && (extra_has(extra, 0, kv, kl) || (kl == alen && same_key(kv, ATTEMPT_VAR, alen))))
            continue;
        envp[k++] = (char *)kv;
    }
    for (size_t i = 0; i < n_extra; i++) {
        const char *kv = extra[i];
        size_t kl = key_len(kv);
        if (!kl || extra_has(extra, i + 1, kv, kl) || (kl == alen && same_key(kv, ATTEMPT_VAR, alen)))
            continue;
        envp[k++] = (char *)kv;
    }
    envp[k++] = (char *)attempt_var;
    envp[k] = NULL;
    return envp;
}


/* Start /bin/sh -c h->command as attempt n with stdout and stderr on wfd. 0 or an errno. */
static int spawn_hook(const hook_t *h, unsigned n, int wfd, pid_t *pid)
{
    char attempt_var[32];
    snprintf(attempt_var, sizeof attempt_var, ATTEMPT_VAR "=%u", n);
    char **envp = env_build(h->env, attempt_var);
    if (!envp)
        return ENOMEM;

    posix_spawnattr_t at;
    posix_spawn_file_actions_t fa;
    int rc = posix_spawnattr_init(&at);
    if (rc != 0) {
        free(envp);
        return rc;
    }
    rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) {
        posix_spawnattr_destroy(&at);
        free(envp);
        return rc;
    }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    /* its own process group; the signal mask and the dispositions of a fresh process (the
     * worker's threads may block signals or ignore SIGPIPE: a hook must not inherit that) */
    rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                           POSIX_SPAWN_SETSIGDEF);
    if (rc == 0)
        rc = posix_spawnattr_setpgroup(&at, 0);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&at, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&at, &all);
    if (rc == 0)
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, wfd, 1);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, wfd, 2);
    /* every other fd, O_CLOEXEC or not: other threads open files without it */
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (rc == 0) {
        char *argv[] = {"sh", "-c", (char *)h->command, NULL};
        rc = posix_spawn(pid, "/bin/sh", &fa, &at, argv, envp);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(envp);
    return rc;
}

static void capture(capture_t *c, const char *data, size_t n)
{
    char *out = c->res->output;
    for (size_t i = 0; i < n && c->len < HOOK_OUTPUT_MAX - 1; i++) {
        unsigned char b = (unsigned char)data[i];
        out[c->len++] = (b == '\n' || b == '\t' || (b >= 0x20 && b < 0x7f)) ? (char)b : '?';
    }
    out[c->len] = '\0';
}

/* Read what the pipe holds now, at most READ_BURST bytes (kept or discarded). Returns 1 at
 * end of file (or on a read error: nothing more will come), else 0. */
static int pipe_read(int fd, capture_t *c)
{
    char buf[READ_CHUNK];
    size_t total = 0;
    while (total < READ_BURST) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
            capture(c, buf, (size_t)r);
            total += (size_t)r;
        } else if (r == 0) {
            return 1;
        } else if (errno == EINTR) {
            continue;
        } else {
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
        }
    }
    return 0;
}

/* Has child pid exited? Observed only (WNOWAIT): the zombie is reaped later. 1 also when
 * the child cannot be waited for (ECHILD: reaped by someone else), so no loop spins. */
static int child_exited(pid_t pid)
{
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
            return si.si_pid != 0;
        if (errno != EINTR)
            return 1;
    }
}

/* sig to the hook's process group (to the hook alone should it have none: never left
 * running for want of a group). */
static void kill_group(pid_t pid, int sig)
{
    if (kill(-pid, sig) != 0 && errno == ESRCH)
        kill(pid, sig);
}

/* Run attempt n: res->output and res->status filled; *err set for ATT_NOT_RUN. */
static int attempt_run(const hook_t *h, unsigned n, hook_result_t *res, int *err)
{
    capture_t cap = {res, 0};
    res->output[0] = '\0';
    res->status = STATUS_NOT_RUN;
    *err = 0;

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        *err = errno;
        return ATT_NOT_RUN;
    }
    if ((*err = bq_fd_above_stdio(&p[0])) != 0 || (*err = bq_fd_above_stdio(&p[1])) != 0 ||
        fcntl(p[0], F_SETFL, O_NONBLOCK) != 0) {
        if (!*err)
            *err = errno;
        close(p[0]);
        close(p[1]);
        return ATT_NOT_RUN;
    }
    pid_t pid;
    int rc = spawn_hook(h, n, p[1], &pid);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        *err = rc;
        return ATT_NOT_RUN;
    }

    const int64_t t0 = bq_mono_ms();
    int stop = ATT_EXITED; /* or ATT_TIMEOUT / ATT_CANCELLED once the group got SIGTERM */
    int64_t kill_at = 0;
    int killed = 0;
    int rfd = p[0];
    int64_t idle_ms = 1; /* pipe closed, child alive: look again soon, then every tick */
    while (!child_exited(pid)) {
        int64_t now = bq_mono_ms();
        if (stop == ATT_EXITED) {
            if (cancel_set(h))
                stop = ATT_CANCELLED;
            else if (h->timeout_ms > 0 && now - t0 >= h->timeout_ms)
                stop = ATT_TIMEOUT;
            if (stop != ATT_EXITED) {
                kill_group(pid, SIGTERM);
                kill_at = now + HOOK_KILL_GRACE_MS;
            }
        }
        if (stop != ATT_EXITED && !killed && now >= kill_at) {
            kill_group(pid, SIGKILL);
            killed = 1;
        }
        int64_t wait_ms = TICK_MS;
        if (stop == ATT_EXITED && h->timeout_ms > 0 && t0 + h->timeout_ms - now < wait_ms)
            wait_ms = t0 + h->timeout_ms - now;
        if (wait_ms < 0)
            wait_ms = 0;
        if (rfd >= 0) {
            struct pollfd pf = {.fd = rfd, .events = POLLIN};
            int pr = poll(&pf, 1, (int)wait_ms);
            if (pr > 0 && pipe_read(rfd, &cap)) {
                close(rfd);
                rfd = -1;
            } else if (pr < 0 && errno != EINTR) {
                close(rfd);
                rfd = -1;
            }
        } else {
            bq_sleep_ms(idle_ms < wait_ms ? idle_ms : wait_ms);
            if (idle_ms < TICK_MS)
                idle_ms *= 2;
        }
    }
    /* what the child wrote before it exited is in the pipe; a grandchild may still hold the
     * pipe open (and even keep writing): take what is there now, bounded, and stop */
    if (rfd >= 0) {
        pipe_read(rfd, &cap);
        close(rfd);
    }
    /* timed out or cancelled: the rest of the group too (the leader is still unreaped) */
    if (stop != ATT_EXITED)
        kill_group(pid, SIGKILL);
    int st;
    pid_t w;
    while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
    }
    if (w != pid) {
        *err = errno;
        return stop != ATT_EXITED ? stop : ATT_NOT_RUN;
    }
    if (WIFEXITED(st))
        res->status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        res->status = -WTERMSIG(st);
    return stop;
}

/* Pause between two attempts; 1 when cancelled meanwhile. */
static int nap(const hook_t *h)
{
    int64_t end = bq_mono_ms() + (h->retry_sleep_ms > 0 ? h->retry_sleep_ms : 0);
    for (;;) {
        if (cancel_set(h))
            return 1;
        int64_t left = end - bq_mono_ms();
        if (left <= 0)
            return 0;
        bq_sleep_ms(left < TICK_MS ? left : TICK_MS);
    }
}

/* ": first line of output" (tabs as spaces, trailing blanks dropped), or "" when there is
 * no output. */
static void output_line(const char *output, char *line, size_t size)
{
    line[0] = '\0';
    while (*output == '\n' || *output == ' ' || *output == '\t')
        output++;
    if (!*output || size < 4)
        return;
    size_t k = 0;
    line[k++] = ':';
    line[k++] = ' ';
    for (; *output && *output != '\n' && k < size - 1; output++)
        line[k++] = *output == '\t' ? ' ' : *output;
    while (k > 2 && line[k - 1] == ' ')
        k--;
    line[k] = '\0';
}

/* "60 s", "300 ms", "1.5 s" */
static void duration_text(int64_t ms, char *buf, size_t size)
{
    if (ms < 1000)
        snprintf(buf, size, "%lld ms", (long long)ms);
    else if (ms % 1000 == 0)
        snprintf(buf, size, "%lld s", (long long)(ms / 1000));
    else
        snprintf(buf, size, "%.1f s", (double)ms / 1000.0);
}

/* "exit 1" / "killed by signal 9 (SIGKILL)" for the last attempt's status. */
static void status_text(int status, char *buf, size_t size)
{
    if (status >= 0) {
        snprintf(buf, size, "exit %d", status);
    } else {
        const char *abbrev = sigabbrev_np(-status);
        snprintf(buf, size, "killed by signal %d (SIG%s)", -status, abbrev ? abbrev : "?");
    }
}

static void fail_text(int err, char *buf, size_t size)
{
    char ebuf[128];
    snprintf(buf, size, "could not run /bin/sh: %s", strerror_r(err, ebuf, sizeof ebuf));
}

int hook_run(const hook_t *h, hook_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->outcome = HOOK_RAN_NONE;
    if (!h || !h->command || !h->command[0])
        return 0;
    const char *name = h->name && h->name[0] ? h->name : "unnamed";
    const int pre = h->phase == HOOK_PRE;
    const unsigned max = !pre ? 1 : h->retries >= UINT_MAX - 1 ? UINT_MAX : h->retries + 1;

    const int64_t t0 = bq_mono_ms();
    int kind = ATT_CANCELLED, err = 0;
    for (unsigned n = 1;; n++) {
        if (cancel_set(h)) {
            kind = ATT_CANCELLED;
            break;
        }
        res->attempts = n;
        kind = attempt_run(h, n, res, &err);
        if (!pre || kind == ATT_CANCELLED)
            break;
        if (kind == ATT_EXITED &&
            (res->status == 0 || res->status == HOOK_EXIT_ABORT_CONTINUE ||
             res->status == HOOK_EXIT_ABORT_STOP))
            break;
        if (n >= max)
            break;
        if (nap(h)) {
            kind = ATT_CANCELLED;
            break;
        }
    }
    res->duration_ms = bq_mono_ms() - t0;

    char line[HOOK_MESSAGE_MAX], what[HOOK_MESSAGE_MAX];
    output_line(res->output, line, sizeof line);
    const unsigned n = res->attempts;
    int rc = 0;
    switch (kind) {
    case ATT_CANCELLED:
        res->outcome = HOOK_CANCELLED;
        if (n == 0)
            snprintf(res->message, sizeof res->message, "%s hook cancelled before it ran", name);
        else
            snprintf(res->message, sizeof res->message, "%s hook cancelled (attempt %u)", name,
                     n);
        rc = BQ_E_CANCELLED;
        break;
    case ATT_TIMEOUT:
        res->outcome = HOOK_TIMEOUT;
        duration_text(h->timeout_ms, what, sizeof what);
        if (n > 1)
            snprintf(res->message, sizeof res->message,
                     "%s hook failed %u times (last timed out after %s)%s", name, n, what, line);
        else
            snprintf(res->message, sizeof res->message, "%s hook timed out after %s%s", name,
                     what, line);
        rc = BQ_E_TIMEOUT;
        break;
    case ATT_NOT_RUN:
        res->outcome = HOOK_FAILED;
        fail_text(err, what, sizeof what);
        if (n > 1)
            snprintf(res->message, sizeof res->message, "%s hook failed %u times (last: %s)",
                     name, n, what);
        else
            snprintf(res->message, sizeof res->message, "%s hook failed: %s", name, what);
        rc = BQ_E_STATE;
        break;
    default: /* ATT_EXITED */
        if (res->status == 0) {
            res->outcome = HOOK_OK;
            if (n > 1)
                snprintf(res->message, sizeof res->message, "%s hook exited 0 on attempt %u",
                         name, n);
            else
                snprintf(res->message, sizeof res->message, "%s hook exited 0", name);
        } else if (res->status == HOOK_EXIT_ABORT_CONTINUE) {
            res->outcome = HOOK_ABORT_CONTINUE;
            snprintf(res->message, sizeof res->message, "%s hook exited %d (ABORT_CONTINUE)%s",
                     name, res->status, line);
        } else if (res->status == HOOK_EXIT_ABORT_STOP) {
            res->outcome = HOOK_ABORT_STOP;
            snprintf(res->message, sizeof res->message, "%s hook exited %d (ABORT_STOP)%s",
                     name, res->status, line);
            rc = BQ_E_STATE;
        } else {
            res->outcome = HOOK_FAILED;
            status_text(res->status, what, sizeof what);
            if (n > 1)
                snprintf(res->message, sizeof res->message, "%s hook failed %u times (last %s)%s",
                         name, n, what, line);
            else if (res->status >= 0)
                snprintf(res->message, sizeof res->message, "%s hook exited %d%s", name,
                         res->status, line);
            else
                snprintf(res->message, sizeof res->message, "%s hook was %s%s", name, what,
                         line);
            rc = BQ_E_STATE;
        }
        break;
    }
    return pre ? rc : 0;
}

const char *hook_outcome_name(hook_outcome_t outcome)
{
    switch (outcome) {
    case HOOK_RAN_NONE:
        return "none";
    case HOOK_OK:
        return "ok";
    case HOOK_ABORT_CONTINUE:
        return "abort-continue";
    case HOOK_ABORT_STOP:
        return "abort-stop";
    case HOOK_FAILED:
        return "failed";
    case HOOK_TIMEOUT:
        return "timeout";
    case HOOK_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

void hook_env_init(hook_env_t *env)
{
    env->n = 0;
    env->used = 0;
    env->buf[0] = '\0';
    env->vars[0] = NULL;
}

int hook_env_add(hook_env_t *env, const char *key, const char *value)
{
    if (!key || !key[0] || strchr(key, '='))
        return BQ_E_INVAL;
    if (!value)
        value = "";
    size_t kl = strlen(key), vl = strlen(value);
    size_t need = kl + 1 + vl + 1;
    size_t slot = env->n;
    for (size_t i = 0; i < env->n; i++)
        if (same_key(env->vars[i], key, kl))
            slot = i;
    if (slot == env->n && env->n >= HOOK_ENV_SLOTS - 1)
        return BQ_E_INVAL;
    if (need > sizeof env->buf - env->used)
        return BQ_E_INVAL;
    char *s = env->buf + env->used;
    memcpy(s, key, kl);
    s[kl] = '=';
    memcpy(s + kl + 1, value, vl + 1);
    env->used += need;
    env->vars[slot] = s;
    if (slot == env->n)
        env->vars[++env->n] = NULL;
    return 0;
}

const char *const *hook_env_vars(hook_env_t *env)
{
    env->vars[env->n] = NULL;
    return env->vars;
}
