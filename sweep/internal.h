/* internal.h (the sweep's own files only): grid.c's helpers that trunk.c shares. */
#ifndef SWEEP_INTERNAL_H
#define SWEEP_INTERNAL_H

#include "sweep.h"

/* 64-bit FNV-1a (run ids' hashes). */
uint64_t sweep_fnv1a(const char *s);
/* A point's peak learning rate: its shape's, else the grid's; NAN = the trainer's default. */
double sweep_point_lr(const sweep_grid *g, const sweep_point *p);
/* The settings that name a point's model ("L=..|D=..|..."), as in its run id's hash. */
int sweep_model_key(const sweep_grid *g, const sweep_point *p, char *key, size_t size);

#endif
