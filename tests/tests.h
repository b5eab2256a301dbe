/* tests.h - suite registration and small helpers shared by the test files. */
#ifndef APX_TESTS_H
#define APX_TESTS_H

#include <CUnit/CUnit.h>
#include <stddef.h>

void add_rng_suite(void);
void add_config_suite(void);
void add_dataset_suite(void);
void add_bnn_suite(void);
void add_bnn_file_suite(void);
void add_train_suite(void);
void add_fmap_suite(void);
void add_store_suite(void);
void add_cli_suite(void);
void add_kernels_suite(void);
void add_npz_suite(void);
void add_geometry_suite(void);
void add_fmap_file_suite(void);
void add_replay_suite(void);
void add_plot_suite(void);
void add_resume_suite(void);
void add_nested_suite(void);
void add_dram_timing_suite(void);
void add_dram_suite(void);
void add_dram_calib_suite(void);
void add_rram_suite(void);
void add_construct_suite(void);
void add_bet_suite(void);

/* Registers a suite with the given tests ({name, fn} pairs, NULL-terminated). */
#define TEST_SUITE(suite_name, ...)                                          \
    do {                                                                     \
        CU_pSuite s_ = CU_add_suite(suite_name, NULL, NULL);                 \
        CU_TestInfo t_[] = {__VA_ARGS__, CU_TEST_INFO_NULL};                 \
        for (CU_TestInfo *ti_ = t_; ti_->pName; ti_++)                        \
            CU_add_test(s_, ti_->pName, ti_->pTestFunc);                     \
    } while (0)

/* A fresh temporary directory for this test process (created once), and a
 * path inside it. Returns a static buffer per call slot (4 slots). */
const char *test_tmpdir(void);
const char *test_path(const char *name);

/* A path for a new database under the temp dir (a test_path slot), with any
 * database, -wal and -shm files of that name removed. */
const char *test_db_path(const char *name);

/* Writes len bytes to a file under the temp dir; returns its path. */
const char *test_write_file(const char *name, const void *data, size_t len);

/* The apxsim binary of this build, for end-to-end tests. */
#define APXSIM APXSIM_BUILD_ROOT "/apxsim"

/* Runs a shell command line (stderr joined to stdout); returns its exit
 * status and the output in out (cut to len). */
int test_run(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A whole file in a malloc'd, NUL-terminated buffer (NULL if absent);
 * *len (if len is non-NULL) receives its size. */
char *test_slurp(const char *path, size_t *len);

/* A small synthetic workload shared by the end-to-end tests: a random
 * 784-32-10 model and 60-image train and test IDX sets (28x28, 10 classes,
 * named as Fashion-MNIST's) in a folder under the temp dir, made once. */
void test_workload(const char **data_dir, const char **model_path);

#endif
