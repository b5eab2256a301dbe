/* test_dataset.c - the IDX reader and the Fashion-MNIST loader.
 *
 * Tiny IDX files are built in the temp dir (plain and gzip); broken and
 * hostile variants must be refused with an error that names the file and
 * what is wrong, before anything large is allocated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "tests.h"
#include "workloads/dataset.h"

#define N 3
#define ROWS 4
#define COLS 5

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint8_t pixel(uint32_t i, uint32_t j) { return (uint8_t)(i * 97 + j * 13 + 1); }
static const uint8_t good_labels[N] = {0, 9, 5};

/* An image file with header count n_header, rows x cols, and `pixels` bytes
 * of payload (pixel(i, j) pattern). Returns length; buf must be big enough. */
static size_t make_images(uint8_t *buf, uint32_t magic, uint32_t n_header, uint32_t rows,
                          uint32_t cols, size_t payload) {
    put_be32(buf, magic);
    put_be32(buf + 4, n_header);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    size_t per = (size_t)rows * cols;
    for (size_t k = 0; k < payload; k++) buf[16 + k] = pixel((uint32_t)(k / per), (uint32_t)(k % per));
    return 16 + payload;
}

static size_t make_labels(uint8_t *buf, uint32_t n_header, const uint8_t *labels, size_t count) {
    put_be32(buf, 0x00000801);
    put_be32(buf + 4, n_header);
    memcpy(buf + 8, labels, count);
    return 8 + count;
}

