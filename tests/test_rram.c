/* test_rram.c - placeholder until its module lands. */
#include "tests.h"

void add_rram_suite(void) {}
