/* fuzz_util.h: what the libFuzzer targets in fuzz/ share (docs/fuzzing.md). Each target is one
 * fuzz_<kind>.c with LLVMFuzzerTestOneInput; inputs that the public API reads from a path go
 * through one file in a per-process temporary directory, removed at exit. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry point (declared for -Wmissing-prototypes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated malloc'ed copy of the input (the text parsers take C strings; an input
 * holding a NUL is read up to it, as a file would be by qp_read_file's callers). Aborts when
 * out of memory: a fuzzer cannot continue without it. */
char *fz_cstr(const uint8_t *data, size_t size);

/* Write the input to `name` inside this process's temporary directory ($TMPDIR or /tmp,
 * qatplan-fuzz.XXXXXX) and return the path (static storage, valid until the next call).
 * Aborts on an I/O error: a target that cannot write its input tests nothing. */
const char *fz_write_temp(const char *name, const uint8_t *data, size_t size);

/* A path inside the temporary directory, not created (static storage rotation of 4). */
const char *fz_temp_path(const char *name);

/* Abort with a message: an invariant of the parsers was broken (a finding). */
void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
