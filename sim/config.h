/* config.h - YAML configuration through libyaml, with errors that point.
 *
 * Every config in apxsim (sweeps, devices, workloads, training recipes) is
 * read through this module. cfg_load_* parses a whole YAML document into a
 * tree of nodes that remember file, line and column; the cfg_get_* readers
 * then pull typed values out of mapping nodes, check ranges, and fail with
 * "FILE:LINE:COL: message" errors. cfg_expect_map() refuses unknown keys and
 * suggests the nearest known one ("did you mean 'chips'?").
 *
 * Limits (hostile input): files over CFG_MAX_BYTES, nesting deeper than
 * CFG_MAX_DEPTH, more than CFG_MAX_NODES nodes, aliases and duplicate keys
 * are refused. The document owns every node and string; they live until
 * cfg_free(). */
#ifndef APX_CONFIG_H
#define APX_CONFIG_H

#include <stddef.h>

#include "error.h"

#define CFG_MAX_BYTES (16u << 20)
#define CFG_MAX_DEPTH 64
#define CFG_MAX_NODES 1000000

typedef enum cfg_kind { CFG_SCALAR, CFG_SEQ, CFG_MAP } cfg_kind;

typedef struct cfg_node cfg_node;
struct cfg_node {
    cfg_kind kind;
    const char *file;     /* name used in errors (owned by the document) */
    int line, col;        /* 1-based position of the node */
    const char *scalar;   /* CFG_SCALAR: its text; NULL otherwise */
    int quoted;           /* CFG_SCALAR: written in quotes (so never null/bool/number) */
    size_t n;             /* CFG_SEQ, CFG_MAP: number of items */
    cfg_node **items;     /* CFG_SEQ: elements; CFG_MAP: values */
    const char **keys;    /* CFG_MAP: the key of each value */
    int *key_line, *key_col;
};

typedef struct cfg_doc cfg_doc;

/* Parse a file or a buffer. On error returns NULL and sets err (APX_EINPUT for
 * bad YAML, APX_EWORK for I/O). An empty document gives an empty mapping. */
cfg_doc *cfg_load_file(const char *path, apx_error *err);
cfg_doc *cfg_load_string(const char *text, size_t len, const char *name, apx_error *err);
void cfg_free(cfg_doc *doc);

const cfg_node *cfg_root(const cfg_doc *doc);
/* The exact bytes that were parsed (NUL-terminated), for provenance. */
const char *cfg_text(const cfg_doc *doc);
size_t cfg_text_len(const cfg_doc *doc);

/* Formats "FILE:LINE:COL: message" into err with code APX_EINPUT; returns it. */
int cfg_fail(const cfg_node *at, apx_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Checks that node is a mapping whose keys are all in allowed (a NULL-terminated
 * list). `what` names the section in errors ("sweep", "device"). */
int cfg_expect_map(const cfg_node *node, const char *what, const char *const *allowed,
                   apx_error *err);

/* The value under key, or NULL if the key is absent (map must be a mapping). */
const cfg_node *cfg_find(const cfg_node *map, const char *key);

/* Typed readers for `key` in a mapping. If the key is absent: with required
 * set it is an error naming the key; otherwise *out = dflt. Ranges are
 * inclusive. Numbers accept YAML forms like 1e-3, 0x10 (ints), .inf is refused. */
int cfg_get_double(const cfg_node *map, const char *key, int required, double dflt,
                   double lo, double hi, double *out, apx_error *err);
int cfg_get_int(const cfg_node *map, const char *key, int required, long long dflt,
                long long lo, long long hi, long long *out, apx_error *err);
int cfg_get_bool(const cfg_node *map, const char *key, int required, int dflt, int *out,
                 apx_error *err);
/* *out points into the document (or is dflt). */
int cfg_get_string(const cfg_node *map, const char *key, int required, const char *dflt,
                   const char **out, apx_error *err);
/* One of `choices` (NULL-terminated); *out is its index. */
int cfg_get_enum(const cfg_node *map, const char *key, int required, int dflt,
                 const char *const *choices, int *out, apx_error *err);

/* The same checks on a node itself (e.g. the elements of a sequence). */
int cfg_as_double(const cfg_node *node, double lo, double hi, double *out, apx_error *err);
int cfg_as_int(const cfg_node *node, long long lo, long long hi, long long *out,
               apx_error *err);

/* A scalar or a sequence of scalars read as a list of doubles in [lo, hi]:
 * `0.1` and `[0.1, 0.2]` both work. Caller frees *out. Refuses empty lists and
 * lists longer than max_n. */
int cfg_get_double_list(const cfg_node *map, const char *key, int required, double lo,
                        double hi, size_t max_n, double **out, size_t *n, apx_error *err);

/* Levenshtein distance, capped; used for "did you mean" (exposed for tests). */
int cfg_edit_distance(const char *a, const char *b);

#endif
