/* train.c - training a BNN, fully connected or convolutional (train.h,
 * train_internal.h).
 *
 * The float network follows the group's FC and VGG3 models (facts bnn.md
 * sections 1 and 5): Conv3x3 (binarised weights, no bias, zero padding) ->
 * [MaxPool2] -> BatchNorm2d -> Hardtanh -> sign for every conv layer, Linear
 * (binarised weights, no bias) -> BatchNorm1d -> Hardtanh -> sign for every
 * hidden dense layer, last Linear -> * Scale -> softmax cross-entropy or the
 * modified hinge loss. docs/training.md has the formulas of every mode.
 * Choices the facts leave open, and what this file does:
 *   - Weight clip: latent weights are clamped to [-weight_clip, weight_clip]
 *     after every step (BinaryConnect). The group's `Clippy` meant to do the
 *     same but its clamp is not in place, so it has no effect (facts 4.2.7);
 *     weight_clip = 0 reproduces that effective behaviour.
 *   - Biases: none (as myay/SPICE-Torch); BN's beta plays that role and is
 *     folded into the threshold.
 *   - The last partial batch of an epoch is used if it holds >= 2 samples
 *     (batch norm needs two); a single left-over sample is skipped that epoch
 *     (a different one each epoch, as the order is reshuffled).
 *   - Export of a negative Scale: the output layer's weights are negated and
 *     |Scale| stored, which leaves every score s_c * Scale unchanged; a zero
 *     Scale is stored as FLT_MIN (the argmax of the integer scores is what
 *     the packed model predicts either way).
 *   - Max-pool ties (frequent: +-1 sums are integers) send the gradient to
 *     the first maximum of the window; the forward value is the same for any
 *     choice, so the exported model does not depend on it.
 *   - bn_recalibrate: the running statistics can be re-estimated before each
 *     export with the current weights (train_net_recalibrate_bn), instead of
 *     exporting the momentum averages, which mix batch statistics of weights
 *     from the last ~1/momentum steps and were computed on inputs normalised
 *     with batch (not running) statistics of the layers before.
 *   - Flip training (facts 4.2-4.4) flips the binarised copy wb in place for
 *     one batch: the forward GEMMs and the backward GEMM that carries the
 *     gradient to a layer's input see the flipped weights (the true gradient
 *     of the faulty network); dW = dA^T X is the gradient of the flipped
 *     weight, negated at the flips for the mask variant and kept for STE.
 *     Adam's refresh of wb from the latent weights ends the flips, so no
 *     restore pass is needed. Flips hit every layer, first and last included
 *     (facts 4.2 item 3); never the thresholds (DESIGN: exact memory).
 *   - MHL's hinge passes gradient where b - t y >= 0, as PyTorch's
 *     clamp(min=0) in the group's binary_hingeloss; the margin regularizer
 *     (facts 4.7 only suggests it) is normalised per hidden output and fan-in
 *     and differentiated exactly through the batch statistics.
 * Activations are HWC per sample (channel fastest), so a conv layer is one
 * GEMM of its im2col rows (one per output position) with the [out x 9*in_c]
 * weights, whose columns are ordered (kh * 3 + kw) * in_c + c as the packed
 * model's bits; the output lands in HWC without a transpose, and the first
 * dense layer reads it flattened in the packed model's order.
 * All GEMMs go through CBLAS; +-1 inputs times +-1 weights sum exactly in
 * float (|a| <= fan-in < 2^24), so only the first layer (pixels / 255)
 * rounds. */
#include "train_internal.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../sim/rng.h"

/* rng.h stream identifiers: who draws. */
#define TRAIN_STREAM_INIT 0x54524E49u     /* "TRNI": weight initialisation, per layer */
#define TRAIN_STREAM_SHUFFLE 0x54525348u  /* "TRSH": sample order, per epoch */
#define TRAIN_STREAM_FLIP 0x5452464Cu     /* "TRFL": plain per-batch flips */
#define TRAIN_STREAM_RECAL 0x54524243u    /* "TRBC": flips of the BN re-estimation, per epoch */
#define TRAIN_STREAM_DEVICE 0x54524456u   /* "TRDV": the seed handed to devices */

#define ADAM_BETA1 0.9
#define ADAM_BETA2 0.999
#define ADAM_EPS 1e-8

#define SCALE_INIT 1e-3f  /* facts bnn.md section 1: Scale initialised to 1e-3 */

/* Fashion-MNIST shape, which every recipe read from YAML trains on. */
#define RECIPE_ROWS 28u
#define RECIPE_COLS 28u
#define RECIPE_INPUTS (RECIPE_ROWS * RECIPE_COLS)
#define RECIPE_CLASSES 10u

/* ------------------------------------------------------------------------ */
/* Recipe                                                                    */

void train_recipe_defaults(train_recipe *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", "fmnist-fc");
    static const uint32_t fc[] = {784, 2048, 2048, 10};
    r->n_widths = 4;
    memcpy(r->widths, fc, sizeof fc);
    r->seed = 1;
    r->epochs = 10;  /* lower end of the README's "10-100 epochs" */
    r->batch = 256;
    r->lr = 1e-3;
    r->lr_step = 25;
    r->lr_gamma = 0.5;
    r->bn_eps = 1e-5;       /* PyTorch BatchNorm1d defaults */
    r->bn_momentum = 0.1;
    r->weight_clip = 1.0;
    r->train_limit = 0;
    r->bn_recalibrate = 0;
    r->bn_reestimate_ber = 0.0;
    r->loss = TRAIN_LOSS_CE;
    r->mhl_margin = TRAIN_MHL_MARGIN;
    r->reg_lambda = 0.0;
    r->reg_margin = 0.0;
    r->flip.on = 0;  /* memset: no device, no schedule */
    r->output = NULL;
    r->data_dir = NULL;
}

int train_check_layers(const train_recipe *r, uint32_t in_rows, uint32_t in_cols,
                       uint32_t *bad_layer, apx_error *err) {
    uint32_t n_layers = r->n_widths - 1;
    if (bad_layer) *bad_layer = 0;
    if (r->n_widths < 3 || r->n_widths > TRAIN_MAX_LAYERS + 1)
        return apx_fail(err, APX_EINPUT,
                        "a network needs 2 to %u layers (at least one hidden layer), got %u",
                        TRAIN_MAX_LAYERS, r->n_widths < 1 ? 0 : n_layers);
    uint64_t pixels = (uint64_t)in_rows * in_cols;
    if (r->widths[0] != pixels)
        return apx_fail(err, APX_EINPUT,
                        "first width %u does not match the %ux%u = %llu pixels of the input",
                        r->widths[0], in_rows, in_cols, (unsigned long long)pixels);
    uint64_t h = in_rows, w = in_cols, c = 1;
    int dense_seen = 0;
    for (uint32_t l = 0; l < n_layers; l++) {
        if (bad_layer) *bad_layer = l;
        uint32_t out = r->widths[l + 1];
        if (out == 0 || out > BNN_MAX_WIDTH)
            return apx_fail(err, APX_EINPUT, "layer %u: width %u is outside 1..%u", l + 1, out,
                            BNN_MAX_WIDTH);
        if (r->conv[l]) {
            uint32_t pool = r->pool[l] ? r->pool[l] : 1;
            if (dense_seen)
                return apx_fail(err, APX_EINPUT,
                                "layer %u: a conv layer cannot follow a dense layer", l + 1);
            if (l + 1 == n_layers)
                return apx_fail(err, APX_EINPUT,
                                "layer %u: the last layer (the class scores) must be dense",
                                l + 1);
            if (pool > 2)
                return apx_fail(err, APX_EINPUT, "layer %u: pool must be 1 or 2, got %u", l + 1,
                                pool);
            if (9 * c > BNN_MAX_WIDTH)
                return apx_fail(err, APX_EINPUT,
                                "layer %u: fan-in 9 x %llu channels exceeds %u", l + 1,
                                (unsigned long long)c, BNN_MAX_WIDTH);
            if (h / pool == 0 || w / pool == 0)
                return apx_fail(err, APX_EINPUT,
                                "layer %u: pooling a %llux%llu feature map by %u leaves no "
                                "pixels",
                                l + 1, (unsigned long long)h, (unsigned long long)w, pool);
            h /= pool;
            w /= pool;
        } else {
            if (h * w * c > BNN_MAX_WIDTH)
                return apx_fail(err, APX_EINPUT,
                                "layer %u: fan-in %llux%llux%llu = %llu exceeds %u", l + 1,
                                (unsigned long long)h, (unsigned long long)w,
                                (unsigned long long)c, (unsigned long long)(h * w * c),
                                BNN_MAX_WIDTH);
            dense_seen = 1;
            h = w = 1;
        }
        c = out;
    }
    if (bad_layer) *bad_layer = 0;
    return APX_OK;
}

/* The integer form: [784, 2048, 2048, 10], a dense network, input first. */
static int read_widths(const cfg_node *layers, train_recipe *r, apx_error *err) {
    for (size_t i = 0; i < layers->n; i++)
        if (layers->items[i]->kind != CFG_SCALAR)
            return cfg_fail(layers->items[i], err,
                            "'layers' mixes widths and layer maps: use either [784, 2048, "
                            "10] or [{conv: 64, pool: 2}, ..., {dense: 10}]");
    if (layers->n < 3 || layers->n > TRAIN_MAX_LAYERS + 1)
        return cfg_fail(layers, err,
                        "'layers' needs between 3 and %u widths (input, at least one hidden "
                        "layer, classes); got %zu",
                        TRAIN_MAX_LAYERS + 1, layers->n);
    for (size_t i = 0; i < layers->n; i++) {
        long long v;
        if (cfg_as_int(layers->items[i], 1, BNN_MAX_WIDTH, &v, err)) return err->code;
        r->widths[i] = (uint32_t)v;
    }
    r->n_widths = (uint32_t)layers->n;
    if (r->widths[0] != RECIPE_INPUTS)
        return cfg_fail(layers->items[0], err,
                        "the first width must be %u (28x28 Fashion-MNIST pixels); got %u",
                        RECIPE_INPUTS, r->widths[0]);
    if (r->widths[r->n_widths - 1] != RECIPE_CLASSES)
        return cfg_fail(layers->items[layers->n - 1], err,
                        "the last width must be %u (Fashion-MNIST classes); got %u",
                        RECIPE_CLASSES, r->widths[r->n_widths - 1]);
    return APX_OK;
}

