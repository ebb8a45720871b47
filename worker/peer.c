/* The data port (peer.h): a ROUTER serving this worker's store on a thread of its own, and
 * the DEALER client a restore thread reads a peer's store with. */
#include "peer.h"

#include "clock.h"
#include "log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMP "data"
#define PEER_TIMEOUT_MS 30000  /* a peer silent this long is gone */
#define PEER_CONNECT_MS 10000 /* to complete the CURVE handshake */
#define PEER_WINDOW 4          /* chunk requests in flight per client */
#define PEER_BATCH_BYTES (2u << 20) /* chunk bytes asked for per request, about */
#define PEER_BODY_MAX ((16u << 20) + (64u << 10)) /* a sealed chunk of 16 MiB and its header */

/* ---- the server --------------------------------------------------------------------------- */

struct peer_server {
    proto_ctx_t *ctx;
    proto_zap_t *zap;
    proto_sock_t *sock;
    store_t *store;
    pthread_t thread;
    int started;
    atomic_int stop;
    uint8_t *buf;
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
        int rc = proto_recv(srv->sock, &from, &m, 200, &e);
        if (rc == BQ_E_TIMEOUT)
            continue;
        if (rc != 0) {
            bq_warn(COMP, 0, "bad request from %s: %s", from.user_id[0] ? from.user_id : "?",
                    e.msg);
            if (from.routing_id_len)
                reply_error(srv, &from, 0, rc, e.msg, NULL, 0);
            continue;
        }
        if (strncmp(from.user_id, "worker:", 7) != 0) {
            reply_error(srv, &from, m.seq, BQ_E_AUTH, "only workers may read this store", NULL, 0);
        } else if (m.type != BQ_MSG_DATA_REQUEST) {
            reply_error(srv, &from, m.seq, BQ_E_MSGTYPE, "the data port takes DATA_REQUEST only",
                        NULL, 0);
        } else if (strcmp(m.u.data_req.op, "read") == 0) {
            serve_read(srv, &from, m.seq, &m.u.data_req);
        } else if (strcmp(m.u.data_req.op, "keys") == 0) {
            serve_keys(srv, &from, m.seq);
        } else if (strcmp(m.u.data_req.op, "chunks") == 0) {
            serve_chunks(srv, rd, &from, m.seq, &m.u.data_req);
        } else {
            char msg[64];
            snprintf(msg, sizeof msg, "unknown data request \"%.16s\"", m.u.data_req.op);
            reply_error(srv, &from, m.seq, BQ_E_PROTO, msg, NULL, 0);
        }
        proto_msg_clear(&m);
    }
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
    if (rc != 0) {
        peer_server_stop(&srv);
        return rc;
    }
    *out = srv;
    return 0;
}

int peer_server_allow(peer_server_t *srv, const bq_msg_peer_keys_t *pk)
{
    size_t n = pk->nkeys;
    const char **keys = calloc(n ? n : 1, sizeof *keys);
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    char (*idbuf)[BQ_USER_ID_MAX] = calloc(n ? n : 1, sizeof *idbuf);
    int rc = BQ_E_NOMEM;
    if (keys && ids && idbuf) {
        for (size_t i = 0; i < n; i++) {
            keys[i] = pk->keys[i].public_key;
            snprintf(idbuf[i], BQ_USER_ID_MAX, "worker:%s", pk->keys[i].name);
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
    if (srv->started)
        pthread_join(srv->thread, NULL);
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
    int rc = proto_client_new(ctx, endpoint, public_key, keys, &c->sock, e);
    /* Sends never block: wait for the CURVE handshake, which also tells a refusal at once. */
    int64_t deadline = bq_mono_ms() + PEER_CONNECT_MS;
    bq_errbuf_t hs = {{0}};
    int state = BQ_E_TIMEOUT;
    for (int i = 0; rc == 0 && i < 100000; i++) {
        state = proto_client_handshake_state(c->sock, &hs);
        if (state != BQ_E_TIMEOUT || bq_mono_ms() >= deadline)
            break;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc == 0 && state == BQ_E_AUTH)
        rc = bq_fail(e, BQ_E_AUTH, "worker %s (%s) refused this worker's key: %s", name, endpoint,
                     hs.msg);
    else if (rc == 0 && state != 0)
        rc = bq_fail(e, BQ_E_TIMEOUT, "could not reach the data port of worker %s at %s within "
                     "%d s", name, endpoint, PEER_CONNECT_MS / 1000);
    if (rc != 0) {
        proto_sock_destroy(&c->sock);
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

uint64_t peer_client_bytes(const peer_client_t *c)
{
    return c ? c->bytes : 0;
}

/* The next reply to a request from first_seq on, into c->cur. */
static int recv_reply(peer_client_t *c, bq_errbuf_t *e)
{
    proto_msg_clear(&c->cur);
    int64_t deadline = bq_mono_ms() + PEER_TIMEOUT_MS;
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
                   c->endpoint, PEER_TIMEOUT_MS / 1000);
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

/* Ask for queued ids until PEER_WINDOW requests are in flight. */
static int top_up(peer_client_t *c, bq_errbuf_t *e)
{
    while (c->inflight < PEER_WINDOW && c->sent < c->nwant) {
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
