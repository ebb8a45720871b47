/* Fuzz target: arbitrary bytes as a WAL segment's first page (pg_wal_page_parse,
 * pg_wal_segment_check) and as a timeline history file (pg_tli_history_parse).
 *
 * The whole input is parsed as a page header (a copy of exactly its size, so ASan sees any
 * read past it) and checked as segment 000000010000000000000001 and, when it parses, as the
 * segment its own header names (which must then pass). It is also parsed as the history file
 * of timeline 2..257 (the first byte chooses); what is accepted must be ascending timelines
 * below the file's and switch points that never go back. Every refusal has a message. */
#include "walfile.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    bq_errbuf_t e = {{0}};
    pg_wal_page_t pg;
    int rc = pg_wal_page_parse(copy, size, &pg, &e);
    if (rc != 0 && (rc != BQ_E_INVAL || !e.msg[0]))
        abort();
    memset(&e, 0, sizeof e);
    int crc = pg_wal_segment_check("000000010000000000000001", copy, size, 0, 0, &e);
    if (crc != 0 && (crc != BQ_E_INVAL || !e.msg[0]))
        abort();
    if (crc == 0 && (rc != 0 || !pg.long_header || pg.tli != 1 || pg.pageaddr != pg.seg_size))
        abort();
    if (rc == 0 && pg.long_header) {
        uint64_t segno = pg.pageaddr / pg.seg_size, per_id = 0x100000000ull / pg.seg_size;
        if (segno / per_id <= UINT32_MAX) {
            char name[32];
            snprintf(name, sizeof name, "%08X%08X%08X", (unsigned)pg.tli,
                     (unsigned)(segno / per_id), (unsigned)(segno % per_id));
            if (pg_wal_segment_check(name, copy, size, pg.sysid, pg.seg_size, &e) != 0)
                abort(); /* its own place must pass */
        }
    }

    uint32_t tli = 2 + (size ? data[0] : 0);
    pg_tli_entry_t t[64];
    size_t n = 0;
    memset(&e, 0, sizeof e);
    rc = pg_tli_history_parse((const char *)copy, size, tli, t, 64, &n, &e);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            if (t[i].tli == 0 || t[i].tli >= tli || (i && (t[i].tli <= t[i - 1].tli ||
                                                             t[i].end < t[i - 1].end)))
                abort();
    } else if ((rc != BQ_E_INVAL && rc != BQ_E_TOOBIG) || !e.msg[0]) {
        abort();
    }
    free(copy);
    return 0;
}
