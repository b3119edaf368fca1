/* The sweep's progress arithmetic, kept pure so it can be tested against a constructed
 * history: a run's progress from its trainer's log, and the ETA from measured throughput. */
#include "sweep.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The trainer prints "step S/T <phase> loss L ..." to its log (see trainer/train.c); the
 * last such line is the run's progress. Lines may end in \n or (on a terminal) \r. */
int sweep_parse_progress(const char *text, size_t len, sweep_run_progress *p)
{
    for (size_t i = len; i-- > 0;) {
        if (!(i == 0 || text[i - 1] == '\n' || text[i - 1] == '\r')) continue;
        if (len - i < 5 || memcmp(text + i, "step ", 5) != 0) continue;
        char line[256], phase[16];
        size_t n = 0;
        while (i + n < len && n + 1 < sizeof line && text[i + n] != '\n' && text[i + n] != '\r') {
            line[n] = text[i + n];
            n++;
        }
        line[n] = 0;
        long s, t;
        double l;
        if (sscanf(line, "step %ld/%ld %15s loss %lf", &s, &t, phase, &l) == 4 && t > 0 && s >= 0 && s <= t) {
            p->step = s;
            p->total = t;
            p->loss = l;
            return 1;
        }
    }
    return 0;
}

/* Remaining work over the measured rate: work is N*D (parameter-tokens, so runs of different
 * sizes compare), the rate sum(done)/sum(secs) over the runs that have done some (finished
 * runs' wall time includes their start-up and evaluation, so future runs are charged it
 * too). The runs share `slots` trainers, never more slots than runs are left. lo/hi use the
 * fastest and slowest single run's rate. */
double sweep_eta_estimate(const sweep_eta_sample *s, size_t n, double pending, size_t n_pending, int slots,
                          double *lo, double *hi)
{
    double done = 0, secs = 0, left = pending, rmin = INFINITY, rmax = 0;
    size_t live = n_pending;
    for (size_t i = 0; i < n; i++) {
        left += s[i].left;
        if (s[i].left > 0) live++;
        if (s[i].done > 0 && s[i].secs > 0) {
            double r = s[i].done / s[i].secs;
            done += s[i].done;
            secs += s[i].secs;
            if (r < rmin) rmin = r;
            if (r > rmax) rmax = r;
        }
    }
    *lo = *hi = NAN;
    if (left <= 0) {
        *lo = *hi = 0;
        return 0;
    }
    if (done <= 0) return NAN;
    double par = (double)(slots > 0 ? slots : 1);
    if ((double)live < par) par = live > 0 ? (double)live : 1;
    *lo = left / (rmax * par);
    *hi = left / (rmin * par);
    return left / (done / secs * par);
}
