/* plan.h: turn a model size and a budget into a QAT plan: the QAT fraction, the bit
 * width, the FP/QAT token split, the schedule and the predicted loss. Public symbols are
 * prefixed plan_. Method: docs/planner.md. */
#ifndef PLAN_H
#define PLAN_H

#include <stdio.h>

#include "data.h"
#include "law.h"
#include "qp.h"

#define PLAN_MAX_BITS 16
#define PLAN_MAX_WARNINGS 32

/* Training methods a plan can rank (seed-methods spec 6): full QAT, EfQAT (row freezing),
 * EfficientQAT's two phases alone and together. */
typedef data_method plan_method; /* data.h owns the names */
#define PLAN_METHOD_QAT DATA_METHOD_QAT
#define PLAN_METHOD_EFQAT DATA_METHOD_EFQAT
#define PLAN_METHOD_E2EQP DATA_METHOD_E2EQP
#define PLAN_METHOD_BLOCKAP DATA_METHOD_BLOCKAP
#define PLAN_METHOD_EFFICIENTQAT DATA_METHOD_EFFICIENTQAT
#define PLAN_METHOD_COUNT_ DATA_METHOD_COUNT_
#define PLAN_MAX_ROWS (PLAN_MAX_BITS * PLAN_METHOD_COUNT_)

const char *plan_method_name(plan_method m); /* data_method_name */
qp_status plan_method_parse(const char *name, plan_method *out, qp_error *err);

/* The laws a plan uses, by role. The built-in set: fp (Epoch AI's Chinchilla fit, nats per
 * token), fraction (the paper's a) and penalty (the reference QAT penalty, docs/reference-law.md).
 * A qat law (e.g. the built-in "own") replaces the penalty and is its own full-precision
 * reference unless a chinchilla law was given on purpose (fp_given). */
typedef struct {
    data_law fp;        /* chinchilla form: full-precision loss */
    data_law fraction;  /* fraction form: the constant a of f_hat */
    data_law penalty;   /* penalty form: the QAT penalty over the fp law */
    data_law qat;       /* qat form: a whole QAT law (full-precision part and penalty) */
    int has_fp, has_fraction, has_penalty, has_qat;
    int fp_given;       /* the chinchilla law was given with --law, not the default */
    char fp_name[256], fraction_name[256], penalty_name[256], qat_name[256]; /* "built-in ..." or the file */
    /* Per training method other than qat: a qat or penalty law fitted to its runs (its
     * provenance run_method says which), or an efficiency law (eta per bit width against
     * the qat law above). Index PLAN_METHOD_QAT is unused. */
    data_law method_law[PLAN_METHOD_COUNT_], eta[PLAN_METHOD_COUNT_];
    int has_method_law[PLAN_METHOD_COUNT_], has_eta[PLAN_METHOD_COUNT_];
    char method_law_name[PLAN_METHOD_COUNT_][256], eta_name[PLAN_METHOD_COUNT_][256];
} plan_laws;

qp_status plan_laws_builtin(plan_laws *laws, qp_error *err); /* fails only on a broken build */
/* Plan without a QAT law (penalty or qat): the fraction from the closed form, no ranking. */
void plan_laws_drop_qat(plan_laws *laws);
/* A built-in law by name (reference, own, chinchilla, fraction) or a law file, put in the
 * role its form gives, replacing that role's law (a qat law and a penalty law replace each
 * other). A qat or penalty law whose provenance names another training method
 * (run_method), and an efficiency law, go to that method's slot. */
qp_status plan_laws_add(plan_laws *laws, const char *file_or_name, qp_error *err);
/* The model the plan evaluates: refuses laws of different units. */
qp_status plan_laws_model(const plan_laws *laws, law_model *m, qp_error *err);
void plan_laws_free(plan_laws *laws); /* safe on NULL */

/* How a plan chooses N (docs/planner.md, "Modes"). */
typedef enum {
    PLAN_MODE_GIVEN_N = 0, /* --params, or N = sqrt(C / (6 * tokens per parameter)) */
    PLAN_MODE_SEARCH,      /* a FLOP budget without --params: N and bits searched jointly under the law
                              and the memory limit */
    PLAN_MODE_FILL_MEMORY, /* N per bit width = the largest model whose weights fit the memory */
} plan_mode;

const char *plan_mode_name(plan_mode m); /* "given-n", "search", "fill-memory" */

#define PLAN_TERNARY_BITS 1.5849625007211562 /* log2(3) */
/* "4", "2.5", or "1.58" for ternary: a bit width as a person writes it. */
const char *plan_bits_label(double bits, char *buf, size_t n);

