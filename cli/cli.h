/* The barque command line. */
#ifndef BQ_CLI_H
#define BQ_CLI_H

/* Run one barque invocation; returns the exit status (0 ok, 1 failure, 2 usage). */
int cli_main(int argc, char **argv);

#endif
