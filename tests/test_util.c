#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "../sim/rng.h"
#include "../workloads/bnn.h"

#include "tests.h"

static char dir[256];

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

/* The temp dir goes when the run ends, unless APXSIM_KEEP_TEST_FILES is set
 * (to look at what a failing test wrote). */
static void remove_tmpdir(void) {
    if (dir[0] && !getenv("APXSIM_KEEP_TEST_FILES")) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *test_tmpdir(void) {
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/apxsim-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(remove_tmpdir);
    }
    return dir;
}

const char *test_path(const char *name) {
    static char slots[4][512];
    static int next;
    char *p = slots[next++ % 4];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    return p;
}

const char *test_write_file(const char *name, const void *data, size_t len) {
    const char *p = test_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(p);
        exit(1);
    }
    return p;
}

int test_run(char *out, size_t len, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, len - 1, p);
    out[n] = 0;
    while (fgetc(p) != EOF) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *test_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    if (len) *len = got;
    fclose(f);
    return b;
}

static void be32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (unsigned char)v;
}

static void write_idx(const char *path, uint32_t magic, uint32_t n, int images, rng_stream *s) {
    gzFile f = gzopen(path, "wb");
    unsigned char h[16];
    be32(h, magic);
    be32(h + 4, n);
    be32(h + 8, 28);
    be32(h + 12, 28);
    gzwrite(f, h, images ? 16 : 8);
    for (uint32_t i = 0; i < n * (images ? 784u : 1u); i++) {
        unsigned char v =
            images ? (unsigned char)rng_below(s, 256) : (unsigned char)rng_below(s, 10);
        gzwrite(f, &v, 1);
    }
    gzclose(f);
}

void test_workload(const char **data_dir, const char **model_path) {
    static char dir[512], model[512];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", test_path("workload-data"));
        mkdir(dir, 0700);
        rng_stream s;
        rng_stream_at(&s, rng_key_make(3, 0, 0), 0, 0);
        char p[600];
        const char *split[] = {"t10k", "train"};
        for (int i = 0; i < 2; i++) {
            snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, split[i]);
            write_idx(p, 0x803, 60, 1, &s);
            snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte.gz", dir, split[i]);
            write_idx(p, 0x801, 60, 0, &s);
        }
        bnn_model m;
        apx_error err = {0};
        uint32_t widths[] = {784, 32, 10};
        if (bnn_create(&m, "test-workload", 28, 28, 2, widths, &err)) {
            fprintf(stderr, "test_workload: %s\n", err.msg);
            exit(1);
        }
        for (uint32_t l = 0; l < m.n_layers; l++) {
            bnn_layer *L = &m.layers[l];
            for (uint32_t r = 0; r < L->out; r++) {
                for (uint32_t c = 0; c < L->in; c++)
                    bnn_weight_set(&m, l, r, c, (int)rng_below(&s, 2));
                if (L->threshold)
                    L->threshold[r] = l == 0 ? (int32_t)rng_below(&s, 4000) - 2000 : 0;
            }
        }
        snprintf(model, sizeof model, "%s", test_path("workload-model.bnn"));
        if (bnn_save(&m, model, &err)) {
            fprintf(stderr, "test_workload: %s\n", err.msg);
            exit(1);
        }
        bnn_free(&m);
    }
    *data_dir = dir;
    *model_path = model;
}

const char *test_db_path(const char *name) {
    const char *p = test_path(name);
    char side[600];
    remove(p);
    snprintf(side, sizeof side, "%s-wal", p);
    remove(side);
    snprintf(side, sizeof side, "%s-shm", p);
    remove(side);
    return p;
}
