/* rram.c - placeholder until its module lands. */
typedef int placeholder_rram;
