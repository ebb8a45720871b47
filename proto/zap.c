/* The coordinator's ZAP handler (RFC 27): a thread answering libzmq's authentication
 * requests on inproc://zeromq.zap.01. Without it, a CURVE server admits any client that
 * knows the server's public key, so the coordinator probes it before it listens. */
#include "proto.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

void *proto_ctx_raw(proto_ctx_t *ctx);

typedef struct {
    uint8_t key[BQ_KEY_BYTES];
    char user_id[BQ_USER_ID_MAX];
} zap_entry_t;

struct proto_zap {
    void *zctx;
    void *rep;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock;
    zap_entry_t *entries;
    size_t nentries;
};

/* Receive up to max frames of one request into frames[]; returns the count, -1 on error. */
static int zap_recv_frames(void *sock, zmq_msg_t *frames, int max)
{
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_t *f = n < max ? &frames[n] : &tmp;
        zmq_msg_init(f);
        if (zmq_msg_recv(f, sock, 0) < 0) {
            zmq_msg_close(f);
            return -1;
        }
        more = zmq_msg_more(f);
        if (n < max)
            n++;
        else
            zmq_msg_close(f);
    }
    return n;
}

static int frame_is(zmq_msg_t *f, const char *s)
{
    return zmq_msg_size(f) == strlen(s) && memcmp(zmq_msg_data(f), s, strlen(s)) == 0;
}

static void zap_reply(void *sock, zmq_msg_t *request_id, const char *status, const char *text,
                      const char *user_id)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(sock, zmq_msg_data(request_id), zmq_msg_size(request_id), ZMQ_SNDMORE);
    zmq_send(sock, status, strlen(status), ZMQ_SNDMORE);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(sock, user_id, strlen(user_id), ZMQ_SNDMORE);
    zmq_send(sock, "", 0, 0);
}

static void zap_handle(proto_zap_t *z)
{
    zmq_msg_t f[8];
    int n = zap_recv_frames(z->rep, f, 8);
    if (n < 0)
        return;
    /* version, request id, domain, address, identity, mechanism, credentials... */
    if (n < 6 || !frame_is(&f[0], "1.0")) {
        zmq_msg_t empty;
        zmq_msg_init(&empty);
        zap_reply(z->rep, n >= 2 ? &f[1] : &empty, "400", "malformed ZAP request", "");
        zmq_msg_close(&empty);
        goto done;
    }
    char address[64] = "?";
    size_t alen = zmq_msg_size(&f[3]) < sizeof address - 1 ? zmq_msg_size(&f[3]) : sizeof address - 1;
    memcpy(address, zmq_msg_data(&f[3]), alen);
    address[alen] = '\0';
    if (!frame_is(&f[5], "CURVE") || n < 7 || zmq_msg_size(&f[6]) != BQ_KEY_BYTES) {
        char mech[32] = "";
        size_t ml = zmq_msg_size(&f[5]) < sizeof mech - 1 ? zmq_msg_size(&f[5]) : sizeof mech - 1;
        memcpy(mech, zmq_msg_data(&f[5]), ml);
        for (size_t i = 0; i < ml; i++)
            if (mech[i] < 32 || mech[i] > 126)
                mech[i] = '?';
        bq_warn("zap", 0, "refused client at %s: mechanism %s is not CURVE", address, mech);
        zap_reply(z->rep, &f[1], "400", "CURVE required", "");
        goto done;
    }
    char user_id[BQ_USER_ID_MAX] = "";
    pthread_mutex_lock(&z->lock);
    for (size_t i = 0; i < z->nentries; i++) {
        if (sodium_memcmp(z->entries[i].key, zmq_msg_data(&f[6]), BQ_KEY_BYTES) == 0) {
            memcpy(user_id, z->entries[i].user_id, sizeof user_id);
            break;
        }
    }
    pthread_mutex_unlock(&z->lock);
    if (user_id[0]) {
        bq_debug("zap", 0, "admitted %s at %s", user_id, address);
        zap_reply(z->rep, &f[1], "200", "OK", user_id);
    } else {
        char pub[BQ_Z85_KEY_LEN + 1];
        bq_z85_encode(zmq_msg_data(&f[6]), BQ_KEY_BYTES, pub);
        /* The probe's key is random and expected to be refused: keep it out of the log. */
        if (!frame_is(&f[4], "barque-zap-probe"))
            bq_warn("zap", 0,
                    "refused CURVE client at %s: public key %s is not listed in any [worker] or "
                    "[operator] section",
                    address, pub);
        zap_reply(z->rep, &f[1], "400", "key not listed", "");
    }
done:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *zap_main(void *arg)
{
    proto_zap_t *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t it = {.socket = z->rep, .events = ZMQ_POLLIN};
        int rc = zmq_poll(&it, 1, 100);
        if (rc < 0 && errno == ETERM)
            break;
        if (rc > 0)
            zap_handle(z);
    }
    return NULL;
}

