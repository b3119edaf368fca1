/* Bringing runs from other trainers: CSV column aliases, total tokens + QAT fraction, count
 * suffixes, tabs, a UTF-8 BOM, runs excluded by status or a non-finite loss, one error naming
 * every missing column; JSONL with only what a fit needs; and a real fit of such a file. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "law.h"
#include "testutil.h"

static void expect_csv_error(const char *text, const char *what1, const char *what2)
{
    data_run_list l;
    data_run_list_init(&l);
    qp_error err = {0};
    CU_ASSERT_EQUAL(data_runs_parse_csv(text, "x.csv", &l, &err), QP_ERR_PARSE);
    CU_ASSERT_EQUAL(l.n, 0);
    if (!strstr(err.msg, what1) || !strstr(err.msg, what2)) fprintf(stderr, "message: %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, what1));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, what2));
    data_run_list_free(&l);
}

static void test_csv_forgiving(void)
{
    /* as a spreadsheet exports a trainer's log: BOM, tabs, aliases in other cases, suffixes */
    const char *csv = "\xEF\xBB\xBF"
                      "Run_Name\tModel_Params\tTotal_Tokens\tWeight_Bits\tQAT_Fraction\tVal_Loss\tStatus\r\n"
                      "a\t125M\t2.5B\t4\t0.25\t3.25\t\r\n"
                      "b\t1.25e8\t2500000000\t16\t0\t3.10\tcompleted\r\n"
                      "c\t125M\t2.5B\t2\t1\tNaN\t\r\n"
                      "d\t125M\t2.5B\t2\t0.5\t\t\r\n"
                      "e\t125M\t2.5B\t8\t0.5\t3.3\tcrashed\r\n"
                      "f\t125M\t2.5B\tbf16\t0\tinf\tdiverged\r\n";
    data_run_list l;
    data_run_list_init(&l);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(data_runs_parse_csv(csv, "log.csv", &l, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 6);
    const data_run *r = l.runs;
    CU_ASSERT_STRING_EQUAL(r[0].run_id, "a");
    CU_ASSERT_EQUAL(r[0].n_params, 125e6);
    CU_ASSERT_EQUAL(r[0].d_qat, 2.5e9 * 0.25);
    CU_ASSERT_EQUAL(r[0].d_fp, 2.5e9 - 2.5e9 * 0.25);
    CU_ASSERT_EQUAL(r[0].bits, 4);
    CU_ASSERT_EQUAL(r[0].schedule, DATA_SCHED_CLASSIC);
    CU_ASSERT_EQUAL(r[0].status, DATA_RUN_OK);
    CU_ASSERT_EQUAL(r[0].loss, 3.25);
    CU_ASSERT_EQUAL(r[1].status, DATA_RUN_OK);
    CU_ASSERT_EQUAL(r[1].schedule, DATA_SCHED_FP_ONLY);
    CU_ASSERT_EQUAL(r[1].d_fp, 2.5e9);
    CU_ASSERT_EQUAL(r[1].d_qat, 0);
    /* f = 1: QAT from scratch, D_fp exactly 0; a NaN loss: diverged, with the reason */
    CU_ASSERT_EQUAL(r[2].d_fp, 0);
    CU_ASSERT_EQUAL(r[2].schedule, DATA_SCHED_QAT_ONLY);
    CU_ASSERT_EQUAL(r[2].status, DATA_RUN_DIVERGED);
    CU_ASSERT_PTR_NOT_NULL(strstr(r[2].reason, "nan"));
    /* an empty loss: failed, "no loss recorded"; an unknown status: failed, naming it */
    CU_ASSERT_EQUAL(r[3].status, DATA_RUN_FAILED);
    CU_ASSERT_STRING_EQUAL(r[3].reason, "no loss recorded");
    CU_ASSERT_EQUAL(r[4].status, DATA_RUN_FAILED);
    CU_ASSERT_STRING_EQUAL(r[4].reason, "status 'crashed'");
    CU_ASSERT_EQUAL(r[5].bits, 16);
    CU_ASSERT_EQUAL(r[5].status, DATA_RUN_DIVERGED);
    data_run_list_free(&l);

    /* the explicit split and the total + fraction together, agreeing; D_fp/D_qat cells empty
     * in one row fall back to the total */
    data_run_list_init(&l);
    CU_ASSERT_EQUAL_FATAL(data_runs_parse_csv("params,D_fp,D_qat,tokens,f,bits,eval_loss\n"
                                              "1e8,7e8,3e8,1e9,0.3,4,3.5\n"
                                              "1e8,,,1e9,0.3,4,3.5\n",
                                              "x.csv", &l, &err),
                          QP_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 2);
    CU_ASSERT_EQUAL(l.runs[0].d_fp, 7e8);
    CU_ASSERT_DOUBLE_EQUAL(l.runs[1].d_qat, 3e8, 1);
    data_run_list_free(&l);
    /* the qatplan spelling still reads, and full-precision runs need no fraction column */
    data_run_list_init(&l);
    CU_ASSERT_EQUAL(data_runs_parse_csv("N,tokens,bits,loss\n1e8,20B,16,3.1\n", "x.csv", &l, &err), QP_OK);
    CU_ASSERT_EQUAL(l.n == 1 ? l.runs[0].d_fp : 0, 20e9);
    data_run_list_free(&l);
}

