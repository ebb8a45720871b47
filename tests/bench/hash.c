/* bench_hash: what a chunk costs on this machine, one core, by chunk size.
 *
 * Over one buffer of realistic data (default 1 GiB: runs of zero pages, pgbench_accounts-like
 * heap pages and random bytes), cut into chunks of 8, 16, 32, 64, 128 and 256 KiB, it measures
 * the throughput (MB/s, 10^6 bytes of plaintext per second) of:
 *   - the chunk id candidates: keyed BLAKE2b-256 (libsodium crypto_generichash, 32-byte key),
 *     HMAC-SHA-256 in libsodium (portable C), HMAC-SHA-256 in OpenSSL libcrypto (which uses the
 *     CPU's SHA extensions when it has them), one-shot HMAC() and a reused EVP_MAC context;
 *   - for context, what else touches every chunk: XChaCha20-Poly1305 encryption, zstd level 1
 *     and lz4 compression (with their ratio on this data).
 * Each figure is the best of --reps passes over the whole buffer. The thread's CPU time is
 * compared with the wall time of each pass: a pass that got less than 95% of a core is marked
 * with '*' (the machine was busy), and the load average is printed before and after.
 *
 *   bench_hash [--mib N] [--reps N] [--cpu N]
 *
 * It prints figures; it is not a timed test (STYLE.md). docs/measurements.md records a run. */
#include <errno.h>
#include <sched.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lz4.h>
#include <zstd.h>

#ifdef BQ_HAVE_LIBCRYPTO
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/opensslv.h>
#endif

#define PAGE 8192
#define NSIZES 6
static const size_t chunk_kib[NSIZES] = {8, 16, 32, 64, 128, 256};

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A pgbench_accounts heap page: 61 tuples (aid, bid, abalance, filler char(84)). */
static void page_pgbench(uint8_t *p, uint32_t blkno, uint32_t *aid)
{
    enum { NTUP = 61, TUPLEN = 128, HOFF = 24 };
    memset(p, 0, PAGE);
    put64(p, 0x0000000100000000ULL + (uint64_t)blkno * 0x2000);     /* pd_lsn */
    put16(p + 12, (uint16_t)(24 + NTUP * 4));                      /* pd_lower */
    put16(p + 14, (uint16_t)(PAGE - NTUP * TUPLEN));               /* pd_upper */
    put16(p + 16, PAGE);                                           /* pd_special */
    put16(p + 18, 0x2004);                                         /* size, version */
    for (uint32_t i = 0; i < NTUP; i++) {
        uint32_t off = PAGE - (i + 1) * TUPLEN;
        put32(p + 24 + i * 4, off | (1u << 15) | (121u << 17));   /* line pointer */
        uint8_t *t = p + off;
        put32(t, 733 + blkno / 1000);                              /* t_xmin */
        put32(t + 12, blkno);                                      /* t_ctid */
        put16(t + 16, (uint16_t)(i + 1));
        put16(t + 18, 4);                                          /* t_infomask2: natts */
        put16(t + 20, 0x0902);                                     /* t_infomask */
        t[22] = HOFF;
        uint32_t a = ++*aid;
        put32(t + HOFF, a);
        put32(t + HOFF + 4, a / 100000 + 1);
        int32_t bal = (rng() % 8 == 0) ? (int32_t)(rng() % 10001) - 5000 : 0;
        memcpy(t + HOFF + 8, &bal, 4);
        t[HOFF + 12] = (uint8_t)((85 << 1) | 1);                   /* short varlena header */
        memset(t + HOFF + 13, ' ', 84);
    }
}

typedef struct {
    size_t zero, pgbench, random;
} mix_t;

/* Runs of 1..128 pages: 20% zero pages, 60% pgbench pages, 20% random bytes. */
static void fill(uint8_t *buf, size_t len, mix_t *mix)
{
    size_t npages = len / PAGE;
    uint32_t aid = 0;
    for (size_t pg = 0; pg < npages;) {
        size_t run = 1 + rng() % 128;
        if (run > npages - pg)
            run = npages - pg;
        unsigned kind = (unsigned)(rng() % 10);
        for (size_t k = 0; k < run; k++, pg++) {
            uint8_t *p = buf + pg * PAGE;
            if (kind < 2) {
                memset(p, 0, PAGE);
                mix->zero++;
            } else if (kind < 8) {
                page_pgbench(p, (uint32_t)pg, &aid);
                mix->pgbench++;
            } else {
                for (size_t i = 0; i < PAGE; i += 8) {
                    uint64_t v = rng();
                    memcpy(p + i, &v, 8);
                }
                mix->random++;
            }
        }
    }
}

/* ---- the operations: each processes one chunk and returns output bytes (or 0) ---- */

