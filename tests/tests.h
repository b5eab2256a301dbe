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

/* Writes len bytes to a file under the temp dir; returns its path. */
const char *test_write_file(const char *name, const void *data, size_t len);

#endif
