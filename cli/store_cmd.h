/* Offline verbs of the barque command that work on a store directory directly, with no daemon
 * running: `barque store init|ls|show|stats PATH ... --key FILE`. Each verb is one function of
 * the same shape, so a new one (verify, gc, rotate-key) is one more function here and one more
 * row in cli.c's verb table.
 *
 * Each function prints its result on stdout (text, or JSON when json is set) and its errors on
 * stderr ("barque: WHAT: WHY"), and returns the exit status: 0 success, 1 failure, 2 usage
 * error (a bad or missing argument or option value). */
#ifndef BQ_CLI_STORE_CMD_H
#define BQ_CLI_STORE_CMD_H

/* What cli.c parsed for a store verb; every string is borrowed from argv. Values are given
 * raw: the verbs check them (and answer a bad one with exit status 2). */
typedef struct {
    int json;                /* --json */
    const char *key_file;    /* --key FILE: the store master key (keygen --store-key) */
    const char *new_key_file; /* --new-key FILE: rotate-key's new master key */
    const char *compression; /* --compression NAME, or NULL */
    const char *level;       /* --level N, or NULL */
    const char *chunk_size;  /* --chunk-size SIZE, or NULL */
    int nargs;               /* positional arguments after the verb's words */
    const char *const *args; /* args[0] is the store directory */
} store_cmd_opts_t;

typedef int (*store_cmd_fn)(const store_cmd_opts_t *o);

/* store init PATH --key FILE [--compression zstd|lz4|none] [--level N] [--chunk-size SIZE]:
 * store_create. An existing store is refused (exit 1), nothing changed. */
int store_cmd_init(const store_cmd_opts_t *o);
/* store ls PATH --key FILE: every backup with its creation time, files and logical size. */
int store_cmd_ls(const store_cmd_opts_t *o);
/* store show PATH BACKUP_ID --key FILE: the manifest's header, its meta keys with their sizes
 * and each file (path, mode, size, chunks). */
int store_cmd_show(const store_cmd_opts_t *o);
/* store stats PATH --key FILE: backups, chunks, stored and logical bytes, dedup ratio. */
int store_cmd_stats(const store_cmd_opts_t *o);
/* store verify PATH --key FILE: re-read every pack record, index entry, manifest and WAL file;
 * print each problem with the backups and files it affects. Exit 1 when anything is damaged. */
int store_cmd_verify(const store_cmd_opts_t *o);

/* store gc PATH --key FILE: store_gc (exclusive lock: refused, exit 1, while a backup, WAL put
 * or reader has the store open); prints the chunks and packs removed and the bytes reclaimed. */
int store_cmd_gc(const store_cmd_opts_t *o);

/* store rotate-key PATH --key OLD_FILE --new-key NEW_FILE: store_rotate_key; prints how many
 * data keys were re-wrapped and whether the id key was. Exit 1 on a wrong key or a busy store,
 * nothing changed. */
int store_cmd_rotate_key(const store_cmd_opts_t *o);

#endif
