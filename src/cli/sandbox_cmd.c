/*
 * sandbox_cmd.c - see sandbox_cmd.h.
 *
 *   kiln sandbox create [--template NAME] [--cpus N] [--memory MIB] [--timeout SEC] [-e K=V]...
 *                       [--on-timeout kill|pause] [--metadata K=V]...
 *   kiln sandbox ls [--state STATE] [--metadata K=V]...
 *   kiln sandbox rm|pause|resume ID...
 *   kiln sandbox exec [-e K=V]... [--timeout SEC] ID -- CMD [ARGS...]
 *   kiln sandbox cp ID:PATH LOCAL | LOCAL ID:PATH
 *   kiln sandbox network [--set JSON|@FILE] ID     the network; --set replaces its policy
 *   kiln sandbox expose ID PORT                    a guest port on the host: prints the URL
 *   kiln usage
 *
 * Common options: --kilnd SOCK (else $KILN_SOCKET, else /run/kiln/kilnd.sock), --key KEY
 * (else $KILN_API_KEY), --json (print kilnd's answers as they are).  Tables otherwise.
 * Exit status 0, or 125 with kilnd's error code and message.
 */
#include "sandbox_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kilnd_client.h"

#define EXIT_KILN	125

struct sb_opts {
	struct kilnd_opts k;
	const char *template, *state, *on_timeout;
	const char *network;		/* --network / --set: JSON or @FILE */
	long cpus, memory, timeout;
	json_t *env, *metadata;
};

static void sb_usage(void)
{
	fprintf(stderr,
		"usage: kiln sandbox create [--template NAME] [--cpus N] [--memory MIB]\n"
		"                           [--timeout SEC] [-e K=V]... [--on-timeout kill|pause]\n"
		"                           [--metadata K=V]... [--network JSON|@FILE]\n"
		"       kiln sandbox ls [--state STATE] [--metadata K=V]...\n"
		"       kiln sandbox rm|pause|resume ID...\n"
		"       kiln sandbox exec [-e K=V]... [--timeout SEC] ID -- CMD [ARGS...]\n"
		"       kiln sandbox cp ID:PATH LOCAL | LOCAL ID:PATH   (- is stdin/stdout)\n"
		"       kiln sandbox network [--set JSON|@FILE] ID\n"
		"       kiln sandbox expose ID PORT\n"
		"       kiln usage   this agent's usage and cost, per sandbox\n"
		KILND_USAGE_COMMON);
	exit(EXIT_KILN);
}

/* K=V of -e or --metadata into obj. */
static void put_kv(json_t *obj, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char *key;

	if (!eq || eq == arg)
		sb_usage();
	key = strndup(arg, eq - arg);
	if (!key)
		sb_usage();
	json_object_set_new(obj, key, json_string(eq + 1));
	free(key);
}

static bool sb_opt(void *opts, int c, const char *arg)
{
	struct sb_opts *o = opts;

	switch (c) {
	case 'T': o->template = arg; return true;
	case 's': o->state = arg; return true;
	case 'c': o->cpus = kilnd_positive("--cpus", arg); return true;
	case 'm': o->memory = kilnd_positive("--memory", arg); return true;
	case 't': o->timeout = kilnd_positive("--timeout", arg); return true;
	case 'e': put_kv(o->env, arg); return true;
	case 'M': put_kv(o->metadata, arg); return true;
	case 'O': o->on_timeout = arg; return true;
	case 'N': o->network = arg; return true;
	default: return false;
	}
}

