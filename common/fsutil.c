#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int bq_fsync_dir_of(const char *path, bq_errbuf_t *e)
{
    char tmp[PATH_MAX];
    struct stat st;
    const char *dir = path;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(tmp, sizeof tmp, "%s", path);
        dir = dirname(tmp);
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open directory %s: %s", dir, strerror(errno));
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return bq_fail(e, BQ_E_IO, "could not fsync directory %s: %s", dir, strerror(err));
    }
    close(fd);
    return 0;
}

int bq_file_write_durable(const char *path, const void *data, size_t len, mode_t mode,
                          int flags, bq_errbuf_t *e)
{
    int exclusive = flags & BQ_WRITE_EXCLUSIVE;
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s", path);
    if (exclusive && access(path, F_OK) == 0)
        return bq_fail(e, BQ_E_EXISTS, "could not create %s: file exists", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not create %s: %s", tmp, strerror(errno));
    if (fchmod(fd, mode) != 0)
        goto fail;
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (flags & BQ_WRITE_DROP_CACHE) /* advice only: its failure changes nothing stored */
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (exclusive) {
        if (link(tmp, path) != 0)
            goto fail;
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        goto fail;
    }
    return bq_fsync_dir_of(path, e);
fail:;
    int err = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    if (err == EEXIST)
        return bq_fail(e, BQ_E_EXISTS, "could not create %s: file exists", path);
    return bq_fail(e, BQ_E_IO, "could not write %s: %s", path, strerror(err));
}

int bq_file_read_small(const char *path, size_t max, char **out, size_t *len, bq_errbuf_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, errno == EACCES ? BQ_E_PERM : BQ_E_NOTFOUND, "could not open %s: %s",
                       path, strerror(errno));
    char *buf = malloc(max + 1);
    if (!buf) {
        close(fd);
        return bq_fail(e, BQ_E_NOMEM, "out of memory reading %s", path);
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, max + 1 - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            free(buf);
            close(fd);
            return bq_fail(e, BQ_E_IO, "could not read %s: %s", path, strerror(err));
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got > max) {
            free(buf);
            close(fd);
            return bq_fail(e, BQ_E_TOOBIG, "file %s is larger than %zu bytes", path, max);
        }
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    if (len)
        *len = got;
    return 0;
}

int bq_mkdir_p(const char *path, mode_t mode, bq_errbuf_t *e)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST)
            return bq_fail(e, BQ_E_IO, "could not create directory %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return bq_fail(e, BQ_E_IO, "could not create directory %s: %s", tmp, strerror(errno));
    return 0;
}

int bq_fs_space(const char *path, unsigned long long *free_bytes, unsigned long long *total_bytes,
                bq_errbuf_t *e)
{
    struct statvfs sv;
    if (statvfs(path, &sv) != 0)
        return bq_fail(e, BQ_E_IO, "could not stat filesystem of %s: %s", path, strerror(errno));
    if (free_bytes)
        *free_bytes = (unsigned long long)sv.f_bavail * sv.f_frsize;
    if (total_bytes)
        *total_bytes = (unsigned long long)sv.f_blocks * sv.f_frsize;
    return 0;
}

int bq_fd_above_stdio(int *fd)
{
    if (*fd > 2)
        return 0;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return errno;
    close(*fd);
    *fd = nfd;
    return 0;
}
