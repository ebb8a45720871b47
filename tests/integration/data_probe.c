/* data_probe ENDPOINT SERVER_PUBLIC_KEY_FILE SECRET_KEY_FILE MODE: a client of a worker's
 * data port, as whoever holds SECRET_KEY_FILE.
 *   MODE read:    asks for store.conf; prints "read N bytes" and exits 0 on an answer,
 *                 prints "no answer: WHY" and exits 2 when refused or unanswered (3 s).
 *   MODE chunks:  asks for a chunk (an id the store lacks): prints "chunks answered: ..." and
 *                 exits 3 on any answer; "no answer: WHY" and 2 when refused or unanswered.
 *   MODE hostile: sends requests the port must refuse (a path outside the store, an unknown
 *                 op, a chunk it lacks, a chunks request with no id, raw bytes, another
 *                 message type) and prints one "ok - ..." line per error reply that names the
 *                 problem; exits 1 if any does not, then checks the port still answers. */
#include "clock.h"
#include "keys.h"
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;

static int ask(proto_sock_t *s, const char *op, const char *name, int nids, bq_msg_t *reply,
               char *why, size_t whylen)
{
    bq_msg_t m = {.type = BQ_MSG_DATA_REQUEST, .seq = 1};
    uint8_t ids[1][BQ_CHUNK_ID_BYTES];
    memset(ids, 0xab, sizeof ids);
    snprintf(m.u.data_req.op, sizeof m.u.data_req.op, "%s", op);
    snprintf(m.u.data_req.name, sizeof m.u.data_req.name, "%s", name);
    m.u.data_req.ids = ids;
    m.u.data_req.nids = (size_t)nids;
    bq_errbuf_t e;
    if (proto_send(s, NULL, &m, &e) != 0) {
        snprintf(why, whylen, "send: %s", e.msg);
        return -1;
    }
    int rc = proto_recv(s, NULL, reply, 3000, &e);
    if (rc != 0) {
        bq_errbuf_t hs;
        if (proto_client_handshake_state(s, &hs) == BQ_E_AUTH)
            snprintf(why, whylen, "refused: %s", hs.msg);
        else
            snprintf(why, whylen, "%s", e.msg);
        return -1;
    }
    return 0;
}

static void expect_error(proto_sock_t *s, const char *what, const char *op, const char *name,
                         int nids, const char *text)
{
    bq_msg_t r;
    char why[512];
    if (ask(s, op, name, nids, &r, why, sizeof why) != 0) {
        printf("not ok - %s: no reply (%s)\n", what, why);
        failures++;
        return;
    }
    const char *msg = r.type == BQ_MSG_DATA_REPLY ? r.u.data_reply.error
                      : r.type == BQ_MSG_ERROR    ? r.u.error.message : "";
    int code = r.type == BQ_MSG_DATA_REPLY ? r.u.data_reply.code : r.type == BQ_MSG_ERROR ? -1 : 0;
    int ok = code != 0 && strstr(msg, text) != NULL;
    printf("%s - %s: %s\n", ok ? "ok" : "not ok", what, msg);
    failures += !ok;
    proto_msg_clear(&r);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: data_probe ENDPOINT SERVER_PUBLIC_KEY_FILE SECRET_KEY_FILE "
                        "read|hostile\n");
        return 64;
    }
    bq_errbuf_t e;
    char server[BQ_Z85_KEY_LEN + 1];
    bq_keypair_t kp;
    if (bq_key_load_public(argv[2], server, &e) != 0 || bq_key_load_secret(argv[3], &kp, &e) != 0) {
        fprintf(stderr, "data_probe: %s\n", e.msg);
        return 64;
    }
    proto_ctx_t *ctx = NULL;
    proto_sock_t *s = NULL;
    if (proto_ctx_new(&ctx, &e) != 0 || proto_client_new(ctx, argv[1], server, &kp, &s, &e) != 0) {
        fprintf(stderr, "data_probe: %s\n", e.msg);
        return 64;
    }
    /* sends never block: wait (3 s at most) for the handshake, or its refusal */
    int64_t deadline = bq_mono_ms() + 3000;
    bq_errbuf_t hs = {{0}};
    int state = BQ_E_TIMEOUT;
    while ((state = proto_client_handshake_state(s, &hs)) == BQ_E_TIMEOUT &&
           bq_mono_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (state != 0) {
        printf("no answer: %s\n", state == BQ_E_AUTH ? hs.msg : "no handshake within 3 s");
        proto_sock_destroy(&s);
        proto_ctx_destroy(&ctx);
        return 2;
    }
    int status = 0;
    bq_msg_t r;
    char why[512] = "";
    if (strcmp(argv[4], "hostile") == 0) {
        expect_error(s, "a path outside the store", "read", "../../etc/passwd", 0,
                     "not a store file a peer may read");
        expect_error(s, "the index", "read", "index/data.mdb", 0,
                     "not a store file a peer may read");
        expect_error(s, "a manifest it lacks", "read", "backups/19990101T000000.manifest", 0,
                     "could not open");
        expect_error(s, "an unknown op", "format", "", 0, "unknown data request");
        expect_error(s, "a chunks request with no id", "chunks", "", 0, "no id");
        expect_error(s, "a chunk it lacks", "chunks", "", 1, "not in the index");
        bq_errbuf_t se;
        proto_send_bytes(s, "\xff\xfe garbage", 10, &se);
        if (proto_recv(s, NULL, &r, 3000, &se) == 0 && r.type == BQ_MSG_DATA_REPLY &&
            r.u.data_reply.code != 0) {
            printf("ok - raw bytes: %s\n", r.u.data_reply.error);
        } else {
            printf("not ok - raw bytes: no error reply\n");
            failures++;
        }
        proto_msg_clear(&r);
        bq_msg_t hb = {.type = BQ_MSG_HEARTBEAT_ACK, .seq = 7};
        proto_send(s, NULL, &hb, &se);
        if (proto_recv(s, NULL, &r, 3000, &se) == 0 && r.type == BQ_MSG_DATA_REPLY &&
            strstr(r.u.data_reply.error, "DATA_REQUEST only")) {
            printf("ok - another message type: %s\n", r.u.data_reply.error);
        } else {
            printf("not ok - another message type: no error reply\n");
            failures++;
        }
        proto_msg_clear(&r);
        status = failures ? 1 : 0;
    }
    if (strcmp(argv[4], "chunks") == 0) {
        if (ask(s, "chunks", "", 1, &r, why, sizeof why) == 0) {
            printf("chunks answered: %s\n", r.type == BQ_MSG_DATA_REPLY && r.u.data_reply.code
                                                 ? r.u.data_reply.error : "a chunk body");
            status = 3;
        } else {
            printf("no answer: %s\n", why);
            status = 2;
        }
        proto_msg_clear(&r);
        proto_sock_destroy(&s);
        proto_ctx_destroy(&ctx);
        return status;
    }
    if (status == 0) {
        if (ask(s, "read", "store.conf", 0, &r, why, sizeof why) == 0 &&
            r.type == BQ_MSG_DATA_REPLY && r.u.data_reply.code == 0) {
            printf("read %zu bytes\n", r.u.data_reply.len);
        } else {
            if (!why[0] && r.type == BQ_MSG_DATA_REPLY)
                snprintf(why, sizeof why, "%s", r.u.data_reply.error);
            printf("no answer: %s\n", why);
            status = 2;
        }
        proto_msg_clear(&r);
    }
    proto_sock_destroy(&s);
    proto_ctx_destroy(&ctx);
    return status;
}
