/* qp.h: what every qatplan module shares: the one error enum, unit parsing and
 * formatting, crash-safe file writes, and start-up plumbing. Symbols are prefixed qp_. */
#ifndef QP_H
#define QP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* ---- errors ------------------------------------------------------------- */

/* The one error enum of the project. Functions return a qp_status and write their
 * results through out-parameters; a qp_error (optional, may be NULL) carries the
 * one-line message that names the problem and the fix. */
typedef enum {
    QP_OK = 0,
    QP_ERR_USAGE,       /* bad command-line usage */
    QP_ERR_INPUT,       /* a value that is malformed, ambiguous or out of range */
    QP_ERR_PARSE,       /* a malformed file (message names file and line) */
    QP_ERR_IO,          /* a file could not be read or written */
    QP_ERR_NOMEM,       /* allocation failed */
    QP_ERR_NUMERIC,     /* a numerical method failed or produced a non-finite value */
    QP_ERR_UNIDENTIFIED,/* the data cannot identify what was asked (too few points) */
    QP_ERR_NETWORK,     /* a download failed */
    QP_ERR_CHECKSUM,    /* a checksum did not match */
    QP_ERR_UNSUPPORTED, /* not available in this build or on this machine (e.g. CUDA) */
    QP_ERR_DIVERGED,    /* training diverged */
    QP_ERR_INTERRUPTED, /* stopped by a signal; state was saved */
    QP_ERR_COUNT_
} qp_status;

const char *qp_strerror(qp_status s);

#define QP_ERRMSG_MAX 1024
typedef struct {
    qp_status status;
    char msg[QP_ERRMSG_MAX];
} qp_error;

/* Record an error (if err != NULL) and return s, so callers can write
 * `return qp_fail(err, QP_ERR_INPUT, "...", ...);`. */
