/* replay.c - a device that replays recorded fault maps (.fmap files).
 *
 *   device: {kind: replay, maps: [a.fmap, b.fmap]}   # chip c replays map c
 *   device: {kind: replay, dir: maps/}               # every *.fmap, by name
 *   operating_points: {time_s: [0, 3600]}
 *
 * Chip c of a sweep replays map c; a sweep with more chips than maps is
 * refused when the first fault map is asked for. The one knob, time_s, is
 * the time since the map's start: a fault is active iff onset <= t < until.
 * The seed plays no part (the faults are the recorded ones).
 *
 * Memory stays bounded whatever the size of the maps (a map of 10 million
 * faults over a whole DDR4 rank, of which a few hundred hit the weights):
 *
 *   create   reads each map once, a frame at a time, to check it (header,
 *            every frame's CRC and invariants, the totals) and to hash its
 *            faults for content_hash; it keeps the geometry, the fault count
 *            and the hash, no faults.
 *   prepare  is told every region the sweep will ask about. It reads each
 *            map again, a frame at a time, turns each cell into its byte
 *            address through the map's geometry, and keeps only the faults on
 *            the regions' used bits (rows x cols from base_addr, row_stride
 *            apart; the regions' spans are sorted by base and searched), sorted
 *            by (address, bit). Memory: one frame plus the faults kept (16
 *            bytes each, plus 16 per distinct time window among them). The
 *            same hash is taken again, so a map that changed on disk since
 *            create (and so since the result keys were made) is refused.
 *            Called again with the same regions it returns at once; with
 *            other regions it rebuilds.
 *   faults   refuses to answer before prepare, and for a region that was not
 *            among the prepared ones (its faults were not kept): there is no
 *            lazy path, so a missing prepare is an error, never a silently
 *            empty map. For a prepared region: one binary search plus a scan
 *            over the kept faults in its address span (with a further search
 *            to jump over faults between rows), so its cost is proportional
 *            to its faults plus a logarithm per gap.
 *
 * A region's geometry must equal the maps' geometry: the same cells at other
 * addresses would be a different experiment. prepare and faults may run on
 * several threads at once (a read-write lock: faults read, a rebuild
 * writes), so sweep_eval_job can prepare before each job. */
#include "replay.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../faultmaps/fmap_file.h"

#define REPLAY_MAX_MAPS 100000u
#define REPLAY_MAX_TIME_S 1e10   /* ~317 years: t in ns stays below 2^64 */
#define REPLAY_MAX_ADDR (1ull << 58)  /* a geometry holds at most 2^61 cells = 2^58 bytes */

/* One fault, placed: at = byte_addr * 8 + bit_in_byte (< 2^61). */
typedef struct replay_fault {
    uint64_t at;
    uint32_t window;   /* index into the map's windows; 0 = permanent */
    uint8_t kind;
} replay_fault;

typedef struct replay_window {
    uint64_t onset_ns, until_ns;
} replay_window;

/* The faults of one map kept by prepare. */
typedef struct replay_kept {
    replay_fault *f;        /* sorted by at */
    size_t n, cap;
    replay_window *win;     /* win[0] is permanent */
    size_t n_win, win_cap;
} replay_kept;

typedef struct replay_map {
    char *path;
    geometry geo;
    uint64_t n_faults;      /* in the file */
    uint64_t hash;          /* content hash of the file (below), taken at create */
    replay_kept kept;       /* empty until prepare */
} replay_map;

/* A prepared region as a span of byte addresses [lo, hi): from row 0's first
 * byte to the last row's last used byte (hi saturates at 2^64 - 1). */
typedef struct replay_span {
    uint64_t lo, hi;
    uint64_t rows, cols;
    uint64_t stride;        /* row_stride; the row's byte count when rows == 1 */
    uint64_t reach;         /* the largest hi of this span and every one before it */
} replay_span;

typedef struct replay_device {
    device base;
    replay_map *maps;
    size_t n_maps;
    pthread_rwlock_t lock;  /* guards everything prepare changes */
    int lock_ready;
    int prepared;
    replay_span *spans;     /* sorted by (lo, rows, cols, stride), distinct */
    size_t n_spans;
} replay_device;

extern const device_ops replay_device_ops;

