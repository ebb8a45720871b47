/* barque: the operator's command. */
#include "cli.h"

#include <signal.h>

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    return cli_main(argc, argv);
}
