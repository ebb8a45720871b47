/* The data port (peer.h): a ROUTER serving this worker's store on a thread of its own, and
 * the DEALER client a restore thread reads a peer's store with. */
#include "peer.h"

#include "clock.h"
#include "log.h"
#include "walfile.h"
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COMP "data"
#define PEER_TIMEOUT_MS 30000  /* a peer silent this long is gone (peer_timeout_set) */
#define PEER_CONNECT_MS 10000 /* to complete the CURVE handshake */
#define PEER_WINDOW 4          /* chunk requests in flight per client */
#define PEER_BATCH_BYTES (2u << 20) /* chunk bytes asked for per request, about */
#define PEER_BODY_MAX ((16u << 20) + (64u << 10)) /* a sealed chunk of 16 MiB and its header */

/* ---- the server --------------------------------------------------------------------------- */

#define PEER_UPLOADS 8                      /* wal-put files being received at once */
#define PEER_UPLOAD_BYTES ((size_t)512 << 20) /* their buffers, in all */
#define PEER_UPLOAD_IDLE_MS 60000           /* an upload with no piece this long is dropped */
#define PEER_ARCHIVERS 3                    /* threads storing wal-put files */

/* A received wal-put file on its way through an archiver. */
typedef struct archive_job {
    struct archive_job *next;
    bq_peer_t to;
    uint64_t seq;
    char cluster[BQ_NAME_MAX];
    char name[BQ_DATA_NAME_MAX];
    uint8_t *buf;
    uint64_t total;            /* bytes received (packed: the packed bytes) */
    uint32_t packing;          /* BQ_PACK_NONE or BQ_PACK_WAL */
    uint64_t raw_size;         /* the file's own size */
    uint32_t seg_size;
    int64_t received_ms;       /* how long the pieces took */
    int rc, existed;
    int64_t check_ms, store_ms;
    bq_errbuf_t e;
} archive_job_t;

/* A WAL file an operator's wal-push is sending, piece by piece, kept in memory until its last
 * piece; then archived into the store. */
typedef struct {
    int used;
    size_t rid_len;
    uint8_t rid[BQ_ROUTING_ID_MAX];
    char cluster[BQ_NAME_MAX];
    char name[BQ_DATA_NAME_MAX];
    uint8_t *buf;
    uint64_t total, got;
    uint32_t packing; /* as the first piece said */
    uint64_t raw_size;
    int64_t started_ms, touched_ms;
} upload_t;

struct peer_server {
    proto_ctx_t *ctx;
    proto_zap_t *zap;
    proto_sock_t *sock;
    store_t *store;
    pthread_t thread;
    int started;
    atomic_int stop;
    uint8_t *buf;
    upload_t uploads[PEER_UPLOADS];
    size_t upload_bytes;       /* of uploads and of files waiting for an archiver */
    /* archivers: complete wal-put files are checked and stored on threads of their own, so
     * the port goes on receiving meanwhile; their replies are sent by the port's thread */
    pthread_t archivers[PEER_ARCHIVERS];
    int narchivers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct archive_job *todo, *done;
    size_t pending;            /* handed to the archivers, reply not sent yet */
    /* BARQUE_TEST_DAMAGE_CHUNK=N (tests only): the N-th chunk body this port serves goes out
     * with one byte flipped, as if damaged on the way; 0 = never */
    uint64_t damage_at, served;
};

static void reply_send(peer_server_t *srv, const bq_peer_t *to, bq_msg_t *m)
{
    bq_errbuf_t e;
    if (proto_send(srv->sock, to, m, &e) != 0)
        bq_debug(COMP, 0, "reply to %s not sent: %s", to->user_id, e.msg);
}

static void reply_error(peer_server_t *srv, const bq_peer_t *to, uint64_t seq, int code,
                        const char *msg, const uint8_t *id, uint32_t index)
{
    bq_msg_t r = {.type = BQ_MSG_DATA_REPLY, .seq = seq};
    r.u.data_reply.code = code < 0 ? code : BQ_E_IO;
    snprintf(r.u.data_reply.error, sizeof r.u.data_reply.error, "%s", msg);
    r.u.data_reply.last = 1;
    r.u.data_reply.index = index;
    if (id) {
        r.u.data_reply.has_id = 1;
        memcpy(r.u.data_reply.id, id, BQ_CHUNK_ID_BYTES);
    }
    reply_send(srv, to, &r);
}

static void serve_read(peer_server_t *srv, const bq_peer_t *from, uint64_t seq,
                       const bq_msg_data_req_t *q)
{
    bq_errbuf_t e = {{0}};
    size_t n = 0;
    uint64_t total = 0;
    int rc = store_export_read(srv->store, q->name, q->offset, srv->buf, BQ_DATA_PIECE_MAX, &n,
                               &total, &e);
    if (rc != 0) {
        reply_error(srv, from, seq, rc, e.msg, NULL, 0);
        return;
    }
    bq_msg_t r = {.type = BQ_MSG_DATA_REPLY, .seq = seq};
    r.u.data_reply.data = srv->buf;
    r.u.data_reply.len = n;
    r.u.data_reply.offset = q->offset;
    r.u.data_reply.total = total;
    r.u.data_reply.last = 1;
    reply_send(srv, from, &r);
}

static void serve_keys(peer_server_t *srv, const bq_peer_t *from, uint64_t seq)
{
    bq_errbuf_t e = {{0}};
    uint32_t *ids = NULL;
    size_t n = 0;
    int rc = store_datakey_list(store_dir(srv->store), &ids, &n, &e);
    if (rc == 0 && n > BQ_DATA_KEYS_MAX)
        rc = bq_fail(&e, BQ_E_TOOBIG, "the store has %zu data keys, more than the %d one reply "
                     "carries", n, BQ_DATA_KEYS_MAX);
    if (rc != 0) {
        reply_error(srv, from, seq, rc, e.msg, NULL, 0);
    } else {
        bq_msg_t r = {.type = BQ_MSG_DATA_REPLY, .seq = seq};
        r.u.data_reply.key_ids = ids;
        r.u.data_reply.nkey_ids = n;
        r.u.data_reply.last = 1;
        reply_send(srv, from, &r);
    }
    free(ids);
}