static const char *const replay_knobs[] = {"time_s", NULL};

static void describe_geometry(const geometry *g, char *buf, size_t len) {
    snprintf(buf, len, "%u ch, %u ranks, %u bank groups, %u banks, %u rows, %u columns, "
                       "%u-bit bus, %s",
             g->count[GEO_CH], g->count[GEO_RA], g->count[GEO_BG], g->count[GEO_BA],
             g->count[GEO_RO], g->count[GEO_CO], g->bus_bits, g->mapping);
}

/* ---- the content hash ------------------------------------------------------
 * Over each map's geometry (field counts, bus bits, mapping name), then
 * every fault in file (cell) order: cell, kind, onset_ns, until_ns, then the
 * number of faults; the device's hash is over the number of maps and the
 * maps' hashes in chip order. Values are folded in 64 bits at a time with
 * xxHash64's round (multiply, rotate, multiply) and the map's hash ends with
 * its avalanche: a 10-million-fault map hashes in a few tens of
 * milliseconds. It detects changed contents, not forgery. */

#define HASH_SEED 0x27d4eb2f165667c5ull

static uint64_t hash_round(uint64_t acc, uint64_t v) {
    acc += v * 0xc2b2ae3d27d4eb4full;
    acc = acc << 31 | acc >> 33;
    return acc * 0x9e3779b185ebca87ull;
}

static uint64_t hash_final(uint64_t h) {
    h ^= h >> 33;
    h *= 0xc2b2ae3d27d4eb4full;
    h ^= h >> 29;
    h *= 0x165667b19e3779f9ull;
    return h ^ h >> 32;
}

static uint64_t hash_geometry(const geometry *g) {
    uint64_t h = HASH_SEED;
    for (int f = 0; f < GEO_FIELDS; f++) h = hash_round(h, g->count[f]);
    h = hash_round(h, g->bus_bits);
    for (size_t c = 0; c < sizeof g->mapping && g->mapping[c]; c++)
        h = hash_round(h, (unsigned char)g->mapping[c]);
    return h;
}

static uint64_t hash_fault(uint64_t h, const fmap_fault *f) {
    h = hash_round(h, f->cell);
    h = hash_round(h, f->kind);
    h = hash_round(h, f->onset_ns);
    return hash_round(h, f->until_ns);
}

/* ---- kept faults -------------------------------------------------------- */

static void kept_free(replay_kept *k) {
    free(k->f);
    free(k->win);
    memset(k, 0, sizeof *k);
}

/* Appends a fault at `at` with f's kind and window. Permanent faults share
 * window 0, and runs of equal windows share one entry (recorders write them
 * together). */
static int kept_push(replay_kept *k, uint64_t at, const fmap_fault *f, const char *path,
                     apx_error *err) {
    if (k->n == k->cap) {
        size_t want = k->cap ? 2 * k->cap : 1024;
        replay_fault *g = realloc(k->f, want * sizeof *g);
        if (!g) return apx_fail(err, APX_EWORK, "%s: out of memory for %zu faults", path, want);
        k->f = g;
        k->cap = want;
    }
    if (k->n_win == 0) {
        k->win = malloc(4 * sizeof *k->win);
        if (!k->win) return apx_fail(err, APX_EWORK, "%s: out of memory", path);
        k->win_cap = 4;
        k->win[0] = (replay_window){0, FMAP_FOREVER};
        k->n_win = 1;
    }
    uint32_t w = 0;
    if (f->onset_ns != 0 || f->until_ns != FMAP_FOREVER) {
        const replay_window *last = &k->win[k->n_win - 1];
        if (k->n_win > 1 && last->onset_ns == f->onset_ns && last->until_ns == f->until_ns) {
            w = (uint32_t)(k->n_win - 1);
        } else {
            if (k->n_win == UINT32_MAX)
                return apx_fail(err, APX_EINPUT, "%s: too many time windows", path);
            if (k->n_win == k->win_cap) {
                replay_window *g = realloc(k->win, 2 * k->win_cap * sizeof *g);
                if (!g) return apx_fail(err, APX_EWORK, "%s: out of memory", path);
                k->win = g;
                k->win_cap *= 2;
            }
            k->win[k->n_win] = (replay_window){f->onset_ns, f->until_ns};
            w = (uint32_t)k->n_win++;
        }
    }
    k->f[k->n++] = (replay_fault){at, w, f->kind};
    return APX_OK;
}

