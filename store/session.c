/* Writer sessions (store/session.h). */
#include "session.h"

#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define SESSIONS_DIR "sessions"
#define REFS_LOCK "refs.lock"
#define NOTE_BATCH 256 /* records per write(2) */

struct store_session {
    char dir[PATH_MAX];   /* STORE/sessions */
    char path[PATH_MAX];  /* STORE/sessions/S.refs */
    char name[STORE_SESSION_NAME_LEN + 1];
    int fd;               /* S.refs, locked exclusively */
    int lock_fd;          /* STORE/refs.lock */
    int in_section;
    uint8_t buf[NOTE_BATCH * STORE_SESSION_RECORD];
};

static int open_refs_lock(const char *store_dir, int *fd, bq_errbuf_t *e)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", store_dir, REFS_LOCK) >= (int)sizeof path)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", store_dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    return 0;
}

int store_session_new(const char *store_dir, store_session_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    store_session_t *ss = calloc(1, sizeof *ss);
    if (!ss)
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting a store session");
    ss->fd = -1;
    ss->lock_fd = -1;
    int rc = 0;
    if (snprintf(ss->dir, sizeof ss->dir, "%s/%s", store_dir, SESSIONS_DIR) >= (int)sizeof ss->dir) {
        rc = bq_fail(e, BQ_E_INVAL, "store path too long: %s", store_dir);
        goto fail;
    }
    if ((rc = bq_mkdir_p(ss->dir, 0700, e)) != 0 ||
        (rc = open_refs_lock(store_dir, &ss->lock_fd, e)) != 0)
        goto fail;
    /* Made inside a reference section, so GC (which reaps under refs.lock) never sees the
     * temp name before it is locked. */
    if ((rc = store_session_enter(ss, e)) != 0)
        goto fail;
    char tmp[PATH_MAX];
    for (int tries = 0; ss->fd < 0; tries++) {
        uint8_t r[STORE_SESSION_NAME_LEN / 2];
        randombytes_buf(r, sizeof r);
        sodium_bin2hex(ss->name, sizeof ss->name, r, sizeof r);
        if (snprintf(ss->path, sizeof ss->path, "%s/%s.refs", ss->dir, ss->name) >=
                (int)sizeof ss->path ||
            snprintf(tmp, sizeof tmp, "%s.tmp", ss->path) >= (int)sizeof tmp) {
            rc = bq_fail(e, BQ_E_INVAL, "store path too long: %s", store_dir);
            goto fail;
        }
        ss->fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (ss->fd < 0 && (errno != EEXIST || tries >= 8)) {
            rc = bq_fail(e, BQ_E_IO, "could not create %s: %s", tmp, strerror(errno));
            goto fail;
        }
    }
    if (flock(ss->fd, LOCK_EX | LOCK_NB) != 0) {
        rc = bq_fail(e, BQ_E_IO, "could not lock %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto fail;
    }
    if (access(ss->path, F_OK) == 0 || rename(tmp, ss->path) != 0) {
        rc = bq_fail(e, BQ_E_IO, "could not rename %s to %s: %s", tmp, ss->path,
                     errno ? strerror(errno) : "it exists");
        unlink(tmp);
        goto fail;
    }
    store_session_leave(ss);
    *out = ss;
    return 0;
fail:
    if (ss->fd >= 0)
        close(ss->fd);
    if (ss->lock_fd >= 0)
        close(ss->lock_fd);
    free(ss);
    return rc;
}

void store_session_end(store_session_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_session_t *ss = *self_p;
    unlink(ss->path); /* before the lock goes: never seen dead while its writer lives */
    close(ss->fd);
    close(ss->lock_fd); /* leaves a section still entered */
    free(ss);
    *self_p = NULL;
}

const char *store_session_name(const store_session_t *ss)
{
    return ss->name;
}

int store_session_enter(store_session_t *ss, bq_errbuf_t *e)
{
    if (ss->in_section)
        return 0;
    for (int tries = 0;; tries++) {
        if (flock(ss->lock_fd, LOCK_SH) == 0)
            break;
        if (errno != EINTR || tries >= 100)
            return bq_fail(e, BQ_E_IO, "could not lock %s/%s: %s", ss->dir, "../" REFS_LOCK,
                           strerror(errno));
    }
    ss->in_section = 1;
    return 0;
}

void store_session_leave(store_session_t *ss)
{
    if (ss->in_section)
        (void)flock(ss->lock_fd, LOCK_UN);
    ss->in_section = 0;
}

static int note_write(store_session_t *ss, size_t len, bq_errbuf_t *e)
{
    const uint8_t *p = ss->buf;
    while (len > 0) {
        ssize_t n = write(ss->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return bq_fail(e, BQ_E_IO, "could not write %s: %s", ss->path,
                           n < 0 ? strerror(errno) : "no progress");
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int store_session_note_chunks(store_session_t *ss, const uint8_t (*ids)[STORE_CHUNK_ID_BYTES],
                              size_t n, bq_errbuf_t *e)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *rec = ss->buf + k * STORE_SESSION_RECORD;
        rec[0] = 'C';
        memcpy(rec + 1, ids[i], STORE_CHUNK_ID_BYTES);
        if (++k == NOTE_BATCH || i + 1 == n) {
            int rc = note_write(ss, k * STORE_SESSION_RECORD, e);
            if (rc != 0)
                return rc;
            k = 0;
        }
    }
    return 0;
}

int store_session_note_pack(store_session_t *ss, uint64_t pack, bq_errbuf_t *e)
{
    uint8_t *rec = ss->buf;
    memset(rec, 0, STORE_SESSION_RECORD);
    rec[0] = 'P';
    for (int i = 0; i < 8; i++)
        rec[1 + i] = (uint8_t)(pack >> (8 * i));
    return note_write(ss, STORE_SESSION_RECORD, e);
}

/* ---- GC's side ---- */

int store_refs_lock_exclusive(const char *store_dir, int *fd_out, bq_errbuf_t *e)
{
    int fd = -1;
    int rc = open_refs_lock(store_dir, &fd, e);
    if (rc != 0)
        return rc;
    for (int tries = 0;; tries++) {
        if (flock(fd, LOCK_EX) == 0)
            break;
        if (errno != EINTR || tries >= 100) {
            rc = bq_fail(e, BQ_E_IO, "could not lock %s/%s: %s", store_dir, REFS_LOCK,
                         strerror(errno));
            close(fd);
            return rc;
        }
    }
    *fd_out = fd;
    return 0;
}

/* 1: file is locked by a live writer; 0: it is not (dead); BQ_E_NOTFOUND when it is gone. */
static int probe_alive(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? BQ_E_NOTFOUND : 1; /* unreadable: assume alive, keep it */
    int alive = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return alive;
}

static int name_is_session(const char *n, const char *suffix)
{
    size_t len = strlen(n), sl = strlen(suffix);
    if (len != STORE_SESSION_NAME_LEN + sl || strcmp(n + STORE_SESSION_NAME_LEN, suffix) != 0)
        return 0;
    for (size_t i = 0; i < STORE_SESSION_NAME_LEN; i++)
        if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            return 0;
    return 1;
}

int store_session_alive(const char *store_dir, const char *name)
{
    char path[PATH_MAX];
    if (strlen(name) != STORE_SESSION_NAME_LEN ||
        snprintf(path, sizeof path, "%s/%s/%s.refs", store_dir, SESSIONS_DIR, name) >=
            (int)sizeof path)
        return 0;
    return probe_alive(path) == 1;
}

/* Read one live session's notes. */
static int scan_one(const char *path, const store_session_fn_t *fn, void *arg, bq_errbuf_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : bq_fail(e, BQ_E_IO, "could not open %s: %s", path,
                                             strerror(errno));
    uint8_t buf[NOTE_BATCH * STORE_SESSION_RECORD];
    size_t have = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = bq_fail(e, BQ_E_IO, "could not read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break; /* a partial record at the end is a note still being written: none is
                      written outside a reference section, so there is none here */
        have += (size_t)n;
        size_t k = have / STORE_SESSION_RECORD;
        for (size_t i = 0; rc == 0 && i < k; i++) {
            const uint8_t *rec = buf + i * STORE_SESSION_RECORD;
            if (rec[0] == 'C') {
                rc = fn->chunk ? fn->chunk(arg, rec + 1) : 0;
            } else if (rec[0] == 'P') {
                uint64_t pack = 0;
                for (int j = 0; j < 8; j++)
                    pack |= (uint64_t)rec[1 + j] << (8 * j);
                rc = fn->pack ? fn->pack(arg, pack) : 0;
            } else {
                rc = bq_fail(e, BQ_E_IO, "session notes %s are damaged (record type 0x%02x)",
                             path, rec[0]);
            }
        }
        if (rc != 0)
            break;
        memmove(buf, buf + k * STORE_SESSION_RECORD, have - k * STORE_SESSION_RECORD);
        have -= k * STORE_SESSION_RECORD;
    }
    close(fd);
    return rc;
}

typedef int (*each_fn)(const char *path, const char *dname, void *arg, bq_errbuf_t *e);

static int sessions_each(const char *store_dir, each_fn fn, void *arg, bq_errbuf_t *e)
{
    char dir[PATH_MAX], path[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/%s", store_dir, SESSIONS_DIR) >= (int)sizeof dir)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", store_dir);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : bq_fail(e, BQ_E_IO, "could not list %s: %s", dir,
                                             strerror(errno));
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' ||
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path)
            continue;
        rc = fn(path, de->d_name, arg, e);
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = bq_fail(e, BQ_E_IO, "could not list %s: %s", dir, strerror(errno));
    closedir(d);
    return rc;
}

typedef struct {
    const store_session_fn_t *fn;
    void *arg;
    uint64_t live, dead;
} scan_t;

static int scan_entry(const char *path, const char *dname, void *arg, bq_errbuf_t *e)
{
    scan_t *sc = arg;
    if (!name_is_session(dname, ".refs"))
        return 0;
    int alive = probe_alive(path);
    if (alive == BQ_E_NOTFOUND)
        return 0;
    if (!alive) {
        sc->dead++;
        return 0;
    }
    sc->live++;
    return scan_one(path, sc->fn, sc->arg, e);
}

int store_sessions_scan(const char *store_dir, const store_session_fn_t *fn, void *arg,
                        uint64_t *live, uint64_t *dead, bq_errbuf_t *e)
{
    scan_t sc = {fn, arg, 0, 0};
    int rc = sessions_each(store_dir, scan_entry, &sc, e);
    if (live)
        *live = sc.live;
    if (dead)
        *dead = sc.dead;
    return rc;
}

static int reap_entry(const char *path, const char *dname, void *arg, bq_errbuf_t *e)
{
    uint64_t *reaped = arg;
    if (!name_is_session(dname, ".refs") && !name_is_session(dname, ".refs.tmp"))
        return 0;
    if (probe_alive(path) != 0)
        return 0;
    if (unlink(path) != 0 && errno != ENOENT)
        return bq_fail(e, BQ_E_IO, "could not remove %s: %s", path, strerror(errno));
    (*reaped)++;
    return 0;
}

int store_sessions_reap(const char *store_dir, uint64_t *reaped, bq_errbuf_t *e)
{
    uint64_t n = 0;
    int rc = sessions_each(store_dir, reap_entry, &n, e);
    if (reaped)
        *reaped = n;
    return rc;
}
