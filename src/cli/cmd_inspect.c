/* sdprune inspect: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_inspect(int argc, char **argv) {
  fprintf(stderr, "sdprune inspect: not implemented yet\n");
  return 1;
}
