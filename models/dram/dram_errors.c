/* dram_errors.c - placeholder until its module lands. */
typedef int placeholder_dram_errors;
