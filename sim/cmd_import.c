/* cmd_import.c - `apxsim import`: a BNN trained elsewhere, from NumPy .npz
 * arrays named by a YAML manifest (docs/import.md), into a .bnn file. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../workloads/bnn.h"
#include "../workloads/npz.h"
#include "commands.h"

static const char import_help[] =
    "Usage: apxsim import MANIFEST.yaml -o MODEL.bnn [options]\n"
    "\n"
    "Imports a binarized network trained elsewhere (PyTorch, Larq/Keras) from the\n"
    "arrays of a NumPy .npz archive (numpy.savez or savez_compressed) into an\n"
    "apxsim model file. The YAML manifest names the archive, the input (height,\n"
    "width, channels, pixel scale) and, per layer, its type (conv or dense), its\n"
    "weight array, its pooling, its batch-norm arrays and the last layer's scale.\n"
    "Weights are binarised (w > 0 -> +1 unless sign_of_zero: +1), batch norms are\n"
    "folded into integer thresholds, and PyTorch's CHW flatten is permuted to\n"
    "apxsim's HWC order. The manifest format and an exporter snippet for PyTorch\n"
    "are in docs/import.md.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE   the .bnn model to write (required)\n"
    "      --npz FILE      read the arrays from FILE instead of the manifest's 'npz'\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 ok, 1 failure during work (writing), 2 bad input or usage.\n"
    "\n"
    "Example:\n"
    "  python3 export.py                 # np.savez('vgg3.npz', **state_dict arrays)\n"
    "  apxsim import vgg3.yaml -o /tmp/vgg3.bnn\n"
    "  apxsim eval /tmp/vgg3.bnn\n";

static const char *kind_name(uint32_t kind) {
    switch (kind) {
    case BNN_DENSE_U8: return "dense/u8";
    case BNN_DENSE_BIN: return "dense";
    case BNN_DENSE_OUT: return "output";
    case BNN_CONV_U8: return "conv/u8";
    case BNN_CONV_BIN: return "conv";
    case BNN_DENSE_B1: return "dense/b1";
    case BNN_CONV_B1: return "conv/b1";
    }
    return "?";
}

int cmd_import(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"npz", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *output = NULL, *npz_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'n': npz_path = optarg; break;
        case 'h': fputs(import_help, stdout); return 0;
        default: return cli_usage("import", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("import", "%s", "expects one MANIFEST.yaml");
    if (!output) return cli_usage("import", "%s", "needs -o MODEL.bnn");
    const char *manifest = argv[optind];
    apx_error err = {0};
    bnn_model m;
    if (bnn_import_npz(manifest, npz_path, &m, &err)) return cli_report(NULL, &err);
    char hash[17];
    bnn_hash_hex(&m, hash);
    printf("imported '%s' from %s: %u layers, %ux%ux%u input, %u classes\n", m.name, manifest,
           m.n_layers, m.in_rows, m.in_cols, m.in_channels, m.n_classes);
    for (uint32_t l = 0; l < m.n_layers; l++) {
        const bnn_layer *L = &m.layers[l];
        if (L->kind == BNN_CONV_U8 || L->kind == BNN_CONV_BIN || L->kind == BNN_CONV_B1)
            printf("  layer %-2u %-8s %ux%ux%u -> %u channels%s\n", l, kind_name(L->kind), L->in_h,
                   L->in_w, L->in_c, L->out, L->pool == 2 ? ", max-pool 2x2" : "");
        else
            printf("  layer %-2u %-8s %u -> %u%s\n", l, kind_name(L->kind), L->in, L->out,
                   L->kind == BNN_DENSE_OUT ? "" : ", batch norm folded");
    }
    int rc = bnn_save(&m, output, &err);
    if (rc == APX_OK) printf("wrote %s (model hash %s)\n", output, hash);
    bnn_free(&m);
    return rc ? cli_report(NULL, &err) : 0;
}