typedef struct {
    uint8_t key[32];
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    uint8_t *out;
    size_t out_cap;
    ZSTD_CCtx *zc;
    void *lz4_state;
#ifdef BQ_HAVE_LIBCRYPTO
    EVP_MAC *mac;
    EVP_MAC_CTX *macctx;
#endif
    volatile uint8_t sink;
} ctx_t;

typedef size_t (*op_fn)(ctx_t *c, const uint8_t *data, size_t len);

static size_t op_blake2b(ctx_t *c, const uint8_t *data, size_t len)
{
    uint8_t h[32];
    crypto_generichash(h, sizeof h, data, len, c->key, sizeof c->key);
    c->sink ^= h[0];
    return 0;
}

static size_t op_hmac_sodium(ctx_t *c, const uint8_t *data, size_t len)
{
    uint8_t h[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(h, data, len, c->key);
    c->sink ^= h[0];
    return 0;
}

#ifdef BQ_HAVE_LIBCRYPTO
static size_t op_hmac_openssl(ctx_t *c, const uint8_t *data, size_t len)
{
    uint8_t h[32];
    unsigned int hl = 0;
    if (!HMAC(EVP_sha256(), c->key, (int)sizeof c->key, data, len, h, &hl))
        abort();
    c->sink ^= h[0];
    return 0;
}

static size_t op_hmac_openssl_mac(ctx_t *c, const uint8_t *data, size_t len)
{
    uint8_t h[32];
    size_t hl = 0;
    /* NULL key: HMAC restarts from the key it was first given (no re-keying). */
    if (!EVP_MAC_init(c->macctx, NULL, 0, NULL) || !EVP_MAC_update(c->macctx, data, len) ||
        !EVP_MAC_final(c->macctx, h, &hl, sizeof h))
        abort();
    c->sink ^= h[0];
    return 0;
}
#endif

static size_t op_xchacha(ctx_t *c, const uint8_t *data, size_t len)
{
    unsigned long long cl = 0;
    c->nonce[0]++;
    crypto_aead_xchacha20poly1305_ietf_encrypt(c->out, &cl, data, len, c->nonce, 24, NULL,
                                               c->nonce, c->key);
    c->sink ^= c->out[0];
    return (size_t)cl;
}

static size_t op_zstd1(ctx_t *c, const uint8_t *data, size_t len)
{
    size_t n = ZSTD_compressCCtx(c->zc, c->out, c->out_cap, data, len, 1);
    if (ZSTD_isError(n))
        abort();
    c->sink ^= c->out[0];
    return n;
}

static size_t op_lz4(ctx_t *c, const uint8_t *data, size_t len)
{
    int n = LZ4_compress_fast_extState(c->lz4_state, (const char *)data, (char *)c->out,
                                       (int)len, (int)c->out_cap, 1);
    if (n <= 0)
        abort();
    c->sink ^= c->out[0];
    return (size_t)n;
}

typedef struct {
    const char *name;
    op_fn fn;
    int ratio; /* print the output/input ratio */
} op_t;

static const op_t ops[] = {
    {"keyed BLAKE2b-256 (libsodium)", op_blake2b, 0},
    {"HMAC-SHA-256 (libsodium)", op_hmac_sodium, 0},
#ifdef BQ_HAVE_LIBCRYPTO
    {"HMAC-SHA-256 (OpenSSL HMAC())", op_hmac_openssl, 0},
    {"HMAC-SHA-256 (OpenSSL EVP_MAC, reused)", op_hmac_openssl_mac, 0},
#endif
    {"XChaCha20-Poly1305 encrypt", op_xchacha, 0},
    {"zstd -1 compress", op_zstd1, 1},
    {"lz4 compress", op_lz4, 1},
};
#define NOPS (sizeof ops / sizeof ops[0])

static double ts_sec(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_loadavg(const char *when)
{
    char line[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(line, sizeof line, f))
            snprintf(line, sizeof line, "?\n");
        fclose(f);
    }
    printf("loadavg %s: %s", when, line);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_hash [--mib N] [--reps N] [--cpu N]\n");
}

int main(int argc, char **argv)
{
    size_t mib = 1024;
    int reps = 3, cpu = -1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--mib") == 0)
            mib = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--cpu") == 0)
            cpu = atoi(argv[++i]);
        else {
            usage();
            return 2;
        }
    }
    if (mib < 1 || mib > 65536 || reps < 1 || reps > 100) {
        usage();
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "bench_hash: could not initialise libsodium\n");
        return 1;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) {
            fprintf(stderr, "bench_hash: could not pin to cpu %d: %s\n", cpu, strerror(errno));
            return 1;
        }
    }

    size_t len = mib << 20;
    uint8_t *buf = malloc(len);
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.out_cap = ZSTD_compressBound(256 << 10) + 1024;
    c.out = malloc(c.out_cap);
    c.zc = ZSTD_createCCtx();
    c.lz4_state = malloc((size_t)LZ4_sizeofState());
    if (!buf || !c.out || !c.zc || !c.lz4_state) {
        fprintf(stderr, "bench_hash: out of memory for a %zu MiB buffer\n", mib);
        return 1;
    }
    randombytes_buf(c.key, sizeof c.key);
    randombytes_buf(c.nonce, sizeof c.nonce);