static int by_at(const void *a, const void *b) {
    uint64_t x = ((const replay_fault *)a)->at, y = ((const replay_fault *)b)->at;
    return x < y ? -1 : x > y;
}

/* ---- spans ---------------------------------------------------------------- */

static int by_span(const void *a, const void *b) {
    const replay_span *x = a, *y = b;
    if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
    if (x->rows != y->rows) return x->rows < y->rows ? -1 : 1;
    if (x->cols != y->cols) return x->cols < y->cols ? -1 : 1;
    if (x->stride != y->stride) return x->stride < y->stride ? -1 : 1;
    return 0;
}

/* The span of a non-empty region (rows, cols > 0, rows not overlapping). */
static replay_span span_of(const device_region *r) {
    uint64_t row_bytes = (r->cols + 7) / 8;
    replay_span s = {r->base_addr, UINT64_MAX, r->rows, r->cols,
                     r->rows > 1 ? r->row_stride : row_bytes, 0};
    uint64_t last_row, end;
    if (__builtin_mul_overflow(r->rows - 1, s.stride, &last_row) ||
        __builtin_add_overflow(last_row, row_bytes, &end) ||
        __builtin_add_overflow(end, r->base_addr, &s.hi))
        s.hi = UINT64_MAX;
    return s;
}

/* Whether byte addr, bit `bit` is one of the span's used bits. */
static int span_holds(const replay_span *s, uint64_t addr, unsigned bit) {
    if (addr < s->lo || addr >= s->hi) return 0;
    uint64_t off = addr - s->lo, row = off / s->stride, in_row = off - row * s->stride;
    return row < s->rows && in_row * 8 + bit < s->cols;  /* off < 2^58: no overflow */
}

/* Whether any span holds (addr, bit): the spans that start at or before addr
 * are those below the first with lo > addr, and going down from there the
 * search stops at the first whose reach (the furthest end of it and every
 * span before it) does not pass addr. Regions that do not overlap make this
 * one search and one or two checks. */
static int spans_hold(const replay_span *s, size_t n, uint64_t addr, unsigned bit) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid].lo <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t j = lo; j-- > 0 && s[j].reach > addr;)
        if (span_holds(&s[j], addr, bit)) return 1;
    return 0;
}

