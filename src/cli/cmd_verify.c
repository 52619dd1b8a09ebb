/* sdprune verify: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_verify(int argc, char **argv) {
  fprintf(stderr, "sdprune verify: not implemented yet\n");
  return 1;
}