typedef struct {
    double n_params;        /* N, all parameters; NAN: search or fill memory */
    double memory_bytes;    /* weight-memory limit in bytes; NAN for none */
    double flops;           /* training budget in FLOPs; NAN when tokens are given */
    double gpu_hours, peak_flops, mfu; /* how a GPU-hour budget made `flops` (echoed); NAN otherwise */
    double tokens;          /* training budget in tokens; NAN when FLOPs are given */
    double tokens_per_param;/* D = this * N; NAN when not given */
    double flops_per_token; /* training FLOPs per token; NAN means 6*N */
    double batch_tokens;    /* tokens per optimizer step; NAN means no step numbers */
    double decay_frac;      /* classic schedule: decay length as a fraction of each phase */
    int fill_memory;        /* without --params: N = what fits the memory (else search) */
    /* memory model (docs/planner.md, "Memory"): embeddings and head at embed_bits, the
     * other weights at the row's bits plus a 16-bit scale per group_size weights */
    double embed_params;    /* embedding + head parameters; NAN = from vocab and d_model, 0 = none */
    double vocab, d_model;  /* NAN unknown; d_model NAN = 2.1 * N_body^(1/3) where needed */
    int tied;               /* 1: the head shares the embedding matrix */
    double embed_bits;      /* default 16 */
    double group_size;      /* weights per 16-bit scale; 0 = one per row (the default) */
    double bits[PLAN_MAX_BITS]; /* log2(3) = ternary */
    int n_bits;
    /* Methods (docs/planner.md, "Methods"): n_methods 0 plans full QAT alone with the
     * token budget split as before; else rows = methods x bits, the budget in FLOPs */
    plan_method methods[PLAN_METHOD_COUNT_];
    int n_methods;
    double unfrozen;        /* efqat: fraction r of rows trained (default 0.05) */
    double row_size;        /* C_in of the per-row scale term of the storage (default 4096) */
    double blockap_share;   /* efficientqat: share of the QAT FLOPs spent on Block-AP (default 0.5) */
    double blockap_epochs;  /* E of Block-AP's (6E + 4) N_body FLOPs per calibration token (default 2) */
} plan_request;

/* Defaults: bits 1,2,3,4,6,8; decay_frac 0.2; embed_bits 16; group_size 0 (per row);
 * embed_params 0; no methods, unfrozen 0.05, row_size 4096, blockap_share 0.5, blockap_epochs 2;
 * everything else NAN. */
void plan_request_init(plan_request *r);

/* Bytes of the weights of an N-parameter model stored at `bits` under the request's memory
 * model: (N - E) * bits/8 + the 16-bit scales + E * embed_bits/8. */
double plan_memory_bytes(const plan_request *req, double n_params, double bits);
/* Embedding and head parameters of an N-parameter model under the request. */
double plan_embed_params(const plan_request *req, double n_params);
/* FLOPs of one QAT token of the method for an N-parameter model (spec 6.1): qat 6N, efqat
 * (4 + 2r)N, e2eqp 4N + 2N_lin (4N with per-row scales), blockap (6E + 4)N_body per
 * calibration token, efficientqat the harmonic mix of the last two at blockap_share of the
 * FLOPs. N_lin = N_body = N - embeddings; EfQAT's freezable weights are all of N. */
double plan_qat_flops_per_token(const plan_request *req, plan_method m, double n_params);
/* Bits per block-linear weight stored by the method (spec 6.2): b + 16/row_size per row
 * (qat, efqat), b + (b + 16)/g for the asymmetric per-group methods (g = group_size, or
 * row_size when 0). */
double plan_storage_bits(const plan_request *req, plan_method m, double bits);
/* Inference weight bytes: the body at plan_storage_bits, embeddings at embed_bits. */
double plan_storage_bytes(const plan_request *req, plan_method m, double n_params, double bits);