static void test_csv_refusals(void)
{
    /* one error naming every missing column with the names accepted for it */
    expect_csv_error("run,size,steps\n1,2,3\n", "x.csv:1: the header lacks N (N, n_params, params, model_params",
                     "; bits (bits, weight_bits, w_bits); loss (loss, val_loss, eval_loss, final_val_loss); tokens "
                     "(D_fp and D_qat: D_fp, fp_tokens / D_qat, qat_tokens; or total tokens: tokens, total_tokens, D, "
                     "D_total, with a QAT fraction: qat_fraction, f, fraction)");
    expect_csv_error("N,D_fp,bits,val_loss\n1e6,1e7,4,3\n", "header lacks tokens", "D_qat");
    /* a fraction outside [0, 1]; the two forms disagreeing, naming the row */
    expect_csv_error("N,tokens,f,bits,loss\n1e8,1e9,0.3,4,3\n1e8,1e9,1.5,4,3\n", "x.csv:3", "in [0, 1]");
    expect_csv_error("N,D_fp,D_qat,tokens,bits,loss\n1e8,7e8,3e8,2e9,4,3\n", "x.csv:2", "total tokens");
    expect_csv_error("N,D_fp,D_qat,f,bits,loss\n1e8,7e8,3e8,0.5,4,3\n", "x.csv:2", "QAT fraction = 0.5");
    /* a quantized run without its fraction; two columns for one quantity; bad cells */
    expect_csv_error("N,tokens,bits,loss\n1e8,1e9,4,3\n", "x.csv:2", "needs its QAT fraction");
    expect_csv_error("N,params,D_fp,D_qat,bits,loss\n1,1,1,1,4,3\n", "columns 'N' and 'params' both give N", "keep one");
    expect_csv_error("N,D_fp,D_qat,bits,loss\n125m,1e9,1e8,4,3\n", "x.csv:2", "lower-case");
    expect_csv_error("N,D_fp,D_qat,bits,loss\n125M,1e9,1e8,4,abc\n", "x.csv:2", "loss = 'abc' is not a number");
    expect_csv_error("N,D_fp,D_qat,bits,loss\n-5,1e9,1e8,4,3\n", "x.csv:2", "N = '-5' is not a count");
}

