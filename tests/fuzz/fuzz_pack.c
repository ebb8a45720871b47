/* Fuzz target: arbitrary bytes as pack 000000000000002a of a store directory (created once,
 * removed at exit), then scanned and its first record read, as verify and restore would.
 * Nothing may crash or read out of bounds, and what the scan reports must be consistent:
 * records in order, inside the file, each read back identically by store_pack_read. */
#include "pack.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PACK_ID 0x2aULL
#define READ_CAP (64u << 10)

static char dir[64];
static char path[160];

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
    snprintf(dir, sizeof dir, "/tmp/bq_fuzz_pack.XXXXXX");
    if (!mkdtemp(dir)) {
        dir[0] = '\0';
        return -1;
    }
    atexit(fuzz_cleanup);
    char sub[128];
    snprintf(sub, sizeof sub, "%s/packs", dir);
    if (mkdir(sub, 0700) != 0)
        return -1;
    snprintf(sub, sizeof sub, "%s/packs/2a", dir);
    if (mkdir(sub, 0700) != 0)
        return -1;
    if (store_pack_path(dir, PACK_ID, path, sizeof path) != 0)
        return -1;
    return 0;
}

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

typedef struct {
    size_t size;
    uint64_t next;        /* where the next record must start */
    size_t n;
    uint64_t first_off;
    uint32_t first_len;
    uint8_t first_id[STORE_CHUNK_ID_BYTES];
    uint8_t *copy;        /* the first record's body */
    size_t copy_len;
} scan_t;

static int on_record(const uint8_t id[STORE_CHUNK_ID_BYTES], uint64_t offset, uint32_t rec_len,
                     const void *body, size_t body_len, void *arg)
{
    scan_t *s = arg;
    if (offset != s->next || rec_len != body_len + STORE_PACK_RECORD_OVERHEAD ||
        body_len > STORE_PACK_BODY_MAX || offset + rec_len > s->size)
        abort();
    /* touch every byte handed out, so ASan sees any over-read */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < body_len; i++)
        sink ^= ((const uint8_t *)body)[i];
    for (size_t i = 0; i < STORE_CHUNK_ID_BYTES; i++)
        sink ^= id[i];
    (void)sink;
    if (s->n == 0) {
        s->first_off = offset;
        s->first_len = rec_len;
        memcpy(s->first_id, id, STORE_CHUNK_ID_BYTES);
        if (body_len <= READ_CAP && (s->copy = malloc(body_len + 1)) != NULL) {
            memcpy(s->copy, body, body_len);
            s->copy_len = body_len;
        }
    }
    s->next = offset + rec_len;
    s->n++;
    return 0;
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
           ((uint32_t)b[3] << 24);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_file_write(data, size) != 0)
        return 0;
    bq_errbuf_t e;
    scan_t s = {.size = size, .next = STORE_PACK_HEADER_LEN};
    uint64_t good_end = 0;
    int rc = store_pack_scan(dir, PACK_ID, on_record, &s, &good_end, &e);
    if (good_end > size || (rc == 0 && good_end != size) || (s.n && good_end < s.next))
        abort();

    uint8_t *buf = malloc(READ_CAP); /* exactly READ_CAP: ASan catches any write past it */
    if (!buf) {
        free(s.copy);
        return 0;
    }
    if (s.n && s.copy) {
        /* the first record the scan accepted reads back the same */
        uint8_t id[STORE_CHUNK_ID_BYTES];
        size_t len = 0;
        if (store_pack_read(dir, PACK_ID, s.first_off, s.first_len, s.first_id, id, buf,
                            READ_CAP, &len, &e) != 0 ||
            len != s.copy_len || memcmp(id, s.first_id, sizeof id) != 0 ||
            (len && memcmp(buf, s.copy, len) != 0))
            abort();
    }
    /* record 0 as an index might describe it: its length taken from the bytes themselves */
    uint32_t rec_len = size >= 40 ? le32(data + 36) + STORE_PACK_RECORD_OVERHEAD : 44;
    size_t len = 0;
    rc = store_pack_read(dir, PACK_ID, STORE_PACK_HEADER_LEN, rec_len, NULL, NULL, buf, READ_CAP,
                         &len, &e);
    if (rc == 0 && (len > READ_CAP || len + STORE_PACK_RECORD_OVERHEAD != rec_len))
        abort();
    /* and with a small buffer */
    (void)store_pack_read(dir, PACK_ID, STORE_PACK_HEADER_LEN, rec_len, data + (size > 40 ? 8 : 0),
                          NULL, buf, 3, &len, &e);
    free(buf);
    free(s.copy);
    return 0;
}
