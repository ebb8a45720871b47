/* Barque error codes (see errors.def) and a small error-message buffer. */
#ifndef BQ_ERR_H
#define BQ_ERR_H

#include <stddef.h>

enum {
#define X(name, num, exitcode, text) BQ_E_##name = -(num),
#include "errors.def"
#undef X
};

/* Stable short name of a code ("BQ_E_IO"); never NULL. */
const char *bq_err_name(int code);
/* Generic text of a code ("input/output error"); never NULL. */
const char *bq_err_text(int code);
/* The CLI exit status a code maps to (0, 1 or 2). */
int bq_err_exit_status(int code);

/* A message buffer that functions fill on failure: what failed, on which object, why. */
#define BQ_ERRMSG_MAX 1024
typedef struct {
    char msg[BQ_ERRMSG_MAX];
} bq_errbuf_t;

/* Format into e (if e is not NULL) and return code, so callers can write
 *     return bq_fail(e, BQ_E_IO, "could not open %s: %s", path, strerror(errno)); */
int bq_fail(bq_errbuf_t *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
