/* The restore-test job (issue 7; jobs.h, and the pieces in restest.h): a backup restored into
 * the worker's scratch directory with the recovery settings of `barque recover`, PostgreSQL
 * started on the copy as an unprivileged user, replayed to its target, checked, stopped, and
 * the copy removed, every figure measured on the way.
 *
 * Who holds what: the job's thread holds SCRATCH/rt-JOB-ATTEMPT/.lock (flock) from the
 * directory's creation to its removal, and is the parent of the postmaster (PR_SET_PDEATHSIG:
 * the server gets SIGQUIT if that thread dies, so if the worker is SIGKILLed). What a killed
 * worker leaves anyway (its directory, a server that outlived it) is found by
 * jobs_restore_test_sweep: a directory whose lock nobody holds is stale; a postmaster whose
 * cwd is its data directory is stopped; the directory is removed.
 *
 * The server talks to the worker over its socket only (its own pg_hba.conf: local trust, the
 * socket directory 0700 of the test user), never archives (archive_mode = off), never
 * replicates from the production cluster (primary_conninfo = '') and fetches its WAL with the
 * restore_command the restore wrote (`barque wal-get`). */
#include "restest.h"

#include "basebackup.h"
#include "clock.h"
#include "fsutil.h"
#include "hooks.h"
#include "jobs.h"
#include "log.h"

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SOCK_NAME_MAX 16       /* "/.s.PGSQL.65535" and its NUL */
#define RM_DEPTH_MAX 128       /* directories deeper than this are not removed */
#define LOG_TAIL_BYTES 16384   /* of postgres.log read for its last lines */
#define SWEEP_WAIT_MS 10000    /* a stale postmaster: SIGQUIT, this long, SIGKILL, this long */
#define CANCEL_GRACE_MS 2000   /* a cancelled test's server: fast shutdown this long at most */

/* rt_dir_make and the sweep: a sweep never sees a directory made but not yet locked */
static pthread_mutex_t g_dir_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- small helpers ---- */


static int cancelled(const rt_server_t *s)
{
    return s->cancel && atomic_load(s->cancel) != 0;
}

static void say(rt_server_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(rt_server_t *s, const char *fmt, ...)
{
    if (!s->progress)
        return;
    char msg[BQ_DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->progress(s->progress_arg, msg);
}

/* "12.0 MiB", "3.2 GiB" */
static char *size_text(uint64_t bytes, char *buf, size_t size)
{
    if (bytes < (1ull << 30))
        snprintf(buf, size, "%.1f MiB", (double)bytes / (1 << 20));
    else
        snprintf(buf, size, "%.1f GiB", (double)bytes / (1 << 30));
    return buf;
}


/* The first line of a libpq message without its "connection to server ... failed: " lead,
 * runs of blanks made one. */
static void pq_line(char *dst, size_t size, const char *msg)
{
    if (!msg || !*msg)
        msg = "unknown libpq error";
    const char *f = strstr(msg, " failed: ");
    if (f && strncmp(msg, "connection to server", 20) == 0)
        msg = f + 9;
    size_t k = 0;
    for (; *msg && *msg != '\n' && k + 1 < size; msg++) {
        char ch = *msg == '\t' ? ' ' : *msg;
        if (ch == ' ' && k > 0 && dst[k - 1] == ' ')
            continue;
        dst[k++] = ch;
    }
    while (k > 0 && dst[k - 1] == ' ')
        k--;
    dst[k] = '\0';
}


/* 'text' single-quoted for /bin/sh into out; 0, or -1 when it does not fit. */
static int sh_quote(const char *text, char *out, size_t size)
{
    size_t k = 0;
    if (size < 3)
        return -1;
    out[k++] = '\'';
    for (; *text; text++) {
        if (*text == '\'') {
            if (k + 4 >= size)
                return -1;
            memcpy(out + k, "'\\''", 4);
            k += 4;
        } else {
            if (k + 1 >= size)
                return -1;
            out[k++] = *text;
        }
    }
    if (k + 2 > size)
        return -1;
    out[k++] = '\'';
    out[k] = '\0';
    return 0;
}

/* ---- who, where, what ---- */

int rt_test_user(const char *configured, const char *worker, char *name, size_t size,
                 uid_t *uid, gid_t *gid, int *setid, bq_errbuf_t *e)
{
    const char *w = worker && worker[0] ? worker : "?";
    const uid_t me = geteuid();
    struct passwd pw, *pr = NULL;
    char buf[4096];
    if (configured && configured[0]) {
        if (getpwnam_r(configured, &pw, buf, sizeof buf, &pr) != 0 || !pr)
            return bq_fail(e, BQ_E_NOTFOUND, "restore_test_user %s is not a user on worker %s",
                           configured, w);
    } else if (me == 0) {
        if (getpwnam_r("postgres", &pw, buf, sizeof buf, &pr) != 0 || !pr)
            return bq_fail(e, BQ_E_NOTFOUND, "worker %s runs as root and has no user postgres "
                           "to run the restore test's server as: set [worker] restore_test_user",
                           w);
    } else if (getpwuid_r(me, &pw, buf, sizeof buf, &pr) != 0 || !pr) {
        return bq_fail(e, BQ_E_NOTFOUND, "the user of worker %s (uid %u) has no name",
                       w, (unsigned)me);
    }
    if (pr->pw_uid == 0)
        return bq_fail(e, BQ_E_CONFIG, "worker %s would run the restore test's server as root "
                       "(user %s): PostgreSQL refuses it; set [worker] restore_test_user to "
                       "another user", w, pr->pw_name);
    if (me != 0 && pr->pw_uid != me)
        return bq_fail(e, BQ_E_PERM, "worker %s does not run as root: it cannot run the restore "
                       "test's server as %s (restore_test_user); unset it to use the worker's "
                       "own user", w, pr->pw_name);
    snprintf(name, size, "%s", pr->pw_name);
    *uid = pr->pw_uid;
    *gid = me == 0 ? pr->pw_gid : getegid(); /* not root: the files are the worker's own */
    *setid = me == 0;
    return 0;
}

void rt_bindir(const char *configured, uint32_t pg_version, char *out, size_t size)
{
    if (configured && configured[0]) {
        snprintf(out, size, "%s", configured);
        return;
    }
    unsigned major = pg_version ? pg_version / 10000 : 15;
    snprintf(out, size, "/usr/lib/postgresql/%u/bin", major);
}

void rt_target_text(const bq_recovery_t *r, char *out, size_t size)
{
    if (!r->enabled || !r->kind[0])
        snprintf(out, size, "latest WAL");
    else if (strcmp(r->kind, "immediate") == 0)
        snprintf(out, size, "immediate");
    else
        snprintf(out, size, "%s %s", r->kind, r->value);
}

void rt_conninfo_user(const char *conninfo, char *out, size_t size)
{
    snprintf(out, size, "postgres");
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
    if (err)
        PQfreemem(err);
    if (!opts)
        return;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "user") == 0 && o->val && o->val[0])
            snprintf(out, size, "%s", o->val);
    PQconninfoFree(opts);
}

/* ---- the directory ---- */

int rt_dir_make(const char *scratch, uint64_t job_id, uint32_t attempt, char *dir, size_t size,
                int *lock_fd, bq_errbuf_t *e)
{
    *lock_fd = -1;
    int n = snprintf(dir, size, "%s/rt-%" PRIu64 "-%" PRIu32, scratch, job_id, attempt);
    if (n < 0 || (size_t)n >= size)
        return bq_fail(e, BQ_E_INVAL, "scratch path %s is too long", scratch);
    char lock[PATH_MAX + 8];
    snprintf(lock, sizeof lock, "%s/.lock", dir);
    int rc = 0;
    pthread_mutex_lock(&g_dir_mu);
    if (mkdir(dir, 0711) != 0) {
        rc = bq_fail(e, errno == EEXIST ? BQ_E_EXISTS : BQ_E_IO, "could not create %s: %s", dir,
                     strerror(errno));
    } else if (chmod(dir, 0711) != 0) { /* whatever the umask: the test user goes through */
        rc = bq_fail(e, BQ_E_IO, "could not set the mode of %s: %s", dir, strerror(errno));
    } else {
        int fd = open(lock, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            rc = bq_fail(e, BQ_E_IO, "could not create %s: %s", lock, strerror(errno));
        else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            rc = bq_fail(e, BQ_E_IO, "could not lock %s: %s", lock, strerror(errno));
            close(fd);
        } else {
            *lock_fd = fd;
        }
    }
    if (rc != 0 && rc != BQ_E_EXISTS) {
        unlink(lock);
        rmdir(dir);
    }
    pthread_mutex_unlock(&g_dir_mu);
    return rc;
}