static const char *write_gz(const char *name, const void *data, size_t len) {
    const char *p = test_path(name);
    gzFile gz = gzopen(p, "wb");
    CU_ASSERT_FATAL(gz != NULL);
    CU_ASSERT_FATAL(gzwrite(gz, data, (unsigned)len) == (int)len);
    CU_ASSERT_FATAL(gzclose(gz) == Z_OK);
    return p;
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    CU_ASSERT_FATAL(b && fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Good label file (plain) in the temp dir. */
static const char *good_labels_file(void) {
    uint8_t buf[64];
    size_t n = make_labels(buf, N, good_labels, N);
    return test_write_file("labels.idx", buf, n);
}

static void check_good(const dataset *d, uint32_t n) {
    CU_ASSERT_EQUAL(d->n, n);
    CU_ASSERT_EQUAL(d->rows, ROWS);
    CU_ASSERT_EQUAL(d->cols, COLS);
    CU_ASSERT_EQUAL(d->n_classes, 10);
    int pix_ok = 1, lab_ok = 1;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *im = dataset_image(d, i);
        for (uint32_t j = 0; j < ROWS * COLS; j++)
            if (im[j] != pixel(i, j)) pix_ok = 0;
        if (d->labels[i] != good_labels[i]) lab_ok = 0;
    }
    CU_ASSERT(pix_ok);
    CU_ASSERT(lab_ok);
}

/* Loads images+labels expecting failure; returns the message (static). */
static const char *expect_fail(const char *images, const char *labels, uint32_t n_classes) {
    static apx_error err;
    memset(&err, 0, sizeof err);
    dataset d;
    memset(&d, 0, sizeof d);
    int rc = idx_load(images, labels, n_classes, 0, &d, &err);
    CU_ASSERT_EQUAL(rc, APX_EINPUT);
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    CU_ASSERT_PTR_NULL(d.pixels);
    CU_ASSERT_PTR_NULL(d.labels);
    if (rc == APX_OK) dataset_free(&d);
    return err.msg;
}

#define ASSERT_HAS(msg, sub)                                                        \
    do {                                                                            \
        int has_ = strstr((msg), (sub)) != NULL;                                   \
        if (!has_) fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", (msg), (sub)); \
        CU_ASSERT(has_);                                                            \
    } while (0)

static void test_plain_round_trip(void) {
    uint8_t buf[256];
    size_t n = make_images(buf, 0x803, N, ROWS, COLS, N * ROWS * COLS);
    char images[512];
    snprintf(images, sizeof images, "%s", test_write_file("img.idx", buf, n));
    dataset d;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(idx_load(images, good_labels_file(), 10, 0, &d, &err), APX_OK);
    check_good(&d, N);
    dataset_free(&d);
    CU_ASSERT_PTR_NULL(d.pixels);
}

static void test_gzip_round_trip(void) {
    uint8_t buf[256], lbuf[64];
    size_t n = make_images(buf, 0x803, N, ROWS, COLS, N * ROWS * COLS);
    char images[512];
    snprintf(images, sizeof images, "%s", write_gz("img.idx.gz", buf, n));
    size_t ln = make_labels(lbuf, N, good_labels, N);
    const char *labels = write_gz("lab.idx.gz", lbuf, ln);
    dataset d;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(idx_load(images, labels, 10, 0, &d, &err), APX_OK);
    check_good(&d, N);
    dataset_free(&d);
    /* gzip images with plain labels mix too. */
    CU_ASSERT_EQUAL_FATAL(idx_load(images, good_labels_file(), 10, 0, &d, &err), APX_OK);
    check_good(&d, N);
    dataset_free(&d);
}

static void test_limit(void) {
    uint8_t buf[256];
    size_t n = make_images(buf, 0x803, N, ROWS, COLS, N * ROWS * COLS);
    char images[512];
    snprintf(images, sizeof images, "%s", write_gz("img.idx.gz", buf, n));
    dataset d;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(idx_load(images, good_labels_file(), 10, 2, &d, &err), APX_OK);
    check_good(&d, 2);
    dataset_free(&d);
    CU_ASSERT_EQUAL_FATAL(idx_load(images, good_labels_file(), 10, 1000, &d, &err), APX_OK);
    check_good(&d, N);
    dataset_free(&d);
    /* limit does not skip validation of the part that is not kept */
    size_t ln;
    uint8_t lbuf[64];
    const uint8_t bad[N] = {1, 2, 10};
    ln = make_labels(lbuf, N, bad, N);
    const char *labels = test_write_file("badlab.idx", lbuf, ln);
    CU_ASSERT_EQUAL(idx_load(images, labels, 10, 1, &d, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "sample 2");
}

static void test_wrong_magic(void) {
    uint8_t buf[256];
    size_t n = make_images(buf, 0x803, N, ROWS, COLS, N * ROWS * COLS);
    char images[512];
    snprintf(images, sizeof images, "%s", test_write_file("img.idx", buf, n));
    const char *labels = good_labels_file();
    char labels_copy[512];
    snprintf(labels_copy, sizeof labels_copy, "%s", labels);
    /* swapped: labels given as images */
    const char *msg = expect_fail(labels_copy, images, 10);
    ASSERT_HAS(msg, labels_copy);
    ASSERT_HAS(msg, "not an IDX image file (magic 0x00000801, expected 0x00000803)");
    /* images given as labels */
    msg = expect_fail(images, images, 10);
    ASSERT_HAS(msg, "not an IDX label file (magic 0x00000803, expected 0x00000801)");
    /* a 16-bit element type (0x0B) with 3 dims is not accepted either */
    n = make_images(buf, 0x0B03, N, ROWS, COLS, N * ROWS * COLS);
    msg = expect_fail(test_write_file("short.idx", buf, n), labels_copy, 10);
    ASSERT_HAS(msg, "magic 0x00000b03");
    /* a file shorter than the magic */
    msg = expect_fail(test_write_file("tiny.idx", "\0\0", 2), labels_copy, 10);
    ASSERT_HAS(msg, "truncated");
}

static void test_hostile_dims(void) {
    uint8_t buf[256];
    const char *labels = good_labels_file();
    char lab[512];
    snprintf(lab, sizeof lab, "%s", labels);
    /* 4e9 items: refused by the count limit, the message names the count */
    size_t n = make_images(buf, 0x803, 4000000000u, ROWS, COLS, N * ROWS * COLS);
    const char *msg = expect_fail(test_write_file("huge.idx", buf, n), lab, 10);
    ASSERT_HAS(msg, "huge.idx");
    ASSERT_HAS(msg, "4000000000");
    /* the same count, gzipped */
    msg = expect_fail(write_gz("huge.idx.gz", buf, n), lab, 10);
    ASSERT_HAS(msg, "4000000000");
    /* under the limit but far more than the file holds: the size check */
    n = make_images(buf, 0x803, 9000000u, 28, 28, N * ROWS * COLS);
    msg = expect_fail(test_write_file("big.idx", buf, n), lab, 10);
    ASSERT_HAS(msg, "expected 7056000000 bytes of pixels");
    msg = expect_fail(write_gz("big.idx.gz", buf, n), lab, 10);
    ASSERT_HAS(msg, "7056000016 bytes");
    /* zero and oversized sides */
    n = make_images(buf, 0x803, N, 0, COLS, 0);
    msg = expect_fail(test_write_file("zero.idx", buf, n), lab, 10);
    ASSERT_HAS(msg, "rows 0 is zero");
    n = make_images(buf, 0x803, N, ROWS, 5000, 0);
    msg = expect_fail(test_write_file("wide.idx", buf, n), lab, 10);
    ASSERT_HAS(msg, "columns 5000 is too large");
    /* a label file with count 0 */
    uint8_t lbuf[16];
    size_t ln = make_labels(lbuf, 0, good_labels, 0);
    n = make_images(buf, 0x803, N, ROWS, COLS, N * ROWS * COLS);
    char img[512];
    snprintf(img, sizeof img, "%s", test_write_file("img.idx", buf, n));
    msg = expect_fail(img, test_write_file("nolab.idx", lbuf, ln), 10);
    ASSERT_HAS(msg, "item count 0 is zero");
}

static void test_truncated_and_trailing(void) {
    uint8_t buf[256];
    char lab[512];
    snprintf(lab, sizeof lab, "%s", good_labels_file());
    /* plain: 50 of 60 pixel bytes */
    size_t n = make_images(buf, 0x803, N, ROWS, COLS, 50);
    const char *msg = expect_fail(test_write_file("trunc.idx", buf, n), lab, 10);
    ASSERT_HAS(msg, "truncated: expected 60 bytes of pixels, got 50");
    /* plain: header cut inside the dimensions */
    msg = expect_fail(test_write_file("trunc2.idx", buf, 9), lab, 10);
    ASSERT_HAS(msg, "truncated");
    /* plain: 7 bytes too many */
    n = make_images(buf, 0x803, N, ROWS, COLS, 67);
    msg = expect_fail(test_write_file("trail.idx", buf, n), lab, 10);
    ASSERT_HAS(msg, "7 bytes of trailing garbage");
    /* labels: truncated plain file */
    uint8_t lbuf[64];
    size_t ln = make_labels(lbuf, N, good_labels, N - 1);
    n = make_images(buf, 0x803, N, ROWS, COLS, 60);
    char img[512];
    snprintf(img, sizeof img, "%s", test_write_file("img.idx", buf, n));
    msg = expect_fail(img, test_write_file("lab_trunc.idx", lbuf, ln), 10);
    ASSERT_HAS(msg, "truncated: expected 3 bytes of labels, got 2");
}

/* Rewrites the last 4 bytes (ISIZE) of a gzip file. */
static void patch_isize(const char *path, uint32_t isize) {
    size_t len;
    uint8_t *b = slurp(path, &len);
    b[len - 4] = (uint8_t)isize;
    b[len - 3] = (uint8_t)(isize >> 8);
    b[len - 2] = (uint8_t)(isize >> 16);
    b[len - 1] = (uint8_t)(isize >> 24);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f && fwrite(b, 1, len, f) == len);
    fclose(f);
    free(b);
}

static void test_gzip_size_checks(void) {
    uint8_t buf[256];
    char lab[512], path[512];
    snprintf(lab, sizeof lab, "%s", good_labels_file());
    /* header says 3 images, stream holds 2: ISIZE disagrees before reading */
    size_t n = make_images(buf, 0x803, N, ROWS, COLS, 40);
    snprintf(path, sizeof path, "%s", write_gz("short.idx.gz", buf, n));
    const char *msg = expect_fail(path, lab, 10);
    ASSERT_HAS(msg, "short.idx.gz");
    ASSERT_HAS(msg, "ISIZE) says 56 bytes");
    /* same file with a forged ISIZE: zlib's own length check refuses it */
    patch_isize(path, 16 + 60);
    msg = expect_fail(path, lab, 10);
    ASSERT_HAS(msg, "short.idx.gz: corrupt gzip data");
    ASSERT_HAS(msg, "incorrect length check");
    /* too much data: two gzip members whose last ISIZE equals the size the
     * header promises; the extra bytes are found while reading */
    n = make_images(buf, 0x803, N, ROWS, COLS, 60);
    snprintf(path, sizeof path, "%s", write_gz("long.idx.gz", buf, n));
    gzFile gz = gzopen(path, "ab");
    CU_ASSERT_FATAL(gz != NULL);
    CU_ASSERT(gzwrite(gz, buf, (unsigned)n) == (int)n);
    gzclose(gz);
    msg = expect_fail(path, lab, 10);
    ASSERT_HAS(msg, "long.idx.gz: trailing garbage after 60 bytes of pixels");
    /* a stream cut in the middle, with the original trailer glued on so
     * that ISIZE still agrees: the truncation is found while reading */
    {
        enum { BN = 40, BSIDE = 40 };
        size_t big_len = 16 + (size_t)BN * BSIDE * BSIDE;
        uint8_t *big = malloc(big_len);
        CU_ASSERT_FATAL(big != NULL);
        make_images(big, 0x803, BN, BSIDE, BSIDE, 0);
        uint32_t x = 12345;
        for (size_t k = 16; k < big_len; k++) big[k] = (uint8_t)((x = x * 1103515245u + 12345u) >> 24);
        const char *bp = test_path("cut_mid.idx.gz");
        gz = gzopen(bp, "wb0"); /* stored blocks: the cut lands in raw data */
        CU_ASSERT_FATAL(gz != NULL);
        CU_ASSERT(gzwrite(gz, big, (unsigned)big_len) == (int)big_len);
        gzclose(gz);
        size_t gl;
        uint8_t *g = slurp(bp, &gl);
        size_t keep = gl / 2;
        memmove(g + keep, g + gl - 8, 8);
        char cut_path[512];
        snprintf(cut_path, sizeof cut_path, "%s", test_write_file("cut_mid.idx.gz", g, keep + 8));
        uint8_t lb[8 + BN], zeros[BN] = {0};
        size_t lbn = make_labels(lb, BN, zeros, BN);
        msg = expect_fail(cut_path, test_write_file("lab40.idx", lb, lbn), 10);
        ASSERT_HAS(msg, "truncated: expected 64000 bytes of pixels, got ");
        ASSERT_HAS(msg, "unexpected end of file");
        free(g);
        free(big);
    }
    /* a corrupt gzip CRC is noticed because the stream is read to its end */
    n = make_images(buf, 0x803, N, ROWS, COLS, 60);
    snprintf(path, sizeof path, "%s", write_gz("crc.idx.gz", buf, n));
    size_t len;
    uint8_t *b = slurp(path, &len);
    b[len - 8] ^= 0x5a;
    snprintf(path, sizeof path, "%s", test_write_file("crc.idx.gz", b, len));
    msg = expect_fail(path, lab, 10);
    ASSERT_HAS(msg, "corrupt gzip data");
    /* every cut of a valid gzip file is refused */
    b[len - 8] ^= 0x5a;
    int all_refused = 1;
    for (size_t cut = 0; cut < len; cut++) {
        apx_error err = {0};
        dataset d = {0};
        const char *p = test_write_file("cut.idx.gz", b, cut);
        if (idx_load(p, lab, 10, 0, &d, &err) != APX_EINPUT) {
            all_refused = 0;
            dataset_free(&d);
        }
    }
    CU_ASSERT(all_refused);
    free(b);
}

static void test_counts_and_labels(void) {
    uint8_t buf[256], lbuf[64];
    size_t n = make_images(buf, 0x803, N, ROWS, COLS, 60);
    char img[512];
    snprintf(img, sizeof img, "%s", test_write_file("img.idx", buf, n));
    size_t ln = make_labels(lbuf, N - 1, good_labels, N - 1);
    const char *msg = expect_fail(img, test_write_file("lab2.idx", lbuf, ln), 10);
    ASSERT_HAS(msg, "has 3 images but");
    ASSERT_HAS(msg, "has 2 labels");
    const uint8_t bad[N] = {3, 10, 255};
    ln = make_labels(lbuf, N, bad, N);
    msg = expect_fail(img, test_write_file("lab3.idx", lbuf, ln), 10);
    ASSERT_HAS(msg, "lab3.idx: sample 1 (byte 9): label 10, expected < 10");
    /* the same labels are fine with 256 classes */
    dataset d;
    apx_error err = {0};
    CU_ASSERT_EQUAL(idx_load(img, test_path("lab3.idx"), 256, 0, &d, &err), APX_OK);
    if (err.code == APX_OK) {
        CU_ASSERT_EQUAL(d.labels[2], 255);
        dataset_free(&d);
    }
    /* missing file: named in the error */
    msg = expect_fail(test_path("nonexistent.idx"), img, 10);
    ASSERT_HAS(msg, "nonexistent.idx: cannot open");
}

static void test_fmnist_paths(void) {
    /* dir resolution: argument, then environment, then the default */
    const char *old = getenv(FMNIST_ENV);
    char saved[1024] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    CU_ASSERT_STRING_EQUAL(fmnist_dir("/x/y"), "/x/y");
    setenv(FMNIST_ENV, "/from/env", 1);
    CU_ASSERT_STRING_EQUAL(fmnist_dir(NULL), "/from/env");
    CU_ASSERT_STRING_EQUAL(fmnist_dir("/x/y"), "/x/y");
    unsetenv(FMNIST_ENV);
    CU_ASSERT_STRING_EQUAL(fmnist_dir(NULL), FMNIST_DEFAULT_DIR);
    if (old) setenv(FMNIST_ENV, saved, 1);

    dataset d;
    apx_error err = {0};
    CU_ASSERT_EQUAL(fmnist_load(test_tmpdir(), "validation", 0, &d, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "validation");
    CU_ASSERT_EQUAL(fmnist_load(test_tmpdir(), NULL, 0, &d, &err), APX_EINPUT);

    char dir[512];
    snprintf(dir, sizeof dir, "%s/no-such-dir", test_tmpdir());
    CU_ASSERT_EQUAL(fmnist_load(dir, "test", 0, &d, &err), APX_EINPUT);
    char want[1024];
    snprintf(want, sizeof want,
             "Fashion-MNIST not found in %s: install the Debian package dataset-fashion-mnist "
             "(scripts/setup does) or set APXSIM_FASHION_MNIST=/path/to/dir",
             dir);
    CU_ASSERT_STRING_EQUAL(err.msg, want);

    /* a directory with only the test split: "test" loads t10k-*, "train" is missing */
    snprintf(dir, sizeof dir, "%s/fm", test_tmpdir());
    mkdir(dir, 0755);
    uint8_t buf[256], lbuf[64];
    size_t n = make_images(buf, 0x803, N, ROWS, COLS, 60);
    write_gz("fm/t10k-images-idx3-ubyte.gz", buf, n);
    size_t ln = make_labels(lbuf, N, good_labels, N);
    write_gz("fm/t10k-labels-idx1-ubyte.gz", lbuf, ln);
    CU_ASSERT_EQUAL_FATAL(fmnist_load(dir, "test", 0, &d, &err), APX_OK);
    check_good(&d, N);
    dataset_free(&d);
    CU_ASSERT_EQUAL(fmnist_load(dir, "train", 0, &d, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "Fashion-MNIST not found in");
    /* a corrupt file in place says which split and file */
    write_gz("fm/t10k-labels-idx1-ubyte.gz", buf, n);
    CU_ASSERT_EQUAL(fmnist_load(dir, "test", 0, &d, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "Fashion-MNIST test split: ");
    ASSERT_HAS(err.msg, "t10k-labels-idx1-ubyte.gz: not an IDX label file");
}

static void test_fmnist_real(void) {
    struct stat st;
    if (stat(FMNIST_DEFAULT_DIR, &st) != 0) {
        printf("\n  skipped: %s not installed\n", FMNIST_DEFAULT_DIR);
        CU_PASS("Fashion-MNIST not installed");
        return;
    }
    dataset d;
    apx_error err = {0};
    int rc = fmnist_load(FMNIST_DEFAULT_DIR, "test", 100, &d, &err);
    if (rc) fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_EQUAL(d.n, 100);
    CU_ASSERT_EQUAL(d.rows, 28);
    CU_ASSERT_EQUAL(d.cols, 28);
    CU_ASSERT_EQUAL(d.n_classes, 10);
    /* first test labels: ankle boot, pullover, trouser, trouser, shirt */
    const uint8_t first[5] = {9, 2, 1, 1, 6};
    CU_ASSERT(memcmp(d.labels, first, 5) == 0);
    dataset_free(&d);
    /* the whole split: 10000 images, 1000 per class */
    rc = fmnist_load(FMNIST_DEFAULT_DIR, "test", 0, &d, &err);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_EQUAL(d.n, 10000);
    unsigned count[10] = {0};
    int in_range = 1;
    for (uint32_t i = 0; i < d.n; i++) {
        if (d.labels[i] >= 10) in_range = 0;
        else count[d.labels[i]]++;
    }
    CU_ASSERT(in_range);
    for (int c = 0; c < 10; c++) CU_ASSERT_EQUAL(count[c], 1000);
    dataset_free(&d);
}

void add_dataset_suite(void) {
    TEST_SUITE("dataset",
               {"plain IDX round trip", test_plain_round_trip},
               {"gzip IDX round trip", test_gzip_round_trip},
               {"limit keeps the first samples", test_limit},
               {"wrong magic", test_wrong_magic},
               {"hostile dimensions refused before allocating", test_hostile_dims},
               {"truncated and trailing data", test_truncated_and_trailing},
               {"gzip ISIZE, truncation and CRC", test_gzip_size_checks},
               {"count mismatch and labels out of range", test_counts_and_labels},
               {"Fashion-MNIST paths and errors", test_fmnist_paths},
               {"real Fashion-MNIST test split", test_fmnist_real});
}
