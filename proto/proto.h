/* Barque's messages as plain C values, their encoding (protobuf-c, barque.proto) and
 * the ZeroMQ sockets that carry them. Only proto/ includes protobuf-c or libzmq headers.
 *
 * Every decode is bounded: input larger than BQ_MSG_MAX is refused before unpacking,
 * an unknown version is BQ_E_VERSION, an unknown type BQ_E_MSGTYPE, anything malformed
 * BQ_E_PROTO; strings longer than their field are refused, never truncated. */
#ifndef BQ_PROTO_H
#define BQ_PROTO_H

#include "config.h"
#include "err.h"
#include "keys.h"
#include "types.h"

#include <stddef.h>
#include <stdint.h>

#define BQ_PROTO_VERSION 1
#define BQ_MSG_MAX (4u << 20) /* 4 MiB: also the sockets' ZMQ_MAXMSGSIZE */
#define BQ_VERSION_STRING "0.1.0"

typedef enum {
    BQ_MSG_NONE = 0,
    BQ_MSG_REGISTER = 1,
    BQ_MSG_HEARTBEAT = 2,
    BQ_MSG_HEARTBEAT_ACK = 3,
    BQ_MSG_JOB_OFFER = 4,
    BQ_MSG_JOB_ACCEPT = 5,
    BQ_MSG_JOB_PROGRESS = 6,
    BQ_MSG_JOB_RESULT = 7,
    BQ_MSG_RESULT_ACK = 8,
    BQ_MSG_JOB_CANCEL = 9,
    BQ_MSG_CLI_REQUEST = 10,
    BQ_MSG_CLI_REPLY = 11,
    BQ_MSG_ERROR = 12,
    BQ_MSG_PEER_KEYS = 13,
    BQ_MSG_DATA_REQUEST = 14,
    BQ_MSG_DATA_REPLY = 15,
} bq_msg_type_t;

#define BQ_RUNNING_MAX 1024

typedef struct {               /* MSG_REGISTER and MSG_HEARTBEAT */
    bq_worker_t worker;
    size_t nrunning;
    bq_job_ref_t *running;     /* owned by the message */
    uint64_t peers_version;    /* the PeerKeys version the worker applied (0 = none) */
} bq_msg_hello_t;

typedef struct {
    int64_t heartbeat_interval_ms;
    int64_t lease_ms;
    uint64_t peers_version;    /* the current PeerKeys version */
} bq_msg_hb_ack_t;

/* MSG_PEER_KEYS: the workers whose keys a worker's data port admits. */
#define BQ_PEER_KEYS_MAX 100000
typedef struct {
    char name[BQ_NAME_MAX];
    char public_key[BQ_Z85_KEY_LEN + 1];
} bq_peer_key_t;

typedef struct {
    uint64_t version;
    size_t nkeys;
    bq_peer_key_t *keys;       /* owned by the message */
    size_t noperators;
    bq_peer_key_t *operators;  /* owned by the message: admitted for wal-put, wal-get only */
} bq_msg_peer_keys_t;

/* MSG_DATA_REQUEST / MSG_DATA_REPLY: a worker reading a peer's store over its data port. */
#define BQ_CHUNK_ID_BYTES 32
#define BQ_DATA_IDS_MAX 256            /* chunk ids per request */
#define BQ_DATA_PIECE_MAX (1u << 20)   /* bytes of data per reply */
#define BQ_PACK_NONE 0 /* wal-put: the file's bytes as they are */
#define BQ_PACK_WAL 1  /* wal-put: packed by store_wal_pack (compressed pieces) */
#define BQ_DATA_KEYS_MAX 200000        /* key ids in a "keys" reply */
#define BQ_DATA_NAME_MAX 128
#define BQ_INVENTORY_PAGE 10000        /* inventory: items (backups, WAL files) per page */

