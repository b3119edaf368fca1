/* qatplan: thin command line over the planner, fitter, trainer and data libraries. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"plan", cmd_plan, "recommend the QAT fraction, bit width, token split and schedule"},
    {"law", cmd_law, "show laws (law show [FILE|NAME]) or evaluate one configuration (law eval)"},
    {"data", cmd_data, "make token files from text (data prepare), show one (data info)"},
    {"fetch", cmd_fetch, "download a URL with resume, retries and a checksum check"},
    {"sweep", cmd_sweep, "run a grid of trainings and refit the law (or emit a Slurm job array)"},
    {"plot", cmd_plot, "render the law and runs with gnuplot (PNG or SVG)"},
    {"fit", cmd_fit, "fit a loss law to run records and write a law file (qatplan fit RUNS -o LAW)"},
    {"train", cmd_train, "train a model FP-then-QAT (or fused) and append its run record"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: qatplan COMMAND [OPTIONS]\n"
               "       qatplan --params 2.2B --budget 1e22   (same as: qatplan plan ...)\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'qatplan COMMAND --help' lists a command's options with their units and defaults.\n"
               "docs/cli.md describes every command.\n");
}

int cli_report(qp_status st, const qp_error *err)
{
    if (st == QP_OK) return 0;
    fprintf(stderr, "qatplan: %s\n", err && err->msg[0] ? err->msg : qp_strerror(st));
    return qp_exit_code(st);
}

int main(int argc, char **argv)
{
    qp_blas_select_kernels(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("qatplan %s\n", qp_version());
        return 0;
    }
    /* Options without a command mean `plan`. */
    if (argv[1][0] == '-') return cmd_plan(argc, argv);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qatplan: unknown command '%s': run 'qatplan --help' for the list\n", argv[1]);
    return 2;
}
