/*
 * test_kilnd_router.c - kilnd's router: every route by method and path, {id} extracted,
 * unknown paths 404, known paths with another method 405 and the allowed methods, and hostile
 * ids (too long, slashes, dots, upper case, empty) never matched; a template {name} handed to
 * its handler whatever it holds (the handler answers 400), but never across a '/'.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/kilnd/router.h"

static void test_routes(void **state)
{
	static const struct { const char *method, *path; enum route route; const char *id; } ok[] = {
		{ "GET", "/v1/health", R_HEALTH, "" },
		{ "GET", "/metrics", R_METRICS, "" },
		{ "POST", "/v1/agents", R_AGENTS, "" },
		{ "POST", "/v1/agents/ag-12/credit", R_AGENT_CREDIT, "ag-12" },
		{ "GET", "/v1/usage", R_USAGE, "" },
		{ "GET", "/v1/wallet", R_WALLET, "" },
		{ "POST", "/v1/sandboxes", R_SANDBOXES_CREATE, "" },
		{ "GET", "/v1/sandboxes", R_SANDBOXES_LIST, "" },
		{ "GET", "/v1/sandboxes/sb-1", R_SANDBOX_GET, "sb-1" },
		{ "DELETE", "/v1/sandboxes/sb-1", R_SANDBOX_DELETE, "sb-1" },
		{ "POST", "/v1/sandboxes/sb-1/pause", R_SANDBOX_PAUSE, "sb-1" },
		{ "POST", "/v1/sandboxes/sb-1/resume", R_SANDBOX_RESUME, "sb-1" },
		{ "POST", "/v1/sandboxes/sb-1/timeout", R_SANDBOX_TIMEOUT, "sb-1" },
		{ "POST", "/v1/sandboxes/sb-1/exec", R_SANDBOX_EXEC, "sb-1" },
		{ "PUT", "/v1/sandboxes/x/files", R_FILES_PUT, "x" },
		{ "GET", "/v1/sandboxes/x/files", R_FILES_GET, "x" },
		{ "GET", "/v1/sandboxes/x/files/list", R_FILES_LIST, "x" },
		{ "GET", "/v1/sandboxes/x/files/stat", R_FILES_STAT, "x" },
		{ "POST", "/v1/sandboxes/x/files/mkdir", R_FILES_MKDIR, "x" },
		{ "DELETE", "/v1/sandboxes/x/files", R_FILES_DELETE, "x" },
		{ "POST", "/v1/sandboxes/x/files/rename", R_FILES_RENAME, "x" },
		{ "POST", "/v1/sandboxes/x/processes", R_PROCS_START, "x" },
		{ "GET", "/v1/sandboxes/x/processes", R_PROCS_LIST, "x" },
	};
	struct route_match m;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(router_match(ok[i].method, ok[i].path, &m), 200);
		assert_int_equal(m.route, ok[i].route);
		assert_string_equal(m.id, ok[i].id);
	}
	assert_int_equal(router_match("POST", "/v1/agents", &m), 200);
	assert_string_equal(m.sub, "");
	assert_true(m.admin);
	assert_false(m.agent);
	assert_int_equal(router_match("GET", "/v1/sandboxes", &m), 200);
	assert_true(m.agent);
	assert_false(m.admin);
}

static void test_template_names_reach_their_handler(void **state)
{
	char longname[200] = "/v1/templates/";
	struct route_match m;

	(void)state;
	assert_int_equal(router_match("GET", "/v1/templates", &m), 200);
	assert_int_equal(m.route, R_TEMPLATES_LIST);
	assert_false(m.admin || m.agent);
	assert_int_equal(router_match("GET", "/v1/templates/Bad..Name", &m), 200);
	assert_int_equal(m.route, R_TEMPLATE_GET);
	assert_string_equal(m.id, "Bad..Name");
	assert_int_equal(router_match("POST", "/v1/templates/python/build", &m), 200);
	assert_int_equal(m.route, R_TEMPLATE_BUILD);
	assert_true(m.admin);
	assert_int_equal(router_match("GET", "/v1/templates/python/build", &m), 200);
	assert_int_equal(m.route, R_TEMPLATE_BUILD_GET);
	assert_false(m.admin);
	assert_int_equal(router_match("DELETE", "/v1/templates/base/warm", &m), 200);
	assert_int_equal(m.route, R_TEMPLATE_UNWARM);
	assert_true(m.admin);
	assert_string_equal(m.id, "base");
	assert_int_equal(router_match("PUT", "/v1/templates/base/warm", &m), 405);
	assert_string_equal(m.allow, "POST, GET, DELETE");
	/* A dot-dot never escapes its segment: the path below has one segment too many. */
	assert_int_equal(router_match("GET", "/v1/templates/../agents", &m), 404);
	assert_int_equal(router_match("GET", "/v1/templates/", &m), 404);
	memset(longname + strlen(longname), 'a', 100);
	assert_int_equal(router_match("GET", longname, &m), 200);
	assert_string_equal(m.id, "");	/* too long: no valid name, so the handler says 400 */
}

