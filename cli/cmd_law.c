/* qatplan law show [FILE...]: print laws with their coefficients and provenance. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "data.h"
#include "fit.h"
#include "plan.h"

static void law_help(FILE *f)
{
    fprintf(f, "usage: qatplan law show [FILE...]\n\n"
               "Without FILE, prints the built-in laws (compiled in). With FILE, prints each law\n"
               "file: its form, every coefficient by name (with bootstrap intervals when present)\n"
               "and its provenance (data source, runs, N/D/bit ranges, fit quality).\n"
               "  --json   print the law file(s) as JSON instead\n");
}

int cmd_law(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        law_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "show")) {
        fprintf(stderr, "qatplan: unknown law subcommand '%s': use 'qatplan law show [FILE]'\n", argv[1]);
        return 2;
    }
    int json = 0, nfiles = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help")) {
            law_help(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "qatplan: unknown option '%s' for 'law show': see 'qatplan law --help'\n", argv[i]);
            return 2;
        } else nfiles++;
    }
    qp_error err = {0};
    if (nfiles == 0) {
        data_law laws[3];
        law_builtin_chinchilla(&laws[0]);
        law_builtin_fraction(&laws[1]);
        qp_status st = law_builtin_own(&laws[2], &err);
        if (st) return cli_report(st, &err);
        static const char *titles[3] = {"built-in full-precision law", "built-in QAT-fraction law",
                                        "built-in QAT loss law"};
        for (int k = 0; k < 3 && !st; k++) {
            if (json) {
                char *t = data_law_to_json(&laws[k], &err);
                if (!t) st = err.status ? err.status : QP_ERR_NOMEM;
                else {
                    printf("%s\n", t);
                    free(t);
                }
            } else {
                plan_print_law(stdout, &laws[k], titles[k]);
                printf("\n");
            }
        }
        for (int k = 0; k < 3; k++) data_law_free(&laws[k]);
        if (st) return cli_report(st, &err);
        if (!json)
            printf("The QAT loss law was fitted to qatplan's own sweep of byte-level models of 7.5K-117K\n"
                   "parameters (docs/own-law.md): it ranks bit widths far outside its range. Fit your own\n"
                   "with qatplan fit RUNS -o law.json and plan with --law law.json.\n");
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        data_law law;
        qp_status st = data_law_read(argv[i], &law, &err);
        if (st) return cli_report(st, &err);
        if (json) {
            char *t = data_law_to_json(&law, &err);
            if (!t) {
                data_law_free(&law);
                return cli_report(err.status, &err);
            }
            printf("%s\n", t);
            free(t);
        } else {
            plan_print_law(stdout, &law, argv[i]);
        }
        data_law_free(&law);
    }
    return 0;
}
