/* cuda_backend.h (internal to the trainer and its tests): the CUDA backend's C interface.
 * Plain C types only, so that the CUDA sources (trainer/cuda/, compiled as C++ by nvcc) need
 * none of the trainer's headers but the plain-C tensors.h and formulas.h. The device model mirrors the host model (model.h) tensor for tensor:
 * the same parameter layout (one allocation per family: parameters, gradients, Adam moments,
 * quantized weights, activations), so checkpoints and state files are written from the host
 * copy after cuda_download. Functions exist only when QATPLAN_HAVE_CUDA is defined, except
 * train_cuda_devices (train.h), which is always there. */
#ifndef TRAIN_CUDA_BACKEND_H
#define TRAIN_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "tensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUDA_NT MODEL_NT /* the tensor lists are tensors.h's, shared with model.h */

typedef struct {
    int L, D, F, V, H, Hkv, QKV, B, T; /* B: the largest batch a call may use */
    int qkind, bits, group, embed_bits; /* train_quantizer values */
    int bf16;                           /* matrix products in bf16 with fp32 accumulation */
    size_t n_floats;
    size_t off[CUDA_NT], numel[CUDA_NT], rows[CUDA_NT], cols[CUDA_NT];
    int decay[CUDA_NT];
} cuda_layout;

typedef struct {
    double lr, weight_decay, beta1, beta2, eps, grad_clip;
} cuda_adam;

typedef struct cuda_model cuda_model;

/* Number of usable GPUs; 0 with the CUDA runtime's reason in why. */
int cuda_device_count(char *why, size_t n);

/* 0 on success; else a message in msg and *out NULL. rope_cos/sin: the host tables, T x hd/2
 * (so both backends rotate by the same floats). */
int cuda_model_create(cuda_model **out, const cuda_layout *lay, const float *rope_cos,
                      const float *rope_sin, char *msg, size_t n);
void cuda_model_free(cuda_model *g); /* NULL is fine */
/* Non-zero once any CUDA call failed; the message stays in msg. */
int cuda_failed(const cuda_model *g, char *msg, size_t n);

/* Host -> device: parameters, and Adam moments (NULL: zero them). */
void cuda_upload(cuda_model *g, const float *params, const float *adam_m, const float *adam_v);
/* Device -> host; a NULL destination is skipped. */
void cuda_download(cuda_model *g, float *params, float *adam_m, float *adam_v, float *grads);

/* Forward only (evaluation) on B <= lay.B sequences; returns the mean loss. qat / qat_embed as
 * in model.h; the quantized weights are recomputed from the parameters first when set. */
float cuda_forward(cuda_model *g, const uint16_t *inp, const uint16_t *tgt, int B, int qat,
                   int qat_embed);
/* Quantize, forward, backward, straight-through estimator, global gradient norm: the device
 * version of train_forward_backward. */
float cuda_forward_backward(cuda_model *g, const uint16_t *inp, const uint16_t *tgt, int B,
                            int qat, int qat_embed, double *gnorm);
/* Clip to hp->grad_clip and take one AdamW step (t: Adam's step counter from 1). */
void cuda_update(cuda_model *g, const cuda_adam *hp, int64_t t, double gnorm);
/* Wait for the queued work (cuda_update returns before the GPU is done): for timing. */
void cuda_synchronize(cuda_model *g);
/* Best measured GEMM throughput (FLOP/s) of this GPU on large squares, fp32 (no TF32) or bf16
 * inputs with fp32 accumulation: the peak that benchmarks quote utilisation against. 0 with
 * a message in msg on failure. */
double cuda_gemm_peak(int bf16, char *msg, size_t n);
/* The trainer's GEMM FLOP counter (model.h's model_gemm_flops; defined in layers.c): the
 * CUDA products add 2 M N K (times the batch) per call, counted on the host. */
void model_gemm_flops_add(uint64_t flops);

#ifdef __cplusplus
}
#endif

#endif
