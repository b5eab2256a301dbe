/* test_nested.c - placeholder until its module lands. */
#include "tests.h"

void add_nested_suite(void) {}
