#include "keys.h"

#include "fsutil.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int bq_z85_encode(const uint8_t *data, size_t len, char *out)
{
    if (len % 4)
        return BQ_E_INVAL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = ((uint32_t)data[i] << 24) | ((uint32_t)data[i + 1] << 16) |
                     ((uint32_t)data[i + 2] << 8) | data[i + 3];
        for (int k = 4; k >= 0; k--) {
            out[o + (size_t)k] = z85_chars[v % 85];
            v /= 85;
        }
        o += 5;
    }
    out[o] = '\0';
    return 0;
}

static int z85_value(char c)
{
    const char *p = (c != '\0') ? strchr(z85_chars, c) : NULL;
    return p ? (int)(p - z85_chars) : -1;
}

int bq_z85_decode(const char *text, uint8_t *out, size_t outlen)
{
    size_t n = strlen(text);
    if (n % 5 || n / 5 * 4 != outlen)
        return BQ_E_KEY;
    for (size_t i = 0, o = 0; i < n; i += 5, o += 4) {
        uint64_t v = 0;
        for (int k = 0; k < 5; k++) {
            int d = z85_value(text[i + (size_t)k]);
            if (d < 0)
                return BQ_E_KEY;
            v = v * 85 + (uint64_t)d;
        }
        if (v > UINT32_MAX)
            return BQ_E_KEY;
        out[o] = (uint8_t)(v >> 24);
        out[o + 1] = (uint8_t)(v >> 16);
        out[o + 2] = (uint8_t)(v >> 8);
        out[o + 3] = (uint8_t)v;
    }
    return 0;
}

int bq_keypair_generate(bq_keypair_t *kp)
{
    uint8_t pk[BQ_KEY_BYTES], sk[BQ_KEY_BYTES];
    if (sodium_init() < 0)
        return BQ_E_KEY;
    crypto_box_keypair(pk, sk);
    bq_z85_encode(pk, sizeof pk, kp->public_z85);
    bq_z85_encode(sk, sizeof sk, kp->secret_z85);
    sodium_memzero(sk, sizeof sk);
    return 0;
}

int bq_key_public_of(const char *secret_z85, char public_z85[BQ_Z85_KEY_LEN + 1], bq_errbuf_t *e)
{
    uint8_t pk[BQ_KEY_BYTES], sk[BQ_KEY_BYTES];
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not initialise libsodium");
    if (bq_z85_decode(secret_z85, sk, sizeof sk) != 0)
        return bq_fail(e, BQ_E_KEY, "secret key is not a 40-character Z85 key");
    crypto_scalarmult_base(pk, sk);
    sodium_memzero(sk, sizeof sk);
    bq_z85_encode(pk, sizeof pk, public_z85);
    return 0;
}

int bq_keypair_write(const char *dir, const char *name, const bq_keypair_t *kp, bq_errbuf_t *e)
{
    char path[PATH_MAX], text[BQ_Z85_KEY_LEN + 2];
    int rc = bq_mkdir_p(dir, 0700, e);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    if (access(path, F_OK) == 0)
        return bq_fail(e, BQ_E_EXISTS, "key file %s already exists; not overwriting it", path);
    snprintf(path, sizeof path, "%s/%s.pub", dir, name);
    if (access(path, F_OK) == 0)
        return bq_fail(e, BQ_E_EXISTS, "key file %s already exists; not overwriting it", path);
    snprintf(text, sizeof text, "%s\n", kp->public_z85);
    rc = bq_file_write_durable(path, text, strlen(text), 0644, 1, e);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    snprintf(text, sizeof text, "%s\n", kp->secret_z85);
    rc = bq_file_write_durable(path, text, strlen(text), 0600, 1, e);
    sodium_memzero(text, sizeof text);
    return rc;
}

/* Read a file holding exactly one Z85 key (surrounding whitespace allowed). */
static int key_file_read(const char *path, char out[BQ_Z85_KEY_LEN + 1], const char *what,
                         bq_errbuf_t *e)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = bq_file_read_small(path, 4096, &buf, &len, e);
    if (rc)
        return rc;
    char *s = buf;
    while (*s && isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    uint8_t raw[BQ_KEY_BYTES];
    if (strlen(s) != BQ_Z85_KEY_LEN || bq_z85_decode(s, raw, sizeof raw) != 0) {
        sodium_memzero(buf, len);
        free(buf);
        return bq_fail(e, BQ_E_KEY, "key file %s does not hold a %s key (expected 40 Z85 characters)",
                       path, what);
    }
    memcpy(out, s, BQ_Z85_KEY_LEN + 1);
    sodium_memzero(buf, len);
    sodium_memzero(raw, sizeof raw);
    free(buf);
    return 0;
}

int bq_key_load_secret(const char *path, bq_keypair_t *kp, bq_errbuf_t *e)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return bq_fail(e, BQ_E_NOTFOUND, "could not open secret key file %s: %s", path,
                       strerror(errno));
    if (st.st_mode & 077)
        return bq_fail(e, BQ_E_PERM,
                       "secret key file %s has mode %04o: it must not be accessible by group or "
                       "others (run: chmod 600 %s)",
                       path, (unsigned)(st.st_mode & 07777), path);
    int rc = key_file_read(path, kp->secret_z85, "secret", e);
    if (rc)
        return rc;
    return bq_key_public_of(kp->secret_z85, kp->public_z85, e);
}

int bq_key_load_public(const char *path, char public_z85[BQ_Z85_KEY_LEN + 1], bq_errbuf_t *e)
{
    return key_file_read(path, public_z85, "public", e);
}
