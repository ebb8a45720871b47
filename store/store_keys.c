#include "store_keys.h"

#include "keys.h" /* common: Z85 */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MASTER_PREFIX_LEN (sizeof STORE_MASTER_KEY_PREFIX - 1)
#define MASTER_FILE_MAX 4096
#define DATAKEY_SUFFIX ".datakey"

static int sodium_ready(bq_errbuf_t *e)
{
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not initialise libsodium");
    return 0;
}

void store_master_clear(store_master_t *m)
{
    if (m)
        sodium_memzero(m, sizeof *m);
}

void store_datakey_clear(store_datakey_t *dk)
{
    if (dk)
        sodium_memzero(dk, sizeof *dk);
}

/* ---- master key file ---- */

int store_master_key_generate(const char *path, store_master_t *out, bq_errbuf_t *e)
{
    int rc = sodium_ready(e);
    if (rc)
        return rc;
    if (access(path, F_OK) == 0)
        return bq_fail(e, BQ_E_EXISTS, "store key file %s already exists; not overwriting it",
                       path);
    store_master_t m;
    memset(&m, 0, sizeof m);
    randombytes_buf(m.key, sizeof m.key);
    snprintf(m.path, sizeof m.path, "%s", path);

    char text[MASTER_PREFIX_LEN + BQ_Z85_KEY_LEN + 2];
    memcpy(text, STORE_MASTER_KEY_PREFIX, MASTER_PREFIX_LEN);
    bq_z85_encode(m.key, sizeof m.key, text + MASTER_PREFIX_LEN);
    text[MASTER_PREFIX_LEN + BQ_Z85_KEY_LEN] = '\n';
    text[MASTER_PREFIX_LEN + BQ_Z85_KEY_LEN + 1] = '\0';
    rc = bq_file_write_durable(path, text, MASTER_PREFIX_LEN + BQ_Z85_KEY_LEN + 1, 0600, 1, e);
    sodium_memzero(text, sizeof text);
    if (rc == 0 && out)
        *out = m;
    store_master_clear(&m);
    return rc;
}

int store_master_key_load(const char *path, store_master_t *out, bq_errbuf_t *e)
{
    int rc = sodium_ready(e);
    if (rc)
        return rc;
    struct stat st;
    if (stat(path, &st) != 0)
        return bq_fail(e, errno == ENOENT ? BQ_E_NOTFOUND : BQ_E_IO,
                       "could not open store key file %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return bq_fail(e, BQ_E_KEY, "store key file %s is not a regular file", path);
    if (st.st_mode & 077)
        return bq_fail(e, BQ_E_PERM,
                       "store key file %s has mode %04o: it must not be accessible by group or "
                       "others (run: chmod 600 %s)",
                       path, (unsigned)(st.st_mode & 07777), path);

    char *buf = NULL;
    size_t len = 0;
    rc = bq_file_read_small(path, MASTER_FILE_MAX, &buf, &len, e);
    if (rc == BQ_E_TOOBIG)
        return bq_fail(e, BQ_E_KEY, "store key file %s does not hold a store key (larger than %d bytes)",
                       path, MASTER_FILE_MAX);
    if (rc)
        return rc;
    /* Exactly the prefix and 40 Z85 characters, then "\n", "\r\n" or nothing; no NUL. */
    int ok = strlen(buf) == len;
    size_t n = len;
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    store_master_t m;
    memset(&m, 0, sizeof m);
    ok = ok && n == MASTER_PREFIX_LEN + BQ_Z85_KEY_LEN &&
         memcmp(buf, STORE_MASTER_KEY_PREFIX, MASTER_PREFIX_LEN) == 0 &&
         bq_z85_decode(buf + MASTER_PREFIX_LEN, m.key, sizeof m.key) == 0;
    sodium_memzero(buf, len);
    free(buf);
    if (!ok) {
        store_master_clear(&m);
        return bq_fail(e, BQ_E_KEY,
                       "store key file %s does not hold a store key (expected \"%s\" and 40 Z85 "
                       "characters on one line)",
                       path, STORE_MASTER_KEY_PREFIX);
    }
    snprintf(m.path, sizeof m.path, "%s", path);
    *out = m;
    store_master_clear(&m);
    return 0;
}

/* ---- wrapping ---- */

static int label_check(const char *label, bq_errbuf_t *e)
{
    if (!label || !*label || strlen(label) > STORE_LABEL_MAX)
        return bq_fail(e, BQ_E_INVAL, "key label must be 1 to %d bytes", STORE_LABEL_MAX);
    return 0;
}

int store_key_wrap(const store_master_t *m, const char *label, const uint8_t key[STORE_KEY_BYTES],
                   uint8_t wrapped[STORE_WRAPPED_BYTES], bq_errbuf_t *e)
{
    int rc = sodium_ready(e);
    if (rc || (rc = label_check(label, e)))
        return rc;
    uint8_t *nonce = wrapped;
    randombytes_buf(nonce, STORE_WRAP_NONCE_BYTES);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        wrapped + STORE_WRAP_NONCE_BYTES, &clen, key, STORE_KEY_BYTES, (const uint8_t *)label,
        strlen(label), NULL, nonce, m->key);
    return 0;
}

