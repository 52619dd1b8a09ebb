/* sdprune bench: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_bench(int argc, char **argv) {
  fprintf(stderr, "sdprune bench: not implemented yet\n");
  return 1;
}
