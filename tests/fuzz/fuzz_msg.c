/* libFuzzer target for proto/codec.c: the bytes are decoded as a wire message and as each
 * catalog record (Job, Worker, Cluster, Backup, WalFile). Whatever decodes must encode again,
 * decode again to the same type and seq, and encode a second time to the very same bytes (what
 * the codec accepts, it represents exactly). Decode failures must leave the output cleared. */
#include "proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static int same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void fuzz_msg(const uint8_t *data, size_t size)
{
    bq_msg_t m, m2;
    bq_errbuf_t e;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;

    if (proto_msg_decode(data, size, &m, &e) < 0) {
        CHECK(all_zero(&m, sizeof m));
        return;
    }
    CHECK(proto_msg_encode(&m, &b1, &n1, &e) == 0);
    CHECK(proto_msg_decode(b1, n1, &m2, &e) == 0);
    CHECK(m2.type == m.type);
    CHECK(m2.seq == m.seq);
    CHECK(proto_msg_encode(&m2, &b2, &n2, &e) == 0);
    CHECK(same_bytes(b1, n1, b2, n2));
    free(b1);
    free(b2);
    proto_msg_clear(&m);
    proto_msg_clear(&m2);
}

/* One record kind: decode, and on success encode/decode/encode to the same bytes. */
#define FUZZ_RECORD(type_t, decode, encode)                                              \
    do {                                                                                 \
        type_t *r1 = malloc(sizeof *r1), *r2 = malloc(sizeof *r2);                        \
        bq_errbuf_t re;                                                                  \
        uint8_t *rb1 = NULL, *rb2 = NULL;                                                \
        size_t rn1 = 0, rn2 = 0;                                                         \
        CHECK(r1 && r2);                                                                 \
        if (decode(data, size, r1, &re) < 0) {                                           \
            CHECK(all_zero(r1, sizeof *r1));                                             \
        } else {                                                                         \
            CHECK(encode(r1, &rb1, &rn1, &re) == 0);                                     \
            CHECK(decode(rb1, rn1, r2, &re) == 0);                                       \
            CHECK(encode(r2, &rb2, &rn2, &re) == 0);                                     \
            CHECK(same_bytes(rb1, rn1, rb2, rn2));                                       \
        }                                                                                \
        free(rb1);                                                                       \
        free(rb2);                                                                       \
        free(r1);                                                                        \
        free(r2);                                                                        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_msg(data, size);
    FUZZ_RECORD(bq_job_t, proto_job_decode, proto_job_encode);
    FUZZ_RECORD(bq_worker_t, proto_worker_decode, proto_worker_encode);
    FUZZ_RECORD(bq_cluster_t, proto_cluster_decode, proto_cluster_encode);
    FUZZ_RECORD(bq_backup_t, proto_backup_decode, proto_backup_encode);
    FUZZ_RECORD(bq_wal_file_t, proto_wal_file_decode, proto_wal_file_encode);
    FUZZ_RECORD(bq_restore_test_t, proto_rtest_decode, proto_rtest_encode);
    return 0;
}
