/* cli.c - what every subcommand shares: signals and error reporting. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

volatile int cli_stop;

static void on_signal(int sig) {
    (void)sig;
    cli_stop = 1;
}

void cli_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_report(const char *cmd, const apx_error *err) {
    fprintf(stderr, "apxsim%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", err->msg);
    if (err->code == APX_EINTR) return 130;
    return err->code == APX_EINPUT ? 2 : 1;
}

int cli_usage(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "apxsim %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'apxsim %s --help'.\n", cmd);
    return 2;
}
