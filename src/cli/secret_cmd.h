/*
 * secret_cmd.h - `kiln secret set|ls|rm`: the agent's secrets in kilnd, which its networked
 * sandboxes get as placeholders the egress proxy replaces (docs/kilnd.md "Secrets").
 */
#ifndef KILN_SECRET_CMD_H
#define KILN_SECRET_CMD_H

/* argv[0] is the program, argv[1] the subcommand.  Returns the exit status. */
int cmd_secret(int argc, char **argv);

#endif
