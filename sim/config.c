/* config.c - YAML configuration through libyaml's event API.
 *
 * The parser turns the event stream into a cfg_node tree. All nodes, strings
 * and item arrays live in an arena owned by the cfg_doc, so cfg_free() is one
 * walk over a list of blocks. While a sequence or mapping is open its items
 * collect in a growable scratch array on a fixed-depth stack; when it closes
 * they are copied into the arena at their exact size.
 *
 * Choices the header leaves open, made here:
 *  - An unquoted null scalar ("", "~", "null", "Null", "NULL") as a value
 *    counts as absent for the typed readers: optional keys take their default,
 *    required ones fail with "needs a value". A quoted "~" is the string "~".
 *  - Quoted scalars are read as numbers and booleans too when the reader asks
 *    for one ("3" works where 3 does); they are never null.
 *  - Anchors, aliases and tags other than !!str are refused: aliases are the
 *    "billion laughs" hazard, and tags would change types behind the readers.
 *  - Scalars containing NUL (possible with "\0" escapes) are refused because
 *    every consumer treats scalars as C strings.
 *  - Ints are decimal, 0x hex or 0o octal (a leading 0 is still decimal, not
 *    YAML 1.1 octal, so "chips: 010" is 10); an integral value written as a
 *    float (1e6, 2.0) is accepted up to 2^53.
 *  - Reading from a NULL map behaves like reading from an empty mapping, so
 *    callers can pass cfg_find() of an optional section directly.
 * Numbers go through strtod/strtoll, which assume the "C" locale; the library
 * never calls setlocale. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---- arena ------------------------------------------------------------- */

typedef struct cfg_block {
    struct cfg_block *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[];
} cfg_block;

#define CFG_BLOCK_SIZE ((size_t)64 << 10)

struct cfg_doc {
    cfg_block *blocks;
    char *text; /* the parsed bytes, NUL-terminated */
    size_t len;
    const char *file; /* in the arena */
    cfg_node *root;
};