/* Routes with a second identifier: a context or a container file. */
static void test_second_id(void **state)
{
	static const struct {
		const char *method, *path;
		enum route route;
		const char *id, *sub;
	} ok[] = {
		{ "POST", "/v1/sandboxes/sb-1/code", R_SANDBOX_CODE, "sb-1", "" },
		{ "POST", "/v1/sandboxes/sb-1/contexts", R_CONTEXTS_CREATE, "sb-1", "" },
		{ "GET", "/v1/sandboxes/sb-1/contexts", R_CONTEXTS_LIST, "sb-1", "" },
		{ "DELETE", "/v1/sandboxes/sb-1/contexts/0a1b", R_CONTEXT_DELETE, "sb-1", "0a1b" },
		{ "POST", "/v1/sandboxes/s/contexts/c/restart", R_CONTEXT_RESTART, "s", "c" },
		{ "POST", "/v1/sandboxes/s/contexts/c/interrupt", R_CONTEXT_INTERRUPT, "s", "c" },
		{ "POST", "/v1/containers", R_CONTAINERS_CREATE, "", "" },
		{ "GET", "/v1/containers", R_CONTAINERS_LIST, "", "" },
		{ "GET", "/v1/containers/sb-9", R_CONTAINER_GET, "sb-9", "" },
		{ "DELETE", "/v1/containers/sb-9", R_CONTAINER_DELETE, "sb-9", "" },
		{ "POST", "/v1/containers/sb-9/files", R_CFILES_CREATE, "sb-9", "" },
		{ "GET", "/v1/containers/sb-9/files", R_CFILES_LIST, "sb-9", "" },
		{ "GET", "/v1/containers/sb-9/files/cf-1", R_CFILE_GET, "sb-9", "cf-1" },
		{ "DELETE", "/v1/containers/sb-9/files/cf-1", R_CFILE_DELETE, "sb-9", "cf-1" },
		{ "GET", "/v1/containers/sb-9/files/cf-1/content", R_CFILE_CONTENT, "sb-9", "cf-1" },
	};
	static const char *const bad[] = {
		"/v1/containers/sb-9/files/", "/v1/containers/sb-9/files//content",
		"/v1/containers/sb-9/files/CF/content", "/v1/containers/sb-9/files/a/b/content",
		"/v1/sandboxes/s/contexts/c/nope", "/v1/sandboxes/s/contexts/../restart",
	};
	struct route_match m;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(router_match(ok[i].method, ok[i].path, &m), 200);
		assert_int_equal(m.route, ok[i].route);
		assert_string_equal(m.id, ok[i].id);
		assert_string_equal(m.sub, ok[i].sub);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(router_match("GET", bad[i], &m), 404);
	assert_int_equal(router_match("PUT", "/v1/containers/sb-9/files/cf-1", &m), 405);
	assert_string_equal(m.allow, "GET, DELETE");
}

