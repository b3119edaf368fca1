/* Synthetic run records drawn from a known law: the fitter's test oracle. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fit_internal.h"

void fit_synth_options_init(fit_synth_options *o, data_law_form form)
{
    memset(o, 0, sizeof *o);
    o->noise = 0.01;
    o->outlier_lo = 0.05;
    o->outlier_hi = 0.3;
    o->seed = 1;
    if (form == DATA_LAW_QAT) {
        o->n_runs = 757;
        o->noise = 0.002;
        o->n_lo = 3e7;
        o->n_hi = 1e9;
        o->n_sizes = 6;
        o->tpp_lo = 10;
        o->tpp_hi = 300;
        o->n_tpp = 4;
        const int b[4] = {1, 2, 4, 6};
        memcpy(o->bits, b, sizeof b);
        o->n_bits = 4;
    } else {
        /* Wide on purpose: A and B are the law's values at N = 1 and D = 1, so their
         * relative error is about ln(N) times alpha's; with N over 1e7..1e10 only, 1% noise
         * leaves A and B uncertain by ~10% (docs/fitter.md). */
        o->n_runs = 500;
        o->n_lo = 1e3;
        o->n_hi = 1e11;
        o->tpp_lo = 0.2;
        o->tpp_hi = 1e5;
    }
}

void fit_synth_true_qat(data_law *out)
{
    data_law_init(out, DATA_LAW_QAT);
    /* Chinchilla part: Epoch AI's replication. Penalty terms (docs/fitter.md): a precision
     * floor of 0.15 nats at 1 bit and 0.019 at 4 bits; a too-few-QAT-tokens term
     * decaying as 1/(1+S_qat); an interaction term decaying as (1+S_fp)^-1.56. With
     * chi = mu and psi = nu the law-optimal fraction depends on S_total alone and tracks
     * the paper's exp(-6.73/ln S) within 0.03 for S = 20..1e4 (0.12 at S=20, 0.23 at 100,
     * 0.35 at 1e3, 0.49 at 1e4). */
    const double c[16] = {1.8172, 482.01, 2085.43, 0.3478, 0.3658, /* E A B alpha beta */
                          0.3,    1.0,                             /* theta kappa */
                          4.677,  0.5,    0.1,    1.0,             /* phi chi psi omega */
                          379.0,  0.5,    -1.56,  0.1,    0.0};    /* lambda mu xi nu rho */
    memcpy(out->coef, c, sizeof c);
    snprintf(out->prov.source, sizeof out->prov.source,
             "synthetic truth: fit_synth_true_qat (docs/fitter.md)");
    snprintf(out->prov.method, sizeof out->prov.method, "chosen, not fitted");
}

static void emit_point(const data_law *truth, const fit_synth_options *o, uint64_t *rng,
                       double n, double d_fp, double d_qat, int bits, data_run *r, int k)
{
    data_run_init(r);
    snprintf(r->run_id, sizeof r->run_id, "synth-%d", k);
    r->n_params = n;
    r->d_fp = d_fp;
    r->d_qat = d_qat;
    r->bits = bits;
    r->schedule = data_schedule_resolve(bits, d_fp, d_qat, DATA_SCHED_CLASSIC);
    snprintf(r->quantizer, sizeof r->quantizer, "%s", data_bits_is_fp(bits) ? "none" : "lsq");
    snprintf(r->dataset, sizeof r->dataset, "synthetic");
    r->seed = (uint64_t)k;
    law_point x = {n, d_fp, d_qat, bits};
    double loss = law_loss(truth, &x) * exp(o->noise * fit_rng_normal(rng));
    if (fit_rng_uniform(rng) < o->outlier_frac) {
        double m = o->outlier_lo + (o->outlier_hi - o->outlier_lo) * fit_rng_uniform(rng);
        /* upward by default: a broken run reports a higher loss; a lower one than the law
         * allows would also break the physical bound E <= lowest observed loss */
        loss *= exp(fit_rng_uniform(rng) < o->outlier_down ? -m : m);
    }
    r->loss = loss;
}