/* The map form: [{conv: 64, pool: 2}, ..., {dense: 2048}, {dense: 10}], the
 * 28x28x1 input implied. */
static int read_layer_maps(const cfg_node *layers, train_recipe *r, apx_error *err) {
    static const char *const keys[] = {"conv", "dense", "pool", NULL};
    if (layers->n < 2 || layers->n > TRAIN_MAX_LAYERS)
        return cfg_fail(layers, err,
                        "'layers' needs between 2 and %u layers (at least one hidden layer, "
                        "then {dense: %u}); got %zu",
                        TRAIN_MAX_LAYERS, RECIPE_CLASSES, layers->n);
    r->widths[0] = RECIPE_INPUTS;
    for (size_t i = 0; i < layers->n; i++) {
        const cfg_node *item = layers->items[i];
        if (item->kind != CFG_MAP)
            return cfg_fail(item, err,
                            "'layers' mixes widths and layer maps: layer %zu must be a map like "
                            "{conv: 64, pool: 2} or {dense: 2048}",
                            i + 1);
        if (cfg_expect_map(item, "layer", keys, err)) return err->code;
        const cfg_node *conv = cfg_find(item, "conv"), *dense = cfg_find(item, "dense");
        if (!conv == !dense)
            return cfg_fail(item, err, "layer %zu needs exactly one of 'conv: CHANNELS' or "
                            "'dense: NEURONS'", i + 1);
        long long v, pool = 1;
        if (cfg_get_int(item, conv ? "conv" : "dense", 1, 0, 1, BNN_MAX_WIDTH, &v, err))
            return err->code;
        if (dense && cfg_find(item, "pool"))
            return cfg_fail(cfg_find(item, "pool"), err,
                            "'pool' applies to conv layers only (layer %zu is dense)", i + 1);
        if (conv && cfg_get_int(item, "pool", 0, 1, 1, 2, &pool, err)) return err->code;
        r->widths[i + 1] = (uint32_t)v;
        r->conv[i] = conv ? 1 : 0;
        r->pool[i] = (uint8_t)(conv ? pool : 0);
    }
    r->n_widths = (uint32_t)layers->n + 1;
    const cfg_node *last = layers->items[layers->n - 1];
    if (!r->conv[layers->n - 1] && r->widths[r->n_widths - 1] != RECIPE_CLASSES)
        return cfg_fail(last, err, "the last layer must be {dense: %u} (Fashion-MNIST classes); "
                        "got %u neurons", RECIPE_CLASSES, r->widths[r->n_widths - 1]);
    uint32_t bad;
    if (train_check_layers(r, RECIPE_ROWS, RECIPE_COLS, &bad, err)) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return cfg_fail(layers->items[bad], err, "%s", msg);
    }
    return APX_OK;
}

static int read_layers(const cfg_node *root, train_recipe *r, apx_error *err) {
    const cfg_node *layers = cfg_find(root, "layers");
    if (!layers) return APX_OK;
    if (layers->kind != CFG_SEQ || layers->n == 0)
        return cfg_fail(layers, err,
                        "'layers' must be a list of widths, e.g. [784, 2048, 2048, 10], or of "
                        "layers, e.g. [{conv: 64, pool: 2}, {dense: 2048}, {dense: 10}]");
    memset(r->conv, 0, sizeof r->conv);
    memset(r->pool, 0, sizeof r->pool);
    if (layers->items[0]->kind == CFG_MAP) return read_layer_maps(layers, r, err);
    return read_widths(layers, r, err);
}

uint32_t train_flip_step_at(const train_flip *f, uint32_t epoch) {
    uint32_t k = 0;
    while (k + 1 < f->n_steps && f->step[k + 1].epoch <= epoch) k++;
    return k;
}

/* An operating point {knob: value, ...} of dev, in knob order. A knob left
 * out takes the device's default (knob_default) or is refused; the point is
 * range-checked by the device. */
static int read_point(const cfg_node *node, const device *dev, double *op, apx_error *err) {
    const device_ops *ops = dev->ops;
    if (cfg_expect_map(node, "operating_point", ops->knobs, err)) return err->code;
    int n = device_knob_count(ops);
    for (int k = 0; k < n; k++) {
        const cfg_node *v = cfg_find(node, ops->knobs[k]);
        if (v) {
            if (cfg_as_double(v, -1e300, 1e300, &op[k], err)) return err->code;
        } else if (!ops->knob_default || !ops->knob_default(dev, k, &op[k])) {
            return cfg_fail(node, err, "operating_point needs a value for '%s' (knob of the %s "
                            "device)", ops->knobs[k], ops->kind);
        }
    }
    return ops->check_point(dev, op, node, err);
}

/* curriculum: [{epoch: 0, p: 0.01}, {epoch: 3, p: 0.05}, ...] (plain flips)
 * or [{epoch: 0, operating_point: {...}}, ...] (dev). Epochs are 0-based,
 * start at 0, increase strictly and lie within the recipe's epochs. */
static int read_curriculum(const cfg_node *cur, const device *dev, train_recipe *r,
                           apx_error *err) {
    static const char *const plain_keys[] = {"epoch", "p", NULL};
    static const char *const device_keys[] = {"epoch", "operating_point", NULL};
    const char *example = dev ? "{epoch: 0, operating_point: {...}}" : "{epoch: 0, p: 0.01}";
    if (cur->kind != CFG_SEQ || cur->n == 0 || cur->n > TRAIN_MAX_CURRICULUM)
        return cfg_fail(cur, err, "flip: 'curriculum' must be a list of 1 to %u steps like %s",
                        TRAIN_MAX_CURRICULUM, example);
    train_flip *f = &r->flip;
    for (size_t i = 0; i < cur->n; i++) {
        const cfg_node *item = cur->items[i];
        train_flip_step *st = &f->step[i];
        long long e;
        if (item->kind != CFG_MAP)
            return cfg_fail(item, err, "curriculum step %zu must be a map like %s", i + 1,
                            example);
        if (cfg_expect_map(item, "curriculum step", dev ? device_keys : plain_keys, err) ||
            cfg_get_int(item, "epoch", 1, 0, 0, 100000, &e, err))
            return err->code;
        const cfg_node *at = cfg_find(item, "epoch");
        if (i == 0 && e != 0)
            return cfg_fail(at, err, "the first curriculum step must start at epoch 0, got %lld",
                            e);
        if (i > 0 && e <= (long long)f->step[i - 1].epoch)
            return cfg_fail(at, err, "curriculum epochs must increase strictly: %lld after %u", e,
                            f->step[i - 1].epoch);
        if (e >= (long long)r->epochs)
            return cfg_fail(at, err, "curriculum epoch %lld is never reached: epochs are "
                            "counted from 0 and the recipe trains %u",
                            e, r->epochs);
        st->epoch = (uint32_t)e;
        if (dev) {
            const cfg_node *op = cfg_find(item, "operating_point");
            if (!op)
                return cfg_fail(item, err, "curriculum step %zu needs 'operating_point'", i + 1);
            if (read_point(op, dev, st->op, err)) return err->code;
        } else if (cfg_get_double(item, "p", 1, 0.0, 0.0, 1.0, &st->p, err)) {
            return err->code;
        }
    }
    f->n_steps = (uint32_t)cur->n;
    return APX_OK;
}

/* Where a device holds the weights: memory: {geometry: {...}, base: BYTES},
 * as in a sweep (default: one DDR4 8Gb x8 rank at address 0). */
static int read_memory(const cfg_node *mem, train_flip *f, apx_error *err) {
    static const char *const keys[] = {"geometry", "base", NULL};
    long long base;
    if ((mem && cfg_expect_map(mem, "memory", keys, err)) ||
        geometry_from_yaml(cfg_find(mem, "geometry"), &f->geo, err) ||
        cfg_get_int(mem, "base", 0, 0, 0, INT64_MAX, &base, err))
        return err->code;
    f->base_addr = (uint64_t)base;
    return APX_OK;
}

/* flip: {p | operating_point | curriculum, gradient, persistent, device, memory} */
static int read_flip(const cfg_node *fl, train_recipe *r, apx_error *err) {
    static const char *const keys[] = {"p",      "gradient",        "persistent", "device",
                                       "memory", "operating_point", "curriculum", NULL};
    /* "straight_through" is the name facts bnn.md 4.3 uses for "ste". */
    static const char *const gradients[] = {"mask", "ste", "straight_through", NULL};
    if (cfg_expect_map(fl, "flip", keys, err)) return err->code;
    train_flip *f = &r->flip;
    int gradient, persistent;
    if (cfg_get_enum(fl, "gradient", 0, 1, gradients, &gradient, err) ||
        cfg_get_bool(fl, "persistent", 0, 0, &persistent, err))
        return err->code;
    f->on = 1;
    f->gradient = gradient == 0 ? TRAIN_FLIP_MASK : TRAIN_FLIP_STE;
    f->persistent = persistent;
    const cfg_node *dev_at = cfg_find(fl, "device"), *mem = cfg_find(fl, "memory");
    const cfg_node *op = cfg_find(fl, "operating_point"), *cur = cfg_find(fl, "curriculum");
    const cfg_node *p = cfg_find(fl, "p");
    if (!dev_at) {
        if (op || mem)
            return cfg_fail(op ? op : mem, err, "flip: '%s' needs a 'device' (plain flips take "
                            "'p')", op ? "operating_point" : "memory");
        if (!p == !cur)
            return cfg_fail(fl, err, "flip: give exactly one of 'p' (a bit error rate) or "
                            "'curriculum'");
        if (cur) return read_curriculum(cur, NULL, r, err);
        f->n_steps = 1;
        return cfg_get_double(fl, "p", 1, 0.0, 0.0, 1.0, &f->step[0].p, err);
    }
    if (p)
        return cfg_fail(p, err, "flip: with a device the error rate comes from "
                        "'operating_point' or a 'curriculum' of them, not 'p'");
    if (!op == !cur)
        return cfg_fail(fl, err, "flip: with a device give exactly one of 'operating_point' or "
                        "'curriculum'");
    /* `device:` is the device's mapping, or the path of a device file. */
    if (!(dev_at = device_section(dev_at, &f->device_doc, err))) return err->code;
    /* Create the device once to check its section and the points. */
    device *dev = NULL;
    if (device_create(dev_at, &dev, err)) return err->code;
    int rc = read_memory(mem, f, err);
    if (rc == APX_OK)
        rc = cur ? read_curriculum(cur, dev, r, err) : read_point(op, dev, f->step[0].op, err);
    if (rc == APX_OK && !cur) f->n_steps = 1;
    device_destroy(dev);
    f->device = dev_at;
    return rc;
}

