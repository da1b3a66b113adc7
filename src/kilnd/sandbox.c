/*
 * sandbox.c - see sandbox.h.
 */
#include "sandbox.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/log.h"
#include "../host/egress.h"
#include "../host/netns.h"
#include "../host/netns_pool.h"
#include "../host/template.h"
#include "../host/vmctl.h"
#include "db.h"
#include "network.h"
#include "templates.h"

int template_rootfs(const char *name, char *path, size_t len)
{
	for (int i = 0; i < cfg.ntemplates; i++)
		if (!strcmp(cfg.templates[i].name, name)) {
			snprintf(path, len, "%s", cfg.templates[i].path);
			return access(path, R_OK);
		}
	if (template_built(name, path, len) == 0)
		return 0;
	return image_path(name, path, len);
}

/* a's strings, then b's, in one NULL-terminated vector; a and b are emptied into it (the
 * strings move, the vectors are freed).  NULL when both are NULL or out of memory. */
static char **strv_join(char **a, char **b)
{
	size_t na = 0, nb = 0;
	char **v;

	while (a && a[na])
		na++;
	while (b && b[nb])
		nb++;
	if (!na && !nb) {
		free(a);
		free(b);
		return NULL;
	}
	v = calloc(na + nb + 1, sizeof(*v));
	if (v) {
		memcpy(v, a ? a : v, na * sizeof(*v));
		memcpy(v + na, b ? b : v, nb * sizeof(*v));
		free(a);
		free(b);
	} else {
		strv_free(a);
		strv_free(b);
	}
	return v;
}

/*
 * Give the guest its sandbox id as hostname and id, and its environment: the create request's,
 * then, for a network with secrets, the placeholders and CA variables (egress.h), which win.
 * An IDENTITY with an id replaces the guest's whole environment, so both go in one.
 */
static int set_identity(const char *dir, const char *id, json_t *env, struct agent_error *e)
{
	char sock[PATH_MAX];
	char **envv = env ? env_strv(env) : NULL, **egress = NULL;
	int fd, ret = -1;

	if (egress_has_secrets(dir)) {
		egress = egress_guest_env(dir, e->message, sizeof(e->message));
		if (!egress) {
			strv_free(envv);
			return -1;
		}
	}
	envv = strv_join(envv, egress);
	vm_sock_path(dir, sock, sizeof(sock));
	fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, e);
	if (fd >= 0) {
		ret = agent_set_identity(fd, id, id, envv, e);
		close(fd);
	}
	strv_free(envv);
	return ret;
}

/* Clone the warm snapshot if there is a usable one, else boot (as `kiln up`).  A sandbox
 * with a network clones one warmed with a NIC (its key says so), its own rate limit and
 * capture given to the restored NIC (vm_clone). */
static int start_vm(const char *dir, const struct vm_spec *spec, struct agent_error *e)
{
	struct vm_spec boot = *spec;
	char snap[PATH_MAX];

	if (template_find(spec, snap, sizeof(snap)) == 0) {
		if (template_clone(dir, snap, spec, e) == 0)
			return 0;
		log_warn("warm snapshot %s: %s; booting instead", snap, e->message);
		vm_down(dir);			/* the pool's namespace went with it */
		*e = (struct agent_error){ 0 };
		boot.net_ns = NULL;		/* vm_up makes one with the same policy */
	}
	return vm_up(dir, &boot, e);
}

/* A create_req naming a snapshot takes its template and shape from it.  A guest cannot gain
 * or lose its NIC, so a snapshot taken with a network makes sandboxes with one (their own
 * policy, namespace and secrets; same address and MACs everywhere, as for warm clones), and
 * one taken without makes sandboxes without. */
static int from_snapshot(const struct agent *a, struct create_req *r, char *snap_dir, size_t len,
			 struct api_error *e)
{
	struct snapshot sn;

	if (!r->snapshot[0])
		return 0;
	if (db_snapshot_get(r->snapshot, a->id, &sn))
		return api_fail(e, 404, "not_found", "snapshot", "snapshot: no snapshot %s",
				r->snapshot);
	if (sn.network && !r->network)
		return api_fail(e, 400, "invalid_argument", "network", "network: snapshot %s was "
				"taken with a network, so a sandbox made from it needs one",
				r->snapshot);
	if (!sn.network && r->network)
		return api_fail(e, 400, "invalid_argument", "network", "network: snapshot %s was "
				"taken without a network (its guest has no NIC), so a sandbox made "
				"from it cannot have one", r->snapshot);
	snprintf(r->template, sizeof(r->template), "%s", sn.template);
	r->cpus = sn.cpus;
	r->memory_mib = sn.memory_mib;
	snapshot_dir(sn.id, snap_dir, len);
	return 0;
}