static void serve_chunks(peer_server_t *srv, store_reader_t *rd, const bq_peer_t *from,
                         uint64_t seq, const bq_msg_data_req_t *q)
{
    if (q->nids == 0) {
        reply_error(srv, from, seq, BQ_E_PROTO, "a chunks request with no id", NULL, 0);
        return;
    }
    for (size_t i = 0; i < q->nids; i++) {
        const uint8_t *body = NULL;
        size_t len = 0;
        bq_errbuf_t e = {{0}};
        int rc = store_reader_sealed(rd, q->ids[i], &body, &len, &e);
        if (rc != 0) {
            reply_error(srv, from, seq, rc, e.msg, q->ids[i], (uint32_t)i);
            return;
        }
        if (++srv->served == srv->damage_at && len > 0) {
            ((uint8_t *)body)[len / 2] ^= 0x20; /* the reader's own buffer: sent, then dropped */
            bq_warn(COMP, 0, "BARQUE_TEST_DAMAGE_CHUNK: chunk body %" PRIu64 " served damaged",
                    srv->served);
        }
        size_t off = 0;
        do {
            size_t piece = len - off > BQ_DATA_PIECE_MAX ? BQ_DATA_PIECE_MAX : len - off;
            bq_msg_t r = {.type = BQ_MSG_DATA_REPLY, .seq = seq};
            bq_msg_data_reply_t *d = &r.u.data_reply;
            d->has_id = 1;
            memcpy(d->id, q->ids[i], BQ_CHUNK_ID_BYTES);
            d->index = (uint32_t)i;
            d->data = (uint8_t *)body + off;
            d->len = piece;
            d->offset = off;
            d->total = len;
            off += piece;
            d->last = i + 1 == q->nids && off == len;
            reply_send(srv, from, &r);
        } while (off < len);
    }
}

static void upload_drop(peer_server_t *srv, upload_t *u)
{
    if (!u->used)
        return;
    srv->upload_bytes -= u->total;
    free(u->buf);
    memset(u, 0, sizeof *u);
}

static upload_t *upload_find(peer_server_t *srv, const bq_peer_t *from, const char *cluster,
                             const char *name)
{
    for (int i = 0; i < PEER_UPLOADS; i++) {
        upload_t *u = &srv->uploads[i];
        if (u->used && u->rid_len == from->routing_id_len &&
            memcmp(u->rid, from->routing_id, u->rid_len) == 0 &&
            strcmp(u->cluster, cluster) == 0 && strcmp(u->name, name) == 0)
            return u;
    }
    return NULL;
}

static void uploads_expire(peer_server_t *srv)
{
    int64_t now = bq_mono_ms();
    for (int i = 0; i < PEER_UPLOADS; i++)
        if (srv->uploads[i].used && now - srv->uploads[i].touched_ms > PEER_UPLOAD_IDLE_MS) {
            bq_warn(COMP, 0, "dropping the upload of WAL file %s of cluster %s: no piece for "
                    "%d s", srv->uploads[i].name, srv->uploads[i].cluster,
                    PEER_UPLOAD_IDLE_MS / 1000);
            upload_drop(srv, &srv->uploads[i]);
        }
}

/* Is name, of len bytes, a WAL file a wal-put may store (seg_size: the cluster's)? */
static int wal_put_check(const char *name, const uint8_t *buf, size_t len, uint32_t seg_size,
                         bq_errbuf_t *e)
{
    store_wal_kind_t kind;
    uint32_t tli = 0;
    int rc = store_wal_name_parse(name, &kind, &tli, e);
    if (rc == 0 && (kind == STORE_WAL_SEGMENT || kind == STORE_WAL_PARTIAL))
        rc = pg_wal_segment_check(name, buf, len, 0, seg_size, e);
    if (rc == 0 && kind == STORE_WAL_HISTORY) {
        size_t cap = 4096, n = 0;
        pg_tli_entry_t *ents = malloc(cap * sizeof *ents);
        rc = ents ? pg_tli_history_parse((const char *)buf, len, tli, ents, cap, &n, e)
                  : bq_fail(e, BQ_E_NOMEM, "out of memory");
        free(ents);
    }
    return rc;
}

/* A wal-put or wal-get names a valid cluster and WAL file (*kind: which); else the error is
 * the reply and -1 is returned. */
static int wal_request_check(peer_server_t *srv, const bq_peer_t *from, uint64_t seq,
                             const bq_msg_data_req_t *q, store_wal_kind_t *kind)
{
    bq_errbuf_t e = {{0}};
    if (!store_wal_cluster_valid(q->cluster)) {
        snprintf(e.msg, sizeof e.msg, "%s: invalid cluster name", q->op);
        reply_error(srv, from, seq, BQ_E_INVAL, e.msg, NULL, 0);
        return -1;
    }
    if (store_wal_name_parse(q->name, kind, NULL, &e) != 0) {
        reply_error(srv, from, seq, BQ_E_INVAL, e.msg, NULL, 0);
        return -1;
    }
    return 0;
}

