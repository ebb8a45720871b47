/* store_init and store_space on a scratch directory. */
#include "fsutil.h"
#include "store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

typedef struct {
    char root[256];
    char store[300];
    char marker[320];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_mkdtemp(f->root, sizeof f->root, "store_test") != 0) {
        free(f);
        return -1;
    }
    snprintf(f->store, sizeof f->store, "%s/a/b/store", f->root);
    snprintf(f->marker, sizeof f->marker, "%s/BARQUE_STORE", f->store);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = test_rmtree(f->root);
    free(f);
    return rc == 0 ? 0 : -1;
}

static char *read_marker(const char *path)
{
    char *text = NULL;
    bq_errbuf_t e = {{0}};
    if (bq_file_read_small(path, 4096, &text, NULL, &e) != 0)
        fail_msg("could not read marker: %s", e.msg);
    return text;
}

static void write_file(const char *path, const char *text)
{
    bq_errbuf_t e = {{0}};
    if (bq_file_write_durable(path, text, strlen(text), 0600, 0, &e) != 0)
        fail_msg("could not write %s: %s", path, e.msg);
}

static void test_init_creates_marker(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_init(f->store, &e), 0);

    struct stat st;
    assert_int_equal(stat(f->store, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);

    char *text = read_marker(f->marker);
    assert_string_equal(text, "format=1\n");
    free(text);
}

static void test_init_twice(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_init(f->store, &e), 0);
    assert_int_equal(store_init(f->store, &e), 0);
    char *text = read_marker(f->marker);
    assert_string_equal(text, "format=1\n");
    free(text);
}

static void test_init_existing_empty_dir(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    assert_int_equal(bq_mkdir_p(f->store, 0755, &e), 0);
    assert_int_equal(store_init(f->store, &e), 0);
    char *text = read_marker(f->marker);
    assert_string_equal(text, "format=1\n");
    free(text);
}

static void test_foreign_marker_refused(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *content;
        int code;
        const char *message; /* after the marker's path */
    } cases[] = {
        {"format=2\n", BQ_E_VERSION, " has format 2; this barque supports format 1"},
        {"format=17\n", BQ_E_VERSION, " has format 17; this barque supports format 1"},
        {"format=0\n", BQ_E_VERSION, " has format 0; this barque supports format 1"},
        {"", BQ_E_STATE, " is damaged: expected \"format=1\", found \"\""},
        {"format=1", BQ_E_STATE, " is damaged: expected \"format=1\", found \"format=1\""},
        {"format=1\nx\n", BQ_E_STATE, " is damaged: expected \"format=1\", found \"format=1\""},
        {"format=\n", BQ_E_STATE, " is damaged: expected \"format=1\", found \"format=\""},
        {"format=-1\n", BQ_E_STATE, " is damaged: expected \"format=1\", found \"format=-1\""},
        {"format= 1\n", BQ_E_STATE, " is damaged: expected \"format=1\", found \"format= 1\""},
        {"pgbackrest\n", BQ_E_STATE, " is damaged: expected \"format=1\", found \"pgbackrest\""},
        {"format=1\r\n", BQ_E_STATE, " is damaged: expected \"format=1\", found \"format=1?\""},
    };
    bq_errbuf_t e = {{0}};
    assert_int_equal(bq_mkdir_p(f->store, 0700, &e), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(f->marker, cases[i].content);
        memset(&e, 0, sizeof e);
        int rc = store_init(f->store, &e);
        char want[700];
        snprintf(want, sizeof want, "store marker %s%s", f->marker, cases[i].message);
        if (rc != cases[i].code || strcmp(e.msg, want) != 0)
            fail_msg("marker \"%s\": got %s \"%s\", want %s \"%s\"", cases[i].content,
                     bq_err_name(rc), e.msg, bq_err_name(cases[i].code), want);
        /* Refusing never rewrites the marker. */
        char *text = read_marker(f->marker);
        assert_string_equal(text, cases[i].content);
        free(text);
    }
}

static void test_marker_with_nul_refused(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    assert_int_equal(bq_mkdir_p(f->store, 0700, &e), 0);
    assert_int_equal(bq_file_write_durable(f->marker, "format=1\n\0", 10, 0600, 0, &e), 0);
    assert_int_equal(store_init(f->store, &e), BQ_E_STATE);
    assert_non_null(strstr(e.msg, "is damaged"));
}

static void test_path_is_a_file(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    char path[300];
    snprintf(path, sizeof path, "%s/file", f->root);
    write_file(path, "x");
    assert_int_equal(store_init(path, &e), BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "is not a directory"));
    assert_int_equal(store_init("", &e), BQ_E_INVAL);
}

static void test_space(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_init(f->store, &e), 0);
    uint64_t free_b = 0, total_b = 0;
    assert_int_equal(store_space(f->store, &free_b, &total_b, &e), 0);
    assert_true(total_b > 0);
    assert_true(free_b <= total_b);

    char missing[320];
    snprintf(missing, sizeof missing, "%s/missing", f->root);
    assert_int_equal(store_space(missing, &free_b, &total_b, &e), BQ_E_IO);
    assert_non_null(strstr(e.msg, missing));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_creates_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_existing_empty_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_marker_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marker_with_nul_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_is_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_space, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