static int sb_parse(int argc, char **argv, struct sb_opts *o)
{
	static const struct option longopts[] = {
		KILND_LONGOPTS, { "template", required_argument, NULL, 'T' },
		{ "image", required_argument, NULL, 'T' }, { "state", required_argument, NULL, 's' },
		{ "cpus", required_argument, NULL, 'c' }, { "memory", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' }, { "env", required_argument, NULL, 'e' },
		{ "metadata", required_argument, NULL, 'M' },
		{ "on-timeout", required_argument, NULL, 'O' },
		{ "network", required_argument, NULL, 'N' }, { "set", required_argument, NULL, 'N' },
		{ 0 }
	};
	static const struct kilnd_cmd cmd = { "sandbox", "+e:", longopts, sb_opt, sb_usage };

	memset(o, 0, sizeof(*o));
	o->env = json_object();
	o->metadata = json_object();
	return kilnd_parse_opts(&cmd, argc, argv, &o->k, o);
}

static void table_header(void)
{
	printf("%-22s %-9s %-12s %4s %7s  %-20s  %-20s\n", "ID", "STATE", "TEMPLATE", "CPUS",
	       "MEM_MIB", "CREATED", "EXPIRES");
}

static void table_row(json_t *sb)
{
	printf("%-22s %-9s %-12s %4lld %7lld  %-20s  %-20s\n", kilnd_str(sb, "id"), kilnd_str(sb, "state"),
	       kilnd_str(sb, "template"), json_integer_value(json_object_get(sb, "cpus")),
	       json_integer_value(json_object_get(sb, "memory_mib")), kilnd_str(sb, "created_at"),
	       kilnd_str(sb, "expires_at"));
}

/* A JSON object given inline or as @FILE; kilnd checks what is in it. */
static json_t *json_arg(const char *opt, const char *arg)
{
	json_error_t err;
	json_t *v = arg[0] == '@' ? json_load_file(arg + 1, 0, &err) : json_loads(arg, 0, &err);

	if (!v || !json_is_object(v)) {
		fprintf(stderr, "kiln: %s: %s\n", opt, v ? "must be a JSON object" : err.text);
		exit(EXIT_KILN);
	}
	return v;
}

static int sb_create(const struct sb_opts *o)
{
	json_t *body = json_object(), *sb;

	if (o->template)
		json_object_set_new(body, "template", json_string(o->template));
	if (o->cpus)
		json_object_set_new(body, "cpus", json_integer(o->cpus));
	if (o->memory)
		json_object_set_new(body, "memory_mib", json_integer(o->memory));
	if (o->timeout)
		json_object_set_new(body, "timeout_s", json_integer(o->timeout));
	if (json_object_size(o->env))
		json_object_set(body, "env", o->env);
	if (json_object_size(o->metadata))
		json_object_set(body, "metadata", o->metadata);
	if (o->on_timeout)
		json_object_set_new(body, "on_timeout", json_string(o->on_timeout));
	if (o->network)
		json_object_set_new(body, "network", json_arg("--network", o->network));
	sb = kilnd_call(o->k.sock, o->k.key, "POST", "/v1/sandboxes", body);
	if (o->k.json)
		kilnd_print_json(sb);
	else
		printf("%s\n", kilnd_str(sb, "id"));
	json_decref(body);
	json_decref(sb);
	return 0;
}

/* s percent-encoded for a query string. */
static void put_encoded(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = *s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || strchr("-._~", ch))
			fputc(ch, f);
		else
			fprintf(f, "%%%02X", ch);
	}
}

/* The list's path for the page after `after`; malloc'd. */
static char *ls_path(const struct sb_opts *o, const char *after)
{
	char *path = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&path, &len);
	const char *k;
	json_t *v;

	if (!f)
		exit(EXIT_KILN);
	fputs("/v1/sandboxes?limit=1000", f);
	if (o->state) {
		fputs("&state=", f);
		put_encoded(f, o->state);
	}
	json_object_foreach(o->metadata, k, v) {
		fputs("&metadata.", f);
		put_encoded(f, k);
		fputc('=', f);
		put_encoded(f, json_string_value(v));
	}
	if (after[0]) {
		fputs("&after=", f);
		put_encoded(f, after);
	}
	fclose(f);
	return path;
}

