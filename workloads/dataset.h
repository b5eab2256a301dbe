/* dataset.h - labelled image data sets in memory, and the IDX reader.
 *
 * Images are 8-bit grey levels, row-major, one after another. The IDX reader
 * takes gzip-compressed or plain IDX files (LeCun's MNIST format, also used
 * by Fashion-MNIST): magic 0x00000803 for images (n, rows, cols) and
 * 0x00000801 for labels (n), big-endian. Magic numbers, dimensions, counts
 * and the file size (the gzip trailer's ISIZE for .gz) are validated before
 * anything is allocated; labels must be < n_classes. */
#ifndef APX_DATASET_H
#define APX_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "../sim/error.h"

/* Where the Debian package dataset-fashion-mnist puts the files. The
 * environment variable APXSIM_FASHION_MNIST overrides it, and so does an
 * explicit directory argument. */
#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_ENV "APXSIM_FASHION_MNIST"
#define IDX_MAX_ITEMS 10000000u  /* hostile-count guard */
#define IDX_MAX_SIDE 4096u

typedef struct dataset {
    uint32_t n;           /* number of samples */
    uint32_t rows, cols;  /* image size */
    uint32_t n_classes;
    uint8_t *pixels;      /* n * rows * cols */
    uint8_t *labels;      /* n */
} dataset;

static inline const uint8_t *dataset_image(const dataset *d, uint32_t i) {
    return d->pixels + (size_t)i * d->rows * d->cols;
}

/* Reads an image file and a label file into *out (counts must agree).
 * limit > 0 keeps only the first `limit` samples. */
int idx_load(const char *images_path, const char *labels_path, uint32_t n_classes,
             uint32_t limit, dataset *out, apx_error *err);

/* Fashion-MNIST: split is "train" or "test"; dir NULL means $APXSIM_FASHION_MNIST
 * or FMNIST_DEFAULT_DIR. A missing directory gives an error that says how to
 * install the package or set the override. */
int fmnist_load(const char *dir, const char *split, uint32_t limit, dataset *out,
                apx_error *err);

/* The IDX pair of a split in dir, named as Fashion-MNIST's
 * ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz), labels < n_classes:
 * data sets written by `apxsim construct` and other generators. dir NULL
 * is Fashion-MNIST's location (fmnist_dir), with its install hint. */
int idx_dir_load(const char *dir, const char *split, uint32_t n_classes, uint32_t limit,
                 dataset *out, apx_error *err);

/* The directory fmnist_load would use for dir (never NULL). */
const char *fmnist_dir(const char *dir);

void dataset_free(dataset *d);

#endif
