/* main.c - placeholder until the pipeline lands */
#include <string.h>

#include "mailgrab/stats_cmd.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "stats") == 0)
        return mg_stats_main(argc - 1, argv + 1);
    return 0;
}
