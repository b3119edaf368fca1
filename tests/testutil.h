/* Shared helpers for the CUnit suites: a per-suite temp directory, running the qatplan
 * executable, and a main() that turns CUnit failure counts into the exit status. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <CUnit/CUnit.h>

/* A fresh directory for this suite's files: $QP_TEST_TMP/<suite>.XXXXXX */
const char *tu_tmpdir(void);
/* Path inside tu_tmpdir() (static buffer rotation of 8). */
const char *tu_path(const char *name);
/* Write a whole file; CU_FAIL on error. */
void tu_write(const char *path, const char *text);
/* Read a whole file, NUL-terminated (malloc'ed; NULL if it cannot be opened); its length in
 * bytes in *len unless len is NULL. */
char *tu_read(const char *path, size_t *len);
/* 1 when both files can be read and hold the same bytes. */
int tu_same_file(const char *a, const char *b);
/* Run `qatplan ARGS` through /bin/sh, capture stdout and stderr (malloc'ed, may be NULL
 * arguments to ignore), return the exit status (-1 if it did not exit normally). */
int tu_run_qatplan(const char *args, char **out, char **err);

/* Mark the running test as skipped, with the reason (printed as "SKIPPED: ..."); it passes.
 * A suite in which every test was skipped exits TU_SKIP_EXIT, which CTest reports as
 * skipped ("Not Run"); a suite with only some skipped passes and says how many. */
void tu_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define TU_SKIP_EXIT 77 /* SKIP_RETURN_CODE in tests/CMakeLists.txt (Automake's convention) */

/* Register suites with CU_add_suite/CU_add_test in `add`, run, return non-zero if any
 * assertion or test failed, TU_SKIP_EXIT if every test was skipped. */
int tu_main(const char *suite_name, void (*add)(CU_pSuite));

#define TU_ADD(suite, fn) CU_add_test((suite), #fn, (fn))

#endif