/* loss, mhl_margin, margin_reg, bn_reestimate_ber */
static int read_objective(const cfg_node *root, train_recipe *r, apx_error *err) {
    static const char *const losses[] = {"ce", "mhl", NULL};
    static const char *const reg_keys[] = {"lambda", "margin", NULL};
    int loss;
    if (cfg_get_enum(root, "loss", 0, TRAIN_LOSS_CE, losses, &loss, err)) return err->code;
    r->loss = (train_loss_kind)loss;
    const cfg_node *mm = cfg_find(root, "mhl_margin");
    if (mm && r->loss != TRAIN_LOSS_MHL)
        return cfg_fail(mm, err, "'mhl_margin' applies to 'loss: mhl' only");
    if (cfg_get_double(root, "mhl_margin", 0, r->mhl_margin, 1e-6, 1e6, &r->mhl_margin, err))
        return err->code;
    const cfg_node *reg = cfg_find(root, "margin_reg");
    if (reg && (cfg_expect_map(reg, "margin_reg", reg_keys, err) ||
                cfg_get_double(reg, "lambda", 1, 0.0, 0.0, 1e6, &r->reg_lambda, err) ||
                cfg_get_double(reg, "margin", 1, 0.0, 1e-6, 2.0, &r->reg_margin, err)))
        return err->code;
    if (cfg_get_double(root, "bn_reestimate_ber", 0, 0.0, 0.0, 1.0, &r->bn_reestimate_ber, err))
        return err->code;
    if (r->bn_reestimate_ber > 0.0 && r->bn_recalibrate == 0)
        return cfg_fail(cfg_find(root, "bn_reestimate_ber"), err,
                        "'bn_reestimate_ber' needs 'bn_recalibrate: N' (the samples the BN "
                        "statistics are re-estimated over)");
    return APX_OK;
}

void train_recipe_free(train_recipe *r) {
    if (!r->flip.device_doc) return;
    cfg_free(r->flip.device_doc);
    r->flip.device_doc = NULL;
    r->flip.device = NULL; /* it pointed into the file */
}

int train_recipe_from_yaml(const cfg_node *root, train_recipe *r, apx_error *err) {
    static const char *const keys[] = {
        "name",        "layers",      "seed",           "epochs",       "batch",
        "lr",          "lr_step",     "lr_gamma",       "bn_eps",       "bn_momentum",
        "weight_clip", "train_limit", "bn_recalibrate", "output",       "data_dir",
        "loss",        "mhl_margin",  "margin_reg",     "bn_reestimate_ber", "flip",
        NULL};
    train_recipe_defaults(r);
    if (cfg_expect_map(root, "training recipe", keys, err)) return err->code;

    const char *name = NULL;
    if (cfg_get_string(root, "name", 0, NULL, &name, err)) return err->code;
    if (name) {
        if (!name[0] || strlen(name) >= sizeof r->name)
            return cfg_fail(cfg_find(root, "name"), err,
                            "'name' must have 1 to %zu characters", sizeof r->name - 1);
        snprintf(r->name, sizeof r->name, "%s", name);
    }
    if (read_layers(root, r, err)) return err->code;

    long long v;
    if (cfg_get_int(root, "seed", 0, (long long)r->seed, 0, INT64_MAX, &v, err)) return err->code;
    r->seed = (uint64_t)v;
    if (cfg_get_int(root, "epochs", 0, r->epochs, 1, 100000, &v, err)) return err->code;
    r->epochs = (uint32_t)v;
    if (cfg_get_int(root, "batch", 0, r->batch, 2, 65536, &v, err)) return err->code;
    r->batch = (uint32_t)v;
    if (cfg_get_int(root, "lr_step", 0, r->lr_step, 1, 100000, &v, err)) return err->code;
    r->lr_step = (uint32_t)v;
    if (cfg_get_int(root, "train_limit", 0, r->train_limit, 0, IDX_MAX_ITEMS, &v, err))
        return err->code;
    r->train_limit = (uint32_t)v;
    if (cfg_get_int(root, "bn_recalibrate", 0, r->bn_recalibrate, 0, IDX_MAX_ITEMS, &v, err))
        return err->code;
    r->bn_recalibrate = (uint32_t)v;

    if (cfg_get_double(root, "lr", 0, r->lr, 1e-12, 10.0, &r->lr, err)) return err->code;
    if (cfg_get_double(root, "lr_gamma", 0, r->lr_gamma, 1e-12, 1.0, &r->lr_gamma, err))
        return err->code;
    if (cfg_get_double(root, "bn_eps", 0, r->bn_eps, 1e-12, 1.0, &r->bn_eps, err))
        return err->code;
    if (cfg_get_double(root, "bn_momentum", 0, r->bn_momentum, 0.0, 1.0, &r->bn_momentum, err))
        return err->code;
    if (cfg_get_double(root, "weight_clip", 0, r->weight_clip, 0.0, 1e6, &r->weight_clip, err))
        return err->code;

    if (cfg_get_string(root, "output", 0, NULL, &r->output, err)) return err->code;
    if (cfg_get_string(root, "data_dir", 0, NULL, &r->data_dir, err)) return err->code;
    if (read_objective(root, r, err)) return err->code;
    const cfg_node *flip = cfg_find(root, "flip");
    return flip ? read_flip(flip, r, err) : APX_OK;
}

/* ------------------------------------------------------------------------ */
/* The float network                                                        */

/* im2col blocks hold about this many floats (16 MiB): large enough for
 * efficient GEMMs, small enough to stay in the last-level cache. */
#define COL_BLOCK_FLOATS (1u << 22)

void train_net_free(train_net *net) {
    if (!net) return;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        float **fp[] = {&L->w,      &L->wb,     &L->gw,    &L->mw,     &L->vw,     &L->gamma,
                        &L->beta,   &L->ggamma, &L->gbeta, &L->mgamma, &L->vgamma, &L->mbeta,
                        &L->vbeta,  &L->mean,   &L->invstd, &L->a,     &L->xhat,   &L->y,
                        &L->act,    &L->grad,   &L->col,   &L->pre};
        for (size_t i = 0; i < sizeof fp / sizeof fp[0]; i++) free(*fp[i]);
        free(L->win);
        free(L->flip);
        free(L->run_mean);
        free(L->run_var);
    }
    free(net->input);
    free(net->labels);
    free(net->logits);
    free(net->dlogits);
    free(net->acc_a);
    free(net->acc_b);
    free(net);
}

static float *falloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* Output values per sample of layer L (HWC). */
static size_t layer_size(const train_layer *L) { return (size_t)L->out_h * L->out_w * L->out; }

train_net *train_net_new(const train_recipe *r, uint32_t in_rows, uint32_t in_cols,
                         uint32_t max_batch, apx_error *err) {
    if (train_check_layers(r, in_rows, in_cols, NULL, err)) return NULL;
    if (max_batch < 2) {
        apx_fail(err, APX_EINPUT, "batch must be at least 2 (batch norm), got %u", max_batch);
        return NULL;
    }
    train_net *net = calloc(1, sizeof *net);
    if (!net) goto oom;
    net->n_layers = r->n_widths - 1;
    net->max_batch = max_batch;
    net->n_classes = r->widths[r->n_widths - 1];
    net->in_rows = in_rows;
    net->in_cols = in_cols;
    net->in_size = in_rows * in_cols;
    net->bn_eps = r->bn_eps;
    net->bn_momentum = r->bn_momentum;
    net->weight_clip = r->weight_clip;
    net->loss = r->loss;
    net->mhl_margin = r->mhl_margin;
    net->reg_lambda = r->reg_lambda;
    net->reg_margin = r->reg_margin;
    net->flip_mask = r->flip.on && r->flip.gradient == TRAIN_FLIP_MASK;
    uint32_t h = in_rows, w = in_cols, c = 1, widest = 1;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        L->out = r->widths[l + 1];
        L->hidden = l + 1 < net->n_layers;
        L->conv = r->conv[l] != 0;
        if (L->conv) {
            L->in_c = c;
            L->in_h = h;
            L->in_w = w;
            L->in = 9 * c;
            L->pool = r->pool[l] ? r->pool[l] : 1;
            L->out_h = h / L->pool;
            L->out_w = w / L->pool;
            size_t rows_per_sample = (size_t)h * w * L->in;
            size_t chunk = COL_BLOCK_FLOATS / rows_per_sample;
            L->chunk = chunk < 1 ? 1 : chunk > max_batch ? max_batch : (uint32_t)chunk;
        } else {
            L->in = h * w * c;
            L->in_c = L->in;
            L->in_h = L->in_w = 1;
            L->pool = 1;
            L->out_h = L->out_w = 1;
        }
        h = L->out_h;
        w = L->out_w;
        c = L->out;
        if (L->out > widest) widest = L->out;
        size_t nw = (size_t)L->in * L->out, nb = (size_t)max_batch * layer_size(L);
        if (!(L->w = falloc(nw)) || !(L->wb = falloc(nw)) || !(L->gw = falloc(nw)) ||
            !(L->mw = falloc(nw)) || !(L->vw = falloc(nw)) || !(L->a = falloc(nb)) ||
            !(L->grad = falloc(nb)))
            goto oom;
        if (L->conv) {
            if (!(L->col = falloc((size_t)L->chunk * L->in_h * L->in_w * L->in))) goto oom;
            if (L->pool > 1 &&
                (!(L->pre = falloc((size_t)max_batch * L->in_h * L->in_w * L->out)) ||
                 !(L->win = calloc(nb, 1))))
                goto oom;
        }
        if (L->hidden) {
            if (!(L->gamma = falloc(L->out)) || !(L->beta = falloc(L->out)) ||
                !(L->ggamma = falloc(L->out)) || !(L->gbeta = falloc(L->out)) ||
                !(L->mgamma = falloc(L->out)) || !(L->vgamma = falloc(L->out)) ||
                !(L->mbeta = falloc(L->out)) || !(L->vbeta = falloc(L->out)) ||
                !(L->mean = falloc(L->out)) || !(L->invstd = falloc(L->out)) ||
                !(L->xhat = falloc(nb)) || !(L->y = falloc(nb)) || !(L->act = falloc(nb)) ||
                !(L->run_mean = calloc(L->out, sizeof(double))) ||
                !(L->run_var = calloc(L->out, sizeof(double))))
                goto oom;
        }
    }
    if (!(net->input = falloc((size_t)max_batch * net->in_size)) ||
        !(net->labels = calloc(max_batch, 1)) ||
        !(net->logits = falloc((size_t)max_batch * net->n_classes)) ||
        !(net->dlogits = falloc((size_t)max_batch * net->n_classes)) ||
        !(net->acc_a = calloc(widest, sizeof(double))) ||
        !(net->acc_b = calloc(widest, sizeof(double))))
        goto oom;
    train_net_init(net, r->seed);
    return net;