/* op wal-put: one piece of a WAL file; the last one archives it. */
static void serve_wal_put(peer_server_t *srv, const bq_peer_t *from, uint64_t seq,
                          const bq_msg_data_req_t *q)
{
    bq_errbuf_t e = {{0}};
    store_wal_kind_t kind;
    if (wal_request_check(srv, from, seq, q, &kind) != 0)
        return;
    size_t max = (kind == STORE_WAL_HISTORY || kind == STORE_WAL_BACKUP) ? STORE_WAL_SMALL_MAX
                                                                         : STORE_WAL_SEG_MAX;
    upload_t *u = upload_find(srv, from, q->cluster, q->name);
    if (q->offset == 0) {
        if (u)
            upload_drop(srv, u); /* a new attempt of the same file */
        uint64_t raw = q->packing == BQ_PACK_WAL ? q->raw_size : q->total;
        if (raw > max) {
            snprintf(e.msg, sizeof e.msg, "WAL file %s of %" PRIu64 " bytes is larger than %zu",
                     q->name, raw, max);
            reply_error(srv, from, seq, BQ_E_TOOBIG, e.msg, NULL, 0);
            return;
        }
        /* packed: at most every piece as it is, behind its 4-byte frame */
        if (q->packing == BQ_PACK_WAL && q->total > raw + 4 * (uint64_t)store_wal_pieces(raw)) {
            snprintf(e.msg, sizeof e.msg, "WAL file %s of %" PRIu64 " bytes cannot take %"
                     PRIu64 " packed bytes", q->name, raw, q->total);
            reply_error(srv, from, seq, BQ_E_PROTO, e.msg, NULL, 0);
            return;
        }
        u = NULL;
        for (int i = 0; i < PEER_UPLOADS && !u; i++)
            if (!srv->uploads[i].used)
                u = &srv->uploads[i];
        if (!u || srv->upload_bytes + q->total > PEER_UPLOAD_BYTES) {
            reply_error(srv, from, seq, BQ_E_NOWORKER, "the data port is receiving as many WAL "
                        "files as it takes: try again", NULL, 0);
            return;
        }
        if (!(u->buf = malloc(q->total ? q->total : 1))) {
            reply_error(srv, from, seq, BQ_E_NOMEM, "out of memory receiving a WAL file", NULL, 0);
            return;
        }
        u->used = 1;
        u->rid_len = from->routing_id_len;
        memcpy(u->rid, from->routing_id, from->routing_id_len);
        snprintf(u->cluster, sizeof u->cluster, "%s", q->cluster);
        snprintf(u->name, sizeof u->name, "%s", q->name);
        u->total = q->total;
        u->packing = q->packing;
        u->raw_size = raw;
        u->got = 0;
        u->started_ms = bq_mono_ms();
        srv->upload_bytes += u->total;
    } else if (!u) {
        snprintf(e.msg, sizeof e.msg, "wal-put: a piece of %s at offset %" PRIu64 " with no "
                 "upload of it under way", q->name, q->offset);
        reply_error(srv, from, seq, BQ_E_STATE, e.msg, NULL, 0);
        return;
    }
    if (q->offset != u->got || q->total != u->total || q->len > u->total - u->got) {
        snprintf(e.msg, sizeof e.msg, "wal-put: a piece of %s at offset %" PRIu64 " of %" PRIu64
                 " (%zu bytes) where %" PRIu64 " of %" PRIu64 " came", q->name, q->offset,
                 q->total, q->len, u->got, u->total);
        upload_drop(srv, u);
        reply_error(srv, from, seq, BQ_E_PROTO, e.msg, NULL, 0);
        return;
    }
    if (q->len)
        memcpy(u->buf + u->got, q->data, q->len);
    u->got += q->len;
    u->touched_ms = bq_mono_ms();
    bq_msg_t r = {.type = BQ_MSG_DATA_REPLY, .seq = seq};
    r.u.data_reply.offset = q->offset;
    r.u.data_reply.total = u->total;
    if (!q->last) {
        reply_send(srv, from, &r); /* the piece is taken: the client may send more */
        return;
    }
    if (u->got != u->total) {
        snprintf(e.msg, sizeof e.msg, "wal-put: the last piece of %s came with %" PRIu64 " of %"
                 PRIu64 " bytes", q->name, u->got, u->total);
        upload_drop(srv, u);
        reply_error(srv, from, seq, BQ_E_PROTO, e.msg, NULL, 0);
        return;
    }
    archive_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        upload_drop(srv, u);
        reply_error(srv, from, seq, BQ_E_NOMEM, "out of memory", NULL, 0);
        return;
    }
    j->to = *from;
    j->seq = seq;
    snprintf(j->cluster, sizeof j->cluster, "%s", u->cluster);
    snprintf(j->name, sizeof j->name, "%s", u->name);
    j->buf = u->buf;
    j->total = u->total;
    j->packing = u->packing;
    j->raw_size = u->raw_size;
    j->seg_size = q->seg_size;
    j->received_ms = u->touched_ms - u->started_ms;
    u->buf = NULL; /* the job has it; its bytes stay counted until the reply */
    u->used = 0;
    pthread_mutex_lock(&srv->mu);
    j->next = srv->todo;
    srv->todo = j;
    srv->pending++;
    pthread_cond_signal(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

static void *archiver_main(void *arg)
{
    peer_server_t *srv = arg;
    for (;;) {
        pthread_mutex_lock(&srv->mu);
        while (!srv->todo && !atomic_load(&srv->stop))
            pthread_cond_wait(&srv->cv, &srv->mu);
        archive_job_t *j = srv->todo;
        if (j)
            srv->todo = j->next;
        pthread_mutex_unlock(&srv->mu);
        if (!j)
            return NULL; /* stopping, nothing left */
        int64_t t0 = bq_mono_ms();
        /* packed: its pieces decompressed here, checked, and stored as they came */
        const uint8_t *raw = j->buf;
        uint8_t *unpacked = NULL;
        store_wal_piece_t *pieces = NULL;
        j->rc = 0;
        if (j->packing == BQ_PACK_WAL) {
            size_t np = store_wal_pieces(j->raw_size);
            unpacked = malloc(j->raw_size ? (size_t)j->raw_size : 1);
            pieces = calloc(np, sizeof *pieces);
            if (!unpacked || !pieces)
                j->rc = bq_fail(&j->e, BQ_E_NOMEM, "out of memory unpacking WAL file %s",
                                j->name);
            else
                j->rc = store_wal_unpack(j->buf, (size_t)j->total, j->raw_size, unpacked,
                                         pieces, np, &j->e);
            raw = unpacked;
        }
        if (j->rc == 0)
            j->rc = wal_put_check(j->name, raw, (size_t)j->raw_size, j->seg_size, &j->e);
        int64_t t1 = bq_mono_ms();
        uint64_t before = 0;
        j->existed = j->rc == 0 && store_wal_stat(store_dir(srv->store), j->cluster, j->name,
                                                  &before, NULL, NULL, NULL) == 0;
        if (j->rc == 0)
            j->rc = store_wal_archive(srv->store, j->cluster, j->seg_size, j->name, raw,
                                      (size_t)j->raw_size, pieces, &j->e);
        j->check_ms = t1 - t0;
        j->store_ms = bq_mono_ms() - t1;
        free(unpacked);
        free(pieces);
        free(j->buf);
        j->buf = NULL;
        pthread_mutex_lock(&srv->mu);
        j->next = srv->done;
        srv->done = j;
        pthread_mutex_unlock(&srv->mu);
    }
}

/* Send the replies of the files the archivers are done with (the port's thread only). */
static void archive_replies(peer_server_t *srv)
{
    pthread_mutex_lock(&srv->mu);
    archive_job_t *j = srv->done;
    srv->done = NULL;
    pthread_mutex_unlock(&srv->mu);
    while (j) {
        archive_job_t *next = j->next;
        if (j->rc == 0) {
            bq_info(COMP, 0, "%s: WAL file %s of cluster %s (%" PRIu64 " bytes, %" PRIu64 " sent) "
                    "%s (received in %" PRId64 " ms, checked in %" PRId64 " ms, stored in %"
                    PRId64 " ms)", j->to.user_id, j->name, j->cluster, j->raw_size, j->total,
                    j->existed ? "was already archived with the same content" : "archived",
                    j->received_ms, j->check_ms, j->store_ms);
            bq_msg_t r = {.type = BQ_MSG_DATA_REPLY, .seq = j->seq};
            r.u.data_reply.total = j->raw_size;
            r.u.data_reply.last = 1;
            r.u.data_reply.exists = j->existed;
            reply_send(srv, &j->to, &r);
        } else {
            bq_warn(COMP, 0, "%s: WAL file %s of cluster %s refused: %s", j->to.user_id, j->name,
                    j->cluster, j->e.msg);
            reply_error(srv, &j->to, j->seq, j->rc, j->e.msg, NULL, 0);
        }
        pthread_mutex_lock(&srv->mu);
        srv->pending--;
        srv->upload_bytes -= j->total;
        pthread_mutex_unlock(&srv->mu);
        free(j);
        j = next;
    }
}

/* Segment name of cluster in this worker's stream spool: complete and waiting for the
 * archiver (NAME), or being received (NAME.partial, *partial set); read into a new buffer.
 * BQ_E_NOTFOUND when it is in neither. */
static int spool_partial_read(peer_server_t *srv, const char *cluster, const char *name,
                              uint8_t **buf, size_t *len, int *partial, bq_errbuf_t *e)
{
    char path[PATH_MAX];
    /* complete and waiting for the stream's archiver, or still being received; the archiver
     * may reuse an archived segment's file (pg_wal_spool_recycle): it never touches one that
     * is locked, and renames it away before it writes, so the name is checked after the
     * lock (a .partial renamed complete meanwhile: looked for again) */
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 3; attempt++) {
        for (int part = 0; fd < 0 && part < 2; part++) {
            if (snprintf(path, sizeof path, "%s/spool/%s/%s%s", store_dir(srv->store), cluster,
                         name, part ? ".partial" : "") >= (int)sizeof path)
                return bq_fail(e, BQ_E_INVAL, "spool path too long");
            fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            *partial = part;
            if (fd < 0 && errno != ENOENT)
                return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
        }
        if (fd < 0)
            return BQ_E_NOTFOUND;
        struct stat a, b_st;
        if (flock(fd, LOCK_SH) != 0 || fstat(fd, &a) != 0 || stat(path, &b_st) != 0 ||
            a.st_ino != b_st.st_ino || a.st_dev != b_st.st_dev) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        return BQ_E_NOTFOUND; /* archived meanwhile: the store has it */
    off_t end = lseek(fd, 0, SEEK_END);
    int rc = 0;
    if (end < 0 || (size_t)end > STORE_WAL_SEG_MAX)
        rc = bq_fail(e, BQ_E_IO, "%s: bad size", path);
    uint8_t *b = rc ? NULL : malloc(end ? (size_t)end : 1);
    if (rc == 0 && !b)
        rc = bq_fail(e, BQ_E_NOMEM, "out of memory reading %s", path);
    size_t got = 0;
    while (rc == 0 && got < (size_t)end) {
        ssize_t n = pread(fd, b + got, (size_t)end - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = bq_fail(e, BQ_E_IO, "could not read %s: %s", path, n ? strerror(errno) : "short");
        else
            got += (size_t)n;
    }
    close(fd);
    if (rc) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = got;
    return 0;
}

/* op wal-get: a WAL file of a cluster, plaintext, in pieces. */
static void serve_wal_get(peer_server_t *srv, const bq_peer_t *from, uint64_t seq,
                          const bq_msg_data_req_t *q)
{
    bq_errbuf_t e = {{0}};
    store_wal_kind_t kind;
    if (wal_request_check(srv, from, seq, q, &kind) != 0)
        return;
    uint64_t size = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    int partial = 0;
    int rc = store_wal_stat(store_dir(srv->store), q->cluster, q->name, &size, NULL, NULL, &e);
    if (rc == 0 && size > STORE_WAL_SEG_MAX)
        rc = bq_fail(&e, BQ_E_IO, "WAL file %s of cluster %s: a size of %" PRIu64, q->name,
                     q->cluster, size);
    if (rc == 0 && !(buf = malloc(size ? (size_t)size : 1)))
        rc = bq_fail(&e, BQ_E_NOMEM, "out of memory reading WAL file %s", q->name);
    if (rc == 0)
        rc = store_wal_fetch(srv->store, q->cluster, q->name, buf, (size_t)size, &len, &e);
    if (rc == BQ_E_NOTFOUND && kind == STORE_WAL_SEGMENT) {
        free(buf);
        buf = NULL;
        rc = spool_partial_read(srv, q->cluster, q->name, &buf, &len, &partial, &e);
        if (rc == BQ_E_NOTFOUND) {
            /* archived between the two looks: in the store now */
            uint64_t again = 0;
            if (store_wal_stat(store_dir(srv->store), q->cluster, q->name, &again, NULL, NULL,
                               &e) == 0 && again <= STORE_WAL_SEG_MAX &&
                (buf = malloc(again ? (size_t)again : 1)) != NULL)
                rc = store_wal_fetch(srv->store, q->cluster, q->name, buf, (size_t)again, &len,
                                     &e);
        }
    }
    if (rc == BQ_E_NOTFOUND)
        snprintf(e.msg, sizeof e.msg, "WAL file %s of cluster %s is not in this worker's store",
                 q->name, q->cluster);
    if (rc) {
        free(buf);
        reply_error(srv, from, seq, rc, e.msg, NULL, 0);
        return;
    }
    /* a peer that takes it packed gets the file compressed (a WAN copy: a fraction of it) */
    uint32_t packing = BQ_PACK_NONE;
    uint64_t raw = len;
    if (q->packing == BQ_PACK_WAL && !partial && len > 0) {
        uint8_t *packed = NULL;
        size_t plen = 0;
        if (store_wal_pack(buf, len, &packed, &plen, &e) == 0) {
            free(buf);
            buf = packed;
            len = plen;
            packing = BQ_PACK_WAL;
        }
    }
    size_t off = 0;
    do {
        size_t piece = len - off > BQ_DATA_PIECE_MAX ? BQ_DATA_PIECE_MAX : len - off;
        bq_msg_t r = {.type = BQ_MSG_DATA_REPLY, .seq = seq};
        bq_msg_data_reply_t *d = &r.u.data_reply;
        d->data = buf + off;
        d->len = piece;
        d->offset = off;
        d->total = len;
        d->partial = partial;
        d->packing = packing;
        d->raw_size = raw;
        off += piece;
        d->last = off == len;
        reply_send(srv, from, &r);
    } while (off < len);
    free(buf);
}

static void *server_main(void *arg)
{
    peer_server_t *srv = arg;
    store_reader_t *rd = NULL;
    bq_errbuf_t e = {{0}};
    if (store_reader_new(srv->store, &rd, &e) != 0) {
        bq_error(COMP, 0, "the data port cannot read the store: %s", e.msg);
        return NULL;
    }
    while (!atomic_load(&srv->stop)) {
        bq_peer_t from;
        bq_msg_t m;
        memset(&from, 0, sizeof from);
        pthread_mutex_lock(&srv->mu);
        size_t pending = srv->pending;
        pthread_mutex_unlock(&srv->mu);
        int rc = proto_recv(srv->sock, &from, &m, pending ? 2 : 200, &e);
        if (pending)
            archive_replies(srv);
        if (rc == BQ_E_TIMEOUT)
            continue;
        if (rc != 0) {
            bq_warn(COMP, 0, "bad request from %s: %s", from.user_id[0] ? from.user_id : "?",
                    e.msg);
            if (from.routing_id_len)
                reply_error(srv, &from, 0, rc, e.msg, NULL, 0);
            continue;
        }
        uploads_expire(srv);
        int wal_op = m.type == BQ_MSG_DATA_REQUEST && (strcmp(m.u.data_req.op, "wal-put") == 0 ||
                                                      strcmp(m.u.data_req.op, "wal-get") == 0);
        int worker = strncmp(from.user_id, "worker:", 7) == 0;
        int oper = strncmp(from.user_id, "operator:", 9) == 0;
        if (!worker && !(oper && wal_op)) {
            reply_error(srv, &from, m.seq, BQ_E_AUTH,
                        oper ? "operators may only put and get WAL files here"
                                : "only workers may read this store", NULL, 0);
        } else if (m.type != BQ_MSG_DATA_REQUEST) {
            reply_error(srv, &from, m.seq, BQ_E_MSGTYPE, "the data port takes DATA_REQUEST only",
                        NULL, 0);
        } else if (strcmp(m.u.data_req.op, "read") == 0) {
            serve_read(srv, &from, m.seq, &m.u.data_req);
        } else if (strcmp(m.u.data_req.op, "keys") == 0) {
            serve_keys(srv, &from, m.seq);
        } else if (strcmp(m.u.data_req.op, "chunks") == 0) {
            serve_chunks(srv, rd, &from, m.seq, &m.u.data_req);
        } else if (strcmp(m.u.data_req.op, "wal-put") == 0) {
            serve_wal_put(srv, &from, m.seq, &m.u.data_req);
        } else if (strcmp(m.u.data_req.op, "wal-get") == 0) {
            serve_wal_get(srv, &from, m.seq, &m.u.data_req);
        } else {
            char msg[64];
            snprintf(msg, sizeof msg, "unknown data request \"%.16s\"", m.u.data_req.op);
            reply_error(srv, &from, m.seq, BQ_E_PROTO, msg, NULL, 0);
        }
        proto_msg_clear(&m);
    }
    for (int i = 0; i < PEER_UPLOADS; i++)
        upload_drop(srv, &srv->uploads[i]);
    store_reader_destroy(&rd);
    return NULL;
}

int peer_server_start(proto_ctx_t *ctx, store_t *store, const char *endpoint,
                      const bq_keypair_t *keys, peer_server_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    peer_server_t *srv = calloc(1, sizeof *srv);
    if (!srv || !(srv->buf = malloc(BQ_DATA_PIECE_MAX))) {
        free(srv);
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting the data port");
    }
    srv->ctx = ctx;
    srv->store = store;
    const char *dmg = getenv("BARQUE_TEST_DAMAGE_CHUNK");
    if (dmg && *dmg)
        srv->damage_at = strtoull(dmg, NULL, 10);
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    int rc = proto_zap_start(ctx, &srv->zap, e);
    if (rc == 0)
        rc = proto_zap_probe(ctx, 2000, e);
    if (rc == 0)
        rc = proto_server_new(ctx, endpoint, keys, &srv->sock, e);
    if (rc == 0) {
        int err = pthread_create(&srv->thread, NULL, server_main, srv);
        if (err != 0)
            rc = bq_fail(e, BQ_E_IO, "could not start the data port thread: %s", strerror(err));
        else
            srv->started = 1;
    }
    for (int i = 0; rc == 0 && i < PEER_ARCHIVERS; i++) {
        int err = pthread_create(&srv->archivers[i], NULL, archiver_main, srv);
        if (err != 0)
            rc = bq_fail(e, BQ_E_IO, "could not start a WAL archiver thread: %s", strerror(err));
        else
            srv->narchivers++;
    }
    if (rc != 0) {
        peer_server_stop(&srv);
        return rc;
    }
    *out = srv;
    return 0;
}

int peer_server_allow(peer_server_t *srv, const bq_msg_peer_keys_t *pk)
{
    size_t n = pk->nkeys + pk->noperators;
    const char **keys = calloc(n ? n : 1, sizeof *keys);
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    char (*idbuf)[BQ_USER_ID_MAX] = calloc(n ? n : 1, sizeof *idbuf);
    int rc = BQ_E_NOMEM;
    if (keys && ids && idbuf) {
        for (size_t i = 0; i < n; i++) {
            int op = i >= pk->nkeys;
            const bq_peer_key_t *k = op ? &pk->operators[i - pk->nkeys] : &pk->keys[i];
            keys[i] = k->public_key;
            snprintf(idbuf[i], BQ_USER_ID_MAX, "%s:%s", op ? "operator" : "worker", k->name);
            ids[i] = idbuf[i];
        }
        rc = proto_zap_set(srv->zap, keys, ids, n);
    }
    free(keys);
    free(ids);
    free(idbuf);
    return rc;
}

void peer_server_stop(peer_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_server_t *srv = *self_p;
    atomic_store(&srv->stop, 1);
    pthread_mutex_lock(&srv->mu);
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < srv->narchivers; i++)
        pthread_join(srv->archivers[i], NULL);
    if (srv->started)
        pthread_join(srv->thread, NULL);
    for (archive_job_t *j = srv->done, *n; j; j = n) {
        n = j->next;
        free(j->buf);
        free(j);
    }
    for (archive_job_t *j = srv->todo, *n; j; j = n) {
        n = j->next;
        free(j->buf);
        free(j);
    }
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    proto_sock_destroy(&srv->sock);
    proto_zap_stop(&srv->zap);
    free(srv->buf);
    free(srv);
    *self_p = NULL;
}

/* ---- the client --------------------------------------------------------------------------- */

struct peer_client {
    char name[BQ_NAME_MAX];
    char endpoint[BQ_ENDPOINT_MAX];
    proto_sock_t *sock;
    uint64_t seq;
    uint32_t per_req;        /* ids per chunks request */
    uint32_t window;         /* chunk requests in flight, at most */
    /* queued ids: [got, sent) asked for, [sent, nwant) not yet */
    uint8_t (*want)[BQ_CHUNK_ID_BYTES];
    size_t nwant, cap, sent, got;
    size_t inflight;         /* requests whose last reply has not come */
    uint64_t first_seq;      /* replies to older requests are stale */
    int broken;              /* a pipeline failed: the client cannot be trusted to align */
    bq_msg_t cur;            /* the reply whose data was handed out */
    uint8_t *buf;            /* a body that came in pieces */
    size_t buf_cap;
    uint64_t bytes;
};

int peer_client_new(proto_ctx_t *ctx, const char *name, const char *endpoint,
                    const char *public_key, const bq_keypair_t *keys, peer_client_t **out,
                    bq_errbuf_t *e)
{
    *out = NULL;
    peer_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    c->per_req = 32;
    c->window = PEER_WINDOW;
    int rc = proto_client_connect(ctx, endpoint, public_key, keys, PEER_CONNECT_MS, &c->sock, e);
    if (rc == BQ_E_AUTH) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        rc = bq_fail(e, BQ_E_AUTH, "worker %s: %s", name, why);
    }
    else if (rc == BQ_E_TIMEOUT)
        rc = bq_fail(e, BQ_E_TIMEOUT, "could not reach the data port of worker %s at %s within "
                     "%d s", name, endpoint, PEER_CONNECT_MS / 1000);
    if (rc != 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void peer_client_destroy(peer_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_client_t *c = *self_p;
    proto_msg_clear(&c->cur);
    proto_sock_destroy(&c->sock);
    free(c->want);
    free(c->buf);
    free(c);
    *self_p = NULL;
}

static _Atomic int64_t g_peer_timeout_ms = PEER_TIMEOUT_MS;

void peer_timeout_set(int64_t ms)
{
    atomic_store(&g_peer_timeout_ms, ms >= 1000 ? ms : PEER_TIMEOUT_MS);
}

void peer_client_window(peer_client_t *c, uint32_t requests)
{
    c->window = requests < 1 ? 1 : requests > 64 ? 64 : requests;
}

uint64_t peer_client_bytes(const peer_client_t *c)
{
    return c ? c->bytes : 0;
}

/* The next reply to a request from first_seq on, into c->cur. */
static int recv_reply(peer_client_t *c, bq_errbuf_t *e)
{
    proto_msg_clear(&c->cur);
    const int64_t timeout = atomic_load(&g_peer_timeout_ms);
    int64_t deadline = bq_mono_ms() + timeout;
    for (int i = 0; i < 1000000; i++) {
        int64_t left = deadline - bq_mono_ms();
        if (left <= 0)
            break;
        bq_errbuf_t why;
        int rc = proto_recv(c->sock, NULL, &c->cur, (int)left, &why);
        if (rc == BQ_E_TIMEOUT)
            break;
        if (rc != 0) {
            c->broken = 1;
            return bq_fail(e, rc, "worker %s sent a bad reply: %s", c->name, why.msg);
        }
        if (c->cur.type == BQ_MSG_ERROR) {
            c->broken = 1;
            return bq_fail(e, c->cur.u.error.code < 0 ? c->cur.u.error.code : BQ_E_PROTO,
                           "worker %s: %s", c->name, c->cur.u.error.message);
        }
        if (c->cur.type == BQ_MSG_DATA_REPLY && c->cur.seq >= c->first_seq)
            return 0;
        proto_msg_clear(&c->cur); /* stale */
    }
    c->broken = 1;
    bq_errbuf_t hs;
    if (proto_client_handshake_state(c->sock, &hs) == BQ_E_AUTH)
        return bq_fail(e, BQ_E_AUTH, "worker %s (%s) refused this worker: %s", c->name,
                       c->endpoint, hs.msg);
    return bq_fail(e, BQ_E_TIMEOUT, "worker %s (%s) did not answer within %d s", c->name,
                   c->endpoint, (int)(timeout / 1000));
}

static int request_send(peer_client_t *c, bq_msg_t *m, bq_errbuf_t *e)
{
    m->type = BQ_MSG_DATA_REQUEST;
    m->seq = ++c->seq;
    bq_errbuf_t why;
    int rc = proto_send(c->sock, NULL, m, &why);
    if (rc != 0) {
        c->broken = 1;
        return bq_fail(e, rc, "could not ask worker %s (%s): %s", c->name, c->endpoint, why.msg);
    }
    return 0;
}

/* One request, one reply (read, keys); none may be in flight. */
static int call(peer_client_t *c, const char *op, const char *name, uint64_t offset,
                bq_errbuf_t *e)
{
    if (c->broken || c->got != c->nwant)
        return bq_fail(e, BQ_E_STATE, "the client of worker %s is busy or failed", c->name);
    bq_msg_t m = {0};
    snprintf(m.u.data_req.op, sizeof m.u.data_req.op, "%s", op);
    snprintf(m.u.data_req.name, sizeof m.u.data_req.name, "%s", name ? name : "");
    m.u.data_req.offset = offset;
    int rc = request_send(c, &m, e);
    c->first_seq = c->seq;
    if (rc == 0)
        rc = recv_reply(c, e);
    if (rc == 0 && c->cur.u.data_reply.code != 0)
        rc = bq_fail(e, c->cur.u.data_reply.code, "worker %s: %s", c->name,
                     c->cur.u.data_reply.error);
    return rc;
}

int peer_fetch_file(peer_client_t *c, const char *name, const char *view_dir, size_t max,
                    uint8_t **buf, size_t *len, bq_errbuf_t *e)
{
    if (buf)
        *buf = NULL;
    if (len)
        *len = 0;
    uint8_t *mem = NULL;
    uint64_t off = 0, total = 0;
    int rc = 0;
    for (int i = 0; rc == 0 && i < 1 << 24; i++) {
        if ((rc = call(c, "read", name, off, e)) != 0)
            break;
        const bq_msg_data_reply_t *d = &c->cur.u.data_reply;
        if (i == 0) {
            total = d->total;
            if (!view_dir && total > max) {
                rc = bq_fail(e, BQ_E_TOOBIG, "worker %s: %s is %" PRIu64 " bytes, over the %zu "
                             "expected", c->name, name, total, max);
                break;
            }
            if (!view_dir && !(mem = malloc(total ? total : 1))) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory reading %s", name);
                break;
            }
        }
        if (d->total != total || d->offset != off || (d->len == 0 && off < total)) {
            rc = bq_fail(e, BQ_E_PROTO, "worker %s: %s changed while it was read", c->name, name);
            break;
        }
        if (view_dir)
            rc = store_view_put(view_dir, name, off, d->data, d->len, e);
        else if (d->len)
            memcpy(mem + off, d->data, d->len);
        off += d->len;
        if (rc == 0 && off == total && view_dir && total == 0)
            rc = store_view_put(view_dir, name, 0, "", 0, e);
        if (off == total)
            break;
    }
    proto_msg_clear(&c->cur);
    if (rc != 0 || view_dir) {
        free(mem);
        return rc;
    }
    *buf = mem;
    *len = (size_t)total;
    return 0;
}

int peer_key_ids(peer_client_t *c, uint32_t **ids, size_t *n, bq_errbuf_t *e)
{
    *ids = NULL;
    *n = 0;
    int rc = call(c, "keys", NULL, 0, e);
    if (rc == 0) {
        *ids = c->cur.u.data_reply.key_ids;
        *n = c->cur.u.data_reply.nkey_ids;
        c->cur.u.data_reply.key_ids = NULL; /* now the caller's */
        c->cur.u.data_reply.nkey_ids = 0;
    }
    proto_msg_clear(&c->cur);
    return rc;
}

int peer_chunks_want(peer_client_t *c, const uint8_t *ids, size_t n, bq_errbuf_t *e)
{
    if (n == 0)
        return 0;
    if (c->got == c->nwant) /* all taken: start over, so the queue stays bounded */
        c->nwant = c->sent = c->got = 0;
    if (c->nwant + n > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->nwant + n)
            cap *= 2;
        void *p = realloc(c->want, cap * BQ_CHUNK_ID_BYTES);
        if (!p)
            return bq_fail(e, BQ_E_NOMEM, "out of memory queueing chunks");
        c->want = p;
        c->cap = cap;
    }
    memcpy(c->want[c->nwant], ids, n * BQ_CHUNK_ID_BYTES);
    c->nwant += n;
    return 0;
}

