/* mglogin - `mailgrab login` as its own binary, for the integration tests
 * (they run it before main.c dispatches the login subcommand). */
#include "mailgrab/login_cmd.h"

int main(int argc, char **argv)
{
    return mg_login_main(argc, argv);
}
