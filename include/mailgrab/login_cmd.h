/*
 * login_cmd.h - `mailgrab login`: obtain a refresh token once, in a browser.
 *
 * Owns the installed-app authorization-code flow: PKCE S256 (RFC 7636), a
 * loopback redirect listener on 127.0.0.1 (RFC 8252) that accepts the one
 * redirect request, the code exchange at the token endpoint, and writing the
 * refresh token to its file (atomically, mode 0600). Secrets (client secret,
 * code, verifier, tokens) never reach stdout, stderr or argv.
 *
 * mg_login_main takes the arguments after the program name: argv[0] is
 * "login". It returns a process exit code (an enum mg_code). Not thread-safe;
 * it is a whole command.
 */
#ifndef MAILGRAB_LOGIN_CMD_H
#define MAILGRAB_LOGIN_CMD_H

int mg_login_main(int argc, char **argv);

#endif
