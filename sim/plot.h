/* plot.h - SVG figures from a results database (`apxsim plot`).
 *
 * Two figures, read through store_read_columns() (no SQL here):
 *   PLOT_ACCURACY  accuracy_by_point: one line per (campaign, workload,
 *                  dataset, device) series, x = the point's sort_key (axis
 *                  named after the knob, from op_knobs), y = mean accuracy in
 *                  %, a shaded ±1 std band, a dashed min/max envelope, markers.
 *   PLOT_PARETO    evaluations_flat: a scatter of two numeric columns with
 *                  the Pareto front (max y, min x) highlighted.
 * Output is standalone SVG 1.1 (white background, 12px sans-serif, escaped
 * text). The x axis is logarithmic when every non-zero x is positive and
 * they span more than a factor of 100; x = 0 is then drawn at the left edge,
 * labelled "0". Ticks are "nice": 1, 2 or 5 x 10^k. */
#ifndef APX_PLOT_H
#define APX_PLOT_H

#include <stddef.h>
#include <stdio.h>

#include "error.h"
#include "store.h"

enum plot_figure { PLOT_ACCURACY, PLOT_PARETO };

typedef struct plot_options {
    enum plot_figure figure;
    const char *title;     /* NULL: a title made from the data */
    const char *x_column;  /* PLOT_PARETO: columns of evaluations_flat */
    const char *y_column;
} plot_options;

/* Renders the figure as SVG to out. A database without evaluations (or
 * without rows usable for the figure) is APX_EINPUT and nothing is written. */
int plot_render(store *s, const plot_options *opt, FILE *out, apx_error *err);

/* Renders the figure and writes it to path; on any error no file is made. */
int plot_write(store *s, const plot_options *opt, const char *path, apx_error *err);

/* Whether an x axis over these values is logarithmic (see above). */
int plot_use_log_axis(const double *x, size_t n);

/* Nice tick step for [lo, hi] with about `target` intervals: 1, 2 or 5 x 10^k. */
double plot_nice_step(double lo, double hi, int target);

#endif
