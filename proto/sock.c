/* ZeroMQ sockets carrying Barque messages: CURVE everywhere on TCP, bounded sizes,
 * never-blocking sends. */
#include "proto.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

struct proto_ctx {
    void *z;
};

typedef enum { SOCK_SERVER, SOCK_CLIENT, SOCK_PULL, SOCK_PUSH } sock_kind_t;

struct proto_sock {
    void *z;
    sock_kind_t kind;
    void *monitor;       /* clients: PAIR receiving the socket's handshake events */
    int handshake_state; /* 0 ok, BQ_E_TIMEOUT none yet, BQ_E_AUTH refused */
    char endpoint[BQ_ENDPOINT_MAX];
};

static atomic_uint monitor_seq;

int proto_ctx_new(proto_ctx_t **out, bq_errbuf_t *e)
{
    proto_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return bq_fail(e, BQ_E_NOMEM, "out of memory creating messaging context");
    c->z = zmq_ctx_new();
    if (!c->z) {
        free(c);
        return bq_fail(e, BQ_E_ZMQ, "could not create messaging context: %s", zmq_strerror(errno));
    }
    /* Two I/O threads: CURVE encrypts and decrypts on them, and a data port receiving WAL
     * while it serves chunks (or a wal-push sending several files) needs more than one core. */
    zmq_ctx_set(c->z, ZMQ_IO_THREADS, 2);
    /* Caller controls SIGINT/SIGTERM: zmq must not install handlers or block signals. */
    *out = c;
    return 0;
}

void proto_ctx_destroy(proto_ctx_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zmq_ctx_term((*self_p)->z);
    free(*self_p);
    *self_p = NULL;
}

void *proto_ctx_raw(proto_ctx_t *ctx); /* for zap.c only */
void *proto_ctx_raw(proto_ctx_t *ctx) { return ctx->z; }

static int sock_fail(bq_errbuf_t *e, proto_sock_t *s, const char *what, const char *endpoint)
{
    int err = errno;
    if (s) {
        if (s->z)
            zmq_close(s->z);
        if (s->monitor)
            zmq_close(s->monitor);
        free(s);
    }
    return bq_fail(e, BQ_E_ZMQ, "could not %s %s: %s", what, endpoint, zmq_strerror(err));
}

