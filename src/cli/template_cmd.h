/*
 * template_cmd.h - `kiln template ls|build|warm|unwarm`: kilnd's templates, through its API.
 */
#ifndef KILN_TEMPLATE_CMD_H
#define KILN_TEMPLATE_CMD_H

/* argv[0] is the program, argv[1] the subcommand.  Returns the exit status. */
int cmd_template(int argc, char **argv);

#endif
