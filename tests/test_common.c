/* common/: the splitmix64 stream (bit-identical to the values the copies it replaced
 * produced), the percentile, and the one child-process runner with its log tail. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fit_internal.h"
#include "qp.h"
#include "testutil.h"
#include "model.h"

static void test_rng_stream(void)
{
    /* splitmix64's published first outputs from seed 0, then values stored before the three
     * copies (data/prepare.c, fitter/fit_opt.c, trainer/model.c) were merged */
    static const uint64_t from0[] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull, 0x06c45d188009454full,
                                     0xf88bb8a8724c81ecull};
    static const uint64_t from12345[] = {0x22118258a9d111a0ull, 0x346edce5f713f8edull, 0x1e9a57bc80e6721dull};
    uint64_t s = 0, t = 0, u = 0;
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(qp_rng_next(&s), from0[i]);
        CU_ASSERT_EQUAL(fit_rng_next(&t), from0[i]);
        CU_ASSERT_EQUAL(train_rng_next(&u), from0[i]);
    }
    s = 12345;
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(qp_rng_next(&s), from12345[i]);
    s = 7;
    CU_ASSERT_EQUAL(qp_rng_uniform(&s), 0.38982974839127149);
    s = 7;
    CU_ASSERT_EQUAL(fit_rng_uniform(&s), 0.38982974839127149);
    CU_ASSERT_EQUAL(fit_rng_normal(&s), 0.14938676007064153);
    s = 7;
    CU_ASSERT_EQUAL(train_rng_normal(&s), 1.36499226f);
    CU_ASSERT_EQUAL(train_rng_normal(&s), -0.396523982f);
}

static void test_percentile(void)
{
    double v[] = {1, 2, 4, 8};
    CU_ASSERT_DOUBLE_EQUAL(qp_percentile_sorted(v, 4, 0.3), 1.9, 1e-15);
    CU_ASSERT_EQUAL(qp_percentile_sorted(v, 4, 0), 1);
    CU_ASSERT_EQUAL(qp_percentile_sorted(v, 4, 1), 8);
    CU_ASSERT_EQUAL(qp_percentile_sorted(v, 1, 0.5), 1);
    CU_ASSERT(isnan(qp_percentile_sorted(v, 0, 0.5)));
}

static void test_spawn_log_and_status(void)
{
    const char *log = tu_path("child.log");
    tu_write(log, "earlier line\n");
    char *argv[] = {"/bin/sh", "-c", "echo out; echo 'step 1\rstep 2  ' >&2; exit 3", NULL};
    qp_spawn_opts o = {log, 1, -1, 0, NULL};
    qp_error err = {0};
    pid_t pid = qp_spawn(argv, &o, &err);
    CU_ASSERT_FATAL(pid > 0);
    int ws = 0, to = 1;
    CU_ASSERT_EQUAL(qp_wait_limit(pid, 10, &ws, &to, &err), QP_OK);
    CU_ASSERT_EQUAL(to, 0);
    char how[64], tail[64];
    CU_ASSERT_STRING_EQUAL(qp_wait_status_text(ws, how, sizeof how), "exit status 3");
    qp_log_tail(log, tail, sizeof tail);
    CU_ASSERT_STRING_EQUAL(tail, "step 2"); /* the last redraw of the last line */
    char *text = tu_read(log, NULL);
    CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "earlier line\nout\n")); /* appended */
    free(text);
    /* truncating; a program that does not exist: exit 127 with the reason in the log */
    char *bad[] = {"/nonexistent/prog", NULL};
    o.log_append = 0;
    o.who = "tester";
    pid = qp_spawn(bad, &o, &err);
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT_EQUAL(qp_wait_limit(pid, 10, &ws, &to, &err), QP_OK);
    CU_ASSERT(WIFEXITED(ws) && WEXITSTATUS(ws) == 127);
    qp_log_tail(log, tail, sizeof tail);
    CU_ASSERT_PTR_NOT_NULL(strstr(tail, "tester: cannot run /nonexistent/prog"));
    /* a log that cannot be opened: refused, no child */
    o.log_path = "/nonexistent/dir/x.log";
    CU_ASSERT_EQUAL(qp_spawn(argv, &o, &err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cannot open the log"));
}

static void test_wait_limit_kills(void)
{
    char *argv[] = {"/bin/sleep", "30", NULL};
    qp_spawn_opts o = {tu_path("sleep.log"), 0, -1, 0, NULL};
    qp_error err = {0};
    pid_t pid = qp_spawn(argv, &o, &err);
    CU_ASSERT_FATAL(pid > 0);
    int ws = 0, to = 0;
    double t0 = qp_now();
    CU_ASSERT_EQUAL(qp_wait_limit(pid, 0.2, &ws, &to, &err), QP_OK);
    CU_ASSERT(qp_now() - t0 < 10);
    CU_ASSERT_EQUAL(to, 1);
    CU_ASSERT(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_rng_stream);
    TU_ADD(s, test_percentile);
    TU_ADD(s, test_spawn_log_and_status);
    TU_ADD(s, test_wait_limit_kills);
}

int main(void) { return tu_main("common", add); }
