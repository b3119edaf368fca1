/* The qatplan executable as a user meets it: the README's command, help, JSON output,
 * law files, and exit codes with one-line messages on bad input. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "testutil.h"

static void expect_fail(const char *args, int code, const char *msg_part)
{
    char *out = NULL, *err = NULL;
    int rc = tu_run_qatplan(args, &out, &err);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_PTR_NOT_NULL(err);
    if (err) {
        if (!strstr(err, msg_part)) fprintf(stderr, "args '%s': stderr '%s'\n", args, err);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, msg_part));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "qatplan: "));
        /* one line */
        const char *nl = strchr(err, '\n');
        CU_ASSERT_TRUE(nl != NULL && nl[1] == '\0');
    }
    CU_ASSERT_TRUE(out == NULL || out[0] == '\0');
    free(out);
    free(err);
}

static void test_readme_command(void)
{
    char *out = NULL, *err = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 2.2B --budget 1e22", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "2.20B parameters (all, embeddings included)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "fused cooldown-QAT"));
    /* the built-in reference penalty ranks bit widths, beside the full-precision loss, and
     * says where it extrapolates */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "QAT penalty: built-in reference"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "L_fp  penalty L(f_opt)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "losses in nats/token"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "full precision + "));
    CU_ASSERT_PTR_NULL(strstr(out, "is not recommended")); /* no row breaks a physical check */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Recommendation: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "<= best"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "outside the QAT law's fitted range"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "the 10% rule would predict"));
    CU_ASSERT_PTR_NULL(strstr(out, "needs never")); /* an infinite top-up is said in words */
    free(out);
    free(err);
    /* without it: the closed-form split for every width, and a pointer to --law */
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 2.2B --budget 1e22 --no-qat-law", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ranking bit widths needs a QAT"));
    /* closed-form fractions: classic for 1 and 2 bits, fused from 3 bits */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "classic FP-then-QAT"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "fused cooldown-QAT"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--law"));
    CU_ASSERT_PTR_NULL(strstr(out, "<= best"));
    free(out);
    free(err);
    /* `plan` spelled out gives the same answer */
    char *out2 = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("plan --params 2.2B --budget 1e22", &out2, NULL), 0);
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 2.2B --budget 1e22", &out, NULL), 0);
    CU_ASSERT_STRING_EQUAL(out, out2);
    free(out);
    free(out2);
}

static void test_help_lists_options_with_units(void)
{
    char *out = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("--help", &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "plan"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "law"));
    free(out);
    CU_ASSERT_EQUAL(tu_run_qatplan("plan --help", &out, NULL), 0);
    const char *opts[] = {"--params", "--budget", "--tokens", "--peak-flops", "--mfu", "--flops-per-token", "--memory",
                          "--bits", "--batch-tokens", "--decay-frac", "--law", "--json", "FLOPs", "GiB", "default"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) CU_ASSERT_PTR_NOT_NULL(strstr(out, opts[i]));
    free(out);
}

static void test_json_output(void)
{
    char *out = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 86M --tokens 2.3B --bits 6 --batch-tokens 1M --json", &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"schema\":\t\"qatplan-plan-v1\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"recommended_bits\":\t6"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"qat_start_step\""));
    CU_ASSERT_PTR_NULL(strstr(out, "null"));
    free(out);
}

static void test_gpu_hours_budget(void)
{
    char *out = NULL;
    /* 50000 GPU-h * 3600 s * 989e12 FLOP/s * 0.4 = 7.1208e22 FLOPs */
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 2.2B --budget 50000gpuh --peak-flops 989e12 --mfu 0.4 --json", &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"budget_flops\":\t7.1208e+22"));
    free(out);
}