int write_private_file(const char *text, const char *what, char *path, size_t len)
{
	size_t n = strlen(text);
	int fd;

	snprintf(path, len, "%s/.%s-XXXXXX", cfg.data_dir, what);
	fd = mkstemp(path);		/* mode 0600 */
	if (fd < 0)
		return -1;
	if (write(fd, text, n) != (ssize_t)n || fsync(fd) < 0) {
		close(fd);
		unlink(path);
		return -1;
	}
	return close(fd);
}

static struct netns_pool *pool;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;

/* The namespace pool, started by the first sandbox that wants a network: a kilnd whose
 * agents never ask for one never builds a namespace.  NULL without a pool (then takes make
 * one on the spot). */
static struct netns_pool *net_pool(void)
{
	static bool tried;
	char dir[PATH_MAX], err[256];

	pthread_mutex_lock(&pool_mu);
	if (!tried && cfg.net_pool_size) {
		tried = true;
		snprintf(dir, sizeof(dir), "%s/net-pool", cfg.data_dir);
		pool = netns_pool_start(dir, cfg.net_pool_size, err, sizeof(err));
		if (!pool)
			log_warn("network namespace pool: %s; making namespaces on demand", err);
	}
	pthread_mutex_unlock(&pool_mu);
	return pool;
}

char *sandbox_metrics(void)
{
	struct netns_pool_stats st = { 0 };
	char *db = db_metrics(), *out = NULL;

	pthread_mutex_lock(&pool_mu);
	if (pool)
		netns_pool_stats(pool, &st);
	pthread_mutex_unlock(&pool_mu);
	if (db && asprintf(&out, "%s# HELP kilnd_netns_pool_ready Network namespaces ready.\n"
			   "# TYPE kilnd_netns_pool_ready gauge\nkilnd_netns_pool_ready %u\n"
			   "# HELP kilnd_netns_pool_takes_total Namespaces taken: from the pool "
			   "(hit) or made on the spot (miss).\n"
			   "# TYPE kilnd_netns_pool_takes_total counter\n"
			   "kilnd_netns_pool_takes_total{from=\"pool\"} %llu\n"
			   "kilnd_netns_pool_takes_total{from=\"new\"} %llu\n", db, st.ready,
			   (unsigned long long)st.hits, (unsigned long long)st.misses) < 0)
		out = NULL;
	free(db);
	return out;
}

void sandbox_stop_pool(void)
{
	pthread_mutex_lock(&pool_mu);
	if (pool)
		netns_pool_stop(pool, true);
	pool = NULL;
	pthread_mutex_unlock(&pool_mu);
}

/* The vm_spec fields of a network: a namespace with its nftables policy from the pool (in
 * ns: vm_up owns it from here, vm_down destroys it), the egress policy and the secrets in
 * private files named in files[0] and files[1] for egress.c (the caller removes them). */
static int network_spec(const struct net_config *net, const char *dir, struct vm_spec *spec,
			char ns[NETNS_NAME_MAX], char pcap[PATH_MAX], char files[2][PATH_MAX],
			struct api_error *e)
{
	char why[256];

	if (write_private_file(net->policy, "policy", files[0], PATH_MAX))
		return api_fail(e, 500, "internal", NULL, "cannot write the egress policy: %s",
				strerror(errno));
	if (netns_pool_take(net_pool(), net->allow_cidrs, true, ns, NETNS_NAME_MAX, why,
			    sizeof(why))) {
		unlink(files[0]);
		files[0][0] = 0;
		return api_fail(e, 500, "network_failed", NULL, "network: %s", why);
	}
	if (net->secrets && write_private_file(net->secrets, "secrets", files[1], PATH_MAX)) {
		netns_pool_put(net_pool(), ns);
		unlink(files[0]);
		files[0][0] = 0;
		return api_fail(e, 500, "internal", NULL, "cannot write the secrets: %s",
				strerror(errno));
	}
	spec->net_secrets = net->secrets ? files[1] : NULL;
	spec->net_upstream_ca = net->secrets && cfg.upstream_ca[0] ? cfg.upstream_ca : NULL;
	spec->net_ns = ns;
	spec->net = true;
	spec->net_allow = net->allow_cidrs;
	spec->net_rate = net->rate_bps;
	spec->net_policy = files[0];
	if (net->capture) {
		snprintf(pcap, PATH_MAX, "%s/" SANDBOX_PCAP, dir);
		spec->net_pcap = pcap;
	}
	return 0;
}