#ifdef BQ_HAVE_LIBCRYPTO
    c.mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    c.macctx = c.mac ? EVP_MAC_CTX_new(c.mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (!c.macctx || !EVP_MAC_init(c.macctx, c.key, sizeof c.key, params)) {
        fprintf(stderr, "bench_hash: could not set up OpenSSL HMAC\n");
        return 1;
    }
#endif

    mix_t mix = {0, 0, 0};
    fill(buf, len, &mix);
    size_t np = mix.zero + mix.pgbench + mix.random;
    printf("bench_hash: %zu MiB buffer of %zu 8 KiB pages: %.0f%% zero, %.0f%% pgbench_accounts "
           "heap, %.0f%% random; best of %d passes; MB/s = 10^6 plaintext bytes per second; "
           "one thread%s\n",
           mib, np, 100.0 * (double)mix.zero / (double)np, 100.0 * (double)mix.pgbench / (double)np,
           100.0 * (double)mix.random / (double)np, reps, cpu >= 0 ? " pinned" : "");
    printf("libsodium %s, zstd %s, lz4 %s", sodium_version_string(), ZSTD_versionString(),
           LZ4_versionString());
#ifdef BQ_HAVE_LIBCRYPTO
    printf(", %s", OPENSSL_VERSION_TEXT);
#else
    printf(", OpenSSL libcrypto not built in");
#endif
    printf("\n");
    print_loadavg("before");

    double mbs[NOPS][NSIZES], ratio[NOPS][NSIZES];
    int busy[NOPS][NSIZES];
    for (size_t o = 0; o < NOPS; o++) {
        for (size_t s = 0; s < NSIZES; s++) {
            size_t cs = chunk_kib[s] << 10;
            double best = 0;
            size_t out_total = 0;
            busy[o][s] = 0;
            for (int r = 0; r < reps; r++) {
                size_t out = 0;
                double w0 = ts_sec(CLOCK_MONOTONIC), c0 = ts_sec(CLOCK_THREAD_CPUTIME_ID);
                for (size_t off = 0; off < len; off += cs)
                    out += ops[o].fn(&c, buf + off, len - off < cs ? len - off : cs);
                double w1 = ts_sec(CLOCK_MONOTONIC), c1 = ts_sec(CLOCK_THREAD_CPUTIME_ID);
                double rate = (double)len / (w1 - w0) / 1e6;
                if (rate > best) {
                    best = rate;
                    busy[o][s] = (c1 - c0) < 0.95 * (w1 - w0);
                }
                out_total = out;
            }
            mbs[o][s] = best;
            ratio[o][s] = out_total ? (double)len / (double)out_total : 0;
        }
        fprintf(stderr, "done: %s\n", ops[o].name);
    }
    print_loadavg("after");

    printf("\n| operation (MB/s) |");
    for (size_t s = 0; s < NSIZES; s++)
        printf(" %zu KiB |", chunk_kib[s]);
    printf("\n|---|");
    for (size_t s = 0; s < NSIZES; s++)
        printf("---:|");
    printf("\n");
    for (size_t o = 0; o < NOPS; o++) {
        printf("| %s |", ops[o].name);
        for (size_t s = 0; s < NSIZES; s++)
            printf(" %.0f%s |", mbs[o][s], busy[o][s] ? "*" : "");
        printf("\n");
    }
    printf("\n| compression ratio (in/out) |");
    for (size_t s = 0; s < NSIZES; s++)
        printf(" %zu KiB |", chunk_kib[s]);
    printf("\n|---|");
    for (size_t s = 0; s < NSIZES; s++)
        printf("---:|");
    printf("\n");
    for (size_t o = 0; o < NOPS; o++) {
        if (!ops[o].ratio)
            continue;
        printf("| %s |", ops[o].name);
        for (size_t s = 0; s < NSIZES; s++)
            printf(" %.2f |", ratio[o][s]);
        printf("\n");
    }
    printf("\n(* = the pass got less than 95%% of a core: the machine was busy)\n");

#ifdef BQ_HAVE_LIBCRYPTO
    EVP_MAC_CTX_free(c.macctx);
    EVP_MAC_free(c.mac);
#endif
    ZSTD_freeCCtx(c.zc);
    free(c.lz4_state);
    free(c.out);
    free(buf);
    return c.sink == 0x5a ? 0 : 0;
}
