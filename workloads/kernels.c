/* kernels.c - the portable kernels, the weight interleaver, and the run-time
 * choice of kernel (bnn.h: bnn_set_kernel and friends).
 *
 * Portable kernels (plain C; the only machine-specific step is letting the
 * compiler use the POPCNT instruction where the CPU has it, chosen at run
 * time like the SIMD kernels):
 *   binary   row-major weights read in place, the last word masked; columns
 *            in groups of PORT_COLS so that a row loaded once serves them all.
 *   8-bit    table lookup ("four Russians"): each group of 8 inputs gets a
 *            256-entry table of its subset sums, and a weight byte picks one
 *            entry. Four columns share an entry as 16-bit lanes of a 64-bit
 *            word, so one lookup and one add serve 8 inputs of 4 columns.
 *            Lanes are widened into 32-bit sums every 32 groups
 *            (32 * 8 * 255 = 65280 < 65536). Up to PORT_SETS table sets (4
 *            columns each) are built per pass over the weights, as many as
 *            fit in PORT_LUT_BUDGET. Inputs past n are pixel 0 in the tables,
 *            so weight padding bits (which a fault may set) select nothing.
 *            A fan-in whose table set exceeds PORT_LUT_MAX uses bit-planes:
 *            S = sum_b 2^b popcount(plane_b AND w), one column at a time.
 *   binarize one compare per pixel (the compiler vectorises what it can). */
#include "kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static int cpu_popcnt(void);

/* ---- output ---------------------------------------------------------------- */

ALWAYS_INLINE void put(const kern_layer *L, const kern_out *o, uint32_t c, uint32_t r, int32_t a) {
    if (o->bits) {
        const int32_t *thr = o->cls ? L->thr + o->cls[c] * o->cls_stride : L->thr;
        int32_t s = (a ^ L->neg[r]) - L->neg[r];
        o->bits[c * o->bits_stride + r / 64] |= (uint64_t)(s > thr[r]) << (r % 64);
    } else {
        o->a[c * o->a_stride + r] = a;
    }
}

/* ---- binary layers ----------------------------------------------------------- */

#define PORT_COLS 8

/* Rows of L against nc (a constant where it matters) columns. */
ALWAYS_INLINE void bin_cols(const kern_layer *L, const uint64_t *x, size_t xs, uint32_t c0,
                            uint32_t nc, const kern_out *o) {
    uint32_t words = L->words, n = L->n;
    uint64_t mask = kern_last_mask(n);
    for (uint32_t r = 0; r < L->rows; r++) {
        const uint64_t *w = L->rm + (size_t)r * words;
        int32_t pc[PORT_COLS] = {0};
        for (uint32_t j = 0; j + 1 < words; j++) {
            uint64_t wj = w[j];
            for (uint32_t i = 0; i < nc; i++) pc[i] += __builtin_popcountll(wj ^ x[i * xs + j]);
        }
        uint64_t wl = w[words - 1];
        for (uint32_t i = 0; i < nc; i++) {
            pc[i] += __builtin_popcountll((wl ^ x[i * xs + words - 1]) & mask);
            put(L, o, c0 + i, r, (int32_t)n - 2 * pc[i]);
        }
    }
}

ALWAYS_INLINE void bin_body(const kern_layer *L, const uint64_t *x, size_t xs, uint32_t ncols,
                            const kern_out *o) {
    uint32_t c = 0;
    for (; c + PORT_COLS <= ncols; c += PORT_COLS) bin_cols(L, x + c * xs, xs, c, PORT_COLS, o);
    if (c < ncols) bin_cols(L, x + c * xs, xs, c, ncols - c, o);
}

/* ---- 8-bit layers ------------------------------------------------------------ */

#define PORT_LANES 4
#define PORT_SETS 16
#define PORT_LUT_BUDGET (512u << 10)
#define PORT_LUT_MAX (4u << 20)

static size_t lut_set_bytes(uint32_t n) { return (size_t)((n + 7) / 8) * 256 * 8; }

static uint32_t port_sets(uint32_t n) {
    size_t s = PORT_LUT_BUDGET / lut_set_bytes(n);
    return s < 1 ? 1 : s > PORT_SETS ? PORT_SETS : (uint32_t)s;
}

static size_t port_u8_scratch(uint32_t n, uint32_t rows) {
    (void)rows;
    if (lut_set_bytes(n) > PORT_LUT_MAX) return (size_t)((n + 63) / 64) * 8 * 8; /* planes */
    return port_sets(n) * lut_set_bytes(n);
}