static int create(const struct agent *a, const struct create_req *req,
		  const struct net_config *net, json_t **out, struct api_error *e)
{
	char given[PATH_MAX], img[PATH_MAX], dir[PATH_MAX], snap[PATH_MAX] = "", *md = NULL;
	char pcap[PATH_MAX], files[2][PATH_MAX] = { "", "" }, ns[NETNS_NAME_MAX];
	struct agent_error ae = { 0 };
	struct sandbox s = { 0 };
	struct create_req rq = *req, *r = &rq;
	struct vm_spec spec;
	int64_t now = now_ms();
	int ret;

	if (from_snapshot(a, r, snap, sizeof(snap), e))
		return -1;

	if (r->cpus > a->max_cpus)
		return api_fail(e, 403, "quota_exceeded", "cpus",
				"cpus: this agent may use at most %u vCPUs per sandbox", a->max_cpus);
	if (r->memory_mib > a->max_memory_mib)
		return api_fail(e, 403, "quota_exceeded", "memory_mib",
				"memory_mib: this agent may use at most %u MiB per sandbox",
				a->max_memory_mib);
	if (template_rootfs(r->template, given, sizeof(given)) || !realpath(given, img))
		return api_fail(e, 400, "invalid_argument", "template",
				"template: no template named '%s'", r->template);
	if (db_balance(a->id) <= 0)
		return api_fail(e, 402, "payment_required", NULL,
				"the agent's wallet is empty: credit it to create sandboxes");
	random_id("sb-", s.id, sizeof(s.id));
	snprintf(s.template, sizeof(s.template), "%s", r->template);
	s.cpus = r->cpus;
	s.memory_mib = r->memory_mib;
	s.created_at = now;
	s.expires_at = now + (int64_t)r->timeout_s * 1000;
	s.timeout_s = r->timeout_s;
	s.pause_on_timeout = r->pause_on_timeout;
	if (r->metadata)
		md = json_dumps(r->metadata, JSON_COMPACT | JSON_SORT_KEYS);
	if (db_sandbox_insert(a, &s, md, e)) {
		free(md);
		return -1;
	}
	free(md);
	spec = (struct vm_spec){ .rootfs = img, .cpus = r->cpus, .memory_mib = r->memory_mib,
				 .scratch_mib = SANDBOX_SCRATCH_MIB, .hostname = s.id };
	/* Warm snapshots are named after the template (as `kiln warm --image NAME` names them),
	 * not the file: --template paths are real paths, and every cached image is root.ext4. */
	snprintf(spec.name, sizeof(spec.name), "%s", r->template);
	sandbox_dir(s.id, dir, sizeof(dir));
	if (net && (db_set_network(s.id, net->record) ||
		    network_spec(net, dir, &spec, ns, pcap, files, e))) {
		if (!e->status)
			api_fail(e, 500, "internal", NULL, "cannot record the network");
		db_transition(s.id, "creating", "failed", e->message);
		return -1;
	}
	ret = snap[0] ? vm_clone(dir, snap, &spec, &ae) : start_vm(dir, &spec, &ae);
	for (int i = 0; i < 2; i++)
		if (files[i][0])
			unlink(files[i]);	/* copied or turned into the proxy's by now */
	if (ret || set_identity(dir, s.id, r->env, &ae)) {
		vm_down(dir);
		db_transition(s.id, "creating", "failed", ae.message);
		return api_fail(e, 500, "create_failed", NULL, "the sandbox did not start: %s",
				ae.message);
	}
	/* Still "creating", so the meter cannot expire it before this lands. */
	if (r->timeout_from_ready)
		db_set_expiry(s.id, now_ms() + (int64_t)r->timeout_s * 1000);
	if (!db_transition(s.id, "creating", "running", NULL)) {
		vm_down(dir);
		return api_fail(e, 500, "internal", NULL, "the sandbox record changed while starting");
	}
	db_count_create();
	*out = db_sandbox_json(s.id);
	return 0;
}

int sandbox_create(const struct agent *a, const struct create_req *req, json_t **out,
		   struct api_error *e)
{
	struct net_config net = { 0 };
	json_t *agent_secrets, *merged = NULL;
	int ret;

	if (req->network) {
		/* The agent's registered secrets join the sandbox's own (api_secrets.c). */
		agent_secrets = db_secrets_json(a->id, NULL, true);
		ret = net_merge_agent_secrets(req->network, agent_secrets, &merged, e);
		json_decref(agent_secrets);
		if (ret || net_config_parse(merged, false, NULL, &net, e)) {
			json_decref(merged);
			return -1;
		}
		json_decref(merged);
	}
	ret = create(a, req, req->network ? &net : NULL, out, e);
	net_config_free(&net);
	return ret;
}

