/* npz.h - NumPy .npz archives, and importing a BNN trained elsewhere.
 *
 * An .npz is a zip archive of .npy files, one per array, as numpy.savez
 * (STORED) and numpy.savez_compressed (DEFLATED) write them. The reader
 * validates the end record, every central directory entry and its local
 * header (signatures, flags, methods, names, sizes, offsets inside the
 * file, no overlaps) when the archive is opened, and each entry's CRC-32
 * and .npy header when an array is read. Sizes are checked against the
 * file and against limits before anything is allocated. Not supported (and
 * refused with a message): encryption, compression other than DEFLATE,
 * multi-disk and zip64 end records (archives over 4 GiB or 65535 entries);
 * zip64 size fields in entries, which numpy always writes, are supported.
 *
 * An array's data stay in the file's form (little endian, C order); read
 * element i as a double with npz_value().
 *
 * bnn_import_npz builds a bnn_model from an .npz and a YAML manifest that
 * names the arrays of each layer; the manifest format, the layouts
 * (PyTorch, Keras/Larq) and an exporter snippet are in docs/import.md. */
#ifndef APX_NPZ_H
#define APX_NPZ_H

#include <stddef.h>
#include <stdint.h>

#include "../sim/error.h"
#include "bnn.h"

#define NPZ_MAX_DIMS 8
#define NPZ_MAX_NAME 255                     /* bytes of an entry name */
#define NPZ_MAX_FILE_BYTES 0xffffffffull     /* without zip64 end records */
#define NPZ_MAX_ENTRY_BYTES (1ull << 30)     /* one uncompressed .npy */

/* Element types of .npy arrays that the reader accepts. */
enum npz_dtype {
    NPZ_BOOL, /* |b1 */
    NPZ_I8,   /* |i1 */
    NPZ_U8,   /* |u1 */
    NPZ_I16,  /* <i2 */
    NPZ_U16,  /* <u2 */
    NPZ_I32,  /* <i4 */
    NPZ_U32,  /* <u4 */
    NPZ_I64,  /* <i8 */
    NPZ_U64,  /* <u8 */
    NPZ_F32,  /* <f4 */
    NPZ_F64,  /* <f8 */
};

typedef struct npz_array {
    int dtype;                   /* enum npz_dtype */
    uint32_t item_size;          /* bytes per element */
    uint32_t ndim;               /* 0 for a scalar */
    uint64_t shape[NPZ_MAX_DIMS];
    size_t count;                /* product of the shape (1 for a scalar) */
    const uint8_t *data;         /* count * item_size bytes, C order, little endian */
    void *owner;                 /* the block data points into (freed by npz_array_free) */
} npz_array;

/* Element i (< count) as a double (64-bit integers may round). */
double npz_value(const npz_array *a, size_t i);
void npz_array_free(npz_array *a);

/* Parses one .npy file held in memory (magic \x93NUMPY, version 1.0, 2.0 or
 * 3.0, a header dict with exactly 'descr', 'fortran_order' and 'shape').
 * The array gets its own copy of the data. `what` names the file in errors. */
int npy_parse(const uint8_t *buf, size_t len, const char *what, npz_array *out, apx_error *err);

typedef struct npz npz;

/* Opens an archive and validates its structure (not yet the CRCs). */
int npz_open(const char *path, npz **out, apx_error *err);
/* The same on a buffer in memory (copied); name is used in errors. */
int npz_open_buffer(const void *buf, size_t len, const char *name, npz **out, apx_error *err);
void npz_close(npz *z);

/* The entries, in central directory order: names as stored ("w.npy"). */
size_t npz_count(const npz *z);
const char *npz_entry_name(const npz *z, size_t i);
const char *npz_path(const npz *z);

/* Reads the array saved under `name`: the entry "name.npy", or an entry
 * called exactly `name`. APX_EINPUT if there is none, if its data do not
 * match the CRC or the directory's sizes, or if it is not a valid .npy. */
int npz_read_array(npz *z, const char *name, npz_array *out, apx_error *err);

/* The array name nearest to `name` (for "did you mean"), or NULL. */
const char *npz_nearest(const npz *z, const char *name);

/* Reads the manifest (docs/import.md) and the .npz it names (npz_path, if
 * non-NULL, replaces the manifest's 'npz'), binarises the weights, folds
 * each batch norm into thresholds with bnn_fold_bn and builds the model.
 * Errors in the manifest name FILE:LINE:COL; errors about an array name the
 * manifest position that names it and the array. */
int bnn_import_npz(const char *manifest_path, const char *npz_path, bnn_model *out,
                   apx_error *err);

#endif