oom:
    train_net_free(net);
    apx_fail(err, APX_EWORK, "out of memory allocating the training network");
    return NULL;
}

static inline float binarize(float w) { return w > 0.0f ? 1.0f : -1.0f; }

void train_net_binarize(train_net *net) {
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        size_t nw = (size_t)L->in * L->out;
        for (size_t i = 0; i < nw; i++)
            L->wb[i] = net->float_weights ? L->w[i] : binarize(L->w[i]);
        L->n_flip = 0;
    }
}

void train_net_init(train_net *net, uint64_t seed) {
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        /* PyTorch's Linear and Conv2d default (kaiming_uniform with
         * a = sqrt(5)) gives this same bound 1/sqrt(fan_in). */
        double bound = 1.0 / sqrt((double)L->in);
        rng_stream s;
        rng_stream_at(&s, rng_key_make(seed, TRAIN_STREAM_INIT, l), 0, 0);
        size_t nw = (size_t)L->in * L->out;
        for (size_t i = 0; i < nw; i++) L->w[i] = (float)((2.0 * rng_unit(&s) - 1.0) * bound);
        memset(L->mw, 0, nw * sizeof(float));
        memset(L->vw, 0, nw * sizeof(float));
        if (L->hidden) {
            for (uint32_t j = 0; j < L->out; j++) {
                L->gamma[j] = 1.0f;
                L->beta[j] = 0.0f;
                L->mgamma[j] = L->vgamma[j] = L->mbeta[j] = L->vbeta[j] = 0.0f;
                L->run_mean[j] = 0.0;
                L->run_var[j] = 1.0;
            }
        }
    }
    net->scale = SCALE_INIT;
    net->mscale = net->vscale = 0.0f;
    net->adam_t = 0;
    train_net_binarize(net);
}

void train_net_load(train_net *net, const dataset *d, const uint32_t *idx, uint32_t batch) {
    uint32_t in = net->in_size;
    for (uint32_t i = 0; i < batch; i++) {
        const uint8_t *p = dataset_image(d, idx[i]);
        float *x = net->input + (size_t)i * in;
        for (uint32_t j = 0; j < in; j++) x[j] = (float)p[j] * (1.0f / 255.0f);
        net->labels[i] = d->labels[idx[i]];
    }
}

/* Batch norm over the rows of L->a (training: batch statistics; else
 * running statistics), then the activation. rows = samples x output
 * positions, so a conv layer normalises each channel over N, H, W
 * (BatchNorm2d). Statistics are summed in double: the first layer's
 * pre-activations reach hundreds with a small spread. */
static void bn_forward(train_net *net, train_layer *L, size_t rows, int training) {
    uint32_t n = L->out;
    if (training) {
        double *sum = net->acc_a, *sq = net->acc_b;
        memset(sum, 0, n * sizeof(double));
        memset(sq, 0, n * sizeof(double));
        for (size_t i = 0; i < rows; i++) {
            const float *a = L->a + i * n;
            for (uint32_t j = 0; j < n; j++) sum[j] += a[j];
        }
        for (uint32_t j = 0; j < n; j++) {
            sum[j] /= (double)rows;
            L->mean[j] = (float)sum[j];
        }
        for (size_t i = 0; i < rows; i++) {
            const float *a = L->a + i * n;
            for (uint32_t j = 0; j < n; j++) {
                double d = a[j] - sum[j];
                sq[j] += d * d;
            }
        }
        /* Normalise with the biased variance; the running variance gets the
         * unbiased one (PyTorch's convention). */
        double m = net->bn_momentum;
        for (uint32_t j = 0; j < n; j++) {
            double var = sq[j] / (double)rows;
            L->invstd[j] = (float)(1.0 / sqrt(var + net->bn_eps));
            L->run_mean[j] = (1.0 - m) * L->run_mean[j] + m * sum[j];
            L->run_var[j] = (1.0 - m) * L->run_var[j] + m * (sq[j] / (double)(rows - 1));
        }
    } else {
        for (uint32_t j = 0; j < n; j++) {
            L->mean[j] = (float)L->run_mean[j];
            L->invstd[j] = (float)(1.0 / sqrt(L->run_var[j] + net->bn_eps));
        }
    }
    for (size_t i = 0; i < rows; i++) {
        size_t o = i * n;
        const float *a = L->a + o;
        float *xh = L->xhat + o, *y = L->y + o, *act = L->act + o;
        for (uint32_t j = 0; j < n; j++) {
            xh[j] = (a[j] - L->mean[j]) * L->invstd[j];
            y[j] = L->gamma[j] * xh[j] + L->beta[j];
        }
        if (net->float_activations)
            for (uint32_t j = 0; j < n; j++) act[j] = fminf(1.0f, fmaxf(-1.0f, y[j]));
        else
            for (uint32_t j = 0; j < n; j++) act[j] = y[j] > 0.0f ? 1.0f : -1.0f;
    }
}

/* im2col for nb samples x (HWC, in_h x in_w x in_c) of a conv layer: row
 * (n, h, w) of col holds the 3x3 neighbourhood of pixel (h, w), column
 * (kh * 3 + kw) * in_c + c = x[n, h + kh - 1, w + kw - 1, c], or 0 where
 * that tap lies outside the image (zero padding). In HWC the three taps
 * kw = 0, 1, 2 of a kernel row are 3 * in_c consecutive inputs, so away from
 * the left and right border a kernel row is one contiguous copy. */
static void im2col(const train_layer *L, const float *x, uint32_t nb, float *col) {
    const size_t H = L->in_h, W = L->in_w, C = L->in_c, K = L->in;
    for (size_t n = 0; n < nb; n++) {
        const float *img = x + n * H * W * C;
        for (size_t h = 0; h < H; h++)
            for (size_t kh = 0; kh < 3; kh++) {
                float *row = col + (n * H + h) * W * K + kh * 3 * C;
                if (h + kh < 1 || h + kh > H) { /* kernel row above or below the image */
                    for (size_t w = 0; w < W; w++) memset(row + w * K, 0, 3 * C * sizeof(float));
                    continue;
                }
                const float *src = img + (h + kh - 1) * W * C;
                if (C == 1) { /* the first layer of a grey image: no call per tap */
                    for (size_t w = 0; w < W; w++) {
                        float *dst = row + w * K;
                        dst[0] = w > 0 ? src[w - 1] : 0.0f;
                        dst[1] = src[w];
                        dst[2] = w + 1 < W ? src[w + 1] : 0.0f;
                    }
                    continue;
                }
                for (size_t w = 0; w < W; w++) {
                    float *dst = row + w * K;
                    /* taps kw in [first, last) lie inside the image */
                    size_t first = w == 0 ? 1 : 0, last = w + 1 == W ? 2 : 3;
                    if (first) memset(dst, 0, C * sizeof(float));
                    memcpy(dst + first * C, src + (w + first - 1) * C,
                           (last - first) * C * sizeof(float));
                    if (last < 3) memset(dst + 2 * C, 0, C * sizeof(float));
                }
            }
    }
}

/* The adjoint of im2col: adds every column entry of nb samples back onto
 * the input position it was copied from (taps outside the image dropped). */
static void col2im_add(const train_layer *L, const float *col, uint32_t nb, float *dx) {
    const size_t H = L->in_h, W = L->in_w, C = L->in_c, K = L->in;
    for (size_t n = 0; n < nb; n++) {
        float *img = dx + n * H * W * C;
        for (size_t h = 0; h < H; h++)
            for (size_t kh = 0; kh < 3; kh++) {
                if (h + kh < 1 || h + kh > H) continue;
                const float *row = col + (n * H + h) * W * K + kh * 3 * C;
                float *dst = img + (h + kh - 1) * W * C;
                for (size_t w = 0; w < W; w++) {
                    const float *src = row + w * K;
                    size_t first = w == 0 ? 1 : 0, last = w + 1 == W ? 2 : 3;
                    float *d = dst + (w + first - 1) * C;
                    const float *sv = src + first * C;
                    for (size_t i = 0; i < (last - first) * C; i++) d[i] += sv[i];
                }
            }
    }
}

/* 2x2 max-pool, stride 2, of pre (B x in_h x in_w x out) into a (B x out_h x
 * out_w x out); an odd last row or column is dropped. win records which
 * element of each window won: the first maximum in the order 0 = (0,0),
 * 1 = (0,1), 2 = (1,0), 3 = (1,1). */