/* The prepared span equal to region r (normalised as span_of), or NULL. */
static const replay_span *find_span(const replay_device *rd, const device_region *r) {
    replay_span want = span_of(r);
    size_t lo = 0, hi = rd->n_spans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (by_span(&rd->spans[mid], &want) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < rd->n_spans && by_span(&rd->spans[lo], &want) == 0 ? &rd->spans[lo] : NULL;
}

/* ---- reading maps ---------------------------------------------------------- */

static int geometry_refused(const replay_map *m, const geometry *other, apx_error *err) {
    char a[256], b[256];
    describe_geometry(&m->geo, a, sizeof a);
    describe_geometry(other, b, sizeof b);
    return apx_fail(err, APX_EINPUT,
                    "%s was recorded in another memory geometry (%s) than the sweep's (%s); "
                    "set the sweep's memory.geometry to the map's",
                    m->path, a, b);
}

/* Streams the map at m->path once, a frame at a time: checks every frame,
 * hashes every fault into *hash and, when spans is not NULL, keeps in *kept
 * the faults on the spans' used bits (sorted by address). */
static int map_stream(const replay_map *m, const replay_span *spans, size_t n_spans,
                      uint64_t *n_faults, uint64_t *hash, replay_kept *kept, apx_error *err) {
    fmap_reader *r;
    if (fmap_reader_open(&r, m->path, err)) return err->code;
    const geometry *g = fmap_reader_geometry(r);
    uint64_t h = hash_geometry(g);
    uint64_t lo = UINT64_MAX, hi = 0;  /* the addresses any span can hold */
    for (size_t i = 0; i < n_spans; i++) {
        if (spans[i].lo < lo) lo = spans[i].lo;
        if (spans[i].hi > hi) hi = spans[i].hi;
    }
    int rc = APX_OK;
    for (;;) {
        const fmap_fault *f;
        size_t n;
        if ((rc = fmap_reader_next(r, &f, &n, err)) || n == 0) break;
        for (size_t i = 0; i < n && rc == APX_OK; i++) {
            h = hash_fault(h, &f[i]);
            if (!spans) continue;
            cell c;
            uint64_t addr;
            unsigned bit;
            geometry_cell_at(g, f[i].cell, &c);
            geometry_cell_to_addr(g, &c, &addr, &bit);
            if (addr >= lo && addr < hi && spans_hold(spans, n_spans, addr, bit))
                rc = kept_push(kept, addr * 8 + bit, &f[i], m->path, err);
        }
        if (rc) break;
    }
    if (rc == APX_OK) {
        *n_faults = fmap_reader_totals(r)->faults;
        *hash = hash_final(hash_round(h, *n_faults));
    }
    fmap_reader_close(r);
    if (rc == APX_OK && kept && kept->n > 1) qsort(kept->f, kept->n, sizeof *kept->f, by_at);
    return rc;
}

/* Opens one .fmap file at create: checks it whole and hashes it. */
static int map_open(const char *path, replay_map *m, apx_error *err) {
    memset(m, 0, sizeof *m);
    if (!(m->path = strdup(path))) return apx_fail(err, APX_EWORK, "out of memory");
    fmap_reader *r;
    if (fmap_reader_open(&r, path, err)) return err->code;
    m->geo = *fmap_reader_geometry(r);
    fmap_reader_close(r);
    return map_stream(m, NULL, 0, &m->n_faults, &m->hash, NULL, err);
}

static void map_free(replay_map *m) {
    free(m->path);
    kept_free(&m->kept);
    memset(m, 0, sizeof *m);
}

static void replay_destroy(device *d) {
    replay_device *rd = (replay_device *)d;
    if (!rd) return;
    for (size_t i = 0; i < rd->n_maps; i++) map_free(&rd->maps[i]);
    free(rd->maps);
    free(rd->spans);
    if (rd->lock_ready) pthread_rwlock_destroy(&rd->lock);
    free(rd);
}
static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.fmap files of dir, sorted by name (paths dir/name; caller frees). */
static int list_dir(const cfg_node *at, const char *dir, char ***out, size_t *n,
                    apx_error *err) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return cfg_fail(at, err, "cannot open the map folder '%s'", dir);
    char **names = NULL;
    size_t cap = 0;
    int rc = APX_OK;
    struct dirent *e;
    while (rc == APX_OK && (e = readdir(d))) {
        if (!ends_with(e->d_name, ".fmap") || e->d_name[0] == '.') continue;
        if (*n == REPLAY_MAX_MAPS) {
            rc = cfg_fail(at, err, "'%s' holds more than %u maps", dir, REPLAY_MAX_MAPS);
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **g = realloc(names, cap * sizeof *g);
            if (!g) {
                rc = apx_fail(err, APX_EWORK, "out of memory");
                break;
            }
            names = g;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[*n] = malloc(len))) {
            rc = apx_fail(err, APX_EWORK, "out of memory");
            break;
        }
        snprintf(names[*n], len, "%s/%s", dir, e->d_name);
        (*n)++;
    }
    closedir(d);
    if (rc == APX_OK && *n == 0) rc = cfg_fail(at, err, "no *.fmap files in '%s'", dir);
    if (rc) {
        for (size_t i = 0; i < *n; i++) free(names[i]);
        free(names);
        *n = 0;
        return rc;
    }
    qsort(names, *n, sizeof *names, by_name);
    *out = names;
    return APX_OK;
}

