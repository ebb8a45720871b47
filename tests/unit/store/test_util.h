/* Helpers shared by the store's unit tests: scratch directories and heap measurement. */
#ifndef BQ_STORE_TEST_UTIL_H
#define BQ_STORE_TEST_UTIL_H

#include <ftw.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Fail the cmocka test when call returns non-zero; the caller's bq_errbuf_t e holds the
 * message. (cmocka.h and err.h are the including test's.) */
#define OK(call)                                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0)                                                                              \
            fail_msg("%s: %s %s", #call, bq_err_name(rc_), e.msg);                                 \
    } while (0)

/* A new scratch directory NAME.XXXXXX under $TMPDIR (or /tmp) into buf; 0 or -1. */
static inline int test_mkdtemp(char *buf, size_t size, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, size, "%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    return mkdtemp(buf) ? 0 : -1;
}

static int test_rmtree_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Remove a directory tree (like rm -rf, without a shell); 0 when it is gone or never was. */
static inline int test_rmtree(const char *path)
{
    if (access(path, F_OK) != 0)
        return 0;
    return nftw(path, test_rmtree_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* Bytes of heap in use now (ASan's allocator under ASan, glibc's otherwise), for tests that
 * assert memory stays bounded. 0 where neither is available. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
static inline size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#elif defined(__GLIBC__)
#include <malloc.h>
static inline size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#else
static inline size_t heap_in_use(void)
{
    return 0;
}
#endif

#endif
