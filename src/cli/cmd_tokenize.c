/* sdprune tokenize: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_tokenize(int argc, char **argv) {
  fprintf(stderr, "sdprune tokenize: not implemented yet\n");
  return 1;
}