/* Table set for `lanes` columns: entry (g, v) holds in lane i the sum of the
 * pixels of column i at the inputs 8g + k whose bit k of v is set. Entry v is
 * built from the entry without v's top bit: 255 additions per group. */
static void lut_build(uint64_t *T, uint32_t n, const uint8_t *px, size_t ps, uint32_t lanes,
                      int32_t *pixsum) {
    for (uint32_t i = 0; i < PORT_LANES; i++) pixsum[i] = 0;
    for (uint32_t g = 0; g < (n + 7) / 8; g++, T += 256) {
        uint64_t p[8];
        for (uint32_t k = 0; k < 8; k++) {
            uint32_t j = g * 8 + k;
            p[k] = 0;
            if (j >= n) continue;
            for (uint32_t i = 0; i < lanes; i++) {
                p[k] |= (uint64_t)px[i * ps + j] << (16 * i);
                pixsum[i] += px[i * ps + j];
            }
        }
        T[0] = 0;
        for (uint32_t k = 0; k < 8; k++) {
            uint32_t half = 1u << k;
            for (uint32_t v = 0; v < half; v++) T[half + v] = T[v] + p[k];
        }
    }
}

ALWAYS_INLINE void u8_lut_body(const kern_layer *L, const uint8_t *px, size_t ps,
                               uint32_t ncols, void *scratch, const kern_out *o) {
    uint32_t n = L->n, G = (n + 7) / 8, S = port_sets(n);
    size_t set_words = lut_set_bytes(n) / 8;
    uint64_t *lut = scratch;
    for (uint32_t c0 = 0; c0 < ncols; c0 += S * PORT_LANES) {
        uint32_t left = ncols - c0;
        uint32_t ns = left >= S * PORT_LANES ? S : (left + PORT_LANES - 1) / PORT_LANES;
        int32_t pixsum[PORT_SETS * PORT_LANES];
        for (uint32_t s = 0; s < ns; s++) {
            uint32_t c = c0 + s * PORT_LANES;
            uint32_t lanes = ncols - c < PORT_LANES ? ncols - c : PORT_LANES;
            lut_build(lut + s * set_words, n, px + c * ps, ps, lanes, pixsum + s * PORT_LANES);
        }
        for (uint32_t r = 0; r < L->rows; r++) {
            const uint64_t *w = L->rm + (size_t)r * L->words;
            uint32_t sum[PORT_SETS * PORT_LANES] = {0};
            for (uint32_t g0 = 0; g0 < G; g0 += 32) {
                uint32_t g1 = g0 + 32 < G ? g0 + 32 : G;
                uint64_t acc[PORT_SETS] = {0};
                for (uint32_t g = g0; g < g1; g++) {
                    uint32_t v = (uint32_t)(w[g / 8] >> (8 * (g % 8))) & 255;
                    const uint64_t *T = lut + (size_t)g * 256 + v;
                    for (uint32_t s = 0; s < ns; s++) acc[s] += T[s * set_words];
                }
                for (uint32_t s = 0; s < ns; s++)
                    for (uint32_t i = 0; i < PORT_LANES; i++)
                        sum[s * PORT_LANES + i] += acc[s] >> (16 * i) & 0xFFFF;
            }
            uint32_t nc = left < S * PORT_LANES ? left : S * PORT_LANES;
            for (uint32_t i = 0; i < nc; i++)
                put(L, o, c0 + i, r, 2 * (int32_t)sum[i] - pixsum[i]);
        }
    }
}

/* Bit-planes, one column at a time: plane b of word j at planes[j * 8 + b]. */
ALWAYS_INLINE void u8_planes_body(const kern_layer *L, const uint8_t *px, size_t ps,
                                  uint32_t ncols, void *scratch, const kern_out *o) {
    uint32_t n = L->n, words = L->words;
    uint64_t *planes = scratch;
    for (uint32_t c = 0; c < ncols; c++) {
        const uint8_t *p = px + c * ps;
        int32_t pixsum = 0;
        for (uint32_t j = 0; j < words; j++) {
            uint64_t pl[8] = {0};
            uint32_t end = (j + 1) * 64 < n ? (j + 1) * 64 : n;
            for (uint32_t k = j * 64; k < end; k++) {
                pixsum += p[k];
                for (int b = 0; b < 8; b++) pl[b] |= (uint64_t)(p[k] >> b & 1) << (k % 64);
            }
            memcpy(&planes[(size_t)j * 8], pl, sizeof pl);
        }
        for (uint32_t r = 0; r < L->rows; r++) {
            const uint64_t *w = L->rm + (size_t)r * words, *pl = planes;
            int32_t cnt[8] = {0};
            for (uint32_t j = 0; j < words; j++, pl += 8)
                for (int b = 0; b < 8; b++) cnt[b] += __builtin_popcountll(pl[b] & w[j]);
            int32_t s = 0;
            for (int b = 0; b < 8; b++) s += cnt[b] << b;
            put(L, o, c, r, 2 * s - pixsum);
        }
    }
}

