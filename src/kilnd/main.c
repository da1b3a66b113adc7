/*
 * main.c - kilnd, the sandbox service: options, the data directory, startup (database,
 * admin key, adopting the VMs of a previous run), then serve until SIGTERM or SIGINT.
 *
 *   kilnd [--socket PATH] [--listen ADDR:PORT] [--data DIR] [--admin-key-file FILE]
 *         [--prices FILE] [--template NAME=ROOTFS]... [--recipes DIR] [-v]
 *
 * See docs/kilnd.md.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/unix_listen.h"
#include "../host/netns_pool.h"
#include "auth.h"
#include "db.h"
#include "http.h"
#include "kilnd.h"
#include "meter.h"
#include "sandbox.h"
#include "templates.h"

struct kilnd_config cfg;

int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void random_id(const char *prefix, char *out, size_t len)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 40);
	snprintf(out, len, "%s%016llx", prefix, (unsigned long long)r);
}

void sandbox_dir(const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", cfg.sandboxes_dir, id);
}

void snapshot_dir(const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/snapshots/%s", cfg.data_dir, id);
}

static void usage(void)
{
	fprintf(stderr, "usage: kilnd [--socket PATH] [--listen ADDR:PORT] [--data DIR]\n"
			"             [--admin-key-file FILE] [--prices FILE]\n"
			"             [--template NAME=ROOTFS]... [--recipes DIR]\n"
			"             [--ingress-addr IPV4] [--net-pool N] [--upstream-ca PEM] [-v]\n");
	exit(2);
}

static void load_prices(const char *path)
{
	char line[512], err[256];
	FILE *f;
	int n = 0;

	prices_default(&cfg.prices);
	if (!path)
		return;
	f = fopen(path, "re");
	if (!f)
		die(2, "--prices %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		n++;
		line[strcspn(line, "\n")] = 0;
		if (prices_parse_line(line, &cfg.prices, err, sizeof(err)))
			die(2, "%s:%d: %s", path, n, err);
	}
	fclose(f);
}

static void add_template(const char *arg)
{
	const char *eq = strchr(arg, '=');
	struct template_def *t;

	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(t->name) || !eq[1])
		die(2, "--template %s: expected NAME=ROOTFS", arg);
	if (cfg.ntemplates == MAX_TEMPLATES)
		die(2, "at most %d --template options", MAX_TEMPLATES);
	t = &cfg.templates[cfg.ntemplates++];
	snprintf(t->name, sizeof(t->name), "%.*s", (int)(eq - arg), arg);
	if (!realpath(eq + 1, t->path))
		die(2, "--template %s: %s", arg, strerror(errno));
}

static void make_dir(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		die(1, "cannot create %s: %s", path, strerror(errno));
}

/* The socket's directory (e.g. /run/kiln) exists. */
static void make_parent(const char *path)
{
	char dir[PATH_MAX], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			die(1, "cannot create %s: %s", dir, strerror(errno));
	}
}

#define DEFAULT_NET_POOL	2	/* started by the first sandbox with a network */

/* --net-pool N: network namespaces kept ready (0 to 256). */
static unsigned pool_size(const char *arg)
{
	char *end;
	unsigned long n = strtoul(arg, &end, 10);

	if (!*arg || *end || n > NETNS_POOL_MAX)
		die(2, "--net-pool %s: a number of namespaces from 0 to %d", arg, NETNS_POOL_MAX);
	return (unsigned)n;
}

/* --ingress-addr: the host address guest ports are exposed on (api_network.c). */
static void ingress_addr(const char *addr)
{
	struct in_addr a;

	if (inet_pton(AF_INET, addr, &a) != 1)
		die(2, "--ingress-addr %s: not an IPv4 address", addr);
	snprintf(cfg.ingress_addr, sizeof(cfg.ingress_addr), "%s", addr);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "data", required_argument, NULL, 'd' },
		{ "admin-key-file", required_argument, NULL, 'a' },
		{ "prices", required_argument, NULL, 'p' },
		{ "template", required_argument, NULL, 't' },
		{ "recipes", required_argument, NULL, 'r' },
		{ "ingress-addr", required_argument, NULL, 'i' },
		{ "net-pool", required_argument, NULL, 'n' },
		{ "upstream-ca", required_argument, NULL, 'u' },
		{ "verbose", no_argument, NULL, 'v' },
		{ 0 }
	};
	const char *sock = "/run/kiln/kilnd.sock", *listen_addr = NULL, *data = "/var/lib/kiln";
	const char *key_file = NULL, *prices = NULL, *recipes = NULL;
	char path[PATH_MAX + 16], err[512];
	sigset_t sigs;
	int c, fd, sig;

	log_init("kilnd");
	cfg.net_pool_size = DEFAULT_NET_POOL;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 's': sock = optarg; break;
		case 'l': listen_addr = optarg; break;
		case 'd': data = optarg; break;
		case 'a': key_file = optarg; break;
		case 'p': prices = optarg; break;
		case 't': add_template(optarg); break;
		case 'r': recipes = optarg; break;
		case 'i': ingress_addr(optarg); break;
		case 'n': cfg.net_pool_size = pool_size(optarg); break;
		case 'u':
			if (!realpath(optarg, cfg.upstream_ca))
				die(2, "--upstream-ca %s: %s", optarg, strerror(errno));
			break;
		case 'v': log_set_verbose(true); break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (!cfg.ingress_addr[0])
		snprintf(cfg.ingress_addr, sizeof(cfg.ingress_addr), "127.0.0.1");
	load_prices(prices);
	make_dir(data);
	if (!realpath(data, cfg.data_dir))
		die(1, "%s: %s", data, strerror(errno));
	snprintf(cfg.sandboxes_dir, sizeof(cfg.sandboxes_dir), "%s/sandboxes", cfg.data_dir);
	make_dir(cfg.sandboxes_dir);
	templates_init(recipes);

	snprintf(path, sizeof(path), "%s/admin.key", cfg.data_dir);
	if (auth_load_admin(key_file ? key_file : path, !key_file, err, sizeof(err)))
		die(1, "%s", err);
	snprintf(path, sizeof(path), "%s/kilnd.db", cfg.data_dir);
	if (db_open(path, err, sizeof(err)))
		die(1, "database: %s", err);

	/* Threads inherit this mask: only the main thread takes SIGTERM and SIGINT. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	sandbox_adopt_all();
	make_parent(sock);
	fd = unix_listen(sock, 128, err, sizeof(err));
	if (fd < 0)
		die(1, "%s", err);
	chmod(sock, 0600);	/* the socket is the trust boundary for local callers */
	if (http_start(fd, listen_addr, err, sizeof(err)))
		die(1, "%s", err);
	if (meter_start())
		die(1, "cannot start the meter");
	log_info("serving on %s%s%s, data in %s", sock, listen_addr ? " and " : "",
		 listen_addr ? listen_addr : "", cfg.data_dir);

	sigwait(&sigs, &sig);
	log_info("signal %d: stopping (sandboxes keep running)", sig);
	processes_stop();
	http_stop();
	meter_stop();
	sandbox_stop_pool();
	db_close();
	unlink(sock);
	return 0;
}