/* 0 when wrapped opens under master with label; key receives it. */
static int unwrap_raw(const uint8_t master[STORE_KEY_BYTES], const char *label,
                      const uint8_t wrapped[STORE_WRAPPED_BYTES], uint8_t key[STORE_KEY_BYTES])
{
    unsigned long long klen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            key, &klen, NULL, wrapped + STORE_WRAP_NONCE_BYTES,
            STORE_WRAPPED_BYTES - STORE_WRAP_NONCE_BYTES, (const uint8_t *)label, strlen(label),
            wrapped, master) != 0 ||
        klen != STORE_KEY_BYTES) {
        sodium_memzero(key, STORE_KEY_BYTES);
        return BQ_E_KEY;
    }
    return 0;
}

int store_key_unwrap(const store_master_t *m, const char *label,
                     const uint8_t wrapped[STORE_WRAPPED_BYTES], uint8_t key[STORE_KEY_BYTES],
                     const char *what, bq_errbuf_t *e)
{
    int rc = sodium_ready(e);
    if (rc || (rc = label_check(label, e)))
        return rc;
    if (unwrap_raw(m->key, label, wrapped, key) != 0)
        return bq_fail(e, BQ_E_KEY, "wrong store key (the key in %s does not open %s)", m->path,
                       what ? what : label);
    return 0;
}

int store_key_rewrap_blob(const store_master_t *old_m, const store_master_t *new_m,
                          const char *label, const uint8_t in[STORE_WRAPPED_BYTES],
                          uint8_t out[STORE_WRAPPED_BYTES], int *changed, const char *what,
                          bq_errbuf_t *e)
{
    int rc = sodium_ready(e);
    if (rc || (rc = label_check(label, e)))
        return rc;
    uint8_t key[STORE_KEY_BYTES];
    if (unwrap_raw(old_m->key, label, in, key) == 0) {
        rc = store_key_wrap(new_m, label, key, out, e);
        sodium_memzero(key, sizeof key);
        if (rc == 0 && changed)
            *changed = 1;
        return rc;
    }
    if (unwrap_raw(new_m->key, label, in, key) == 0) {
        sodium_memzero(key, sizeof key);
        if (out != in)
            memcpy(out, in, STORE_WRAPPED_BYTES);
        if (changed)
            *changed = 0;
        return 0;
    }
    return bq_fail(e, BQ_E_KEY, "wrong store key (neither the key in %s nor the key in %s opens %s)",
                   old_m->path, new_m->path, what ? what : label);
}

/* ---- data key files ---- */

void store_datakey_label(uint32_t id, char label[STORE_LABEL_MAX])
{
    snprintf(label, STORE_LABEL_MAX, "barque data key %08x", (unsigned)id);
}

static int keys_dir(const char *dir, char *out, size_t size, bq_errbuf_t *e)
{
    if (!dir || !*dir)
        return bq_fail(e, BQ_E_INVAL, "store directory is not set");
    if (snprintf(out, size, "%s/keys", dir) >= (int)size)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", dir);
    return 0;
}

static int datakey_path(const char *dir, uint32_t id, char *out, size_t size, bq_errbuf_t *e)
{
    if (!dir || !*dir)
        return bq_fail(e, BQ_E_INVAL, "store directory is not set");
    if (snprintf(out, size, "%s/keys/%08x" DATAKEY_SUFFIX, dir, (unsigned)id) >= (int)size)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s", dir);
    return 0;
}

