/* Fake trainer and fitter for the sweep tests (shared by test_sweep*.c). They test the sweep
 * engine, not a stub of it: the fake trainer takes `qatplan train`'s options and appends a
 * record whose loss comes from a known qat law (so a law fitted perfectly predicts it
 * exactly), under flock and starting on a fresh line like qp_append_line. Patterns in
 * FAKE_CRASH / FAKE_HANG / FAKE_DIVERGE / FAKE_SLOW, matched against the run id, make it
 * crash (SIGSEGV, no record), hang, diverge (record with status diverged, exit 3) or run
 * slowly (saving a state file on SIGTERM); FAKE_STEPS makes it log a progress line as the real
 * trainer does ("step 1/4 FP loss 5.1250 ...") and take 0.6 s. Each call is logged to $FAKE_CALLS. */
#ifndef SWEEP_FAKES_H
#define SWEEP_FAKES_H

#include <stdlib.h>

#include "testutil.h"

/* The known law, as coefficients (name, value) in the qat form's order. */
#define FAKE_LAW_JSON                                                                                \
    "{\"schema\":\"qatplan-law-v1\",\"form\":\"qat\",\"coefficients\":{\"E\":1.5,\"A\":40,\"B\":60,"  \
    "\"alpha\":0.3,\"beta\":0.25,\"theta\":0.5,\"kappa\":0.8,\"phi\":2,\"chi\":0.7,\"psi\":0.1,"     \
    "\"omega\":0.3,\"lambda\":0.05,\"mu\":0.5,\"xi\":0.1,\"nu\":0.05,\"rho\":0.2},"                  \
    "\"provenance\":{\"source\":\"fake fitter\",\"method\":\"the law of the fake trainer\",\"n_runs\":NRUNS,"\
    "\"n_excluded\":0}}"

