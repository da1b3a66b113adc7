/*
 * api_templates.c - /v1/templates: list and describe templates (their root image, whether it
 * is built, the warm snapshots held for it), build one from its recipe, warm a snapshot of it,
 * drop its warm snapshots.  See templates.h and docs/kilnd.md.
 *
 * Builds (images/build, minutes: debootstrap and apt) and warms (a boot, the image's warmup,
 * a snapshot) run as jobs on threads of their own; the request that starts one is answered
 * 202 with the job's record at once, and GET .../build or .../warm shows how it went.  Job
 * records live in memory (the last MAX_JOBS): a restart of kilnd forgets them, not what they
 * made, which is on disk (the image, the snapshot, the build log in DATA/jobs/).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../host/template.h"
#include "../host/vmctl.h"
#include "http.h"
#include "sandbox.h"
#include "templates.h"

#define MAX_JOBS	64
#define LOG_TAIL	4096	/* bytes of a build log shown in its record */
#define MAX_NAMES	512	/* templates listed */

enum job_kind { JOB_BUILD, JOB_WARM };

struct job {
	bool used;
	enum job_kind kind;
	char id[32];
	char template[64];
	char state[16];			/* running, succeeded, failed */
	char reason[512];		/* why it failed */
	char log[PATH_MAX];		/* a build's images/build output */
	char result[PATH_MAX];		/* the image or snapshot made */
	unsigned cpus, memory_mib;	/* a warm's shape */
	bool net;			/* a warm with a NIC, for sandboxes with a network */
	int64_t started_at, finished_at;
};

static struct job jobs[MAX_JOBS];
static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;

static void make_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die(1, "cannot create %s: %s", path, strerror(errno));
}

/* The directory kilnd runs from (build/). */
static void exe_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	buf[n > 0 ? n : 0] = 0;
	slash = strrchr(buf, '/');
	if (slash)
		*slash = 0;
}

void templates_init(const char *recipes_dir)
{
	char dir[PATH_MAX], jobs_dir[PATH_MAX + 8], given[PATH_MAX + 16];

	exe_dir(dir, sizeof(dir));
	snprintf(given, sizeof(given), "%s/../images", dir);
	if (recipes_dir)
		snprintf(given, sizeof(given), "%s", recipes_dir);
	/* No recipes directory is not fatal: templates still come from images already built. */
	if (!realpath(given, cfg.recipes_dir))
		snprintf(cfg.recipes_dir, sizeof(cfg.recipes_dir), "%s", given);
	snprintf(cfg.images_dir, sizeof(cfg.images_dir), "%s/images", cfg.data_dir);
	make_dir(cfg.images_dir);
	snprintf(jobs_dir, sizeof(jobs_dir), "%s/jobs", cfg.data_dir);
	make_dir(jobs_dir);
}

bool template_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 || name[0] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_'))
			return false;
	return true;
}

int template_built(const char *name, char *path, size_t len)
{
	if (!template_name_ok(name))
		return -1;
	snprintf(path, len, "%s/%s.ext4", cfg.images_dir, name);
	return access(path, R_OK);
}

static bool is_registered(const char *name)
{
	for (int i = 0; i < cfg.ntemplates; i++)
		if (!strcmp(cfg.templates[i].name, name))
			return true;
	return false;
}

static bool has_recipe(const char *name)
{
	char path[PATH_MAX + 80];

	snprintf(path, sizeof(path), "%s/%s/recipe", cfg.recipes_dir, name);
	return template_name_ok(name) && access(path, R_OK) == 0;
}

/* -- the image and warm snapshots of a template --------------------------------------- */

/* The vm_spec a create of this template and shape uses (sandbox.c), so warm keys match. */
struct tspec {
	struct vm_spec spec;
	char given[PATH_MAX], image[PATH_MAX];
};

static int template_spec(const char *name, unsigned cpus, unsigned memory_mib, struct tspec *t)
{
	memset(t, 0, sizeof(*t));
	if (template_rootfs(name, t->given, sizeof(t->given)) || !realpath(t->given, t->image))
		return -1;
	t->spec.rootfs = t->image;
	t->spec.cpus = cpus;
	t->spec.memory_mib = memory_mib;
	t->spec.scratch_mib = SANDBOX_SCRATCH_MIB;
	snprintf(t->spec.name, sizeof(t->spec.name), "%s", name);
	return 0;
}

