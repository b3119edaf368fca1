/* The plan's laws by role: the built-in set, law files and built-in laws by name, and the
 * law model a plan evaluates. */
#include "plan.h"

#include <stdio.h>
#include <string.h>

qp_status plan_laws_builtin(plan_laws *laws, qp_error *err)
{
    memset(laws, 0, sizeof *laws);
    law_builtin_chinchilla(&laws->fp);
    law_builtin_fraction(&laws->fraction);
    laws->has_fp = laws->has_fraction = 1;
    snprintf(laws->fp_name, sizeof laws->fp_name, "built-in chinchilla");
    snprintf(laws->fraction_name, sizeof laws->fraction_name, "built-in");
    qp_status st = law_builtin_reference(&laws->penalty, err);
    if (st) return st;
    laws->has_penalty = 1;
    snprintf(laws->penalty_name, sizeof laws->penalty_name, "built-in reference");
    return QP_OK;
}

void plan_laws_drop_qat(plan_laws *laws)
{
    if (laws->has_qat) data_law_free(&laws->qat);
    if (laws->has_penalty) data_law_free(&laws->penalty);
    laws->has_qat = laws->has_penalty = 0;
    laws->qat_name[0] = laws->penalty_name[0] = 0;
}

/* Put a law in the role its form gives. A qat law and a penalty law are alternatives (a
 * qat law carries its own full-precision part): the later one replaces the earlier. */
/* A qat or penalty law fitted to another method's runs, or an efficiency law: that method's
 * slot. 1 when placed, 0 when the law is full QAT's own, -1 on error. */
static int method_put(plan_laws *laws, data_law *law, const char *name, qp_error *err)
{
    const char *rm = law->prov.run_method;
    int eff = law->form == DATA_LAW_EFFICIENCY;
    if (!eff && (law->form == DATA_LAW_CHINCHILLA || law->form == DATA_LAW_FRACTION || !rm[0] || !strcmp(rm, "qat")))
        return 0;
    plan_method pm;
    if (plan_method_parse(rm, &pm, NULL) || pm == PLAN_METHOD_QAT) {
        qp_fail(err, QP_ERR_INPUT, "%s: a %s law for training method '%s', which the planner does not know: use a "
                                   "law fitted with --method efqat, e2eqp, blockap or efficientqat", name,
                data_law_form_name(law->form), rm);
        data_law_free(law);
        return -1;
    }
    data_law *slot = eff ? &laws->eta[pm] : &laws->method_law[pm];
    int *has = eff ? &laws->has_eta[pm] : &laws->has_method_law[pm];
    if (*has) data_law_free(slot);
    *slot = *law;
    *has = 1;
    snprintf(eff ? laws->eta_name[pm] : laws->method_law_name[pm], sizeof laws->eta_name[pm], "%s", name);
    return 1;
}

static qp_status laws_put(plan_laws *laws, data_law *law, const char *name, qp_error *err)
{
    data_law *slot = NULL;
    int *has = NULL;
    char *dst = NULL;
    int placed = method_put(laws, law, name, err);
    if (placed) return placed < 0 ? err->status : QP_OK;
    switch (law->form) {
    case DATA_LAW_CHINCHILLA:
        slot = &laws->fp, has = &laws->has_fp, dst = laws->fp_name;
        laws->fp_given = 1;
        break;
    case DATA_LAW_FRACTION: slot = &laws->fraction, has = &laws->has_fraction, dst = laws->fraction_name; break;
    case DATA_LAW_QAT:
    case DATA_LAW_PENALTY:
        plan_laws_drop_qat(laws);
        if (law->form == DATA_LAW_QAT) slot = &laws->qat, has = &laws->has_qat, dst = laws->qat_name;
        else slot = &laws->penalty, has = &laws->has_penalty, dst = laws->penalty_name;
        break;
    case DATA_LAW_EFFICIENCY: /* method_put took it */
    case DATA_LAW_FORM_COUNT_:
        data_law_free(law);
        return qp_fail(err, QP_ERR_INPUT, "%s: unknown law form", name);
    }
    if (*has) data_law_free(slot);
    *slot = *law;
    *has = 1;
    snprintf(dst, sizeof laws->fp_name, "%s", name);
    return QP_OK;
}

qp_status plan_laws_add(plan_laws *laws, const char *file_or_name, qp_error *err)
{
    data_law law;
    qp_status st = law_read(file_or_name, &law, err);
    if (st) return st;
    char label[256];
    snprintf(label, sizeof label, law_builtin_is_name(file_or_name) ? "built-in %s" : "%s", file_or_name);
    return laws_put(laws, &law, label, err);
}

qp_status plan_laws_model(const plan_laws *laws, law_model *m, qp_error *err)
{
    const data_law *pen = laws->has_qat ? &laws->qat : laws->has_penalty ? &laws->penalty : NULL;
    /* A qat law is its own full-precision reference unless a chinchilla law was given on purpose. */
    const data_law *fp = laws->has_qat && !laws->fp_given ? &laws->qat : laws->has_fp ? &laws->fp : NULL;
    return law_model_init(m, fp, pen, err);
}

void plan_laws_free(plan_laws *laws)
{
    if (!laws) return;
    if (laws->has_fp) data_law_free(&laws->fp);
    if (laws->has_fraction) data_law_free(&laws->fraction);
    plan_laws_drop_qat(laws);
    laws->has_fp = laws->has_fraction = 0;
    for (int i = 0; i < PLAN_METHOD_COUNT_; i++) {
        if (laws->has_method_law[i]) data_law_free(&laws->method_law[i]);
        if (laws->has_eta[i]) data_law_free(&laws->eta[i]);
        laws->has_method_law[i] = laws->has_eta[i] = 0;
    }
}