/* Every page of the list, through next_after. */
static int sb_ls(const struct sb_opts *o)
{
	json_t *all = json_array();
	char *path, after[128] = "";

	for (;;) {
		json_t *page, *list, *sb;
		size_t i;

		path = ls_path(o, after);
		page = kilnd_call(o->k.sock, o->k.key, "GET", path, NULL);
		free(path);
		list = json_object_get(page, "sandboxes");
		json_array_foreach(list, i, sb)
			json_array_append(all, sb);
		if (!json_is_string(json_object_get(page, "next_after"))) {
			json_decref(page);
			break;
		}
		snprintf(after, sizeof(after), "%s", kilnd_str(page, "next_after"));
		json_decref(page);
	}
	if (o->k.json) {
		kilnd_print_json(all);
	} else {
		size_t i;
		json_t *sb;

		table_header();
		json_array_foreach(all, i, sb)
			table_row(sb);
	}
	json_decref(all);
	return 0;
}

/* rm, pause, resume: one request per ID. */
static int sb_each(const struct sb_opts *o, const char *verb, char **ids, int n)
{
	char path[256];

	if (n == 0)
		sb_usage();
	for (int i = 0; i < n; i++) {
		json_t *sb;

		if (strchr(ids[i], '/') || strchr(ids[i], '?') || strlen(ids[i]) > 63) {
			fprintf(stderr, "kiln: %s: not a sandbox id\n", ids[i]);
			return EXIT_KILN;
		}
		if (!strcmp(verb, "rm"))
			snprintf(path, sizeof(path), "/v1/sandboxes/%s", ids[i]);
		else
			snprintf(path, sizeof(path), "/v1/sandboxes/%s/%s", ids[i], verb);
		sb = kilnd_call(o->k.sock, o->k.key, strcmp(verb, "rm") ? "POST" : "DELETE", path, NULL);
		if (!o->k.json && i == 0)
			table_header();
		if (o->k.json)
			kilnd_print_json(sb);
		else
			table_row(sb);
		json_decref(sb);
	}
	return 0;
}

static bool id_ok(const char *id)
{
	return *id && strlen(id) <= 63 && !strpbrk(id, "/?%#");
}

/* Output of a command as kilnd gives it: text, or base64 when it was not UTF-8. */
static void put_output(json_t *res, const char *name, FILE *f)
{
	char key[32];
	const char *data = json_string_value(json_object_get(res, name));

	snprintf(key, sizeof(key), "%s_encoding", name);
	if (!data)
		return;
	if (strcmp(kilnd_str(res, key), "base64")) {
		fputs(data, f);
		return;
	}
	/* Decode base64 by hand: four characters, three bytes. */
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned v = 0, bits = 0;

	for (; *data && *data != '='; data++) {
		const char *at = strchr(b64, *data);

		if (!at)
			continue;
		v = v << 6 | (unsigned)(at - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			fputc((v >> bits) & 0xff, f);
		}
	}
}

/* kiln sandbox exec ID -- CMD...: kilnd's /exec; the command's exit status is ours. */
static int sb_exec(const struct sb_opts *o, char **args, int n)
{
	json_t *body = json_object(), *cmd = json_array(), *res;
	char path[160];
	int i, code;

	if (n < 3 || !id_ok(args[0]) || strcmp(args[1], "--"))
		sb_usage();
	for (i = 2; i < n; i++)
		json_array_append_new(cmd, json_string(args[i]));
	json_object_set_new(body, "cmd", cmd);
	if (json_object_size(o->env))
		json_object_set(body, "env", o->env);
	if (o->timeout)
		json_object_set_new(body, "timeout_s", json_integer(o->timeout));
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/exec", args[0]);
	res = kilnd_call(o->k.sock, o->k.key, "POST", path, body);
	json_decref(body);
	if (o->k.json) {
		kilnd_print_json(res);
	} else {
		put_output(res, "stdout", stdout);
		put_output(res, "stderr", stderr);
	}
	/* As a shell reports it: 124 on timeout, 128+N when killed by signal N. */
	if (json_is_true(json_object_get(res, "timed_out")))
		code = 124;
	else if (json_integer_value(json_object_get(res, "signal")))
		code = 128 + (int)json_integer_value(json_object_get(res, "signal"));
	else
		code = (int)json_integer_value(json_object_get(res, "exit_code"));
	json_decref(res);
	return code;
}

