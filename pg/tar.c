#include "tar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ustar header layout (POSIX.1-1988 and GNU). */
#define H_NAME 0
#define H_NAME_LEN 100
#define H_MODE 100
#define H_UID 108
#define H_GID 116
#define H_SIZE 124
#define H_MTIME 136
#define H_CHKSUM 148
#define H_TYPE 156
#define H_LINK 157
#define H_LINK_LEN 100
#define H_MAGIC 257
#define H_VERSION 263
#define H_PREFIX 345
#define H_PREFIX_LEN 155

#define NAME_ERR_MAX 120 /* bytes of an untrusted name quoted in a message */

typedef enum {
    ST_HEADER,   /* filling a 512-byte header block */
    ST_DATA,     /* a file's data */
    ST_META,     /* the content of an 'L', 'K' or 'x' header */
    ST_PAD,      /* padding to the next block */
    ST_ZERO2,    /* after the first zero block: the second one */
    ST_END,      /* after the end-of-archive blocks: only zero bytes */
    ST_FAILED,
} state_t;

typedef enum { META_NONE, META_LONGNAME, META_LONGLINK, META_PAX } meta_t;

struct pg_tar {
    char name[64];
    pg_tar_callbacks_t cb;
    void *arg;

    state_t state;
    uint64_t off;          /* bytes consumed */
    uint8_t hdr[PG_TAR_BLOCK];
    size_t hdr_fill;
    uint64_t left;         /* bytes left of DATA, META or PAD */
    uint64_t entry_off;    /* offset of the first header of the current entry */
    uint64_t entry_size;
    pg_tar_type_t entry_type;

    /* Extended headers seen before the entry they describe. */
    meta_t meta;           /* which one ST_META is filling */
    size_t meta_len, meta_fill;
    int have_longname, have_longlink, have_pax;
    int pax_has_path, pax_has_link, pax_has_size, pax_has_mtime, pax_has_uid, pax_has_gid;
    uint64_t pax_size, pax_uid, pax_gid;
    int64_t pax_mtime;
    char longname[PG_TAR_PATH_MAX];
    char longlink[PG_TAR_PATH_MAX];
    char path[PG_TAR_PATH_MAX];
    char link[PG_TAR_PATH_MAX];
    uint8_t meta_buf[PG_TAR_PAX_MAX];

    int err_code;
    bq_errbuf_t err;
};

const char *pg_tar_type_name(pg_tar_type_t t)
{
    switch (t) {
    case PG_TAR_FILE: return "file";
    case PG_TAR_DIR: return "directory";
    case PG_TAR_SYMLINK: return "symlink";
    case PG_TAR_HARDLINK: return "hardlink";
    }
    return "?";
}

/* Quote untrusted bytes for a message: printable ASCII as is, others as \xNN, cut. */
static void quote(char *dst, size_t size, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        if (i >= NAME_ERR_MAX) {
            snprintf(dst + o, size - o, "...");
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, size - o, "\\x%02x", c);
    }
    dst[o < size ? o : size - 1] = '\0';
}

