/* test_construct.c - placeholder until its module lands. */
#include "tests.h"

void add_construct_suite(void) {}