/* "ID:PATH" into id and the percent-encoded ?path= query; false if arg is local. */
static bool remote_path(const char *arg, char *id, size_t idlen, char *query, size_t qlen)
{
	const char *colon = strchr(arg, ':');
	char *q = NULL;
	size_t len = 0;
	FILE *f;

	if (!colon || colon == arg || (size_t)(colon - arg) >= idlen || colon[1] != '/')
		return false;
	snprintf(id, idlen, "%.*s", (int)(colon - arg), arg);
	if (!id_ok(id))
		return false;
	f = open_memstream(&q, &len);
	if (!f)
		exit(EXIT_KILN);
	put_encoded(f, colon + 1);
	fclose(f);
	snprintf(query, qlen, "%s", q);
	free(q);
	return strlen(query) + 1 < qlen;
}

static int transfer_failed(int status, json_t *out, const char *err)
{
	json_t *e = json_object_get(out, "error");

	if (status < 0)
		fprintf(stderr, "kiln: %s\n", err);
	else
		fprintf(stderr, "kiln: %s (HTTP %d): %s\n",
			json_string_value(json_object_get(e, "code")) ?: "error", status,
			json_string_value(json_object_get(e, "message")) ?: "no JSON answer");
	json_decref(out);
	return EXIT_KILN;
}

