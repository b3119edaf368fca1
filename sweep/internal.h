/* internal.h (the sweep's own files only): grid.c's helpers that trunk.c shares. */
#ifndef SWEEP_INTERNAL_H
#define SWEEP_INTERNAL_H

#include <cjson/cJSON.h>

#include "sweep.h"

/* 64-bit FNV-1a (run ids' hashes). */
uint64_t sweep_fnv1a(const char *s);
/* A point's peak learning rate: its shape's, else the grid's; NAN = the trainer's default. */
double sweep_point_lr(const sweep_grid *g, const sweep_point *p);
/* The settings that name a point's model ("L=..|D=..|..."), as in its run id's hash. */
int sweep_model_key(const sweep_grid *g, const sweep_point *p, char *key, size_t size);
/* "qat_lr_ratio" (sweep/qat_lr.c): parsed after the fractions axis (fr, nf), before the
 * points are expanded; refused beside a --qat-lr in "train.args" or "methods". */
qp_status sweep_qat_lr_parse(const cJSON *v, sweep_grid *g, const double *fr, int nf, const char *name,
                             qp_error *err);

#endif
