/*
 * api_containers.c - OpenAI Containers compatibility: /v1/containers and their files, with the
 * object shapes of OpenAI's API so its official SDKs work against kilnd unchanged.
 *
 * A container is an ordinary sandbox of the "python" template owned by the calling agent
 * (quotas, billing, pause on an empty wallet, all as for any sandbox), marked by its metadata
 * key "openai.container" {name, minutes, memory_limit}.  Its idle window is the sandbox's
 * timeout: every request on its files and every cell run in it (api_code.c) moves the expiry
 * to now + minutes (retrieving or listing containers does not), and kilnd's meter expires it
 * as it does any sandbox; last_active_at is derived from that expiry.
 *
 * Container files live under /mnt/data in the guest.  A file's id is derived from its path
 * (cfile- and 24 hex digits of its SHA-256), so files the code writes there are listed too
 * (source "assistant"); uploads are remembered in DIR/container-uploads (source "user").
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../client/agent_client.h"
#include "api_code.h"
#include "code_json.h"
#include "db.h"
#include "multipart.h"
#include "sandbox.h"

#define CONTAINER_KEY	"openai.container"
#define CONTAINER_TEMPLATE "python"
#define DATA_DIR	"/mnt/data"
#define LIST_DEPTH	16

/* Serialises appends to the uploads record. */
static pthread_mutex_t uploads_lock = PTHREAD_MUTEX_INITIALIZER;

/* The container metadata of sandbox id, borrowed from *rec (decref it); NULL if it is not a
 * container. */
static json_t *container_meta(const char *id, json_t **rec)
{
	json_t *c;

	*rec = db_sandbox_json(id);
	c = *rec ? json_object_get(json_object_get(*rec, "metadata"), CONTAINER_KEY) : NULL;
	if (!json_is_object(c) || !json_is_integer(json_object_get(c, "minutes")))
		return NULL;
	return c;
}

static unsigned meta_minutes(json_t *c)
{
	json_int_t m = json_integer_value(json_object_get(c, "minutes"));

	return m > 0 && m <= MAX_IDLE_MINUTES ? (unsigned)m : DEFAULT_IDLE_MINUTES;
}

void container_touch(const char *id)
{
	struct sandbox s;
	json_t *rec, *c;

	if (db_sandbox_get(id, NULL, &s) || strcmp(s.state, "running"))
		return;
	c = container_meta(id, &rec);
	if (c)
		db_set_expiry(id, now_ms() + (int64_t)meta_minutes(c) * 60000);
	json_decref(rec);
}

static bool expiring(const struct sandbox *s)
{
	return !strcmp(s->state, "deleting") && !strcmp(s->reason, "timeout");
}

/* A container's status as OpenAI names it.  One its idle window stops is "expired" from the
 * moment kilnd starts stopping it, not "deleting": nobody deleted it. */
static const char *container_status(const struct sandbox *s)
{
	const char *state = s->state;

	if (expiring(s))
		return "expired";
	if (!strcmp(state, "running") || !strcmp(state, "creating") || !strcmp(state, "resuming"))
		return "running";
	if (!strcmp(state, "paused") || !strcmp(state, "pausing"))
		return "paused";
	return state;	/* expired, deleted, failed, lost */
}

static json_t *container_json(const struct sandbox *s, json_t *c)
{
	unsigned minutes = meta_minutes(c);
	json_t *name = json_object_get(c, "name"), *mem = json_object_get(c, "memory_limit");

	return json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:I}, s:I, s:s, s:s}",
			 "id", s->id, "object", "container",
			 "created_at", (json_int_t)(s->created_at / 1000),
			 "status", container_status(s),
			 "expires_after", "anchor", "last_active_at", "minutes", (json_int_t)minutes,
			 "last_active_at", (json_int_t)(s->expires_at / 1000 - minutes * 60),
			 "name", json_is_string(name) ? json_string_value(name) : "",
			 "memory_limit", json_is_string(mem) ? json_string_value(mem) : "1g");
}