static void maxpool_forward(train_layer *L, uint32_t B) {
    const size_t C = L->out, W = L->in_w, H = L->in_h;
    for (size_t n = 0; n < B; n++)
        for (size_t oh = 0; oh < L->out_h; oh++)
            for (size_t ow = 0; ow < L->out_w; ow++) {
                const float *p = L->pre + ((n * H + 2 * oh) * W + 2 * ow) * C;
                const float *q = p + W * C;
                size_t o = ((n * L->out_h + oh) * L->out_w + ow) * C;
                float *out = L->a + o;
                uint8_t *win = L->win + o;
                for (size_t c = 0; c < C; c++) {
                    float m = p[c];
                    uint8_t k = 0;
                    if (p[C + c] > m) m = p[C + c], k = 1;
                    if (q[c] > m) m = q[c], k = 2;
                    if (q[C + c] > m) m = q[C + c], k = 3;
                    out[c] = m;
                    win[c] = k;
                }
            }
}

/* The max-pool's backward, in place: pre (the conv output) becomes dL/d(pre),
 * the gradient of each pooled output at its window's winner and 0 elsewhere,
 * dropped odd rows and columns included. */
static void maxpool_backward(train_layer *L, uint32_t B) {
    const size_t C = L->out, W = L->in_w, H = L->in_h;
    for (size_t n = 0; n < B; n++) {
        for (size_t oh = 0; oh < L->out_h; oh++) {
            for (size_t ow = 0; ow < L->out_w; ow++) {
                float *p = L->pre + ((n * H + 2 * oh) * W + 2 * ow) * C;
                float *q = p + W * C;
                size_t o = ((n * L->out_h + oh) * L->out_w + ow) * C;
                const float *g = L->grad + o;
                const uint8_t *win = L->win + o;
                for (size_t c = 0; c < C; c++) {
                    p[c] = win[c] == 0 ? g[c] : 0.0f;
                    p[C + c] = win[c] == 1 ? g[c] : 0.0f;
                    q[c] = win[c] == 2 ? g[c] : 0.0f;
                    q[C + c] = win[c] == 3 ? g[c] : 0.0f;
                }
            }
            if (W % 2) {
                memset(L->pre + ((n * H + 2 * oh) * W + W - 1) * C, 0, C * sizeof(float));
                memset(L->pre + ((n * H + 2 * oh + 1) * W + W - 1) * C, 0, C * sizeof(float));
            }
        }
        if (H % 2) memset(L->pre + ((n * H + H - 1) * W) * C, 0, W * C * sizeof(float));
    }
}

/* Pre-activations of layer L for B samples with inputs x (B x in_size of L,
 * HWC): dense X * Wb^T; conv im2col + GEMM per block of samples, then the
 * max-pool. */
static void layer_preact(train_layer *L, const float *x, uint32_t B) {
    if (!L->conv) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)L->out, (int)L->in,
                    1.0f, x, (int)L->in, L->wb, (int)L->in, 0.0f, L->a, (int)L->out);
        return;
    }
    const size_t px = (size_t)L->in_h * L->in_w, in_size = px * L->in_c;
    float *out = L->pool > 1 ? L->pre : L->a;
    for (uint32_t s0 = 0; s0 < B; s0 += L->chunk) {
        uint32_t nb = B - s0 < L->chunk ? B - s0 : L->chunk;
        im2col(L, x + s0 * in_size, nb, L->col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(nb * px), (int)L->out,
                    (int)L->in, 1.0f, L->col, (int)L->in, L->wb, (int)L->in, 0.0f,
                    out + s0 * px * L->out, (int)L->out);
    }
    if (L->pool > 1) maxpool_forward(L, B);
}

void train_net_forward(train_net *net, uint32_t B, int training) {
    const float *x = net->input;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        layer_preact(L, x, B);
        if (L->hidden) {
            bn_forward(net, L, (size_t)B * L->out_h * L->out_w, training);
            x = L->act;
        } else {
            size_t n = (size_t)B * L->out;
            for (size_t i = 0; i < n; i++) net->logits[i] = net->scale * L->a[i];
        }
    }
}

/* Mean softmax cross-entropy of sample i's logits z against label y; writes
 * its gradient / B into dz. */
static double ce_sample(const float *z, float *dz, uint32_t C, uint32_t y, uint32_t B,
                        uint32_t best) {
    double zmax = z[best], sum = 0.0;
    for (uint32_t c = 0; c < C; c++) sum += exp((double)z[c] - zmax);
    double lse = zmax + log(sum);
    for (uint32_t c = 0; c < C; c++) {
        double p = exp((double)z[c] - lse);
        dz[c] = (float)((p - (c == y ? 1.0 : 0.0)) / B);
    }
    return lse - z[y];
}

/* The modified hinge loss of one sample (facts bnn.md 4.6, after
 * binary_hingeloss in myay/SPICE-Torch Traintest_Utils.py):
 * (1/C) sum_c max(0, b - t_c z_c) / b with t_c = +1 for the label, -1 else.
 * The gradient -t_c / (C b B) flows where b - t_c z_c >= 0 (clamp(min=0)). */
static double mhl_sample(const float *z, float *dz, uint32_t C, uint32_t y, uint32_t B,
                         double b) {
    double total = 0.0;
    for (uint32_t c = 0; c < C; c++) {
        double t = c == y ? 1.0 : -1.0, slack = b - t * z[c];
        total += slack > 0.0 ? slack : 0.0;
        dz[c] = slack >= 0.0 ? (float)(-t / (C * b * B)) : 0.0f;
    }
    return total / (C * b);
}

double train_net_loss(train_net *net, uint32_t B, uint32_t *correct) {
    uint32_t C = net->n_classes;
    double total = 0.0;
    for (uint32_t i = 0; i < B; i++) {
        const float *z = net->logits + (size_t)i * C;
        float *dz = net->dlogits + (size_t)i * C;
        uint32_t best = 0, y = net->labels[i];
        for (uint32_t c = 1; c < C; c++)
            if (z[c] > z[best]) best = c;
        total += net->loss == TRAIN_LOSS_MHL ? mhl_sample(z, dz, C, y, B, net->mhl_margin)
                                             : ce_sample(z, dz, C, y, B, best);
        if (correct && best == y) (*correct)++;
    }
    return total / B + train_net_margin_reg(net, B);
}

/* Hidden neuron outputs per sample (the N of the margin regularizer). */
static double hidden_outputs(const train_net *net) {
    double n = 0;
    for (uint32_t l = 0; l < net->n_layers; l++)
        if (net->layer[l].hidden) n += (double)layer_size(&net->layer[l]);
    return n;
}

/* a - tau of row i, neuron j of hidden layer L: sigma * (xhat + beta / gamma)
 * with the statistics of the last forward pass (sigma = 1 / invstd). */
static inline double margin_gap(const train_layer *L, size_t i, uint32_t j) {
    return (L->xhat[i * L->out + j] + (double)L->beta[j] / L->gamma[j]) / L->invstd[j];
}

double train_net_margin_reg(const train_net *net, uint32_t B) {
    if (!(net->reg_lambda > 0.0)) return 0.0;
    double sum = 0.0, bh = net->reg_margin;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const train_layer *L = &net->layer[l];
        if (!L->hidden) continue;
        size_t rows = (size_t)B * L->out_h * L->out_w;
        for (uint32_t j = 0; j < L->out; j++) {
            if (L->gamma[j] == 0.0f) continue;
            for (size_t i = 0; i < rows; i++) {
                double h = bh - fabs(margin_gap(L, i, j)) / L->in;
                if (h > 0.0) sum += h;
            }
        }
    }
    return net->reg_lambda * sum / (B * hidden_outputs(net));
}

/* Adds the margin regularizer's gradient to L->grad = dL/da and to ggamma,
 * gbeta. With d_i = a_i - tau = (a_i - mu) + (beta / gamma) sigma over the
 * R rows of a neuron (mu, sigma the batch statistics) and g_i = dR/dd_i =
 * -c sign(d_i) / n where the hinge is active (c = lambda / (B N)), G = sum g_i:
 *   dR/da_k = g_k - G / R + (beta / gamma) G xhat_k / R   (d sigma / da_k = xhat_k / R)
 *   dR/dbeta = G sigma / gamma,   dR/dgamma = -G beta sigma / gamma^2. */
static void margin_reg_backward(const train_net *net, train_layer *L, uint32_t B) {
    size_t rows = (size_t)B * L->out_h * L->out_w;
    double c = net->reg_lambda / (B * hidden_outputs(net)) / L->in, bh = net->reg_margin;
    for (uint32_t j = 0; j < L->out; j++) {
        if (L->gamma[j] == 0.0f) continue;
        double G = 0.0;
        for (size_t i = 0; i < rows; i++) {
            double d = margin_gap(L, i, j);
            if (bh - fabs(d) / L->in > 0.0 && d != 0.0) {
                double g = d > 0.0 ? -c : c;
                G += g;
                L->grad[i * L->out + j] += (float)g;
            }
        }
        if (G == 0.0) continue;
        double ratio = (double)L->beta[j] / L->gamma[j], sigma = 1.0 / L->invstd[j];
        for (size_t i = 0; i < rows; i++)
            L->grad[i * L->out + j] += (float)(G / rows * (ratio * L->xhat[i * L->out + j] - 1.0));
        L->gbeta[j] += (float)(G * sigma / L->gamma[j]);
        L->ggamma[j] -= (float)(G * ratio * sigma / L->gamma[j]);
    }
}

/* Mask gradient of flip training: a flipped weight entered the forward pass
 * as -w, so its gradient changes sign. */
static void mask_flipped_gradients(train_layer *L) {
    for (size_t i = 0; i < L->n_flip; i++) L->gw[L->flip[i]] = -L->gw[L->flip[i]];
}

/* Turns L->grad from dL/d(act) into dL/d(a): the Hardtanh/sign STE mask, the
 * BN affine gradients, and the batch-norm backward with batch statistics over
 * the R = rows of the forward pass:
 *   da = invstd / R * (R * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)). */
