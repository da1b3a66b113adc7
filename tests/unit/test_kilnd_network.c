/*
 * test_kilnd_network.c - the "network" object of kilnd's create and PUT requests
 * (src/kilnd/network.c): what becomes the namespace's CIDRs, the egress policy and the secrets
 * file, normalised; every bad field refused and named; nothing a client sends can add a line
 * to a file the services read; secret values never in the record the API shows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/kilnd/network.h"

static json_t *js(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

	if (!v)
		fail_msg("bad test JSON: %s", text);
	return v;
}

static void refused(const char *text, bool update, const char *field)
{
	struct net_config c;
	struct api_error e = { 0 };
	json_t *body = js(text), *old = js("{\"rate_limit_kib\":null,\"capture\":false,"
					   "\"secrets\":[]}");

	if (net_config_parse(body, update, old, &c, &e) != -1)
		fail_msg("accepted %s", text);
	assert_int_equal(e.status, 400);
	if (strcmp(e.field, field))
		fail_msg("%s: field '%s', expected '%s' (%s)", text, e.field, field, e.message);
	assert_null(c.policy);
	assert_null(c.record);
	json_decref(body);
	json_decref(old);
}

static void test_full_create(void **state)
{
	struct net_config c;
	struct api_error e = { 0 };
	json_t *body = js("{\"allow_domains\":[\"PyPI.org.\",\"*.pythonhosted.org\"],"
			  "\"deny_domains\":[\"evil.pypi.org\"],"
			  "\"allow_cidrs\":[\"10.1.2.3/8\",\"192.0.2.7\"],"
			  "\"deny_cidrs\":[\"203.0.113.0/24\"],"
			  "\"dns_rewrites\":{\"db.internal\":\"10.9.9.9\"},"
			  "\"rate_limit_kib\":512,\"capture\":true,"
			  "\"secrets\":[{\"name\":\"github\",\"env\":\"GITHUB_TOKEN\","
			  "\"header\":\"Authorization\",\"hosts\":[\"api.github.com\","
			  "\"*.githubusercontent.com\"],\"value\":\"Bearer ghp_sekrit\"}]}");
	char *shown;

	(void)state;
	if (net_config_parse(body, false, NULL, &c, &e))
		fail_msg("refused: %s", e.message);
	assert_string_equal(c.allow_cidrs, "10.0.0.0/8,192.0.2.7/32");
	assert_non_null(strstr(c.policy, "\nallow pypi.org\n"));
	assert_non_null(strstr(c.policy, "\nallow *.pythonhosted.org\n"));
	assert_non_null(strstr(c.policy, "\ndeny evil.pypi.org\n"));
	assert_non_null(strstr(c.policy, "\nallow-cidr 10.0.0.0/8\n"));
	assert_non_null(strstr(c.policy, "\ndeny-cidr 203.0.113.0/24\n"));
	assert_non_null(strstr(c.policy, "\nrewrite db.internal 10.9.9.9\n"));
	assert_string_equal(c.secrets, "secret github GITHUB_TOKEN Authorization "
			    "api.github.com,*.githubusercontent.com Bearer ghp_sekrit\n");
	assert_int_equal(c.rate_bps, 512 * 1024);
	assert_true(c.capture);
	shown = json_dumps(c.record, JSON_COMPACT | JSON_SORT_KEYS);
	assert_null(strstr(shown, "sekrit"));
	assert_non_null(strstr(shown, "\"allow_domains\":[\"pypi.org\",\"*.pythonhosted.org\"]"));
	assert_non_null(strstr(shown, "\"env\":\"GITHUB_TOKEN\""));
	free(shown);
	net_config_free(&c);
	json_decref(body);
}

/* An empty object is a NIC with nothing allowed. */
static void test_empty(void **state)
{
	struct net_config c;
	struct api_error e = { 0 };
	json_t *body = js("{}");

	(void)state;
	assert_int_equal(net_config_parse(body, false, NULL, &c, &e), 0);
	assert_string_equal(c.allow_cidrs, "");
	assert_null(c.secrets);
	assert_int_equal(c.rate_bps, 0);
	assert_null(strstr(c.policy, "allow"));
	net_config_free(&c);
	json_decref(body);
}

/* A PUT replaces the policy fields and keeps the rest of the record. */
static void test_update(void **state)
{
	struct net_config c;
	struct api_error e = { 0 };
	json_t *body = js("{\"allow_domains\":[\"example.com\"]}");
	json_t *old = js("{\"allow_domains\":[\"old.example\"],\"rate_limit_kib\":64,"
			 "\"capture\":true,\"secrets\":[{\"name\":\"x\"}]}");

	(void)state;
	assert_int_equal(net_config_parse(body, true, old, &c, &e), 0);
	assert_non_null(strstr(c.policy, "\nallow example.com\n"));
	assert_null(strstr(c.policy, "old.example"));
	assert_int_equal(json_integer_value(json_object_get(c.record, "rate_limit_kib")), 64);
	assert_true(json_is_true(json_object_get(c.record, "capture")));
	assert_int_equal(json_array_size(json_object_get(c.record, "secrets")), 1);
	assert_null(c.secrets);
	net_config_free(&c);
	json_decref(body);
	json_decref(old);
}

