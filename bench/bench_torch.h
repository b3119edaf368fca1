/* bench_torch.h: running bench/train_torch.py, the PyTorch reference of the training
 * benchmarks (bench_train, bench_train_cuda). Header-only: each bench_*.c is one program. */
#ifndef BENCH_TORCH_H
#define BENCH_TORCH_H

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Run `ENV /usr/bin/python3 bench/train_torch.py ARGS` (the script next to this header; CMake
 * compiles with absolute paths) and return its tokens/s; NAN when it fails (no torch, no GPU). */
static inline double bench_torch_tokens_per_s(const char *env, const char *args)
{
    char script[4096], cmd[8192];
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    if (slash) snprintf(slash + 1, sizeof script - (size_t)(slash + 1 - script), "train_torch.py");
    else snprintf(script, sizeof script, "bench/train_torch.py");
    snprintf(cmd, sizeof cmd, "%s /usr/bin/python3 %s %s 2>/dev/null", env, script, args);
    FILE *p = popen(cmd, "r");
    if (!p) return NAN;
    double ms = NAN, tps = NAN;
    if (fscanf(p, "torch ms_per_step %lf tokens_per_s %lf", &ms, &tps) != 2) tps = NAN;
    pclose(p);
    return tps;
}

#endif
