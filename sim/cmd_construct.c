/* cmd_construct.c - placeholder until its module lands. */
#include "commands.h"

int cmd_construct(int argc, char **argv) {
    (void)argc;
    return cli_usage("construct", "%s", "not built yet");
    (void)argv;
}
