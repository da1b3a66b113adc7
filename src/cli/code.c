/*
 * code.c - `kiln code`: run code in a guest's code contexts (long-lived interpreters that keep
 * their state between calls; src/guest/context.c) and manage them.
 *
 *   kiln code --dir DIR|--sock SOCK [--context ID] [--language python|node|bash] [--timeout SEC]
 *             [--png-dir DIR] [--rich] [-e K=V]... [-w DIR] [-u USER] [CODE | -]
 *   kiln code contexts ls|create|restart ID|interrupt ID|rm ID  (--dir DIR|--sock SOCK)
 *
 * Without --context, a VM cloned from a warm snapshot with a warm context (template.h) runs the
 * cell in that context, which keeps its state; otherwise a context is created for the one cell
 * and deleted after it.  Output
 * streams as the cell writes it; the cell's results follow: text/plain printed, image/png
 * saved under --png-dir (the path printed), everything else with --rich.  An exception's
 * traceback goes to stderr.  Ctrl-C interrupts the cell (the context keeps its state).
 * Exit status: 0 ok, 1 the cell raised, 124 it timed out, 130 it was interrupted, 125 kiln's
 * own failure.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../client/agent_client.h"
#include "code.h"

#define EXIT_KILN	125
#define EXIT_TIMEOUT	124
#define EXIT_INTERRUPT	130
#define MAX_ENV		256
#define MAX_CODE	(PROTO_MAX_PAYLOAD - 4096)	/* room for the frame's other fields */

struct code_opts {
	const char *dir, *sock, *context, *language, *cwd, *user, *png_dir;
	char *env[MAX_ENV + 1];
	int nenv;
	unsigned timeout_s;
	bool rich;
	char sockbuf[4096];
};

static volatile sig_atomic_t interrupted;

static void on_interrupt(int s)
{
	(void)s;
	interrupted = 1;
}

static int fail(const char *what, const struct agent_error *e)
{
	fprintf(stderr, "kiln: code: %s%s%s%s%s\n", what, what[0] ? ": " : "", e->path[0] ? e->path : "",
		e->path[0] ? ": " : "", e->message);
	return EXIT_KILN;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: kiln code --dir DIR|--sock SOCK [--context ID] [--language python|node|bash]\n"
		"                 [--timeout SEC] [--png-dir DIR] [--rich] [-e K=V]... [-w DIR]\n"
		"                 [-u USER] [CODE | -]\n"
		"       kiln code contexts ls|create|restart ID|interrupt ID|rm ID\n"
		"                 (each with --dir DIR|--sock SOCK; create takes --language, -e, -w, -u)\n");
	return EXIT_KILN;
}

static int parse(int argc, char **argv, struct code_opts *o)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' }, { "sock", required_argument, NULL, 's' },
		{ "context", required_argument, NULL, 'c' },
		{ "language", required_argument, NULL, 'l' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "png-dir", required_argument, NULL, 'P' }, { "rich", no_argument, NULL, 'R' },
		{ "env", required_argument, NULL, 'e' }, { "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' }, { "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+e:w:u:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': o->dir = optarg; break;
		case 's': o->sock = optarg; break;
		case 'c': o->context = optarg; break;
		case 'l': o->language = optarg; break;
		case 'P': o->png_dir = optarg; break;
		case 'R': o->rich = true; break;
		case 'w': o->cwd = optarg; break;
		case 'u': o->user = optarg; break;
		case 'T':
			o->timeout_s = strtoul(optarg, &end, 10);
			if (*optarg == '-' || *end || !o->timeout_s || o->timeout_s > 7 * 24 * 3600) {
				fprintf(stderr, "kiln: code: --timeout: '%s' must be 1 to 604800\n",
					optarg);
				return -1;
			}
			break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=' || o->nenv == MAX_ENV) {
				fprintf(stderr, "kiln: code: -e %s: expected NAME=VALUE\n", optarg);
				return -1;
			}
			o->env[o->nenv++] = optarg;
			break;
		default:
			return -1;
		}
	}
	return optind;
}

static int connect_agent(struct code_opts *o, code_sock_fn sock_of_dir)
{
	struct agent_error e = { 0 };
	const char *sock = o->sock;
	int fd;

	if (!sock) {
		if (!o->dir) {
			fprintf(stderr, "kiln: code: need --dir DIR or --sock SOCK\n");
			return -1;
		}
		sock_of_dir(o->dir, o->sockbuf, sizeof(o->sockbuf));
		sock = o->sockbuf;
	}
	fd = agent_connect(sock, PROTO_AGENT_PORT, 30000, &e);
	if (fd < 0)
		fail("", &e);
	return fd;
}