/* Ask for queued ids until c->window requests are in flight. */
static int top_up(peer_client_t *c, bq_errbuf_t *e)
{
    while (c->inflight < c->window && c->sent < c->nwant) {
        size_t k = c->nwant - c->sent < c->per_req ? c->nwant - c->sent : c->per_req;
        bq_msg_t m = {0};
        snprintf(m.u.data_req.op, sizeof m.u.data_req.op, "chunks");
        m.u.data_req.ids = &c->want[c->sent];
        m.u.data_req.nids = k;
        int rc = request_send(c, &m, e);
        if (rc != 0)
            return rc;
        if (c->inflight == 0 && c->sent == c->got)
            c->first_seq = c->seq;
        c->sent += k;
        c->inflight++;
    }
    return 0;
}

int peer_chunk_next(peer_client_t *c, const uint8_t id[BQ_CHUNK_ID_BYTES],
                    const uint8_t **body, size_t *len, bq_errbuf_t *e)
{
    if (c->broken)
        return bq_fail(e, BQ_E_IO, "the transfer from worker %s failed earlier", c->name);
    if (c->got == c->nwant || memcmp(c->want[c->got], id, BQ_CHUNK_ID_BYTES) != 0) {
        if (c->got != c->nwant) { /* out of order: a caller bug, never a peer's */
            c->broken = 1;
            return bq_fail(e, BQ_E_STATE, "chunk asked for out of the queued order");
        }
        int rc = peer_chunks_want(c, id, 1, e);
        if (rc != 0)
            return rc;
    }
    size_t have = 0;
    uint64_t total = 0;
    for (int i = 0; i < 1 << 20; i++) {
        int rc = top_up(c, e);
        if (rc == 0)
            rc = recv_reply(c, e);
        if (rc != 0)
            return rc;
        const bq_msg_data_reply_t *d = &c->cur.u.data_reply;
        if (d->last)
            c->inflight--;
        if (d->code != 0) {
            c->broken = 1;
            return bq_fail(e, d->code, "worker %s: %s", c->name, d->error);
        }
        if (!d->has_id || memcmp(d->id, id, BQ_CHUNK_ID_BYTES) != 0 || d->offset != have ||
            d->total > PEER_BODY_MAX || (d->len == 0 && d->total != 0) ||
            (have && d->total != total)) {
            c->broken = 1;
            return bq_fail(e, BQ_E_PROTO, "worker %s sent a chunk out of order or too large "
                           "(%" PRIu64 " bytes)", c->name, d->total);
        }
        c->bytes += d->len;
        total = d->total;
        if (d->offset == 0 && d->len == d->total) { /* whole: hand out the reply's buffer */
            *body = d->data;
            *len = d->len;
            c->got++;
            return 0;
        }
        if (d->offset == 0 && d->total > c->buf_cap) {
            uint8_t *p = realloc(c->buf, d->total);
            if (!p)
                return bq_fail(e, BQ_E_NOMEM, "out of memory receiving a chunk");
            c->buf = p;
            c->buf_cap = d->total;
        }
        memcpy(c->buf + have, d->data, d->len);
        have += d->len;
        if (have == d->total) {
            *body = c->buf;
            *len = have;
            c->got++;
            return 0;
        }
    }
    c->broken = 1;
    return bq_fail(e, BQ_E_PROTO, "worker %s sent a chunk in too many pieces", c->name);
}

