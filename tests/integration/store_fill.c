/* Test helper: write one backup into a store, as a worker would, until the CLI has a verb
 * that does. Backs up every regular file under SRC_DIR (paths relative to it, sorted per
 * directory) with the store_backup_* writer, plus one meta key "source" = SRC_DIR.
 *
 *     store_fill STORE KEYFILE BACKUP_ID SRC_DIR
 *
 * Prints "files=N logical=B new_chunks=C dedup_chunks=D" and exits 0, or prints the error
 * and exits 1 (2 for bad arguments). */
#include "store.h"
#include "store_keys.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_file(store_backup_t *bw, const char *full, const char *rel, const struct stat *st,
                    bq_errbuf_t *e)
{
    FILE *f = fopen(full, "rb");
    if (!f)
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", full, strerror(errno));
    int rc = store_backup_file_begin(bw, rel, (uint32_t)st->st_mode, (int64_t)st->st_mtime, e);
    static char buf[100000]; /* not a multiple of the chunk size, on purpose */
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, f)) > 0)
        rc = store_backup_file_write(bw, buf, n, e);
    if (rc == 0 && ferror(f))
        rc = bq_fail(e, BQ_E_IO, "could not read %s", full);
    fclose(f);
    if (rc == 0)
        rc = store_backup_file_end(bw, e);
    return rc;
}

/* Every regular file under root/rel (rel "" for root itself), depth first, names sorted. */
static int walk(store_backup_t *bw, const char *root, const char *rel, bq_errbuf_t *e)
{
    char dirpath[PATH_MAX];
    snprintf(dirpath, sizeof dirpath, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dirpath);
    if (!d)
        return bq_fail(e, BQ_E_IO, "could not open directory %s: %s", dirpath, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = realloc(names, cap * sizeof *names);
            if (!names)
                abort();
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char r[PATH_MAX], full[PATH_MAX];
        snprintf(r, sizeof r, "%s%s%s", rel, rel[0] ? "/" : "", names[i]);
        snprintf(full, sizeof full, "%s/%s", root, r);
        struct stat st;
        if (rc == 0 && lstat(full, &st) != 0)
            rc = bq_fail(e, BQ_E_IO, "could not stat %s: %s", full, strerror(errno));
        else if (rc == 0 && S_ISDIR(st.st_mode))
            rc = walk(bw, root, r, e);
        else if (rc == 0 && S_ISREG(st.st_mode))
            rc = add_file(bw, full, r, &st, e);
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: store_fill STORE KEYFILE BACKUP_ID SRC_DIR\n");
        return 2;
    }
    bq_errbuf_t e;
    store_master_t m;
    store_t *s = NULL;
    store_backup_t *bw = NULL;
    store_backup_stats_t st;
    int rc = store_master_key_load(argv[2], &m, &e);
    if (rc == 0)
        rc = store_open(argv[1], &m, &s, &e);
    if (rc == 0)
        rc = store_backup_begin(s, argv[3], &bw, &e);
    if (rc == 0)
        rc = store_backup_meta(bw, "source", argv[4], strlen(argv[4]), &e);
    if (rc == 0)
        rc = walk(bw, argv[4], "", &e);
    if (rc == 0)
        rc = store_backup_commit(&bw, &st, &e);
    store_backup_abort(&bw);
    store_close(&s);
    store_master_clear(&m);
    if (rc) {
        fprintf(stderr, "store_fill: %s\n", e.msg);
        return 1;
    }
    printf("files=%" PRIu64 " logical=%" PRIu64 " new_chunks=%" PRIu64 " dedup_chunks=%" PRIu64
           "\n",
           st.files, st.logical_bytes, st.new_chunks, st.dedup_chunks);
    return 0;
}
