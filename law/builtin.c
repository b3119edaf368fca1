/* The built-in laws: Epoch AI's Chinchilla refit, the paper's fraction constant, the
 * reference QAT penalty and the law fitted to qatplan's own sweep (both compiled in from
 * data/laws/, byte for byte). Provenance: docs/law.md and docs/reference-law.md. */
#include "law.h"

#include <stdio.h>
#include <string.h>

void law_builtin_chinchilla(data_law *out)
{
    data_law_init(out, DATA_LAW_CHINCHILLA);
    /* Besiroglu et al. 2024 (arXiv 2404.10102), Epoch AI's refit of Chinchilla approach 3. */
    const double c[5] = {1.8172, 482.01, 2085.43, 0.3478, 0.3658};
    memcpy(out->coef, c, sizeof c);
    out->units = DATA_UNITS_NATS_PER_TOKEN;
    out->vocab = 32000; /* Chinchilla's SentencePiece tokenizer */
    snprintf(out->tokenizer, sizeof out->tokenizer, "SentencePiece 32K (MassiveText)");
    snprintf(out->prov.source, sizeof out->prov.source,
             "built-in: Epoch AI's replication of Chinchilla approach 3 (Besiroglu et al. 2024, "
             "arXiv 2404.10102), full-precision loss of models trained on MassiveText");
    snprintf(out->prov.method, sizeof out->prov.method,
             "published coefficients; Huber (delta 1e-3) on log loss, L-BFGS from 4,500 starts, 245 points");
    out->prov.n_min = 4.4e7;  /* the Chinchilla models' range (44M-16B parameters) */
    out->prov.n_max = 1.6e10;
    out->prov.d_min = 5e9;
    out->prov.d_max = 5e11;
}

void law_builtin_fraction(data_law *out)
{
    data_law_init(out, DATA_LAW_FRACTION);
    out->coef[0] = LAW_FRACTION_A_PAPER;
    snprintf(out->prov.source, sizeof out->prov.source,
             "built-in: Dremov et al. 2025, Compute-Optimal Quantization-Aware Training (arXiv "
             "2509.22935), closed-form optimal QAT fraction, DCLM data");
    snprintf(out->prov.method, sizeof out->prov.method,
             "published constant; reported MAE 0.091 on the optimal fraction");
    out->prov.n_min = 8.6e7; /* the paper's models: 86M-2.2B parameters, 2.3B-1.4T tokens */
    out->prov.n_max = 2.2e9;
    out->prov.d_min = 2.3e9;
    out->prov.d_max = 1.4e12;
    static const int bits[] = {1, 2, 4, 6};
    memcpy(out->prov.bits, bits, sizeof bits);
    out->prov.n_bits = 4;
}

/* generated from data/laws/ by cmake/embed-file.cmake */
extern const char law_builtin_own_json[];
extern const char law_builtin_reference_json[];

static qp_status parse_builtin(const char *json, const char *what, data_law_form form, data_law *out,
                               qp_error *err)
{
    qp_status st = data_law_parse(json, what, out, err);
    if (st) return st;
    if (out->form != form) {
        data_law_free(out);
        return qp_fail(err, QP_ERR_PARSE, "the %s is of form %s, not %s: rebuild qatplan from data/laws/", what,
                       data_law_form_name(out->form), data_law_form_name(form));
    }
    return QP_OK;
}

qp_status law_builtin_own(data_law *out, qp_error *err)
{
    return parse_builtin(law_builtin_own_json, "built-in own-sweep law", DATA_LAW_QAT, out, err);
}

qp_status law_builtin_reference(data_law *out, qp_error *err)
{
    return parse_builtin(law_builtin_reference_json, "built-in reference penalty", DATA_LAW_PENALTY, out, err);
}

static const char *const builtin_names[] = {"reference", "own", "chinchilla", "fraction"};

int law_builtin_is_name(const char *name)
{
    for (size_t i = 0; i < sizeof builtin_names / sizeof builtin_names[0]; i++)
        if (!strcmp(name, builtin_names[i])) return 1;
    return 0;
}

qp_status law_read(const char *file_or_name, data_law *out, qp_error *err)
{
    return law_builtin_is_name(file_or_name) ? law_builtin_by_name(file_or_name, out, err)
                                             : data_law_read(file_or_name, out, err);
}

qp_status law_builtin_by_name(const char *name, data_law *out, qp_error *err)
{
    if (!strcmp(name, "reference")) return law_builtin_reference(out, err);
    if (!strcmp(name, "own")) return law_builtin_own(out, err);
    if (!strcmp(name, "chinchilla")) {
        law_builtin_chinchilla(out);
        return QP_OK;
    }
    if (!strcmp(name, "fraction")) {
        law_builtin_fraction(out);
        return QP_OK;
    }
    return qp_fail(err, QP_ERR_INPUT,
                   "no built-in law named '%s': the built-in laws are reference, own, chinchilla and fraction", name);
}