/* The caller's container r->m.id: the sandbox and its metadata (in *rec; decref it). */
static int own_container(struct request *r, struct sandbox *s, json_t **rec, json_t **c)
{
	*rec = NULL;
	if (own_sandbox(r, s))
		return -1;
	*c = container_meta(s->id, rec);
	if (!*c || !strcmp(s->state, "deleted") ||
	    (!strcmp(s->state, "deleting") && !expiring(s))) {
		json_decref(*rec);
		*rec = NULL;
		return api_fail(&r->e, 404, "not_found", NULL, "no container %s", r->m.id);
	}
	return 0;
}

/* Run a shell command as root in the sandbox to its end; 0 if it exited 0. */
static int guest_shell(const struct sandbox *s, const char *cmd, struct api_error *e)
{
	struct agent_exec x = { .shell = cmd, .timeout_ms = 60000 };
	struct agent_error ae = { 0 };
	struct agent_event ev;
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint32_t pid;
	int fd = sandbox_agent(s, e), ret = -1;

	if (fd < 0)
		return -1;
	if (agent_exec_start(fd, &x, &pid, &ae)) {
		api_fail(e, 502, "create_failed", NULL, "%s", ae.message);
		goto out;
	}
	while (agent_next_event(fd, &ev, &buf, &cap) == 0) {
		if (ev.type == EV_EXIT) {
			ret = ev.exit_code == 0 ? 0 : -1;
			break;
		}
		if (ev.type == EV_ERROR)
			break;
	}
	if (ret)
		api_fail(e, 502, "create_failed", NULL, "cannot prepare " DATA_DIR);
out:
	free(buf);
	close(fd);
	return ret;
}

static enum MHD_Result create(struct request *r)
{
	json_t *body = body_object(r->body, r->len, &r->e), *out = NULL, *md = NULL, *rec, *c;
	struct container_req q;
	struct create_req cr;
	struct sandbox s, now;
	enum MHD_Result ret;

	if (!body)
		return reply_error(r, &r->e);
	if (parse_container(body, &q, &r->e))
		goto fail;
	md = json_pack("{s:{s:s, s:I, s:s}}", CONTAINER_KEY, "name", q.name,
		       "minutes", (json_int_t)q.minutes, "memory_limit", q.memory_limit);
	/* The idle window opens when the container can be used: a boot slower than the window
	 * (a loaded host) must not expire it before its creator has seen it. */
	cr = (struct create_req){ .cpus = q.cpus, .memory_mib = q.memory_mib,
				  .timeout_s = q.minutes * 60, .timeout_from_ready = true,
				  .metadata = md };
	snprintf(cr.template, sizeof(cr.template), "%s", CONTAINER_TEMPLATE);
	if (!md || sandbox_create(&r->agent, &cr, &out, &r->e))
		goto fail;
	snprintf(r->m.id, sizeof(r->m.id), "%s",
		 json_string_value(json_object_get(out, "id")));
	json_decref(out);
	if (own_container(r, &s, &rec, &c))
		goto fail;
	/* The code runs as the image's user: /mnt/data must be theirs to write. */
	if (guest_shell(&s, "mkdir -p " DATA_DIR " && chmod 0777 " DATA_DIR, &r->e)) {
		sandbox_delete(&s, &(struct api_error){ 0 });
		json_decref(rec);
		goto fail;
	}
	container_touch(s.id);
	if (db_sandbox_get(s.id, NULL, &now) == 0)
		s = now;		/* last_active_at as touched */
	ret = reply_json(r, 200, container_json(&s, c));
	json_decref(rec);
	json_decref(md);
	json_decref(body);
	return ret;
fail:
	json_decref(md);
	json_decref(body);
	return reply_error(r, &r->e);
}

struct collect {
	const char *agent_id, *name;
	json_t *items;
};

