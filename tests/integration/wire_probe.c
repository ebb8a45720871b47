/* wire_probe CLI_CONFIG: connects to a running coordinator as a listed operator and sends
 * it malformed and unexpected messages; each must be answered with an ERROR naming the
 * problem, an oversized one must be dropped, and the coordinator must go on serving.
 * Prints one line per case; exits 0 when all hold. */
#include "barque.pb-c.h"
#include "clock.h"
#include "config.h"
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what, const char *detail)
{
    printf("%s - %s%s%s\n", ok ? "ok" : "not ok", what, detail ? ": " : "", detail ? detail : "");
    if (!ok)
        failures++;
}

/* Pack an envelope by hand (version and type as given, body as given). */
static uint8_t *envelope(uint32_t version, int type, uint64_t seq, const uint8_t *body,
                         size_t body_len, size_t *len)
{
    Barque__Envelope env = BARQUE__ENVELOPE__INIT;
    env.version = version;
    env.type = (Barque__MsgType)type;
    env.seq = seq;
    env.body.data = (uint8_t *)body;
    env.body.len = body_len;
    *len = barque__envelope__get_packed_size(&env);
    uint8_t *buf = malloc(*len ? *len : 1);
    barque__envelope__pack(&env, buf);
    return buf;
}

/* Wait up to 3 s for the next message; returns its type (or -1), fills err. */
static int reply(proto_sock_t *s, bq_msg_t *m)
{
    bq_errbuf_t e;
    int rc = proto_recv(s, NULL, m, 3000, &e);
    return rc ? -1 : (int)m->type;
}

static void expect_error(proto_sock_t *s, const char *what, int code, const char *text)
{
    bq_msg_t m;
    int t = reply(s, &m);
    char detail[BQ_TEXT_MAX + 64];
    if (t == BQ_MSG_ERROR) {
        snprintf(detail, sizeof detail, "code %d, \"%s\"", m.u.error.code, m.u.error.message);
        check(m.u.error.code == code && strstr(m.u.error.message, text) != NULL, what, detail);
    } else {
        snprintf(detail, sizeof detail, "expected ERROR %d, got message type %d", code, t);
        check(0, what, detail);
    }
    proto_msg_clear(&m);
}

static int status_ok(proto_sock_t *s, uint64_t seq)
{
    bq_msg_t req = {.type = BQ_MSG_CLI_REQUEST, .seq = seq};
    snprintf(req.u.cli_req.verb, sizeof req.u.cli_req.verb, "status");
    bq_errbuf_t e;
    if (proto_send(s, NULL, &req, &e) != 0)
        return 0;
    bq_msg_t m;
    int t = reply(s, &m);
    int ok = t == BQ_MSG_CLI_REPLY && m.seq == seq && m.u.cli_reply.code == 0;
    proto_msg_clear(&m);
    return ok;
}

static proto_sock_t *connect_to(proto_ctx_t *ctx, const bq_cli_config_t *cfg)
{
    proto_sock_t *s = NULL;
    bq_errbuf_t e;
    if (proto_client_new(ctx, cfg->coordinator, cfg->coordinator_public_key, &cfg->keys, &s, &e)) {
        fprintf(stderr, "wire_probe: %s\n", e.msg);
        exit(2);
    }
    /* wait for the handshake so the first send is not refused for lack of a peer */
    for (int i = 0; i < 100 && proto_client_handshake_state(s, &e) == BQ_E_TIMEOUT; i++) {
        bq_msg_t m;
        proto_recv(s, NULL, &m, 50, NULL);
        proto_msg_clear(&m);
    }
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: wire_probe CLI_CONFIG\n");
        return 2;
    }
    bq_cli_config_t cfg;
    bq_errbuf_t e;
    if (bq_cli_config_load(argv[1], &cfg, &e) != 0) {
        fprintf(stderr, "wire_probe: %s\n", e.msg);
        return 2;
    }
    proto_ctx_t *ctx;
    proto_ctx_new(&ctx, &e);
    proto_sock_t *s = connect_to(ctx, &cfg);
    check(status_ok(s, 1), "a well-formed status request is answered", NULL);

    uint8_t body[] = {0x0a, 0x06, 's', 't', 'a', 't', 'u', 's'}; /* CliRequest{verb:"status"} */
    size_t len;
    uint8_t *buf = envelope(99, BQ_MSG_CLI_REQUEST, 2, body, sizeof body, &len);
    proto_send_bytes(s, buf, len, &e);
    free(buf);
    expect_error(s, "protocol version 99 is refused", BQ_E_VERSION, "unsupported protocol version 99");

    buf = envelope(BQ_PROTO_VERSION, 77, 3, body, sizeof body, &len);
    proto_send_bytes(s, buf, len, &e);
    free(buf);
    expect_error(s, "message type 77 is refused", BQ_E_MSGTYPE, "unknown message type 77");

    uint8_t garbage[64];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t)(i * 37 + 11);
    proto_send_bytes(s, garbage, sizeof garbage, &e);
    expect_error(s, "garbage bytes are refused", BQ_E_PROTO, "");

    uint8_t bad_body[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}; /* string length past the end */
    buf = envelope(BQ_PROTO_VERSION, BQ_MSG_CLI_REQUEST, 4, bad_body, sizeof bad_body, &len);
    proto_send_bytes(s, buf, len, &e);
    free(buf);
    expect_error(s, "a truncated body is refused", BQ_E_PROTO, "");

    bq_msg_t offer = {.type = BQ_MSG_RESULT_ACK, .seq = 5};
    proto_send(s, NULL, &offer, &e);
    expect_error(s, "a message the coordinator does not take is refused", BQ_E_MSGTYPE,
                 "does not accept message type 8");

    bq_msg_t hello = {.type = BQ_MSG_REGISTER, .seq = 6};
    snprintf(hello.u.hello.worker.name, sizeof hello.u.hello.worker.name, "east-1");
    snprintf(hello.u.hello.worker.site, sizeof hello.u.hello.worker.site, "east");
    proto_send(s, NULL, &hello, &e);
    expect_error(s, "an operator key cannot register as a worker", BQ_E_AUTH,
                 "only worker keys may register");

    check(status_ok(s, 7), "the same connection is still served", NULL);

    /* over ZMQ_MAXMSGSIZE: libzmq drops the connection before the message is read */
    size_t big = BQ_MSG_MAX + 64 * 1024;
    uint8_t *huge = calloc(1, big);
    proto_send_bytes(s, huge, big, &e);
    free(huge);
    bq_msg_t m;
    check(reply(s, &m) == -1, "an oversized message gets no answer", NULL);
    proto_msg_clear(&m);
    proto_sock_destroy(&s);

    s = connect_to(ctx, &cfg);
    check(status_ok(s, 8), "a new connection is served after the oversized message", NULL);
    proto_sock_destroy(&s);
    proto_ctx_destroy(&ctx);
    printf("%s\n", failures ? "wire_probe: FAILED" : "wire_probe: OK");
    return failures ? 1 : 0;
}
