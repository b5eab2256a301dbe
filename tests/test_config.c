/* test_config.c - the YAML config module: tree and positions, errors that
 * point at file:line:col, limits against hostile input, and typed readers. */
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sim/config.h"
#include "tests.h"

/* Loads a NUL-terminated string as "t.yaml". */
static cfg_doc *load(const char *text, apx_error *err) {
    memset(err, 0, sizeof *err);
    return cfg_load_string(text, strlen(text), "t.yaml", err);
}

/* Loading must fail with APX_EINPUT and exactly this message. */
static void expect_load_error(const char *text, const char *want) {
    apx_error err;
    cfg_doc *doc = load(text, &err);
    CU_ASSERT_PTR_NULL(doc);
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    if (strcmp(err.msg, want) != 0)
        fprintf(stderr, "\n  got:  %s\n  want: %s\n", err.msg, want);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    cfg_free(doc);
}

static char *nested_lists(int depth) {
    char *s = malloc((size_t)depth * 2 + 1);
    memset(s, '[', (size_t)depth);
    memset(s + depth, ']', (size_t)depth);
    s[depth * 2] = '\0';
    return s;
}

/* ---- tree and positions -------------------------------------------------- */

static void test_tree_and_positions(void) {
    const char *text = "# header\n"
                       "sweep:\n"
                       "  chips: 4\n"
                       "  vdd: [1.20, 1.15,  1.1]\n"
                       "  points:\n"
                       "    - name: a\n"
                       "      trcd: 'x'\n";
    apx_error err;
    cfg_doc *doc = load(text, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *root = cfg_root(doc);
    CU_ASSERT_EQUAL(root->kind, CFG_MAP);
    CU_ASSERT_EQUAL(root->n, 1);
    CU_ASSERT_EQUAL(root->line, 2);
    CU_ASSERT_EQUAL(root->col, 1);
    CU_ASSERT_STRING_EQUAL(root->file, "t.yaml");

    const cfg_node *sweep = cfg_find(root, "sweep");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sweep);
    CU_ASSERT_EQUAL(sweep->kind, CFG_MAP);
    CU_ASSERT_EQUAL(sweep->n, 3);
    CU_ASSERT_STRING_EQUAL(sweep->keys[0], "chips");
    CU_ASSERT_STRING_EQUAL(sweep->keys[2], "points");
    CU_ASSERT_EQUAL(sweep->key_line[1], 4);
    CU_ASSERT_EQUAL(sweep->key_col[1], 3);

    const cfg_node *chips = cfg_find(sweep, "chips");
    CU_ASSERT_PTR_NOT_NULL_FATAL(chips);
    CU_ASSERT_EQUAL(chips->kind, CFG_SCALAR);
    CU_ASSERT_STRING_EQUAL(chips->scalar, "4");
    CU_ASSERT_EQUAL(chips->line, 3);
    CU_ASSERT_EQUAL(chips->col, 10);
    CU_ASSERT_FALSE(chips->quoted);

    const cfg_node *vdd = cfg_find(sweep, "vdd");
    CU_ASSERT_PTR_NOT_NULL_FATAL(vdd);
    CU_ASSERT_EQUAL(vdd->kind, CFG_SEQ);
    CU_ASSERT_EQUAL(vdd->n, 3);
    CU_ASSERT_EQUAL(vdd->line, 4);
    CU_ASSERT_EQUAL(vdd->col, 8);
    CU_ASSERT_STRING_EQUAL(vdd->items[2]->scalar, "1.1");
    CU_ASSERT_EQUAL(vdd->items[2]->line, 4);
    CU_ASSERT_EQUAL(vdd->items[2]->col, 22);

    const cfg_node *points = cfg_find(sweep, "points");
    CU_ASSERT_PTR_NOT_NULL_FATAL(points);
    CU_ASSERT_EQUAL(points->kind, CFG_SEQ);
    CU_ASSERT_EQUAL_FATAL(points->n, 1);
    const cfg_node *p0 = points->items[0];
    CU_ASSERT_EQUAL(p0->kind, CFG_MAP);
    CU_ASSERT_EQUAL(p0->line, 6);
    CU_ASSERT_EQUAL(p0->col, 7);
    const cfg_node *trcd = cfg_find(p0, "trcd");
    CU_ASSERT_PTR_NOT_NULL_FATAL(trcd);
    CU_ASSERT_EQUAL(trcd->line, 7);
    CU_ASSERT_EQUAL(trcd->col, 13);
    CU_ASSERT_TRUE(trcd->quoted);
    CU_ASSERT_STRING_EQUAL(trcd->scalar, "x");
    CU_ASSERT_EQUAL(p0->key_line[1], 7);
    CU_ASSERT_EQUAL(p0->key_col[1], 7);

    CU_ASSERT_PTR_NULL(cfg_find(sweep, "nope"));
    CU_ASSERT_PTR_NULL(cfg_find(chips, "chips")); /* not a mapping */
    cfg_free(doc);
}