static void test_refused(void **state)
{
	(void)state;
	refused("[]", false, "network");
	refused("{\"allow\":[\"x.com\"]}", false, "allow");
	refused("{\"allow_domains\":\"x.com\"}", false, "allow_domains");
	refused("{\"allow_domains\":[1]}", false, "allow_domains");
	refused("{\"allow_domains\":[\"\"]}", false, "allow_domains");
	/* A line break, a blank or a second directive may never reach the file. */
	refused("{\"allow_domains\":[\"x.com\\nallow *.com\"]}", false, "allow_domains");
	refused("{\"allow_domains\":[\"x.com allow-cidr 0.0.0.0/0\"]}", false, "allow_domains");
	refused("{\"deny_domains\":[\"a..b\"]}", false, "deny_domains");
	refused("{\"allow_domains\":[\"x*.com\"]}", false, "allow_domains");
	refused("{\"allow_domains\":[\"exa\\u0000mple.com\"]}", false, "allow_domains");
	refused("{\"allow_cidrs\":[\"10.0.0.0/33\"]}", false, "allow_cidrs");
	refused("{\"allow_cidrs\":[\"10.0.0.0/8\\n\"]}", false, "allow_cidrs");
	refused("{\"allow_cidrs\":[\"2001:db8::/32\"]}", false, "allow_cidrs");
	refused("{\"allow_cidrs\":[\"10.0.0.0/8\"],\"deny_cidrs\":[\"10.1.0.0/16\"]}", false,
		"deny_cidrs");
	refused("{\"dns_rewrites\":[]}", false, "dns_rewrites");
	refused("{\"dns_rewrites\":{\"*.x.com\":\"10.0.0.1\"}}", false, "dns_rewrites");
	refused("{\"dns_rewrites\":{\"x.com\":\"10.0.0.1 \\nallow *\"}}", false, "dns_rewrites");
	refused("{\"dns_rewrites\":{\"x.com\":1}}", false, "dns_rewrites");
	refused("{\"rate_limit_kib\":0}", false, "rate_limit_kib");
	refused("{\"rate_limit_kib\":\"fast\"}", false, "rate_limit_kib");
	refused("{\"capture\":1}", false, "capture");
	refused("{\"secrets\":{}}", false, "secrets");
	refused("{\"secrets\":[1]}", false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[\"x.com\"]}]}",
		false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a b\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[\"x.com\"],"
		"\"value\":\"v\"}]}", false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"1A\",\"header\":\"H\",\"hosts\":[\"x.com\"],"
		"\"value\":\"v\"}]}", false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"A\",\"header\":\"H:\",\"hosts\":[\"x.com\"],"
		"\"value\":\"v\"}]}", false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[],"
		"\"value\":\"v\"}]}", false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[\"x com\"],"
		"\"value\":\"v\"}]}", false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[\"x.com\"],"
		"\"value\":\"v\\r\\nX-Evil: 1\"}]}", false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[\"x.com\"],"
		"\"value\":\" v\"}]}", false, "secrets");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[\"x.com\"],"
		"\"value\":\"v\",\"extra\":1}]}", false, "extra");
	refused("{\"secrets\":[{\"name\":\"a\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[\"x.com\"],"
		"\"value\":\"v\"},{\"name\":\"b\",\"env\":\"A\",\"header\":\"H\",\"hosts\":[\"x.com\"],"
		"\"value\":\"w\"}]}", false, "secrets");
	/* Only the policy fields may change on a running sandbox. */
	refused("{\"secrets\":[]}", true, "secrets");
	refused("{\"rate_limit_kib\":5}", true, "rate_limit_kib");
	refused("{\"capture\":true}", true, "capture");
}

#define AGENT_SECRETS \
	"[{\"name\":\"gh\",\"env\":\"GH\",\"header\":\"Authorization\"," \
	"\"hosts\":[\"api.github.com\"],\"value\":\"Bearer agent-gh\"}," \
	"{\"name\":\"oa\",\"env\":\"OA\",\"header\":\"Authorization\"," \
	"\"hosts\":[\"api.openai.com\"],\"value\":\"Bearer agent-oa\"}]"

/* Merge, then parse as a create: the secrets file that results. */
static char *merged_secrets(const char *net_text)
{
	struct net_config c;
	struct api_error e = { 0 };
	json_t *net = js(net_text), *agent = js(AGENT_SECRETS), *merged;
	char *out;

	if (net_merge_agent_secrets(net, agent, &merged, &e))
		fail_msg("%s: %s", net_text, e.message);
	if (net_config_parse(merged, false, NULL, &c, &e))
		fail_msg("%s: %s", net_text, e.message);
	out = c.secrets ? strdup(c.secrets) : NULL;
	net_config_free(&c);
	json_decref(net);
	json_decref(agent);
	json_decref(merged);
	return out;
}

static void test_agent_secrets(void **state)
{
	struct api_error e = { 0 };
	json_t *agent = js(AGENT_SECRETS), *net, *merged;
	char *s;

	(void)state;
	/* Absent: all of the agent's. */
	s = merged_secrets("{\"allow_domains\":[\"api.github.com\"]}");
	assert_string_equal(s, "secret gh GH Authorization api.github.com Bearer agent-gh\n"
			       "secret oa OA Authorization api.openai.com Bearer agent-oa\n");
	free(s);
	/* Named: only those; none: none. */
	s = merged_secrets("{\"agent_secrets\":[\"oa\"]}");
	assert_string_equal(s, "secret oa OA Authorization api.openai.com Bearer agent-oa\n");
	free(s);
	assert_null(merged_secrets("{\"agent_secrets\":[]}"));
	/* The sandbox's own replaces the agent's of the same name, and of the same variable. */
	s = merged_secrets("{\"secrets\":[{\"name\":\"gh\",\"env\":\"GH2\",\"header\":\"X-T\","
			   "\"hosts\":[\"x.com\"],\"value\":\"own\"},{\"name\":\"mine\","
			   "\"env\":\"OA\",\"header\":\"X-T\",\"hosts\":[\"y.com\"],"
			   "\"value\":\"own2\"}]}");
	assert_string_equal(s, "secret gh GH2 X-T x.com own\nsecret mine OA X-T y.com own2\n");
	free(s);
	/* An unknown name, a bad list, bad own secrets: refused, named. */
	const char *bad[][2] = {
		{ "{\"agent_secrets\":[\"nope\"]}", "agent_secrets" },
		{ "{\"agent_secrets\":\"gh\"}", "agent_secrets" },
		{ "{\"agent_secrets\":[1]}", "agent_secrets" },
		{ "{\"secrets\":{}}", "secrets" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		net = js(bad[i][0]);
		memset(&e, 0, sizeof(e));
		if (net_merge_agent_secrets(net, agent, &merged, &e) != -1)
			fail_msg("accepted %s", bad[i][0]);
		assert_int_equal(e.status, 400);
		assert_string_equal(e.field, bad[i][1]);
		assert_null(merged);
		json_decref(net);
	}
	/* More than a sandbox takes, with the agent's counted: refused at parse. */
	net = js("{\"secrets\":[" "{\"name\":\"a0\",\"env\":\"A0\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a1\",\"env\":\"A1\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a2\",\"env\":\"A2\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a3\",\"env\":\"A3\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a4\",\"env\":\"A4\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a5\",\"env\":\"A5\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a6\",\"env\":\"A6\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a7\",\"env\":\"A7\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a8\",\"env\":\"A8\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"a9\",\"env\":\"A9\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"b0\",\"env\":\"B0\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"b1\",\"env\":\"B1\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"b2\",\"env\":\"B2\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"b3\",\"env\":\"B3\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"},"
		 "{\"name\":\"b4\",\"env\":\"B4\",\"header\":\"H\",\"hosts\":[\"x.com\"],\"value\":\"v\"}]}");
	assert_int_equal(net_merge_agent_secrets(net, agent, &merged, &e), 0);
	assert_int_equal(json_array_size(json_object_get(merged, "secrets")), 17);
	{
		struct net_config c;

		memset(&e, 0, sizeof(e));
		assert_int_equal(net_config_parse(merged, false, NULL, &c, &e), -1);
		assert_string_equal(e.field, "secrets");
	}
	json_decref(merged);
	json_decref(net);
	json_decref(agent);
}

/* One secret as the agent's store takes it: normalised, its value never in what is shown. */
static void test_secret_check(void **state)
{
	struct api_error e = { 0 };
	json_t *sec = js("{\"name\":\"gh\",\"env\":\"GH\",\"header\":\"Authorization\","
			 "\"hosts\":[\"API.GitHub.com.\",\"*.githubusercontent.com\"],"
			 "\"value\":\"Bearer v\"}"), *shown;
	char *text;

	(void)state;
	assert_int_equal(net_secret_check(sec, "secret", &shown, &e), 0);
	text = json_dumps(shown, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"env\":\"GH\",\"header\":\"Authorization\",\"hosts\":"
			    "[\"api.github.com\",\"*.githubusercontent.com\"],\"name\":\"gh\"}");
	free(text);
	json_decref(shown);
	json_object_set_new(sec, "value", json_string("a\r\nX-Evil: 1"));
	assert_int_equal(net_secret_check(sec, "secret", &shown, &e), -1);
	assert_null(shown);
	assert_int_equal(e.status, 400);
	assert_non_null(strstr(e.message, "secret: value"));
	json_decref(sec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_create),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_update),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_agent_secrets),
		cmocka_unit_test(test_secret_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
