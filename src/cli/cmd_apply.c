/* PLACEHOLDER: being written (replace this whole file). */
#include <stdio.h>
#include "cli/commands.h"
int cmd_apply(int argc, char **argv) { fprintf(stderr, "sdprune apply: not built yet\n"); return 1; }