/* Fail the parser: BQ_E_PROTO, "tar archive NAME: <what>". Sticky. */
static int bad(pg_tar_t *t, bq_errbuf_t *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(pg_tar_t *t, bq_errbuf_t *e, const char *fmt, ...)
{
    char what[BQ_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    t->state = ST_FAILED;
    t->err_code = BQ_E_PROTO;
    bq_fail(&t->err, BQ_E_PROTO, "tar archive %s: %s", t->name, what);
    if (e)
        *e = t->err;
    return t->err_code;
}

/* A callback said no: keep its code and message. */
static int cb_failed(pg_tar_t *t, int rc, bq_errbuf_t *cbe, bq_errbuf_t *e)
{
    t->state = ST_FAILED;
    t->err_code = rc;
    t->err = *cbe;
    if (!t->err.msg[0])
        bq_fail(&t->err, rc, "tar archive %s: a callback failed (%s)", t->name,
                bq_err_name(rc));
    if (e)
        *e = t->err;
    return rc;
}

int pg_tar_new(const char *name, const pg_tar_callbacks_t *cb, void *arg, pg_tar_t **out,
               bq_errbuf_t *e)
{
    if (!name || !out)
        return bq_fail(e, BQ_E_INVAL, "pg_tar_new: name and out are required");
    *out = NULL;
    pg_tar_t *t = calloc(1, sizeof *t);
    if (!t)
        return bq_fail(e, BQ_E_NOMEM, "could not allocate a tar parser for %s", name);
    snprintf(t->name, sizeof t->name, "%s", name);
    if (cb)
        t->cb = *cb;
    t->arg = arg;
    t->state = ST_HEADER;
    *out = t;
    return 0;
}

void pg_tar_destroy(pg_tar_t **tp)
{
    if (!tp || !*tp)
        return;
    free(*tp);
    *tp = NULL;
}

uint64_t pg_tar_offset(const pg_tar_t *t)
{
    return t ? t->off : 0;
}

int pg_tar_ended(const pg_tar_t *t)
{
    return t && t->state == ST_END;
}

const char *pg_tar_path_problem(const char *path, size_t len)
{
    if (len == 0)
        return "is empty";
    if (len >= PG_TAR_PATH_MAX)
        return "is too long";
    if (memchr(path, '\0', len))
        return "contains a NUL byte";
    if (path[0] == '/')
        return "is absolute";
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        size_t n = j - i;
        if (n == 0)
            return "has an empty component";
        if (n == 1 && path[i] == '.')
            return "has a \".\" component";
        if (n == 2 && path[i] == '.' && path[i + 1] == '.')
            return "has a \"..\" component";
        i = j + 1;
    }
    return NULL;
}

/* Strict tar number: octal digits after optional spaces, then only NUL or space to the end
 * of the field; or GNU base-256 (first byte 0x80, big-endian rest), below 2^63. */
static int parse_num(const uint8_t *f, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] != 0x80)
            return -1; /* negative, or more than 2^63 */
        for (size_t i = 1; i < len; i++) {
            if (v >> 55)
                return -1;
            v = (v << 8) | f[i];
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    while (i < len && f[i] == ' ')
        i++;
    size_t digits = 0;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v >> 60)
            return -1;
        v = (v << 3) | (uint64_t)(f[i] - '0');
    }
    if (digits == 0)
        return -1;
    for (; i < len; i++)
        if (f[i] != '\0' && f[i] != ' ')
            return -1;
    *out = v;
    return 0;
}

/* Decimal for pax: digits only (mtime may add a fraction), at most 19 digits. */
static int parse_dec(const char *s, size_t len, int allow_fraction, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (i >= 18)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0)
        return -1;
    if (i < len) {
        if (!allow_fraction || s[i] != '.' || i + 1 == len)
            return -1;
        for (i++; i < len; i++)
            if (s[i] < '0' || s[i] > '9')
                return -1;
    }
    *out = v;
    return 0;
}

static int is_zero_block(const uint8_t *b)
{
    for (size_t i = 0; i < PG_TAR_BLOCK; i++)
        if (b[i])
            return 0;
    return 1;
}

static void reset_meta(pg_tar_t *t)
{
    t->have_longname = t->have_longlink = t->have_pax = 0;
    t->pax_has_path = t->pax_has_link = t->pax_has_size = t->pax_has_mtime = 0;
    t->pax_has_uid = t->pax_has_gid = 0;
}

/* The header's name field (and prefix for POSIX ustar), quoted for messages. */
static void header_name_quoted(const pg_tar_t *t, char *dst, size_t size)
{
    const char *n = (const char *)t->hdr + H_NAME;
    size_t len = strnlen(n, H_NAME_LEN);
    quote(dst, size, n, len);
}