/* kiln sandbox cp ID:PATH LOCAL | LOCAL ID:PATH, streamed either way ("-": stdin/stdout). */
static int sb_cp(const struct sb_opts *o, char **args, int n)
{
	char id[64], query[8192], path[8400], err[512];
	json_t *out = NULL;
	int status, fd;

	if (n != 2)
		sb_usage();
	if (remote_path(args[0], id, sizeof(id), query, sizeof(query)) &&
	    !strchr(args[1], ':')) {
		fd = strcmp(args[1], "-") ? open(args[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
						 0644) : 1;
		if (fd < 0) {
			fprintf(stderr, "kiln: %s: %s\n", args[1], strerror(errno));
			return EXIT_KILN;
		}
		snprintf(path, sizeof(path), "/v1/sandboxes/%s/files?path=%s", id, query);
		status = kilnd_download(o->k.sock, o->k.key, path, fd, &out, err, sizeof(err));
		if (fd != 1)
			close(fd);
		if (status != 200) {
			if (fd != 1)
				unlink(args[1]);
			return transfer_failed(status, out, err);
		}
	} else if (remote_path(args[1], id, sizeof(id), query, sizeof(query))) {
		fd = strcmp(args[0], "-") ? open(args[0], O_RDONLY | O_CLOEXEC) : 0;
		if (fd < 0) {
			fprintf(stderr, "kiln: %s: %s\n", args[0], strerror(errno));
			return EXIT_KILN;
		}
		snprintf(path, sizeof(path), "/v1/sandboxes/%s/files?path=%s", id, query);
		status = kilnd_upload(o->k.sock, o->k.key, path, fd, &out, err, sizeof(err));
		if (fd != 0)
			close(fd);
		if (status < 200 || status >= 300)
			return transfer_failed(status, out, err);
		if (o->k.json)
			kilnd_print_json(out);
	} else {
		fprintf(stderr, "kiln: sandbox cp: one side must be ID:/absolute/path, the other "
			"local\n");
		return EXIT_KILN;
	}
	json_decref(out);
	return 0;
}

/* kiln usage: the agent's totals and each sandbox's share. */
int cmd_usage(int argc, char **argv)
{
	struct sb_opts o;
	json_t *u, *sb;
	size_t i;

	if (sb_parse(argc, argv, &o) != argc)
		sb_usage();
	u = kilnd_call(o.k.sock, o.k.key, "GET", "/v1/usage", NULL);
	if (o.k.json) {
		kilnd_print_json(u);
	} else {
		printf("%-22s %10s %12s %12s %12s\n", "SANDBOX", "RUN_S", "VCPU_S", "MEM_GIB_S",
		       "COST_MICRO");
		json_array_foreach(json_object_get(u, "sandboxes"), i, sb)
			printf("%-22s %10.0f %12.1f %12.1f %12lld\n", kilnd_str(sb, "id"),
			       json_number_value(json_object_get(sb, "run_seconds")),
			       json_number_value(json_object_get(sb, "vcpu_seconds")),
			       json_number_value(json_object_get(sb, "memory_gib_seconds")),
			       json_integer_value(json_object_get(sb, "cost_micro")));
		printf("%-22s %10s %12.1f %12.1f %12lld\n", "total", "",
		       json_number_value(json_object_get(u, "vcpu_seconds")),
		       json_number_value(json_object_get(u, "memory_gib_seconds")),
		       json_integer_value(json_object_get(u, "cost_micro")));
	}
	json_decref(u);
	json_decref(o.env);
	json_decref(o.metadata);
	return 0;
}

static bool id_ok(const char *id);

/* kiln sandbox network [--set JSON|@FILE] ID */
static int sb_network(const struct sb_opts *o, char **args, int n)
{
	char path[160];
	json_t *body = o->network ? json_arg("--set", o->network) : NULL, *net;

	if (n != 1 || !id_ok(args[0]))
		sb_usage();
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/network", args[0]);
	net = kilnd_call(o->k.sock, o->k.key, body ? "PUT" : "GET", path, body);
	kilnd_print_json(net);
	json_decref(body);
	json_decref(net);
	return 0;
}

/* kiln sandbox expose ID PORT: prints the URL it is reachable at. */
static int sb_expose(const struct sb_opts *o, char **args, int n)
{
	char path[160];
	json_t *body, *port;

	if (n != 2 || !id_ok(args[0]))
		sb_usage();
	body = json_pack("{s:I}", "port", (json_int_t)kilnd_positive("PORT", args[1]));
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/ports", args[0]);
	port = kilnd_call(o->k.sock, o->k.key, "POST", path, body);
	if (o->k.json)
		kilnd_print_json(port);
	else
		printf("%s\n", kilnd_str(port, "url"));
	json_decref(body);
	json_decref(port);
	return 0;
}

int cmd_sandbox(int argc, char **argv)
{
	struct sb_opts o;
	const char *sub;
	int i, ret = EXIT_KILN;

	if (argc < 2)
		sb_usage();
	sub = argv[1];
	argv[1] = argv[0];
	i = sb_parse(argc - 1, argv + 1, &o) + 1;
	if (!strcmp(sub, "create") && i == argc)
		ret = sb_create(&o);
	else if ((!strcmp(sub, "ls") || !strcmp(sub, "list")) && i == argc)
		ret = sb_ls(&o);
	else if (!strcmp(sub, "rm") || !strcmp(sub, "pause") || !strcmp(sub, "resume"))
		ret = sb_each(&o, sub, argv + i, argc - i);
	else if (!strcmp(sub, "exec"))
		ret = sb_exec(&o, argv + i, argc - i);
	else if (!strcmp(sub, "cp"))
		ret = sb_cp(&o, argv + i, argc - i);
	else if (!strcmp(sub, "network"))
		ret = sb_network(&o, argv + i, argc - i);
	else if (!strcmp(sub, "expose"))
		ret = sb_expose(&o, argv + i, argc - i);
	else
		sb_usage();
	json_decref(o.env);
	json_decref(o.metadata);
	return ret;
}