typedef struct {
    char op[16];                       /* "read", "keys", "chunks", "wal-put", "wal-get" */
    char name[BQ_DATA_NAME_MAX];       /* read: the store file; wal-*: the WAL file */
    uint64_t offset;                   /* read, wal-put: from where */
    size_t nids;                       /* chunks: at most BQ_DATA_IDS_MAX */
    uint8_t (*ids)[BQ_CHUNK_ID_BYTES]; /* owned by the message */
    char cluster[BQ_NAME_MAX];         /* wal-*: whose WAL */
    size_t len;                        /* wal-put: at most BQ_DATA_PIECE_MAX */
    uint8_t *data;                     /* wal-put: the piece (owned by a decoded message) */
    uint64_t total;                    /* wal-put: the file's size */
    int last;                          /* wal-put: the file's last piece */
    uint32_t seg_size;                 /* wal-put: the cluster's wal_segment_size */
    uint32_t packing;                  /* wal-put: BQ_PACK_NONE or BQ_PACK_WAL; wal-get:
                                          BQ_PACK_WAL when a packed reply is welcome */
    uint64_t raw_size;                 /* wal-put, packed: the file's own size */
} bq_msg_data_req_t;

typedef struct {
    int code;                          /* 0 or negative BQ_E_* */
    char error[BQ_TEXT_MAX];
    size_t len;                        /* at most BQ_DATA_PIECE_MAX */
    uint8_t *data;                     /* owned by the message (NULL when len is 0) */
    uint64_t offset, total;
    int has_id;
    uint8_t id[BQ_CHUNK_ID_BYTES];
    uint32_t index;
    int last;
    size_t nkey_ids;
    uint32_t *key_ids;                 /* owned by the message */
    int exists;                        /* wal-put: the store already held this content */
    int partial;                       /* wal-get: a segment still being streamed */
    uint32_t packing;                  /* wal-get: BQ_PACK_WAL when data is packed */
    uint64_t raw_size;                 /* wal-get, packed: the file's own size */
} bq_msg_data_reply_t;

typedef struct {
    uint64_t job_id;
    uint32_t attempt;
    uint64_t done, total;
    char message[BQ_DETAIL_MAX];
    char wal_file[BQ_WAL_FILE_MAX]; /* wal-stream: a file now durable in the store ("" = none;
                                       else bq_wal_name_valid, refused otherwise both ways) */
    uint64_t wal_size;              /* its bytes */
} bq_msg_progress_t;

typedef struct {
    uint64_t job_id;
    uint32_t attempt;
    int ok;
    int retryable;
    char error[BQ_TEXT_MAX];
    int has_check;
    bq_check_result_t check;
    int has_backup;            /* backup jobs: what was taken (issue 4) */
    bq_backup_t backup;
    int has_restore;           /* restore jobs: what was written (issue 4) */
    bq_restore_result_t restore;
    size_t nfiles;             /* list-files jobs: one page (at most BQ_FILES_PAGE_MAX) */
    bq_file_entry_t *files;    /* owned by the result: proto_result_clear */
    uint64_t files_total;      /* list-files jobs: files in the whole backup */
    int has_delete;            /* delete jobs: what was done */
    bq_delete_result_t del;
    char wal_file[BQ_WAL_NAME_MAX]; /* switch-wal jobs: the segment closed */
    int has_prune;                  /* wal-prune jobs */
    bq_prune_result_t prune;
    char hook_note[BQ_DETAIL_MAX];  /* the post hook's outcome when it did not exit 0 */
    size_t ninv_backups;            /* inventory jobs: one page (owned: proto_result_clear) */
    bq_backup_t *inv_backups;
    size_t ninv_wal;
    bq_wal_file_t *inv_wal;
    uint64_t inv_total;             /* items in the store: backups, then WAL files */
    uint64_t inv_orphans;           /* backups the store cannot say the cluster of */
    int has_rtest;                  /* restore-test jobs: what was measured (failed ones too) */
    bq_restore_test_t rtest;
    int has_replicate;              /* replicate, replicate-wal jobs (failed ones too) */
    bq_replicate_result_t rep;
} bq_msg_result_t;

/* Free what a result owns (its files) and zero those fields; the rest is left as it is.
 * Accepts NULL. A result copied with '=' shares its files: clear only one of the copies. */