/* An 'L'/'K' content: the name, then NUL bytes only. */
static int finish_longname(pg_tar_t *t, char *dst, bq_errbuf_t *e)
{
    const char *s = (const char *)t->meta_buf;
    size_t n = strnlen(s, t->meta_len);
    for (size_t i = n; i < t->meta_len; i++)
        if (s[i] != '\0')
            return bad(t, e, "GNU long name at offset %llu contains a NUL byte",
                       (unsigned long long)t->entry_off);
    if (n == 0)
        return bad(t, e, "GNU long name at offset %llu is empty",
                   (unsigned long long)t->entry_off);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* pax records: "LEN key=value\n", LEN counting the whole record. */
static int finish_pax(pg_tar_t *t, bq_errbuf_t *e)
{
    const char *s = (const char *)t->meta_buf;
    size_t len = t->meta_len, pos = 0;
    unsigned long long at = (unsigned long long)t->entry_off;
    for (int rec = 0; pos < len; rec++) {
        size_t i = pos, reclen = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - pos < 6)
            reclen = reclen * 10 + (size_t)(s[i++] - '0');
        if (i == pos || i >= len || s[i] != ' ' || reclen < i - pos + 4 || reclen > len - pos)
            return bad(t, e, "pax header at offset %llu: record %d has a bad length", at, rec);
        if (s[pos + reclen - 1] != '\n')
            return bad(t, e, "pax header at offset %llu: record %d does not end in a newline",
                       at, rec);
        const char *kv = s + i + 1;
        size_t kvlen = pos + reclen - 1 - (i + 1);
        const char *eq = memchr(kv, '=', kvlen);
        if (!eq || eq == kv)
            return bad(t, e, "pax header at offset %llu: record %d has no key", at, rec);
        size_t klen = (size_t)(eq - kv);
        const char *v = eq + 1;
        size_t vlen = kvlen - klen - 1;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(kv, k, klen) == 0)
        if (KEY("path") || KEY("linkpath")) {
            int is_path = KEY("path");
            if (vlen == 0 || vlen >= PG_TAR_PATH_MAX || memchr(v, '\0', vlen))
                return bad(t, e, "pax header at offset %llu: bad %s (empty, too long or with "
                           "a NUL byte)", at, is_path ? "path" : "linkpath");
            char *dst = is_path ? t->path : t->link;
            memcpy(dst, v, vlen);
            dst[vlen] = '\0';
            if (is_path)
                t->pax_has_path = 1;
            else
                t->pax_has_link = 1;
        } else if (KEY("size") || KEY("uid") || KEY("gid") || KEY("mtime")) {
            uint64_t n;
            int is_mtime = KEY("mtime");
            if (parse_dec(v, vlen, is_mtime, &n) != 0) {
                char q[64];
                quote(q, sizeof q, kv, klen);
                return bad(t, e, "pax header at offset %llu: bad number for %s", at, q);
            }
            if (KEY("size")) {
                t->pax_size = n;
                t->pax_has_size = 1;
            } else if (KEY("uid")) {
                t->pax_uid = n;
                t->pax_has_uid = 1;
            } else if (KEY("gid")) {
                t->pax_gid = n;
                t->pax_has_gid = 1;
            } else {
                t->pax_mtime = (int64_t)n;
                t->pax_has_mtime = 1;
            }
        } else if (klen >= 11 && memcmp(kv, "GNU.sparse.", 11) == 0) {
            return bad(t, e, "pax header at offset %llu: sparse files are not supported", at);
        }
        /* Other keys (atime, ctime, uname, gname, charset, vendor keys) say nothing we use. */
#undef KEY
        pos += reclen;
    }
    return 0;
}