ALWAYS_INLINE void u8_body(const kern_layer *L, const uint8_t *px, size_t ps, uint32_t ncols,
                           void *scratch, const kern_out *o) {
    if (lut_set_bytes(L->n) > PORT_LUT_MAX)
        u8_planes_body(L, px, ps, ncols, scratch, o);
    else
        u8_lut_body(L, px, ps, ncols, scratch, o);
}

/* Two copies of the same code: one the compiler may build with POPCNT, one
 * for any CPU; they give the same results. */
static void bin_generic(const kern_layer *L, const uint64_t *x, size_t xs, uint32_t ncols,
                        const kern_out *o) {
    bin_body(L, x, xs, ncols, o);
}
static void u8_generic(const kern_layer *L, const uint8_t *px, size_t ps, uint32_t ncols,
                       void *scratch, const kern_out *o) {
    u8_body(L, px, ps, ncols, scratch, o);
}

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("popcnt"))) static void bin_popcnt(const kern_layer *L, const uint64_t *x,
                                                         size_t xs, uint32_t ncols,
                                                         const kern_out *o) {
    bin_body(L, x, xs, ncols, o);
}
__attribute__((target("popcnt"))) static void u8_popcnt(const kern_layer *L, const uint8_t *px,
                                                        size_t ps, uint32_t ncols, void *scratch,
                                                        const kern_out *o) {
    u8_body(L, px, ps, ncols, scratch, o);
}
#else
#define bin_popcnt bin_generic
#define u8_popcnt u8_generic
#endif
static int have_popcnt(void) { return cpu_popcnt(); }

static void bin_portable(const kern_layer *L, const uint64_t *x, size_t xs, uint32_t ncols,
                         const kern_out *o) {
    if (have_popcnt())
        bin_popcnt(L, x, xs, ncols, o);
    else
        bin_generic(L, x, xs, ncols, o);
}

static void u8_portable(const kern_layer *L, const uint8_t *px, size_t ps, uint32_t ncols,
                        void *scratch, const kern_out *o) {
    if (have_popcnt())
        u8_popcnt(L, px, ps, ncols, scratch, o);
    else
        u8_generic(L, px, ps, ncols, scratch, o);
}

/* ---- binarized input ---------------------------------------------------------- */

void kern_binarize_portable(const uint8_t *px, uint32_t n, uint32_t t, uint64_t *out) {
    for (uint32_t j0 = 0; j0 < n; j0 += 64) {
        uint32_t m = n - j0 < 64 ? n - j0 : 64;
        uint64_t w = 0;
        for (uint32_t k = 0; k < m; k++) w |= (uint64_t)(px[j0 + k] >= t) << k;
        out[j0 / 64] = w;
    }
}

const kern_ops kern_portable = {BNN_KERNEL_PORTABLE, "portable", 0, bin_portable, u8_portable,
                                port_u8_scratch, NULL, NULL, kern_binarize_portable};

/* ---- interleaving ------------------------------------------------------------ */

void kern_interleave(const kern_layer *L, uint64_t *il) {
    uint32_t words = L->words;
    uint64_t mask = kern_last_mask(L->n);
    for (uint32_t b = 0; b < L->blocks; b++)
        for (uint32_t i = 0; i < KERN_RB; i++) {
            uint32_t r = b * KERN_RB + i;
            uint64_t *dst = il + (size_t)b * words * KERN_RB + i;
            if (r >= L->rows) {
                for (uint32_t j = 0; j < words; j++) dst[(size_t)j * KERN_RB] = 0;
                continue;
            }
            const uint64_t *src = L->rm + (size_t)r * words;
            for (uint32_t j = 0; j + 1 < words; j++) dst[(size_t)j * KERN_RB] = src[j];
            dst[(size_t)(words - 1) * KERN_RB] = src[words - 1] & mask;
        }
}