static void add_snapshot(const char *dir, const struct vm_spec *shape, void *ctx)
{
	char path[PATH_MAX + 16], when[32];
	struct stat st;

	snprintf(path, sizeof(path), "%s/state", dir);
	if (stat(path, &st))
		st.st_mtime = 0;
	json_array_append_new(ctx, json_pack("{s:i, s:i, s:b, s:s, s:s}", "cpus", shape->cpus,
					     "memory_mib", shape->memory_mib, "network", shape->net,
					     "path", dir, "created_at",
					     iso_time((int64_t)st.st_mtime * 1000, when,
						      sizeof(when))));
}

static const char *job_kind_name(enum job_kind k)
{
	return k == JOB_BUILD ? "build" : "warm";
}

/* The last LOG_TAIL bytes of a log, from a line start, non-ASCII bytes as '?'. */
static json_t *log_tail(const char *path)
{
	char buf[LOG_TAIL + 1], *start = buf;
	ssize_t n = 0;
	off_t size;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return json_null();
	size = lseek(fd, 0, SEEK_END);
	if (size > LOG_TAIL && lseek(fd, size - LOG_TAIL, SEEK_SET) >= 0)
		start = NULL;
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, LOG_TAIL);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	if (!start) {
		start = strchr(buf, '\n');
		start = start ? start + 1 : buf;
	}
	for (char *p = start; *p; p++)
		if ((unsigned char)*p >= 0x80 || ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t'))
			*p = '?';
	return json_string(start);
}

/* A job's record (call with jobs_lock held). */
static json_t *job_json(const struct job *j)
{
	char started[32], finished[32];
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", j->id, "kind",
			      job_kind_name(j->kind), "template", j->template, "state", j->state,
			      "started_at", iso_time(j->started_at, started, sizeof(started)));

	json_object_set_new(o, "finished_at", j->finished_at ?
			    json_string(iso_time(j->finished_at, finished, sizeof(finished))) :
			    json_null());
	json_object_set_new(o, "reason", j->reason[0] ? json_string(j->reason) : json_null());
	json_object_set_new(o, "result", j->result[0] ? json_string(j->result) : json_null());
	if (j->kind == JOB_WARM) {
		json_object_set_new(o, "cpus", json_integer(j->cpus));
		json_object_set_new(o, "memory_mib", json_integer(j->memory_mib));
		json_object_set_new(o, "network", json_boolean(j->net));
	} else {
		json_object_set_new(o, "log_tail", log_tail(j->log));
	}
	return o;
}

/* The newest job of a template and kind, or NULL (jobs_lock held). */
static struct job *last_job(const char *name, enum job_kind kind)
{
	struct job *best = NULL;

	for (int i = 0; i < MAX_JOBS; i++) {
		struct job *j = &jobs[i];

		if (j->used && j->kind == kind && !strcmp(j->template, name) &&
		    (!best || j->started_at >= best->started_at))
			best = j;
	}
	return best;
}

static json_t *last_job_json(const char *name, enum job_kind kind)
{
	json_t *o;

	pthread_mutex_lock(&jobs_lock);
	o = last_job(name, kind) ? job_json(last_job(name, kind)) : json_null();
	pthread_mutex_unlock(&jobs_lock);
	return o;
}

static bool known(const char *name)
{
	char path[PATH_MAX];
	bool any;

	if (is_registered(name) || has_recipe(name) || template_rootfs(name, path, sizeof(path)) == 0)
		return true;
	pthread_mutex_lock(&jobs_lock);
	any = last_job(name, JOB_BUILD) || last_job(name, JOB_WARM);
	pthread_mutex_unlock(&jobs_lock);
	return any;
}

static const char *source_of(const char *name)
{
	char path[PATH_MAX];

	if (is_registered(name))
		return "registered";
	if (template_built(name, path, sizeof(path)) == 0)
		return "api";
	return "make";
}