/* A complete header block. */
static int do_header(pg_tar_t *t, bq_errbuf_t *e)
{
    const uint8_t *h = t->hdr;
    uint64_t hoff = t->off - PG_TAR_BLOCK;
    unsigned long long at = (unsigned long long)hoff;
    int pending = t->have_longname || t->have_longlink || t->have_pax;
    if (!pending)
        t->entry_off = hoff;
    char qn[NAME_ERR_MAX * 4 + 8];

    if (is_zero_block(h)) {
        if (pending)
            return bad(t, e, "extended header at offset %llu is not followed by an entry",
                       (unsigned long long)t->entry_off);
        t->state = ST_ZERO2;
        return 0;
    }

    header_name_quoted(t, qn, sizeof qn);
    uint64_t stored;
    if (parse_num(h + H_CHKSUM, 8, &stored) != 0)
        return bad(t, e, "header at offset %llu (\"%s\") has an unreadable checksum: not a tar "
                   "header", at, qn);
    uint64_t sum = 0;
    for (size_t i = 0; i < PG_TAR_BLOCK; i++)
        sum += (i >= H_CHKSUM && i < H_CHKSUM + 8) ? (uint64_t)' ' : h[i];
    if (sum != stored)
        return bad(t, e, "header at offset %llu (\"%s\"): checksum mismatch (stored %llu, "
                   "computed %llu)", at, qn, (unsigned long long)stored,
                   (unsigned long long)sum);

    int posix;
    if (memcmp(h + H_MAGIC, "ustar\0", 6) == 0 && memcmp(h + H_VERSION, "00", 2) == 0)
        posix = 1;
    else if (memcmp(h + H_MAGIC, "ustar  \0", 8) == 0)
        posix = 0;
    else
        return bad(t, e, "header at offset %llu (\"%s\"): not a ustar or GNU header", at, qn);

    uint64_t size, mode, uid, gid, mtime;
    const char *field = NULL;
    if (parse_num(h + H_SIZE, 12, &size) != 0)
        field = "size";
    else if (parse_num(h + H_MODE, 8, &mode) != 0)
        field = "mode";
    else if (parse_num(h + H_UID, 8, &uid) != 0)
        field = "uid";
    else if (parse_num(h + H_GID, 8, &gid) != 0)
        field = "gid";
    else if (parse_num(h + H_MTIME, 12, &mtime) != 0)
        field = "mtime";
    if (field)
        return bad(t, e, "header at offset %llu (\"%s\"): bad %s field", at, qn, field);
    if (size > (uint64_t)INT64_MAX || mtime > (uint64_t)INT64_MAX)
        return bad(t, e, "header at offset %llu (\"%s\"): number out of range", at, qn);

    char type = (char)h[H_TYPE];
    switch (type) {
    case 'L':
    case 'K':
    case 'x': {
        int dup = type == 'L' ? t->have_longname : type == 'K' ? t->have_longlink : t->have_pax;
        if (dup)
            return bad(t, e, "header at offset %llu: a second '%c' header for the same entry",
                       at, type);
        size_t max = type == 'x' ? PG_TAR_PAX_MAX : PG_TAR_PATH_MAX;
        if (size == 0 || size > max)
            return bad(t, e, "'%c' header at offset %llu: size %llu is out of range (1..%zu)",
                       type, at, (unsigned long long)size, max);
        t->meta = type == 'L' ? META_LONGNAME : type == 'K' ? META_LONGLINK : META_PAX;
        t->meta_len = (size_t)size;
        t->meta_fill = 0;
        t->left = size;
        t->state = ST_META;
        return 0;
    }
    case 'g':
        return bad(t, e, "header at offset %llu: pax global headers are not supported", at);
    case '0':
    case '\0':
    case '7':
        t->entry_type = PG_TAR_FILE;
        break;
    case '5':
        t->entry_type = PG_TAR_DIR;
        break;
    case '2':
        t->entry_type = PG_TAR_SYMLINK;
        break;
    case '1':
        t->entry_type = PG_TAR_HARDLINK;
        break;
    default: {
        char qt[8];
        quote(qt, sizeof qt, &type, 1);
        return bad(t, e, "entry \"%s\" at offset %llu: unsupported entry type '%s'", qn,
                   (unsigned long long)t->entry_off, qt);
    }
    }

    /* The path: pax path, GNU long name, or the header's (prefix/)name. */
    size_t plen;
    if (t->pax_has_path) {
        plen = strlen(t->path);
    } else if (t->have_longname) {
        plen = strlen(t->longname);
        memcpy(t->path, t->longname, plen + 1);
    } else {
        size_t nlen = strnlen((const char *)h + H_NAME, H_NAME_LEN);
        size_t xlen = posix ? strnlen((const char *)h + H_PREFIX, H_PREFIX_LEN) : 0;
        plen = 0;
        if (xlen) {
            memcpy(t->path, h + H_PREFIX, xlen);
            t->path[xlen] = '/';
            plen = xlen + 1;
        }
        memcpy(t->path + plen, h + H_NAME, nlen);
        plen += nlen;
        t->path[plen] = '\0';
    }
    /* PostgreSQL writes "./pg_wal/archive_status", GNU tar "./x" under -C dir .: a leading
     * "./" is dropped, and the "./" entry of the root itself is skipped. */
    while (plen >= 2 && t->path[0] == '.' && t->path[1] == '/') {
        memmove(t->path, t->path + 2, plen - 1);
        plen -= 2;
    }
    if ((t->entry_type == PG_TAR_DIR || t->entry_type == PG_TAR_SYMLINK) && plen > 1 &&
        t->path[plen - 1] == '/')
        t->path[--plen] = '\0';
    if (t->entry_type == PG_TAR_DIR && (plen == 0 || (plen == 1 && t->path[0] == '.'))) {
        reset_meta(t);
        t->state = ST_HEADER;
        return 0;
    }
    quote(qn, sizeof qn, t->path, plen);
    const char *why = pg_tar_path_problem(t->path, plen);
    if (why)
        return bad(t, e, "entry \"%s\" at offset %llu: path %s", qn,
                   (unsigned long long)t->entry_off, why);

    /* The link target. */
    size_t llen;
    if (t->pax_has_link) {
        llen = strlen(t->link);
    } else if (t->have_longlink) {
        llen = strlen(t->longlink);
        memcpy(t->link, t->longlink, llen + 1);
    } else {
        llen = strnlen((const char *)h + H_LINK, H_LINK_LEN);
        memcpy(t->link, h + H_LINK, llen);
        t->link[llen] = '\0';
    }
    if (t->entry_type == PG_TAR_SYMLINK || t->entry_type == PG_TAR_HARDLINK) {
        if (llen == 0)
            return bad(t, e, "%s \"%s\" at offset %llu has no target",
                       pg_tar_type_name(t->entry_type), qn, (unsigned long long)t->entry_off);
        while (t->entry_type == PG_TAR_HARDLINK && llen >= 2 && t->link[0] == '.' &&
               t->link[1] == '/') {
            memmove(t->link, t->link + 2, llen - 1);
            llen -= 2;
        }
        if (t->entry_type == PG_TAR_HARDLINK && (why = pg_tar_path_problem(t->link, llen)))
            return bad(t, e, "hardlink \"%s\" at offset %llu: target %s", qn,
                       (unsigned long long)t->entry_off, why);
    } else {
        t->link[0] = '\0';
    }

    if (t->pax_has_size)
        size = t->pax_size;
    if (t->pax_has_uid)
        uid = t->pax_uid;
    if (t->pax_has_gid)
        gid = t->pax_gid;
    if (t->pax_has_mtime)
        mtime = (uint64_t)t->pax_mtime;
    if (size > (uint64_t)INT64_MAX)
        return bad(t, e, "entry \"%s\" at offset %llu: size out of range", qn,
                   (unsigned long long)t->entry_off);
    if (t->entry_type != PG_TAR_FILE && size != 0)
        return bad(t, e, "%s \"%s\" at offset %llu has a size of %llu (must be 0)",
                   pg_tar_type_name(t->entry_type), qn, (unsigned long long)t->entry_off,
                   (unsigned long long)size);

    pg_tar_entry_t ent = {
        .path = t->path,
        .type = t->entry_type,
        .mode = (uint32_t)(mode & 07777),
        .uid = uid,
        .gid = gid,
        .size = size,
        .mtime = (int64_t)mtime,
        .link = t->link,
        .offset = t->entry_off,
    };
    reset_meta(t);
    t->entry_size = size;
    if (t->cb.begin) {
        bq_errbuf_t cbe = {{0}};
        int rc = t->cb.begin(t->arg, &ent, &cbe);
        if (rc)
            return cb_failed(t, rc, &cbe, e);
    }
    if (size == 0) {
        if (t->cb.end) {
            bq_errbuf_t cbe = {{0}};
            int rc = t->cb.end(t->arg, &cbe);
            if (rc)
                return cb_failed(t, rc, &cbe, e);
        }
        t->state = ST_HEADER;
    } else {
        t->left = size;
        t->state = ST_DATA;
    }
    return 0;
}