static bool network_of(const char *id)
{
	json_t *net = db_network_json(id);

	json_decref(net);
	return net != NULL;
}

static int conflict(const struct sandbox *s, const char *what, struct api_error *e)
{
	return api_fail(e, 409, "invalid_state", NULL, "cannot %s a sandbox that is %s", what,
			s->state);
}

/*
 * Snapshot a running sandbox into DATA/snapshots/ID: kiln-vmm pauses the guest, writes its
 * state, memory and a copy of its disk, and we resume it.  The sandbox keeps running.
 */
int sandbox_snapshot(const struct sandbox *s, json_t **out, struct api_error *e)
{
	struct agent_error ae = { 0 };
	struct snapshot sn = { 0 };
	char dir[PATH_MAX], snap[PATH_MAX], cmd[PATH_MAX + 16], reply[256];

	if (strcmp(s->state, "running"))
		return conflict(s, "snapshot", e);
	/* Only the NIC is kept: no policy, namespace or secret (which never enter the guest:
	 * a clone gets its own CA and placeholders, egress_guest.c). */
	sn.network = network_of(s->id);
	random_id("snap-", sn.id, sizeof(sn.id));
	snapshot_dir(sn.id, snap, sizeof(snap));
	snprintf(cmd, sizeof(cmd), "%s/snapshots", cfg.data_dir);
	mkdir(cmd, 0700);
	sandbox_dir(s->id, dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd), "snapshot %s", snap);
	if (vm_control(dir, cmd, reply, sizeof(reply), &ae)) {
		vm_control(dir, "resume", reply, sizeof(reply), &(struct agent_error){ 0 });
		remove_tree(snap);
		return api_fail(e, 500, "snapshot_failed", NULL, "snapshot: %s", ae.message);
	}
	/* The snapshot leaves the guest paused; it has to run again whatever happens next. */
	if (vm_control(dir, "resume", reply, sizeof(reply), &ae)) {
		db_transition(s->id, "running", "lost", ae.message);
		remove_tree(snap);
		return api_fail(e, 500, "snapshot_failed", NULL, "resume after snapshot: %s",
				ae.message);
	}
	snprintf(sn.agent_id, sizeof(sn.agent_id), "%s", s->agent_id);
	snprintf(sn.sandbox_id, sizeof(sn.sandbox_id), "%s", s->id);
	snprintf(sn.template, sizeof(sn.template), "%s", s->template);
	sn.cpus = s->cpus;
	sn.memory_mib = s->memory_mib;
	sn.created_at = now_ms();
	if (db_snapshot_insert(&sn)) {
		remove_tree(snap);
		return api_fail(e, 500, "internal", NULL, "cannot record the snapshot");
	}
	*out = db_snapshot_json(&sn);
	return 0;
}

int sandbox_snapshot_delete(const struct snapshot *sn, struct api_error *e)
{
	char snap[PATH_MAX];

	if (db_snapshot_delete(sn->id))
		return api_fail(e, 404, "not_found", NULL, "no snapshot %s", sn->id);
	snapshot_dir(sn->id, snap, sizeof(snap));
	remove_tree(snap);
	return 0;
}

int sandbox_pause(const struct sandbox *s, const char *reason, struct api_error *e)
{
	struct agent_error ae = { 0 };
	char dir[PATH_MAX];

	if (!db_transition(s->id, "running", "pausing", reason))
		return conflict(s, "pause", e);
	sandbox_dir(s->id, dir, sizeof(dir));
	if (vm_pause(dir, &ae)) {
		/* kiln-vmm resumed the guest if the snapshot failed; if it is gone, say so. */
		if (vm_pid(dir))
			db_transition(s->id, "pausing", "running", NULL);
		else
			db_transition(s->id, "pausing", "lost", ae.message);
		return api_fail(e, 500, "pause_failed", NULL, "pause: %s", ae.message);
	}
	db_transition(s->id, "pausing", "paused", reason);
	return 0;
}

