/* CURVE key pairs (curve25519, as libzmq's CURVE uses) as Z85 text, and key files.
 * NAME.key holds the secret key (Z85, mode 0600); NAME.pub the public key (Z85).
 * Secrets are never logged. */
#ifndef BQ_KEYS_H
#define BQ_KEYS_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define BQ_KEY_BYTES 32
#define BQ_Z85_KEY_LEN 40 /* characters, without the NUL */

typedef struct {
    char public_z85[BQ_Z85_KEY_LEN + 1];
    char secret_z85[BQ_Z85_KEY_LEN + 1];
} bq_keypair_t;

/* Z85 encode len bytes (len % 4 == 0) into out (len*5/4 + 1 bytes). */
int bq_z85_encode(const uint8_t *data, size_t len, char *out);
/* Z85 decode text (strlen % 5 == 0) into out (strlen*4/5 bytes). BQ_E_KEY on bad input. */
int bq_z85_decode(const char *text, uint8_t *out, size_t outlen);

int bq_keypair_generate(bq_keypair_t *kp);
/* Derive the public key of a secret key (both Z85). */
int bq_key_public_of(const char *secret_z85, char public_z85[BQ_Z85_KEY_LEN + 1], bq_errbuf_t *e);

/* Write DIR/NAME.key (0600) and DIR/NAME.pub (0644) durably; refuses to overwrite (BQ_E_EXISTS). */
int bq_keypair_write(const char *dir, const char *name, const bq_keypair_t *kp, bq_errbuf_t *e);
/* Read a secret key file: refused (BQ_E_PERM) when group or others may read it,
 * BQ_E_KEY when it does not hold one Z85 key. Fills both halves of kp. */
int bq_key_load_secret(const char *path, bq_keypair_t *kp, bq_errbuf_t *e);
/* Read a public key file (one Z85 key). */
int bq_key_load_public(const char *path, char public_z85[BQ_Z85_KEY_LEN + 1], bq_errbuf_t *e);

#endif