static void test_wrong_method_is_405(void **state)
{
	struct route_match m;

	(void)state;
	assert_int_equal(router_match("PATCH", "/v1/sandboxes", &m), 405);
	assert_string_equal(m.allow, "POST, GET");
	assert_int_equal(router_match("POST", "/v1/sandboxes/sb-1", &m), 405);
	assert_string_equal(m.allow, "GET, DELETE");
	assert_int_equal(router_match("GET", "/v1/sandboxes/sb-1/exec", &m), 405);
	assert_string_equal(m.allow, "POST");
	assert_int_equal(router_match("DELETE", "/v1/health", &m), 405);
}

static void test_unknown_and_hostile_paths_are_404(void **state)
{
	static const char *const bad[] = {
		"", "/", "/v1", "/v1/", "/v1/sandboxes/", "/v1/sandboxes//exec",
		"/v1/sandboxes/../agents", "/v1/sandboxes/SB-1", "/v1/sandboxes/a.b",
		"/v1/sandboxes/sb-1/", "/v1/sandboxes/sb-1/exec/", "/v1/sandboxes/sb-1/nope",
		"/v1/sandboxes/sb 1", "/v1/sandboxes/sb%2f1", "/v1/healthz", "/v1/health/",
		"//v1/health", "/V1/health", "/v1/sandboxes/sb-1/files/list/x",
	};
	char longid[200] = "/v1/sandboxes/";
	struct route_match m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(router_match("GET", bad[i], &m), 404);
	memset(longid + strlen(longid), 'a', 64);	/* one more than an id may have */
	assert_int_equal(router_match("GET", longid, &m), 404);
	longid[strlen(longid) - 1] = 0;
	assert_int_equal(router_match("GET", longid, &m), 200);
	assert_int_equal(strlen(m.id), 63);
}

static void test_pid_segment(void **state)
{
	static const struct { const char *path; enum route route; unsigned pid; } ok[] = {
		{ "/v1/sandboxes/sb-1/processes/1/signal", R_PROC_SIGNAL, 1 },
		{ "/v1/sandboxes/sb-1/processes/42/stdin", R_PROC_STDIN, 42 },
		{ "/v1/sandboxes/sb-1/processes/2147483647/output", R_PROC_OUTPUT, 2147483647u },
	};
	static const char *const bad[] = {
		"/v1/sandboxes/sb-1/processes/0/signal",
		"/v1/sandboxes/sb-1/processes/01/signal",
		"/v1/sandboxes/sb-1/processes/-1/signal",
		"/v1/sandboxes/sb-1/processes/+1/signal",
		"/v1/sandboxes/sb-1/processes/2147483648/signal",
		"/v1/sandboxes/sb-1/processes/99999999999/signal",
		"/v1/sandboxes/sb-1/processes/12a/signal",
		"/v1/sandboxes/sb-1/processes//signal",
		"/v1/sandboxes/sb-1/processes/1",
		"/v1/sandboxes/sb-1/processes/1/signal/",
		"/v1/sandboxes/sb-1/processes/{pid}/signal",
	};
	struct route_match m;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		const char *method = ok[i].route == R_PROC_OUTPUT ? "GET" : "POST";

		assert_int_equal(router_match(method, ok[i].path, &m), 200);
		assert_int_equal(m.route, ok[i].route);
		assert_int_equal(m.pid, ok[i].pid);
		assert_string_equal(m.id, "sb-1");
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(router_match("POST", bad[i], &m), 404);
	assert_int_equal(router_match("GET", "/v1/sandboxes/sb-1/processes/7/signal", &m), 405);
	assert_string_equal(m.allow, "POST");
	assert_int_equal(router_match("GET", "/v1/sandboxes/sb-1/files", &m), 200);
	assert_int_equal(m.pid, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pid_segment),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_second_id),
		cmocka_unit_test(test_wrong_method_is_405),
		cmocka_unit_test(test_template_names_reach_their_handler),
		cmocka_unit_test(test_unknown_and_hostile_paths_are_404),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
