/*
 * template_cmd.c - see template_cmd.h.  The CLI side of kilnd's /v1/templates.
 *
 *   kiln template ls                                   every template, as a table
 *   kiln template build NAME [--wait]                  build images/NAME/recipe (admin key)
 *   kiln template warm NAME [--cpus N] [--memory MIB] [--wait]   warm snapshot (admin key)
 *   kiln template unwarm NAME                          drop its warm snapshots (admin key)
 *
 * Common options as `kiln sandbox`: --kilnd SOCK (else $KILN_SOCKET, else
 * /run/kiln/kilnd.sock), --key KEY (else $KILN_API_KEY), --json.  Builds and warms run in
 * kilnd's background: without --wait the job's id is printed at once; with it, kiln polls
 * the job and exits 0 when it succeeded, 125 with its reason when it failed.
 */
#include "template_cmd.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kilnd_client.h"

#define EXIT_KILN	125
#define POLL_US		500000

struct t_opts {
	struct kilnd_opts k;
	long cpus, memory;
	bool wait;
};

static void t_usage(void)
{
	fprintf(stderr,
		"usage: kiln template ls\n"
		"       kiln template build NAME [--wait]\n"
		"       kiln template warm NAME [--cpus N] [--memory MIB] [--wait]\n"
		"       kiln template unwarm NAME\n" KILND_USAGE_COMMON);
	exit(EXIT_KILN);
}

static bool t_opt(void *opts, int c, const char *arg)
{
	struct t_opts *o = opts;

	switch (c) {
	case 'w': o->wait = true; return true;
	case 'c': o->cpus = kilnd_positive("--cpus", arg); return true;
	case 'm': o->memory = kilnd_positive("--memory", arg); return true;
	default: return false;
	}
}

static int t_parse(int argc, char **argv, struct t_opts *o)
{
	static const struct option longopts[] = {
		KILND_LONGOPTS, { "wait", no_argument, NULL, 'w' },
		{ "cpus", required_argument, NULL, 'c' }, { "memory", required_argument, NULL, 'm' },
		{ 0 }
	};
	static const struct kilnd_cmd cmd = { "template", "", longopts, t_opt, t_usage };

	memset(o, 0, sizeof(*o));
	return kilnd_parse_opts(&cmd, argc, argv, &o->k, o);
}

/* "1x128,2x512" from a template's warm snapshots. */
static void shapes(json_t *t, char *out, size_t len)
{
	json_t *s;
	size_t i, used = 0;

	out[0] = 0;
	json_array_foreach(json_object_get(t, "warm_snapshots"), i, s) {
		used += snprintf(out + used, used < len ? len - used : 0, "%s%lldx%lld",
				 i ? "," : "", json_integer_value(json_object_get(s, "cpus")),
				 json_integer_value(json_object_get(s, "memory_mib")));
	}
	if (!out[0])
		snprintf(out, len, "-");
}

static int t_ls(const struct t_opts *o)
{
	json_t *all = kilnd_call(o->k.sock, o->k.key, "GET", "/v1/templates", NULL), *t;
	size_t i;

	if (o->k.json) {
		kilnd_print_json(json_object_get(all, "templates"));
		json_decref(all);
		return 0;
	}
	printf("%-16s %-5s %-10s %8s  %-16s  %s\n", "NAME", "BUILT", "SOURCE", "SIZE_MIB",
	       "WARM_CPUSxMIB", "IMAGE");
	json_array_foreach(json_object_get(all, "templates"), i, t) {
		char warm[256], size[24] = "-";
		json_t *bytes = json_object_get(t, "image_bytes");

		if (json_is_integer(bytes))
			snprintf(size, sizeof(size), "%lld", json_integer_value(bytes) >> 20);
		shapes(t, warm, sizeof(warm));
		printf("%-16s %-5s %-10s %8s  %-16s  %s\n", kilnd_str(t, "name"),
		       json_is_true(json_object_get(t, "built")) ? "yes" : "no", kilnd_str(t, "source"),
		       size, warm, kilnd_str(t, "image"));
	}
	json_decref(all);
	return 0;
}