static void bn_backward(train_net *net, train_layer *L, size_t rows) {
    uint32_t n = L->out;
    double *sg = net->acc_a, *sgx = net->acc_b;  /* sum dy, sum dy * xhat */
    memset(sg, 0, n * sizeof(double));
    memset(sgx, 0, n * sizeof(double));
    for (size_t i = 0; i < rows; i++) {
        size_t o = i * n;
        float *g = L->grad + o;
        const float *y = L->y + o, *xh = L->xhat + o;
        for (uint32_t j = 0; j < n; j++) {
            float dy = fabsf(y[j]) <= 1.0f ? g[j] : 0.0f;
            g[j] = dy;
            sg[j] += dy;
            sgx[j] += (double)dy * xh[j];
        }
    }
    for (uint32_t j = 0; j < n; j++) {
        L->gbeta[j] = (float)sg[j];
        L->ggamma[j] = (float)sgx[j];
        /* Reuse the sums as the per-neuron constants of the da formula. */
        sg[j] = L->gamma[j] * sg[j] / (double)rows;
        sgx[j] = L->gamma[j] * sgx[j] / (double)rows;
    }
    for (size_t i = 0; i < rows; i++) {
        size_t o = i * n;
        float *g = L->grad + o;
        const float *xh = L->xhat + o;
        for (uint32_t j = 0; j < n; j++)
            g[j] = L->invstd[j] *
                   (float)(L->gamma[j] * g[j] - sg[j] - xh[j] * sgx[j]);
    }
}

/* Conv backward from L->grad = dL/d(a): the max-pool sends each gradient to
 * its window's maximum (pre becomes the gradient); then per block of samples
 * dW += dConv^T col (im2col recomputed) and, if dx, dcol = dConv Wb added
 * back onto dx by col2im. */
static void conv_backward(train_layer *L, const float *x, float *dx, uint32_t B) {
    const size_t px = (size_t)L->in_h * L->in_w, in_size = px * L->in_c;
    const float *dconv = L->grad;
    if (L->pool > 1) {
        maxpool_backward(L, B);
        dconv = L->pre;
    }
    if (dx) memset(dx, 0, (size_t)B * in_size * sizeof(float));
    for (uint32_t s0 = 0; s0 < B; s0 += L->chunk) {
        uint32_t nb = B - s0 < L->chunk ? B - s0 : L->chunk;
        const float *dc = dconv + s0 * px * L->out;
        im2col(L, x + s0 * in_size, nb, L->col);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L->out, (int)L->in,
                    (int)(nb * px), 1.0f, dc, (int)L->out, L->col, (int)L->in,
                    s0 == 0 ? 0.0f : 1.0f, L->gw, (int)L->in);
        if (dx) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(nb * px), (int)L->in,
                        (int)L->out, 1.0f, dc, (int)L->out, L->wb, (int)L->in, 0.0f, L->col,
                        (int)L->in);
            col2im_add(L, L->col, nb, dx + s0 * in_size);
        }
    }
}

void train_net_backward(train_net *net, uint32_t B) {
    train_layer *out = &net->layer[net->n_layers - 1];
    size_t n = (size_t)B * out->out;
    double gs = 0.0;
    for (size_t i = 0; i < n; i++) {
        gs += (double)net->dlogits[i] * out->a[i];
        out->grad[i] = net->dlogits[i] * net->scale;
    }
    net->gscale = (float)gs;
    for (uint32_t l = net->n_layers; l-- > 0;) {
        train_layer *L = &net->layer[l];
        if (L->hidden) {
            bn_backward(net, L, (size_t)B * L->out_h * L->out_w);
            if (net->reg_lambda > 0.0) margin_reg_backward(net, L, B);
        }
        const float *x = l == 0 ? net->input : net->layer[l - 1].act;
        float *dx = l > 0 ? net->layer[l - 1].grad : NULL;
        if (L->conv) {
            conv_backward(L, x, dx, B);
        } else {
            /* dW = dA^T X (identity STE for the weight binarisation). */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L->out, (int)L->in, (int)B,
                        1.0f, L->grad, (int)L->out, x, (int)L->in, 0.0f, L->gw, (int)L->in);
            if (dx) /* dX = dA Wb: the gradient of the previous layer's output */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)L->in,
                            (int)L->out, 1.0f, L->grad, (int)L->out, L->wb, (int)L->in, 0.0f,
                            dx, (int)L->in);
        }
        if (net->flip_mask) mask_flipped_gradients(L);
    }
}

typedef struct adam_step {
    float lr_corr;        /* lr / (1 - beta1^t) */
    float inv_sqrt_bc2;   /* 1 / sqrt(1 - beta2^t) */
} adam_step;

static void adam_update(float *p, const float *g, float *m, float *v, size_t n, adam_step s) {
    const float b1 = (float)ADAM_BETA1, b2 = (float)ADAM_BETA2, eps = (float)ADAM_EPS;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= s.lr_corr * mi / (sqrtf(vi) * s.inv_sqrt_bc2 + eps);
    }
}

/* Adam on one weight matrix fused with the clip and the refresh of wb, in
 * one pass over the five arrays (the step is bound by memory traffic). The
 * sign is computed on the bits, without a branch: latent signs are random,
 * and the branch GCC makes of `w > 0 ? 1 : -1` here mispredicts half the
 * time. */
static void adam_weights(const train_net *net, train_layer *L, adam_step s) {
    const float b1 = (float)ADAM_BETA1, b2 = (float)ADAM_BETA2, eps = (float)ADAM_EPS;
    const float clip = net->weight_clip > 0 ? (float)net->weight_clip : INFINITY;
    float *restrict w = L->w, *restrict wb = L->wb, *restrict m = L->mw, *restrict v = L->vw;
    const float *restrict g = L->gw;
    size_t n = (size_t)L->in * L->out;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float wi = w[i] - s.lr_corr * mi / (sqrtf(vi) * s.inv_sqrt_bc2 + eps);
        wi = wi > clip ? clip : wi;
        wi = wi < -clip ? -clip : wi;
        w[i] = wi;
        /* +1.0f or -1.0f (bits 0x3f800000 | sign): -1 iff wi <= 0, +0 included */
        uint32_t u;
        memcpy(&u, &wi, sizeof u);
        uint32_t out = 0x3f800000u | ((u >> 31 | (uint32_t)(u == 0)) << 31);
        memcpy(&wb[i], &out, sizeof out);
    }
    if (net->float_weights) memcpy(wb, w, n * sizeof(float));
}

void train_net_adam(train_net *net, double lr) {
    net->adam_t++;
    double t = (double)net->adam_t;
    adam_step s = {(float)(lr / (1.0 - pow(ADAM_BETA1, t))),
                   (float)(1.0 / sqrt(1.0 - pow(ADAM_BETA2, t)))};
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        adam_weights(net, L, s);
        L->n_flip = 0;  /* wb is refreshed from w: the batch's flips are over */
        if (L->hidden) {
            adam_update(L->gamma, L->ggamma, L->mgamma, L->vgamma, L->out, s);
            adam_update(L->beta, L->gbeta, L->mbeta, L->vbeta, L->out, s);
        }
    }
    adam_update(&net->scale, &net->gscale, &net->mscale, &net->vscale, 1, s);
}

/* ------------------------------------------------------------------------ */
/* Flips                                                                     */

static int flips_reserve(train_layer *L, size_t n, apx_error *err) {
    if (n <= L->cap_flip) return APX_OK;
    size_t cap = L->cap_flip ? L->cap_flip : 1024;
    while (cap < n) cap *= 2;
    uint64_t *v = realloc(L->flip, cap * sizeof *v);
    if (!v) return apx_fail(err, APX_EWORK, "out of memory drawing weight flips");
    L->flip = v;
    L->cap_flip = cap;
    return APX_OK;
}

static inline int flips_push(train_layer *L, uint64_t pos, apx_error *err) {
    if (L->n_flip == L->cap_flip && flips_reserve(L, L->n_flip + 1, err)) return err->code;
    L->flip[L->n_flip++] = pos;
    return APX_OK;
}

int train_layer_draw_flips(train_layer *L, rng_key key, uint32_t domain, uint64_t block0,
                           double p, apx_error *err) {
    uint64_t n = (uint64_t)L->in * L->out;
    L->n_flip = 0;
    if (!(p > 0.0) || n == 0) return APX_OK;
    /* Room for the mean plus six standard deviations: one allocation. */
    double want = (double)n * p + 6.0 * sqrt((double)n * p) + 64.0;
    if (flips_reserve(L, want < (double)n ? (size_t)want : (size_t)n, err)) return err->code;
    if (p >= 1.0) {
        for (uint64_t i = 0; i < n; i++) L->flip[i] = i;
        L->n_flip = n;
        return APX_OK;
    }
    /* Geometric skipping: the gap to the next flip is floor(ln u / ln(1 - p)),
     * P(gap >= k) = (1 - p)^k. */
    rng_stream s;
    rng_stream_at(&s, key, domain, block0);
    const double inv_log_keep = 1.0 / log1p(-p);
    uint64_t pos = 0;
    while (pos < n) {
        double u = ((double)rng_u32(&s) + 0.5) * 0x1p-32;
        double gap = floor(log(u) * inv_log_keep);
        if (gap >= (double)(n - pos)) break;
        pos += (uint64_t)gap;
        if (flips_push(L, pos, err)) return err->code;
        pos++;
    }
    return APX_OK;
}

int train_layer_flips_from_faults(train_net *net, uint32_t l, const fmap *faults,
                                  apx_error *err) {
    train_layer *L = &net->layer[l];
    uint64_t n = (uint64_t)L->in * L->out;
    L->n_flip = 0;
    if (faults->region_bits != n)
        return apx_fail(err, APX_EWORK, "layer %u: a fault map of %llu bits for %llu weights",
                        l + 1, (unsigned long long)faults->region_bits, (unsigned long long)n);
    if (flips_reserve(L, faults->n, err)) return err->code;
    int negate = !L->hidden && net->scale < 0.0f;
    for (size_t i = 0; i < faults->n; i++) {
        uint64_t b = faults->bit[i];
        int stored = (L->wb[b] > 0.0f) ^ negate, flips;
        switch (faults->kind[i]) {
        case FAULT_FLIP: flips = 1; break;
        case FAULT_STUCK0: case FAULT_DD1: flips = stored == 1; break;
        case FAULT_STUCK1: case FAULT_DD0: flips = stored == 0; break;
        default: flips = 0; break;
        }
        if (flips) L->flip[L->n_flip++] = b;
    }
    return APX_OK;
}