/* Read the 72 bytes of a data key file. */
static int datakey_read(const char *path, uint8_t wrapped[STORE_WRAPPED_BYTES], bq_errbuf_t *e)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = bq_file_read_small(path, STORE_WRAPPED_BYTES, &buf, &len, e);
    if (rc == BQ_E_TOOBIG)
        return bq_fail(e, BQ_E_IO, "data key file %s is damaged: larger than %d bytes", path,
                       STORE_WRAPPED_BYTES);
    if (rc == BQ_E_NOTFOUND)
        return bq_fail(e, BQ_E_NOTFOUND, "data key file %s does not exist", path);
    if (rc)
        return rc;
    if (len != STORE_WRAPPED_BYTES) {
        free(buf);
        return bq_fail(e, BQ_E_IO, "data key file %s is damaged: %zu bytes, expected %d", path,
                       len, STORE_WRAPPED_BYTES);
    }
    memcpy(wrapped, buf, STORE_WRAPPED_BYTES);
    free(buf);
    return 0;
}

static int datakey_write(const char *dir, const store_master_t *m, const store_datakey_t *dk,
                         int exclusive, bq_errbuf_t *e)
{
    char path[PATH_MAX], kdir[PATH_MAX], label[STORE_LABEL_MAX];
    int rc = keys_dir(dir, kdir, sizeof kdir, e);
    if (rc || (rc = datakey_path(dir, dk->id, path, sizeof path, e)))
        return rc;
    if ((rc = bq_mkdir_p(kdir, 0700, e)))
        return rc;
    uint8_t wrapped[STORE_WRAPPED_BYTES];
    store_datakey_label(dk->id, label);
    if ((rc = store_key_wrap(m, label, dk->key, wrapped, e)))
        return rc;
    return bq_file_write_durable(path, wrapped, sizeof wrapped, 0600, exclusive, e);
}

int store_datakey_new(const char *dir, const store_master_t *m, store_datakey_t *out,
                      bq_errbuf_t *e)
{
    int rc = sodium_ready(e);
    if (rc)
        return rc;
    store_datakey_t dk;
    for (int attempt = 0; attempt < 16; attempt++) {
        do
            dk.id = randombytes_random();
        while (dk.id == 0);
        randombytes_buf(dk.key, sizeof dk.key);
        rc = datakey_write(dir, m, &dk, 1, e);
        if (rc == 0) {
            *out = dk;
            store_datakey_clear(&dk);
            return 0;
        }
        if (rc != BQ_E_EXISTS) /* an id taken by another key: draw again */
            break;
    }
    store_datakey_clear(&dk);
    return rc;
}

int store_datakey_load(const char *dir, const store_master_t *m, uint32_t id,
                       store_datakey_t *out, bq_errbuf_t *e)
{
    char path[PATH_MAX], label[STORE_LABEL_MAX];
    uint8_t wrapped[STORE_WRAPPED_BYTES];
    int rc = sodium_ready(e);
    if (rc || (rc = datakey_path(dir, id, path, sizeof path, e)))
        return rc;
    if ((rc = datakey_read(path, wrapped, e)))
        return rc;
    store_datakey_label(id, label);
    store_datakey_t dk;
    dk.id = id;
    if (unwrap_raw(m->key, label, wrapped, dk.key) != 0)
        return bq_fail(e, BQ_E_KEY,
                       "wrong store key for %s (the key in %s does not open keys/%08x" DATAKEY_SUFFIX
                       ")",
                       dir, m->path, (unsigned)id);
    *out = dk;
    store_datakey_clear(&dk);
    return 0;
}

int store_datakey_put(const char *dir, const store_master_t *m, const store_datakey_t *dk,
                      bq_errbuf_t *e)
{
    int rc = sodium_ready(e);
    if (rc)
        return rc;
    for (int attempt = 0; attempt < 2; attempt++) {
        store_datakey_t have;
        rc = store_datakey_load(dir, m, dk->id, &have, e);
        if (rc == 0) {
            int same = sodium_memcmp(have.key, dk->key, STORE_KEY_BYTES) == 0;
            store_datakey_clear(&have);
            if (same)
                return 0;
            return bq_fail(e, BQ_E_EXISTS,
                           "data key keys/%08x" DATAKEY_SUFFIX " of %s already holds another key; "
                           "not overwriting it",
                           (unsigned)dk->id, dir);
        }
        if (rc != BQ_E_NOTFOUND)
            return rc;
        rc = datakey_write(dir, m, dk, 1, e);
        if (rc != BQ_E_EXISTS) /* written, or failed; EXISTS: raced with another writer */
            return rc;
    }
    return rc;
}

