/* commands.h - the subcommands of apxsim that live outside main.c.
 *
 * Each takes the arguments after the command name (argv[0] is the command)
 * and returns the process exit status: 0 ok, 1 failure during work, 2 bad
 * input or usage, 130 interrupted. Each answers --help with a usage text
 * that ends with an example. */
#ifndef APX_COMMANDS_H
#define APX_COMMANDS_H

#include "error.h"

/* Set by SIGINT or SIGTERM once cli_catch_signals() has run; long work
 * polls it and stops cleanly (exit 130). */
extern volatile int cli_stop;
void cli_catch_signals(void);

/* Prints "apxsim[ CMD]: message" for err and returns its exit status
 * (1 work, 2 input, 130 interrupted). cmd may be NULL. */
int cli_report(const char *cmd, const apx_error *err);

/* Prints "apxsim CMD: " + fmt (one %s for arg) and the --help hint; returns 2. */
int cli_usage(const char *cmd, const char *fmt, const char *arg);

int cmd_bench(int argc, char **argv);   /* sim/cmd_bench.c */
int cmd_import(int argc, char **argv);  /* sim/cmd_import.c */
int cmd_fmap(int argc, char **argv);    /* sim/cmd_fmap.c */
int cmd_record(int argc, char **argv);  /* sim/cmd_record.c */
int cmd_replay(int argc, char **argv);  /* sim/cmd_record.c */
int cmd_plot(int argc, char **argv);    /* sim/cmd_plot.c */
int cmd_construct(int argc, char **argv); /* sim/cmd_construct.c */
int cmd_metrics(int argc, char **argv);   /* sim/cmd_metrics.c */
int cmd_search(int argc, char **argv);    /* sim/cmd_search.c */

#endif
