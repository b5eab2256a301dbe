/* cmd_plot.c - `apxsim plot`: SVG figures from a results database
 * (sim/plot.h). The database is opened read-only and never migrated. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "plot.h"
#include "store.h"

static const char plot_help[] =
    "Usage: apxsim plot DB [options]\n"
    "\n"
    "Writes an SVG figure (viewable in any browser) from a results database.\n"
    "\n"
    "Figures:\n"
    "  accuracy   mean accuracy (%) against the sweep's first knob, one line per\n"
    "             campaign, workload and device, with a shaded +-1 std band and a\n"
    "             dashed min/max envelope over chips (log x axis for knobs such as\n"
    "             ber that span more than a factor of 100)\n"
    "  pareto     a scatter of two numeric columns of evaluations_flat (--x, --y),\n"
    "             one dot per evaluation, with the Pareto front (max y, min x)\n"
    "\n"
    "Options:\n"
    "  -f, --figure NAME   accuracy (default) or pareto\n"
    "      --x COL         pareto: the column to minimise (default energy_pj, the\n"
    "                      energy per inference; or e.g. faults_injected)\n"
    "      --y COL         pareto: the column to maximise (default accuracy)\n"
    "  -o, --output FILE   the SVG file (default: DB with .svg for .db, e.g.\n"
    "                      results/quickstart.svg; -pareto.svg for the pareto figure)\n"
    "  -t, --title TEXT    the figure's title (default: made from the data)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Example:\n"
    "  apxsim plot results/quickstart.db\n"
    "  apxsim plot results/quickstart.db --figure pareto --x faults_injected --y accuracy\n";

/* DB path with its .db suffix (if any) replaced by suffix. */
static char *default_output(const char *db, const char *suffix) {
    size_t len = strlen(db);
    if (len > 3 && strcmp(db + len - 3, ".db") == 0) len -= 3;
    char *out = malloc(len + strlen(suffix) + 1);
    if (out) {
        memcpy(out, db, len);
        strcpy(out + len, suffix);
    }
    return out;
}

int cmd_plot(int argc, char **argv) {
    static const struct option opts[] = {{"figure", required_argument, 0, 'f'},
                                         {"x", required_argument, 0, 'x'},
                                         {"y", required_argument, 0, 'y'},
                                         {"output", required_argument, 0, 'o'},
                                         {"title", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    plot_options opt = {.figure = PLOT_ACCURACY};
    const char *output = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:o:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (strcmp(optarg, "accuracy") == 0) opt.figure = PLOT_ACCURACY;
            else if (strcmp(optarg, "pareto") == 0) opt.figure = PLOT_PARETO;
            else return cli_usage("plot", "unknown figure '%s' (accuracy or pareto)", optarg);
            break;
        case 'x': opt.x_column = optarg; break;
        case 'y': opt.y_column = optarg; break;
        case 'o': output = optarg; break;
        case 't': opt.title = optarg; break;
        case 'h': fputs(plot_help, stdout); return 0;
        default: return cli_usage("plot", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("plot", "%s", "expects one results database");
    if (opt.figure == PLOT_PARETO && !opt.x_column != !opt.y_column)
        return cli_usage("plot", "%s", "the pareto figure needs both --x COL and --y COL, or neither");
    if (opt.figure == PLOT_PARETO && !opt.x_column) { /* energy against accuracy */
        opt.x_column = "energy_pj";
        opt.y_column = "accuracy";
    }
    if (opt.figure == PLOT_ACCURACY && (opt.x_column || opt.y_column))
        return cli_usage("plot", "%s", "--x and --y are for --figure pareto");

    const char *db = argv[optind];
    char *path = output ? strdup(output)
                        : default_output(db, opt.figure == PLOT_PARETO ? "-pareto.svg" : ".svg");
    apx_error err = {0};
    store *s = NULL;
    int rc = APX_OK;
    if (!path) rc = apx_fail(&err, APX_EWORK, "out of memory");
    if (rc == APX_OK) rc = store_open_readonly(db, &s, &err);
    if (rc == APX_OK && (rc = plot_write(s, &opt, path, &err)) != APX_OK)
        apx_wrap(&err, "plotting %s: ", db);
    store_close(s);
    if (rc == APX_OK) printf("%s\n", path);
    free(path);
    return rc ? cli_report("plot", &err) : 0;
}