void proto_result_clear(bq_msg_result_t *r);
/* *dst = *src, and src no longer owns anything (its files and inventory go with dst). */
void proto_result_move(bq_msg_result_t *dst, bq_msg_result_t *src);

typedef struct {
    uint64_t job_id;
    uint32_t attempt;
    int accepted;
    char reason[BQ_DETAIL_MAX];
} bq_msg_result_ack_t;

#define BQ_TABLESPACES_MAX 256                          /* recover --tablespace, at most */
#define BQ_TABLESPACE_MAP_MAX (BQ_NAME_MAX + BQ_DEST_MAX) /* "NAME:PATH" */

typedef struct {
    char verb[32];
    char cluster[BQ_NAME_MAX];
    uint64_t job_id;
    int all;
    char site[BQ_NAME_MAX];
    int64_t sleep_ms;
    uint32_t count; /* jobs to create at once (sleep only); 0 means 1 */
    char backup_id[BQ_BACKUP_ID_MAX]; /* show-backup, recover: an id, "latest", "oldest" */
    char dest[BQ_DEST_MAX];           /* recover: target directory */
    char worker[BQ_NAME_MAX];         /* recover: the worker that restores */
    size_t ntablespaces;              /* recover: "NAME:PATH" relocations */
    char (*tablespaces)[BQ_TABLESPACE_MAP_MAX]; /* owned by the message (proto_msg_clear) */
    int delta;                        /* recover: rewrite only what differs */
    char owner[BQ_NAME_MAX];          /* recover: owner of the restored files */
    char checkpoint[8];               /* backup: "fast" (or "") or "spread" */
    uint64_t offset;                  /* list-files: the first file wanted */
    int force;                        /* switch-wal: CHECKPOINT first */
    char wal_file[BQ_WAL_FILE_MAX];   /* wal-file, wal-source, wal-pushed: the WAL file */
    uint64_t wal_size;                /* wal-pushed: its size */
    bq_recovery_t recovery;           /* recover: point-in-time recovery */
    char keep[16];                    /* keep: full, standalone, release, status */
    char from_site[BQ_NAME_MAX];      /* restore-test, drill, recover: read from a store at this
                                         site; wal-source: only holders there */
    char prefer_site[BQ_NAME_MAX];    /* wal-source: holders at this site first */
} bq_msg_cli_request_t;

typedef struct {
    int code;                  /* 0 or negative BQ_E_* */
    char error[BQ_TEXT_MAX];
    size_t nworkers, nclusters, njobs, nsites, nbackups;
    bq_worker_t *workers;      /* all owned by the message */
    bq_cluster_t *clusters;
    bq_job_t *jobs;
    char (*sites)[BQ_NAME_MAX];
    bq_backup_t *backups;      /* list-backups (oldest first), show-backup */
    uint64_t job_id;
    uint64_t jobs_queued, jobs_running; /* status: over all active jobs */
    size_t nfiles;             /* list-files-page: one page */
    bq_file_entry_t *files;    /* owned by the message */
    uint64_t files_total, files_offset;
    size_t ntimelines;         /* list-wal: the cluster's timelines, ascending */
    bq_wal_timeline_t *timelines; /* owned by the message */
    int found;                 /* wal-source: the WAL index holds the file */
    size_t nschedule;          /* schedule: one row per cluster */
    bq_schedule_row_t *schedule; /* owned by the message */
    int has_fleet;             /* check: the fleet's items */
    bq_check_result_t fleet;
    size_t njob_ids;           /* check: each cluster's check job, in clusters' order */
    uint64_t *job_ids;         /* owned by the message */
    size_t nrtests;            /* restore-tests (oldest first), show-backup (its last test) */
    bq_restore_test_t *rtests; /* owned by the message */
} bq_msg_cli_reply_t;

typedef struct {
    int code;
    char message[BQ_TEXT_MAX];
} bq_msg_error_t;