int peer_wal_get(peer_client_t *c, const char *cluster, const char *name, uint8_t **buf,
                 size_t *len, int *partial, bq_errbuf_t *e)
{
    *buf = NULL;
    *len = 0;
    *partial = 0;
    if (c->broken || c->got != c->nwant)
        return bq_fail(e, BQ_E_STATE, "the client of worker %s is busy or failed", c->name);
    bq_msg_t m = {0};
    snprintf(m.u.data_req.op, sizeof m.u.data_req.op, "wal-get");
    snprintf(m.u.data_req.cluster, sizeof m.u.data_req.cluster, "%s", cluster);
    snprintf(m.u.data_req.name, sizeof m.u.data_req.name, "%s", name);
    m.u.data_req.packing = BQ_PACK_WAL;
    int rc = request_send(c, &m, e);
    c->first_seq = c->seq;
    uint8_t *mem = NULL;
    uint64_t off = 0, total = 0, raw_size = 0;
    uint32_t packing = BQ_PACK_NONE;
    for (int i = 0; rc == 0 && i < 1 << 20; i++) {
        if ((rc = recv_reply(c, e)) != 0)
            break;
        const bq_msg_data_reply_t *d = &c->cur.u.data_reply;
        if (d->code != 0) {
            rc = bq_fail(e, d->code, "worker %s: %s", c->name, d->error);
            break;
        }
        if (i == 0) {
            total = d->total;
            if (total > STORE_WAL_SEG_MAX) {
                rc = bq_fail(e, BQ_E_PROTO, "worker %s: WAL file %s of %" PRIu64 " bytes",
                             c->name, name, total);
                break;
            }
            if (!(mem = malloc(total ? (size_t)total : 1))) {
                rc = bq_fail(e, BQ_E_NOMEM, "out of memory receiving WAL file %s", name);
                break;
            }
            *partial = d->partial;
            packing = d->packing;
            raw_size = d->raw_size;
            if (packing == BQ_PACK_WAL && (raw_size == 0 || raw_size > STORE_WAL_SEG_MAX)) {
                rc = bq_fail(e, BQ_E_PROTO, "worker %s: packed WAL file %s of %" PRIu64 " bytes",
                             c->name, name, raw_size);
                break;
            }
        }
        if (d->total != total || d->offset != off || d->len > total - off ||
            (d->len == 0 && off < total)) {
            rc = bq_fail(e, BQ_E_PROTO, "worker %s sent WAL file %s out of order", c->name, name);
            break;
        }
        if (d->len)
            memcpy(mem + off, d->data, d->len);
        off += d->len;
        c->bytes += d->len;
        if (d->last) {
            if (off != total)
                rc = bq_fail(e, BQ_E_PROTO, "worker %s sent WAL file %s cut short", c->name,
                             name);
            break;
        }
    }
    proto_msg_clear(&c->cur);
    if (rc == 0 && packing == BQ_PACK_WAL) { /* hostile frames are bounded by the unpacker */
        size_t np = store_wal_pieces(raw_size);
        uint8_t *raw = malloc((size_t)raw_size);
        store_wal_piece_t *pieces = calloc(np ? np : 1, sizeof *pieces);
        if (!raw || !pieces)
            rc = bq_fail(e, BQ_E_NOMEM, "out of memory unpacking WAL file %s", name);
        else {
            bq_errbuf_t why;
            if ((rc = store_wal_unpack(mem, (size_t)total, raw_size, raw, pieces, np, &why)) != 0)
                rc = bq_fail(e, BQ_E_PROTO, "worker %s: WAL file %s: %s", c->name, name, why.msg);
        }
        free(pieces);
        free(mem);
        mem = raw;
        total = raw_size;
    }
    /* What arrives is checked as a wal-put's content is: name, headers, history. */
    if (rc == 0 && !*partial)
        rc = wal_put_check(name, mem, (size_t)total, 0, e);
    if (rc != 0) {
        if (rc != BQ_E_NOTFOUND)
            c->broken = c->broken || rc == BQ_E_TIMEOUT;
        free(mem);
        return rc;
    }
    *buf = mem;
    *len = (size_t)total;
    return 0;
}

