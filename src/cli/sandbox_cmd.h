/*
 * sandbox_cmd.h - `kiln sandbox create|ls|rm|pause|resume`: sandboxes managed by kilnd.
 */
#ifndef KILN_SANDBOX_CMD_H
#define KILN_SANDBOX_CMD_H

/* argv[0] is the program, argv[1] the subcommand.  Returns the exit status. */
int cmd_sandbox(int argc, char **argv);

/* kiln usage [--json]: the agent's usage and cost from kilnd. */
int cmd_usage(int argc, char **argv);

#endif
