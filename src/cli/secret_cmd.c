/*
 * secret_cmd.c - see secret_cmd.h.  The CLI side of kilnd's /v1/secrets.
 *
 *   kiln secret set NAME --env VAR --header HEADER --hosts HOST[,HOST...]   value on stdin
 *   kiln secret ls
 *   kiln secret rm NAME...
 *
 * The value is read from standard input (one trailing newline dropped), never from the
 * command line, where other users' `ps` and the shell's history would see it.  Common options
 * as `kiln sandbox`: --kilnd SOCK, --key KEY, --json.
 */
#include "secret_cmd.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kilnd_client.h"

#define EXIT_KILN	125
#define VALUE_MAX	4096

struct s_opts {
	struct kilnd_opts k;
	const char *env, *header, *hosts;
};

static void s_usage(void)
{
	fprintf(stderr,
		"usage: kiln secret set NAME --env VAR --header HEADER --hosts HOST[,HOST...]\n"
		"                           (the value on stdin: kiln secret set ... < token)\n"
		"       kiln secret ls\n"
		"       kiln secret rm NAME...\n" KILND_USAGE_COMMON);
	exit(EXIT_KILN);
}

static bool s_opt(void *opts, int c, const char *arg)
{
	struct s_opts *o = opts;

	switch (c) {
	case 'e': o->env = arg; return true;
	case 'H': o->header = arg; return true;
	case 'h': o->hosts = arg; return true;
	default: return false;
	}
}

static int s_parse(int argc, char **argv, struct s_opts *o)
{
	static const struct option longopts[] = {
		KILND_LONGOPTS, { "env", required_argument, NULL, 'e' },
		{ "header", required_argument, NULL, 'H' }, { "hosts", required_argument, NULL, 'h' },
		{ 0 }
	};
	static const struct kilnd_cmd cmd = { "secret", "", longopts, s_opt, s_usage };

	memset(o, 0, sizeof(*o));
	return kilnd_parse_opts(&cmd, argc, argv, &o->k, o);
}

/* The value from stdin, without one trailing newline (and its CR); NULL if too long. */
static char *read_value(void)
{
	char *buf = calloc(1, VALUE_MAX + 2);
	size_t len = 0;
	ssize_t n;

	if (!buf)
		return NULL;
	while (len < VALUE_MAX + 1 && (n = read(0, buf + len, VALUE_MAX + 1 - len)) > 0)
		len += n;
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = 0;
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = 0;
	if (len > VALUE_MAX) {
		free(buf);
		return NULL;
	}
	return buf;
}

static json_t *hosts_array(const char *list)
{
	json_t *a = json_array();
	char *copy = strdup(list), *save = NULL;

	for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save))
		json_array_append_new(a, json_string(h));
	free(copy);
	return a;
}

/* What kilnd takes as a secret's name, so it is a path segment as it stands. */
static bool name_ok(const char *name)
{
	size_t n = strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");

	if (n == 0 || n > 63 || name[n]) {
		fprintf(stderr, "kiln: secret: '%s': a name is 1 to 63 letters, digits, _ or -\n",
			name);
		return false;
	}
	return true;
}

static int s_set(const struct s_opts *o, char **args, int n)
{
	char path[160], *value;
	json_t *body, *out;

	if (n != 1 || !o->env || !o->header || !o->hosts)
		s_usage();
	if (!name_ok(args[0]))
		return EXIT_KILN;
	if (isatty(0))
		fprintf(stderr, "kiln: the value of %s, then Enter and Ctrl-D:\n", args[0]);
	value = read_value();
	if (!value) {
		fprintf(stderr, "kiln: secret set: the value is at most %d bytes\n", VALUE_MAX);
		return EXIT_KILN;
	}
	body = json_pack("{s:s, s:s, s:o, s:s}", "env", o->env, "header", o->header, "hosts",
			 hosts_array(o->hosts), "value", value);
	memset(value, 0, strlen(value));
	free(value);
	snprintf(path, sizeof(path), "/v1/secrets/%s", args[0]);
	out = kilnd_call(o->k.sock, o->k.key, "PUT", path, body);
	if (o->k.json)
		kilnd_print_json(out);
	json_decref(body);
	json_decref(out);
	return 0;
}

static int s_ls(const struct s_opts *o)
{
	json_t *out = kilnd_call(o->k.sock, o->k.key, "GET", "/v1/secrets", NULL), *sec, *h;
	size_t i, j;

	if (o->k.json) {
		kilnd_print_json(out);
	} else {
		printf("%-20s %-24s %-20s %s\n", "NAME", "ENV", "HEADER", "HOSTS");
		json_array_foreach(json_object_get(out, "secrets"), i, sec) {
			printf("%-20s %-24s %-20s ", kilnd_str(sec, "name"), kilnd_str(sec, "env"),
			       kilnd_str(sec, "header"));
			json_array_foreach(json_object_get(sec, "hosts"), j, h)
				printf("%s%s", j ? "," : "", json_string_value(h));
			printf("\n");
		}
	}
	json_decref(out);
	return 0;
}

static int s_rm(const struct s_opts *o, char **args, int n)
{
	char path[160];

	if (n < 1)
		s_usage();
	for (int i = 0; i < n; i++) {
		if (!name_ok(args[i]))
			return EXIT_KILN;
		snprintf(path, sizeof(path), "/v1/secrets/%s", args[i]);
		json_decref(kilnd_call(o->k.sock, o->k.key, "DELETE", path, NULL));
	}
	return 0;
}

int cmd_secret(int argc, char **argv)
{
	struct s_opts o;
	const char *sub;
	int i;

	if (argc < 2)
		s_usage();
	sub = argv[1];
	argv[1] = argv[0];
	i = s_parse(argc - 1, argv + 1, &o) + 1;
	if (!strcmp(sub, "set"))
		return s_set(&o, argv + i, argc - i);
	if ((!strcmp(sub, "ls") || !strcmp(sub, "list")) && i == argc)
		return s_ls(&o);
	if (!strcmp(sub, "rm"))
		return s_rm(&o, argv + i, argc - i);
	s_usage();
	return EXIT_KILN;
}