/* The cell's source: the argument, or stdin for "-" or none.  NULL on failure. */
static char *read_code(const char *arg, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf;

	if (arg && strcmp(arg, "-")) {
		*len = strlen(arg);
		return strdup(arg);
	}
	buf = malloc(cap);
	while (buf) {
		ssize_t r = read(STDIN_FILENO, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0) {
				free(buf);
				return NULL;
			}
			*len = n;
			return buf;
		}
		n += r;
		if (n > MAX_CODE) {
			free(buf);
			errno = E2BIG;
			return NULL;
		}
		if (n == cap) {
			char *nb = realloc(buf, cap *= 2);

			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	return NULL;
}

static void save_png(const struct code_opts *o, const struct agent_cell_event *ev)
{
	char path[4096];
	int fd;

	if (!o->png_dir) {
		printf("[image/png: %u bytes; save with --png-dir DIR]\n", ev->len);
		return;
	}
	snprintf(path, sizeof(path), "%s/kiln-XXXXXX.png", o->png_dir);
	fd = mkstemps(path, 4);
	if (fd < 0 || proto_write_all(fd, ev->data, ev->len)) {
		fprintf(stderr, "kiln: code: cannot save a PNG in %s: %s\n", o->png_dir,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	printf("%s\n", path);
}

static void print_result(const struct code_opts *o, const struct agent_cell_event *ev)
{
	if (!strcmp(ev->mime, "image/png")) {
		save_png(o, ev);
	} else if (!strcmp(ev->mime, "text/plain")) {
		fwrite(ev->data, 1, ev->len, stdout);
		putchar('\n');
	} else if (o->rich) {
		bool text = !strncmp(ev->mime, "text/", 5) || !strcmp(ev->mime, "application/json");

		printf("[%s]\n", ev->mime);
		if (text) {
			fwrite(ev->data, 1, ev->len, stdout);
			putchar('\n');
		} else {
			printf("(%u bytes)\n", ev->len);
		}
	}
	fflush(stdout);
}

/* Run one cell on a fresh connection and print what it gives.  Returns the exit status. */
static int run_cell(struct code_opts *o, code_sock_fn sock_of_dir, const char *id,
		    const char *code, size_t len)
{
	struct agent_error e = { 0 };
	struct agent_cell_event ev = { 0 };
	uint8_t *buf = NULL;
	size_t cap = 0;
	int fd = connect_agent(o, sock_of_dir), status = EXIT_KILN;

	if (fd < 0)
		return EXIT_KILN;
	if (agent_context_run(fd, id, code, len, o->timeout_s * 1000, &e)) {
		close(fd);
		return fail("", &e);
	}
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };

		if (interrupted) {
			interrupted = 0;
			agent_send_signal(fd, SIGINT);
		}
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (agent_next_cell_event(fd, &ev, &buf, &cap)) {
			fprintf(stderr, "kiln: code: connection to the guest agent lost\n");
			break;
		}
		if (ev.type == CEV_STDOUT) {
			fwrite(ev.data, 1, ev.len, stdout);
			fflush(stdout);
		} else if (ev.type == CEV_STDERR) {
			fwrite(ev.data, 1, ev.len, stderr);
		} else if (ev.type == CEV_RESULT) {
			print_result(o, &ev);
		} else if (ev.type == CEV_EXCEPTION) {
			if (ev.traceback[0])
				fputs(ev.traceback, stderr);
			else
				fprintf(stderr, "%s: %s\n", ev.ename, ev.evalue);
		} else if (ev.type == CEV_ERROR) {
			status = fail("", &ev.error);
			break;
		} else if (ev.type == CEV_DONE) {
			status = ev.status == CELL_OK ? 0 : ev.status == CELL_ERROR ? 1 :
				 ev.status == CELL_TIMEOUT ? EXIT_TIMEOUT : EXIT_INTERRUPT;
			if (ev.status == CELL_TIMEOUT)
				fprintf(stderr, "kiln: code: the cell timed out after %u s; the "
					"context keeps its state\n", o->timeout_s);
			break;
		}
	}
	agent_cell_event_free(&ev);
	free(buf);
	close(fd);
	return status;
}

static int create(struct code_opts *o, code_sock_fn sock_of_dir, struct agent_context *c)
{
	struct agent_error e = { 0 };
	int fd = connect_agent(o, sock_of_dir), r;

	if (fd < 0)
		return -1;
	r = agent_context_create(fd, o->language, o->cwd, o->user, o->nenv ? o->env : NULL, c, &e);
	close(fd);
	if (r)
		fail("create", &e);
	return r;
}

static int context_op(struct code_opts *o, code_sock_fn sock_of_dir, uint8_t type,
		      const char *id, const char *what)
{
	struct agent_error e = { 0 };
	int fd = connect_agent(o, sock_of_dir), r;

	if (fd < 0)
		return EXIT_KILN;
	r = agent_context_op(fd, type, id, NULL, &e);
	close(fd);
	return r ? fail(what, &e) : 0;
}

static void print_context(const struct agent_context *c, void *unused)
{
	char when[32] = "-";
	time_t t = c->created;
	struct tm tm;

	(void)unused;
	if (c->created && gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%-16s %-8s %-8u %-7s %-20s %s\n", c->id, c->language, c->pid,
	       c->running ? "running" : "dead", when, c->cwd[0] ? c->cwd : "~");
}

static int cmd_contexts(struct code_opts *o, code_sock_fn sock_of_dir, char **args, int n)
{
	struct agent_error e = { 0 };
	struct agent_context c;
	int fd, r;

	if (n == 1 && !strcmp(args[0], "ls")) {
		if ((fd = connect_agent(o, sock_of_dir)) < 0)
			return EXIT_KILN;
		r = agent_context_list(fd, print_context, NULL, &e);
		close(fd);
		return r ? fail("contexts ls", &e) : 0;
	}
	if (n == 1 && !strcmp(args[0], "create")) {
		if (create(o, sock_of_dir, &c))
			return EXIT_KILN;
		printf("%s\n", c.id);
		return 0;
	}
	if (n == 2 && !strcmp(args[0], "restart"))
		return context_op(o, sock_of_dir, MSG_CONTEXT_RESTART, args[1], "restart");
	if (n == 2 && !strcmp(args[0], "interrupt"))
		return context_op(o, sock_of_dir, MSG_CONTEXT_INTERRUPT, args[1], "interrupt");
	if (n == 2 && (!strcmp(args[0], "rm") || !strcmp(args[0], "delete")))
		return context_op(o, sock_of_dir, MSG_CONTEXT_DELETE, args[1], "rm");
	return usage();
}

/* A VM cloned from a warm snapshot has a ready context (template.h): DIR/context. */
static bool default_context(const char *dir, char *id, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/context", dir);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(id, len, f))
		id[0] = 0;
	fclose(f);
	id[strcspn(id, "\n")] = 0;
	return id[0] != 0;
}

int cmd_code(int argc, char **argv, code_sock_fn sock_of_dir)
{
	struct code_opts o = { 0 };
	struct agent_context c;
	struct sigaction sa = { .sa_handler = on_interrupt };
	int i = parse(argc, argv, &o), n, status;
	size_t len;
	char *code, warm[AGENT_CONTEXT_ID_LEN + 2];

	if (i < 0)
		return usage();
	n = argc - i;
	if (n >= 1 && !strcmp(argv[i], "contexts"))
		return cmd_contexts(&o, sock_of_dir, argv + i + 1, n - 1);
	if (n > 1)
		return usage();
	code = read_code(n ? argv[i] : NULL, &len);
	if (!code) {
		fprintf(stderr, "kiln: code: cannot read the code: %s\n",
			errno == E2BIG ? "over 1 MiB" : strerror(errno));
		return EXIT_KILN;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);	/* no SA_RESTART: poll returns, the cell is interrupted */
	if (!o.context && o.dir && default_context(o.dir, warm, sizeof(warm)))
		o.context = warm;
	if (o.context) {
		status = run_cell(&o, sock_of_dir, o.context, code, len);
	} else {
		/* A context for this cell alone. */
		if (create(&o, sock_of_dir, &c)) {
			free(code);
			return EXIT_KILN;
		}
		status = run_cell(&o, sock_of_dir, c.id, code, len);
		context_op(&o, sock_of_dir, MSG_CONTEXT_DELETE, c.id, "rm");
	}
	free(code);
	return status;
}
