/* Test helper: read one archived WAL file of a cluster out of a store (store_wal_fetch), as
 * wal-get will.
 *
 *     store_wal_get STORE KEYFILE CLUSTER NAME OUT
 *
 * Writes OUT and prints "ok NAME BYTES"; exit 1 with the error (exit 3 when it is not
 * archived), 2 for bad arguments. */
#include "store.h"
#include "store_keys.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: store_wal_get STORE KEYFILE CLUSTER NAME OUT\n");
        return 2;
    }
    bq_errbuf_t e = {{0}};
    store_master_t m;
    store_t *s = NULL;
    size_t cap = (size_t)1 << 30, len = 0;
    char *buf = malloc(cap);
    int rc = buf ? store_master_key_load(argv[2], &m, &e) : BQ_E_NOMEM;
    if (rc == 0)
        rc = store_open(argv[1], &m, &s, &e);
    if (rc == 0)
        rc = store_wal_fetch(s, argv[3], argv[4], buf, cap, &len, &e);
    if (rc == 0) {
        FILE *f = fopen(argv[5], "wb");
        if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
            rc = bq_fail(&e, BQ_E_IO, "could not write %s", argv[5]);
    }
    store_close(&s);
    free(buf);
    if (rc) {
        printf("error: %s: %s\n", bq_err_name(rc), e.msg);
        return rc == BQ_E_NOTFOUND ? 3 : 1;
    }
    printf("ok %s %zu\n", argv[4], len);
    return 0;
}
