/* A store served to peers (the files a peer may read, by name) and a view of a peer's store
 * (store.h). The view is a store-shaped scratch directory holding only the peer's store.conf,
 * data key files and a manifest: store_open opens it with the deployment's master key, its
 * manifests walk as usual, and its chunks come from the peer, still sealed, to be opened with
 * store_reader_open. So chunks travel encrypted and are checked (tag and id) where they land. */
#include "store.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_CONF_NAME "store.conf"
#define VIEW_CONF_MAX 4096

static int is_hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int store_export_name_valid(const char *name)
{
    if (!name)
        return 0;
    if (strcmp(name, STORE_CONF_NAME) == 0)
        return 1;
    if (strncmp(name, "keys/", 5) == 0) {
        const char *p = name + 5;
        for (int i = 0; i < 8; i++)
            if (!is_hex_lower(p[i]))
                return 0;
        return strcmp(p + 8, ".datakey") == 0;
    }
    if (strncmp(name, "backups/", 8) == 0) {
        const char *id = name + 8, *dot = strstr(id, ".manifest");
        if (!dot || strcmp(dot, ".manifest") != 0 || dot == id || id[0] == '.' || dot - id > 64)
            return 0;
        for (const char *p = id; p < dot; p++)
            if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
                return 0;
        return 1;
    }
    return 0;
}

int store_export_read(store_t *s, const char *name, uint64_t offset, uint8_t *buf, size_t cap,
                      size_t *n, uint64_t *total, bq_errbuf_t *e)
{
    *n = 0;
    *total = 0;
    if (!store_export_name_valid(name))
        return bq_fail(e, BQ_E_INVAL, "%s is not a store file a peer may read", name ? name : "?");
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", store_dir(s), name) >= (int)sizeof path)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s/%s", store_dir(s), name);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return bq_fail(e, errno == ENOENT ? BQ_E_NOTFOUND : BQ_E_IO, "could not open %s: %s",
                       path, strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        rc = bq_fail(e, BQ_E_IO, "could not read %s: %s", path,
                     errno ? strerror(errno) : "not a regular file");
    else if (offset > (uint64_t)sb.st_size)
        rc = bq_fail(e, BQ_E_INVAL, "offset %llu is past the end of %s (%lld bytes)",
                     (unsigned long long)offset, name, (long long)sb.st_size);
    size_t got = 0;
    while (rc == 0 && got < cap && offset + got < (uint64_t)sb.st_size) {
        ssize_t r = pread(fd, buf + got, cap - got, (off_t)(offset + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = bq_fail(e, BQ_E_IO, "could not read %s: %s", path, strerror(errno));
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (rc == 0) {
        *n = got;
        *total = (uint64_t)sb.st_size;
    }
    return rc;
}

int store_view_create(const char *dir, const void *conf, size_t len, bq_errbuf_t *e)
{
    if (len == 0 || len > VIEW_CONF_MAX || memchr(conf, '\0', len))
        return bq_fail(e, BQ_E_PROTO, "the peer's store.conf is %zu bytes or holds a NUL byte",
                       len);
    if (mkdir(dir, 0700) != 0)
        return bq_fail(e, errno == EEXIST ? BQ_E_EXISTS : BQ_E_IO, "could not create %s: %s", dir,
                       strerror(errno));
    char path[PATH_MAX];
    static const char *const dirs[] = {"keys", "backups"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, dirs[i]) >= (int)sizeof path)
            return bq_fail(e, BQ_E_INVAL, "path too long: %s", dir);
        if (mkdir(path, 0700) != 0)
            return bq_fail(e, BQ_E_IO, "could not create %s: %s", path, strerror(errno));
    }
    int rc = store_init(dir, e); /* the marker */
    if (rc == 0)
        rc = snprintf(path, sizeof path, "%s/%s", dir, STORE_CONF_NAME) >= (int)sizeof path
                 ? bq_fail(e, BQ_E_INVAL, "path too long: %s", dir)
                 : bq_file_write_durable(path, conf, len, 0600, 0, e);
    return rc;
}

int store_view_put(const char *dir, const char *name, uint64_t offset, const void *data,
                   size_t len, bq_errbuf_t *e)
{
    if (!store_export_name_valid(name) || strcmp(name, STORE_CONF_NAME) == 0)
        return bq_fail(e, BQ_E_INVAL, "%s is not a file of a store view", name ? name : "?");
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | (offset == 0 ? O_CREAT | O_EXCL : 0),
                  0600);
    if (fd < 0)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != offset)
        rc = bq_fail(e, BQ_E_INVAL, "%s: a piece at offset %llu, but the file holds %lld bytes",
                     path, (unsigned long long)offset, (long long)sb.st_size);
    const uint8_t *p = data;
    size_t done = 0;
    while (rc == 0 && done < len) {
        ssize_t w = pwrite(fd, p + done, len - done, (off_t)(offset + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", path,
                         w < 0 ? strerror(errno) : "no progress");
        else
            done += (size_t)w;
    }
    if (close(fd) != 0 && rc == 0)
        rc = bq_fail(e, BQ_E_IO, "could not write %s: %s", path, strerror(errno));
    return rc;
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : 1;
}

int store_view_remove(const char *dir, bq_errbuf_t *e)
{
    struct stat sb;
    if (lstat(dir, &sb) != 0 && errno == ENOENT)
        return 0;
    if (nftw(dir, rm_one, 16, FTW_PHYS | FTW_DEPTH) != 0)
        return bq_fail(e, BQ_E_IO, "could not remove store view %s: %s", dir, strerror(errno));
    return 0;
}