static json_t *template_json(const char *name)
{
	json_t *o = json_pack("{s:s, s:b}", "name", name, "recipe", has_recipe(name));
	json_t *warm = json_array();
	struct tspec t;
	struct stat st;

	if (template_spec(name, 1, MIN_MEMORY_MIB, &t) == 0 && stat(t.image, &st) == 0) {
		json_object_set_new(o, "built", json_true());
		json_object_set_new(o, "source", json_string(source_of(name)));
		json_object_set_new(o, "image", json_string(t.image));
		json_object_set_new(o, "image_bytes", json_integer(st.st_size));
		template_each(&t.spec, add_snapshot, warm);
	} else {
		json_object_set_new(o, "built", json_false());
		json_object_set_new(o, "source", json_null());
		json_object_set_new(o, "image", json_null());
		json_object_set_new(o, "image_bytes", json_null());
	}
	json_object_set_new(o, "warm_snapshots", warm);
	json_object_set_new(o, "last_build", last_job_json(name, JOB_BUILD));
	json_object_set_new(o, "last_warm", last_job_json(name, JOB_WARM));
	return o;
}

/* -- listing ---------------------------------------------------------------------------- */

struct names {
	char *v[MAX_NAMES];
	int n;
};

static void add_name(struct names *ns, const char *name)
{
	if (!template_name_ok(name) || ns->n == MAX_NAMES)
		return;
	for (int i = 0; i < ns->n; i++)
		if (!strcmp(ns->v[i], name))
			return;
	ns->v[ns->n] = strdup(name);
	if (ns->v[ns->n])
		ns->n++;
}

/* Names from a directory: entries with a recipe file, or NAME.ext4 files. */
static void add_dir(struct names *ns, const char *dir, bool recipes)
{
	struct dirent *d;
	DIR *dp = opendir(dir);

	if (!dp)
		return;
	while ((d = readdir(dp))) {
		char name[NAME_MAX + 1];
		size_t n = strlen(d->d_name);

		if (recipes) {
			if (has_recipe(d->d_name))
				add_name(ns, d->d_name);
			continue;
		}
		if (n <= 5 || strcmp(d->d_name + n - 5, ".ext4"))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(n - 5), d->d_name);
		add_name(ns, name);
	}
	closedir(dp);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static json_t *list_json(void)
{
	char dir[PATH_MAX], make_images[PATH_MAX + 8];
	struct names ns = { .n = 0 };
	json_t *list = json_array();

	for (int i = 0; i < cfg.ntemplates; i++)
		add_name(&ns, cfg.templates[i].name);
	add_dir(&ns, cfg.recipes_dir, true);
	add_dir(&ns, cfg.images_dir, false);
	exe_dir(dir, sizeof(dir));
	snprintf(make_images, sizeof(make_images), "%s/images", dir);
	add_dir(&ns, make_images, false);
	qsort(ns.v, ns.n, sizeof(ns.v[0]), by_name);
	for (int i = 0; i < ns.n; i++) {
		json_array_append_new(list, template_json(ns.v[i]));
		free(ns.v[i]);
	}
	return json_pack("{s:o}", "templates", list);
}

/* -- jobs ------------------------------------------------------------------------------- */

/*
 * A slot for a new job of this template and kind: none may be running already (409), and the
 * oldest finished record makes room when all are taken (503 when every slot is running).
 */
static struct job *job_new(const char *name, enum job_kind kind, struct api_error *e)
{
	struct job *j = last_job(name, kind), *slot = NULL;

	if (j && !strcmp(j->state, "running")) {
		api_fail(e, 409, "invalid_state", NULL, "a %s of template %s is already running (%s)",
			 job_kind_name(kind), name, j->id);
		return NULL;
	}
	for (int i = 0; i < MAX_JOBS; i++) {
		j = &jobs[i];
		if (!j->used) {
			slot = j;
			break;
		}
		if (strcmp(j->state, "running") && (!slot || j->started_at < slot->started_at))
			slot = j;
	}
	if (!slot) {
		api_fail(e, 503, "busy", NULL, "%d template jobs are running; try later", MAX_JOBS);
		return NULL;
	}
	memset(slot, 0, sizeof(*slot));
	slot->used = true;
	slot->kind = kind;
	random_id(kind == JOB_BUILD ? "bld-" : "wrm-", slot->id, sizeof(slot->id));
	snprintf(slot->template, sizeof(slot->template), "%s", name);
	snprintf(slot->state, sizeof(slot->state), "running");
	slot->started_at = now_ms();
	return slot;
}