static int replay_create(const cfg_node *node, device **out, apx_error *err) {
    static const char *const keys[] = {"kind", "name", "maps", "dir", NULL};
    *out = NULL;
    if (cfg_expect_map(node, "device", keys, err)) return err->code;
    const cfg_node *maps = cfg_find(node, "maps"), *dir = cfg_find(node, "dir");
    if (!maps == !dir)
        return cfg_fail(maps ? maps : node, err,
                        "the replay device takes either 'maps' (a list of .fmap files) or "
                        "'dir' (a folder of them)");
    char **paths = NULL;
    size_t n = 0;
    int rc = APX_OK;
    if (dir) {
        const char *d;
        if (cfg_get_string(node, "dir", 1, NULL, &d, err)) return err->code;
        if ((rc = list_dir(dir, d, &paths, &n, err))) return rc;
    } else {
        size_t count = maps->kind == CFG_SEQ ? maps->n : 1;
        if (maps->kind == CFG_MAP || count == 0 || count > REPLAY_MAX_MAPS)
            return cfg_fail(maps, err, "maps must be a list of 1 to %u .fmap files",
                            REPLAY_MAX_MAPS);
        paths = calloc(count, sizeof *paths);
        if (!paths) return apx_fail(err, APX_EWORK, "out of memory");
        for (size_t i = 0; i < count && rc == APX_OK; i++) {
            const cfg_node *item = maps->kind == CFG_SEQ ? maps->items[i] : maps;
            if (item->kind != CFG_SCALAR || !item->scalar[0])
                rc = cfg_fail(item, err, "maps: each entry must be a file name");
            else if (!(paths[i] = strdup(item->scalar)))
                rc = apx_fail(err, APX_EWORK, "out of memory");
            n = i + 1;
        }
    }
    replay_device *rd = NULL;
    if (rc == APX_OK) {
        rd = calloc(1, sizeof *rd);
        if (rd) rd->maps = calloc(n, sizeof *rd->maps);
        if (!rd || !rd->maps) rc = apx_fail(err, APX_EWORK, "out of memory");
    }
    if (rc == APX_OK) {
        rd->base.ops = &replay_device_ops;
        if (pthread_rwlock_init(&rd->lock, NULL))
            rc = apx_fail(err, APX_EWORK, "replay device: cannot create a lock");
        else
            rd->lock_ready = 1;
    }
    for (size_t i = 0; i < n && rc == APX_OK; i++) {
        const cfg_node *pos = dir ? dir : maps->kind == CFG_SEQ ? maps->items[i] : maps;
        apx_error inner = {0};
        rd->n_maps = i + 1;
        if (map_open(paths[i], &rd->maps[i], &inner)) {
            cfg_fail(pos, err, "%s", inner.msg);
            rc = err->code = inner.code;  /* I/O and memory failures stay work errors */
            break;
        }
        if (i > 0 && !geometry_equal(&rd->maps[i].geo, &rd->maps[0].geo)) {
            char a[256], b[256];
            describe_geometry(&rd->maps[0].geo, a, sizeof a);
            describe_geometry(&rd->maps[i].geo, b, sizeof b);
            rc = cfg_fail(pos, err,
                          "the maps of one replay device must share a geometry: %s has "
                          "(%s), %s has (%s)",
                          paths[0], a, paths[i], b);
        }
    }
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
    if (rc) {
        replay_destroy(rd ? &rd->base : NULL);
        return rc;
    }
    *out = &rd->base;
    return APX_OK;
}

static int replay_check_point(const device *d, const double *op, const cfg_node *at,
                              apx_error *err) {
    (void)d;
    if (!(op[0] >= 0.0 && op[0] <= REPLAY_MAX_TIME_S)) {
        if (at)
            return cfg_fail(at, err, "time_s must be between 0 and %g seconds, got %g",
                            REPLAY_MAX_TIME_S, op[0]);
        return apx_fail(err, APX_EINPUT, "time_s must be between 0 and %g seconds, got %g",
                        REPLAY_MAX_TIME_S, op[0]);
    }
    return APX_OK;
}

static int region_refused(const device_region *r, apx_error *err) {
    uint64_t row_bytes = (r->cols + 7) / 8;
    return apx_fail(err, APX_EINPUT, "region %u: rows of %llu bytes overlap (stride %llu)",
                    r->id, (unsigned long long)row_bytes, (unsigned long long)r->row_stride);
}

static int region_overlaps(const device_region *r) {
    return r->rows > 1 && r->row_stride < (r->cols + 7) / 8;
}

