/* cmd_metrics.c - placeholder until its module lands. */
#include "commands.h"

int cmd_metrics(int argc, char **argv) {
    (void)argc;
    return cli_usage("metrics", "%s", "not built yet");
    (void)argv;
}