/* A decoded message. Free what it owns with proto_msg_clear. */
typedef struct {
    bq_msg_type_t type;
    uint64_t seq;
    union {
        bq_msg_hello_t hello;            /* REGISTER, HEARTBEAT */
        bq_msg_hb_ack_t hb_ack;          /* HEARTBEAT_ACK */
        bq_job_t *job;                   /* JOB_OFFER (owned, heap: bq_job_t is large) */
        bq_job_ref_t ref;                /* JOB_ACCEPT, JOB_CANCEL */
        bq_msg_progress_t progress;      /* JOB_PROGRESS */
        bq_msg_result_t *result;         /* JOB_RESULT (owned, heap) */
        bq_msg_result_ack_t result_ack;  /* RESULT_ACK */
        bq_msg_cli_request_t cli_req;    /* CLI_REQUEST */
        bq_msg_cli_reply_t cli_reply;    /* CLI_REPLY */
        bq_msg_error_t error;            /* ERROR */
        bq_msg_peer_keys_t peer_keys;    /* PEER_KEYS */
        bq_msg_data_req_t data_req;      /* DATA_REQUEST */
        bq_msg_data_reply_t data_reply;  /* DATA_REPLY */
    } u;
} bq_msg_t;

void proto_msg_clear(bq_msg_t *m);
/* Encode into a new buffer (*buf, caller frees with free()). */
int proto_msg_encode(const bq_msg_t *m, uint8_t **buf, size_t *len, bq_errbuf_t *e);
/* Decode len bytes. On failure m is cleared and e says why. */
int proto_msg_decode(const uint8_t *buf, size_t len, bq_msg_t *m, bq_errbuf_t *e);

/* Catalog records use the same messages (Job, Worker, Cluster, Backup, WalFile). */
int proto_job_encode(const bq_job_t *j, uint8_t **buf, size_t *len, bq_errbuf_t *e);
int proto_job_decode(const uint8_t *buf, size_t len, bq_job_t *j, bq_errbuf_t *e);
int proto_worker_encode(const bq_worker_t *w, uint8_t **buf, size_t *len, bq_errbuf_t *e);
int proto_worker_decode(const uint8_t *buf, size_t len, bq_worker_t *w, bq_errbuf_t *e);
int proto_cluster_encode(const bq_cluster_t *c, uint8_t **buf, size_t *len, bq_errbuf_t *e);
int proto_cluster_decode(const uint8_t *buf, size_t len, bq_cluster_t *c, bq_errbuf_t *e);
int proto_backup_encode(const bq_backup_t *b, uint8_t **buf, size_t *len, bq_errbuf_t *e);
int proto_backup_decode(const uint8_t *buf, size_t len, bq_backup_t *b, bq_errbuf_t *e);
/* WalFile: name "" or bq_wal_name_valid (refused both ways). */
int proto_wal_file_encode(const bq_wal_file_t *w, uint8_t **buf, size_t *len, bq_errbuf_t *e);
int proto_wal_file_decode(const uint8_t *buf, size_t len, bq_wal_file_t *w, bq_errbuf_t *e);
/* RestoreTest (issue 7): the catalog's restore_tests records. */
int proto_rtest_encode(const bq_restore_test_t *t, uint8_t **buf, size_t *len, bq_errbuf_t *e);
int proto_rtest_decode(const uint8_t *buf, size_t len, bq_restore_test_t *t, bq_errbuf_t *e);

/* ---- sockets ------------------------------------------------------------------------- */

typedef struct proto_ctx proto_ctx_t;
typedef struct proto_sock proto_sock_t;
typedef struct proto_zap proto_zap_t;

#define BQ_ROUTING_ID_MAX 256
#define BQ_USER_ID_MAX 160

/* Who sent a message to a server socket: the routing id (to reply) and the identity
 * the ZAP handler gave the peer's key ("worker:NAME" or "operator:NAME"). */
typedef struct {
    size_t routing_id_len;
    uint8_t routing_id[BQ_ROUTING_ID_MAX];
    char user_id[BQ_USER_ID_MAX];
} bq_peer_t;

int proto_ctx_new(proto_ctx_t **out, bq_errbuf_t *e);
void proto_ctx_destroy(proto_ctx_t **self_p);