int peer_view_open(const peer_view_args_t *a, const char *backup_id, const char *view_dir,
                   store_t **view, uint64_t *bytes, bq_errbuf_t *e)
{
    *view = NULL;
    const char *me = a->me ? a->me : "?";
    if (!a->key_file || !a->key_file[0])
        return bq_fail(e, BQ_E_CONFIG, "worker %s has no store_key_file: it cannot open the "
                       "chunks of worker %s's store", me, a->name);
    if (!a->zctx || !a->keys)
        return bq_fail(e, BQ_E_STATE, "worker %s cannot reach its peers", me);
    int rc = store_view_remove(view_dir, e); /* an earlier run of this attempt */
    peer_client_t *pc = NULL;
    if (rc == 0)
        rc = peer_client_new(a->zctx, a->name, a->endpoint, a->public_key, a->keys, &pc, e);
    uint8_t *conf = NULL;
    size_t conf_len = 0;
    if (rc == 0)
        rc = peer_fetch_file(pc, "store.conf", NULL, 4096, &conf, &conf_len, e);
    if (rc == 0)
        rc = store_view_create(view_dir, conf, conf_len, e);
    free(conf);
    uint32_t *ids = NULL;
    size_t nids = 0;
    if (rc == 0)
        rc = peer_key_ids(pc, &ids, &nids, e);
    for (size_t i = 0; rc == 0 && i < nids; i++) {
        char name[64];
        snprintf(name, sizeof name, "keys/%08x.datakey", (unsigned)ids[i]);
        rc = peer_fetch_file(pc, name, view_dir, 0, NULL, NULL, e);
    }
    free(ids);
    if (rc == 0 && backup_id) {
        char man[BQ_BACKUP_ID_MAX + 32];
        snprintf(man, sizeof man, "backups/%s.manifest", backup_id);
        bq_errbuf_t why;
        rc = peer_fetch_file(pc, man, view_dir, 0, NULL, NULL, &why);
        if (rc == BQ_E_NOTFOUND)
            rc = bq_fail(e, BQ_E_NOTFOUND, "backup %s is not in the store of worker %s",
                         backup_id, a->name);
        else if (rc != 0)
            rc = bq_fail(e, rc, "%s", why.msg);
    }
    if (bytes)
        *bytes += peer_client_bytes(pc);
    peer_client_destroy(&pc);
    store_master_t master;
    if (rc == 0)
        rc = store_master_key_load(a->key_file, &master, e);
    if (rc == 0) {
        bq_errbuf_t why;
        rc = store_open(view_dir, &master, view, &why);
        store_master_clear(&master);
        if (rc == BQ_E_KEY)
            rc = bq_fail(e, BQ_E_KEY, "the store key of worker %s (%s) does not open the store of "
                         "worker %s\nhint: workers that restore or copy each other's backups "
                         "need the same store master key (store_key_file)", me, a->key_file,
                         a->name);
        else if (rc != 0)
            rc = bq_fail(e, rc, "could not open the view of worker %s's store: %s", a->name,
                         why.msg);
    }
    return rc;
}

int peer_view_dir(store_t *store, const char *kind, const bq_job_t *job, char *out, size_t cap,
                  bq_errbuf_t *e)
{
    char views[PATH_MAX];
    snprintf(views, sizeof views, "%s/views", store_dir(store));
    if (mkdir(views, 0700) != 0 && errno != EEXIST)
        return bq_fail(e, BQ_E_IO, "could not create %s: %s", views, strerror(errno));
    if (snprintf(out, cap, "%s/%s-%" PRIu64 "-%u", views, kind, job->id, job->attempt) >=
        (int)cap)
        return bq_fail(e, BQ_E_INVAL, "path too long: %s", views);
    return 0;
}
