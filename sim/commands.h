/* commands.h - the subcommands of apxsim that live outside main.c.
 *
 * Each takes the arguments after the command name (argv[0] is the command)
 * and returns the process exit status: 0 ok, 1 failure during work, 2 bad
 * input or usage, 130 interrupted. Each answers --help with a usage text
 * that ends with an example. */
#ifndef APX_COMMANDS_H
#define APX_COMMANDS_H

int cmd_bench(int argc, char **argv);   /* sim/cmd_bench.c */
int cmd_import(int argc, char **argv);  /* sim/cmd_import.c */
int cmd_fmap(int argc, char **argv);    /* sim/cmd_fmap.c */
int cmd_record(int argc, char **argv);  /* sim/cmd_record.c */
int cmd_replay(int argc, char **argv);  /* sim/cmd_record.c */

#endif
