/* PLACEHOLDER: being written (replace this whole file). */
#include <stdio.h>
#include "cli/commands.h"
int cmd_mask(int argc, char **argv) { fprintf(stderr, "sdprune mask: not built yet\n"); return 1; }