static void test_with_law_file_ranks(void)
{
    const char *law = tu_path("qat-law.json");
    tu_write(law, "{\"schema\":\"qatplan-law-v1\",\"form\":\"qat\",\"coefficients\":{\"E\":1.8,\"A\":400,\"B\":2000,"
                  "\"alpha\":0.34,\"beta\":0.36,\"theta\":0.3,\"kappa\":0.7,\"phi\":0.5,\"chi\":0.5,\"psi\":0.02,"
                  "\"omega\":0.15,\"lambda\":6,\"mu\":0.5,\"xi\":-0.5,\"nu\":0.02,\"rho\":0.25},"
                  "\"provenance\":{\"source\":\"test\",\"n_params_range\":[1e8,1e9],\"bits\":[1,2,4,6]}}");
    char args[4096], *out = NULL, *err = NULL;
    snprintf(args, sizeof args, "--params 2.2B --budget 1e22 --law %s", law);
    CU_ASSERT_EQUAL(tu_run_qatplan(args, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Recommendation:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "predicted loss"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "<= best"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "outside the QAT law's fitted range"));
    free(out);
    free(err);
    snprintf(args, sizeof args, "law show %s", law);
    CU_ASSERT_EQUAL(tu_run_qatplan(args, &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "xi      = -0.5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "source: test"));
    free(out);
    /* a qat law given and --no-qat-law contradict */
    snprintf(args, sizeof args, "--params 2.2B --budget 1e22 --law %s --no-qat-law", law);
    CU_ASSERT_EQUAL(tu_run_qatplan(args, NULL, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "contradicts"));
    free(err);
    /* the built-in laws, with the reference penalty's and the own law's provenance and units */
    CU_ASSERT_EQUAL(tu_run_qatplan("law show", &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "built-in reference QAT penalty (the default): form penalty"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "built-in own-sweep QAT law (--law own): form qat"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "loss units: nats/byte"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "loss units: nats/token"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "runs: "));
    free(out);
}

static void test_bad_input(void)
{
    expect_fail("--params 2.2b --budget 1e22", 2, "ambiguous lower-case suffix");
    expect_fail("--params -1B --budget 1e22", 2, "negative");
    expect_fail("--params 2.2B --budget 0", 2, "zero");
    expect_fail("--params 2.2B --budget nan", 2, "not a number");
    expect_fail("--params 2.2B --budget -nan", 2, "not a number");
    expect_fail("--params 2.2B --budget 1e999", 2, "overflows");
    expect_fail("--params 2.2B", 2, "no budget");
    expect_fail("--tokens 1T", 2, "give the model size");
    expect_fail("--params 7B --tokens 2T --flops-per-token 1e10", 2, "drop one");
    expect_fail("--budget 1e22 --flops-per-token 1e10", 2, "drop --flops-per-token");
    expect_fail("--params 1B --embed-params 2B --tokens 1T", 2, "smaller than --params");
    expect_fail("--params 2.2B --budget 1e22 --bits 2.55", 2, "more than one decimal");
    expect_fail("--params 2.2B --budget 50000gpuh --peak-flops 989TFLOPS --mfu 150%", 2, "out of range");
    expect_fail("--params 2.2B --budget 1e22 --no-qat-law --tokens-per-param 20", 2, "one budget");
    expect_fail("--params 2.2B --budget 1e22 --tokens 1T", 2, "not both");
    expect_fail("--params 2.2B --budget 50000gpuh", 2, "--peak-flops");
    expect_fail("--params 2.2B --budget 1e22 --mfu 0.4", 2, "GPU-hour budget");
    expect_fail("--params 2.2B --budget 1e22 --mfu 1.5 --peak-flops 1e15", 2, "out of range");
    expect_fail("--params 2.2B --budget 1e22 --bits 4,9", 2, "'9' is out of range");
    expect_fail("--params 2.2B --budget 1e22 --bits 4,", 2, "empty entry");
    expect_fail("--params 2.2B --budget 1e22 --bits ,4", 2, "empty entry");
    expect_fail("--params 2.2B --budget 1e22 --bits 2,,4", 2, "empty entry");
    expect_fail("--params 2.2B --budget 1e22 --batch-tokens 1.5", 2, "not a whole number");
    expect_fail("--params 2.2B --budget 1e22 --batch-tokens 1e13", 2, "at most");
    expect_fail("--params 2.2B --budget 1e22 --bits 4,4", 2, "twice");
    expect_fail("--params 2.2B --budget 1e22 --memory 2Gb", 2, "ambiguous");
    expect_fail("--params 2.2B --budget 1e22 --frobnicate", 2, "unknown option");
    expect_fail("--params 2.2B --budget", 2, "needs a value");
    expect_fail("--params 2.2B --budget 1e22 extra", 2, "unexpected argument");
    expect_fail("frobnicate", 2, "unknown command");
    expect_fail("--params 2.2B --budget 1e22 --law /nonexistent/law.json", 1, "/nonexistent/law.json");
    const char *bad = tu_path("bad-law.json");
    tu_write(bad, "{\"schema\":\"qatplan-law-v1\",\"form\":\"qat\",\"coefficients\":{\"E\":1.8},\"provenance\":{\"source\":\"x\"}}");
    char args[4096];
    snprintf(args, sizeof args, "--params 2.2B --budget 1e22 --law %s", bad);
    expect_fail(args, 1, "needs coefficient \"A\"");
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_readme_command);
    TU_ADD(s, test_help_lists_options_with_units);
    TU_ADD(s, test_json_output);
    TU_ADD(s, test_gpu_hours_budget);
    TU_ADD(s, test_with_law_file_ranks);
    TU_ADD(s, test_bad_input);
}

int main(void) { return tu_main("cli_plan", add); }
