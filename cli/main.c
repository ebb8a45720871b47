/* barque: the operator's command. */
#include "cli.h"

#include <malloc.h>
#include <signal.h>

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    /* WAL files (16 MiB) come and go by the hundred: keep freed buffers in the heap instead of
     * a fresh mmap each time, whose pages the kernel zeroes on first touch */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    return cli_main(argc, argv);
}