static int sock_common_opts(void *z)
{
    int linger = 0;
    int64_t maxmsg = BQ_MSG_MAX + 1024; /* envelope overhead; proto_msg_decode checks exactly */
    if (zmq_setsockopt(z, ZMQ_LINGER, &linger, sizeof linger) != 0)
        return -1;
    return zmq_setsockopt(z, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
}

static proto_sock_t *sock_alloc(proto_ctx_t *ctx, int type, sock_kind_t kind, const char *endpoint)
{
    proto_sock_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->kind = kind;
    s->handshake_state = BQ_E_TIMEOUT;
    snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    s->z = zmq_socket(ctx->z, type);
    if (!s->z) {
        free(s);
        return NULL;
    }
    return s;
}

#define PROTO_BIND_WAIT_MS 10000 /* a listen address in use: tried again this long */

int proto_server_new(proto_ctx_t *ctx, const char *endpoint, const bq_keypair_t *keys,
                     proto_sock_t **out, bq_errbuf_t *e)
{
    proto_sock_t *s = sock_alloc(ctx, ZMQ_ROUTER, SOCK_SERVER, endpoint);
    if (!s)
        return sock_fail(e, NULL, "create server socket for", endpoint);
    int one = 1;
    int hwm = 100000;
    int backlog = 4096; /* a fleet reconnects at once after a restart (kernel caps at somaxconn) */
    if (sock_common_opts(s->z) != 0 ||
        zmq_setsockopt(s->z, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(s->z, ZMQ_CURVE_SECRETKEY, keys->secret_z85, BQ_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(s->z, ZMQ_ZAP_DOMAIN, "barque", 6) != 0 ||
        zmq_setsockopt(s->z, ZMQ_ROUTER_MANDATORY, &one, sizeof one) != 0 ||
        zmq_setsockopt(s->z, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(s->z, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(s->z, ZMQ_BACKLOG, &backlog, sizeof backlog) != 0)
        return sock_fail(e, s, "configure CURVE server socket for", endpoint);
    /* A daemon restarted at once may find its port still held by its predecessor, which is
     * still exiting (the kernel closes a killed process's sockets when its last thread has
     * gone): wait for it, bounded. */
    int64_t until = bq_mono_ms() + PROTO_BIND_WAIT_MS;
    for (int tries = 0; zmq_bind(s->z, endpoint) != 0; tries++) {
        int err = errno;
        if (err != EADDRINUSE || bq_mono_ms() >= until || tries >= PROTO_BIND_WAIT_MS / 100) {
            errno = err;
            return sock_fail(e, s, err == EADDRINUSE ? "listen (tried for 10 s) on" : "listen on",
                             endpoint);
        }
        bq_sleep_ms(100);
    }
    *out = s;
    return 0;
}

int proto_client_new(proto_ctx_t *ctx, const char *endpoint, const char *server_public_z85,
                     const bq_keypair_t *keys, proto_sock_t **out, bq_errbuf_t *e)
{
    proto_sock_t *s = sock_alloc(ctx, ZMQ_DEALER, SOCK_CLIENT, endpoint);
    if (!s)
        return sock_fail(e, NULL, "create client socket for", endpoint);
    int one = 1, ivl = 200, ivl_max = 2000, hwm = 1000;
    if (sock_common_opts(s->z) != 0 ||
        zmq_setsockopt(s->z, ZMQ_CURVE_SERVERKEY, server_public_z85, BQ_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(s->z, ZMQ_CURVE_PUBLICKEY, keys->public_z85, BQ_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(s->z, ZMQ_CURVE_SECRETKEY, keys->secret_z85, BQ_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(s->z, ZMQ_IMMEDIATE, &one, sizeof one) != 0 ||
        zmq_setsockopt(s->z, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) != 0 ||
        zmq_setsockopt(s->z, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) != 0 ||
        zmq_setsockopt(s->z, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0)
        return sock_fail(e, s, "configure CURVE client socket for", endpoint);
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://bq-monitor-%u", atomic_fetch_add(&monitor_seq, 1));
    if (zmq_socket_monitor(s->z, mon,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
        return sock_fail(e, s, "monitor client socket for", endpoint);
    s->monitor = zmq_socket(ctx->z, ZMQ_PAIR);
    if (!s->monitor || sock_common_opts(s->monitor) != 0 || zmq_connect(s->monitor, mon) != 0)
        return sock_fail(e, s, "monitor client socket for", endpoint);
    if (zmq_connect(s->z, endpoint) != 0)
        return sock_fail(e, s, "connect to", endpoint);
    *out = s;
    return 0;
}

int proto_client_handshake_state(proto_sock_t *s, bq_errbuf_t *e)
{
    if (!s->monitor)
        return 0;
    for (;;) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, s->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            break;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (char *)zmq_msg_data(&ev) + 2, 4);
        }
        zmq_msg_close(&ev);
        zmq_msg_init(&addr);
        zmq_msg_recv(&addr, s->monitor, ZMQ_DONTWAIT);
        zmq_msg_close(&addr);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            s->handshake_state = 0;
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            s->handshake_state = BQ_E_AUTH;
        else if (s->handshake_state != 0)
            s->handshake_state = BQ_E_AUTH;
    }
    if (s->handshake_state == BQ_E_AUTH)
        return bq_fail(e, BQ_E_AUTH,
                       "%s refused our CURVE key: is this key's public half listed in the "
                       "coordinator's config, and is coordinator_public_key_file right?",
                       s->endpoint);
    return s->handshake_state;
}

int proto_client_connect(proto_ctx_t *ctx, const char *endpoint, const char *server_public_z85,
                         const bq_keypair_t *keys, int timeout_ms, proto_sock_t **out,
                         bq_errbuf_t *e)
{
    *out = NULL;
    proto_sock_t *s = NULL;
    int rc = proto_client_new(ctx, endpoint, server_public_z85, keys, &s, e);
    if (rc)
        return rc;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bq_errbuf_t hs = {{0}};
    int state = BQ_E_TIMEOUT;
    for (int i = 0; i < 1000000; i++) {
        state = proto_client_handshake_state(s, &hs);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L;
        if (state != BQ_E_TIMEOUT || ms >= timeout_ms)
            break;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (state == BQ_E_AUTH)
        rc = bq_fail(e, BQ_E_AUTH, "%s refused this key: %s", endpoint, hs.msg);
    else if (state != 0)
        rc = bq_fail(e, BQ_E_TIMEOUT, "could not reach %s within %d s", endpoint,
                     (timeout_ms + 999) / 1000);
    if (rc) {
        proto_sock_destroy(&s);
        return rc;
    }
    *out = s;
    return 0;
}

static int inproc_new(proto_ctx_t *ctx, const char *name, int type, proto_sock_t **out,
                      bq_errbuf_t *e)
{
    char ep[BQ_ENDPOINT_MAX];
    snprintf(ep, sizeof ep, "inproc://%s", name);
    proto_sock_t *s = sock_alloc(ctx, type, type == ZMQ_PULL ? SOCK_PULL : SOCK_PUSH, ep);
    if (!s)
        return sock_fail(e, NULL, "create socket for", ep);
    int hwm = 0; /* in-process: never drop a job's result */
    if (sock_common_opts(s->z) != 0 || zmq_setsockopt(s->z, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(s->z, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0)
        return sock_fail(e, s, "configure", ep);
    if ((type == ZMQ_PULL ? zmq_bind(s->z, ep) : zmq_connect(s->z, ep)) != 0)
        return sock_fail(e, s, type == ZMQ_PULL ? "bind" : "connect to", ep);
    *out = s;
    return 0;
}

int proto_inproc_pull_new(proto_ctx_t *ctx, const char *name, proto_sock_t **out, bq_errbuf_t *e)
{
    return inproc_new(ctx, name, ZMQ_PULL, out, e);
}

int proto_inproc_push_new(proto_ctx_t *ctx, const char *name, proto_sock_t **out, bq_errbuf_t *e)
{
    return inproc_new(ctx, name, ZMQ_PUSH, out, e);
}

void proto_sock_destroy(proto_sock_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    proto_sock_t *s = *self_p;
    if (s->monitor) {
        zmq_socket_monitor(s->z, NULL, 0);
        zmq_close(s->monitor);
    }
    zmq_close(s->z);
    free(s);
    *self_p = NULL;
}

int proto_send(proto_sock_t *s, const bq_peer_t *to, const bq_msg_t *m, bq_errbuf_t *e)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = proto_msg_encode(m, &buf, &len, e);
    if (rc)
        return rc;
    int flags = (s->kind == SOCK_PUSH) ? 0 : ZMQ_DONTWAIT;
    if (s->kind == SOCK_SERVER) {
        if (!to || zmq_send(s->z, to->routing_id, to->routing_id_len, flags | ZMQ_SNDMORE) < 0) {
            int err = errno;
            free(buf);
            return bq_fail(e, BQ_E_ZMQ, "could not send to peer on %s: %s", s->endpoint,
                           to ? zmq_strerror(err) : "no peer given");
        }
    }
    if (zmq_send(s->z, buf, len, flags) < 0) {
        int err = errno;
        free(buf);
        return bq_fail(e, BQ_E_ZMQ, "could not send on %s: %s", s->endpoint,
                       err == EAGAIN ? "no connected peer or queue full" : zmq_strerror(err));
    }
    free(buf);
    return 0;
}

int proto_send_bytes(proto_sock_t *s, const void *data, size_t len, bq_errbuf_t *e)
{
    if (zmq_send(s->z, data, len, ZMQ_DONTWAIT) < 0)
        return bq_fail(e, BQ_E_ZMQ, "could not send on %s: %s", s->endpoint, zmq_strerror(errno));
    return 0;
}

/* Drain the remaining frames of a multipart message. */
static void drain_more(void *z)
{
    int more = 1;
    size_t sz = sizeof more;
    for (int i = 0; i < 64 && zmq_getsockopt(z, ZMQ_RCVMORE, &more, &sz) == 0 && more; i++) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        zmq_msg_recv(&f, z, ZMQ_DONTWAIT);
        zmq_msg_close(&f);
    }
}

int proto_recv(proto_sock_t *s, bq_peer_t *from, bq_msg_t *m, int timeout_ms, bq_errbuf_t *e)
{
    memset(m, 0, sizeof *m);
    if (from)
        memset(from, 0, sizeof *from);
    if (timeout_ms != 0) {
        zmq_pollitem_t it = {.socket = s->z, .events = ZMQ_POLLIN};
        int n = zmq_poll(&it, 1, timeout_ms);
        if (n < 0)
            return bq_fail(e, errno == EINTR ? BQ_E_SHUTDOWN : BQ_E_ZMQ, "could not poll %s: %s",
                           s->endpoint, zmq_strerror(errno));
        if (n == 0)
            return bq_fail(e, BQ_E_TIMEOUT, "no message on %s within %d ms", s->endpoint,
                           timeout_ms);
    }
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, s->z, ZMQ_DONTWAIT) < 0) {
        int err = errno;
        zmq_msg_close(&f);
        return bq_fail(e, err == EAGAIN ? BQ_E_TIMEOUT : BQ_E_ZMQ, "could not receive on %s: %s",
                       s->endpoint, zmq_strerror(err));
    }
    if (s->kind == SOCK_SERVER) {
        if (from) {
            size_t n = zmq_msg_size(&f);
            from->routing_id_len = n < BQ_ROUTING_ID_MAX ? n : BQ_ROUTING_ID_MAX;
            memcpy(from->routing_id, zmq_msg_data(&f), from->routing_id_len);
        }
        zmq_msg_close(&f);
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, s->z, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            return bq_fail(e, BQ_E_PROTO, "message on %s has no body frame", s->endpoint);
        }
    }
    if (from) {
        const char *uid = zmq_msg_gets(&f, "User-Id");
        if (uid)
            snprintf(from->user_id, sizeof from->user_id, "%s", uid);
    }
    int more = 0;
    size_t sz = sizeof more;
    zmq_getsockopt(s->z, ZMQ_RCVMORE, &more, &sz);
    int rc;
    if (more) {
        drain_more(s->z);
        rc = bq_fail(e, BQ_E_PROTO, "message on %s has extra frames", s->endpoint);
    } else {
        rc = proto_msg_decode(zmq_msg_data(&f), zmq_msg_size(&f), m, e);
    }
    zmq_msg_close(&f);
    return rc;
}

int proto_poll(proto_sock_t **socks, size_t n, int *ready, int timeout_ms)
{
    zmq_pollitem_t local[16];
    zmq_pollitem_t *items = n <= 16 ? local : calloc(n, sizeof *items);
    if (!items)
        return BQ_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        items[i] = (zmq_pollitem_t){.socket = socks[i]->z, .events = ZMQ_POLLIN};
        ready[i] = 0;
    }
    int rc = zmq_poll(items, (int)n, timeout_ms);
    int err = errno;
    for (size_t i = 0; rc >= 0 && i < n; i++)
        ready[i] = (items[i].revents & ZMQ_POLLIN) != 0;
    if (items != local)
        free(items);
    if (rc < 0)
        return err == EINTR ? BQ_E_SHUTDOWN : BQ_E_ZMQ;
    return rc;
}