static void test_text_is_exact(void) {
    /* Comments, CRLF, a tab, trailing blanks and no final newline: the
     * provenance copy keeps every byte, and a NUL after them. */
    const char text[] = "a: 1   # note\r\n\nb:\t x  \n  \n# end";
    apx_error err;
    cfg_doc *doc = cfg_load_string(text, sizeof text - 1, "t.yaml", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_text_len(doc), sizeof text - 1);
    CU_ASSERT_EQUAL(memcmp(cfg_text(doc), text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(cfg_find(cfg_root(doc), "b")->scalar, "x");
    cfg_free(doc);
}

static void test_text_of_partial_buffer(void) {
    /* Only len bytes are parsed and kept, even if the buffer goes on. */
    const char buf[] = "a: 1\nb: [";
    apx_error err;
    cfg_doc *doc = cfg_load_string(buf, 5, "t.yaml", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_text_len(doc), 5);
    CU_ASSERT_STRING_EQUAL(cfg_text(doc), "a: 1\n");
    CU_ASSERT_EQUAL(cfg_root(doc)->n, 1);
    cfg_free(doc);
}

static void test_empty_documents(void) {
    const char *empties[] = {"", "# only a comment\n", "---\n", "~\n", "\n\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        apx_error err;
        cfg_doc *doc = load(empties[i], &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
        const cfg_node *root = cfg_root(doc);
        CU_ASSERT_PTR_NOT_NULL_FATAL(root);
        CU_ASSERT_EQUAL(root->kind, CFG_MAP);
        CU_ASSERT_EQUAL(root->n, 0);
        CU_ASSERT_EQUAL(cfg_expect_map(root, "sweep", (const char *const[]){"a", NULL}, &err),
                        APX_OK);
        cfg_free(doc);
    }
    /* A quoted "~" is a string, not an empty document. */
    apx_error err;
    cfg_doc *doc = load("'~'", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_root(doc)->kind, CFG_SCALAR);
    cfg_free(doc);
}

static void test_scalar_styles(void) {
    apx_error err;
    cfg_doc *doc = load("a: plain\nb: \"dq\"\nc: 'sq'\nd: |\n  two\n  lines\ne: !!str 3\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *r = cfg_root(doc);
    CU_ASSERT_FALSE(cfg_find(r, "a")->quoted);
    CU_ASSERT_TRUE(cfg_find(r, "b")->quoted);
    CU_ASSERT_TRUE(cfg_find(r, "c")->quoted);
    CU_ASSERT_TRUE(cfg_find(r, "d")->quoted);
    CU_ASSERT_STRING_EQUAL(cfg_find(r, "d")->scalar, "two\nlines\n");
    CU_ASSERT_TRUE(cfg_find(r, "e")->quoted);
    CU_ASSERT_STRING_EQUAL(cfg_find(r, "e")->scalar, "3");
    cfg_free(doc);
}

/* ---- errors while loading ------------------------------------------------ */

static void test_syntax_errors_point(void) {
    expect_load_error("sweep:\n  vdd: [1.2, 1.1\n",
                      "t.yaml:3:1: did not find expected ',' or ']' "
                      "(while parsing a flow sequence started at 2:8)");
    expect_load_error("a: b: c\n", "t.yaml:1:5: mapping values are not allowed in this context");
    expect_load_error("a: \"open\n",
                      "t.yaml:2:1: found unexpected end of stream "
                      "(while scanning a quoted scalar started at 1:4)");
}

static void test_reader_error_points(void) {
    /* Invalid UTF-8 is reported by libyaml with a byte offset only; the
     * message still names line and column. */
    expect_load_error("a: 1\nb: \xff\n", "t.yaml:2:4: invalid leading UTF-8 octet (byte #FF at offset 8)");
}

static void test_duplicate_keys(void) {
    expect_load_error("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key 'a' (first defined at 1:1)");
    expect_load_error("x:\n  {k: 1, k: 2}\n", "t.yaml:2:10: duplicate key 'k' (first defined at 2:4)");
    /* A large mapping takes the sorted path; the earliest repeat is named. */
    char text[2048];
    size_t off = 0;
    for (int i = 0; i < 40; i++) off += (size_t)snprintf(text + off, sizeof text - off, "k%02d: %d\n", i, i);
    /* k07 repeats first (line 41); k30 sorts after it and repeats twice. */
    off += (size_t)snprintf(text + off, sizeof text - off, "k07: y\nk30: x\nk30: z\n");
    expect_load_error(text, "t.yaml:41:1: duplicate key 'k07' (first defined at 8:1)");
    /* Here the earliest repeat (k30) sorts after another repeated key. */
    off -= 21;
    off += (size_t)snprintf(text + off, sizeof text - off, "k30: x\nk07: y\nk07: z\n");
    expect_load_error(text, "t.yaml:41:1: duplicate key 'k30' (first defined at 31:1)");
    /* The same keys in different mappings are fine. */
    apx_error err;
    cfg_doc *doc = load("a: {k: 1}\nb: {k: 2}\n", &err);
    CU_ASSERT_PTR_NOT_NULL(doc);
    cfg_free(doc);
}

static void test_aliases_tags_and_documents(void) {
    expect_load_error("a: &x 1\nb: *x\n", "t.yaml:1:4: aliases are not supported (anchor '&x')");
    expect_load_error("a: *x\n", "t.yaml:1:4: aliases are not supported ('*x')");
    expect_load_error("a: &m {b: 1}\n", "t.yaml:1:4: aliases are not supported (anchor '&m')");
    expect_load_error("a: !foo 3\n", "t.yaml:1:4: tags are not supported ('!foo')");
    expect_load_error("a: 1\n---\nb: 2\n", "t.yaml:2:1: multiple documents are not supported");
    expect_load_error("? [a, b]\n: 1\n", "t.yaml:1:3: mapping keys must be scalars");
    expect_load_error("a: \"x\\0y\"\n", "t.yaml:1:4: NUL characters in scalars are not supported");
}

static void test_depth_limit(void) {
    /* 64 levels are allowed; the 65th bracket is refused where it stands. */
    char *ok = nested_lists(CFG_MAX_DEPTH);
    apx_error err;
    cfg_doc *doc = load(ok, &err);
    CU_ASSERT_PTR_NOT_NULL(doc);
    cfg_free(doc);
    free(ok);
    char *bomb = nested_lists(70);
    expect_load_error(bomb, "t.yaml:1:65: nesting is deeper than 64 levels");
    free(bomb);
    /* Depth counts mappings too. */
    char text[1024] = "";
    size_t off = 0;
    for (int i = 0; i < 66; i++) off += (size_t)snprintf(text + off, sizeof text - off, "{a: ");
    off += (size_t)snprintf(text + off, sizeof text - off, "1");
    for (int i = 0; i < 66; i++) off += (size_t)snprintf(text + off, sizeof text - off, "}");
    doc = load(text, &err);
    CU_ASSERT_PTR_NULL(doc);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "t.yaml:1:257: nesting is deeper than 64 levels"));
}

static void test_node_limit(void) {
    /* A flat list of CFG_MAX_NODES scalars is one node too many (the list
     * itself counts); one fewer element loads. About 2 MB of text. */
    size_t n = CFG_MAX_NODES;
    size_t len = 1 + 2 * n + 1;
    char *text = malloc(len + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    text[0] = '[';
    for (size_t i = 0; i < n; i++) text[1 + 2 * i] = '0', text[2 + 2 * i] = ',';
    text[len - 1] = ']';
    text[len] = '\0';
    apx_error err;
    cfg_doc *doc = cfg_load_string(text, len, "t.yaml", &err);
    CU_ASSERT_PTR_NULL(doc);
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    char want[128];
    snprintf(want, sizeof want, "t.yaml:1:%zu: too many nodes (the limit is %d)", 2 * n, CFG_MAX_NODES);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    cfg_free(doc);
    /* Drop the last element: "[0,0,...,0]" with n-1 scalars. */
    text[len - 3] = ']';
    doc = cfg_load_string(text, len - 2, "t.yaml", &err);
    CU_ASSERT_PTR_NOT_NULL(doc);
    if (doc) CU_ASSERT_EQUAL(cfg_root(doc)->n, n - 1);
    cfg_free(doc);
    free(text);
}

static void test_oversize_string(void) {
    /* Refused on the length alone; calloc keeps the untouched pages free. */
    size_t len = (size_t)CFG_MAX_BYTES + 1;
    char *big = calloc(len, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    apx_error err = {0};
    cfg_doc *doc = cfg_load_string(big, len, "big.yaml", &err);
    CU_ASSERT_PTR_NULL(doc);
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "big.yaml: config is 16777217 bytes, more than the limit of 16777216");
    free(big);
}

/* ---- files ----------------------------------------------------------------- */

static void test_file_load(void) {
    const char text[] = "device:\n  kind: dram\n";
    const char *path = test_write_file("cfg_ok.yaml", text, sizeof text - 1);
    apx_error err;
    cfg_doc *doc = cfg_load_file(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_text_len(doc), sizeof text - 1);
    CU_ASSERT_STRING_EQUAL(cfg_text(doc), text);
    const cfg_node *kind = cfg_find(cfg_find(cfg_root(doc), "device"), "kind");
    CU_ASSERT_PTR_NOT_NULL_FATAL(kind);
    CU_ASSERT_STRING_EQUAL(kind->file, path);
    /* Errors name the file path. */
    int v;
    CU_ASSERT_EQUAL(cfg_get_enum(cfg_find(cfg_root(doc), "device"), "kind", 1, 0,
                                 (const char *const[]){"rram", NULL}, &v, &err),
                    APX_EINPUT);
    char want[600];
    snprintf(want, sizeof want, "%s:2:9: ", path);
    CU_ASSERT_EQUAL(strncmp(err.msg, want, strlen(want)), 0);
    cfg_free(doc);
}

static void test_file_missing(void) {
    const char *path = test_path("no-such-config.yaml");
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(path, &err);
    CU_ASSERT_PTR_NULL(doc);
    CU_ASSERT_EQUAL(err.code, APX_EWORK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "No such file"));
    /* A directory is not a config either. */
    doc = cfg_load_file(test_tmpdir(), &err);
    CU_ASSERT_PTR_NULL(doc);
    CU_ASSERT_EQUAL(err.code, APX_EWORK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, test_tmpdir()));
}

static void test_file_oversize_and_syntax(void) {
    /* A sparse file one byte over the limit: refused by its size, before
     * any buffer exists (costs no disk). */
    const char *path = test_path("cfg_big.yaml");
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(ftruncate(fd, (off_t)CFG_MAX_BYTES + 1), 0);
    close(fd);
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(path, &err);
    CU_ASSERT_PTR_NULL(doc);
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "16777217 bytes"));
    unlink(path);

    const char bad[] = "a: [1,\n";
    path = test_write_file("cfg_bad.yaml", bad, sizeof bad - 1);
    doc = cfg_load_file(path, &err);
    CU_ASSERT_PTR_NULL(doc);
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    char want[600];
    snprintf(want, sizeof want, "%s:2:1: ", path);
    CU_ASSERT_EQUAL(strncmp(err.msg, want, strlen(want)), 0);
}