/* K from "K.datakey" (exactly 8 lowercase hex digits); 0 when it is not such a name. */
static int datakey_name_parse(const char *name, uint32_t *id)
{
    if (strlen(name) != 8 + sizeof DATAKEY_SUFFIX - 1 || strcmp(name + 8, DATAKEY_SUFFIX) != 0)
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = name[i];
        if (c >= '0' && c <= '9')
            v = (v << 4) | (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = (v << 4) | (uint32_t)(c - 'a' + 10);
        else
            return 0;
    }
    *id = v;
    return 1;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int store_datakey_list(const char *dir, uint32_t **ids, size_t *n, bq_errbuf_t *e)
{
    char kdir[PATH_MAX];
    *ids = NULL;
    *n = 0;
    int rc = keys_dir(dir, kdir, sizeof kdir, e);
    if (rc)
        return rc;
    DIR *d = opendir(kdir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", kdir, strerror(errno));
    }
    uint32_t *arr = NULL;
    size_t len = 0, cap = 0;
    struct dirent *de;
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (!de)
            break;
        uint32_t id;
        if (!datakey_name_parse(de->d_name, &id))
            continue;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint32_t *na = realloc(arr, ncap * sizeof *na);
            if (!na) {
                free(arr);
                closedir(d);
                return bq_fail(e, BQ_E_NOMEM, "out of memory listing %s", kdir);
            }
            arr = na;
            cap = ncap;
        }
        arr[len++] = id;
    }
    int err = errno;
    closedir(d);
    if (err) {
        free(arr);
        return bq_fail(e, BQ_E_IO, "could not read %s: %s", kdir, strerror(err));
    }
    if (len)
        qsort(arr, len, sizeof *arr, u32_cmp);
    *ids = arr;
    *n = len;
    return 0;
}

int store_keys_rewrap(const char *dir, const store_master_t *old_m, const store_master_t *new_m,
                      size_t *count, bq_errbuf_t *e)
{
    uint32_t *ids = NULL;
    size_t n = 0, done = 0;
    char path[PATH_MAX], label[STORE_LABEL_MAX], what[64];
    uint8_t in[STORE_WRAPPED_BYTES], out[STORE_WRAPPED_BYTES];
    if (count)
        *count = 0;
    int rc = sodium_ready(e);
    if (rc || (rc = store_datakey_list(dir, &ids, &n, e)))
        return rc;

    /* Pass 1: every file opens under one of the two keys, or nothing changes. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        store_datakey_t dk;
        rc = store_datakey_load(dir, old_m, ids[i], &dk, e);
        if (rc == BQ_E_KEY)
            rc = store_datakey_load(dir, new_m, ids[i], &dk, e);
        if (rc == BQ_E_KEY)
            rc = bq_fail(e, BQ_E_KEY,
                         "wrong store key for %s (neither the key in %s nor the key in %s opens "
                         "keys/%08x" DATAKEY_SUFFIX "); no key file was changed",
                         dir, old_m->path, new_m->path, (unsigned)ids[i]);
        store_datakey_clear(&dk);
    }
    /* Pass 2: one file at a time, durably (temp, fsync, rename, fsync keys/). */
    for (size_t i = 0; i < n && rc == 0; i++) {
        int changed = 0;
        store_datakey_label(ids[i], label);
        snprintf(what, sizeof what, "keys/%08x" DATAKEY_SUFFIX, (unsigned)ids[i]);
        if ((rc = datakey_path(dir, ids[i], path, sizeof path, e)) ||
            (rc = datakey_read(path, in, e)) ||
            (rc = store_key_rewrap_blob(old_m, new_m, label, in, out, &changed, what, e)))
            break;
        if (changed) {
            rc = bq_file_write_durable(path, out, sizeof out, 0600, 0, e);
            if (rc == 0)
                done++;
        }
    }
    free(ids);
    if (count)
        *count = done;
    return rc;
}