/* A template name as a path segment: kilnd judges it, kiln only keeps it one segment. */
static const char *segment(const char *name)
{
	if (!*name || strchr(name, '/') || strchr(name, '?') || strchr(name, '%') ||
	    strlen(name) > 63) {
		fprintf(stderr, "kiln: %s: not a template name\n", name);
		exit(EXIT_KILN);
	}
	return name;
}

/* Poll the job until it ends; its final record. */
static json_t *wait_job(const struct t_opts *o, const char *name, const char *kind, json_t *job)
{
	char path[160];

	snprintf(path, sizeof(path), "/v1/templates/%s/%s", name, kind);
	while (!strcmp(kilnd_str(job, "state"), "running")) {
		usleep(POLL_US);
		json_decref(job);
		job = kilnd_call(o->k.sock, o->k.key, "GET", path, NULL);
	}
	return job;
}

/* build and warm: start the job, print it, and with --wait follow it to its end. */
static int t_job(const struct t_opts *o, const char *kind, const char *name)
{
	json_t *body = json_object(), *job;
	char path[160];
	int ret = 0;

	if (o->cpus)
		json_object_set_new(body, "cpus", json_integer(o->cpus));
	if (o->memory)
		json_object_set_new(body, "memory_mib", json_integer(o->memory));
	snprintf(path, sizeof(path), "/v1/templates/%s/%s", segment(name), kind);
	job = kilnd_call(o->k.sock, o->k.key, "POST", path, body);
	json_decref(body);
	if (o->wait)
		job = wait_job(o, name, kind, job);
	if (o->k.json)
		kilnd_print_json(job);
	else if (!o->wait)
		printf("%s\n", kilnd_str(job, "id"));
	else if (!strcmp(kilnd_str(job, "state"), "succeeded"))
		printf("%s %s %s: %s\n", kind, name, kilnd_str(job, "state"), kilnd_str(job, "result"));
	if (o->wait && strcmp(kilnd_str(job, "state"), "succeeded")) {
		fprintf(stderr, "kiln: %s of %s failed: %s\n", kind, name, kilnd_str(job, "reason"));
		ret = EXIT_KILN;
	}
	json_decref(job);
	return ret;
}

static int t_unwarm(const struct t_opts *o, const char *name)
{
	char path[160];
	json_t *res, *s;
	size_t i;

	snprintf(path, sizeof(path), "/v1/templates/%s/warm", segment(name));
	res = kilnd_call(o->k.sock, o->k.key, "DELETE", path, NULL);
	if (o->k.json)
		kilnd_print_json(res);
	else
		json_array_foreach(json_object_get(res, "removed"), i, s)
			printf("removed %s %lldx%lld\n", name,
			       json_integer_value(json_object_get(s, "cpus")),
			       json_integer_value(json_object_get(s, "memory_mib")));
	json_decref(res);
	return 0;
}

int cmd_template(int argc, char **argv)
{
	struct t_opts o;
	const char *sub;
	int i;

	if (argc < 2)
		t_usage();
	sub = argv[1];
	argv[1] = argv[0];
	i = t_parse(argc - 1, argv + 1, &o) + 1;
	if ((!strcmp(sub, "ls") || !strcmp(sub, "list")) && i == argc)
		return t_ls(&o);
	if ((o.cpus || o.memory) && strcmp(sub, "warm"))
		t_usage();
	if ((!strcmp(sub, "build") || !strcmp(sub, "warm")) && i == argc - 1)
		return t_job(&o, sub, argv[i]);
	if (!strcmp(sub, "unwarm") && i == argc - 1 && !o.wait)
		return t_unwarm(&o, argv[i]);
	t_usage();
	return EXIT_KILN;
}
