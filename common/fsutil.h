/* Files that matter are written durably: temp file, write, fsync, rename, fsync of the directory. */
#ifndef BQ_FSUTIL_H
#define BQ_FSUTIL_H

#include "err.h"

#include <stddef.h>
#include <sys/types.h>

#define BQ_WRITE_EXCLUSIVE 1  /* fail with BQ_E_EXISTS when path exists */
#define BQ_WRITE_DROP_CACHE 2 /* once durable, its pages leave the page cache (written once,
                               * seldom read: archived WAL); they are reused for the next
                               * write instead of growing the cache */

/* Write data to path durably with the given mode. Fails (never half-written under the
 * final name) with BQ_E_IO, or BQ_E_EXISTS when flags has BQ_WRITE_EXCLUSIVE and path
 * exists. flags: BQ_WRITE_* (1 is BQ_WRITE_EXCLUSIVE, 0 none). */
int bq_file_write_durable(const char *path, const void *data, size_t len, mode_t mode,
                          int flags, bq_errbuf_t *e);
/* Read at most max bytes of a small file into a new NUL-terminated buffer (*out, caller frees).
 * A file larger than max is BQ_E_TOOBIG. */
int bq_file_read_small(const char *path, size_t max, char **out, size_t *len, bq_errbuf_t *e);
/* fsync the directory that holds path (or path itself when it is a directory). */
int bq_fsync_dir_of(const char *path, bq_errbuf_t *e);
/* mkdir -p with the given mode. */
int bq_mkdir_p(const char *path, mode_t mode, bq_errbuf_t *e);
/* Move *fd above 2 (close-on-exec), so a child's dup2 onto 0, 1 and 2 cannot clobber it (a
 * daemon may run with them closed). 0 or an errno. */
int bq_fd_above_stdio(int *fd);
/* Free and total bytes of the filesystem holding path. */
int bq_fs_space(const char *path, unsigned long long *free_bytes, unsigned long long *total_bytes,
                bq_errbuf_t *e);

#endif