typedef struct {
    plan_method method;
    double bits;
    double n_params;        /* N for this row (searched, or from memory, per bit width) */
    double weight_bytes;    /* N*B/8: every parameter at B bits, the bytes of S = D / (N*B/8) */
    double memory_bytes;    /* the memory model's bytes (embeddings, scales) */
    double embed_params;    /* of this row's N under the memory model */
    int fits_memory;        /* 1 fits, 0 does not, -1 no limit given */
    int at_memory_limit;    /* search: the best N is the largest that fits */
    double d_total;         /* tokens (whole tokens, or whole batches with batch_tokens) */
    double s_total;         /* D_total / (N*B/8) */
    double f_hat;           /* closed-form optimal fraction; NAN when S_total <= 1 */
    double loss_fp;         /* full-precision loss at (N, D_total), the plan's units */
    /* With a QAT law (NAN otherwise): */
    double f_opt;           /* law-optimal fraction in [0,1] */
    double penalty;         /* loss_opt - loss_fp: the QAT penalty at f_opt */
    double penalty_lo, penalty_hi; /* bootstrap interval of the penalty; NAN without samples */
    int valid;              /* 0: a prediction of this row breaks a physical check */
    char invalid_reason[256];
    double loss_opt;        /* predicted loss of the quantized model at f_opt */
    double loss_f_hat;      /* ... at f_hat */
    double loss_10pct;      /* ... with the 10% rule */
    double extra_tokens_10pct; /* extra tokens the 10% rule needs to reach loss_opt; INFINITY if never */
    double f_opt_lo, f_opt_hi, loss_opt_lo, loss_opt_hi; /* bootstrap interval; NAN without samples */
    /* The split the plan uses: f_opt with a QAT law, else f_hat. */
    double fraction;        /* d_qat / d_total after rounding to whole tokens or batches */
    double d_fp, d_qat;     /* whole tokens */
    data_schedule schedule; /* fused for >= 3 bits, classic for 1 and 2 */
    double qat_start_token, decay_start_token, fp_decay_start_token; /* last: classic only, else NAN */
    double qat_start_step, decay_start_step, fp_decay_start_step;    /* NAN without batch_tokens */
    /* Methods (set on every row; printed and written only when the request names methods) */
    double qat_flops_per_token; /* c_m */
    double compute_fraction;    /* x_c = c_m D_qat / C, C = 6N D_fp + c_m D_qat */
    double storage_bits_per_weight, storage_bytes;
    double eta;                 /* efficiency factor used; 1 for qat and for a method's own law, NAN none */
    int rankable;               /* a law predicts this row's loss */
} plan_row;

typedef struct {
    plan_request req;
    plan_mode mode;
    plan_row rows[PLAN_MAX_ROWS];
    int n_rows;
    int ranked;        /* 1 when a QAT law ranked the bit widths */
    data_loss_units units; /* of every loss in the plan */
    int recommended;   /* row index, or -1 when no recommendation can be made */
    int tie;           /* another valid row is within the law's uncertainty of the recommended one */
    double tie_bits;   /* the closest such row's bits */
    char warnings[PLAN_MAX_WARNINGS][384];
    double severity[PLAN_MAX_WARNINGS]; /* most severe first when printed */
    char warn_key[PLAN_MAX_WARNINGS][48]; /* one warning per law and quantity */
    int n_warnings;
    int n_warnings_dropped; /* said, never cut silently */
} plan_result;

qp_status plan_run(const plan_request *req, const plan_laws *laws, plan_result *out, qp_error *err);

/* One configuration under the plan's laws ('qatplan law eval'): the full-precision loss at
 * (N, D_fp + D_qat), the QAT loss and penalty, the physical check and the same range
 * warnings as a plan. bits >= 16: full precision (penalty 0). */
typedef struct {
    law_point x;
    double loss_fp, loss, penalty;
    data_loss_units units;
    int valid;
    char invalid_reason[256];
    char warnings[PLAN_MAX_WARNINGS][384];
    int n_warnings;
} plan_eval_result;
qp_status plan_eval(const plan_laws *laws, const law_point *x, plan_eval_result *out, qp_error *err);

/* Law-optimal QAT fraction for one (N, D_total, bits): the best of a 1001-point grid on
 * [0, 1] refined by Brent's method, so never worse than any grid point. */
qp_status plan_optimal_fraction(const law_model *qat, double n_params, double d_total, double bits,
                                double *f_opt, double *loss_opt, qp_error *err);
/* Tokens D' >= d_total at which the 10% rule (f = 0.1) reaches `target` loss; INFINITY
 * when no amount of tokens does (the law's floor at f = 0.1 is above target). */
qp_status plan_tokens_to_reach(const law_model *qat, double n_params, double d_total, double bits,
                               double fraction, double target, double *tokens, qp_error *err);

void plan_print_table(FILE *f, const plan_result *res, const plan_laws *laws);
/* JSON document (malloc'ed); schema in docs/cli.md. NULL with err on failure. */
char *plan_result_to_json(const plan_result *res, const plan_laws *laws, qp_error *err);
/* A law with its provenance, for humans. */
void plan_print_law(FILE *f, const data_law *law, const char *title);

#endif
