/* test_main.c - the CUnit runner for every suite.
 *
 * Usage: apxsim-tests [SUITE...]   (no argument: all suites)
 * Each tests/test_*.c file provides one add_*_suite() that registers its
 * suite; the list below is the whole test suite. */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#include "tests.h"

static const struct {
    const char *name;
    void (*add)(void);
} suites[] = {
    {"rng", add_rng_suite},         {"config", add_config_suite},
    {"dataset", add_dataset_suite}, {"bnn", add_bnn_suite},
    {"bnn_file", add_bnn_file_suite}, {"train", add_train_suite},
    {"fmap", add_fmap_suite},
    {"store", add_store_suite},     {"kernels", add_kernels_suite},
    {"npz", add_npz_suite},         {"geometry", add_geometry_suite},
    {"fmap_file", add_fmap_file_suite}, {"replay", add_replay_suite},
    {"plot", add_plot_suite},
    {"cli", add_cli_suite},         {"resume", add_resume_suite},
    {"nested", add_nested_suite},
    {"dram_timing", add_dram_timing_suite},
    {"dram", add_dram_suite},
    {"dram_calib", add_dram_calib_suite},
    {"rram", add_rram_suite},
    {"construct", add_construct_suite},
    {"bet", add_bet_suite},
};

int main(int argc, char **argv) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    size_t n = sizeof suites / sizeof suites[0];
    for (size_t i = 0; i < n; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strcmp(argv[a], suites[i].name) == 0) wanted = 1;
        if (wanted) suites[i].add();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "no tests ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
