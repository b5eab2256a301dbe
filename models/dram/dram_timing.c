/* dram_timing.c - placeholder until its module lands. */
typedef int placeholder_dram_timing;