static void on_sandbox(const struct sandbox *s, void *ctx)
{
	struct collect *col = ctx;
	json_t *rec, *c;

	if (strcmp(s->agent_id, col->agent_id))
		return;
	c = container_meta(s->id, &rec);
	if (c && (!col->name || !strcmp(col->name, json_string_value(json_object_get(c, "name")) ?:
					"")))
		json_array_append_new(col->items, container_json(s, c));
	json_decref(rec);
}

static enum MHD_Result list(struct request *r)
{
	struct collect col = { r->agent.id, query_arg(r, "name"), json_array() };
	const char *after = query_arg(r, "after");
	unsigned limit;
	bool asc;

	if (parse_list_query(query_arg(r, "limit"), query_arg(r, "order"), after, &limit, &asc,
			     &r->e)) {
		json_decref(col.items);
		return reply_error(r, &r->e);
	}
	/* Oldest first, as sandboxes are made; list_page walks it either way. */
	db_each_sandbox("creating|running|pausing|paused|resuming", on_sandbox, &col);
	return reply_json(r, 200, list_page(col.items, limit, asc, after));
}

/* -- files ---------------------------------------------------------------------------- */

static void file_id(const char *path, char *id, size_t len)
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	int n = snprintf(id, len, "cfile-");

	SHA256((const unsigned char *)path, strlen(path), d);
	for (int i = 0; i < 12 && n + 2 < (int)len; i++)
		n += snprintf(id + n, len - n, "%02x", d[i]);
}

static void uploads_path(const struct sandbox *s, char *path, size_t len)
{
	char dir[PATH_MAX];

	sandbox_dir(s->id, dir, sizeof(dir));
	snprintf(path, len, "%s/container-uploads", dir);
}

static bool was_uploaded(const struct sandbox *s, const char *path)
{
	char rec[PATH_MAX + 32], line[4200];
	bool found = false;
	FILE *f;

	uploads_path(s, rec, sizeof(rec));
	pthread_mutex_lock(&uploads_lock);
	f = fopen(rec, "re");
	while (f && !found && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		found = !strcmp(line, path);
	}
	if (f)
		fclose(f);
	pthread_mutex_unlock(&uploads_lock);
	return found;
}

static void record_upload(const struct sandbox *s, const char *path)
{
	char rec[PATH_MAX + 32];
	FILE *f;

	if (was_uploaded(s, path))
		return;
	uploads_path(s, rec, sizeof(rec));
	pthread_mutex_lock(&uploads_lock);
	f = fopen(rec, "ae");
	if (f) {
		fprintf(f, "%s\n", path);
		fclose(f);
	}
	pthread_mutex_unlock(&uploads_lock);
}

static json_t *file_json(const struct sandbox *s, const char *path, uint64_t bytes,
			 uint64_t created)
{
	char id[64];

	file_id(path, id, sizeof(id));
	return json_pack("{s:s, s:s, s:I, s:s, s:I, s:s, s:s}", "id", id,
			 "object", "container.file", "bytes", (json_int_t)bytes,
			 "container_id", s->id, "created_at", (json_int_t)created, "path", path,
			 "source", was_uploaded(s, path) ? "user" : "assistant");
}

struct file_list {
	const struct sandbox *s;
	json_t *items;
};

static void on_file(const struct agent_entry *en, void *ctx)
{
	struct file_list *l = ctx;

	if (en->type == 'f')
		json_array_append_new(l->items, file_json(l->s, en->path, en->size, en->mtime));
}

static int by_created(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t cx = json_integer_value(json_object_get(x, "created_at"));
	json_int_t cy = json_integer_value(json_object_get(y, "created_at"));

	if (cx != cy)
		return cx < cy ? -1 : 1;
	return strcmp(json_string_value(json_object_get(x, "id")),
		      json_string_value(json_object_get(y, "id")));
}