qp_status qp_fail(qp_error *err, qp_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message, e.g. with a file name. */
void qp_error_prefix(qp_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qp_error_clear(qp_error *err);
/* Exit code a command line should use for a status: 0 ok, 2 usage/input, 1 otherwise. */
int qp_exit_code(qp_status s);

/* ---- units -------------------------------------------------------------- */

/* A count of parameters or tokens: "2.2B", "86M", "1.4T", "850K", "2200000000", "2.2e9".
 * Suffixes K, M, B (= G), T are decimal. Lower-case or unknown suffixes, negative, zero,
 * non-finite and overflowing values are refused with a message that names `what`. */
qp_status qp_parse_count(const char *s, const char *what, double *out, qp_error *err);
/* A compute budget in FLOPs: "1e22", "1e22FLOP", "1e22FLOPs". Fails for "gpuh" budgets
 * (see qp_parse_gpu_hours). */
qp_status qp_parse_flops(const char *s, const char *what, double *out, qp_error *err);
/* "50000gpuh" / "50000GPUh" / "50000gpu-h": GPU-hours; sets *is_gpuh when that suffix
 * is present, otherwise parses FLOPs. */
qp_status qp_parse_budget(const char *s, double *value, int *is_gpuh, qp_error *err);
/* Bytes: "1.5GiB", "2GB", "512MiB", "64KB", "1e9" (bare = bytes). "Gb"/"gb" (bits?) is
 * ambiguous and refused. */
qp_status qp_parse_bytes(const char *s, const char *what, double *out, qp_error *err);
/* A finite real number, optionally restricted: lo <= x <= hi (use -INFINITY/INFINITY). */
qp_status qp_parse_real(const char *s, const char *what, double lo, double hi, double *out,
                        qp_error *err);
/* A whole number in [lo, hi]. */
qp_status qp_parse_long(const char *s, const char *what, long lo, long hi, long *out,
                        qp_error *err);
/* A count that must be whole (tokens per batch, bytes): as qp_parse_count, but a fraction
 * ("1.5", "0.5K" is fine: 500) or a value above `max` (named in the message) is refused. */
qp_status qp_parse_whole_count(const char *s, const char *what, double max, double *out, qp_error *err);
/* A comma-separated list of whole numbers in [lo, hi], e.g. "2,4,8" -> out[0..*n-1]. An empty
 * list, an empty element ("4," or "2,,4"), a repeated value or more than max_n values is
 * refused. */
qp_status qp_parse_long_list(const char *s, const char *what, long lo, long hi, long *out, int max_n, int *n,
                             qp_error *err);

/* Human-readable formatting into buf: "2.20B", "1.40T", "86.0M". */
const char *qp_format_count(double x, char *buf, size_t n);
/* "1.50 GiB" */
const char *qp_format_bytes(double bytes, char *buf, size_t n);

/* ---- files -------------------------------------------------------------- */

/* Write `len` bytes to `path` through a temp file in the same directory, fsync, rename:
 * a crash leaves either the old file or the new one, never a half-written file.
 * A symlink is written through: the temp file goes beside the link's final target and is
 * renamed over the target, so the link stays a link. A character device or FIFO (such as
 * /dev/null) is written directly, never replaced. A directory, block device or socket is
 * refused. */
qp_status qp_write_file_atomic(const char *path, const void *data, size_t len, qp_error *err);
/* The same for a file made of parts written in order, so that a large file need not be
 * assembled in memory first (the training state); a part with data NULL is len zero bytes. */
typedef struct {
    const void *data;
    size_t len;
} qp_part;
qp_status qp_write_file_atomic_parts(const char *path, const qp_part *parts, size_t n, qp_error *err);
/* Check, before long work, that `path` can be written later the way its writer will:
 * append (`append` = 1, qp_append_line) opens an existing file for appending; a whole-file
 * write creates (and removes) a temp file beside the target. Writes nothing that stays.
 * The message names the path and says the check ran before starting. */
qp_status qp_check_writable(const char *path, const char *what, int append, qp_error *err);

/* A path a command reads or writes, with how the user named it ("-o", "--law-out", "the
 * grid") for the message. */
typedef struct {
    const char *path;
    const char *what;
} qp_named_path;
/* Refuse, before any work, an output that is one of the inputs or another output: same
 * st_dev and st_ino when both exist, else the same folder (realpath) and name, so an output
 * not created yet still matches. NULL paths and URLs are skipped. The one-line message
 * names both paths. A command that appends to a file it also reads (a sweep's results)
 * lists it as an output only. */
qp_status qp_refuse_output_is_input(const qp_named_path *outputs, size_t n_out,
                                    const qp_named_path *inputs, size_t n_in, qp_error *err);
/* Append one whole line (a '\n' is added when missing) with a single write(2) on an
 * O_APPEND descriptor under an exclusive flock, then fsync: concurrent writers never
 * interleave and a crash never leaves half a line. */
qp_status qp_append_line(const char *path, const char *line, qp_error *err);
/* Read a whole file into a NUL-terminated malloc'ed buffer. A directory is refused as
 * such ("is a directory"), not as a read error. */
qp_status qp_read_file(const char *path, char **out, size_t *len, qp_error *err);
/* 1 when `s` starts with http:// or https://. */
int qp_is_url(const char *s);

/* ---- process plumbing --------------------------------------------------- */

const char *qp_version(void);   /* "0.1.0 (git abc1234)" */

/* Debian's OpenBLAS 0.3.21 does not recognise recent Intel cores and falls back to SSE3
 * kernels 4-5x slower. If OPENBLAS_CORETYPE is unset and the library reports a generic
 * core on a CPU with AVX-512 (or AVX2), set the right core type and re-exec the program
 * so the library loads with it. Call first thing in main(); returns normally when nothing
 * needs doing (or the re-exec failed, in which case it warns once). */
void qp_blas_select_kernels(int argc, char **argv);
/* The core name OpenBLAS uses now (e.g. "SkylakeX"). */
const char *qp_blas_core_name(void);

/* Monotonic wall clock in seconds. */
double qp_now(void);

/* ---- child processes (one runner: sweep trainers and fits, gnuplot) ----- */

typedef struct {
    const char *log_path; /* the child's stdout and stderr; stdin is /dev/null */
    int log_append;       /* 1: append to the log, 0: truncate it */
    int keep_fd;          /* a descriptor that survives the exec (a lock), or -1 */
    int die_with_parent;  /* SIGTERM the child when this process dies; default signals */
    const char *who;      /* prefix of the child's "cannot run" message; NULL: "qatplan" */
} qp_spawn_opts;

/* Start argv[0] (a path) with argv (NULL-terminated). The pid, or -1 with err set. */
pid_t qp_spawn(char *const argv[], const qp_spawn_opts *o, qp_error *err);
/* Wait for pid; past limit_s seconds (<= 0: no limit) SIGKILL it and set *timed_out. */
qp_status qp_wait_limit(pid_t pid, double limit_s, int *wstatus, int *timed_out, qp_error *err);
/* The last non-empty line of a log (after a redrawing \r), for messages; "" if none. */
void qp_log_tail(const char *path, char *buf, size_t n);
/* "exit status N", "killed by signal N (name)" or "ended abnormally". */
const char *qp_wait_status_text(int wstatus, char *buf, size_t n);

/* ---- small numerics ----------------------------------------------------- */

/* splitmix64: one word of state (trivially saved and seeded), thread-free. */
uint64_t qp_rng_next(uint64_t *state);
double qp_rng_uniform(uint64_t *state); /* [0, 1), 53 bits */
/* Percentile p in [0, 1] of v[0..n) sorted ascending, linear between order statistics;
 * NAN when n < 1. */
double qp_percentile_sorted(const double *v, int n, double p);
/* qsort comparator of doubles, ascending. */
int qp_cmp_double(const void *a, const void *b);

#endif