/* Bytes to the next block boundary after n bytes of content. */
static uint64_t padding(uint64_t n)
{
    return (PG_TAR_BLOCK - n % PG_TAR_BLOCK) % PG_TAR_BLOCK;
}

int pg_tar_feed(pg_tar_t *t, const void *buf, size_t len, bq_errbuf_t *e)
{
    if (!t)
        return bq_fail(e, BQ_E_INVAL, "pg_tar_feed: no parser");
    if (t->state == ST_FAILED) {
        if (e)
            *e = t->err;
        return t->err_code;
    }
    if (len && !buf)
        return bq_fail(e, BQ_E_INVAL, "pg_tar_feed: no buffer");
    const uint8_t *p = buf;
    /* Each turn consumes at least one byte or changes state towards consuming one. */
    while (len > 0) {
        switch (t->state) {
        case ST_HEADER:
        case ST_ZERO2: {
            size_t n = PG_TAR_BLOCK - t->hdr_fill;
            if (n > len)
                n = len;
            memcpy(t->hdr + t->hdr_fill, p, n);
            t->hdr_fill += n;
            p += n;
            len -= n;
            t->off += n;
            if (t->hdr_fill < PG_TAR_BLOCK)
                break;
            t->hdr_fill = 0;
            if (t->state == ST_ZERO2) {
                if (!is_zero_block(t->hdr))
                    return bad(t, e, "a single zero block at offset %llu, then data: not an "
                               "end of archive", (unsigned long long)(t->off - 2 * PG_TAR_BLOCK));
                t->state = ST_END;
                if (t->cb.archive_end) {
                    bq_errbuf_t cbe = {{0}};
                    int rc = t->cb.archive_end(t->arg, &cbe);
                    if (rc)
                        return cb_failed(t, rc, &cbe, e);
                }
                break;
            }
            int rc = do_header(t, e);
            if (rc)
                return rc;
            break;
        }
        case ST_DATA: {
            size_t n = t->left < len ? (size_t)t->left : len;
            if (t->cb.data) {
                bq_errbuf_t cbe = {{0}};
                int rc = t->cb.data(t->arg, p, n, &cbe);
                if (rc)
                    return cb_failed(t, rc, &cbe, e);
            }
            p += n;
            len -= n;
            t->off += n;
            t->left -= n;
            if (t->left == 0) {
                if (t->cb.end) {
                    bq_errbuf_t cbe = {{0}};
                    int rc = t->cb.end(t->arg, &cbe);
                    if (rc)
                        return cb_failed(t, rc, &cbe, e);
                }
                t->left = padding(t->entry_size);
                t->state = t->left ? ST_PAD : ST_HEADER;
            }
            break;
        }
        case ST_META: {
            size_t n = t->left < len ? (size_t)t->left : len;
            memcpy(t->meta_buf + t->meta_fill, p, n);
            t->meta_fill += n;
            p += n;
            len -= n;
            t->off += n;
            t->left -= n;
            if (t->left == 0) {
                int rc;
                if (t->meta == META_PAX) {
                    rc = finish_pax(t, e);
                    t->have_pax = 1;
                } else if (t->meta == META_LONGNAME) {
                    rc = finish_longname(t, t->longname, e);
                    t->have_longname = 1;
                } else {
                    rc = finish_longname(t, t->longlink, e);
                    t->have_longlink = 1;
                }
                if (rc)
                    return rc;
                t->left = padding(t->meta_len);
                t->state = t->left ? ST_PAD : ST_HEADER;
            }
            break;
        }
        case ST_PAD: {
            size_t n = t->left < len ? (size_t)t->left : len;
            p += n;
            len -= n;
            t->off += n;
            t->left -= n;
            if (t->left == 0)
                t->state = ST_HEADER;
            break;
        }
        case ST_END:
            for (size_t i = 0; i < len; i++)
                if (p[i])
                    return bad(t, e, "garbage after the end of the archive at offset %llu",
                               (unsigned long long)(t->off + i));
            t->off += len;
            len = 0;
            break;
        case ST_FAILED:
            if (e)
                *e = t->err;
            return t->err_code;
        }
    }
    return 0;
}

