/* The data port (worker to worker): a worker's store served to its peers, and the client
 * with which a worker reads a peer's store. Store files (store.conf, data key files,
 * manifests) and chunk bodies travel exactly as stored: still compressed and encrypted, to be
 * checked where they land (store_reader_open). The port is a CURVE server whose ZAP handler
 * admits only the worker keys the coordinator sent (PeerKeys); until they come, nobody. */
#ifndef BQ_PEER_H
#define BQ_PEER_H

#include "proto.h"
#include "store.h"

/* ---- the server ---- */

typedef struct peer_server peer_server_t;

/* Start the ZAP handler on ctx (probed: BQ_E_AUTH when it does not answer), bind endpoint
 * with keys, and serve store on a thread of its own. *out is the caller's:
 * peer_server_stop (before the store is closed). BQ_E_ZMQ (address in use, bad endpoint). */
int peer_server_start(proto_ctx_t *ctx, store_t *store, const char *endpoint,
                      const bq_keypair_t *keys, peer_server_t **out, bq_errbuf_t *e);
/* Admit exactly the workers of pk (thread-safe). BQ_E_NOMEM. */
int peer_server_allow(peer_server_t *srv, const bq_msg_peer_keys_t *pk);
void peer_server_stop(peer_server_t **self_p);

/* ---- the client (one per thread) ---- */

typedef struct peer_client peer_client_t;

/* Connect to worker `name` at endpoint, whose CURVE public key (Z85) is public_key, as keys.
 * Nothing is sent yet. *out is the caller's: peer_client_destroy. */
int peer_client_new(proto_ctx_t *ctx, const char *name, const char *endpoint,
                    const char *public_key, const bq_keypair_t *keys, peer_client_t **out,
                    bq_errbuf_t *e);
void peer_client_destroy(peer_client_t **self_p);

/* Store file `name` of the peer (see store_export_name_valid) written into store view
 * view_dir (store_view_put), in pieces; or, when view_dir is NULL, into a new buffer of at
 * most max bytes (*buf, the caller frees). BQ_E_NOTFOUND when the peer has no such file,
 * BQ_E_TIMEOUT when the peer does not answer, the peer's errors, BQ_E_IO. */
int peer_fetch_file(peer_client_t *c, const char *name, const char *view_dir, size_t max,
                    uint8_t **buf, size_t *len, bq_errbuf_t *e);
/* The peer store's data key ids: *ids is the caller's (free). */
int peer_key_ids(peer_client_t *c, uint32_t **ids, size_t *n, bq_errbuf_t *e);

/* Chunks, pipelined: peer_chunks_want queues n ids (asked for a few batches ahead);
 * peer_chunk_next hands the sealed body of the next queued id, which must be id (*body is
 * the client's, valid until its next call). A chunk the peer cannot give fails naming it.
 * BQ_E_IO, BQ_E_TIMEOUT, BQ_E_NOMEM. */
int peer_chunks_want(peer_client_t *c, const uint8_t *ids, size_t n, bq_errbuf_t *e);
int peer_chunk_next(peer_client_t *c, const uint8_t id[BQ_CHUNK_ID_BYTES],
                    const uint8_t **body, size_t *len, bq_errbuf_t *e);
/* Chunk requests (of 32 ids) kept in flight: 4 by default (a LAN); 1..64. A long link
 * wants more: a round trip carries at most that many requests' bodies. */
void peer_client_window(peer_client_t *c, uint32_t requests);
/* How long every client of this process waits for an answer before it gives the peer up
 * ([worker] peer_timeout; 30 s until set; below 1 s means the default). */
void peer_timeout_set(int64_t ms);
/* Bytes of sealed bodies received so far. */
uint64_t peer_client_bytes(const peer_client_t *c);

/* WAL file name of cluster from the peer's store (or the segment its wal-stream job is
 * receiving: *partial), plaintext into a new buffer (*buf, the caller frees); a complete file
 * is checked as a wal-put's is (name, page headers, history). BQ_E_NOTFOUND when the peer
 * lacks it, BQ_E_TIMEOUT, BQ_E_PROTO, the check's errors. */
int peer_wal_get(peer_client_t *c, const char *cluster, const char *name, uint8_t **buf,
                 size_t *len, int *partial, bq_errbuf_t *e);

/* Who a view is made by and of: this worker (me, its CURVE keys, its master key file) and
 * the peer (name, data endpoint, public key vouched for by the coordinator). */
typedef struct {
    proto_ctx_t *zctx;
    const bq_keypair_t *keys;
    const char *me;
    const char *key_file;
    const char *name, *endpoint, *public_key;
} peer_view_args_t;
/* Make view_dir (removed first when an earlier run left it) a view of the peer's store: its
 * store.conf, every data key file and, with backup_id, backups/ID.manifest (BQ_E_NOTFOUND
 * naming the backup when the peer lacks it); open it with this worker's master key (BQ_E_KEY
 * with a hint when it does not open the peer's). *view is the caller's: store_close, then
 * store_view_remove. *bytes (may be NULL) grows by the bytes received. */
/* The directory of job's view (STORE/views/KIND-JOB-ATTEMPT) into out; STORE/views made. */
int peer_view_dir(store_t *store, const char *kind, const bq_job_t *job, char *out, size_t cap,
                  bq_errbuf_t *e);
int peer_view_open(const peer_view_args_t *a, const char *backup_id, const char *view_dir,
                   store_t **view, uint64_t *bytes, bq_errbuf_t *e);

#endif