/* ---- the choice of kernel ------------------------------------------------------ */

/* CPU features, detected once (libgcc's tables are written by
 * __builtin_cpu_init, so threads must not call it concurrently). */
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static int cpu_has_popcnt, cpu_has_avx2, cpu_has_avx512;

static void cpu_detect(void) {
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    cpu_has_popcnt = __builtin_cpu_supports("popcnt");
    cpu_has_avx2 = __builtin_cpu_supports("avx2") && cpu_has_popcnt &&
                   __builtin_cpu_supports("bmi2");
    cpu_has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") &&
                     __builtin_cpu_supports("avx512vpopcntdq") && cpu_has_popcnt &&
                     __builtin_cpu_supports("bmi2");
#endif
}

static int cpu_popcnt(void) {
    pthread_once(&cpu_once, cpu_detect);
    return cpu_has_popcnt;
}

int kern_cpu_has(enum bnn_kernel k) {
    pthread_once(&cpu_once, cpu_detect);
    switch (k) {
    case BNN_KERNEL_AUTO:
    case BNN_KERNEL_PORTABLE: return 1;
    case BNN_KERNEL_AVX2: return cpu_has_avx2;
    case BNN_KERNEL_AVX512: return cpu_has_avx512;
    }
    return 0;
}

static const char *const kernel_names[] = {"auto", "portable", "avx2", "avx512"};

const char *bnn_kernel_name(enum bnn_kernel k) {
    return (unsigned)k < 4 ? kernel_names[k] : "unknown";
}

int bnn_kernel_parse(const char *name) {
    for (int k = 0; k < 4; k++)
        if (name && strcmp(name, kernel_names[k]) == 0) return k;
    return -1;
}

int bnn_kernel_supported(enum bnn_kernel k) { return kern_cpu_has(k); }

static enum bnn_kernel best_kernel(void) {
    if (kern_cpu_has(BNN_KERNEL_AVX512)) return BNN_KERNEL_AVX512;
    if (kern_cpu_has(BNN_KERNEL_AVX2)) return BNN_KERNEL_AVX2;
    return BNN_KERNEL_PORTABLE;
}

/* The automatic choice: APXSIM_KERNEL if it names a kernel this CPU has
 * (an unknown or unsupported value is ignored: the library cannot report it;
 * bnn_kernel_active tells what runs), else the best. Read once. */
static enum bnn_kernel auto_choice;
static pthread_once_t auto_once = PTHREAD_ONCE_INIT;

enum bnn_kernel kern_choose(const char *env) {
    int k = bnn_kernel_parse(env);
    if (k > BNN_KERNEL_AUTO && kern_cpu_has((enum bnn_kernel)k)) return (enum bnn_kernel)k;
    return best_kernel();
}

static void auto_init(void) { auto_choice = kern_choose(getenv("APXSIM_KERNEL")); }

/* An explicit bnn_set_kernel choice, AUTO for none. */
static _Atomic int forced = BNN_KERNEL_AUTO;

enum bnn_kernel kern_forced(void) { return (enum bnn_kernel)atomic_load(&forced); }

enum bnn_kernel bnn_kernel_active(void) {
    int f = atomic_load(&forced);
    if (f != BNN_KERNEL_AUTO) return (enum bnn_kernel)f;
    pthread_once(&auto_once, auto_init);
    return auto_choice;
}

int bnn_set_kernel(enum bnn_kernel k, apx_error *err) {
    if ((unsigned)k > BNN_KERNEL_AVX512)
        return apx_fail(err, APX_EINPUT, "unknown inference kernel %d", (int)k);
    if (!kern_cpu_has(k))
        return apx_fail(err, APX_EINPUT,
                        "this CPU cannot run the %s kernel (it needs %s)", bnn_kernel_name(k),
                        k == BNN_KERNEL_AVX2 ? "AVX2, POPCNT and BMI2"
                                             : "AVX-512 F/BW/VL/VPOPCNTDQ, POPCNT and BMI2");
    atomic_store(&forced, (int)k);
    return APX_OK;
}

const kern_ops *kern_get(enum bnn_kernel k) {
    if (k == BNN_KERNEL_AUTO) k = bnn_kernel_active();
    switch (k) {
    case BNN_KERNEL_AVX512: return &kern_avx512;
    case BNN_KERNEL_AVX2: return &kern_avx2;
    default: return &kern_portable;
    }
}

const kern_ops *kern_active(void) { return kern_get(bnn_kernel_active()); }