static void test_jsonl_foreign(void)
{
    /* only N, tokens, bits and loss: the rest defaults (run_id FILE:line-N, schedule from the
     * split, status ok, or diverged for a non-finite loss) */
    const char *text = "\xEF\xBB\xBF{\"n_params\": \"125M\", \"tokens\": 2.5e9, \"qat_fraction\": 0.4, \"bits\": 4, "
                       "\"val_loss\": 3.2}\n"
                       "{\"N\": 1e8, \"d_fp\": 1e9, \"d_qat\": 0, \"weight_bits\": 16, \"loss\": 3.4, \"name\": \"fp\"}\n"
                       "{\"params\": 1e8, \"D_fp\": 0, \"D_qat\": 1e9, \"bits\": 2, \"loss\": \"NaN\"}\n";
    data_run_list l;
    data_run_list_init(&l);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(data_runs_parse_jsonl(text, "dir/other.jsonl", &l, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 3);
    const data_run *r = l.runs;
    CU_ASSERT_STRING_EQUAL(r[0].run_id, "other.jsonl:line-1");
    CU_ASSERT_EQUAL(r[0].n_params, 125e6);
    CU_ASSERT_EQUAL(r[0].d_qat, 2.5e9 * 0.4);
    CU_ASSERT_EQUAL(r[0].schedule, DATA_SCHED_CLASSIC);
    CU_ASSERT_EQUAL(r[0].status, DATA_RUN_OK);
    CU_ASSERT_EQUAL(r[0].loss, 3.2);
    CU_ASSERT_STRING_EQUAL(r[1].run_id, "fp");
    CU_ASSERT_EQUAL(r[1].schedule, DATA_SCHED_FP_ONLY);
    CU_ASSERT_EQUAL(r[2].schedule, DATA_SCHED_QAT_ONLY);
    CU_ASSERT_EQUAL(r[2].status, DATA_RUN_DIVERGED);
    /* written back as qatplan's own records, they read again to the same runs */
    for (size_t i = 0; i < l.n; i++) {
        char *line = data_run_to_json(&r[i]);
        data_run_list back;
        data_run_list_init(&back);
        CU_ASSERT_EQUAL_FATAL(data_runs_parse_jsonl(line, "w", &back, &err), QP_OK);
        CU_ASSERT_STRING_EQUAL(back.runs[0].run_id, r[i].run_id);
        CU_ASSERT_EQUAL(back.runs[0].d_fp, r[i].d_fp);
        CU_ASSERT_EQUAL(back.runs[0].d_qat, r[i].d_qat);
        CU_ASSERT_EQUAL(back.runs[0].status, r[i].status);
        CU_ASSERT_STRING_EQUAL(back.runs[0].reason, r[i].reason);
        CU_ASSERT_EQUAL(back.runs[0].schedule, r[i].schedule);
        data_run_list_free(&back);
        free(line);
    }
    data_run_list_free(&l);
    /* every missing quantity at once; a fraction out of range; the two forms disagreeing */
    data_run_list_init(&l);
    CU_ASSERT_EQUAL(data_runs_parse_jsonl("{\"run_id\": \"x\", \"bits\": 4}\n", "r.jsonl", &l, &err), QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "r.jsonl:1: missing n_params, d_fp and d_qat (or tokens and qat_fraction), loss"));
    CU_ASSERT_EQUAL(data_runs_parse_jsonl("{\"N\": 1e8, \"tokens\": 1e9, \"f\": 2, \"bits\": 4, \"loss\": 3}\n", "r.jsonl", &l,
                                          &err),
                    QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "in [0, 1]"));
    CU_ASSERT_EQUAL(data_runs_parse_jsonl("{\"N\": 1e8, \"tokens\": 1e9, \"d_fp\": 1e9, \"d_qat\": 1e9, \"bits\": 4, "
                                          "\"loss\": 3}\n",
                                          "r.jsonl", &l, &err),
                    QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "total tokens"));
    CU_ASSERT_EQUAL(l.n, 0);
    /* one phase with the total: the other follows, and the fraction must agree with it */
    CU_ASSERT_EQUAL_FATAL(data_runs_parse_jsonl("{\"N\": 1e8, \"tokens\": 1e9, \"d_qat\": 2e8, \"bits\": 4, \"loss\": 3}\n"
                                                "{\"N\": 1e8, \"tokens\": 1e9, \"d_fp\": 7e8, \"f\": 0.3, \"bits\": 4, \"loss\": 3}\n",
                                                "r.jsonl", &l, &err),
                          QP_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 2);
    CU_ASSERT_EQUAL(l.runs[0].d_fp, 8e8);
    CU_ASSERT_EQUAL(l.runs[1].d_qat, 3e8);
    data_run_list_free(&l);
    data_run_list_init(&l);
    CU_ASSERT_EQUAL(data_runs_parse_jsonl("{\"N\": 1e8, \"tokens\": 1e9, \"d_fp\": 7e8, \"f\": 0.5, \"bits\": 4, \"loss\": 3}\n",
                                          "r.jsonl", &l, &err),
                    QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "QAT fraction"));
    CU_ASSERT_EQUAL(data_runs_parse_jsonl("{\"N\": 1e8, \"d_fp\": 7e8, \"bits\": 4, \"loss\": 3}\n", "r.jsonl", &l, &err),
                    QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "d_fp is given without d_qat"));
    CU_ASSERT_EQUAL(data_runs_parse_jsonl("{\"N\": 1e8, \"tokens\": 1e9, \"d_fp\": 2e9, \"bits\": 4, \"loss\": 3}\n",
                                          "r.jsonl", &l, &err),
                    QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "exceed the total"));
    CU_ASSERT_EQUAL(l.n, 0);
    data_run_list_free(&l);
}

