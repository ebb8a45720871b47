/* Driver for fuzz targets in ordinary builds (no libFuzzer): replays every file of the
 * corpus directory given as argv[1], then a bounded number of deterministic mutations of
 * each (bit flips, truncations, random bytes), so ctest exercises every decoder on bad
 * input under ASan+UBSan too. Exits 0 when nothing crashed. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void run_mutations(const uint8_t *seed, size_t len)
{
    uint8_t *buf = malloc(len + 64);
    if (!buf)
        return;
    for (int i = 0; i < 2000; i++) {
        size_t n = len;
        memcpy(buf, seed, len);
        switch (rng() % 4) {
        case 0: /* flip bits */
            for (int k = 0; k < 1 + (int)(rng() % 4) && n; k++)
                buf[rng() % n] ^= (uint8_t)(1u << (rng() % 8));
            break;
        case 1: /* truncate */
            n = n ? rng() % n : 0;
            break;
        case 2: /* random bytes appended */
            for (int k = 0; k < (int)(rng() % 64); k++)
                buf[n++] = (uint8_t)rng();
            break;
        default: /* overwrite a byte with an extreme value */
            if (n)
                buf[rng() % n] = (rng() & 1) ? 0xff : 0x00;
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    size_t files = 0;
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
    if (argc > 1) {
        DIR *d = opendir(argv[1]);
        if (!d) {
            fprintf(stderr, "cannot open corpus %s\n", argv[1]);
            return 1;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[1], de->d_name);
            FILE *f = fopen(path, "rb");
            if (!f)
                continue;
            uint8_t *buf = malloc(1 << 20);
            size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
            fclose(f);
            if (buf) {
                LLVMFuzzerTestOneInput(buf, n);
                run_mutations(buf, n);
                files++;
            }
            free(buf);
        }
        closedir(d);
    }
    for (int i = 0; i < 2000; i++) {
        uint8_t buf[256];
        size_t n = rng() % sizeof buf;
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)rng();
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("fuzz replay: %zu corpus files, each with 2000 mutations, plus 2000 random inputs: no crash\n",
           files);
    return 0;
}
