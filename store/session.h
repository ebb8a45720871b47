/* Writer sessions: how GC runs beside backup writers without removing what they use
 * (docs/store.md, "Concurrency").
 *
 * A backup writer opens a session: STORE/sessions/S.refs (S = 16 random hex digits), which it
 * holds locked (flock, exclusive) for its whole life, so that a session whose lock can be
 * taken belongs to a writer that died. Into it the writer notes, before it relies on them,
 * every chunk id it references (its own new chunks and the chunks it found in the index) and
 * every pack it creates. The note of a chunk found in the index and the lookup itself happen
 * inside one "reference section": STORE/refs.lock held shared. GC holds refs.lock exclusively
 * while it lists the packs, reads the live sessions' notes and the new manifests, and deletes
 * dead index entries; so a chunk a writer found in the index is either in a note GC reads, or
 * looked up after GC deleted what it deletes. A committing writer links its manifest and
 * removes its session inside a reference section too, so GC sees one or the other.
 *
 * Records of S.refs (33 bytes each): type u8 ‖ payload (32): 'C' chunk id; 'P' pack id u64 LE
 * then 24 zero bytes. Written with write(2) and never fsynced: only a GC of the same host reads
 * them, and a crash ends the session anyway.
 *
 * Threads: a session belongs to one writer thread. */
#ifndef BQ_STORE_SESSION_H
#define BQ_STORE_SESSION_H

#include "chunk.h"
#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_SESSION_NAME_LEN 16
#define STORE_SESSION_RECORD 33

typedef struct store_session store_session_t;

/* Open a session in store_dir: sessions/ (made if absent), S.refs.tmp created and locked, then
 * renamed to S.refs (so no session is ever seen unlocked while alive). *out is the caller's:
 * store_session_end. BQ_E_IO, BQ_E_NOMEM. */
int store_session_new(const char *store_dir, store_session_t **out, bq_errbuf_t *e);
/* Remove S.refs and release everything; accepts NULL and *self_p == NULL; nulls *self_p. */
void store_session_end(store_session_t **self_p);
/* S: 16 lowercase hex digits. */
const char *store_session_name(const store_session_t *ss);

/* Enter / leave a reference section (refs.lock shared; waits while a GC holds it). */
int store_session_enter(store_session_t *ss, bq_errbuf_t *e);
void store_session_leave(store_session_t *ss);

/* Note n chunk ids / one pack id. BQ_E_IO when the write fails (the writer must then fail:
 * a reference GC cannot see is not safe). */
int store_session_note_chunks(store_session_t *ss, const uint8_t (*ids)[STORE_CHUNK_ID_BYTES],
                              size_t n, bq_errbuf_t *e);
int store_session_note_pack(store_session_t *ss, uint64_t pack, bq_errbuf_t *e);

/* ---- GC's side ---- */

/* Take refs.lock exclusively, waiting for the reference sections under way; *fd_out is the
 * lock's descriptor (close it to release). BQ_E_IO. */
int store_refs_lock_exclusive(const char *store_dir, int *fd_out, bq_errbuf_t *e);

typedef struct {
    int (*chunk)(void *arg, const uint8_t id[STORE_CHUNK_ID_BYTES]);
    int (*pack)(void *arg, uint64_t pack);
} store_session_fn_t;

/* Read the notes of every live session of store_dir (the caller holds refs.lock
 * exclusively): each chunk id and pack id goes to fn, whose non-zero return stops the scan
 * and is returned. *live and *dead (may be NULL) get the counts. A session whose lock could be
 * taken is dead and skipped (store_sessions_reap removes it). BQ_E_IO, BQ_E_NOMEM. */
int store_sessions_scan(const char *store_dir, const store_session_fn_t *fn, void *arg,
                        uint64_t *live, uint64_t *dead, bq_errbuf_t *e);
/* 1 when session name (16 hex digits) is alive (its S.refs exists and is locked), 0 when not. */
int store_session_alive(const char *store_dir, const char *name);
/* Remove the notes of dead sessions (and their S.refs.tmp leftovers); *reaped (may be NULL)
 * gets how many. BQ_E_IO. */
int store_sessions_reap(const char *store_dir, uint64_t *reaped, bq_errbuf_t *e);

#endif
