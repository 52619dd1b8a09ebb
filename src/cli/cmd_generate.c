/* sdprune generate: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_generate(int argc, char **argv) {
  fprintf(stderr, "sdprune generate: not implemented yet\n");
  return 1;
}