/* Every regular file under /mnt/data, oldest first; NULL with e set. */
static json_t *list_files(const struct sandbox *s, struct api_error *e)
{
	struct agent_error ae = { 0 };
	struct file_list l = { s, json_array() };
	json_t **v, *sorted;
	size_t n;
	int fd = sandbox_agent(s, e), bad;

	if (fd < 0) {
		json_decref(l.items);
		return NULL;
	}
	bad = agent_entries(fd, MSG_LIST, DATA_DIR, LIST_DEPTH, on_file, &l, &ae);
	close(fd);
	if (bad && ae.err != ENOENT) {
		json_decref(l.items);
		api_fail(e, 502, "file_error", NULL, DATA_DIR ": %s", ae.message);
		return NULL;
	}
	n = json_array_size(l.items);
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		json_decref(l.items);
		api_fail(e, 500, "internal", NULL, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(l.items, i);
	qsort(v, n, sizeof(*v), by_created);
	sorted = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append(sorted, v[i]);
	free(v);
	json_decref(l.items);
	return sorted;
}

/* The file r->m.sub of the container (a new reference), or NULL with 404 in r->e. */
static json_t *find_file(struct request *r, const struct sandbox *s)
{
	json_t *files = list_files(s, &r->e), *f, *found = NULL;
	size_t i;

	if (!files)
		return NULL;
	json_array_foreach(files, i, f)
		if (!strcmp(json_string_value(json_object_get(f, "id")), r->m.sub))
			found = json_incref(f);
	json_decref(files);
	if (!found)
		api_fail(&r->e, 404, "file_not_found", "file_id", "no file %s in container %s",
			 r->m.sub, s->id);
	return found;
}

/* Write data to path in the guest (a memfd carries it to agent_write_file). */
static int put_file(const struct sandbox *s, const char *path, const uint8_t *data, size_t len,
		    struct api_error *e)
{
	struct agent_error ae = { 0 };
	uint64_t bytes = 0;
	int mfd = memfd_create("kilnd-upload", MFD_CLOEXEC), fd = -1, ret = -1;
	size_t done = 0;

	if (mfd < 0)
		return api_fail(e, 500, "internal", NULL, "memfd: %s", strerror(errno));
	while (done < len) {
		ssize_t n = write(mfd, data + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			api_fail(e, 500, "internal", NULL, "memfd: %s", strerror(errno));
			goto out;
		}
		done += n;
	}
	lseek(mfd, 0, SEEK_SET);
	fd = sandbox_agent(s, e);
	if (fd < 0)
		goto out;
	if (agent_write_file(fd, path, 0666, mfd, &bytes, &ae))
		api_fail(e, ae.err == ENOSPC ? 507 : 502, "file_error", "file", "%s: %s", path,
			 ae.message);
	else
		ret = 0;
out:
	if (fd >= 0)
		close(fd);
	close(mfd);
	return ret;
}

static enum MHD_Result upload(struct request *r, const struct sandbox *s)
{
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
	char boundary[MULTIPART_BOUNDARY_MAX + 2], err[256], name[MULTIPART_NAME_MAX + 1];
	char path[sizeof(DATA_DIR) + MULTIPART_NAME_MAX + 2];
	struct multipart_part part;

	/* Multipart needs its Content-Type for the boundary: without one, the body is JSON. */
	if (!ct || !strncasecmp(ct, "application/json", 16)) {
		json_t *body = body_object(r->body, r->len, &r->e);

		if (body)
			api_fail(&r->e, 400, "unsupported", "file_id",
				 "file_id: kilnd has no Files API; send the file itself as "
				 "multipart/form-data (field \"file\")");
		json_decref(body);
		return reply_error(r, &r->e);
	}
	if (multipart_boundary(ct, boundary, sizeof(boundary), err, sizeof(err)) ||
	    multipart_find((const uint8_t *)r->body, r->len, boundary, "file", &part, err,
			   sizeof(err))) {
		api_fail(&r->e, 400, "invalid_argument", "file", "file: %s", err);
		return reply_error(r, &r->e);
	}
	if (multipart_safe_filename(part.filename, name, sizeof(name))) {
		api_fail(&r->e, 400, "invalid_argument", "file",
			 "file: the part needs a filename (one path component)");
		return reply_error(r, &r->e);
	}
	snprintf(path, sizeof(path), DATA_DIR "/%s", name);
	if (put_file(s, path, part.data, part.len, &r->e))
		return reply_error(r, &r->e);
	record_upload(s, path);
	return reply_json(r, 200, file_json(s, path, part.len, now_ms() / 1000));
}

static enum MHD_Result content(struct request *r, const struct sandbox *s)
{
	json_t *f = find_file(r, s);
	char path[4096];
	int fd;

	if (!f)
		return reply_error(r, &r->e);
	snprintf(path, sizeof(path), "%s", json_string_value(json_object_get(f, "path")));
	json_decref(f);
	fd = sandbox_agent(s, &r->e);
	if (fd < 0)
		return reply_error(r, &r->e);
	return reply_guest_file(r, fd, path);
}

static enum MHD_Result delete_file(struct request *r, const struct sandbox *s)
{
	struct agent_error ae = { 0 };
	json_t *f = find_file(r, s);
	int fd, bad;

	if (!f)
		return reply_error(r, &r->e);
	fd = sandbox_agent(s, &r->e);
	if (fd < 0) {
		json_decref(f);
		return reply_error(r, &r->e);
	}
	bad = agent_simple(fd, MSG_REMOVE, json_string_value(json_object_get(f, "path")), NULL, 0,
			   &ae);
	close(fd);
	json_decref(f);
	if (bad) {
		api_fail(&r->e, 502, "file_error", "file_id", "%s", ae.message);
		return reply_error(r, &r->e);
	}
	return reply_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", r->m.sub,
					    "object", "container.file.deleted", "deleted", 1));
}