static void *arena_alloc(cfg_doc *doc, size_t size) {
    const size_t align = _Alignof(max_align_t);
    size = (size + align - 1) & ~(align - 1);
    if (size == 0) size = align;
    cfg_block *b = doc->blocks;
    if (!b || b->cap - b->used < size) {
        /* Big requests get a block of their own; the current block stays in
         * front so its free space is still used by later small requests. */
        size_t cap = size > CFG_BLOCK_SIZE / 4 ? size : CFG_BLOCK_SIZE;
        cfg_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->used = 0;
        nb->cap = cap;
        if (b && cap != CFG_BLOCK_SIZE) {
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            doc->blocks = nb;
        }
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

static char *arena_strndup(cfg_doc *doc, const char *s, size_t n) {
    char *p = arena_alloc(doc, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void cfg_free(cfg_doc *doc) {
    if (!doc) return;
    cfg_block *b = doc->blocks;
    while (b) {
        cfg_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc->text);
    free(doc);
}

const cfg_node *cfg_root(const cfg_doc *doc) { return doc ? doc->root : NULL; }
const char *cfg_text(const cfg_doc *doc) { return doc ? doc->text : NULL; }
size_t cfg_text_len(const cfg_doc *doc) { return doc ? doc->len : 0; }

/* ---- small helpers for messages ---------------------------------------- */

/* A scalar quoted in an error: short, one line, no control characters. */
typedef struct {
    char s[48];
} cfg_clip_buf;

static const char *clip(const char *s, cfg_clip_buf *buf) {
    size_t n = strlen(s), max = sizeof buf->s - 1;
    size_t keep = n > max ? max - 3 : n;
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        buf->s[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (n > max) memcpy(buf->s + keep, "...", 3), keep += 3;
    buf->s[keep] = '\0';
    return buf->s;
}

static const char *kind_name(cfg_kind k) {
    switch (k) {
    case CFG_SCALAR: return "a scalar";
    case CFG_SEQ: return "a sequence";
    case CFG_MAP: return "a mapping";
    }
    return "a node";
}

/* "FILE:LINE:COL: " then the message; line 0 means no position. The prefix
 * is written first so a long message is cut at its end, never the position. */
static int vfail_pos(apx_error *err, const char *file, int line, int col, const char *fmt,
                     va_list ap) {
    if (!err) return APX_EINPUT;
    size_t size = sizeof err->msg, off = 0;
    if (line > 0) {
        int w = snprintf(err->msg, size, "%s:%d:%d: ", file ? file : "<config>", line, col);
        off = w < 0 ? 0 : (size_t)w >= size ? size - 1 : (size_t)w;
    }
    vsnprintf(err->msg + off, size - off, fmt, ap);
    err->code = APX_EINPUT;
    return APX_EINPUT;
}

int cfg_fail(const cfg_node *at, apx_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_pos(err, at ? at->file : NULL, at ? at->line : 0, at ? at->col : 0, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- the parser ---------------------------------------------------------- */

typedef struct {
    cfg_node *node;
    size_t n, cap;
    cfg_node **items;
    const char **keys;
    int *key_line, *key_col;
    /* mapping: a key has been read and waits for its value */
    int have_key;
    const char *key;
    int kline, kcol;
} cfg_frame;

typedef struct {
    cfg_doc *doc;
    apx_error *err;
    cfg_frame stack[CFG_MAX_DEPTH];
    int depth;
    size_t nodes;
    int docs;
} cfg_builder;

static int fail_at(cfg_builder *b, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int mark_int(size_t v) { return v >= INT_MAX ? INT_MAX : (int)v + 1; }

static int fail_at(cfg_builder *b, yaml_mark_t mark, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_pos(b->err, b->doc->file, mark_int(mark.line), mark_int(mark.column), fmt, ap);
    va_end(ap);
    return rc;
}

static int oom(cfg_builder *b) {
    return apx_fail(b->err, APX_EWORK, "%s: out of memory while reading the config",
                    b->doc->file);
}

static void frame_release(cfg_frame *f) {
    free(f->items);
    free(f->keys);
    free(f->key_line);
    free(f->key_col);
    memset(f, 0, sizeof *f);
}

static int frame_push_item(cfg_builder *b, cfg_frame *f, cfg_node *item) {
    if (f->n == f->cap) {
        /* The node limit bounds n, so cap never overflows size_t arithmetic. */
        size_t cap = f->cap ? f->cap * 2 : 8;
        cfg_node **items = realloc(f->items, cap * sizeof *items);
        if (!items) return oom(b);
        f->items = items;
        if (f->node->kind == CFG_MAP) {
            const char **keys = realloc(f->keys, cap * sizeof *keys);
            if (!keys) return oom(b);
            f->keys = keys;
            int *kl = realloc(f->key_line, cap * sizeof *kl);
            if (!kl) return oom(b);
            f->key_line = kl;
            int *kc = realloc(f->key_col, cap * sizeof *kc);
            if (!kc) return oom(b);
            f->key_col = kc;
        }
        f->cap = cap;
    }
    f->items[f->n] = item;
    if (f->node->kind == CFG_MAP) {
        f->keys[f->n] = f->key;
        f->key_line[f->n] = f->kline;
        f->key_col[f->n] = f->kcol;
        f->have_key = 0;
    }
    f->n++;
    return APX_OK;
}

typedef struct {
    const char *key;
    size_t index;
} cfg_keyref;

static int keyref_cmp(const void *pa, const void *pb) {
    const cfg_keyref *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);
    if (c) return c;
    return (a->index > b->index) - (a->index < b->index);
}

/* Sorting keeps duplicate detection O(n log n) even for a hostile mapping with
 * hundreds of thousands of keys. The reported duplicate is the earliest
 * second occurrence in the file, so the error is the same whatever the sort. */
static int check_duplicates(cfg_builder *b, const cfg_frame *f) {
    if (f->n < 2) return APX_OK;
    if (f->n <= 8) {
        for (size_t j = 1; j < f->n; j++)
            for (size_t i = 0; i < j; i++)
                if (strcmp(f->keys[i], f->keys[j]) == 0) {
                    cfg_clip_buf cb;
                    yaml_mark_t m = {0, (size_t)f->key_line[j] - 1, (size_t)f->key_col[j] - 1};
                    return fail_at(b, m, "duplicate key '%s' (first defined at %d:%d)",
                                   clip(f->keys[j], &cb), f->key_line[i], f->key_col[i]);
                }
        return APX_OK;
    }
    cfg_keyref *refs = malloc(f->n * sizeof *refs);
    if (!refs) return oom(b);
    for (size_t i = 0; i < f->n; i++) refs[i] = (cfg_keyref){f->keys[i], i};
    qsort(refs, f->n, sizeof *refs, keyref_cmp);
    size_t first = SIZE_MAX, second = SIZE_MAX;
    for (size_t i = 1; i < f->n; i++) {
        /* refs[i-1] starts a group iff it differs from its predecessor; the
         * second element of each group is the first repeat of that key. */
        if (strcmp(refs[i].key, refs[i - 1].key) != 0) continue;
        if (i >= 2 && strcmp(refs[i - 2].key, refs[i].key) == 0) continue;
        if (refs[i].index < second) {
            second = refs[i].index;
            first = refs[i - 1].index;
        }
    }
    free(refs);
    if (second == SIZE_MAX) return APX_OK;
    cfg_clip_buf cb;
    yaml_mark_t m = {0, (size_t)f->key_line[second] - 1, (size_t)f->key_col[second] - 1};
    return fail_at(b, m, "duplicate key '%s' (first defined at %d:%d)",
                   clip(f->keys[second], &cb), f->key_line[first], f->key_col[first]);
}

/* Closes the innermost container: copies its scratch arrays into the arena. */
static int frame_close(cfg_builder *b) {
    cfg_frame *f = &b->stack[b->depth - 1];
    cfg_node *node = f->node;
    int rc = APX_OK;
    if (node->kind == CFG_MAP) rc = check_duplicates(b, f);
    if (rc == APX_OK && f->n > 0) {
        node->items = arena_alloc(b->doc, f->n * sizeof *node->items);
        if (!node->items) rc = oom(b);
        else memcpy(node->items, f->items, f->n * sizeof *node->items);
        if (rc == APX_OK && node->kind == CFG_MAP) {
            node->keys = arena_alloc(b->doc, f->n * sizeof *node->keys);
            node->key_line = arena_alloc(b->doc, f->n * sizeof *node->key_line);
            node->key_col = arena_alloc(b->doc, f->n * sizeof *node->key_col);
            if (!node->keys || !node->key_line || !node->key_col) {
                rc = oom(b);
            } else {
                memcpy(node->keys, f->keys, f->n * sizeof *node->keys);
                memcpy(node->key_line, f->key_line, f->n * sizeof *node->key_line);
                memcpy(node->key_col, f->key_col, f->n * sizeof *node->key_col);
            }
        }
    }
    node->n = f->n;
    frame_release(f);
    b->depth--;
    return rc;
}

/* Counts one more node against CFG_MAX_NODES before anything is allocated. */
static int count_node(cfg_builder *b, yaml_mark_t mark) {
    if (++b->nodes > CFG_MAX_NODES)
        return fail_at(b, mark, "too many nodes (the limit is %d)", CFG_MAX_NODES);
    return APX_OK;
}

static int check_anchor_tag(cfg_builder *b, yaml_mark_t mark, const yaml_char_t *anchor,
                            const yaml_char_t *tag, int *is_str) {
    cfg_clip_buf cb;
    *is_str = 0;
    if (anchor)
        return fail_at(b, mark, "aliases are not supported (anchor '&%s')",
                       clip((const char *)anchor, &cb));
    if (tag) {
        if (strcmp((const char *)tag, YAML_STR_TAG) == 0) *is_str = 1;
        else
            return fail_at(b, mark, "tags are not supported ('%s')", clip((const char *)tag, &cb));
    }
    return APX_OK;
}

/* Hands a finished node (or a key) to the container that is open. */
static int attach(cfg_builder *b, cfg_node *node, yaml_mark_t mark) {
    if (b->depth == 0) {
        b->doc->root = node;
        return APX_OK;
    }
    cfg_frame *f = &b->stack[b->depth - 1];
    if (f->node->kind == CFG_MAP && !f->have_key) {
        if (node->kind != CFG_SCALAR) return fail_at(b, mark, "mapping keys must be scalars");
        f->key = node->scalar;
        f->kline = node->line;
        f->kcol = node->col;
        f->have_key = 1;
        return APX_OK;
    }
    return frame_push_item(b, f, node);
}

static cfg_node *new_node(cfg_builder *b, cfg_kind kind, yaml_mark_t mark) {
    cfg_node *node = arena_alloc(b->doc, sizeof *node);
    if (!node) return NULL;
    memset(node, 0, sizeof *node);
    node->kind = kind;
    node->file = b->doc->file;
    node->line = mark_int(mark.line);
    node->col = mark_int(mark.column);
    return node;
}

static int on_event(cfg_builder *b, const yaml_event_t *ev, int *done) {
    int is_str, rc;
    cfg_clip_buf cb;
    switch (ev->type) {
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
        return APX_OK;
    case YAML_STREAM_END_EVENT:
        *done = 1;
        return APX_OK;
    case YAML_DOCUMENT_START_EVENT:
        if (b->docs++ > 0)
            return fail_at(b, ev->start_mark, "multiple documents are not supported");
        return APX_OK;
    case YAML_ALIAS_EVENT:
        return fail_at(b, ev->start_mark, "aliases are not supported ('*%s')",
                       clip((const char *)ev->data.alias.anchor, &cb));
    case YAML_SCALAR_EVENT: {
        rc = check_anchor_tag(b, ev->start_mark, ev->data.scalar.anchor, ev->data.scalar.tag,
                              &is_str);
        if (rc) return rc;
        if ((rc = count_node(b, ev->start_mark))) return rc;
        const char *value = (const char *)ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        if (len && memchr(value, '\0', len))
            return fail_at(b, ev->start_mark, "NUL characters in scalars are not supported");
        cfg_node *node = new_node(b, CFG_SCALAR, ev->start_mark);
        if (!node) return oom(b);
        node->scalar = arena_strndup(b->doc, value, len);
        if (!node->scalar) return oom(b);
        node->quoted = is_str || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        return attach(b, node, ev->start_mark);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int seq = ev->type == YAML_SEQUENCE_START_EVENT;
        rc = check_anchor_tag(b, ev->start_mark,
                              seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor,
                              seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag,
                              &is_str);
        if (rc) return rc;
        if (is_str) return fail_at(b, ev->start_mark, "tag !!str on a %s is not supported",
                                       seq ? "sequence" : "mapping");
        if (b->depth >= CFG_MAX_DEPTH)
            return fail_at(b, ev->start_mark, "nesting is deeper than %d levels", CFG_MAX_DEPTH);
        if ((rc = count_node(b, ev->start_mark))) return rc;
        cfg_node *node = new_node(b, seq ? CFG_SEQ : CFG_MAP, ev->start_mark);
        if (!node) return oom(b);
        if ((rc = attach(b, node, ev->start_mark))) return rc;
        cfg_frame *f = &b->stack[b->depth++];
        memset(f, 0, sizeof *f);
        f->node = node;
        return APX_OK;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth == 0) return fail_at(b, ev->start_mark, "unbalanced end of collection");
        return frame_close(b);
    }
    return APX_OK;
}

/* Line and column of a byte offset, for libyaml reader errors (which carry an
 * offset, not a mark). */
static yaml_mark_t mark_of_offset(const char *text, size_t len, size_t offset) {
    yaml_mark_t m = {offset, 0, 0};
    if (offset > len) offset = len;
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') m.line++, m.column = 0;
        else m.column++;
    }
    return m;
}

static int parse_error(cfg_builder *b, const yaml_parser_t *p) {
    const char *problem = p->problem ? p->problem : "malformed YAML";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return oom(b);
    case YAML_READER_ERROR: {
        yaml_mark_t m = mark_of_offset(b->doc->text, b->doc->len, p->problem_offset);
        if (p->problem_value >= 0)
            return fail_at(b, m, "%s (byte #%X at offset %zu)", problem, (unsigned)p->problem_value,
                           p->problem_offset);
        return fail_at(b, m, "%s (at offset %zu)", problem, p->problem_offset);
    }
    default:
        if (p->context)
            return fail_at(b, p->problem_mark, "%s (%s started at %zu:%zu)", problem, p->context,
                           p->context_mark.line + 1, p->context_mark.column + 1);
        return fail_at(b, p->problem_mark, "%s", problem);
    }
}

/* Parses doc->text into doc->root. */
static int build(cfg_doc *doc, apx_error *err) {
    cfg_builder *b = calloc(1, sizeof *b);
    if (!b) return apx_fail(err, APX_EWORK, "%s: out of memory", doc->file);
    b->doc = doc;
    b->err = err;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(b);
        return apx_fail(err, APX_EWORK, "%s: cannot initialise the YAML parser", doc->file);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)doc->text, doc->len);
    int rc = APX_OK, done = 0;
    while (!done && rc == APX_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = parse_error(b, &parser);
            break;
        }
        rc = on_event(b, &ev, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    while (b->depth > 0) frame_release(&b->stack[--b->depth]);
    free(b);
    if (rc) return rc;

    /* "An empty document gives an empty mapping": no document at all, or one
     * whose root is a bare null ("---" alone, "~"). */
    cfg_node *root = doc->root;
    if (!root || (root->kind == CFG_SCALAR && !root->quoted &&
                  (!root->scalar[0] || !strcmp(root->scalar, "~") || !strcmp(root->scalar, "null") ||
                   !strcmp(root->scalar, "Null") || !strcmp(root->scalar, "NULL")))) {
        yaml_mark_t m = {0, 0, 0};
        if (root) m.line = (size_t)root->line - 1, m.column = (size_t)root->col - 1;
        cfg_builder tmp = {.doc = doc};
        cfg_node *map = new_node(&tmp, CFG_MAP, m);
        if (!map) return apx_fail(err, APX_EWORK, "%s: out of memory", doc->file);
        doc->root = map;
    }
    return APX_OK;
}

/* Takes ownership of text (len bytes plus a NUL). */
static cfg_doc *load_owned(char *text, size_t len, const char *name, apx_error *err) {
    cfg_doc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        free(text);
        apx_fail(err, APX_EWORK, "%s: out of memory", name);
        return NULL;
    }
    doc->text = text;
    doc->len = len;
    doc->file = arena_strndup(doc, name, strlen(name));
    if (!doc->file) {
        cfg_free(doc);
        apx_fail(err, APX_EWORK, "%s: out of memory", name);
        return NULL;
    }
    if (build(doc, err) != APX_OK) {
        cfg_free(doc);
        return NULL;
    }
    return doc;
}

cfg_doc *cfg_load_string(const char *text, size_t len, const char *name, apx_error *err) {
    if (!name) name = "<string>";
    if (len > CFG_MAX_BYTES) {
        apx_fail(err, APX_EINPUT, "%s: config is %zu bytes, more than the limit of %u", name, len,
                 CFG_MAX_BYTES);
        return NULL;
    }
    if (!text && len > 0) {
        apx_fail(err, APX_EWORK, "%s: no text given", name);
        return NULL;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        apx_fail(err, APX_EWORK, "%s: out of memory", name);
        return NULL;
    }
    if (len) memcpy(copy, text, len);
    copy[len] = '\0';
    return load_owned(copy, len, name, err);
}

cfg_doc *cfg_load_file(const char *path, apx_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        apx_fail(err, APX_EWORK, "cannot open config '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        apx_fail(err, APX_EWORK, "cannot stat config '%s': %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        apx_fail(err, APX_EWORK, "cannot read config '%s': it is a directory", path);
        close(fd);
        return NULL;
    }
    /* Size first: a regular file over the limit is refused before any buffer
     * is allocated. Pipes and devices report no size, so reading stops one
     * byte past the limit instead. */
    if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > CFG_MAX_BYTES) {
        apx_fail(err, APX_EINPUT, "%s: config is %jd bytes, more than the limit of %u", path,
                 (intmax_t)st.st_size, CFG_MAX_BYTES);
        close(fd);
        return NULL;
    }
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        apx_fail(err, APX_EWORK, "%s: out of memory", path);
        close(fd);
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            if (cap > CFG_MAX_BYTES) break;
            size_t ncap = cap * 2 > (size_t)CFG_MAX_BYTES + 1 ? (size_t)CFG_MAX_BYTES + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                close(fd);
                apx_fail(err, APX_EWORK, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0) {
            if (errno == EINTR) continue;
            apx_fail(err, APX_EWORK, "cannot read config '%s': %s", path, strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    close(fd);
    if (len > CFG_MAX_BYTES) {
        apx_fail(err, APX_EINPUT, "%s: config is more than the limit of %u bytes", path,
                 CFG_MAX_BYTES);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return load_owned(buf, len, path, err);
}

/* ---- lookups and "did you mean" ---------------------------------------- */

#define CFG_EDIT_CAP 64

int cfg_edit_distance(const char *a, const char *b) {
    /* Only the first 64 bytes are compared (plus the difference in what is
     * left over), so a hostile 16 MiB key costs no more than a short one. */
    size_t la = strlen(a), lb = strlen(b);
    size_t ra = la > CFG_EDIT_CAP ? la - CFG_EDIT_CAP : 0;
    size_t rb = lb > CFG_EDIT_CAP ? lb - CFG_EDIT_CAP : 0;
    if (la > CFG_EDIT_CAP) la = CFG_EDIT_CAP;
    if (lb > CFG_EDIT_CAP) lb = CFG_EDIT_CAP;
    int prev[CFG_EDIT_CAP + 1], cur[CFG_EDIT_CAP + 1];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int best = del < ins ? del : ins;
            cur[j] = sub < best ? sub : best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    size_t tail = ra > rb ? ra - rb : rb - ra;
    if (tail > (size_t)(INT_MAX - prev[lb])) return INT_MAX;
    return prev[lb] + (int)tail;
}

/* The nearest choice if it is close enough to be a likely typo, else NULL. */
static const char *suggest(const char *given, const char *const *choices) {
    size_t len = strlen(given);
    int limit = (int)(len / 3 > 2 ? (len / 3 > INT_MAX ? INT_MAX : len / 3) : 2);
    const char *best = NULL;
    int best_d = INT_MAX;
    for (const char *const *c = choices; *c; c++) {
        int d = cfg_edit_distance(given, *c);
        if (d < best_d) best_d = d, best = *c;
    }
    return best && best_d <= limit ? best : NULL;
}

/* "a, b, c" into buf (truncated with "..." when long). */
static const char *join_choices(const char *const *choices, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *c = choices; *c; c++) {
        int w = snprintf(buf + used, size - used, "%s%s", c == choices ? "" : ", ", *c);
        if (w < 0 || (size_t)w >= size - used) {
            if (size >= 4) memcpy(buf + size - 4, "...", 4);
            break;
        }
        used += (size_t)w;
    }
    return buf;
}

int cfg_expect_map(const cfg_node *node, const char *what, const char *const *allowed,
                   apx_error *err) {
    if (!node) return apx_fail(err, APX_EINPUT, "%s is missing", what);
    if (node->kind != CFG_MAP) return cfg_fail(node, err, "%s must be a mapping", what);
    for (size_t i = 0; i < node->n; i++) {
        const char *key = node->keys[i];
        int known = 0;
        for (const char *const *a = allowed; *a && !known; a++) known = strcmp(*a, key) == 0;
        if (known) continue;
        cfg_node at = {.file = node->file, .line = node->key_line[i], .col = node->key_col[i]};
        cfg_clip_buf cb;
        const char *near = suggest(key, allowed);
        if (near)
            return cfg_fail(&at, err, "unknown key '%s' in %s; did you mean '%s'?", clip(key, &cb),
                            what, near);
        if (!allowed[0])
            return cfg_fail(&at, err, "unknown key '%s' in %s (it takes no keys)", clip(key, &cb),
                            what);
        char list[512];
        return cfg_fail(&at, err, "unknown key '%s' in %s (allowed: %s)", clip(key, &cb), what,
                        join_choices(allowed, list, sizeof list));
    }
    return APX_OK;
}

const cfg_node *cfg_find(const cfg_node *map, const char *key) {
    if (!map || map->kind != CFG_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return map->items[i];
    return NULL;
}

static int is_null(const cfg_node *v) {
    return v->kind == CFG_SCALAR && !v->quoted &&
           (!v->scalar[0] || !strcmp(v->scalar, "~") || !strcmp(v->scalar, "null") ||
            !strcmp(v->scalar, "Null") || !strcmp(v->scalar, "NULL"));
}

/* Looks up key for a typed reader. Returns APX_OK with *val NULL when the
 * caller should use its default, APX_OK with *val set to a scalar node, or an
 * error (not a mapping, missing while required, not a scalar). */
static int lookup(const cfg_node *map, const char *key, int required, int want_scalar,
                  const cfg_node **val, apx_error *err) {
    *val = NULL;
    if (map && map->kind != CFG_MAP)
        return cfg_fail(map, err, "expected a mapping holding '%s', got %s", key,
                        kind_name(map->kind));
    const cfg_node *v = cfg_find(map, key);
    if (!v) {
        if (!required) return APX_OK;
        if (map) return cfg_fail(map, err, "missing required key '%s'", key);
        return apx_fail(err, APX_EINPUT, "missing required key '%s'", key);
    }
    if (is_null(v)) {
        if (required) return cfg_fail(v, err, "'%s' needs a value", key);
        return APX_OK;
    }
    if (want_scalar && v->kind != CFG_SCALAR)
        return cfg_fail(v, err, "'%s' must be a scalar, got %s", key, kind_name(v->kind));
    *val = v;
    return APX_OK;
}

/* ---- numbers -------------------------------------------------------------- */

enum { NUM_OK, NUM_SYNTAX, NUM_RANGE, NUM_NONFINITE, NUM_FRACTION };

static int parse_double(const char *s, double *out) {
    if (!s[0] || isspace((unsigned char)s[0])) return NUM_SYNTAX;
    const char *p = s + (s[0] == '+' || s[0] == '-');
    if (!strcasecmp(p, ".inf") || !strcasecmp(p, ".nan")) return NUM_NONFINITE;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || *end) return NUM_SYNTAX;
    if (!isfinite(d)) return NUM_NONFINITE;
    *out = d;
    return NUM_OK;
}

static int digit_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 99;
}

static int parse_int(const char *s, long long *out) {
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) base = 16, p += 2;
    else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O')) base = 8, p += 2;
    int integer_syntax = digit_value((unsigned char)*p) < base;
    if (integer_syntax) {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(p, &end, base);
        if (*end == '\0') {
            if (errno == ERANGE) return NUM_RANGE;
            if (neg) {
                if (u > (unsigned long long)LLONG_MAX + 1) return NUM_RANGE;
                *out = u == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)u;
            } else {
                if (u > (unsigned long long)LLONG_MAX) return NUM_RANGE;
                *out = (long long)u;
            }
            return NUM_OK;
        }
    }
    /* 1e6 or 2.0: fine if the value is a whole number that a double holds
     * exactly. */
    double d;
    int rc = parse_double(s, &d);
    if (rc != NUM_OK) return rc;
    if (d != floor(d)) return NUM_FRACTION;
    if (fabs(d) > 9007199254740992.0) return NUM_RANGE;
    *out = (long long)d;
    return NUM_OK;
}

/* The shortest %g form that reads back as the same double: 0.1, not
 * 0.10000000000000001. */
static void shortest(double v, char *buf, size_t size) {
    /* Whole numbers in plain digits: %.1g would print 10 as 1e+01. */
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, size, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void range_text_d(double lo, double hi, char *buf, size_t size) {
    char a[40], b[40];
    int open_lo = lo <= -DBL_MAX, open_hi = hi >= DBL_MAX;
    shortest(lo, a, sizeof a);
    shortest(hi, b, sizeof b);
    if (open_lo && open_hi) snprintf(buf, size, "a finite number");
    else if (open_hi) snprintf(buf, size, "at least %s", a);
    else if (open_lo) snprintf(buf, size, "at most %s", b);
    else snprintf(buf, size, "between %s and %s", a, b);
}

static void range_text_ll(long long lo, long long hi, char *buf, size_t size) {
    if (lo == LLONG_MIN && hi == LLONG_MAX) snprintf(buf, size, "a 64-bit integer");
    else if (hi == LLONG_MAX) snprintf(buf, size, "at least %lld", lo);
    else if (lo == LLONG_MIN) snprintf(buf, size, "at most %lld", hi);
    else snprintf(buf, size, "between %lld and %lld", lo, hi);
}

/* `label` names the value in messages: "'lr'", "'vdd' item 2" or "value". */
static int read_double(const cfg_node *v, const char *label, double lo, double hi, double *out,
                       apx_error *err) {
    if (v->kind != CFG_SCALAR)
        return cfg_fail(v, err, "%s must be a number, got %s", label, kind_name(v->kind));
    cfg_clip_buf cb;
    char range[128];
    double d = 0;
    switch (parse_double(v->scalar, &d)) {
    case NUM_OK:
        break;
    case NUM_NONFINITE:
        return cfg_fail(v, err, "%s must be a finite number, got '%s'", label, clip(v->scalar, &cb));
    default:
        return cfg_fail(v, err, "expected a number for %s, got '%s'", label, clip(v->scalar, &cb));
    }
    if (!(d >= lo && d <= hi)) {
        range_text_d(lo, hi, range, sizeof range);
        return cfg_fail(v, err, "%s must be %s, got %s", label, range, clip(v->scalar, &cb));
    }
    *out = d;
    return APX_OK;
}

static int read_int(const cfg_node *v, const char *label, long long lo, long long hi,
                    long long *out, apx_error *err) {
    if (v->kind != CFG_SCALAR)
        return cfg_fail(v, err, "%s must be an integer, got %s", label, kind_name(v->kind));
    cfg_clip_buf cb;
    char range[128];
    long long x = 0;
    switch (parse_int(v->scalar, &x)) {
    case NUM_OK:
        break;
    case NUM_RANGE:
        range_text_ll(lo, hi, range, sizeof range);
        return cfg_fail(v, err, "%s must be %s, got %s", label, range, clip(v->scalar, &cb));
    case NUM_NONFINITE:
        return cfg_fail(v, err, "%s must be a finite integer, got '%s'", label,
                        clip(v->scalar, &cb));
    default:
        return cfg_fail(v, err, "expected an integer for %s, got '%s'", label,
                        clip(v->scalar, &cb));
    }
    if (x < lo || x > hi) {
        range_text_ll(lo, hi, range, sizeof range);
        return cfg_fail(v, err, "%s must be %s, got %s", label, range, clip(v->scalar, &cb));
    }
    *out = x;
    return APX_OK;
}

static const char *key_label(const char *key, char *buf, size_t size) {
    cfg_clip_buf cb;
    snprintf(buf, size, "'%s'", clip(key, &cb));
    return buf;
}

int cfg_as_double(const cfg_node *node, double lo, double hi, double *out, apx_error *err) {
    if (!node) return apx_fail(err, APX_EINPUT, "expected a number, got nothing");
    return read_double(node, "value", lo, hi, out, err);
}

int cfg_as_int(const cfg_node *node, long long lo, long long hi, long long *out,
               apx_error *err) {
    if (!node) return apx_fail(err, APX_EINPUT, "expected an integer, got nothing");
    return read_int(node, "value", lo, hi, out, err);
}

int cfg_get_double(const cfg_node *map, const char *key, int required, double dflt, double lo,
                   double hi, double *out, apx_error *err) {
    const cfg_node *v;
    int rc = lookup(map, key, required, 0, &v, err);
    if (rc) return rc;
    if (!v) {
        *out = dflt;
        return APX_OK;
    }
    char label[64];
    return read_double(v, key_label(key, label, sizeof label), lo, hi, out, err);
}

int cfg_get_int(const cfg_node *map, const char *key, int required, long long dflt,
                long long lo, long long hi, long long *out, apx_error *err) {
    const cfg_node *v;
    int rc = lookup(map, key, required, 0, &v, err);
    if (rc) return rc;
    if (!v) {
        *out = dflt;
        return APX_OK;
    }
    char label[64];
    return read_int(v, key_label(key, label, sizeof label), lo, hi, out, err);
}

int cfg_get_bool(const cfg_node *map, const char *key, int required, int dflt, int *out,
                 apx_error *err) {
    const cfg_node *v;
    int rc = lookup(map, key, required, 1, &v, err);
    if (rc) return rc;
    if (!v) {
        *out = dflt;
        return APX_OK;
    }
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (!strcasecmp(v->scalar, yes[i])) return *out = 1, APX_OK;
        if (!strcasecmp(v->scalar, no[i])) return *out = 0, APX_OK;
    }
    cfg_clip_buf cb;
    return cfg_fail(v, err, "expected true or false for '%s', got '%s'", key,
                    clip(v->scalar, &cb));
}

int cfg_get_string(const cfg_node *map, const char *key, int required, const char *dflt,
                   const char **out, apx_error *err) {
    const cfg_node *v;
    int rc = lookup(map, key, required, 1, &v, err);
    if (rc) return rc;
    *out = v ? v->scalar : dflt;
    return APX_OK;
}

int cfg_get_enum(const cfg_node *map, const char *key, int required, int dflt,
                 const char *const *choices, int *out, apx_error *err) {
    const cfg_node *v;
    int rc = lookup(map, key, required, 1, &v, err);
    if (rc) return rc;
    if (!v) {
        *out = dflt;
        return APX_OK;
    }
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], v->scalar) == 0) return *out = i, APX_OK;
    cfg_clip_buf cb;
    char list[512];
    const char *near = suggest(v->scalar, choices);
    join_choices(choices, list, sizeof list);
    if (near)
        return cfg_fail(v, err, "'%s' must be one of %s; got '%s' (did you mean '%s'?)", key, list,
                        clip(v->scalar, &cb), near);
    return cfg_fail(v, err, "'%s' must be one of %s; got '%s'", key, list, clip(v->scalar, &cb));
}

