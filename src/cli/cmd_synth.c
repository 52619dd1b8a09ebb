/* sdprune synth: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_synth(int argc, char **argv) {
  fprintf(stderr, "sdprune synth: not implemented yet\n");
  return 1;
}
