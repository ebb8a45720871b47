/* The store's keys (docs/store.md, "Keys"): the master key file, wrapping of 32-byte keys
 * under the master key, and the data key files keys/K.datakey.
 *
 * Wrapping is XChaCha20-Poly1305 with a random nonce and a label naming what is wrapped as
 * associated data, so a wrapped key cannot be swapped for another:
 *     nonce(24) ‖ ciphertext(32) ‖ tag(16) = 72 bytes.
 * A data key file holds exactly those 72 bytes (label "barque data key K", K as 8 lowercase hex
 * digits, as in its name).
 *
 * Key material is wiped (sodium_memzero) when it is no longer needed; never log it. */
#ifndef BQ_STORE_KEYS_H
#define BQ_STORE_KEYS_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_KEY_BYTES 32
#define STORE_WRAP_NONCE_BYTES 24
#define STORE_WRAP_TAG_BYTES 16
#define STORE_WRAPPED_BYTES (STORE_WRAP_NONCE_BYTES + STORE_KEY_BYTES + STORE_WRAP_TAG_BYTES) /* 72 */
#define STORE_MASTER_KEY_PREFIX "barque-store-key-1:"
#define STORE_LABEL_ID_KEY "barque id key"
#define STORE_LABEL_MAX 64

/* A master key and the file it came from (for messages; never the key itself). */
typedef struct {
    uint8_t key[STORE_KEY_BYTES];
    char path[1024];
} store_master_t;

/* A data key and its id (K of keys/K.datakey; also written into every chunk it seals). */
typedef struct {
    uint32_t id;
    uint8_t key[STORE_KEY_BYTES];
} store_datakey_t;

/* ---- master key file: "barque-store-key-1:" Z85(key) "\n", mode 0600 ---- */

/* Make a new random master key and write it durably to path (0600). Refuses an existing
 * file (BQ_E_EXISTS); BQ_E_IO when it cannot be written. When out is not NULL it receives
 * the key (wipe it with store_master_clear). */
int store_master_key_generate(const char *path, store_master_t *out, bq_errbuf_t *e);
/* Read a master key file into *out. BQ_E_NOTFOUND when absent, BQ_E_PERM when group or others
 * may access it (or it cannot be read), BQ_E_KEY when it does not hold one store key. */
int store_master_key_load(const char *path, store_master_t *out, bq_errbuf_t *e);
/* Wipe a master key held in memory. NULL is accepted. */
void store_master_clear(store_master_t *m);

/* ---- wrapping ---- */

/* Wrap key under m with label as associated data (label: at most STORE_LABEL_MAX bytes).
 * Returns 0, or BQ_E_INVAL for a bad label, BQ_E_KEY when libsodium cannot start. */
int store_key_wrap(const store_master_t *m, const char *label, const uint8_t key[STORE_KEY_BYTES],
                   uint8_t wrapped[STORE_WRAPPED_BYTES], bq_errbuf_t *e);
/* Unwrap: BQ_E_KEY when the tag does not verify (wrong master key, other label, damaged),
 * with the message "wrong store key (the key in M does not open WHAT)"; what names the
 * wrapped object for that message (a file, "the id key in STORE/store.conf"). */
int store_key_unwrap(const store_master_t *m, const char *label,
                     const uint8_t wrapped[STORE_WRAPPED_BYTES], uint8_t key[STORE_KEY_BYTES],
                     const char *what, bq_errbuf_t *e);
/* Rotation of one wrapped blob held elsewhere (e.g. the id key in store.conf): when in opens
 * under old_m, out is it re-wrapped under new_m and *changed = 1; when it already opens under
 * new_m (a rotation that was interrupted and is run again), out = in and *changed = 0.
 * Otherwise BQ_E_KEY naming what and both key files. */
int store_key_rewrap_blob(const store_master_t *old_m, const store_master_t *new_m,
                          const char *label, const uint8_t in[STORE_WRAPPED_BYTES],
                          uint8_t out[STORE_WRAPPED_BYTES], int *changed, const char *what,
                          bq_errbuf_t *e);

/* ---- data key files: STORE/keys/K.datakey ---- */

/* The label a data key is wrapped with: "barque data key 0000002a". */
void store_datakey_label(uint32_t id, char label[STORE_LABEL_MAX]);
/* Make a fresh random data key with a new random id (never 0) and write it durably, wrapped
 * under m, to dir/keys/K.datakey (creating keys/ 0700). *out receives id and key (wipe it with
 * store_datakey_clear). BQ_E_IO when it cannot be written. */
int store_datakey_new(const char *dir, const store_master_t *m, store_datakey_t *out,
                      bq_errbuf_t *e);
/* Store a given data key (e.g. one copied from another store) under m as dir/keys/K.datakey.
 * An existing file that holds the same key is success; one that holds another key is
 * BQ_E_EXISTS, one that m does not open BQ_E_KEY; neither is touched. */
int store_datakey_put(const char *dir, const store_master_t *m, const store_datakey_t *dk,
                      bq_errbuf_t *e);
/* Read and unwrap dir/keys/K.datakey. BQ_E_NOTFOUND when absent, BQ_E_IO when it is not 72
 * bytes, BQ_E_KEY "wrong store key for DIR (the key in M does not open keys/K.datakey)". */
int store_datakey_load(const char *dir, const store_master_t *m, uint32_t id,
                       store_datakey_t *out, bq_errbuf_t *e);
/* The ids of every dir/keys/K.datakey, ascending, in a new array (*ids, caller frees; NULL
 * when *n is 0). Other names (temp files) are ignored. A missing keys/ is an empty list. */
int store_datakey_list(const char *dir, uint32_t **ids, size_t *n, bq_errbuf_t *e);
/* Wipe a data key held in memory. NULL is accepted. */
void store_datakey_clear(store_datakey_t *dk);

/* Re-wrap every data key file of dir from old_m to new_m, one file at a time, each durably
 * (new wrap to a temp file, fsync, rename over the old, fsync keys/): at every moment each
 * file opens under one of the two keys. First every file is checked, so a wrong old key is
 * refused (BQ_E_KEY) before any file changes. Files that already open under new_m (an
 * interrupted rotation run again) are left alone. *count (may be NULL) receives the number of
 * files re-wrapped. The id key in store.conf is the caller's (store_key_rewrap_blob). */
int store_keys_rewrap(const char *dir, const store_master_t *old_m, const store_master_t *new_m,
                      size_t *count, bq_errbuf_t *e);

#endif