int sandbox_resume(const struct sandbox *s, struct api_error *e)
{
	struct agent_error ae = { 0 };
	char dir[PATH_MAX];

	struct agent a;

	if (db_balance(s->agent_id) <= 0)
		return api_fail(e, 402, "payment_required", NULL,
				"the agent's wallet is empty: credit it to resume sandboxes");
	/* A paused sandbox holds no memory; running again counts against the quota. */
	if (strcmp(s->state, "paused") == 0 && db_agent_get(s->agent_id, &a) == 0 &&
	    db_memory_quota(&a, s->memory_mib, e))
		return -1;
	if (!db_transition(s->id, "paused", "resuming", NULL))
		return conflict(s, "resume", e);
	sandbox_dir(s->id, dir, sizeof(dir));
	if (vm_resume(dir, &ae)) {
		db_transition(s->id, "resuming", "paused", ae.message);
		return api_fail(e, 500, "resume_failed", NULL, "resume: %s", ae.message);
	}
	/* A sandbox that pauses on timeout gets its whole timeout again. */
	if (s->pause_on_timeout)
		db_set_expiry(s->id, now_ms() + (int64_t)s->timeout_s * 1000);
	db_transition(s->id, "resuming", "running", NULL);
	return 0;
}

int sandbox_delete(const struct sandbox *s, struct api_error *e)
{
	char dir[PATH_MAX];

	if (!db_transition(s->id, "running|paused", "deleting", NULL))
		return conflict(s, "delete", e);
	sandbox_dir(s->id, dir, sizeof(dir));
	vm_down(dir);
	db_transition(s->id, "deleting", "deleted", NULL);
	return 0;
}

void sandbox_expire(const struct sandbox *s)
{
	struct api_error e;
	char dir[PATH_MAX];

	if (s->pause_on_timeout) {
		/* Paused on disk, it waits for a resume however long it takes. */
		if (strcmp(s->state, "running"))
			return;
		log_info("sandbox %s: timeout, pausing it", s->id);
		if (sandbox_pause(s, "timeout", &e))
			log_warn("sandbox %s: %s", s->id, e.message);
		return;
	}
	if (!db_transition(s->id, "running|paused", "deleting", "timeout"))
		return;
	log_info("sandbox %s: timeout, stopping it", s->id);
	sandbox_dir(s->id, dir, sizeof(dir));
	vm_down(dir);
	db_transition(s->id, "deleting", "expired", "timeout");
}

/* The VMM of dir runs, reaping it first if it is our child and has exited. */
static bool vmm_alive(const char *dir)
{
	pid_t pid = vm_pid(dir);

	if (pid && waitpid(pid, NULL, WNOHANG) == pid)
		return false;
	return pid && vm_pid(dir) == pid;
}

bool sandbox_check_alive(const struct sandbox *s)
{
	char dir[PATH_MAX];

	sandbox_dir(s->id, dir, sizeof(dir));
	if (vmm_alive(dir))
		return true;
	if (db_transition(s->id, "running", "lost", "the VMM exited"))
		log_warn("sandbox %s: its VMM exited; marked lost", s->id);
	return false;
}

static bool paused_on_disk(const char *dir)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/paused/state", dir);
	return access(path, F_OK) == 0;
}

/* Decide what a sandbox found at startup is now. */
static void adopt(const struct sandbox *s, void *ctx)
{
	char dir[PATH_MAX];
	bool alive, paused;

	(void)ctx;
	sandbox_dir(s->id, dir, sizeof(dir));
	alive = vmm_alive(dir);
	paused = paused_on_disk(dir);
	if (!strcmp(s->state, "running") && alive) {
		/* The VM ran while kilnd was down: that time is metered now, then metering goes on. */
		db_transition(s->id, "running", "running", NULL);
		log_info("sandbox %s: adopted", s->id);
	} else if (!strcmp(s->state, "paused") && !alive && paused) {
		log_info("sandbox %s: paused, kept", s->id);
	} else if ((!strcmp(s->state, "pausing") || !strcmp(s->state, "resuming")) && alive) {
		db_transition(s->id, s->state, "running", "kilnd restarted during a pause or resume");
	} else if ((!strcmp(s->state, "pausing") || !strcmp(s->state, "resuming")) && paused) {
		db_transition(s->id, s->state, "paused", "kilnd restarted during a pause or resume");
	} else if (!strcmp(s->state, "deleting")) {
		vm_down(dir);
		db_transition(s->id, "deleting", "deleted", "deleted while kilnd restarted");
	} else {
		char reason[128];

		snprintf(reason, sizeof(reason), "kilnd restarted: the sandbox was %s and %s",
			 s->state, alive ? "its VMM still ran (stopped)" : "its VMM was gone");
		if (alive)
			vm_down(dir);
		db_transition(s->id, s->state, "lost", reason);
		log_warn("sandbox %s: %s", s->id, reason);
	}
}

void sandbox_adopt_all(void)
{
	db_each_sandbox("creating|running|pausing|paused|resuming|deleting", adopt, NULL);
}
