/* PLACEHOLDER: being written (replace this whole file). */
#include <stdio.h>
#include "cli/commands.h"
int cmd_restore(int argc, char **argv) { fprintf(stderr, "sdprune restore: not built yet\n"); return 1; }