int pg_tar_finish(pg_tar_t *t, bq_errbuf_t *e)
{
    if (!t)
        return bq_fail(e, BQ_E_INVAL, "pg_tar_finish: no parser");
    unsigned long long off = (unsigned long long)t->off;
    char qn[NAME_ERR_MAX * 4 + 8];
    switch (t->state) {
    case ST_END:
        return 0;
    case ST_FAILED:
        if (e)
            *e = t->err;
        return t->err_code;
    case ST_DATA:
        quote(qn, sizeof qn, t->path, strlen(t->path));
        return bad(t, e, "truncated at offset %llu inside the data of \"%s\" (entry at offset "
                   "%llu, %llu of %llu bytes)", off, qn, (unsigned long long)t->entry_off,
                   (unsigned long long)(t->entry_size - t->left),
                   (unsigned long long)t->entry_size);
    case ST_META:
        return bad(t, e, "truncated at offset %llu inside an extended header (at offset %llu)",
                   off, (unsigned long long)t->entry_off);
    case ST_PAD:
        return bad(t, e, "truncated at offset %llu inside the padding of entry at offset %llu",
                   off, (unsigned long long)t->entry_off);
    case ST_ZERO2:
        return bad(t, e, "truncated at offset %llu after one end-of-archive block (two are "
                   "needed)", off);
    case ST_HEADER:
        if (t->hdr_fill)
            return bad(t, e, "truncated at offset %llu inside a header (%zu of 512 bytes)", off,
                       t->hdr_fill);
        if (t->have_longname || t->have_longlink || t->have_pax)
            return bad(t, e, "truncated at offset %llu after an extended header", off);
        return bad(t, e, "truncated at offset %llu: no end-of-archive blocks", off);
    }
    return bad(t, e, "invalid parser state");
}
