/* Fuzz target: arbitrary bytes as the CopyData messages of a BASE_BACKUP stream (the
 * pg_bb_stream_* decoder of pg/basebackup.h), for a server that announced two tablespaces:
 * 16384 at /srv/ts1, then the main data directory.
 *
 * Input: a sequence of messages, each a 2-byte big-endian length then that many bytes (a
 * length running past the input takes what is left). The callbacks check the order of what
 * the decoder reports (archives begin and end in pairs, entries inside archives, the manifest
 * after the last archive); refusals are BQ_E_PROTO from the stream or its tar parser, one line.
 * The seeds in corpus/fuzz_bbstream/ are complete, valid streams. */
#include "basebackup.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    int in_archive, in_file, archives, manifest;
    uint64_t want, got;
} st_t;

static int a_begin(void *arg, const pg_bb_tablespace_t *ts, const char *name, bq_errbuf_t *e)
{
    (void)e;
    st_t *s = arg;
    if (s->in_archive || s->manifest || !ts || !name)
        abort();
    s->in_archive = 1;
    s->archives++;
    return 0;
}

static int a_end(void *arg, const pg_bb_tablespace_t *ts, bq_errbuf_t *e)
{
    (void)ts;
    (void)e;
    st_t *s = arg;
    if (!s->in_archive || s->in_file)
        abort();
    s->in_archive = 0;
    return 0;
}

static int f_begin(void *arg, const pg_tar_entry_t *ent, bq_errbuf_t *e)
{
    (void)e;
    st_t *s = arg;
    if (!s->in_archive || s->in_file || pg_tar_path_problem(ent->path, strlen(ent->path)))
        abort();
    s->in_file = 1;
    s->want = ent->size;
    s->got = 0;
    return 0;
}

static int f_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)buf;
    (void)e;
    st_t *s = arg;
    if (!s->in_file || s->got + len > s->want)
        abort();
    s->got += len;
    return 0;
}

static int f_end(void *arg, bq_errbuf_t *e)
{
    (void)e;
    st_t *s = arg;
    if (!s->in_file || s->got != s->want)
        abort();
    s->in_file = 0;
    return 0;
}

static int m_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    (void)buf;
    (void)e;
    st_t *s = arg;
    if (s->in_archive || len == 0)
        abort();
    s->manifest = 1;
    return 0;
}

static const pg_bb_callbacks_t cb = {
    .archive_begin = a_begin,
    .file_begin = f_begin,
    .file_data = f_data,
    .file_end = f_end,
    .archive_end = a_end,
    .manifest_data = m_data,
};

static const pg_bb_tablespace_t ts[] = {
    {.oid = 16384, .location = "/srv/ts1", .size_estimate = 8192},
    {.oid = 0, .location = "", .size_estimate = 8192},
};

static int refusal_ok(int rc, const char *msg)
{
    return rc == BQ_E_PROTO && !strchr(msg, '\n') &&
           (strncmp(msg, "backup stream", 13) == 0 || strncmp(msg, "tar archive ", 12) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_t s = {0};
    pg_bb_stream_t *d = NULL;
    bq_errbuf_t e = {{0}};
    if (pg_bb_stream_new(ts, 2, 16384, 1, &cb, &s, &d, &e) != 0)
        abort();
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < size) {
        size_t n = off + 2 <= size ? (size_t)(data[off] << 8 | data[off + 1]) : 0;
        off += off + 2 <= size ? 2 : size - off;
        if (n > size - off)
            n = size - off;
        /* a copy of exactly n bytes, so ASan sees any read past the message */
        uint8_t *m = malloc(n ? n : 1);
        if (!m)
            break;
        if (n)
            memcpy(m, data + off, n);
        rc = pg_bb_stream_message(d, m, n, &e);
        free(m);
        off += n;
    }
    pg_bb_end_t end = {0};
    if (rc == 0)
        rc = pg_bb_stream_finish(d, &end, &e);
    if (rc == 0 && (s.in_archive || s.archives != 2 || end.archive_bytes == 0))
        abort();
    if (rc != 0 && !refusal_ok(rc, e.msg))
        abort();
    pg_bb_stream_destroy(&d);
    return 0;
}
