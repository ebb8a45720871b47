/* Fuzz target: arbitrary bytes as a config file, loaded as each of the three config kinds.
 * The file lives in a temp directory (created once, removed at exit) whose keys/ holds real
 * key pairs, so seeds naming keys/coordinator.key, keys/w1.pub, ... load completely and
 * mutations reach every check; other key files are missing, which exercises those errors. */
#include "config.h"
#include "keys.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char path[128];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void fuzz_cleanup(void)
{
    if (dir[0])
        nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int fuzz_init(void)
{
    static const char *const names[] = {"coordinator", "w1", "w2", "alice", "operator"};
    char keys[128];
    bq_errbuf_t e;
    snprintf(dir, sizeof dir, "/tmp/bq_fuzz_config.XXXXXX");
    if (!mkdtemp(dir)) {
        dir[0] = '\0';
        return -1;
    }
    atexit(fuzz_cleanup);
    snprintf(keys, sizeof keys, "%s/keys", dir);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        bq_keypair_t kp;
        if (bq_keypair_generate(&kp) != 0 || bq_keypair_write(keys, names[i], &kp, &e) != 0)
            return -1;
    }
    snprintf(path, sizeof path, "%s/fuzz.conf", dir);
    return 0;
}

/* The config file is created once and rewritten for every input. */
static int fuzz_file_write(const uint8_t *data, size_t size)
{
    if (!path[0] && fuzz_init() != 0)
        abort(); /* cannot fuzz at all: say so loudly */
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = size ? fwrite(data, 1, size, f) : 0;
    return (fclose(f) == 0 && n == size) ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_file_write(data, size) != 0)
        return 0;
    bq_errbuf_t e;

    bq_coord_config_t coord;
    if (bq_coord_config_load(path, &coord, &e) == 0) {
        /* a loaded config is consistent: names resolve, references point at sites */
        for (size_t i = 0; i < coord.nworkers; i++) {
            const bq_cfg_worker_ref_t *w = bq_coord_config_worker(&coord, coord.workers[i].name);
            if (!w || !bq_name_valid(w->name) || !bq_name_valid(w->site) || !w->public_key[0])
                abort();
        }
        for (size_t i = 0; i < coord.nclusters; i++)
            if (!bq_coord_config_cluster(&coord, coord.clusters[i].name))
                abort();
    }
    bq_coord_config_free(&coord);

    bq_worker_config_t worker;
    (void)bq_worker_config_load(path, &worker, &e);

    bq_cli_config_t cli;
    (void)bq_cli_config_load(path, &cli, &e);
    return 0;
}
