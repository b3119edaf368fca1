#include "testutil.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[4096];

const char *tu_tmpdir(void) { return tmpdir; }

const char *tu_path(const char *name)
{
    static char bufs[8][4096];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 4096, "%s/%s", tmpdir, name);
    return b;
}

void tu_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

char *tu_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 >= cap) b = realloc(b, cap *= 2);
    }
    b[n] = 0;
    fclose(f);
    if (len) *len = n;
    return b;
}

int tu_same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = tu_read(a, &na), *y = tu_read(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

int tu_run_qatplan(const char *args, char **out, char **err)
{
    char cmd[16384];
    const char *o = tu_path("stdout.txt"), *e = tu_path("stderr.txt");
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s </dev/null", QP_QATPLAN_EXE, args, o, e);
    int rc = system(cmd);
    if (out) *out = tu_read(o, NULL);
    if (err) *err = tu_read(e, NULL);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

static unsigned n_skipped;
static CU_pTest last_skipped;

void tu_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "SKIPPED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    CU_pTest t = CU_get_current_test();
    if (t != last_skipped) { /* a test may skip several parts: count it once */
        last_skipped = t;
        n_skipped++;
    }
}

int tu_main(const char *suite_name, void (*add)(CU_pSuite))
{
    const char *base = getenv("QP_TEST_TMP");
    if (!base) base = "/tmp";
    mkdir(base, 0777);
    snprintf(tmpdir, sizeof tmpdir, "%s/%s.XXXXXX", base, suite_name);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "cannot create a temp dir under %s: %s\n", base, strerror(errno));
        return 1;
    }
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite(suite_name, NULL, NULL);
    if (!s) return 1;
    add(s);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_ErrorCode e = CU_get_error();
    CU_cleanup_registry();
    if (e != CUE_SUCCESS) return 1;
    if (ran == 0) return 1;  /* a suite that ran nothing must not pass */
    if (failed) return 1;
    if (n_skipped == ran) {
        fprintf(stderr, "%s: all %u tests SKIPPED (exit %d: skipped, not passed)\n", suite_name, ran, TU_SKIP_EXIT);
        return TU_SKIP_EXIT;
    }
    if (n_skipped) fprintf(stderr, "%s: %u of %u tests SKIPPED (see above); the others passed\n", suite_name, n_skipped, ran);
    return 0;
}
