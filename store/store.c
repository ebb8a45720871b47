#include "store.h"

#include "fsutil.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STORE_MARKER "BARQUE_STORE"
#define STORE_MARKER_MAX 4096

/* Copy the first line of s into dst with anything unprintable shown as '?', for messages. */
static void printable_line(char *dst, size_t size, const char *s)
{
    size_t i = 0;
    for (; s[i] && s[i] != '\n' && i + 1 < size; i++)
        dst[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    dst[i] = '\0';
}

/* The marker is exactly "format=N\n". Returns 0 and *format, or BQ_E_STATE when damaged. */
static int marker_parse(const char *path, const char *text, size_t len, long *format,
                        bq_errbuf_t *e)
{
    static const char key[] = "format=";
    const size_t klen = sizeof key - 1;
    if (strlen(text) == len && strncmp(text, key, klen) == 0 &&
        isdigit((unsigned char)text[klen])) {
        char *end = NULL;
        errno = 0;
        long v = strtol(text + klen, &end, 10);
        if (errno == 0 && strcmp(end, "\n") == 0) {
            *format = v;
            return 0;
        }
    }
    char seen[64];
    printable_line(seen, sizeof seen, text);
    return bq_fail(e, BQ_E_STATE,
                   "store marker %s is damaged: expected \"format=%d\", found \"%s\"", path,
                   BQ_STORE_FORMAT, seen);
}

/* Check an existing marker: 0 when it names our format. */
static int marker_check(const char *path, bq_errbuf_t *e)
{
    char *text = NULL;
    size_t len = 0;
    int rc = bq_file_read_small(path, STORE_MARKER_MAX, &text, &len, e);
    if (rc == BQ_E_TOOBIG)
        return bq_fail(e, BQ_E_STATE, "store marker %s is damaged: larger than %d bytes", path,
                       STORE_MARKER_MAX);
    if (rc != 0)
        return rc;
    long format = 0;
    rc = marker_parse(path, text, len, &format, e);
    free(text);
    if (rc != 0)
        return rc;
    if (format != BQ_STORE_FORMAT)
        return bq_fail(e, BQ_E_VERSION,
                       "store marker %s has format %ld; this barque supports format %d", path,
                       format, BQ_STORE_FORMAT);
    return 0;
}

int store_init(const char *dir, bq_errbuf_t *e)
{
    if (!dir || !*dir)
        return bq_fail(e, BQ_E_INVAL, "store directory is not set");
    char marker[PATH_MAX];
    if (snprintf(marker, sizeof marker, "%s/%s", dir, STORE_MARKER) >= (int)sizeof marker)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", dir);

    int rc = bq_mkdir_p(dir, 0700, e);
    if (rc != 0)
        return rc;
    struct stat st;
    if (stat(dir, &st) != 0)
        return bq_fail(e, BQ_E_IO, "could not stat store %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return bq_fail(e, BQ_E_INVAL, "store path %s is not a directory", dir);

    if (lstat(marker, &st) == 0)
        return marker_check(marker, e);
    if (errno != ENOENT)
        return bq_fail(e, BQ_E_IO, "could not stat %s: %s", marker, strerror(errno));

    char text[32];
    int n = snprintf(text, sizeof text, "format=%d\n", BQ_STORE_FORMAT);
    rc = bq_file_write_durable(marker, text, (size_t)n, 0600, 1, e);
    if (rc == BQ_E_EXISTS)   /* another process initialised it first: check what it wrote */
        return marker_check(marker, e);
    return rc;
}

int store_space(const char *dir, uint64_t *free_bytes, uint64_t *total_bytes, bq_errbuf_t *e)
{
    unsigned long long f = 0, t = 0;
    int rc = bq_fs_space(dir, &f, &t, e);
    if (rc != 0)
        return rc;
    if (free_bytes)
        *free_bytes = (uint64_t)f;
    if (total_bytes)
        *total_bytes = (uint64_t)t;
    return 0;
}
