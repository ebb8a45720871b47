#include "err.h"

#include <stdarg.h>
#include <stdio.h>

typedef struct {
    int code;
    const char *name;
    int exit_status;
    const char *text;
} err_entry_t;

static const err_entry_t err_table[] = {
#define X(name, num, exitcode, text) {-(num), "BQ_E_" #name, exitcode, text},
#include "errors.def"
#undef X
};

static const err_entry_t *err_find(int code)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].code == code)
            return &err_table[i];
    return NULL;
}

const char *bq_err_name(int code)
{
    const err_entry_t *e = err_find(code);
    return e ? e->name : "BQ_E_UNKNOWN";
}

const char *bq_err_text(int code)
{
    const err_entry_t *e = err_find(code);
    return e ? e->text : "unknown error";
}

int bq_err_exit_status(int code)
{
    const err_entry_t *e = err_find(code);
    return e ? e->exit_status : 1;
}

int bq_fail(bq_errbuf_t *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
