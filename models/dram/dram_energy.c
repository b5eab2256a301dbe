/* dram_energy.c - placeholder until its module lands. */
typedef int placeholder_dram_energy;
