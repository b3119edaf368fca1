#include "qp.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifndef QATPLAN_VERSION
#define QATPLAN_VERSION "0.0.0"
#endif
#include "qp_git.h" /* QATPLAN_GIT, written at build time by cmake/git-version.cmake */

const char *qp_version(void) { return QATPLAN_VERSION " (git " QATPLAN_GIT ")"; }

double qp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* OpenBLAS's own query; declared here so no header choice (cblas-openblas vs netlib) matters. */
extern char *openblas_get_corename(void);

const char *qp_blas_core_name(void) { return openblas_get_corename(); }

static const char *wanted_core(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

void qp_blas_select_kernels(int argc, char **argv)
{
    (void)argc;
    if (getenv("OPENBLAS_CORETYPE")) return;  /* the user chose; respect it */
    if (getenv("QP_BLAS_REEXEC")) return;     /* we already tried once */
    const char *core = openblas_get_corename();
    /* Only override the generic fallbacks the library picks for CPUs it does not know. */
    if (!core || (strcasecmp(core, "Prescott") && strcasecmp(core, "Core2") &&
                  strcasecmp(core, "Nehalem") && strcasecmp(core, "Katmai") &&
                  strcasecmp(core, "Northwood") && strcasecmp(core, "Banias")))
        return;
    const char *want = wanted_core();
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("QP_BLAS_REEXEC", "1", 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernels, but say so once. */
    fprintf(stderr, "qatplan: warning: OpenBLAS uses its generic '%s' kernels; set "
                    "OPENBLAS_CORETYPE=%s before starting for 4-5x faster matrix products\n",
            core, want);
}