static void job_finish(struct job *j, const char *result, const char *reason)
{
	pthread_mutex_lock(&jobs_lock);
	snprintf(j->state, sizeof(j->state), "%s", reason ? "failed" : "succeeded");
	snprintf(j->reason, sizeof(j->reason), "%s", reason ? reason : "");
	snprintf(j->result, sizeof(j->result), "%s", result ? result : "");
	j->finished_at = now_ms();
	/* Under the lock: once finished, the slot may be reused by the next job. */
	log_info("template %s: %s %s %s%s", j->template, job_kind_name(j->kind), j->id,
		 reason ? "failed: " : "succeeded", reason ? reason : "");
	pthread_mutex_unlock(&jobs_lock);
}

/* The last line of the log that images/build wrote about itself (its `die` message). */
static void build_reason(const char *log, int status, char *out, size_t len)
{
	char line[512], last[512] = "";
	FILE *f = fopen(log, "re");

	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "images/build: ", 14))
			snprintf(last, sizeof(last), "%s", line + 14);
	}
	if (f)
		fclose(f);
	if (WIFEXITED(status))
		snprintf(out, len, "images/build exited with status %d%s%s", WEXITSTATUS(status),
			 last[0] ? ": " : "", last);
	else
		snprintf(out, len, "images/build was killed by signal %d",
			 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void *build_thread(void *arg)
{
	struct job *j = arg;
	char script[PATH_MAX + 8], out[PATH_MAX + 80], reason[512];
	int status = 0, fd;
	sigset_t none;
	pid_t pid;

	/* Everything the child needs is ready before fork: it only opens, dups and execs. */
	snprintf(script, sizeof(script), "%s/build", cfg.recipes_dir);
	snprintf(out, sizeof(out), "%s/%s.ext4", cfg.images_dir, j->template);
	fd = open(j->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(reason, sizeof(reason), "cannot create %s: %s", j->log, strerror(errno));
		job_finish(j, NULL, reason);
		return NULL;
	}
	sigemptyset(&none);
	pid = fork();
	if (pid == 0) {
		static const char msg[] = "images/build: cannot run the build script\n";
		int null = open("/dev/null", O_RDONLY);

		/* kilnd blocks SIGTERM/SIGINT and ignores SIGPIPE; exec would hand both on. */
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		dup2(null, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close_range(3, ~0u, 0);
		execl(script, script, j->template, out, (char *)NULL);
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(126);
		_exit(127);
	}
	close(fd);
	if (pid < 0) {
		snprintf(reason, sizeof(reason), "cannot start images/build: %s", strerror(errno));
		job_finish(j, NULL, reason);
		return NULL;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && access(out, R_OK) == 0) {
		char real[PATH_MAX];

		job_finish(j, realpath(out, real) ? real : out, NULL);
		return NULL;
	}
	build_reason(j->log, status, reason, sizeof(reason));
	job_finish(j, NULL, reason);
	return NULL;
}

static void *warm_thread(void *arg)
{
	struct job *j = arg;
	struct agent_error ae = { 0 };
	char dir[PATH_MAX], reason[600];
	struct tspec *t = malloc(sizeof(*t));

	if (!t) {
		job_finish(j, NULL, "out of memory");
		return NULL;
	}
	if (template_spec(j->template, j->cpus, j->memory_mib, t)) {
		snprintf(reason, sizeof(reason), "template %s has no image (build it first)",
			 j->template);
		job_finish(j, NULL, reason);
		free(t);
		return NULL;
	}
	t->spec.net = j->net;
	if (template_warm(&t->spec, dir, sizeof(dir), &ae)) {
		snprintf(reason, sizeof(reason), "warming failed: %s", ae.message);
		job_finish(j, NULL, reason);
	} else {
		job_finish(j, dir, NULL);
	}
	free(t);
	return NULL;
}

/* Start fn on job j in a detached thread; the job fails at once if it cannot start. */
static int job_start(struct job *j, void *(*fn)(void *), struct api_error *e)
{
	pthread_attr_t attr;
	pthread_t th;
	int err;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&th, &attr, fn, j);
	pthread_attr_destroy(&attr);
	if (err) {
		job_finish(j, NULL, "cannot start a thread");
		return api_fail(e, 500, "internal", NULL, "cannot start the job: %s", strerror(err));
	}
	return 0;
}

/* -- handlers --------------------------------------------------------------------------- */

/* The request's body is absent or an object with no other fields than allowed. */
static json_t *body_fields(struct request *r, const char *const *allowed)
{
	json_t *body = body_object(r->body, r->len, &r->e), *v;
	const char *key;

	if (!body)
		return NULL;
	json_object_foreach(body, key, v) {
		const char *const *a = allowed;

		while (*a && strcmp(*a, key))
			a++;
		if (!*a) {
			api_fail(&r->e, 400, "invalid_argument", key, "%.60s: unknown field", key);
			json_decref(body);
			return NULL;
		}
	}
	return body;
}

static int get_uint(json_t *body, const char *name, unsigned min, unsigned max, unsigned def,
		    unsigned *out, struct api_error *e)
{
	json_t *v = json_object_get(body, name);

	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return api_fail(e, 400, "invalid_argument", name,
				"%s: must be an integer from %u to %u", name, min, max);
	*out = (unsigned)json_integer_value(v);
	return 0;
}

static enum MHD_Result build(struct request *r, const char *name)
{
	static const char *const none[] = { NULL };
	json_t *body = body_fields(r, none), *out;
	struct job *j;

	if (!body)
		return reply_error(r, &r->e);
	json_decref(body);
	if (is_registered(name)) {
		api_fail(&r->e, 409, "invalid_state", NULL,
			 "template %s is registered with --template: it is not built by kilnd", name);
		return reply_error(r, &r->e);
	}
	if (!has_recipe(name)) {
		api_fail(&r->e, 404, "not_found", NULL, "no recipe images/%s/recipe", name);
		return reply_error(r, &r->e);
	}
	pthread_mutex_lock(&jobs_lock);
	j = job_new(name, JOB_BUILD, &r->e);
	if (j)
		snprintf(j->log, sizeof(j->log), "%s/jobs/%s.log", cfg.data_dir, j->id);
	pthread_mutex_unlock(&jobs_lock);
	if (!j || job_start(j, build_thread, &r->e))
		return reply_error(r, &r->e);
	log_info("template %s: build %s started", name, j->id);
	pthread_mutex_lock(&jobs_lock);
	out = job_json(j);
	pthread_mutex_unlock(&jobs_lock);
	return reply_json(r, 202, out);
}

static enum MHD_Result warm(struct request *r, const char *name)
{
	static const char *const fields[] = { "cpus", "memory_mib", "network", NULL };
	json_t *body = body_fields(r, fields), *out, *net;
	unsigned cpus, memory_mib;
	char path[PATH_MAX];
	struct job *j;
	bool with_nic;
	int bad;

	if (!body)
		return reply_error(r, &r->e);
	bad = get_uint(body, "cpus", 1, MAX_CPUS, 1, &cpus, &r->e) ||
	      get_uint(body, "memory_mib", MIN_MEMORY_MIB, MAX_MEMORY_MIB, 256, &memory_mib, &r->e);
	net = json_object_get(body, "network");
	if (!bad && net && !json_is_null(net) && !json_is_boolean(net))
		bad = api_fail(&r->e, 400, "invalid_argument", "network", "network: true warms a "
			       "snapshot with a NIC, for sandboxes created with a network");
	with_nic = net && json_is_true(net);
	json_decref(body);
	if (bad)
		return reply_error(r, &r->e);
	if (template_rootfs(name, path, sizeof(path))) {
		api_fail(&r->e, 404, "not_found", NULL, "template %s has no image%s", name,
			 has_recipe(name) ? " (build it first)" : "");
		return reply_error(r, &r->e);
	}
	pthread_mutex_lock(&jobs_lock);
	j = job_new(name, JOB_WARM, &r->e);
	if (j) {
		j->cpus = cpus;
		j->memory_mib = memory_mib;
		j->net = with_nic;
	}
	pthread_mutex_unlock(&jobs_lock);
	if (!j || job_start(j, warm_thread, &r->e))
		return reply_error(r, &r->e);
	log_info("template %s: warm %s (%u vCPUs, %u MiB) started", name, j->id, cpus, memory_mib);
	pthread_mutex_lock(&jobs_lock);
	out = job_json(j);
	pthread_mutex_unlock(&jobs_lock);
	return reply_json(r, 202, out);
}

static void remove_snapshot(const char *dir, const struct vm_spec *shape, void *ctx)
{
	char *argv[] = { "rm", "-rf", "--one-file-system", (char *)dir, NULL };

	/* A create cloning it now already has its files open or falls back to a boot. */
	if (run_quiet(argv) == 0)
		json_array_append_new(ctx, json_pack("{s:i, s:i, s:b}", "cpus", shape->cpus,
						     "memory_mib", shape->memory_mib, "network",
						     shape->net));
}

static enum MHD_Result unwarm(struct request *r, const char *name)
{
	json_t *removed;
	char running[32] = "";
	struct tspec t;
	struct job *j;

	if (template_spec(name, 1, MIN_MEMORY_MIB, &t)) {
		api_fail(&r->e, 404, "not_found", NULL, "no template named %s", name);
		return reply_error(r, &r->e);
	}
	pthread_mutex_lock(&jobs_lock);
	j = last_job(name, JOB_WARM);
	if (j && !strcmp(j->state, "running"))
		snprintf(running, sizeof(running), "%s", j->id);
	pthread_mutex_unlock(&jobs_lock);
	if (running[0]) {
		api_fail(&r->e, 409, "invalid_state", NULL,
			 "template %s is being warmed (%s): wait for it", name, running);
		return reply_error(r, &r->e);
	}
	removed = json_array();
	template_each(&t.spec, remove_snapshot, removed);
	return reply_json(r, 200, json_pack("{s:s, s:o}", "name", name, "removed", removed));
}

static enum MHD_Result job_get(struct request *r, const char *name, enum job_kind kind)
{
	json_t *o = last_job_json(name, kind);

	if (json_is_null(o)) {
		api_fail(&r->e, 404, "not_found", NULL, "template %s: no %s since kilnd started",
			 name, job_kind_name(kind));
		return reply_error(r, &r->e);
	}
	return reply_json(r, 200, o);
}

enum MHD_Result api_templates(struct request *r)
{
	const char *name = r->m.id;

	if (r->m.route == R_TEMPLATES_LIST)
		return reply_json(r, 200, list_json());
	if (!template_name_ok(name)) {
		api_fail(&r->e, 400, "invalid_argument", "name",
			 "name: a template name is 1 to 63 characters of a-z, 0-9, '-' and '_'");
		return reply_error(r, &r->e);
	}
	switch (r->m.route) {
	case R_TEMPLATE_GET:
		if (!known(name)) {
			api_fail(&r->e, 404, "not_found", NULL, "no template named %s", name);
			return reply_error(r, &r->e);
		}
		return reply_json(r, 200, template_json(name));
	case R_TEMPLATE_BUILD:
		return build(r, name);
	case R_TEMPLATE_BUILD_GET:
		return job_get(r, name, JOB_BUILD);
	case R_TEMPLATE_WARM:
		return warm(r, name);
	case R_TEMPLATE_WARM_GET:
		return job_get(r, name, JOB_WARM);
	case R_TEMPLATE_UNWARM:
		return unwarm(r, name);
	default:
		api_fail(&r->e, 500, "internal", NULL, "unrouted request");
		return reply_error(r, &r->e);
	}
}
