/* construct.c - placeholder until its module lands. */
typedef int placeholder_construct;
