/* Fuzz target: arbitrary bytes as a tar stream from BASE_BACKUP (pg/tar.h).
 *
 * The input is parsed twice: in one piece, and in pieces whose sizes come from a generator
 * seeded by the input (1 to 700 bytes, often 1). Both must give the same entries, data and
 * result, byte for byte: the parser may not depend on how the stream is split. What it accepts
 * must be sane: canonical relative paths, no data for anything but files, data adding up to
 * each size, begin/end paired, nothing after the archive end. What it refuses is BQ_E_PROTO
 * "tar archive fuzz: ...", one line. The seeds in corpus/fuzz_tar/ are archives written by GNU
 * tar (ustar, gnu with 'L'/'K' entries, pax) and one in PostgreSQL's style. */
#include "tar.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint64_t hash;       /* of everything reported, in order */
    uint64_t want, got;
    int in_entry, ended, entries;
} state_t;

static void mix(state_t *s, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        s->hash = (s->hash ^ b[i]) * 1099511628211ULL;
}

static int on_begin(void *arg, const pg_tar_entry_t *ent, bq_errbuf_t *e)
{
    (void)e;
    state_t *s = arg;
    if (s->in_entry || s->ended)
        abort();
    size_t plen = strlen(ent->path);
    if (pg_tar_path_problem(ent->path, plen))
        abort();
    if (ent->type != PG_TAR_FILE && ent->size != 0)
        abort();
    if ((ent->type == PG_TAR_SYMLINK || ent->type == PG_TAR_HARDLINK) && !ent->link[0])
        abort();
    if (ent->type == PG_TAR_HARDLINK && pg_tar_path_problem(ent->link, strlen(ent->link)))
        abort();
    if (ent->mtime < 0 || ent->mode > 07777 || ent->size > (uint64_t)INT64_MAX)
        abort();
    mix(s, ent->path, plen + 1);
    mix(s, ent->link, strlen(ent->link) + 1);
    mix(s, &ent->type, sizeof ent->type);
    mix(s, &ent->mode, sizeof ent->mode);
    mix(s, &ent->size, sizeof ent->size);
    mix(s, &ent->mtime, sizeof ent->mtime);
    mix(s, &ent->offset, sizeof ent->offset);
    s->want = ent->size;
    s->got = 0;
    s->in_entry = 1;
    s->entries++;
    return 0;
}

static int on_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    state_t *s = arg;
    if (!s->in_entry || len == 0 || s->got + len > s->want)
        abort();
    mix(s, buf, len);
    s->got += len;
    return 0;
}

static int on_end(void *arg, bq_errbuf_t *e)
{
    (void)e;
    state_t *s = arg;
    if (!s->in_entry || s->got != s->want)
        abort();
    s->in_entry = 0;
    mix(s, "E", 1);
    return 0;
}

static int on_archive_end(void *arg, bq_errbuf_t *e)
{
    (void)e;
    state_t *s = arg;
    if (s->in_entry || s->ended)
        abort();
    s->ended = 1;
    return 0;
}

static const pg_tar_callbacks_t cb = {on_begin, on_data, on_end, on_archive_end};

static int run(const uint8_t *data, size_t size, int split, state_t *s, bq_errbuf_t *e)
{
    memset(s, 0, sizeof *s);
    s->hash = 1469598103934665603ULL;
    pg_tar_t *t = NULL;
    if (pg_tar_new("fuzz", &cb, s, &t, e) != 0)
        abort();
    uint64_t r = 0x9e3779b97f4a7c15ULL ^ size;
    for (size_t i = 0; i < size && i < 16; i++)
        r = (r ^ data[i]) * 0x100000001b3ULL;
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < size) {
        size_t n = size - off;
        if (split) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            n = (r & 3) == 0 ? 1 : 1 + (size_t)(r >> 8) % 700;
            if (n > size - off)
                n = size - off;
        }
        rc = pg_tar_feed(t, data + off, n, e);
        off += n;
    }
    if (rc == 0)
        rc = pg_tar_finish(t, e);
    if ((rc == 0) != (pg_tar_ended(t) && !s->in_entry))
        abort();
    pg_tar_destroy(&t);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan sees any read past the input. */
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    if (size)
        memcpy(in, data, size);
    state_t a, b;
    bq_errbuf_t ea = {{0}}, eb = {{0}};
    int ra = run(in, size, 0, &a, &ea);
    int rb = run(in, size, 1, &b, &eb);
    if (ra != rb || a.hash != b.hash || a.entries != b.entries || a.ended != b.ended)
        abort(); /* the split changed the outcome */
    if (ra != 0) {
        if (ra != BQ_E_PROTO || strncmp(ea.msg, "tar archive fuzz: ", 18) != 0 ||
            strchr(ea.msg, '\n') || strcmp(ea.msg, eb.msg) != 0)
            abort();
    }
    free(in);
    return 0;
}