static const char *fake_train_sh =
    "#!/bin/sh\n"
    "L=0 W=0 F=0 T=0 FR=0 B=16 S=classic SEED=1 ID= OUT= STATE= RESUME=0\n"
    "while [ $# -gt 0 ]; do\n"
    "  case \"$1\" in\n"
    "    --layers) L=$2; shift 2;; --width) W=$2; shift 2;; --ffn) F=$2; shift 2;;\n"
    "    --tokens) T=$2; shift 2;; --qat-fraction) FR=$2; shift 2;; --bits) B=$2; shift 2;;\n"
    "    --schedule) S=$2; shift 2;; --seed) SEED=$2; shift 2;; --run-id) ID=$2; shift 2;;\n"
    "    --runs-out) OUT=$2; shift 2;; --state) STATE=$2; shift 2;; --resume) RESUME=1; shift;;\n"
    "    --*) shift 2;;\n"
    "    *) echo \"fake trainer: unexpected argument $1\" >&2; exit 2;;\n"
    "  esac\n"
    "done\n"
    "[ -n \"$ID\" ] && [ -n \"$OUT\" ] || { echo 'fake trainer: --run-id and --runs-out are required' >&2; exit 2; }\n"
    "echo \"$ID resume=$RESUME pid=$$\" >> \"$FAKE_CALLS\"\n"
    "match() { [ -n \"$1\" ] || return 1; case \"$ID\" in *$1*) return 0;; esac; return 1; }\n"
    "if match \"$FAKE_CRASH\"; then echo 'fake trainer: crashing on purpose' >&2; kill -SEGV $$; fi\n"
    "if match \"$FAKE_HANG\"; then echo 'fake trainer: hanging on purpose' >&2; exec sleep 600; fi\n"
    "if match \"$FAKE_SLOW\"; then\n"
    "  trap 'echo saved > \"$STATE\"; exit 1' TERM\n"
    "  i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
    "fi\n"
    "if match \"$FAKE_STEPS\"; then echo 'step 1/4 FP loss 5.1250 lr 1.00e-03 900 tok/s ETA 1s' >&2; sleep 0.6; fi\n"
    "DIV=0; if match \"$FAKE_DIVERGE\"; then DIV=1; fi\n"
    "REC=$(awk -v L=$L -v W=$W -v F=$F -v T=$T -v FR=$FR -v B=$B -v S=$S -v SEED=$SEED -v ID=\"$ID\" -v DIV=$DIV 'BEGIN {\n"
    "  N = L*(4*W*W + 3*W*F + 2*W) + W + 256*W\n"
    "  dq = int(FR*T + 0.5); df = T - dq; if (B >= 16) { dq = 0; df = T }\n"
    "  sched = S; if (B >= 16 || dq == 0) sched = \"fp-only\"; else if (df == 0) sched = \"qat-only\"\n"
    "  loss = 1.5 + 40/N^0.3 + 60/T^0.25\n"
    "  if (B < 16) { by = N*B/8; sq = dq/by; sf = df/by\n"
    "    loss += 0.5*2^(-0.8*B) + 2*2^(-0.7*B)/(N^0.1*(1+sq)^0.3) + 0.05*2^(-0.5*B)*(1+sf)^0.1/(N^0.05*(1+sq)^0.2) }\n"
    "  l = DIV ? \"\\\"NaN\\\"\" : sprintf(\"%.12g\", loss)\n"
    "  printf \"{\\\"schema\\\":\\\"qatplan-run-v1\\\",\\\"run_id\\\":\\\"%s\\\",\\\"n_params\\\":%.0f,\\\"d_fp\\\":%.0f,\\\"d_qat\\\":%.0f,"
    "\\\"bits\\\":%d,\\\"schedule\\\":\\\"%s\\\",\\\"loss\\\":%s,\\\"seed\\\":\\\"%s\\\",\\\"dataset\\\":\\\"fake\\\",\\\"status\\\":\\\"%s\\\"%s}\\n\","
    " ID, N, df, dq, B, sched, l, SEED, DIV ? \"diverged\" : \"ok\", DIV ? \",\\\"reason\\\":\\\"fake divergence\\\"\" : \"\"\n"
    "}')\n"
    "( flock 9; if [ -s \"$OUT\" ] && [ -n \"$(tail -c1 \"$OUT\")\" ]; then printf '\\n' >&9; fi; printf '%s\\n' \"$REC\" >&9 ) 9>>\"$OUT\"\n"
    "[ -n \"$STATE\" ] && rm -f \"$STATE\"\n"
    "[ $DIV = 1 ] && exit 3\n"
    "exit 0\n";

static const char *fake_fit_sh =
    "#!/bin/sh\n"
    "IN=$1; shift; OUT=\n"
    "while [ $# -gt 0 ]; do case \"$1\" in -o) OUT=$2; shift 2;; *) shift 2;; esac; done\n"
    "n=$(grep -c '\"status\":\"ok\"' \"$IN\")\n"
    "echo \"fit n=$n\" >> \"$FAKE_FIT_CALLS\"\n"
    "if [ \"$n\" -lt \"${FAKE_FIT_MIN:-4}\" ]; then echo \"qatplan: $n usable runs cannot identify the qat form: add runs\" >&2; exit 1; fi\n"
    "echo '" FAKE_LAW_JSON "' | sed \"s/NRUNS/$n/\" > \"$OUT.tmp\" && mv \"$OUT.tmp\" \"$OUT\"\n";

/* Write the fakes into the suite's temp dir and point the sweep at them. */
static void fakes_install(void)
{
    tu_write(tu_path("fake-train.sh"), fake_train_sh);
    tu_write(tu_path("fake-fit.sh"), fake_fit_sh);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "chmod +x %s %s", tu_path("fake-train.sh"), tu_path("fake-fit.sh"));
    CU_ASSERT_EQUAL(system(cmd), 0);
    setenv("QP_SWEEP_TRAIN_CMD", tu_path("fake-train.sh"), 1);
    setenv("QP_SWEEP_FIT_CMD", tu_path("fake-fit.sh"), 1);
    setenv("FAKE_CALLS", tu_path("calls.log"), 1);
    setenv("FAKE_FIT_CALLS", tu_path("fitcalls.log"), 1);
}

#endif