/* ---- cfg_fail and cfg_expect_map ------------------------------------------ */

static void test_fail_format(void) {
    cfg_node at = {.kind = CFG_SCALAR, .file = "dev.yaml", .line = 12, .col = 5};
    apx_error err = {0};
    CU_ASSERT_EQUAL(cfg_fail(&at, &err, "bad %s %d", "thing", 7), APX_EINPUT);
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "dev.yaml:12:5: bad thing 7");
    /* A message longer than the buffer keeps its position prefix. */
    char longmsg[3000];
    memset(longmsg, 'x', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    cfg_fail(&at, &err, "%s", longmsg);
    CU_ASSERT_EQUAL(strncmp(err.msg, "dev.yaml:12:5: xxx", 18), 0);
    CU_ASSERT_EQUAL(strlen(err.msg), sizeof err.msg - 1);
    CU_ASSERT_EQUAL(cfg_fail(&at, NULL, "no err"), APX_EINPUT);
}

static const char *const sweep_keys[] = {"chips", "seed", "device", "operating_points", NULL};

static void test_expect_map(void) {
    apx_error err;
    cfg_doc *doc = load("chips: 4\nseed: 1\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_expect_map(cfg_root(doc), "sweep", sweep_keys, &err), APX_OK);
    cfg_free(doc);

    doc = load("seed: 1\n  # c\nchipz: 4\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_expect_map(cfg_root(doc), "sweep", sweep_keys, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:3:1: unknown key 'chipz' in sweep; did you mean 'chips'?");
    cfg_free(doc);

    /* Long keys get a longer leash: 3 edits on 18 letters still suggest. */
    doc = load("x:\n  operatin_pionts: []\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_expect_map(cfg_find(cfg_root(doc), "x"), "sweep", sweep_keys, &err),
                    APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:2:3: unknown key 'operatin_pionts' in sweep; "
                                    "did you mean 'operating_points'?");
    cfg_free(doc);

    /* Nothing close: list what is allowed. */
    doc = load("temperature: 85\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_expect_map(cfg_root(doc), "sweep", sweep_keys, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:1: unknown key 'temperature' in sweep "
                                    "(allowed: chips, seed, device, operating_points)");
    cfg_free(doc);

    /* Not a mapping at all. */
    doc = load("sweep: [1, 2]\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_expect_map(cfg_find(cfg_root(doc), "sweep"), "sweep", sweep_keys, &err),
                    APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:8: sweep must be a mapping");
    cfg_free(doc);
}

/* ---- typed readers --------------------------------------------------------- */

static void test_get_double(void) {
    apx_error err;
    cfg_doc *doc = load("lr: 1e-3\nb: 1.0e-3\nc: -0.5\nd: \"0.25\"\nbad: abc\njunk: 1.5x\n"
                        "inf: .inf\nninf: -.Inf\nnan: .nan\nhuge: 1e999\nbig: 7\nseq: [1]\n"
                        "hex: 0x10\nnul: ~\nempty:\n",
                        &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *r = cfg_root(doc);
    double v = 0;
    CU_ASSERT_EQUAL(cfg_get_double(r, "lr", 1, 0, 0, 1, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 1e-3, 1e-18);
    CU_ASSERT_EQUAL(cfg_get_double(r, "b", 1, 0, 0, 1, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 1e-3, 1e-18);
    CU_ASSERT_EQUAL(cfg_get_double(r, "c", 1, 0, -1, 1, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, -0.5, 0);
    CU_ASSERT_EQUAL(cfg_get_double(r, "d", 1, 0, 0, 1, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 0.25, 0);
    CU_ASSERT_EQUAL(cfg_get_double(r, "hex", 1, 0, 0, 100, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 16, 0);

    /* Defaults: absent and explicit null both take the default. */
    v = -1;
    CU_ASSERT_EQUAL(cfg_get_double(r, "absent", 0, 0.125, 0, 1, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 0.125, 0);
    v = -1;
    CU_ASSERT_EQUAL(cfg_get_double(r, "nul", 0, 0.5, 0, 1, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 0.5, 0);
    v = -1;
    CU_ASSERT_EQUAL(cfg_get_double(r, "empty", 0, 0.75, 0, 1, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 0.75, 0);
    /* Reading from no section at all is reading from an empty one. */
    CU_ASSERT_EQUAL(cfg_get_double(NULL, "x", 0, 2.5, 0, 10, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 2.5, 0);

    /* Required and missing, or required and null. */
    CU_ASSERT_EQUAL(cfg_get_double(r, "absent", 1, 0, 0, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:1: missing required key 'absent'");
    CU_ASSERT_EQUAL(cfg_get_double(r, "nul", 1, 0, 0, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:14:6: 'nul' needs a value");

    /* Bad values leave *out alone and point at the value. */
    v = 42;
    CU_ASSERT_EQUAL(cfg_get_double(r, "bad", 1, 0, 0, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:5:6: expected a number for 'bad', got 'abc'");
    CU_ASSERT_DOUBLE_EQUAL(v, 42, 0);
    CU_ASSERT_EQUAL(cfg_get_double(r, "junk", 1, 0, 0, 10, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:6:7: expected a number for 'junk', got '1.5x'");
    CU_ASSERT_EQUAL(cfg_get_double(r, "inf", 1, 0, -1e300, 1e300, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:7:6: 'inf' must be a finite number, got '.inf'");
    CU_ASSERT_EQUAL(cfg_get_double(r, "ninf", 1, 0, -INFINITY, INFINITY, &v, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "finite"));
    CU_ASSERT_EQUAL(cfg_get_double(r, "nan", 1, 0, -INFINITY, INFINITY, &v, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "finite"));
    CU_ASSERT_EQUAL(cfg_get_double(r, "huge", 1, 0, -INFINITY, INFINITY, &v, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "finite"));
    CU_ASSERT_EQUAL(cfg_get_double(r, "big", 1, 0, 0.1, 1.5, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:11:6: 'big' must be between 0.1 and 1.5, got 7");
    CU_ASSERT_EQUAL(cfg_get_double(r, "big", 1, 0, 10, INFINITY, &v, &err), APX_EINPUT);
CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:11:6: 'big' must be at least 10, got 7");
    CU_ASSERT_EQUAL(cfg_get_double(r, "seq", 1, 0, 0, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:12:6: 'seq' must be a number, got a sequence");
    /* Bounds are inclusive. */
    CU_ASSERT_EQUAL(cfg_get_double(r, "big", 1, 0, 7, 7, &v, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 7, 0);
    cfg_free(doc);

    /* The section itself is not a mapping. */
    doc = load("[1, 2]", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(cfg_get_double(cfg_root(doc), "x", 0, 0, 0, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:1: expected a mapping holding 'x', got a sequence");
    cfg_free(doc);
}

static void test_get_int(void) {
    apx_error err;
    cfg_doc *doc = load("chips: 0\nn: 12\nhex: 0x10\noct: 0o17\nlead: 010\nneg: -3\nexp: 1e6\n"
                        "frac: 1.5\nword: ten\nover: 99999999999999999999\n"
                        "min: -9223372036854775808\nmap: {a: 1}\nq: \"5\"\n",
                        &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *r = cfg_root(doc);
    long long v = 0;
    CU_ASSERT_EQUAL(cfg_get_int(r, "n", 1, 0, 1, 100, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 12);
    CU_ASSERT_EQUAL(cfg_get_int(r, "hex", 1, 0, 0, 100, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 16);
    CU_ASSERT_EQUAL(cfg_get_int(r, "oct", 1, 0, 0, 100, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 15);
    CU_ASSERT_EQUAL(cfg_get_int(r, "lead", 1, 0, 0, 100, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 10); /* decimal, not YAML 1.1 octal */
    CU_ASSERT_EQUAL(cfg_get_int(r, "neg", 1, 0, -10, 10, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, -3);
    CU_ASSERT_EQUAL(cfg_get_int(r, "exp", 1, 0, 0, 10000000, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 1000000);
    CU_ASSERT_EQUAL(cfg_get_int(r, "q", 1, 0, 0, 10, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 5);
    CU_ASSERT_EQUAL(cfg_get_int(r, "min", 1, 0, LLONG_MIN, 0, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, LLONG_MIN);

    v = -1;
    CU_ASSERT_EQUAL(cfg_get_int(r, "absent", 0, 77, 0, 100, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 77);
    CU_ASSERT_EQUAL(cfg_get_int(r, "absent", 1, 77, 0, 100, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:1: missing required key 'absent'");

    CU_ASSERT_EQUAL(cfg_get_int(r, "chips", 1, 0, 1, 100000, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:8: 'chips' must be between 1 and 100000, got 0");
    CU_ASSERT_EQUAL(cfg_get_int(r, "frac", 1, 0, 0, 10, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:8:7: expected an integer for 'frac', got '1.5'");
    CU_ASSERT_EQUAL(cfg_get_int(r, "word", 1, 0, 0, 10, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:9:7: expected an integer for 'word', got 'ten'");
    CU_ASSERT_EQUAL(cfg_get_int(r, "over", 1, 0, 0, LLONG_MAX, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:10:7: 'over' must be at least 0, got 99999999999999999999");
    CU_ASSERT_EQUAL(cfg_get_int(r, "map", 1, 0, 0, 10, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:12:6: 'map' must be an integer, got a mapping");
    cfg_free(doc);
}

static void test_as_number(void) {
    apx_error err;
    cfg_doc *doc = load("[3, 2.5, x, [1]]", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *s = cfg_root(doc);
    long long i = 0;
    double d = 0;
    CU_ASSERT_EQUAL(cfg_as_int(s->items[0], 0, 5, &i, &err), APX_OK);
    CU_ASSERT_EQUAL(i, 3);
    CU_ASSERT_EQUAL(cfg_as_int(s->items[0], 4, 5, &i, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:2: value must be between 4 and 5, got 3");
    CU_ASSERT_EQUAL(cfg_as_int(s->items[1], 0, 5, &i, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(cfg_as_double(s->items[1], 0, 5, &d, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(d, 2.5, 0);
    CU_ASSERT_EQUAL(cfg_as_double(s->items[2], 0, 5, &d, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:10: expected a number for value, got 'x'");
    CU_ASSERT_EQUAL(cfg_as_double(s->items[3], 0, 5, &d, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:13: value must be a number, got a sequence");
    cfg_free(doc);
}

static void test_get_bool(void) {
    apx_error err;
    cfg_doc *doc = load("a: true\nb: No\nc: ON\nd: off\ne: YES\nf: False\ng: maybe\nh: 1\n"
                        "i: [true]\n",
                        &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *r = cfg_root(doc);
    const char *keys = "abcdef";
    const int want[] = {1, 0, 1, 0, 1, 0};
    for (int k = 0; k < 6; k++) {
        char key[2] = {keys[k], 0};
        int v = -1;
        CU_ASSERT_EQUAL(cfg_get_bool(r, key, 1, !want[k], &v, &err), APX_OK);
        CU_ASSERT_EQUAL(v, want[k]);
    }
    int v = -1;
    CU_ASSERT_EQUAL(cfg_get_bool(r, "absent", 0, 1, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(cfg_get_bool(r, "absent", 1, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(cfg_get_bool(r, "g", 1, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:7:4: expected true or false for 'g', got 'maybe'");
    CU_ASSERT_EQUAL(cfg_get_bool(r, "h", 1, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(cfg_get_bool(r, "i", 1, 1, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:9:4: 'i' must be a scalar, got a sequence");
    cfg_free(doc);
}

static void test_get_string(void) {
    apx_error err;
    cfg_doc *doc = load("name: \"dram ddr4\"\nplain: hello\nq: '~'\nnul: ~\nm: {a: b}\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *r = cfg_root(doc);
    const char *s = NULL;
    CU_ASSERT_EQUAL(cfg_get_string(r, "name", 1, NULL, &s, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(s, "dram ddr4");
    /* The result points into the document. */
    CU_ASSERT_PTR_EQUAL(s, cfg_find(r, "name")->scalar);
    CU_ASSERT_EQUAL(cfg_get_string(r, "plain", 1, NULL, &s, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(s, "hello");
    CU_ASSERT_EQUAL(cfg_get_string(r, "q", 1, NULL, &s, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(s, "~");
    const char *dflt = "default";
    CU_ASSERT_EQUAL(cfg_get_string(r, "nul", 0, dflt, &s, &err), APX_OK);
    CU_ASSERT_PTR_EQUAL(s, dflt);
    CU_ASSERT_EQUAL(cfg_get_string(r, "absent", 0, dflt, &s, &err), APX_OK);
    CU_ASSERT_PTR_EQUAL(s, dflt);
    CU_ASSERT_EQUAL(cfg_get_string(r, "absent", 1, dflt, &s, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:1: missing required key 'absent'");
    CU_ASSERT_EQUAL(cfg_get_string(r, "m", 1, dflt, &s, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:5:4: 'm' must be a scalar, got a mapping");
    cfg_free(doc);
}

static void test_get_enum(void) {
    static const char *const kinds[] = {"dram", "rram", "uniform", NULL};
    apx_error err;
    cfg_doc *doc = load("a: rram\nb: drm\nc: ferroelectric\nd: [dram]\n", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *r = cfg_root(doc);
    int v = -1;
    CU_ASSERT_EQUAL(cfg_get_enum(r, "a", 1, 0, kinds, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(cfg_get_enum(r, "absent", 0, 2, kinds, &v, &err), APX_OK);
    CU_ASSERT_EQUAL(v, 2);
    CU_ASSERT_EQUAL(cfg_get_enum(r, "absent", 1, 2, kinds, &v, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(cfg_get_enum(r, "b", 1, 0, kinds, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:2:4: 'b' must be one of dram, rram, uniform; "
                                    "got 'drm' (did you mean 'dram'?)");
    CU_ASSERT_EQUAL(cfg_get_enum(r, "c", 1, 0, kinds, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:3:4: 'c' must be one of dram, rram, uniform; "
                                    "got 'ferroelectric'");
    CU_ASSERT_EQUAL(cfg_get_enum(r, "d", 1, 0, kinds, &v, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:4:4: 'd' must be a scalar, got a sequence");
    cfg_free(doc);
}

static void test_get_double_list(void) {
    apx_error err;
    cfg_doc *doc = load("one: 0.1\nflow: [0.1, 0.2, 0.3]\nblock:\n  - 1\n  - 2\nempty: []\n"
                        "bad: [0.1, x]\nhigh: [0.1, 9]\nnested: [0.1, [0.2]]\nmap: {a: 1}\n",
                        &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const cfg_node *r = cfg_root(doc);
    double *v = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "one", 1, 0, 1, 8, &v, &n, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 0.1, 0);
    free(v);
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "flow", 1, 0, 1, 8, &v, &n, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 0.1, 0);
    CU_ASSERT_DOUBLE_EQUAL(v[2], 0.3, 0);
    free(v);
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "block", 1, 0, 5, 2, &v, &n, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_DOUBLE_EQUAL(v[1], 2, 0);
    free(v);

    /* Absent and optional: no list. */
    v = (double *)&n;
    n = 9;
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "absent", 0, 0, 1, 8, &v, &n, &err), APX_OK);
    CU_ASSERT_PTR_NULL(v);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "absent", 1, 0, 1, 8, &v, &n, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:1:1: missing required key 'absent'");

    CU_ASSERT_EQUAL(cfg_get_double_list(r, "empty", 1, 0, 1, 8, &v, &n, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:6:8: 'empty' must not be an empty list");
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "flow", 1, 0, 1, 2, &v, &n, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:2:7: 'flow' has 3 values, at most 2 allowed");
    CU_ASSERT_PTR_NULL(v);
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "bad", 1, 0, 1, 8, &v, &n, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:7:12: expected a number for 'bad' item 2, got 'x'");
    CU_ASSERT_PTR_NULL(v);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "high", 1, 0, 1, 8, &v, &n, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:8:13: 'high' item 2 must be between 0 and 1, got 9");
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "nested", 1, 0, 1, 8, &v, &n, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.yaml:9:15: 'nested' item 2 must be a number, got a sequence");
    CU_ASSERT_EQUAL(cfg_get_double_list(r, "map", 1, 0, 1, 8, &v, &n, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg,
                           "t.yaml:10:6: 'map' must be a number or a list of numbers, got a mapping");
    cfg_free(doc);
}

/* ---- edit distance ----------------------------------------------------------- */

static void test_edit_distance(void) {
    CU_ASSERT_EQUAL(cfg_edit_distance("", ""), 0);
    CU_ASSERT_EQUAL(cfg_edit_distance("abc", ""), 3);
    CU_ASSERT_EQUAL(cfg_edit_distance("", "abcd"), 4);
    CU_ASSERT_EQUAL(cfg_edit_distance("chips", "chips"), 0);
    CU_ASSERT_EQUAL(cfg_edit_distance("chipz", "chips"), 1);
    CU_ASSERT_EQUAL(cfg_edit_distance("kitten", "sitting"), 3);
    CU_ASSERT_EQUAL(cfg_edit_distance("sitting", "kitten"), 3);
    CU_ASSERT_EQUAL(cfg_edit_distance("flaw", "lawn"), 2);
    CU_ASSERT_EQUAL(cfg_edit_distance("vdd", "trcd"), 3);
    CU_ASSERT_EQUAL(cfg_edit_distance("abcdef", "azcdxf"), 2);
    /* Long strings: bounded work, and the result still tells them apart. */
    char *a = malloc(100001), *b = malloc(100001);
    memset(a, 'a', 100000);
    memset(b, 'a', 100000);
    a[100000] = b[100000] = '\0';
    CU_ASSERT_EQUAL(cfg_edit_distance(a, b), 0);
    b[3] = 'b';
    CU_ASSERT_EQUAL(cfg_edit_distance(a, b), 1);
    b[99990] = '\0';
    CU_ASSERT_EQUAL(cfg_edit_distance(a, b), 11);
    CU_ASSERT_EQUAL(cfg_edit_distance(a, "a"), 99999);
    free(a);
    free(b);
}

void add_config_suite(void) {
    TEST_SUITE("config",
               {"tree and positions", test_tree_and_positions},
               {"text is exact", test_text_is_exact},
               {"text of partial buffer", test_text_of_partial_buffer},
               {"empty documents", test_empty_documents},
               {"scalar styles", test_scalar_styles},
               {"syntax errors point", test_syntax_errors_point},
               {"reader error points", test_reader_error_points},
               {"duplicate keys", test_duplicate_keys},
               {"aliases, tags, documents", test_aliases_tags_and_documents},
               {"depth limit", test_depth_limit},
               {"node limit", test_node_limit},
               {"oversize string", test_oversize_string},
               {"file load", test_file_load},
               {"file missing", test_file_missing},
               {"file oversize and syntax", test_file_oversize_and_syntax},
               {"fail format", test_fail_format},
               {"expect map", test_expect_map},
               {"get double", test_get_double},
               {"get int", test_get_int},
               {"as number", test_as_number},
               {"get bool", test_get_bool},
               {"get string", test_get_string},
               {"get enum", test_get_enum},
               {"get double list", test_get_double_list},
               {"edit distance", test_edit_distance});
}
