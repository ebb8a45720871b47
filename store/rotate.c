/* Master key rotation (store/store.h, store_rotate_key): re-wrap the data key files, then the
 * id key in store.conf, under the store's exclusive lock. Packs are never opened. */
#include "store.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define ROTATE_CONF "store.conf"
#define ROTATE_CONF_MAX 4096
#define ROTATE_ID_KEY_PREFIX "id_key="
#define ROTATE_ID_KEY_HEX (2 * STORE_WRAPPED_BYTES)

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The offset in text of the hex digits of the one "id_key=" line, decoded into wrapped.
 * BQ_E_STATE when there is none, more than one, or it is not 144 lowercase hex digits. */
static int conf_id_key(const char *path, const char *text, size_t *at,
                       uint8_t wrapped[STORE_WRAPPED_BYTES], bq_errbuf_t *e)
{
    const size_t plen = sizeof ROTATE_ID_KEY_PREFIX - 1;
    int found = 0;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        if (!nl)
            return bq_fail(e, BQ_E_STATE, "store config %s is damaged: no newline at the end",
                           path);
        if ((size_t)(nl - line) >= plen && memcmp(line, ROTATE_ID_KEY_PREFIX, plen) == 0) {
            if (found++)
                return bq_fail(e, BQ_E_STATE, "store config %s is damaged: id_key given twice",
                               path);
            const char *hex = line + plen;
            if ((size_t)(nl - hex) != ROTATE_ID_KEY_HEX)
                return bq_fail(e, BQ_E_STATE, "store config %s is damaged: id_key is not %d hex "
                               "digits", path, ROTATE_ID_KEY_HEX);
            for (size_t i = 0; i < STORE_WRAPPED_BYTES; i++) {
                int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
                if (hi < 0 || lo < 0)
                    return bq_fail(e, BQ_E_STATE, "store config %s is damaged: id_key is not %d "
                                   "hex digits", path, ROTATE_ID_KEY_HEX);
                wrapped[i] = (uint8_t)(hi << 4 | lo);
            }
            *at = (size_t)(hex - text);
        }
        line = nl + 1;
    }
    if (!found)
        return bq_fail(e, BQ_E_STATE, "store config %s is damaged: id_key is missing", path);
    return 0;
}

/* Take dir/lock exclusively, without waiting. *fd is the caller's (closing it releases). */
static int lock_exclusive(const char *dir, int *fd, bq_errbuf_t *e)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/lock", dir) >= (int)sizeof path)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s/lock", dir);
    *fd = open(path, O_RDWR | O_CLOEXEC);
    if (*fd < 0) {
        if (errno == ENOENT)
            return bq_fail(e, BQ_E_NOTFOUND, "%s is not a barque store (no lock file)", dir);
        return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno));
    }
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return bq_fail(e, BQ_E_STATE, "store %s is in use (a backup, WAL archiving, a reader, "
                           "gc or another rotate-key holds its lock)\nhint: try again when it "
                           "is done; nothing was changed", dir);
        return bq_fail(e, BQ_E_IO, "could not lock %s: %s", path, strerror(errno));
    }
    return 0;
}

int store_rotate_key(const char *dir, const store_master_t *old_m, const store_master_t *new_m,
                     store_rotate_stats_t *st, bq_errbuf_t *e)
{
    store_rotate_stats_t zero = {0};
    if (st)
        *st = zero;
    if (!dir || !*dir || !old_m || !new_m)
        return bq_fail(e, BQ_E_INVAL, "could not rotate the store key: missing argument");
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not rotate the key of store %s: libsodium cannot "
                       "start", dir);
    if (sodium_memcmp(old_m->key, new_m->key, STORE_KEY_BYTES) == 0)
        return bq_fail(e, BQ_E_INVAL, "could not rotate the key of store %s: %s and %s hold the "
                       "same key", dir, old_m->path, new_m->path);

    char conf[PATH_MAX];
    if (snprintf(conf, sizeof conf, "%s/" ROTATE_CONF, dir) >= (int)sizeof conf)
        return bq_fail(e, BQ_E_INVAL, "store path too long: %s/" ROTATE_CONF, dir);
    if (access(conf, F_OK) != 0 && (errno == ENOENT || errno == ENOTDIR))
        return bq_fail(e, BQ_E_NOTFOUND, "%s is not a barque store (no " ROTATE_CONF ")", dir);

    int fd = -1;
    char *text = NULL;
    uint32_t *ids = NULL;
    size_t len = 0, nids = 0, at = 0, rewrapped = 0;
    uint8_t in[STORE_WRAPPED_BYTES], out[STORE_WRAPPED_BYTES];
    int changed = 0;
    int rc = lock_exclusive(dir, &fd, e);
    if (rc)
        goto done;

    /* 1. The id key opens under one of the two keys (nothing written yet). */
    rc = bq_file_read_small(conf, ROTATE_CONF_MAX, &text, &len, e);
    if (rc == BQ_E_TOOBIG)
        rc = bq_fail(e, BQ_E_STATE, "store config %s is damaged: larger than %d bytes", conf,
                     ROTATE_CONF_MAX);
    if (rc)
        goto done;
    if (strlen(text) != len) {
        rc = bq_fail(e, BQ_E_STATE, "store config %s is damaged: it holds a NUL byte", conf);
        goto done;
    }
    if ((rc = conf_id_key(conf, text, &at, in, e)) != 0)
        goto done;
    bq_errbuf_t why;
    if (store_key_rewrap_blob(old_m, new_m, STORE_LABEL_ID_KEY, in, out, &changed,
                              "the id key in " ROTATE_CONF, &why) != 0) {
        rc = bq_fail(e, BQ_E_KEY, "wrong store key for %s (neither the key in %s nor the key in "
                     "%s opens the id key in " ROTATE_CONF "); nothing was changed", dir,
                     old_m->path, new_m->path);
        goto done;
    }

    /* 2. Every data key file (checked first, then one at a time, durably). */
    if ((rc = store_datakey_list(dir, &ids, &nids, e)) != 0)
        goto done;
    if ((rc = store_keys_rewrap(dir, old_m, new_m, &rewrapped, e)) != 0)
        goto done;

    /* 3. Last, the id key: until store.conf is replaced, the old key still opens the store. */
    if (changed) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < STORE_WRAPPED_BYTES; i++) {
            text[at + 2 * i] = digits[out[i] >> 4];
            text[at + 2 * i + 1] = digits[out[i] & 15];
        }
        if ((rc = bq_file_write_durable(conf, text, len, 0600, 0, e)) != 0)
            goto done;
    }
    if (st) {
        st->data_keys = nids;
        st->data_keys_rewrapped = rewrapped;
        st->id_key_rewrapped = changed;
    }
done:
    free(ids);
    free(text);
    sodium_memzero(out, sizeof out);
    if (fd >= 0)
        close(fd); /* releases the flock */
    return rc;
}
