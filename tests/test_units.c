/* Unit parsing: every accepted spelling gives the right number; every bad one is refused
 * with a message that names the problem. */
#include <math.h>
#include <string.h>

#include "qp.h"
#include "testutil.h"

typedef struct { const char *in; double want; } good_case;
typedef struct { const char *in; const char *msg_part; } bad_case;

static void test_count_good(void)
{
    static const good_case cases[] = {
        {"2.2B", 2.2e9}, {"86M", 86e6}, {"2200000000", 2.2e9}, {"2.2e9", 2.2e9}, {"1.4T", 1.4e12},
        {"850K", 850e3}, {"1G", 1e9}, {"0.5M", 5e5}, {"1e3K", 1e6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double v = 0;
        qp_error err = {0};
        CU_ASSERT_EQUAL(qp_parse_count(cases[i].in, "--params", &v, &err), QP_OK);
        CU_ASSERT_DOUBLE_EQUAL(v, cases[i].want, cases[i].want * 1e-12);
    }
}

/* A subnormal value is a number (a JSON grid holds it, and the sweep passes it on as
 * text): the parser takes it as strtod gives it, though strtod flags it with ERANGE. Found
 * by fuzz_grid: a grid's lr of 3.2e-311 passed the grid's range check and the trainer
 * then refused it as an overflow. */
static void test_subnormal_accepted(void)
{
    double v = 0;
    CU_ASSERT_EQUAL(qp_parse_real("3.2e-311", "--lr", 0, 1, &v, NULL), QP_OK);
    CU_ASSERT_TRUE(v > 0 && v < 1e-307);
}

static void test_count_bad(void)
{
    static const bad_case cases[] = {
        {"2.2b", "ambiguous"}, {"86m", "ambiguous"}, {"-5B", "negative"}, {"0", "zero"},
        {"nan", "not a number"}, {"-nan", "not a number"}, {"+NaN", "not a number"}, {"inf", "not finite"},
        {"-inf", "not finite"}, {"1e400", "overflows"}, {"", "empty"},
        {"abc", "not a number"}, {"2.2X", "unknown suffix"}, {"2.2BB", "unknown suffix"},
        {"0x10", "hexadecimal"}, {"2.2 B", "unknown suffix"}, {"1e308T", "overflows"},
        {"1e-400", "underflows to zero"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double v = -1;
        qp_error err = {0};
        qp_status st = qp_parse_count(cases[i].in, "--params", &v, &err);
        CU_ASSERT_EQUAL(st, QP_ERR_INPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[i].msg_part));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--params"));
        if (!strstr(err.msg, cases[i].msg_part)) fprintf(stderr, "input '%s': message '%s'\n", cases[i].in, err.msg);
        CU_ASSERT_EQUAL(v, -1); /* never written on failure */
    }
}

static void test_flops_and_budget(void)
{
    double v;
    int gpuh = -1;
    qp_error err = {0};
    CU_ASSERT_EQUAL(qp_parse_flops("1e22", "--budget", &v, &err), QP_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 1e22, 1e10);
    CU_ASSERT_EQUAL(qp_parse_flops("1e22FLOP", "--budget", &v, &err), QP_OK);
    CU_ASSERT_EQUAL(qp_parse_flops("3.5e21FLOPs", "--budget", &v, &err), QP_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 3.5e21, 1e9);
    CU_ASSERT_EQUAL(qp_parse_budget("50000gpuh", &v, &gpuh, &err), QP_OK);
    CU_ASSERT_EQUAL(gpuh, 1);
    CU_ASSERT_DOUBLE_EQUAL(v, 50000, 1e-9);
    CU_ASSERT_EQUAL(qp_parse_budget("1e22", &v, &gpuh, &err), QP_OK);
    CU_ASSERT_EQUAL(gpuh, 0);
    CU_ASSERT_EQUAL(qp_parse_flops("1e22 tokens", "--budget", &v, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unknown unit"));
    CU_ASSERT_EQUAL(qp_parse_budget("-1e22", &v, &gpuh, &err), QP_ERR_INPUT);
    CU_ASSERT_EQUAL(qp_parse_budget("0gpuh", &v, &gpuh, &err), QP_ERR_INPUT);
    CU_ASSERT_EQUAL(qp_parse_budget("1e999", &v, &gpuh, &err), QP_ERR_INPUT);
}

static void test_bytes(void)
{
    static const good_case good[] = {
        {"1.5GiB", 1.5 * 1073741824.0}, {"2GB", 2e9}, {"512MiB", 512 * 1048576.0}, {"64KB", 64e3},
        {"1e9", 1e9}, {"100B", 100}, {"1TiB", 1099511627776.0},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        double v = 0;
        CU_ASSERT_EQUAL(qp_parse_bytes(good[i].in, "--memory", &v, NULL), QP_OK);
        CU_ASSERT_DOUBLE_EQUAL(v, good[i].want, 1e-6);
    }
    static const bad_case bad[] = {
        {"2Gb", "ambiguous"}, {"2gb", "ambiguous"}, {"1.5Gib", "ambiguous"}, {"2G", "unknown unit"},
        {"-1GB", "negative"}, {"0GiB", "zero"}, {"inf", "not finite"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v;
        qp_error err = {0};
        CU_ASSERT_EQUAL(qp_parse_bytes(bad[i].in, "--memory", &v, &err), QP_ERR_INPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].msg_part));
    }
}

static void test_real_and_long(void)
{
    double v;
    long l;
    CU_ASSERT_EQUAL(qp_parse_real("0.4", "--mfu", 0, 1, &v, NULL), QP_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 0.4, 0);
    CU_ASSERT_EQUAL(qp_parse_real("1.5", "--mfu", 0, 1, &v, NULL), QP_ERR_INPUT);
    CU_ASSERT_EQUAL(qp_parse_real("0.4x", "--mfu", 0, 1, &v, NULL), QP_ERR_INPUT);
    CU_ASSERT_EQUAL(qp_parse_long("4", "--bits", 1, 8, &l, NULL), QP_OK);
    CU_ASSERT_EQUAL(l, 4);
    CU_ASSERT_EQUAL(qp_parse_long("9", "--bits", 1, 8, &l, NULL), QP_ERR_INPUT);
    CU_ASSERT_EQUAL(qp_parse_long("4.5", "--bits", 1, 8, &l, NULL), QP_ERR_INPUT);
    CU_ASSERT_EQUAL(qp_parse_long("99999999999999999999", "--bits", 1, 8, &l, NULL), QP_ERR_INPUT);
}

/* counts that must be whole, and comma lists: empty entries, repeats, too many */
static void test_whole_count_and_lists(void)
{
    double v = -1;
    qp_error err = {0};
    CU_ASSERT_EQUAL(qp_parse_whole_count("1M", "--batch-tokens", 1e12, &v, &err), QP_OK);
    CU_ASSERT_EQUAL(v, 1e6);
    CU_ASSERT_EQUAL(qp_parse_whole_count("0.5K", "--batch-tokens", 1e12, &v, &err), QP_OK);
    CU_ASSERT_EQUAL(v, 500);
    v = -1;
    CU_ASSERT_EQUAL(qp_parse_whole_count("1.5", "--batch-tokens", 1e12, &v, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "not a whole number"));
    CU_ASSERT_EQUAL(qp_parse_whole_count("2T", "--batch-tokens", 1e12, &v, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "at most 1000000000000"));
    CU_ASSERT_EQUAL(v, -1);

    long b[4];
    int n = -1;
    CU_ASSERT_EQUAL(qp_parse_long_list("2,4,8", "--bits", 1, 8, b, 4, &n, &err), QP_OK);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT(b[0] == 2 && b[1] == 4 && b[2] == 8);
    static const bad_case bad[] = {
        {"4,", "empty entry"}, {",4", "empty entry"}, {"2,,4", "empty entry"}, {"", "empty"}, {",", "empty entry"},
        {"4,4", "twice"}, {"1,2,3,4,5", "more than 4"}, {"9", "out of range"}, {"4,x", "not a whole number"},
        {"4.5", "not a whole number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = -1;
        CU_ASSERT_EQUAL(qp_parse_long_list(bad[i].in, "--bits", 1, 8, b, 4, &n, &err), QP_ERR_INPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].msg_part));
        if (!strstr(err.msg, bad[i].msg_part)) fprintf(stderr, "input '%s': message '%s'\n", bad[i].in, err.msg);
        CU_ASSERT_EQUAL(n, -1);
    }
}

static void test_format(void)
{
    char b[32];
    CU_ASSERT_STRING_EQUAL(qp_format_count(2.2e9, b, sizeof b), "2.20B");
    CU_ASSERT_STRING_EQUAL(qp_format_count(1.4e12, b, sizeof b), "1.40T");
    CU_ASSERT_STRING_EQUAL(qp_format_count(86e6, b, sizeof b), "86.0M");
    CU_ASSERT_STRING_EQUAL(qp_format_count(NAN, b, sizeof b), "NaN");
    CU_ASSERT_STRING_EQUAL(qp_format_bytes(1.5 * 1073741824.0, b, sizeof b), "1.50 GiB");
    CU_ASSERT_STRING_EQUAL(qp_format_bytes(100, b, sizeof b), "100 B");
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_count_good);
    TU_ADD(s, test_count_bad);
    TU_ADD(s, test_subnormal_accepted);
    TU_ADD(s, test_flops_and_budget);
    TU_ADD(s, test_bytes);
    TU_ADD(s, test_real_and_long);
    TU_ADD(s, test_whole_count_and_lists);
    TU_ADD(s, test_format);
}

int main(void) { return tu_main("units", add); }
