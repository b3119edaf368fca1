/* cli.h: the subcommands of the qatplan executable. Each lives in cli/cmd_NAME.c and
 * returns a process exit code; only main() exits. */
#ifndef CLI_H
#define CLI_H

#include "qp.h"

int cmd_plan(int argc, char **argv);
int cmd_law(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_train(int argc, char **argv);

/* Print "qatplan: <message>" for a failed status and return its exit code. */
int cli_report(qp_status st, const qp_error *err);

#endif