static enum MHD_Result files(struct request *r, const struct sandbox *s)
{
	json_t *f;
	const char *after = query_arg(r, "after");
	unsigned limit;
	bool asc;

	switch (r->m.route) {
	case R_CFILES_CREATE:
		return upload(r, s);
	case R_CFILES_LIST:
		if (parse_list_query(query_arg(r, "limit"), query_arg(r, "order"), after, &limit,
				     &asc, &r->e))
			return reply_error(r, &r->e);
		f = list_files(s, &r->e);
		return f ? reply_json(r, 200, list_page(f, limit, asc, after)) :
			   reply_error(r, &r->e);
	case R_CFILE_GET:
		f = find_file(r, s);
		return f ? reply_json(r, 200, f) : reply_error(r, &r->e);
	case R_CFILE_DELETE:
		return delete_file(r, s);
	default:
		return content(r, s);
	}
}

enum MHD_Result api_containers(struct request *r)
{
	json_t *rec = NULL, *c;
	struct sandbox s;
	enum MHD_Result ret;
	int bad;

	if (r->m.route == R_CONTAINERS_CREATE)
		return create(r);
	if (r->m.route == R_CONTAINERS_LIST)
		return list(r);
	if (own_container(r, &s, &rec, &c))
		return reply_error(r, &r->e);
	switch (r->m.route) {
	case R_CONTAINER_GET:
		ret = reply_json(r, 200, container_json(&s, c));
		break;
	case R_CONTAINER_DELETE:
		bad = sandbox_delete(&s, &r->e);
		ret = bad ? reply_error(r, &r->e) :
			    reply_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", s.id, "object",
							 "container.deleted", "deleted", 1));
		break;
	default:
		/* Using its files is activity; looking at the container is not. */
		container_touch(s.id);
		ret = files(r, &s);
	}
	json_decref(rec);
	return ret;
}