static void toggle_flips(train_layer *L) {
    for (size_t i = 0; i < L->n_flip; i++) L->wb[L->flip[i]] = -L->wb[L->flip[i]];
}

void train_net_flip_weights(train_net *net) {
    for (uint32_t l = 0; l < net->n_layers; l++) toggle_flips(&net->layer[l]);
}

int train_flipper_init(train_flipper *f, const train_flip *cfg, uint64_t seed,
                       const train_net *net, const bnn_model *m, apx_error *err) {
    memset(f, 0, sizeof *f);
    f->cfg = cfg;
    f->seed = seed;
    rng_key k = rng_key_make(seed, TRAIN_STREAM_DEVICE, 0);
    f->device_seed = (uint64_t)k.k[1] << 32 | k.k[0];
    f->n_layers = net->n_layers;
    f->cached_step = -1;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        fmap_init(&f->map[l], 0);
        f->region[l] = (device_region){l, L->out, L->in, cfg->base_addr + L->offset * 8,
                                       (uint64_t)L->words * 8, &cfg->geo};
    }
    if (!cfg->device) return APX_OK;
    uint64_t bytes = (uint64_t)m->image_words * 8, memory = geometry_bytes(&cfg->geo);
    if (cfg->base_addr > memory || bytes > memory - cfg->base_addr)
        return apx_fail(err, APX_EINPUT,
                        "flip: the model's %llu bytes of weights at memory.base %llu do not fit "
                        "in a memory of %llu bytes",
                        (unsigned long long)bytes, (unsigned long long)cfg->base_addr,
                        (unsigned long long)memory);
    if (device_create(cfg->device, &f->dev, err)) return err->code;
    if (f->dev->ops->prepare &&
        f->dev->ops->prepare(f->dev, f->region, net->n_layers, err))
        return apx_wrap(err, "preparing the %s device: ", f->dev->ops->kind);
    return APX_OK;
}

void train_flipper_free(train_flipper *f) {
    device_destroy(f->dev);
    for (uint32_t l = 0; l < f->n_layers; l++) fmap_free(&f->map[l]);
    nested_list_free(&f->hits);
    memset(f, 0, sizeof *f);
}

/* The fault map of layer l under schedule entry st for `chip`: the device's,
 * or (plain persistent) the nested positions with u < p, as the uniform
 * device draws them. */
static int draw_map(train_flipper *f, uint32_t l, const train_flip_step *st, uint32_t chip,
                    apx_error *err) {
    fmap *map = &f->map[l];
    if (f->dev) {
        if (f->dev->ops->faults(f->dev, st->op, f->device_seed, chip, &f->region[l], map, err))
            return apx_wrap(err, "flip faults of layer %u: ", l + 1);
        return APX_OK;
    }
    uint64_t n = device_region_bits(&f->region[l]);
    fmap_reset(map, n);
    if (nested_draw(rng_key_make(f->device_seed, chip, l), n, st->p, &f->hits))
        return apx_fail(err, APX_EWORK, "out of memory drawing weight flips");
    for (size_t i = 0; i < f->hits.n; i++)
        if (fmap_push(map, f->hits.v[i].pos, FAULT_FLIP, err)) return err->code;
    return APX_OK;
}

int train_flipper_draw(train_flipper *f, train_net *net, uint32_t k, uint64_t batch,
                       uint64_t *flips, apx_error *err) {
    const train_flip_step *st = &f->cfg->step[k];
    *flips = 0;
    if (!f->dev && !f->cfg->persistent) {
        rng_key key = rng_key_make(f->seed, TRAIN_STREAM_FLIP, 0);
        for (uint32_t l = 0; l < net->n_layers; l++) {
            if (train_layer_draw_flips(&net->layer[l], key, l, batch << 32, st->p, err))
                return err->code;
            *flips += net->layer[l].n_flip;
        }
        return APX_OK;
    }
    if (!f->cfg->persistent || f->cached_step != (int64_t)k) {
        f->cached_step = -1;
        for (uint32_t l = 0; l < net->n_layers; l++)
            if (draw_map(f, l, st, f->cfg->persistent ? 0 : (uint32_t)batch, err))
                return err->code;
        if (f->cfg->persistent) f->cached_step = k;
    }
    for (uint32_t l = 0; l < net->n_layers; l++) {
        if (train_layer_flips_from_faults(net, l, &f->map[l], err)) return err->code;
        *flips += net->layer[l].n_flip;
    }
    return APX_OK;
}

/* ------------------------------------------------------------------------ */
/* Batch-norm re-estimation                                                  */

#define RECAL_BATCH 256u

/* Pre-activations of layer L in the re-estimation: with ber > 0, under the
 * flips of (key, layer l, batch), undone afterwards. */
static int recal_preact(train_layer *L, uint32_t l, const float *x, uint32_t nb, double ber,
                        rng_key key, uint64_t batch, apx_error *err) {
    if (ber > 0.0 && train_layer_draw_flips(L, key, l, batch << 32, ber, err)) return err->code;
    toggle_flips(L);
    layer_preact(L, x, nb);
    toggle_flips(L);
    L->n_flip = 0;
    return APX_OK;
}

int train_net_recalibrate_bn_ber(train_net *net, const dataset *d, uint32_t n, uint32_t count,
                                 double ber, rng_key key, apx_error *err) {
    if (n == 0 || count == 0) return APX_OK;
    if (count > n) count = n;
    uint32_t idx[RECAL_BATCH];
    uint32_t bs = net->max_batch < RECAL_BATCH ? net->max_batch : RECAL_BATCH;
    for (uint32_t l = 0; l < net->n_layers; l++) net->layer[l].n_flip = 0;
    for (uint32_t h = 0; h < net->n_layers; h++) {
        train_layer *L = &net->layer[h];
        if (!L->hidden) continue;
        uint32_t C = L->out;
        size_t pos = (size_t)L->out_h * L->out_w, total = 0;
        /* Sums of a - shift, shift = the old running mean, for a variance
         * without cancellation (first-layer a are large with a small spread). */
        double *sum = net->acc_a, *sq = net->acc_b;
        memset(sum, 0, C * sizeof(double));
        memset(sq, 0, C * sizeof(double));
        for (uint32_t k0 = 0; k0 < count; k0 += bs) {
            uint32_t nb = count - k0 < bs ? count - k0 : bs;
            uint64_t batch = k0 / bs;
            for (uint32_t i = 0; i < nb; i++)
                idx[i] = (uint32_t)((uint64_t)(k0 + i) * n / count);
            train_net_load(net, d, idx, nb);
            const float *x = net->input;
            for (uint32_t l = 0; l < h; l++) {
                train_layer *P = &net->layer[l];
                if (recal_preact(P, l, x, nb, ber, key, batch, err)) return err->code;
                bn_forward(net, P, (size_t)nb * P->out_h * P->out_w, 0);
                x = P->act;
            }
            if (recal_preact(L, h, x, nb, ber, key, batch, err)) return err->code;
            size_t rows = nb * pos;
            for (size_t r = 0; r < rows; r++) {
                const float *a = L->a + r * C;
                for (uint32_t j = 0; j < C; j++) {
                    double v = a[j] - L->run_mean[j];
                    sum[j] += v;
                    sq[j] += v * v;
                }
            }
            total += rows;
        }
        if (total < 2) continue;
        for (uint32_t j = 0; j < C; j++) {
            double mean = sum[j] / (double)total;
            double var = (sq[j] - sum[j] * mean) / (double)(total - 1);
            L->run_mean[j] += mean;
            L->run_var[j] = var > 0.0 ? var : 0.0;
        }
    }
    return APX_OK;
}

void train_net_recalibrate_bn(train_net *net, const dataset *d, uint32_t n, uint32_t count) {
    apx_error err;
    rng_key none = {{0, 0}};
    /* Without flips nothing is drawn or allocated, so this cannot fail. */
    (void)train_net_recalibrate_bn_ber(net, d, n, count, 0.0, none, &err);
}

int train_net_model(const train_net *net, const char *name, bnn_model *m, apx_error *err) {
    int any_conv = 0;
    uint32_t widths[TRAIN_MAX_LAYERS + 1];
    bnn_layer_spec spec[TRAIN_MAX_LAYERS];
    widths[0] = net->in_size;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const train_layer *L = &net->layer[l];
        any_conv |= L->conv;
        widths[l + 1] = L->out;
        spec[l].out = L->out;
        spec[l].pool = L->pool;
        if (!L->hidden)
            spec[l].kind = BNN_DENSE_OUT;
        else if (L->conv)
            spec[l].kind = l == 0 ? BNN_CONV_U8 : BNN_CONV_BIN;
        else
            spec[l].kind = l == 0 ? BNN_DENSE_U8 : BNN_DENSE_BIN;
    }
    int rc = any_conv ? bnn_create_layers(m, name, net->in_rows, net->in_cols, 1, net->n_layers,
                                          spec, err)
                      : bnn_create(m, name, net->in_rows, net->in_cols, net->n_layers, widths,
                                   err);
    if (rc) return rc;
    for (uint32_t l = 0; l < net->n_layers; l++)
        if (m->layers[l].in != net->layer[l].in || m->layers[l].out != net->layer[l].out) {
            rc = apx_fail(err, APX_EWORK,
                          "model '%s': layer %u is %u -> %u in the packed model but %u -> %u "
                          "in training",
                          name, l + 1, m->layers[l].in, m->layers[l].out, net->layer[l].in,
                          net->layer[l].out);
            bnn_free(m);
            return rc;
        }
    return APX_OK;
}

