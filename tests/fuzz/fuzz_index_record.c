/* Fuzz target: arbitrary bytes as a chunk index value (store_index_loc_decode). Anything but
 * 28 bytes is refused; what is accepted is a possible record location, and encodes back to
 * exactly the same bytes. */
#include "index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bq_errbuf_t e;
    store_index_loc_t loc;
    /* a copy of exactly size bytes, so ASan catches a read past the value */
    uint8_t *copy = calloc(1, size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    int rc = store_index_loc_decode(copy, size, &loc, &e);
    if (size != STORE_INDEX_VALUE_LEN && size != STORE_INDEX_VALUE_DELTA_LEN) {
        if (rc != BQ_E_IO)
            abort();
    } else if (rc == 0) {
        uint8_t again[STORE_INDEX_VALUE_MAX];
        if (store_index_loc_encode(&loc, again) != size ||
            memcmp(again, copy, size) != 0 || loc.offset < STORE_PACK_HEADER_LEN ||
            loc.rec_len < STORE_PACK_RECORD_OVERHEAD || loc.rec_len > STORE_PACK_REC_MAX ||
            loc.offset > UINT64_MAX - loc.rec_len)
            abort();
    } else if (rc != BQ_E_IO || e.msg[0] == '\0') {
        abort();
    }
    free(copy);
    return 0;
}