/* The ZAP handler (a thread on inproc://zeromq.zap.01): admits a CURVE client only when
 * its public key is in the allow list, and gives it that entry's user id; refusals are
 * logged with the public key. */
int proto_zap_start(proto_ctx_t *ctx, proto_zap_t **out, bq_errbuf_t *e);
/* Replace the allow list (thread-safe; used at start and on SIGHUP). */
int proto_zap_set(proto_zap_t *zap, const char *const *public_keys, const char *const *user_ids,
                  size_t n);
void proto_zap_stop(proto_zap_t **self_p);
/* Ask the ZAP handler about a key nobody holds; 0 only if it answers within timeout_ms
 * and refuses. BQ_E_AUTH when nothing answers (CURVE would then admit anyone). */
int proto_zap_probe(proto_ctx_t *ctx, int timeout_ms, bq_errbuf_t *e);

/* ROUTER, CURVE server, ZAP domain "barque", ZMQ_MAXMSGSIZE, ROUTER_MANDATORY; bound. */
int proto_server_new(proto_ctx_t *ctx, const char *endpoint, const bq_keypair_t *keys,
                     proto_sock_t **out, bq_errbuf_t *e);
/* DEALER, CURVE client, connected (auto-reconnects). */
int proto_client_new(proto_ctx_t *ctx, const char *endpoint, const char *server_public_z85,
                     const bq_keypair_t *keys, proto_sock_t **out, bq_errbuf_t *e);
/* proto_client_new, then wait up to timeout_ms for the CURVE handshake (sends never block, so
 * this is how a caller learns that the server is there and admits its key): BQ_E_AUTH when
 * the server refused the key, BQ_E_TIMEOUT when it did not answer. */
int proto_client_connect(proto_ctx_t *ctx, const char *endpoint, const char *server_public_z85,
                         const bq_keypair_t *keys, int timeout_ms, proto_sock_t **out,
                         bq_errbuf_t *e);
/* inproc PULL (bound) and PUSH (connected) for threads talking to an event loop. */
int proto_inproc_pull_new(proto_ctx_t *ctx, const char *name, proto_sock_t **out, bq_errbuf_t *e);
int proto_inproc_push_new(proto_ctx_t *ctx, const char *name, proto_sock_t **out, bq_errbuf_t *e);
void proto_sock_destroy(proto_sock_t **self_p);
/* On a client socket: BQ_E_AUTH (with the reason in e) when the server refused our CURVE
 * handshake since the socket was made, BQ_E_TIMEOUT when no handshake has succeeded yet,
 * 0 once one has. Reads the socket's monitor without blocking. */
int proto_client_handshake_state(proto_sock_t *s, bq_errbuf_t *e);

/* Send m. On a server socket `to` names the peer; elsewhere pass NULL. Never blocks:
 * a full queue or a gone peer is BQ_E_ZMQ. */
int proto_send(proto_sock_t *s, const bq_peer_t *to, const bq_msg_t *m, bq_errbuf_t *e);
/* Send raw bytes as one message (tests and probes: malformed input on purpose). */
int proto_send_bytes(proto_sock_t *s, const void *data, size_t len, bq_errbuf_t *e);
/* Receive one message, waiting up to timeout_ms (-1 forever, 0 not at all): BQ_E_TIMEOUT
 * when none. A bad message is consumed and returned as its decode error, with `from`
 * filled so the caller can answer it with MSG_ERROR. */
int proto_recv(proto_sock_t *s, bq_peer_t *from, bq_msg_t *m, int timeout_ms, bq_errbuf_t *e);

/* Wait until one of socks is readable or timeout_ms passes (-1 forever). Sets ready[i].
 * Returns the number ready (0 on timeout), BQ_E_ZMQ on error, BQ_E_SHUTDOWN on EINTR. */
int proto_poll(proto_sock_t **socks, size_t n, int *ready, int timeout_ms);

/* Fill an ERROR message. */
void proto_msg_error(bq_msg_t *m, uint64_t seq, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