/* The regions' spans, sorted and distinct (empty regions left out). */
static int make_spans(const replay_device *rd, const device_region *regions, size_t n,
                      replay_span **out, size_t *n_out, apx_error *err) {
    *out = NULL;
    *n_out = 0;
    for (size_t i = 0; i < n; i++) {
        if (!geometry_equal(regions[i].geo, &rd->maps[0].geo))
            return geometry_refused(&rd->maps[0], regions[i].geo, err);
        if (region_overlaps(&regions[i])) return region_refused(&regions[i], err);
    }
    replay_span *s = malloc((n ? n : 1) * sizeof *s);
    if (!s) return apx_fail(err, APX_EWORK, "out of memory for %zu regions", n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (regions[i].rows && regions[i].cols) s[m++] = span_of(&regions[i]);
    qsort(s, m, sizeof *s, by_span);
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        if (k == 0 || by_span(&s[k - 1], &s[i]) != 0) s[k++] = s[i];
    for (size_t i = 0; i < k; i++) s[i].reach = i && s[i - 1].reach > s[i].hi ? s[i - 1].reach
                                                                                : s[i].hi;
    *out = s;
    *n_out = k;
    return APX_OK;
}

static int replay_prepare(device *d, const device_region *regions, size_t n, apx_error *err) {
    replay_device *rd = (replay_device *)d;
    replay_span *spans;
    size_t n_spans;
    if (make_spans(rd, regions, n, &spans, &n_spans, err)) return err->code;
    pthread_rwlock_wrlock(&rd->lock);
    if (rd->prepared && n_spans == rd->n_spans &&
        (n_spans == 0 || memcmp(spans, rd->spans, n_spans * sizeof *spans) == 0)) {
        pthread_rwlock_unlock(&rd->lock);  /* the same regions: nothing to do */
        free(spans);
        return APX_OK;
    }
    /* Build every map's kept faults aside, then swap them in: a failure
     * leaves the device unprepared rather than half rebuilt. */
    replay_kept *kept = calloc(rd->n_maps, sizeof *kept);
    int rc = kept ? APX_OK : apx_fail(err, APX_EWORK, "out of memory");
    for (size_t i = 0; i < rd->n_maps && rc == APX_OK; i++) {
        const replay_map *m = &rd->maps[i];
        uint64_t n_faults = 0, hash = 0;
        if ((rc = map_stream(m, spans, n_spans, &n_faults, &hash, &kept[i], err))) break;
        if (hash != m->hash)
            rc = apx_fail(err, APX_EINPUT,
                          "%s changed since the replay device read it (%llu faults then, %llu "
                          "now, or other contents); results would be stored under the old "
                          "contents' keys, so run again",
                          m->path, (unsigned long long)m->n_faults,
                          (unsigned long long)n_faults);
    }
    for (size_t i = 0; i < rd->n_maps; i++) {
        kept_free(&rd->maps[i].kept);
        if (rc == APX_OK) rd->maps[i].kept = kept[i];
        else if (kept) kept_free(&kept[i]);
    }
    free(kept);
    free(rd->spans);
    rd->spans = rc == APX_OK ? spans : NULL;
    rd->n_spans = rc == APX_OK ? n_spans : 0;
    rd->prepared = rc == APX_OK;
    if (rc) free(spans);
    pthread_rwlock_unlock(&rd->lock);
    return rc;
}

/* First kept fault at or after `at`, searching [lo, n). */
static size_t lower_bound(const replay_kept *k, size_t lo, uint64_t at) {
    size_t hi = k->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (k->f[mid].at < at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The faults of one prepared region (the caller holds the read lock). */
static int region_faults(const replay_map *m, const device_region *where, uint64_t t_ns,
                         fmap *out, apx_error *err) {
    const replay_kept *k = &m->kept;
    uint64_t row_bytes = (where->cols + 7) / 8, stride = where->row_stride;
    /* Every address is below 2^58 and every `at` below 2^61: a region
     * starting at or beyond 2^58 bytes holds none, and below that base * 8
     * cannot overflow. */
    uint64_t base = where->base_addr;
    if (base >= REPLAY_MAX_ADDR) return APX_OK;
    size_t i = lower_bound(k, 0, base * 8);
    while (i < k->n) {
        const replay_fault *f = &k->f[i];
        uint64_t offset = (f->at >> 3) - base;
        uint64_t row = stride ? offset / stride : 0, in_row = offset - row * stride;
        if (row >= where->rows) break;
        if (in_row >= row_bytes) {
            /* between rows (or after the last): jump to the next row */
            if (row + 1 >= where->rows || stride >= REPLAY_MAX_ADDR) break;
            uint64_t next = base + (row + 1) * stride;  /* < 2^60: no overflow */
            if (next >= REPLAY_MAX_ADDR) break;
            i = lower_bound(k, i, next * 8);
            continue;
        }
        uint64_t col = in_row * 8 + (f->at & 7);
        const replay_window *w = &k->win[f->window];
        if (col < where->cols && w->onset_ns <= t_ns && t_ns < w->until_ns) {
            int rc = fmap_push(out, row * where->cols + col, f->kind, err);
            if (rc) return apx_wrap(err, "%s: ", m->path);
        }
        i++;
    }
    return APX_OK;
}

static int replay_faults(const device *d, const double *op, uint64_t seed, uint32_t chip,
                         const device_region *where, fmap *out, apx_error *err) {
    (void)seed;
    replay_device *rd = (replay_device *)d;  /* only the lock changes */
    uint64_t bits = device_region_bits(where);
    fmap_reset(out, bits);
    if (chip >= rd->n_maps)
        return apx_fail(err, APX_EINPUT,
                        "the replay device has %zu map%s (chips 0 to %zu), so chip %u has none; "
                        "set the sweep's 'chips' to at most %zu",
                        rd->n_maps, rd->n_maps == 1 ? "" : "s", rd->n_maps - 1, chip,
                        rd->n_maps);
    const replay_map *m = &rd->maps[chip];
    if (!geometry_equal(where->geo, &m->geo)) return geometry_refused(m, where->geo, err);
    if (!(op[0] >= 0.0 && op[0] <= REPLAY_MAX_TIME_S))
        return replay_check_point(d, op, NULL, err);
    if (region_overlaps(where)) return region_refused(where, err);
    pthread_rwlock_rdlock(&rd->lock);
    int rc = APX_OK;
    if (!rd->prepared)
        rc = apx_fail(err, APX_EWORK,
                      "the replay device was asked for faults before prepare: it keeps a map's "
                      "faults only for the regions prepare was given");
    else if (bits && !find_span(rd, where))
        rc = apx_fail(err, APX_EWORK,
                      "region %u (%llu x %llu bits at byte %llu, stride %llu) is not one of the "
                      "%zu regions the replay device was prepared for, so its faults were not "
                      "kept",
                      where->id, (unsigned long long)where->rows,
                      (unsigned long long)where->cols, (unsigned long long)where->base_addr,
                      (unsigned long long)where->row_stride, rd->n_spans);
    else if (bits)
        rc = region_faults(m, where, (uint64_t)floor(op[0] * 1e9 + 0.5), out, err);
    pthread_rwlock_unlock(&rd->lock);
    return rc;
}

/* See "the content hash" above: result keys follow the contents of the
 * maps, not just their file names. */
static uint64_t replay_content_hash(const device *d) {
    const replay_device *rd = (const replay_device *)d;
    uint64_t h = hash_round(HASH_SEED, rd->n_maps);
    for (size_t i = 0; i < rd->n_maps; i++) h = hash_round(h, rd->maps[i].hash);
    return hash_final(h);
}

int replay_device_stats(const device *d, replay_stats *st, apx_error *err) {
    memset(st, 0, sizeof *st);
    if (!d || d->ops != &replay_device_ops)
        return apx_fail(err, APX_EINPUT, "not a replay device");
    replay_device *rd = (replay_device *)d;
    pthread_rwlock_rdlock(&rd->lock);
    st->maps = rd->n_maps;
    st->prepared = rd->prepared;
    st->regions = rd->n_spans;
    for (size_t i = 0; i < rd->n_maps; i++) {
        st->faults_in_maps += rd->maps[i].n_faults;
        st->faults_kept += rd->maps[i].kept.n;
        st->windows_kept += rd->maps[i].kept.n_win;
    }
    pthread_rwlock_unlock(&rd->lock);
    return APX_OK;
}

const device_ops replay_device_ops = {
    .version = DEVICE_OPS_VERSION,
    .kind = "replay",
    .summary = "recorded .fmap fault maps, chip c = map c (knob: time_s)",
    .knobs = replay_knobs,
    .create = replay_create,
    .destroy = replay_destroy,
    .check_point = replay_check_point,
    .faults = replay_faults,
    .prepare = replay_prepare,
    .content_hash = replay_content_hash,
};