void train_net_export(const train_net *net, bnn_model *m) {
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const train_layer *L = &net->layer[l];
        bnn_layer *ML = &m->layers[l];
        int negate = !L->hidden && net->scale < 0.0f;
        for (uint32_t r = 0; r < L->out; r++) {
            const float *w = L->w + (size_t)r * L->in;
            for (uint32_t c = 0; c < L->in; c++) bnn_weight_set(m, l, r, c, (w[c] > 0.0f) ^ negate);
        }
        if (L->hidden) {
            /* Layer 0 is trained on p / 255 but the packed U8 layer sums w * p. */
            double in_scale = l == 0 ? 255.0 : 1.0;
            for (uint32_t r = 0; r < L->out; r++)
                bnn_fold_bn(L->gamma[r], L->beta[r], L->run_mean[r], L->run_var[r], net->bn_eps,
                            in_scale, in_scale * L->in, &ML->threshold[r], &ML->direction[r]);
        } else {
            float s = fabsf(net->scale);
            ML->scale = s > 0.0f ? s : FLT_MIN;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The training loop                                                         */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The flip schedule of a recipe built in code (YAML recipes are checked as
 * they are read; device points are checked by the device when read). */
static int check_flip(const train_recipe *r, apx_error *err) {
    const train_flip *f = &r->flip;
    if (f->n_steps < 1 || f->n_steps > TRAIN_MAX_CURRICULUM || f->step[0].epoch != 0 ||
        (f->gradient != TRAIN_FLIP_MASK && f->gradient != TRAIN_FLIP_STE))
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': flip needs 1 to %u schedule entries, the first at epoch 0, "
                        "and gradient mask or ste",
                        r->name, TRAIN_MAX_CURRICULUM);
    for (uint32_t k = 0; k < f->n_steps; k++) {
        if (k > 0 && f->step[k].epoch <= f->step[k - 1].epoch)
            return apx_fail(err, APX_EINPUT, "recipe '%s': flip schedule epochs must increase",
                            r->name);
        if (!f->device && !(f->step[k].p >= 0.0 && f->step[k].p <= 1.0))
            return apx_fail(err, APX_EINPUT, "recipe '%s': flip rate %g is outside [0, 1]",
                            r->name, f->step[k].p);
    }
    return APX_OK;
}

static int check_recipe(const train_recipe *r, const dataset *train, const dataset *test,
                        apx_error *err) {
    if (train_check_layers(r, train->rows, train->cols, NULL, err)) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return apx_fail(err, APX_EINPUT, "recipe '%s' on the training data: %s", r->name, msg);
    }
    uint32_t classes = r->widths[r->n_widths - 1];
    if (classes != train->n_classes)
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': last width %u does not match the %u classes of the data",
                        r->name, classes, train->n_classes);
    if (test && (test->rows != train->rows || test->cols != train->cols ||
                 test->n_classes != train->n_classes))
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': test set (%ux%u, %u classes) differs from the training "
                        "set (%ux%u, %u classes)",
                        r->name, test->rows, test->cols, test->n_classes, train->rows,
                        train->cols, train->n_classes);
    if (r->epochs < 1 || r->batch < 2 || r->lr_step < 1 || !(r->lr > 0.0) ||
        !(r->lr_gamma > 0.0) || !(r->bn_eps > 0.0) || !(r->bn_momentum >= 0.0) ||
        !(r->bn_momentum <= 1.0) || !(r->weight_clip >= 0.0))
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': need epochs >= 1, batch >= 2, lr_step >= 1, lr, lr_gamma "
                        "and bn_eps > 0, bn_momentum in [0, 1], weight_clip >= 0",
                        r->name);
    uint32_t n = r->train_limit && r->train_limit < train->n ? r->train_limit : train->n;
    if (n < 2)
        return apx_fail(err, APX_EINPUT, "recipe '%s': needs at least 2 training samples, has %u",
                        r->name, n);
    if ((r->loss != TRAIN_LOSS_CE && r->loss != TRAIN_LOSS_MHL) || !(r->mhl_margin > 0.0) ||
        !(r->reg_lambda >= 0.0) || (r->reg_lambda > 0.0 && !(r->reg_margin > 0.0)) ||
        !(r->bn_reestimate_ber >= 0.0 && r->bn_reestimate_ber <= 1.0))
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': need loss ce or mhl, mhl_margin > 0, margin_reg lambda >= 0 "
                        "with margin > 0, bn_reestimate_ber in [0, 1]",
                        r->name);
    return r->flip.on ? check_flip(r, err) : APX_OK;
}

/* One epoch's training pass over order[0..n) in batches: flips (if any),
 * forward, loss, backward, Adam. *batch_no counts batches over the run (the
 * flip draws' index). */
typedef struct epoch_pass {
    double loss_sum;
    uint32_t correct, seen;
    uint64_t flipped, exposed;  /* flipped weights, weights, summed over batches */
} epoch_pass;

static int train_epoch(const train_recipe *r, train_net *net, train_flipper *flipper,
                       const dataset *train, const uint32_t *order, uint32_t n, uint32_t batch,
                       uint32_t epoch, double lr, uint64_t *batch_no, volatile int *stop,
                       epoch_pass *ep, apx_error *err) {
    uint32_t k = r->flip.on ? train_flip_step_at(&r->flip, epoch) : 0;
    uint64_t weights = 0;
    for (uint32_t l = 0; l < net->n_layers; l++)
        weights += (uint64_t)net->layer[l].in * net->layer[l].out;
    for (uint32_t start = 0; start + 1 < n; start += batch) {
        if (stop && *stop)
            return apx_fail(err, APX_EINTR, "training '%s' interrupted in epoch %u of %u",
                            r->name, epoch + 1, r->epochs);
        uint32_t B = n - start < batch ? n - start : batch;
        train_net_load(net, train, order + start, B);
        if (r->flip.on) {
            uint64_t flips;
            if (train_flipper_draw(flipper, net, k, *batch_no, &flips, err)) return err->code;
            train_net_flip_weights(net);  /* undone by train_net_adam's refresh of wb */
            ep->flipped += flips;
            ep->exposed += weights;
        }
        train_net_forward(net, B, 1);
        double loss = train_net_loss(net, B, &ep->correct);
        if (!isfinite(loss))
            return apx_fail(err, APX_EWORK,
                            "training '%s' diverged in epoch %u (loss %g); try a smaller lr",
                            r->name, epoch + 1, loss);
        train_net_backward(net, B);
        train_net_adam(net, lr);
        ep->loss_sum += loss * B;
        ep->seen += B;
        (*batch_no)++;
    }
    return APX_OK;
}

int train_fit(const train_recipe *r, const dataset *train, const dataset *test,
              train_progress_fn progress, void *ctx, volatile int *stop, bnn_model *out,
              train_net **net_out, apx_error *err) {
    if (check_recipe(r, train, test, err)) return err->code;
    uint32_t n = r->train_limit && r->train_limit < train->n ? r->train_limit : train->n;
    uint32_t batch = r->batch < n ? r->batch : n;
    int rc = APX_OK;
    bnn_model model;
    memset(&model, 0, sizeof model);
    bnn_workspace *ws = NULL;
    uint32_t *order = NULL;
    train_flipper flipper;
    memset(&flipper, 0, sizeof flipper);
    uint64_t batch_no = 0;
    train_net *net = train_net_new(r, train->rows, train->cols, batch, err);
    if (!net) return err->code;
    if ((rc = train_net_model(net, r->name, &model, err))) goto done;
    if (r->flip.on && (rc = train_flipper_init(&flipper, &r->flip, r->seed, net, &model, err)))
        goto done;
    ws = bnn_workspace_new(&model);
    order = malloc((size_t)n * sizeof *order);
    if (!ws || !order) {
        rc = apx_fail(err, APX_EWORK, "out of memory preparing training");
        goto done;
    }
    for (uint32_t epoch = 0; epoch < r->epochs; epoch++) {
        double lr = r->lr * pow(r->lr_gamma, (double)(epoch / r->lr_step));
        /* Each epoch's order is a pure function of (seed, epoch). */
        rng_stream s;
        rng_stream_at(&s, rng_key_make(r->seed, TRAIN_STREAM_SHUFFLE, epoch), 0, 0);
        for (uint32_t i = 0; i < n; i++) order[i] = i;
        for (uint32_t i = n - 1; i > 0; i--) {
            uint32_t j = (uint32_t)rng_below(&s, (uint64_t)i + 1);
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double t0 = now_s();
        epoch_pass ep = {0};
        if ((rc = train_epoch(r, net, &flipper, train, order, n, batch, epoch, lr, &batch_no,
                              stop, &ep, err)))
            goto done;
        double t1 = now_s();
        if (r->bn_recalibrate &&
            (rc = train_net_recalibrate_bn_ber(net, train, n, r->bn_recalibrate,
                                               r->bn_reestimate_ber,
                                               rng_key_make(r->seed, TRAIN_STREAM_RECAL, epoch),
                                               err)))
            goto done;
        train_net_export(net, &model);
        train_epoch_stats st = {
            .epoch = epoch + 1,
            .epochs = r->epochs,
            .loss = ep.loss_sum / ep.seen,
            .train_accuracy = (double)ep.correct / ep.seen,
            .test_accuracy = -1.0,
            .samples_per_s = ep.seen / (t1 - t0 > 0 ? t1 - t0 : 1e-9),
            .lr = lr,
            .flip_step = r->flip.on ? train_flip_step_at(&r->flip, epoch) : 0,
            .flip_rate = ep.exposed ? (double)ep.flipped / (double)ep.exposed : 0.0,
        };
        if (test && test->n)
            st.test_accuracy =
                (double)bnn_eval_range(&model, model.image, test, 0, test->n, ws, NULL) / test->n;
        st.seconds = now_s() - t0;  /* training, export and test of this epoch */
        if (progress) progress(ctx, &st);
    }
done:
    train_flipper_free(&flipper);
    free(order);
    if (ws) bnn_workspace_free(ws);
    if (rc == APX_OK) {
        *out = model;
        if (net_out) {
            *net_out = net;
            net = NULL;
        }
    } else if (model.layers) {
        bnn_free(&model);
    }
    train_net_free(net);
    return rc;
}

int train_run(const train_recipe *r, const dataset *train, const dataset *test,
              train_progress_fn progress, void *ctx, volatile int *stop, bnn_model *out,
              apx_error *err) {
    return train_fit(r, train, test, progress, ctx, stop, out, NULL, err);
}
