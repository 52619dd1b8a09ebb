/* PLACEHOLDER: being written (replace this whole file). */
#include <stdio.h>
#include "cli/commands.h"
int cmd_prompts(int argc, char **argv) { fprintf(stderr, "sdprune prompts: not built yet\n"); return 1; }
