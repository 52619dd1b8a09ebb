/* PLACEHOLDER: being written (replace this whole file). */
#include <stdio.h>
#include "cli/commands.h"
int cmd_stats(int argc, char **argv) { fprintf(stderr, "sdprune stats: not built yet\n"); return 1; }