int proto_zap_start(proto_ctx_t *ctx, proto_zap_t **out, bq_errbuf_t *e)
{
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not initialise libsodium");
    proto_zap_t *z = calloc(1, sizeof *z);
    if (!z)
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting the ZAP handler");
    z->zctx = proto_ctx_raw(ctx);
    pthread_mutex_init(&z->lock, NULL);
    z->rep = zmq_socket(z->zctx, ZMQ_REP);
    int linger = 0;
    if (!z->rep || zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(z->rep, ZAP_ENDPOINT) != 0) {
        int err = errno;
        if (z->rep)
            zmq_close(z->rep);
        pthread_mutex_destroy(&z->lock);
        free(z);
        return bq_fail(e, BQ_E_ZMQ, "could not bind the ZAP handler on %s: %s", ZAP_ENDPOINT,
                       zmq_strerror(err));
    }
    if (pthread_create(&z->thread, NULL, zap_main, z) != 0) {
        zmq_close(z->rep);
        pthread_mutex_destroy(&z->lock);
        free(z);
        return bq_fail(e, BQ_E_ZMQ, "could not start the ZAP handler thread");
    }
    *out = z;
    return 0;
}

int proto_zap_set(proto_zap_t *z, const char *const *public_keys, const char *const *user_ids,
                  size_t n)
{
    zap_entry_t *entries = calloc(n ? n : 1, sizeof *entries);
    if (!entries)
        return BQ_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (bq_z85_decode(public_keys[i], entries[i].key, BQ_KEY_BYTES) != 0) {
            free(entries);
            return BQ_E_KEY;
        }
        snprintf(entries[i].user_id, sizeof entries[i].user_id, "%s", user_ids[i]);
    }
    pthread_mutex_lock(&z->lock);
    zap_entry_t *old = z->entries;
    z->entries = entries;
    z->nentries = n;
    pthread_mutex_unlock(&z->lock);
    free(old);
    return 0;
}

void proto_zap_stop(proto_zap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    proto_zap_t *z = *self_p;
    atomic_store(&z->stop, 1);
    pthread_join(z->thread, NULL);
    zmq_close(z->rep);
    pthread_mutex_destroy(&z->lock);
    free(z->entries);
    free(z);
    *self_p = NULL;
}

int proto_zap_probe(proto_ctx_t *ctx, int timeout_ms, bq_errbuf_t *e)
{
    void *req = zmq_socket(proto_ctx_raw(ctx), ZMQ_REQ);
    if (!req)
        return bq_fail(e, BQ_E_ZMQ, "could not create the ZAP probe socket: %s", zmq_strerror(errno));
    int linger = 0;
    zmq_setsockopt(req, ZMQ_LINGER, &linger, sizeof linger);
    int rc = BQ_E_AUTH;
    uint8_t key[BQ_KEY_BYTES];
    randombytes_buf(key, sizeof key);
    if (zmq_connect(req, ZAP_ENDPOINT) != 0) {
        rc = bq_fail(e, BQ_E_AUTH, "no ZAP handler on %s (%s): refusing to listen, since CURVE "
                     "without ZAP admits any client", ZAP_ENDPOINT, zmq_strerror(errno));
        goto out;
    }
    const char *frames[] = {"1.0", "probe-1", "barque", "127.0.0.1", "barque-zap-probe", "CURVE"};
    for (size_t i = 0; i < 6; i++)
        zmq_send(req, frames[i], strlen(frames[i]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(req, key, sizeof key, ZMQ_DONTWAIT);
    zmq_pollitem_t it = {.socket = req, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0) {
        rc = bq_fail(e, BQ_E_AUTH,
                     "the ZAP handler did not answer on %s within %d ms: refusing to listen, since "
                     "CURVE without ZAP admits any client", ZAP_ENDPOINT, timeout_ms);
        goto out;
    }
    zmq_msg_t f[6];
    int n = zap_recv_frames(req, f, 6);
    if (n >= 3 && frame_is(&f[2], "400"))
        rc = 0;
    else
        rc = bq_fail(e, BQ_E_AUTH, "the ZAP handler admitted an unlisted key: refusing to listen");
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
out:
    zmq_close(req);
    return rc;
}