int cfg_get_double_list(const cfg_node *map, const char *key, int required, double lo,
                        double hi, size_t max_n, double **out, size_t *n, apx_error *err) {
    *out = NULL;
    *n = 0;
    const cfg_node *v;
    int rc = lookup(map, key, required, 0, &v, err);
    if (rc || !v) return rc;
    if (v->kind == CFG_MAP)
        return cfg_fail(v, err, "'%s' must be a number or a list of numbers, got a mapping", key);
    size_t count = v->kind == CFG_SEQ ? v->n : 1;
    if (count == 0) return cfg_fail(v, err, "'%s' must not be an empty list", key);
    if (count > max_n)
        return cfg_fail(v, err, "'%s' has %zu values, at most %zu allowed", key, count, max_n);
    double *vals = malloc(count * sizeof *vals);
    if (!vals) return apx_fail(err, APX_EWORK, "out of memory reading '%s'", key);
    char label[96];
    cfg_clip_buf cb;
    for (size_t i = 0; i < count; i++) {
        const cfg_node *item = v->kind == CFG_SEQ ? v->items[i] : v;
        if (v->kind == CFG_SEQ)
            snprintf(label, sizeof label, "'%s' item %zu", clip(key, &cb), i + 1);
        else
            key_label(key, label, sizeof label);
        if ((rc = read_double(item, label, lo, hi, &vals[i], err))) {
            free(vals);
            return rc;
        }
    }
    *out = vals;
    *n = count;
    return APX_OK;
}