/* Remove entry name of directory parent (path: its full path, in a buffer of PATH_MAX bytes
 * that is extended and restored on the way down). */
static int rm_at(int parent, const char *name, char *path, dev_t dev, int depth, bq_errbuf_t *e)
{
    struct stat sb;
    if (fstatat(parent, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : bq_fail(e, BQ_E_IO, "could not remove %s: %s", path,
                                             strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        if (unlinkat(parent, name, 0) != 0 && errno != ENOENT)
            return bq_fail(e, BQ_E_IO, "could not remove %s: %s", path, strerror(errno));
        return 0;
    }
    if (sb.st_dev != dev)
        return bq_fail(e, BQ_E_IO, "could not remove %s: another filesystem is mounted there",
                       path);
    if (depth >= RM_DEPTH_MAX)
        return bq_fail(e, BQ_E_IO, "could not remove %s: more than %d directories deep", path,
                       RM_DEPTH_MAX);
    const size_t len = strlen(path);
    for (int pass = 0; pass < 3; pass++) {
        int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
        DIR *d = fdopendir(fd);
        if (!d) {
            close(fd);
            return bq_fail(e, BQ_E_IO, "could not read %s: %s", path, strerror(errno));
        }
        int rc = 0;
        struct dirent *de;
        while (rc == 0 && (de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if (len + 1 + strlen(de->d_name) >= PATH_MAX) {
                rc = bq_fail(e, BQ_E_IO, "could not remove %s/%s: path too long", path,
                             de->d_name);
                break;
            }
            path[len] = '/';
            strcpy(path + len + 1, de->d_name);
            rc = rm_at(dirfd(d), de->d_name, path, dev, depth + 1, e);
            path[len] = '\0';
        }
        closedir(d);
        if (rc != 0)
            return rc;
        if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != ENOTEMPTY && errno != EEXIST)
            break;
        /* something appeared meanwhile (or readdir missed an entry): once more */
    }
    return bq_fail(e, BQ_E_IO, "could not remove %s: %s", path, strerror(errno));
}

int rt_dir_remove(const char *path, bq_errbuf_t *e)
{
    char buf[PATH_MAX], parent[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    snprintf(parent, sizeof parent, "%s", buf);
    char *slash = strrchr(parent, '/');
    const char *name;
    if (!slash) {
        snprintf(parent, sizeof parent, ".");
        name = buf;
    } else {
        name = buf + (slash - parent) + 1;
        if (slash == parent)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return bq_fail(e, BQ_E_INVAL, "will not remove %s", path);
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return errno == ENOENT ? 0 : bq_fail(e, BQ_E_IO, "could not open %s: %s", parent,
                                             strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstatat(pfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            rc = bq_fail(e, BQ_E_IO, "could not remove %s: %s", buf, strerror(errno));
    } else {
        rc = rm_at(pfd, name, buf, sb.st_dev, 0, e);
    }
    close(pfd);
    return rc;
}

/* ---- the server ---- */

int rt_server_init(rt_server_t *s, const char *dir, const char *bindir, const char *user,
                   const char *worker, bq_errbuf_t *e)
{
    memset(s, 0, sizeof *s);
    if (dir[0] != '/' || strlen(dir) + 32 >= sizeof s->dir)
        return bq_fail(e, BQ_E_CONFIG, "restore test directory %s is not an absolute path of "
                       "at most %zu bytes", dir, sizeof s->dir - 32);
    if (strpbrk(dir, ",\"'\\\n"))
        return bq_fail(e, BQ_E_CONFIG, "restore test directory %s has a comma, quote, backslash "
                       "or newline: PostgreSQL cannot take it as unix_socket_directories", dir);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->data, sizeof s->data, "%s/data", dir);
    snprintf(s->sock, sizeof s->sock, "%s/sock", dir);
    snprintf(s->hba, sizeof s->hba, "%s/pg_hba.conf", dir);
    snprintf(s->log, sizeof s->log, "%s/postgres.log", dir);
    struct sockaddr_un sun;
    if (strlen(s->sock) + SOCK_NAME_MAX > sizeof sun.sun_path)
        return bq_fail(e, BQ_E_CONFIG, "the restore test's socket directory %s is longer than "
                       "%zu bytes (a socket path has at most %zu): use a shorter [worker] scratch",
                       s->sock, sizeof sun.sun_path - SOCK_NAME_MAX, sizeof sun.sun_path - 1);
    int rc = rt_test_user(user, worker, s->os_user, sizeof s->os_user, &s->uid, &s->gid,
                          &s->setid, e);
    if (rc != 0)
        return rc;
    if (snprintf(s->bindir, sizeof s->bindir, "%s", bindir) >= (int)sizeof s->bindir - 16)
        return bq_fail(e, BQ_E_CONFIG, "pg_bindir %s is too long", bindir);
    snprintf(s->postgres, sizeof s->postgres, "%s/postgres", s->bindir);
    struct stat sb;
    if (stat(s->postgres, &sb) != 0 || access(s->postgres, X_OK) != 0)
        return bq_fail(e, BQ_E_CONFIG, "PostgreSQL's server %s cannot be run on worker %s: %s "
                       "(install the backup's major version there, or set [worker] pg_bindir)",
                       s->postgres, worker && worker[0] ? worker : "?", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return bq_fail(e, BQ_E_CONFIG, "PostgreSQL's server %s is not a file", s->postgres);
    snprintf(s->login_user, sizeof s->login_user, "postgres");
    snprintf(s->login_db, sizeof s->login_db, "postgres");
    return 0;
}

/* The test user's path (chown only when the worker is root: otherwise it is already). */
static int give(const rt_server_t *s, int fd, const char *path, bq_errbuf_t *e)
{
    if (!s->setid)
        return 0;
    int r = fd >= 0 ? fchown(fd, s->uid, s->gid)
                    : fchownat(AT_FDCWD, path, s->uid, s->gid, AT_SYMLINK_NOFOLLOW);
    return r == 0 ? 0 : bq_fail(e, BQ_E_IO, "could not give %s to %s: %s", path, s->os_user,
                                strerror(errno));
}

/* Create path (O_EXCL unless append) with content, the test user's, mode 0600. */
static int file_make(const rt_server_t *s, const char *path, const char *content, int append,
                     bq_errbuf_t *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (append ? O_APPEND : O_EXCL),
                  0600);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not create %s: %s", path, strerror(errno));
    int rc = 0;
    size_t n = strlen(content);
    if (n && write(fd, content, n) != (ssize_t)n)
        rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", path, strerror(errno));
    if (rc == 0 && fchmod(fd, 0600) != 0)
        rc = bq_fail(e, BQ_E_IO, "could not set the mode of %s: %s", path, strerror(errno));
    if (rc == 0)
        rc = give(s, fd, path, e);
    close(fd);
    return rc;
}

int rt_server_files(rt_server_t *s, bq_errbuf_t *e)
{
    if (mkdir(s->sock, 0700) != 0 && errno != EEXIST)
        return bq_fail(e, BQ_E_IO, "could not create %s: %s", s->sock, strerror(errno));
    struct stat sb;
    if (lstat(s->sock, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return bq_fail(e, BQ_E_IO, "%s is not a directory", s->sock);
    if (chmod(s->sock, 0700) != 0)
        return bq_fail(e, BQ_E_IO, "could not set the mode of %s: %s", s->sock, strerror(errno));
    int rc = give(s, -1, s->sock, e);
    if (rc == 0 && unlink(s->hba) != 0 && errno != ENOENT)
        rc = bq_fail(e, BQ_E_IO, "could not remove %s: %s", s->hba, strerror(errno));
    if (rc == 0)
        rc = file_make(s, s->hba, "# barque restore test: connections over its socket only\n"
                                  "local all all trust\n", 0, e);
    if (rc == 0)
        rc = file_make(s, s->log, "", 1, e);
    return rc;
}

/* A port free on 127.0.0.1 now (someone may take it before the server binds it). */
static int free_port(int *port, bq_errbuf_t *e)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not make a socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        rc = bq_fail(e, BQ_E_IO, "could not find a free port on 127.0.0.1: %s", strerror(errno));
    else
        *port = ntohs(a.sin_port);
    close(fd);
    return rc;
}

/* What the child needs, all prepared before fork (the child of a threaded process may only
 * make async-signal-safe calls: no malloc, no locale, no stdio). */
typedef struct {
    int devnull, logfd;
    pid_t parent;
    int setid;
    uid_t uid;
    gid_t gid;
    const char *dir, *postgres;
    char *const *argv;
} spawn_t;

static __attribute__((noreturn)) void child_run(const spawn_t *sp)
{
    setpgid(0, 0);
    if (dup2(sp->devnull, 0) < 0 || dup2(sp->logfd, 1) < 0 || dup2(sp->logfd, 2) < 0)
        _exit(126);
    /* every other fd, O_CLOEXEC or not (other threads open files without it) */
    if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0) /* a kernel before 5.9 */
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
    /* a fresh signal state: the worker's threads block and ignore signals the server needs */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chdir(sp->dir) != 0)
        _exit(126);
    if (sp->setid) {
        /* raw system calls: the libc wrappers of a threaded process broadcast credential
         * changes to every thread, which a forked child must not attempt */
        static const char msg[] = "barque: could not drop to the restore test user\n";
        if (syscall(SYS_setgroups, 0, NULL) != 0 ||
            syscall(SYS_setresgid, sp->gid, sp->gid, sp->gid) != 0 ||
            syscall(SYS_setresuid, sp->uid, sp->uid, sp->uid) != 0) {
            ssize_t w = write(2, msg, sizeof msg - 1);
            (void)w;
            _exit(126);
        }
    }
    /* after the credential change, which clears it; then the parent may already be gone */
    prctl(PR_SET_PDEATHSIG, SIGQUIT);
    if (getppid() != sp->parent)
        _exit(1);
    execv(sp->postgres, sp->argv);
    static const char msg[] = "barque: could not execute the PostgreSQL server\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

int rt_server_start(rt_server_t *s, bq_errbuf_t *e)
{
    int port = 0;
    int rc = free_port(&port, e);
    if (rc != 0)
        return rc;
    char o_port[32], o_sock[PATH_MAX + 32], o_hba[PATH_MAX + 16];
    snprintf(o_port, sizeof o_port, "port=%d", port);
    snprintf(o_sock, sizeof o_sock, "unix_socket_directories=%s", s->sock);
    snprintf(o_hba, sizeof o_hba, "hba_file=%s", s->hba);
    /* argv[0] is the full path: postgres finds its own executable (and its libraries) from it */
    char *argv[] = {s->postgres, "-D", s->data,
                    "-c", o_port,
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", o_sock,
                    "-c", o_hba,
                    "-c", "archive_mode=off",
                    "-c", "archive_command=",
                    "-c", "synchronous_standby_names=",
                    "-c", "primary_conninfo=",
                    "-c", "primary_slot_name=",
                    "-c", "hot_standby=on",
                    "-c", "ssl=off",
                    "-c", "logging_collector=off",
                    "-c", "log_destination=stderr",
                    "-c", "cluster_name=barque-restore-test",
                    /* the production's commands never run on the worker's host */
                    "-c", "archive_cleanup_command=",
                    "-c", "recovery_end_command=",
                    /* huge_pages = on there need not be possible here */
                    "-c", "huge_pages=try",
                    NULL};
    int logfd = open(s->log, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int err = logfd < 0 || devnull < 0 ? errno : 0;
    if (!err)
        err = bq_fd_above_stdio(&logfd);
    if (!err)
        err = bq_fd_above_stdio(&devnull);
    if (err) {
        if (logfd >= 0)
            close(logfd);
        if (devnull >= 0)
            close(devnull);
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", s->log, strerror(err));
    }
    off_t from = lseek(logfd, 0, SEEK_END);
    spawn_t sp = {.devnull = devnull, .logfd = logfd, .parent = getpid(), .setid = s->setid,
                  .uid = s->uid, .gid = s->gid, .dir = s->dir, .postgres = s->postgres,
                  .argv = argv};
    pid_t pid = fork();
    if (pid == 0)
        child_run(&sp);
    err = errno;
    close(logfd);
    close(devnull);
    if (pid < 0)
        return bq_fail(e, BQ_E_IO, "could not start PostgreSQL: fork: %s", strerror(err));
    s->pid = pid;
    s->port = port;
    s->spawns++;
    s->t_spawn = bq_mono_ms();
    s->log_from = from > 0 ? (long)from : 0;
    bq_info(RT_COMP, s->job_id, "PostgreSQL started on %s (pid %d, port %d, user %s)", s->data,
            (int)pid, port, s->os_user);
    say(s, "starting PostgreSQL on port %d", port);
    return 0;
}

/* Connect to the server over its socket; NULL with why on failure. */
static PGconn *rt_connect(const rt_server_t *s, const char *user, const char *db, char *why,
                          size_t size)
{
    char port[16], opts[64] = "";
    snprintf(port, sizeof port, "%d", s->port);
    if (s->deadline_ms > 0) {
        int64_t left = s->deadline_ms - bq_mono_ms();
        if (left > INT32_MAX)
            left = INT32_MAX; /* statement_timeout's range; the deadline is checked anyway */
        snprintf(opts, sizeof opts, "-c statement_timeout=%lld", (long long)(left > 1 ? left : 1));
    }
    const char *k[] = {"host", "port", "user", "dbname", "connect_timeout", "application_name",
                       "sslmode", "gssencmode", "options", NULL};
    const char *v[] = {s->sock, port, user, db, "5", "barque-restore-test", "disable", "disable",
                       opts, NULL};
    PGconn *c = PQconnectdbParams(k, v, 0); /* 0: a database name is never a conninfo */
    if (!c) {
        snprintf(why, size, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        pq_line(why, size, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* PQexec that gives up when the test is cancelled or out of time: the query is sent, the
 * socket polled every RT_POLL_MS, and a cancel request sent to the server when it must stop
 * (the results that follow are drained for at most 5 s). The last result (caller clears), or
 * NULL (out of memory, connection lost, or given up: why says so). */
static PGresult *exec_wait(const rt_server_t *s, PGconn *c, const char *sql, char *why,
                           size_t size)
{
    if (!PQsendQuery(c, sql)) {
        pq_line(why, size, PQerrorMessage(c));
        return NULL;
    }
    PGresult *last = NULL;
    int64_t stop_at = 0; /* when draining after a cancel request */
    for (;;) {
        while (!PQisBusy(c)) {
            PGresult *r = PQgetResult(c);
            if (!r) {
                if (stop_at) {
                    PQclear(last);
                    snprintf(why, size, "%s", cancelled(s) ? "cancelled"
                                                          : "the test's timeout passed");
                    return NULL;
                }
                return last;
            }
            PQclear(last);
            last = r;
        }
        if (!stop_at && (cancelled(s) || (s->deadline_ms > 0 && bq_mono_ms() >= s->deadline_ms))) {
            PGcancel *pc = PQgetCancel(c);
            char ebuf[256];
            if (pc) {
                PQcancel(pc, ebuf, sizeof ebuf);
                PQfreeCancel(pc);
            }
            stop_at = bq_mono_ms() + 5000;
        }
        if (stop_at && bq_mono_ms() >= stop_at) {
            PQclear(last);
            snprintf(why, size, "%s", cancelled(s) ? "cancelled" : "the test's timeout passed");
            return NULL; /* the caller's PQfinish drops the connection */
        }
        struct pollfd pf = {.fd = PQsocket(c), .events = POLLIN};
        if (pf.fd < 0 || (poll(&pf, 1, RT_POLL_MS) < 0 && errno != EINTR) ||
            !PQconsumeInput(c)) {
            PQclear(last);
            pq_line(why, size, PQerrorMessage(c));
            return NULL;
        }
    }
}

/* One value of a one-row query (NULL: isnull set); 0, or -1 with why. */
static int query1(const rt_server_t *s, PGconn *c, const char *sql, char *val, size_t size,
                  int *isnull, char *why, size_t wsize)
{
    PGresult *r = exec_wait(s, c, sql, why, wsize);
    int rc = -1;
    if (!r)
        ; /* why is set */
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        pq_line(why, wsize, PQresultErrorMessage(r));
    else if (PQntuples(r) < 1 || PQnfields(r) < 1)
        snprintf(why, wsize, "no row from %s", sql);
    else {
        if (isnull)
            *isnull = PQgetisnull(r, 0, 0);
        snprintf(val, size, "%s", PQgetvalue(r, 0, 0));
        rc = 0;
    }
    PQclear(r);
    return rc;
}

static void status_text(int st, char *buf, size_t size)
{
    if (WIFEXITED(st))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, size, "was killed by signal %d (SIG%s)", WTERMSIG(st),
                 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
    else
        snprintf(buf, size, "ended (status 0x%x)", (unsigned)st);
}

int rt_server_wait(rt_server_t *s, bq_errbuf_t *e)
{
    PGconn *c = NULL;
    int consistent = 0;
    int64_t last_say = 0;
    const char *users[2] = {s->login_user[0] ? s->login_user : "postgres", "postgres"};
    const char *dbs[3] = {s->login_db[0] ? s->login_db : "postgres", "postgres", "template1"};
    unsigned ui = 0, di = 0;
    char why[512] = "", lsn[32] = "";
    for (;;) {
        if (s->pid <= 0) {
            PQfinish(c);
            return bq_fail(e, BQ_E_STATE, "PostgreSQL is not running");
        }
        int st = 0;
        pid_t w = waitpid(s->pid, &st, WNOHANG);
        if (w == s->pid || (w < 0 && errno == ECHILD)) {
            s->pid = 0;
            PQfinish(c);
            c = NULL;
            char tail[700], how[64];
            rt_log_tail(s->log, s->log_from, tail, sizeof tail);
            if (!consistent && s->spawns < RT_PORT_TRIES &&
                (strstr(tail, "could not bind") || strstr(tail, "Address already in use"))) {
                bq_warn(RT_COMP, s->job_id, "port %d was taken before PostgreSQL bound it: "
                        "starting it again on another port", s->port);
                int rc = rt_server_start(s, e);
                if (rc != 0)
                    return rc;
                continue;
            }
            status_text(st, how, sizeof how);
            bq_warn(RT_COMP, s->job_id, "PostgreSQL on %s %s: %s", s->data, how, tail);
            return bq_fail(e, BQ_E_PG, "PostgreSQL %s %s: %s", how,
                           consistent ? "during recovery" : "before it accepted connections",
                           tail[0] ? tail : "(nothing in its log)");
        }
        if (cancelled(s)) {
            PQfinish(c);
            return bq_fail(e, BQ_E_CANCELLED, "cancelled");
        }
        int64_t now = bq_mono_ms();
        if (s->deadline_ms > 0 && now >= s->deadline_ms) {
            PQfinish(c);
            if (!consistent)
                return bq_fail(e, BQ_E_TIMEOUT, "PostgreSQL did not accept connections before "
                               "the test's timeout (last: %s)", why[0] ? why : "no attempt");
            return bq_fail(e, BQ_E_TIMEOUT, "recovery did not end before the test's timeout "
                           "(replayed to %s)", lsn[0] ? lsn : "?");
        }
        if (!c) {
            c = rt_connect(s, consistent ? s->superuser : users[ui], dbs[di], why, sizeof why);
            if (c && !consistent) {
                int isnull = 0;
                if (query1(s, c, "SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10",
                           s->superuser, sizeof s->superuser, &isnull, why, sizeof why) != 0 ||
                    isnull || !s->superuser[0]) {
                    if (!why[0] || isnull)
                        snprintf(why, sizeof why, "no role of oid 10");
                    PQfinish(c);
                    c = NULL;
                } else {
                    consistent = 1;
                    s->t_consistent = bq_mono_ms();
                    snprintf(s->conn_db, sizeof s->conn_db, "%s", dbs[di]);
                    bq_info(RT_COMP, s->job_id, "PostgreSQL on port %d is consistent after "
                            "%.1f s (superuser %s)", s->port,
                            (double)(s->t_consistent - s->t_spawn) / 1000, s->superuser);
                }
            } else if (!c && !consistent && strstr(why, "does not exist")) {
                if (strstr(why, "role \"") && ui == 0)
                    ui = 1;
                else if (strstr(why, "database \"") && di < 2)
                    di++;
            }
        }
        if (c) {
            PGresult *r = PQexec(c, "SELECT pg_catalog.pg_is_in_recovery(), "
                                    "pg_catalog.pg_last_wal_replay_lsn()");
            if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
                int in_recovery = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
                uint64_t l = 0;
                if (!PQgetisnull(r, 0, 1) && pg_lsn_parse(PQgetvalue(r, 0, 1), &l) == 0) {
                    s->replay_lsn = l;
                    pg_lsn_format(l, lsn, sizeof lsn);
                }
                PQclear(r);
                if (!in_recovery) {
                    s->t_end = bq_mono_ms();
                    PQfinish(c);
                    bq_info(RT_COMP, s->job_id, "PostgreSQL on port %d is out of recovery after "
                            "%.1f s of replay%s%s", s->port,
                            (double)(s->t_end - s->t_consistent) / 1000, lsn[0] ? " to " : "", lsn);
                    return 0;
                }
                now = bq_mono_ms();
                if (now - last_say >= 1000) {
                    last_say = now;
                    say(s, "replaying WAL (at LSN %s)", lsn[0] ? lsn : "?");
                }
            } else { /* the server went away (restarting after a crash?): connect again */
                pq_line(why, sizeof why, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
                PQclear(r);
                PQfinish(c);
                c = NULL;
            }
        }
        bq_sleep_ms(RT_POLL_MS);
    }
}

/* Reap pid within ms; 1 when it is gone. */
static int reap_within(pid_t pid, int64_t ms)
{
    int64_t end = bq_mono_ms() + ms;
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid || (w < 0 && errno == ECHILD))
            return 1;
        if (bq_mono_ms() >= end)
            return 0;
        bq_sleep_ms(RT_POLL_MS);
    }
}

/* sig to pid's process group (to pid alone should it have none). The postmaster is our
 * unreaped child until reap_within: its pid, and so its group's id, cannot be reused. */
static void kill_group(pid_t pid, int sig)
{
    if (kill(-pid, sig) != 0 && errno == ESRCH)
        kill(pid, sig);
}

void rt_server_stop(rt_server_t *s, int64_t grace_ms)
{
    if (s->pid <= 0)
        return;
    pid_t pid = s->pid;
    s->pid = 0;
    kill(pid, SIGINT);
    if (reap_within(pid, grace_ms))
        return;
    bq_warn(RT_COMP, s->job_id, "PostgreSQL (pid %d) did not stop within %.0f s of a fast "
            "shutdown: SIGQUIT", (int)pid, (double)grace_ms / 1000);
    kill_group(pid, SIGQUIT);
    if (reap_within(pid, grace_ms < 5000 ? grace_ms : 5000))
        return;
    kill_group(pid, SIGKILL);
    if (!reap_within(pid, 10000))
        bq_error(RT_COMP, s->job_id, "PostgreSQL (pid %d) did not exit after SIGKILL", (int)pid);
}

void rt_log_tail(const char *log, long from, char *out, size_t size)
{
    out[0] = '\0';
    int fd = open(log, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    struct stat sb;
    char buf[LOG_TAIL_BYTES + 1];
    ssize_t n = -1;
    long start = from > 0 ? from : 0;
    if (fstat(fd, &sb) == 0) {
        if (sb.st_size - start > LOG_TAIL_BYTES)
            start = (long)sb.st_size - LOG_TAIL_BYTES;
        n = start < sb.st_size ? pread(fd, buf, LOG_TAIL_BYTES, start) : 0;
    }
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    char *p = buf;
    if (start > from && start > 0) { /* cut in the middle of a line: skip it */
        char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : p + n;
    }
    /* the lines, as offsets; the last 3 that hold a severity, else the last 3 */
    enum { KEEP = 3 };
    const char *hit[KEEP] = {0}, *any[KEEP] = {0};
    size_t nhit = 0, nany = 0;
    for (char *line = p; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        const char *lv = NULL;
        static const char *const sev[] = {"PANIC:", "FATAL:", "ERROR:"};
        for (size_t i = 0; i < 3 && !lv; i++)
            lv = strstr(line, sev[i]);
        if (line[strspn(line, " \t\r")]) {
            any[nany % KEEP] = line;
            nany++;
        }
        if (lv) {
            hit[nhit % KEEP] = lv;
            nhit++;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    const char **pick = nhit ? hit : any;
    size_t np = nhit ? nhit : nany;
    size_t k = 0;
    for (size_t i = np > KEEP ? np - KEEP : 0; i < np && k + 1 < size; i++) {
        const char *l = pick[i % KEEP];
        if (k && k + 2 < size) {
            out[k++] = ';';
            out[k++] = ' ';
        }
        for (; *l && k + 1 < size; l++) {
            unsigned char ch = (unsigned char)*l;
            char c = ch == '\t' || ch == '\r' ? ' ' : (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
            if (c == ' ' && (k == 0 || out[k - 1] == ' '))
                continue;
            out[k++] = c;
        }
        while (k > 0 && out[k - 1] == ' ')
            k--;
    }
    out[k] = '\0';
}

/* ---- the checks ---- */

uint64_t rt_wal_segments(uint64_t reached_lsn, uint64_t start_lsn, uint32_t seg_size)
{
    if (!seg_size || reached_lsn == 0 || reached_lsn <= start_lsn)
        return 0;
    return (reached_lsn - 1) / seg_size - start_lsn / seg_size + 1;
}

static void item_set(bq_check_item_t *it, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void item_set(bq_check_item_t *it, const char *name, int ok, const char *fmt, ...)
{
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    it->ok = ok ? 1 : 0;
    it->severity = ok ? BQ_SEV_OK : BQ_SEV_CRITICAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->detail, sizeof it->detail, fmt, ap);
    va_end(ap);
}

void rt_check_wal(uint64_t reached_lsn, uint64_t start_lsn, uint32_t seg_size,
                  const char *wal_end, bq_check_item_t *it)
{
    uint32_t tli = 0, hi = 0, lo = 0;
    char at[32];
    pg_lsn_format(reached_lsn, at, sizeof at);
    if (seg_size < (1u << 20) || seg_size > (1u << 30) || (seg_size & (seg_size - 1))) {
        item_set(it, "WAL replay", 0, "the server's wal_segment_size (%u) is not a power of two "
                 "from 1 MiB to 1 GiB", seg_size);
        return;
    }
    if (bq_wal_segment_parse(wal_end, &tli, &hi, &lo) != 0) {
        item_set(it, "WAL replay", 0, "the end of the archive \"%s\" is not a WAL segment name",
                 wal_end);
        return;
    }
    const uint64_t end_segno = (uint64_t)hi * (0x100000000ull / seg_size) + lo;
    const uint64_t nseg = rt_wal_segments(reached_lsn, start_lsn, seg_size);
    if (reached_lsn == 0) {
        char missing[32];
        pg_wal_file_name(tli, start_lsn / seg_size, seg_size, missing, sizeof missing);
        item_set(it, "WAL replay", 0, "recovery replayed no WAL (pg_last_wal_replay_lsn() is "
                 "NULL) before the end of the archive (%s): WAL segment %s is missing or "
                 "unreadable", wal_end, missing);
        return;
    }
    const uint64_t reached = (reached_lsn - 1) / seg_size;
    if (reached < end_segno) {
        char seg[32], missing[32];
        pg_wal_file_name(tli, reached, seg_size, seg, sizeof seg);
        pg_wal_file_name(tli, reached + 1, seg_size, missing, sizeof missing);
        item_set(it, "WAL replay", 0, "recovery ended at %s (segment %s) before the end of the "
                 "archive (%s): WAL segment %s is missing or unreadable", at, seg, wal_end,
                 missing);
        return;
    }
    item_set(it, "WAL replay", 1, "replayed to %s (%" PRIu64 " segment%s)", at, nseg,
             nseg == 1 ? "" : "s");
}

/* A new item of rt (NULL when rt has no room: counted as failed by the caller). */
static bq_check_item_t *item_new(bq_restore_test_t *rt)
{
    if (rt->nchecks >= BQ_RT_CHECKS_MAX)
        return NULL;
    return &rt->checks[rt->nchecks++];
}

#define ITEM(rt, fails, name, ok, ...)                                                        \
    do {                                                                                      \
        bq_check_item_t *it_ = item_new(rt);                                                  \
        int ok_ = (ok);                                                                       \
        if (it_)                                                                              \
            item_set(it_, name, ok_, __VA_ARGS__);                                            \
        if (!it_ || !ok_)                                                                     \
            (fails)++;                                                                        \
    } while (0)

static int out_of_time(const rt_server_t *s, char *why, size_t size)
{
    if (cancelled(s)) {
        snprintf(why, size, "cancelled");
        return 1;
    }
    if (s->deadline_ms > 0 && bq_mono_ms() >= s->deadline_ms) {
        snprintf(why, size, "the test's timeout passed");
        return 1;
    }
    return 0;
}

/* "databases": every database that allows connections answers, and one row of each of its
 * tables and materialized views can be read. */
static void check_databases(rt_server_t *s, PGconn *c, bq_restore_test_t *rt, int *fails)
{
    char why[512];
    PGresult *r = exec_wait(s, c, "SELECT datname FROM pg_catalog.pg_database WHERE "
                            "datallowconn ORDER BY datname", why, sizeof why);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (r)
            pq_line(why, sizeof why, PQresultErrorMessage(r));
        PQclear(r);
        ITEM(rt, *fails, "databases", 0, "could not list the databases: %s", why);
        return;
    }
    int ndb = PQntuples(r);
    char first[BQ_DETAIL_MAX] = "";
    unsigned nfail = 0;
    uint64_t tables = 0;
    for (int i = 0; i < ndb; i++) {
        const char *db = PQgetvalue(r, i, 0);
        if (out_of_time(s, why, sizeof why)) {
            if (!nfail++)
                snprintf(first, sizeof first, "database %s not checked: %s", db, why);
            break;
        }
        PGconn *d = rt_connect(s, s->superuser, db, why, sizeof why);
        if (!d) {
            if (!nfail++)
                snprintf(first, sizeof first, "database %s: could not connect: %s", db, why);
            continue;
        }
        char val[32];
        if (query1(s, d, "SELECT count(*) FROM pg_catalog.pg_class", val, sizeof val, NULL, why,
                   sizeof why) != 0) {
            if (!nfail++)
                snprintf(first, sizeof first, "database %s: pg_class: %s", db, why);
            PQfinish(d);
            continue;
        }
        PGresult *t = exec_wait(s, d, "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
                                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                                "WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' "
                                "AND c.relispopulated ORDER BY 1, 2 LIMIT 10000", why, sizeof why);
        if (!t || PQresultStatus(t) != PGRES_TUPLES_OK) {
            if (t)
                pq_line(why, sizeof why, PQresultErrorMessage(t));
            if (!nfail++)
                snprintf(first, sizeof first, "database %s: could not list its tables: %s", db,
                         why);
            PQclear(t);
            PQfinish(d);
            continue;
        }
        int nt = PQntuples(t);
        for (int j = 0; j < nt && j < RT_TABLES_MAX; j++) {
            const char *nsp = PQgetvalue(t, j, 0), *rel = PQgetvalue(t, j, 1);
            if (out_of_time(s, why, sizeof why)) {
                if (!nfail++)
                    snprintf(first, sizeof first, "database %s: table %s.%s not read: %s", db,
                             nsp, rel, why);
                break;
            }
            char *qn = PQescapeIdentifier(d, nsp, strlen(nsp));
            char *qr = PQescapeIdentifier(d, rel, strlen(rel));
            char sql[1024];
            int ok = 0;
            if (qn && qr) {
                snprintf(sql, sizeof sql, "SELECT 1 FROM ONLY %s.%s LIMIT 1", qn, qr);
                PGresult *q = exec_wait(s, d, sql, why, sizeof why);
                ok = q && PQresultStatus(q) == PGRES_TUPLES_OK;
                if (q && !ok)
                    pq_line(why, sizeof why, PQresultErrorMessage(q));
                PQclear(q);
            } else {
                pq_line(why, sizeof why, PQerrorMessage(d));
            }
            PQfreemem(qn);
            PQfreemem(qr);
            if (ok)
                tables++;
            else if (!nfail++)
                snprintf(first, sizeof first, "database %s: table %s.%s: %s", db, nsp, rel, why);
        }
        PQclear(t);
        PQfinish(d);
    }
    PQclear(r);
    if (nfail > 1)
        ITEM(rt, *fails, "databases", 0, "%s (%u failures in all)", first, nfail);
    else if (nfail)
        ITEM(rt, *fails, "databases", 0, "%s", first);
    else
        ITEM(rt, *fails, "databases", 1, "%d database%s, %" PRIu64 " table%s read", ndb,
             ndb == 1 ? "" : "s", tables, tables == 1 ? "" : "s");
}

/* The first lines of a program's output as one line (" / " between lines). */
static void output_lines(const char *out, char *line, size_t size)
{
    size_t k = 0;
    line[0] = '\0';
    for (const char *p = out; *p && k + 1 < size; p++) {
        if (*p == '\n') {
            while (k > 0 && line[k - 1] == ' ')
                k--;
            if (k && p[1] && k + 4 < size) {
                memcpy(line + k, " / ", 3);
                k += 3;
            }
            continue;
        }
        char ch = *p == '\t' ? ' ' : *p;
        if (ch == ' ' && (k == 0 || line[k - 1] == ' '))
            continue;
        line[k++] = ch;
    }
    while (k > 0 && (line[k - 1] == ' ' || line[k - 1] == '/'))
        k--;
    line[k] = '\0';
}

/* "pg_amcheck": heap and btree checks of every database (hooks.h runs it: own process group,
 * output captured and bounded, timeout and cancel). */
static void check_amcheck(rt_server_t *s, bq_restore_test_t *rt, int *fails)
{
    char prog[PATH_MAX + 16], why[BQ_DETAIL_MAX];
    snprintf(prog, sizeof prog, "%s/pg_amcheck", s->bindir);
    if (access(prog, X_OK) != 0) {
        ITEM(rt, *fails, "pg_amcheck", 0, "%s cannot be run: %s", prog, strerror(errno));
        return;
    }
    if (out_of_time(s, why, sizeof why)) {
        ITEM(rt, *fails, "pg_amcheck", 0, "not run: %s", why);
        return;
    }
    char qp[2 * PATH_MAX], qs[2 * PATH_MAX], qu[4 * BQ_NAME_MAX], cmd[6 * PATH_MAX];
    if (sh_quote(prog, qp, sizeof qp) || sh_quote(s->sock, qs, sizeof qs) ||
        sh_quote(s->superuser, qu, sizeof qu)) {
        ITEM(rt, *fails, "pg_amcheck", 0, "not run: its command line is too long");
        return;
    }
    snprintf(cmd, sizeof cmd, "exec %s --all --install-missing -h %s -p %d -U %s", qp, qs,
             s->port, qu);
    hook_env_t env;
    hook_env_init(&env);
    hook_env_add(&env, "PGCONNECT_TIMEOUT", "10");
    hook_env_add(&env, "PGAPPNAME", "barque-restore-test");
    hook_env_add(&env, "PGSSLMODE", "disable");
    int64_t left = s->deadline_ms > 0 ? s->deadline_ms - bq_mono_ms() : 0;
    hook_t h = {.name = "pg_amcheck", .command = cmd, .phase = HOOK_POST,
                .timeout_ms = s->deadline_ms > 0 ? (left > 1 ? left : 1) : 0,
                .env = hook_env_vars(&env), .cancel = (volatile int *)s->cancel};
    hook_result_t hr;
    hook_run(&h, &hr);
    char line[BQ_DETAIL_MAX];
    output_lines(hr.output, line, sizeof line);
    if (hr.outcome == HOOK_OK)
        ITEM(rt, *fails, "pg_amcheck", 1, "every database checked (heap and btree) in %.1f s: "
             "no corruption", (double)hr.duration_ms / 1000);
    else if (hr.outcome == HOOK_TIMEOUT)
        ITEM(rt, *fails, "pg_amcheck", 0, "pg_amcheck did not end before the test's timeout%s%s",
             line[0] ? ": " : "", line);
    else if (hr.outcome == HOOK_CANCELLED)
        ITEM(rt, *fails, "pg_amcheck", 0, "cancelled");
    else if (hr.status < 0)
        ITEM(rt, *fails, "pg_amcheck", 0, "pg_amcheck was killed by signal %d%s%s", -hr.status,
             line[0] ? ": " : "", line);
    else
        ITEM(rt, *fails, "pg_amcheck", 0, "pg_amcheck exited %d%s%s", hr.status,
             line[0] ? ": " : "", line[0] ? line : hr.message);
}

/* "restore_test_sql": the text must return true (first column of the first row of the last
 * result). */
static void check_sql(rt_server_t *s, const bq_rt_spec_t *spec, bq_restore_test_t *rt,
                      int *fails)
{
    char what[BQ_DEST_MAX + 32], why[512];
    snprintf(what, sizeof what, "restore_test_sql%s%s", spec->sql_file[0] ? " " : "",
             spec->sql_file);
    const char *db = spec->dbname[0] ? spec->dbname : "postgres";
    if (out_of_time(s, why, sizeof why)) {
        ITEM(rt, *fails, "restore_test_sql", 0, "%s not run: %s", what, why);
        return;
    }
    PGconn *c = rt_connect(s, s->superuser, db, why, sizeof why);
    if (!c) {
        ITEM(rt, *fails, "restore_test_sql", 0, "%s: could not connect to database %s: %s",
             what, db, why);
        return;
    }
    why[0] = '\0';
    PGresult *r = exec_wait(s, c, spec->sql, why, sizeof why);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0) {
        const char *v = PQgetisnull(r, 0, 0) ? "NULL" : PQgetvalue(r, 0, 0);
        if (strcmp(v, "t") == 0)
            ITEM(rt, *fails, "restore_test_sql", 1, "%s returned true (database %s)", what, db);
        else
            ITEM(rt, *fails, "restore_test_sql", 0, "%s returned %.64s%s, not true", what, v,
                 strlen(v) > 64 ? "..." : "");
    } else if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        ITEM(rt, *fails, "restore_test_sql", 0, "%s returned no row, not true", what);
    } else {
        if (r)
            pq_line(why, sizeof why, PQresultErrorMessage(r));
        ITEM(rt, *fails, "restore_test_sql", 0, "%s failed: %s", what, why);
    }
    PQclear(r);
    PQfinish(c);
}

int rt_checks_run(rt_server_t *s, const bq_rt_spec_t *spec, const char *target_kind,
                  bq_restore_test_t *rt)
{
    const int64_t t0 = bq_mono_ms();
    int fails = 0;
    char why[512] = "";
    const char *db = s->conn_db[0] ? s->conn_db : s->login_db[0] ? s->login_db : "postgres";
    PGconn *c = rt_connect(s, s->superuser[0] ? s->superuser : "postgres", db, why, sizeof why);
    if (!c) {
        ITEM(rt, fails, "databases", 0, "could not connect to database %s: %s", db, why);
        rt->check_ms = bq_mono_ms() - t0;
        rt->ok = 0;
        return fails;
    }
    /* the figures: where replay ended, the last transaction's time, the segment size */
    uint32_t seg = 0;
    uint64_t sysid = 0;
    int have_sysid = 0;
    PGresult *r = exec_wait(s, c, "SELECT pg_catalog.pg_last_wal_replay_lsn(), "
                            "(extract(epoch FROM pg_catalog.pg_last_xact_replay_timestamp()) "
                            "* 1000)::bigint, "
                            "(SELECT setting::bigint FROM pg_catalog.pg_settings "
                            "WHERE name = 'wal_segment_size'), "
                            "(SELECT system_identifier FROM pg_catalog.pg_control_system())",
                            why, sizeof why);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 4) {
        uint64_t l = 0;
        if (!PQgetisnull(r, 0, 0) && pg_lsn_parse(PQgetvalue(r, 0, 0), &l) == 0)
            rt->reached_lsn = l;
        rt->reached_ms = PQgetisnull(r, 0, 1) ? 0 : strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        unsigned long long v = PQgetisnull(r, 0, 2) ? 0 : strtoull(PQgetvalue(r, 0, 2), NULL, 10);
        seg = v <= UINT32_MAX ? (uint32_t)v : 0;
        if (!PQgetisnull(r, 0, 3)) {
            sysid = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
            have_sysid = 1;
        }
    } else if (r) {
        pq_line(why, sizeof why, PQresultErrorMessage(r));
    }
    PQclear(r);
    rt->wal_segments = rt_wal_segments(rt->reached_lsn, spec->start_lsn, seg);
    rt->wal_bytes = rt->reached_lsn > spec->stop_lsn ? rt->reached_lsn - spec->stop_lsn : 0;

    if (!(target_kind && target_kind[0]) && spec->wal_end[0]) {
        bq_check_item_t *it = item_new(rt);
        if (!it)
            fails++;
        else if (!seg)
            item_set(it, "WAL replay", 0, "could not read where replay ended: %s",
                     why[0] ? why : "no wal_segment_size");
        else
            rt_check_wal(rt->reached_lsn, spec->start_lsn, seg, spec->wal_end, it);
        if (it && !it->ok)
            fails++;
    }
    if (spec->system_identifier) {
        if (!have_sysid)
            ITEM(rt, fails, "system identifier", 0, "could not read it: %s",
                 why[0] ? why : "pg_control_system() returned NULL");
        else if (sysid != spec->system_identifier)
            ITEM(rt, fails, "system identifier", 0, "the restored cluster has system identifier "
                 "%" PRIu64 ", the backup's is %" PRIu64, sysid, spec->system_identifier);
        else
            ITEM(rt, fails, "system identifier", 1, "%" PRIu64 ", as the backup's", sysid);
    }
    check_databases(s, c, rt, &fails);
    PQfinish(c);
    if (spec->amcheck)
        check_amcheck(s, rt, &fails);
    if (spec->sql[0])
        check_sql(s, spec, rt, &fails);
    rt->check_ms = bq_mono_ms() - t0;
    rt->ok = fails == 0;
    return fails;
}

/* ---- the sweep ---- */

/* Is pid a live process (a zombie is not)? */
static int proc_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return 1;
    return p[2] != 'Z' && p[2] != 'X';
}

static int gone_within(pid_t pid, int64_t ms)
{
    int64_t end = bq_mono_ms() + ms;
    while (proc_alive(pid)) {
        if (bq_mono_ms() >= end)
            return 0;
        bq_sleep_ms(RT_POLL_MS);
    }
    return 1;
}

/* A server a killed attempt left running in dir/data: stopped (*pid set). 0, or BQ_E_STATE
 * when it would not die. */
static int sweep_server(const char *dir, uint64_t job, pid_t *stopped, bq_errbuf_t *e)
{
    char data[PATH_MAX + 8], pidfile[PATH_MAX + 32], line[64];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", data);
    *stopped = 0;
    int fd = open(pidfile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n <= 0)
        return 0;
    line[n] = '\0';
    long pid = strtol(line, NULL, 10);
    if (pid <= 1 || pid > INT32_MAX || !proc_alive((pid_t)pid))
        return 0;
    char want[PATH_MAX], cwd[PATH_MAX], link[64];
    if (!realpath(data, want))
        return 0;
    snprintf(link, sizeof link, "/proc/%ld/cwd", pid);
    ssize_t l = readlink(link, cwd, sizeof cwd - 1);
    if (l <= 0)
        return 0;
    cwd[l] = '\0';
    if (strcmp(cwd, want) != 0)
        return 0; /* that pid is someone else now */
    bq_warn(RT_COMP, job, "a restore test's server is still running in %s (pid %ld): "
            "stopping it (SIGQUIT)", data, pid);
    kill((pid_t)pid, SIGQUIT);
    if (!gone_within((pid_t)pid, SWEEP_WAIT_MS)) {
        bq_warn(RT_COMP, job, "the server in %s (pid %ld) is still there %d s after SIGQUIT: "
                "SIGKILL", data, pid, SWEEP_WAIT_MS / 1000);
        if (getpgid((pid_t)pid) == (pid_t)pid)
            kill((pid_t)-pid, SIGKILL);
        kill((pid_t)pid, SIGKILL);
        if (!gone_within((pid_t)pid, SWEEP_WAIT_MS))
            return bq_fail(e, BQ_E_STATE, "the restore test's server in %s (pid %ld) did not "
                           "exit after SIGKILL: %s left in place", data, pid, dir);
    }
    *stopped = (pid_t)pid;
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int jobs_restore_test_sweep(const char *scratch, uint64_t keep_job, bq_errbuf_t *e)
{
    if (!scratch || !scratch[0])
        return 0;
    pthread_mutex_lock(&g_dir_mu);
    DIR *d = opendir(scratch);
    if (!d) {
        int err = errno;
        pthread_mutex_unlock(&g_dir_mu);
        return err == ENOENT ? 0 : bq_fail(e, BQ_E_IO, "could not read scratch %s: %s", scratch,
                                           strerror(err));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "rt-", 3) != 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory");
                break;
            }
            names = nn;
            cap = ncap;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = bq_fail(e, BQ_E_NOMEM, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t job = 0;
        unsigned attempt = 0;
        int parsed = sscanf(names[i], "rt-%" SCNu64 "-%u", &job, &attempt) == 2;
        if (keep_job && parsed && job == keep_job)
            continue;
        char dir[PATH_MAX], lock[PATH_MAX + 8];
        if (snprintf(dir, sizeof dir, "%s/%s", scratch, names[i]) >= (int)sizeof dir)
            continue;
        snprintf(lock, sizeof lock, "%s/.lock", dir);
        int fd = open(lock, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
            bq_debug(RT_COMP, job, "%s: a running restore test holds it", dir);
            close(fd);
            continue;
        }
        pid_t stopped = 0;
        bq_errbuf_t why;
        int r = sweep_server(dir, parsed ? job : 0, &stopped, &why);
        if (r == 0)
            r = rt_dir_remove(dir, &why);
        if (r == 0) {
            if (stopped)
                bq_info(RT_COMP, parsed ? job : 0, "removed what a restore test left: %s (its "
                        "server, pid %d, stopped)", dir, (int)stopped);
            else
                bq_info(RT_COMP, parsed ? job : 0, "removed what a restore test left: %s", dir);
        } else {
            bq_warn(RT_COMP, parsed ? job : 0, "%s", why.msg);
            rc = bq_fail(e, r, "%s", why.msg);
        }
        if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&g_dir_mu);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- the job ---- */

typedef struct {
    jobs_ctx_t *ctx;
    uint64_t bytes;
} job_progress_t;

static void job_progress(void *arg, const char *message)
{
    job_progress_t *p = arg;
    p->ctx->progress(p->ctx, p->bytes, p->bytes, message);
}

void jobs_restore_test(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    const int64_t t0 = bq_mono_ms();
    bq_restore_test_t *rt = &res->rtest;
    res->has_rtest = 1;
    snprintf(rt->cluster, sizeof rt->cluster, "%s", job->cluster);
    rt->job_id = job->id;
    rt->attempt = job->attempt;
    snprintf(rt->backup_id, sizeof rt->backup_id, "%s", job->backup_id);
    snprintf(rt->kind, sizeof rt->kind, "%s", job->rt.kind);
    snprintf(rt->worker, sizeof rt->worker, "%s", ctx->worker ? ctx->worker : "");
    snprintf(rt->site, sizeof rt->site, "%s", job->site);
    snprintf(rt->read_from, sizeof rt->read_from, "%s", job->peer_worker);
    rt_target_text(&job->recovery, rt->target, sizeof rt->target);
    rt->started_ms = bq_wall_ms();

    const char *wname = ctx->worker && ctx->worker[0] ? ctx->worker : "?";
    const int64_t timeout = job->rt.timeout_ms > 0 ? job->rt.timeout_ms : RT_DEFAULT_TIMEOUT_MS;
    bq_errbuf_t e = {{0}};
    char msg[BQ_TEXT_MAX] = ""; /* the failure, without the "restore test of ..." lead */
    int rc = 0, retryable = 0, failed_checks = 0;
    char dir[PATH_MAX] = "";
    int made = 0, lock_fd = -1;
    rt_server_t *s = NULL;
    bq_job_t *copy = NULL;
    bq_msg_result_t *tmp = NULL;
    job_progress_t prog = {ctx, 0};

    if (!ctx->scratch || !ctx->scratch[0]) {
        rc = bq_fail(&e, BQ_E_CONFIG, "worker %s has no scratch directory for restore tests: "
                     "set [worker] scratch", wname);
        goto done;
    }
    bq_errbuf_t se;
    if (jobs_restore_test_sweep(ctx->scratch, 0, &se) != 0)
        bq_warn(RT_COMP, job->id, "scratch %s: %s", ctx->scratch, se.msg);

    /* space, before anything is written */
    unsigned long long free_b = 0, total_b = 0;
    bq_errbuf_t fe;
    if (bq_fs_space(ctx->scratch, &free_b, &total_b, &fe) != 0) {
        rc = bq_fail(&e, BQ_E_CONFIG, "scratch of worker %s: %s", wname, fe.msg);
        goto done;
    }
    const uint64_t need = job->rt.data_bytes + RT_WAL_ROOM;
    if (free_b < need) {
        char f[32], n[32], dbytes[32];
        rc = bq_fail(&e, BQ_E_STATE, "scratch %s has %s free; the restore test of backup %s "
                     "needs %s (%s of data + 64 MiB for WAL replay): nothing was written",
                     ctx->scratch, size_text(free_b, f, sizeof f), job->backup_id,
                     size_text(need, n, sizeof n), size_text(job->rt.data_bytes, dbytes,
                     sizeof dbytes));
        goto done;
    }

    /* who runs it, with which binaries, and where: checked before anything is written */
    s = calloc(1, sizeof *s);
    copy = malloc(sizeof *copy);
    tmp = calloc(1, sizeof *tmp);
    if (!s || !copy || !tmp) {
        rc = bq_fail(&e, BQ_E_NOMEM, "out of memory");
        retryable = 1;
        goto done;
    }
    char bindir[PATH_MAX];
    rt_bindir(ctx->pg_bindir, job->rt.pg_version, bindir, sizeof bindir);
    snprintf(dir, sizeof dir, "%s/rt-%" PRIu64 "-%" PRIu32, ctx->scratch, job->id, job->attempt);
    rc = rt_server_init(s, dir, bindir, ctx->restore_test_user, ctx->worker, &e);
    if (rc != 0)
        goto done;
    s->job_id = job->id;
    s->cancel = ctx->cancel;
    s->progress = job_progress;
    s->progress_arg = &prog;
    s->deadline_ms = t0 + timeout;
    rt_conninfo_user(job->conninfo, s->login_user, sizeof s->login_user);
    snprintf(s->login_db, sizeof s->login_db, "%s", job->rt.dbname[0] ? job->rt.dbname
                                                                      : "postgres");
    if (ctx->cancel && atomic_load(ctx->cancel)) {
        rc = bq_fail(&e, BQ_E_CANCELLED, "cancelled");
        goto done;
    }

    rc = rt_dir_make(ctx->scratch, job->id, job->attempt, dir, sizeof dir, &lock_fd, &e);
    if (rc != 0) {
        retryable = rc != BQ_E_EXISTS;
        goto done;
    }
    made = 1;
    char tblspc[PATH_MAX + 16];
    snprintf(tblspc, sizeof tblspc, "%s/tblspc", dir);
    if (mkdir(tblspc, 0700) != 0 || chmod(tblspc, 0700) != 0) {
        rc = bq_fail(&e, BQ_E_IO, "could not create %s: %s", tblspc, strerror(errno));
        retryable = 1;
        goto done;
    }
    if ((rc = give(s, -1, tblspc, &e)) != 0)
        goto done;

    /* the restore, as `barque recover` would do it, into DIR/data */
    *copy = *job;
    copy->type = BQ_JOB_RESTORE;
    snprintf(copy->dest, sizeof copy->dest, "%s", s->data);
    /* root: the test user's; else "" = the owner of DIR, the worker itself (its own uid and
     * gid, which restore.c requires of a worker that is not root) */
    snprintf(copy->owner, sizeof copy->owner, "%s", s->setid ? s->os_user : "");
    snprintf(copy->tablespaces, sizeof copy->tablespaces, "*:%s", tblspc);
    copy->delta = 0;
    copy->recovery = job->recovery;
    copy->pre_script[0] = copy->post_script[0] = '\0';
    ctx->progress(ctx, 0, job->rt.data_bytes, "restoring");
    const int64_t t_fetch = bq_mono_ms();
    ctx->deadline_ms = s->deadline_ms; /* the restore stops there too */
    jobs_restore(copy, ctx, tmp);
    ctx->deadline_ms = 0;
    rt->fetch_ms = bq_mono_ms() - t_fetch;
    rt->bytes = tmp->restore.bytes;
    prog.bytes = rt->bytes;
    if (tmp->restore.peer_worker[0])
        snprintf(rt->read_from, sizeof rt->read_from, "%s", tmp->restore.peer_worker);
    /* a cancel or the timeout (which also stop the restore) first: they say why it failed */
    if (ctx->cancel && atomic_load(ctx->cancel)) {
        rc = bq_fail(&e, BQ_E_CANCELLED, "cancelled");
        goto done;
    }
    if (bq_mono_ms() >= s->deadline_ms) {
        char d1[32], d2[32];
        rc = bq_fail(&e, BQ_E_TIMEOUT, "the restore took %s, the test's timeout is %s",
                     bq_duration_text(rt->fetch_ms, d1, sizeof d1),
                     bq_duration_text(timeout, d2, sizeof d2));
        goto done;
    }
    if (!tmp->ok) {
        snprintf(msg, sizeof msg, "%s", tmp->error);
        /* a store that failed is not passed over here (restore.source_failed stays out of
         * the result): a restore test proves the store it reads, and says so when it cannot */
        retryable = tmp->retryable;
        rc = BQ_E_IO;
        goto done;
    }

    /* the server: started, consistent, out of recovery */
    rc = rt_server_files(s, &e);
    if (rc != 0) {
        retryable = 1;
        goto done;
    }
    rc = rt_server_start(s, &e);
    if (rc != 0) {
        retryable = 1;
        goto done;
    }
    rc = rt_server_wait(s, &e);
    if (rc != 0) {
        retryable = rc == BQ_E_IO;
        goto done;
    }
    rt->start_ms = s->t_consistent - s->t_spawn;
    rt->replay_ms = s->t_end - s->t_consistent;
    rt->rto_ms = s->t_end - t0;

    ctx->progress(ctx, rt->bytes, rt->bytes, "checking");
    failed_checks = rt_checks_run(s, &job->rt, job->recovery.enabled ? job->recovery.kind : "",
                                  rt);
    if (failed_checks) {
        for (size_t i = 0; i < rt->nchecks; i++)
            if (!rt->checks[i].ok) {
                snprintf(msg, sizeof msg, "%s: %s", rt->checks[i].name, rt->checks[i].detail);
                break;
            }
        if (!msg[0])
            snprintf(msg, sizeof msg, "more than %d check items", BQ_RT_CHECKS_MAX);
        if (ctx->cancel && atomic_load(ctx->cancel))
            snprintf(msg, sizeof msg, "cancelled");
    }

done:
    if (s && s->pid > 0)
        rt_server_stop(s, ctx->cancel && atomic_load(ctx->cancel) ? CANCEL_GRACE_MS
                                                                  : RT_STOP_GRACE_MS);
    if (made) {
        bq_errbuf_t re;
        if (rt_dir_remove(dir, &re) != 0)
            bq_warn(RT_COMP, job->id, "restore test of backup %s: %s (the next sweep will try "
                    "again)", job->backup_id, re.msg);
    }
    if (lock_fd >= 0)
        close(lock_fd);
    rt->finished_ms = bq_wall_ms();
    if (rc != 0 && !msg[0])
        snprintf(msg, sizeof msg, "%s", e.msg);
    if (rc != 0 || failed_checks) {
        res->ok = 0;
        res->retryable = rc != 0 && retryable;
        rt->ok = 0;
        snprintf(res->error, sizeof res->error, "restore test of backup %s of cluster %s: %s",
                 job->backup_id, job->cluster, msg);
        snprintf(rt->error, sizeof rt->error, "%s", res->error);
    } else {
        res->ok = 1;
        rt->ok = 1;
    }
    char at[32];
    pg_lsn_format(rt->reached_lsn, at, sizeof at);
    bq_log(res->ok ? BQ_LOG_INFO : BQ_LOG_WARNING, RT_COMP, job->id,
           "restore test of backup %s of %s (%s, target %s): %s: fetch %.1f s, start %.1f s, "
           "replay %.1f s, RTO %.1f s, checks %.1f s, %.1f MB restored%s%s, reached LSN %s "
           "(%" PRIu64 " segment%s)", job->backup_id, job->cluster,
           rt->kind[0] ? rt->kind : "manual", rt->target, res->ok ? "OK" : msg,
           (double)rt->fetch_ms / 1000, (double)rt->start_ms / 1000,
           (double)rt->replay_ms / 1000, (double)rt->rto_ms / 1000, (double)rt->check_ms / 1000,
           (double)rt->bytes / 1e6, rt->read_from[0] ? " from worker " : "", rt->read_from, at,
           rt->wal_segments, rt->wal_segments == 1 ? "" : "s");
    free(tmp);
    free(copy);
    free(s);
}