/* The done-when: a CSV with a BOM, aliased columns, total tokens + fraction,
 * 125M-style cells, tabs and one NaN row fits, reporting 1 run excluded and naming it. The
 * losses come from the built-in chinchilla law, so the fitted law must predict them back. */
static void test_fit_imported_csv(void)
{
    data_law truth;
    law_builtin_chinchilla(&truth);
    static const char *const sizes[] = {"50M", "125M", "350M", "760M", "1.3B"};
    static const char *const toks[] = {"1B", "2.5B", "5B", "10B", "25B"};
    char *csv = malloc(1 << 14);
    size_t k = (size_t)snprintf(csv, 1 << 14, "\xEF\xBB\xBFrun_name\tmodel_params\ttotal_tokens\tweight_bits\t"
                                              "qat_fraction\tval_loss\n");
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            double n = 0, d = 0;
            qp_parse_count(sizes[i], "N", &n, NULL);
            qp_parse_count(toks[j], "D", &d, NULL);
            law_point x = {n, d, 0, 16};
            k += (size_t)snprintf(csv + k, (1 << 14) - k, "fp-%s-%s\t%s\t%s\t16\t0\t%.9f\n", sizes[i], toks[j], sizes[i],
                                  toks[j], law_loss(&truth, &x));
        }
    /* a quantized run (not used by the chinchilla form) and a run that diverged */
    k += (size_t)snprintf(csv + k, (1 << 14) - k, "q4\t125M\t5B\t4\t0.25\t3.3\nblew-up\t350M\t10B\t16\t0\tNaN\n");
    tu_write(tu_path("trainer log.csv"), csv);
    free(csv);
    char cmd[2048], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "fit '%s' -o '%s' --form chinchilla", tu_path("trainer log.csv"), tu_path("imported.json"));
    int rc = tu_run_qatplan(cmd, &out, &err);
    if (rc) fprintf(stderr, "%s\n%s\n", out, err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "25 of 27 runs used"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "1 diverged"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "1 not used by this form"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "excluded runs: blew-up (diverged: loss is nan)"));
    data_law fit;
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(data_law_read(tu_path("imported.json"), &fit, &e), QP_OK);
    CU_ASSERT_EQUAL(fit.prov.n_excluded, 1);
    law_point mid = {350e6, 5e9, 0, 16}, far = {1.3e9, 25e9, 0, 16};
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&fit, &mid) / law_loss(&truth, &mid), 1, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&fit, &far) / law_loss(&truth, &far), 1, 1e-3);
    data_law_free(&fit);
    data_law_free(&truth);
    free(out);
    free(err);
    /* too few runs to fit: the refusal still names the run it excluded */
    tu_write(tu_path("few.csv"), "N,tokens,bits,loss,name\n1e8,2e9,16,nan,gone\n2e8,2e9,16,3,kept\n");
    snprintf(cmd, sizeof cmd, "fit %s -o %s --form chinchilla", tu_path("few.csv"), tu_path("few.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "excluded runs: gone (diverged: loss is nan)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot identify the chinchilla form"));
    free(out);
    free(err);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_csv_forgiving);
    TU_ADD(s, test_csv_refusals);
    TU_ADD(s, test_jsonl_foreign);
    TU_ADD(s, test_fit_imported_csv);
}

int main(void) { return tu_main("import", add); }