qp_status fit_synth_runs(const data_law *truth, const fit_synth_options *o, data_run_list *out,
                         qp_error *err)
{
    if (truth->form != DATA_LAW_CHINCHILLA && truth->form != DATA_LAW_QAT)
        return qp_fail(err, QP_ERR_INPUT, "synthetic runs need a chinchilla or qat law, not %s",
                       data_law_form_name(truth->form));
    if (!(o->noise >= 0) || !(o->outlier_frac >= 0 && o->outlier_frac <= 1) ||
        !(o->n_lo > 0 && o->n_hi >= o->n_lo) || !(o->tpp_lo > 0 && o->tpp_hi >= o->tpp_lo))
        return qp_fail(err, QP_ERR_INPUT,
                       "synthetic options out of range: need noise >= 0, outlier fraction in "
                       "[0, 1], 0 < N and tokens-per-parameter ranges");
    uint64_t rng = o->seed * 0x2545f4914f6cdd1dull + 17;
    data_run r;
    qp_status st = QP_OK;
    if (truth->form == DATA_LAW_CHINCHILLA) {
        if (o->n_runs <= 0) return qp_fail(err, QP_ERR_INPUT, "synthetic runs: n_runs must be > 0");
        for (int k = 0; k < o->n_runs && !st; k++) {
            double n = exp(log(o->n_lo) + (log(o->n_hi) - log(o->n_lo)) * fit_rng_uniform(&rng));
            double tpp = exp(log(o->tpp_lo) + (log(o->tpp_hi) - log(o->tpp_lo)) * fit_rng_uniform(&rng));
            n = round(n);
            emit_point(truth, o, &rng, n, round(n * tpp), 0, 16, &r, k);
            st = data_run_list_push(out, &r, err);
        }
        return st;
    }
    if (o->n_sizes < 1 || o->n_tpp < 1 || o->n_bits < 1 || o->n_bits > 8)
        return qp_fail(err, QP_ERR_INPUT, "synthetic qat runs need >= 1 size, token ratio and bit width");
    /* Full grid: FP runs per (size, tokens), and quantized runs per (size, tokens, bits,
     * fraction 0, 0.1, ..., 0.9); then keep n_runs of them (FP runs always kept). */
    int nf = 10;
    int nq = o->n_sizes * o->n_tpp * o->n_bits * nf, nfp = o->n_sizes * o->n_tpp;
    int keep_q = o->n_runs > 0 ? o->n_runs - nfp : nq;
    if (keep_q > nq) keep_q = nq;
    if (keep_q < 0) keep_q = 0;
    int *perm = malloc(sizeof(int) * (size_t)nq);
    unsigned char *kept = calloc((size_t)nq, 1);
    if (!perm || !kept) {
        free(perm);
        free(kept);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for synthetic runs");
    }
    for (int i = 0; i < nq; i++) perm[i] = i;
    for (int i = 0; i < keep_q; i++) { /* partial Fisher-Yates */
        int j = i + (int)(fit_rng_uniform(&rng) * (nq - i));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        kept[perm[i]] = 1;
    }
    int k = 0;
    for (int is = 0; is < o->n_sizes && !st; is++) {
        double n = o->n_sizes == 1 ? o->n_lo
                   : exp(log(o->n_lo) + (log(o->n_hi) - log(o->n_lo)) * is / (o->n_sizes - 1));
        n = round(n);
        for (int it = 0; it < o->n_tpp && !st; it++) {
            double tpp = o->n_tpp == 1 ? o->tpp_lo
                         : exp(log(o->tpp_lo) + (log(o->tpp_hi) - log(o->tpp_lo)) * it / (o->n_tpp - 1));
            double d = round(n * tpp);
            emit_point(truth, o, &rng, n, d, 0, 16, &r, k++);
            st = data_run_list_push(out, &r, err);
            for (int ib = 0; ib < o->n_bits && !st; ib++)
                for (int jf = 0; jf < nf && !st; jf++) {
                    int q = ((is * o->n_tpp + it) * o->n_bits + ib) * nf + jf;
                    if (!kept[q]) continue;
                    double dq = round(d * jf / 10.0);
                    emit_point(truth, o, &rng, n, d - dq, dq, o->bits[ib], &r, k++);
                    st = data_run_list_push(out, &r, err);
                }
        }
    }
    free(perm);
    free(kept);
    return st;
}
