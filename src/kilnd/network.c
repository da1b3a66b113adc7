/*
 * network.c - see network.h.  A request's lists become policy lines one entry at a time, each
 * entry first normalised by the egress policy's own parsers (so "Example.COM." is stored and
 * shown as example.com); the finished policy is parsed once more as a whole before anything
 * runs it.
 */
#include "network.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../net/egress_policy.h"

static const char *const create_fields[] = {
	"allow_domains", "deny_domains", "allow_cidrs", "deny_cidrs", "dns_rewrites",
	"rate_limit_kib", "capture", "secrets", NULL
};
static const char *const policy_fields[] = {
	"allow_domains", "deny_domains", "allow_cidrs", "deny_cidrs", "dns_rewrites", NULL
};
static const char *const secret_fields[] = { "name", "env", "header", "hosts", "value", NULL };

/* A growing string; out of memory shows at the end, as a NULL s. */
struct text {
	char *s;
	size_t len, cap;
};

static void add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!t->s && t->cap)
		return;				/* failed before */
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0 || (t->s && t->len + n < t->cap))
			break;
		size_t cap = (t->cap ? t->cap : 256) * 2 + n;
		char *s = realloc(t->s, cap);

		if (!s) {
			free(t->s);
			*t = (struct text){ .cap = 1 };
			return;
		}
		t->s = s;
		t->cap = cap;
	}
	if (n > 0)
		t->len += n;
}

/* An array field of at most max strings (absent or null: empty); its items in *out. */
static int string_array(json_t *obj, const char *field, size_t max, json_t **out,
			struct api_error *e)
{
	json_t *v = json_object_get(obj, field), *item;
	size_t i;

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) > max)
		return api_fail(e, 400, "invalid_argument", field,
				"%s: must be an array of at most %zu strings", field, max);
	json_array_foreach(v, i, item)
		if (!json_is_string(item) || json_string_length(item) == 0 ||
		    json_string_length(item) > 255 ||
		    strlen(json_string_value(item)) != json_string_length(item))
			return api_fail(e, 400, "invalid_argument", field,
					"%s: item %zu must be a string of 1 to 255 bytes", field, i);
	*out = v;
	return 0;
}

/* "name" or "*.name"; normalised into buf. */
static bool domain_ok(const char *s, bool wildcard, char *buf, size_t len)
{
	struct egress_pattern pat;
	char copy[300];

	snprintf(copy, sizeof(copy), "%s", s);
	if (egress_parse_pattern(copy, &pat) || (pat.subdomains && !wildcard))
		return false;
	snprintf(buf, len, "%s%s", pat.subdomains ? "*." : "", pat.name);
	return true;
}

/*
 * The string array field as a list of rules: norm(item, ...) checks each item and writes its
 * normal form, kept in record[field]; an item it refuses is a 400 saying it is not `what`.
 */
static int rule_list(json_t *net, const char *field, const char *what,
		     bool (*norm)(const char *item, char *out, size_t len, void *ctx), void *ctx,
		     json_t *record, struct api_error *e)
{
	json_t *list, *item, *shown;
	char text[300];
	size_t i;

	if (string_array(net, field, NET_MAX_RULES, &list, e))
		return -1;
	shown = json_array();
	json_array_foreach(list, i, item) {
		if (!norm(json_string_value(item), text, sizeof(text), ctx)) {
			json_decref(shown);
			return api_fail(e, 400, "invalid_argument", field, "%s: '%.100s' is not %s",
					field, json_string_value(item), what);
		}
		json_array_append_new(shown, json_string(text));
	}
	json_object_set_new(record, field, shown);
	return 0;
}

/* Domain rules go straight into the policy file, each as "directive name". */
struct domain_rules {
	struct text *policy;
	const char *directive;
};

static bool domain_rule(const char *item, char *name, size_t len, void *ctx)
{
	struct domain_rules *d = ctx;

	if (!domain_ok(item, true, name, len))
		return false;
	add(d->policy, "%s %s\n", d->directive, name);
	return true;
}

static int domains(json_t *net, const char *field, const char *directive, struct text *policy,
		   json_t *record, struct api_error *e)
{
	struct domain_rules d = { policy, directive };

	return rule_list(net, field, "a domain name or *.domain", domain_rule, &d, record, e);
}

static uint32_t v4(const struct egress_cidr *c)
{
	return (uint32_t)c->addr[0] << 24 | c->addr[1] << 16 | c->addr[2] << 8 | c->addr[3];
}

static uint32_t mask(unsigned len)
{
	return len ? ~0u << (32 - len) : 0;
}

/* The CIDR normalised (host bits cleared) into buf. */
static void cidr_text(struct egress_cidr *c, char *buf, size_t len)
{
	char addr[INET6_ADDRSTRLEN];

	if (c->family == AF_INET) {
		uint32_t a = v4(c) & mask(c->len);

		c->addr[0] = a >> 24;
		c->addr[1] = a >> 16;
		c->addr[2] = a >> 8;
		c->addr[3] = a;
	}
	inet_ntop(c->family, c->addr, addr, sizeof(addr));
	snprintf(buf, len, "%s/%u", addr, c->len);
}

/* CIDR rules are parsed into an array of at most NET_MAX_RULES (string_array's bound). */
struct cidr_rules {
	struct egress_cidr *out;
	unsigned *n;
};

static bool cidr_rule(const char *item, char *text, size_t len, void *ctx)
{
	struct cidr_rules *r = ctx;
	struct egress_cidr *c = &r->out[*r->n];

	if (egress_parse_cidr(item, c))
		return false;
	(*r->n)++;
	cidr_text(c, text, len);
	return true;
}

static int cidrs(json_t *net, const char *field, struct egress_cidr *out, unsigned *n,
		 json_t *record, struct api_error *e)
{
	struct cidr_rules r = { out, n };

	*n = 0;
	return rule_list(net, field, "an address or CIDR", cidr_rule, &r, record, e);
}

static bool v4_overlap(const struct egress_cidr *a, const struct egress_cidr *b)
{
	unsigned len = a->len < b->len ? a->len : b->len;

	return a->family == AF_INET && b->family == AF_INET &&
	       (v4(a) & mask(len)) == (v4(b) & mask(len));
}

/*
 * allow_cidrs go to the namespace's nftables too, which know nothing of deny_cidrs: an
 * address both allowed and denied would be reachable directly, so that is refused here.
 */
static int address_rules(json_t *net, struct net_config *c, struct text *policy,
			 json_t *record, struct api_error *e)
{
	struct egress_cidr allow[NET_MAX_RULES], deny[NET_MAX_RULES];	/* 12 KiB */
	struct text nft = { 0 };
	char text[80];
	unsigned na, nd;

	if (cidrs(net, "allow_cidrs", allow, &na, record, e) ||
	    cidrs(net, "deny_cidrs", deny, &nd, record, e))
		return -1;
	add(&nft, "%s", "");
	for (unsigned i = 0; i < na; i++) {
		if (allow[i].family != AF_INET) {
			free(nft.s);
			return api_fail(e, 400, "invalid_argument", "allow_cidrs", "allow_cidrs: "
					"sandboxes have no IPv6 route; only IPv4 CIDRs");
		}
		for (unsigned j = 0; j < nd; j++)
			if (v4_overlap(&allow[i], &deny[j])) {
				free(nft.s);
				return api_fail(e, 400, "invalid_argument", "deny_cidrs", "deny_cidrs:"
						" %s overlaps an allow_cidrs entry; narrow the allowed "
						"range instead", json_string_value(json_array_get(
						json_object_get(record, "deny_cidrs"), j)));
			}
		cidr_text(&allow[i], text, sizeof(text));
		add(&nft, "%s%s", i ? "," : "", text);
		add(policy, "allow-cidr %s\n", text);
	}
	for (unsigned j = 0; j < nd; j++) {
		cidr_text(&deny[j], text, sizeof(text));
		add(policy, "deny-cidr %s\n", text);
	}
	c->allow_cidrs = nft.s;
	return nft.s ? 0 : api_fail(e, 500, "internal", NULL, "out of memory");
}

static int rewrites(json_t *net, struct text *policy, json_t *record, struct api_error *e)
{
	json_t *map = json_object_get(net, "dns_rewrites"), *v, *shown = json_object();
	char name[300], buf[16];
	const char *k;

	if (map && !json_is_null(map) &&
	    (!json_is_object(map) || json_object_size(map) > NET_MAX_RULES)) {
		json_decref(shown);
		return api_fail(e, 400, "invalid_argument", "dns_rewrites", "dns_rewrites: must be "
				"an object of at most %d \"name\": \"address\" pairs", NET_MAX_RULES);
	}
	if (map && json_is_object(map))
		json_object_foreach(map, k, v) {
			const char *a = json_is_string(v) ? json_string_value(v) : "";

			if (!domain_ok(k, false, name, sizeof(name)) ||
			    (inet_pton(AF_INET, a, buf) != 1 && inet_pton(AF_INET6, a, buf) != 1)) {
				json_decref(shown);
				return api_fail(e, 400, "invalid_argument", "dns_rewrites",
						"dns_rewrites: '%.100s' must be a domain name mapped "
						"to an IPv4 or IPv6 address", k);
			}
			add(policy, "rewrite %s %s\n", name, a);
			json_object_set_new(shown, name, json_string(a));
		}
	json_object_set_new(record, "dns_rewrites", shown);
	return 0;
}

/* Letters, digits and the extra characters in more. */
static bool word_ok(const char *s, size_t max, const char *more)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr(more, *s)))
			return false;
	return true;
}

/* The value: printable ASCII, no leading or trailing blank (the file's lines are split at
 * blanks and the value is the rest of its line). */
static bool value_ok(const char *s, size_t len)
{
	if (len == 0 || len > 4096 || strlen(s) != len || s[0] == ' ' || s[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

/* One secret, checked: its file line into out (if out), its record into shown; where names it
 * in errors.  seen holds the names and variables taken so far. */
static int secret(json_t *sec, const char *where, json_t *seen, struct text *out, json_t *shown,
		  struct api_error *e)
{
	const char *name, *env, *header;
	json_t *hosts, *host, *value = json_object_get(sec, "value"), *hs = json_array();
	char h[300];
	struct text list = { 0 };
	size_t j;

	if (!json_is_object(sec)) {
		api_fail(e, 400, "invalid_argument", "secrets", "%s: must be an object", where);
		goto fail;
	}
	if (json_only_fields(sec, secret_fields, e))
		goto fail;
	if (json_opt_string(sec, "name", 63, &name, e) || json_opt_string(sec, "env", 128, &env, e) ||
	    json_opt_string(sec, "header", 63, &header, e) ||
	    string_array(sec, "hosts", 16, &hosts, e))
		goto fail;
	if (!name || !word_ok(name, 63, "_-") || !env || !word_ok(env, 128, "_") ||
	    (env[0] >= '0' && env[0] <= '9') || !header || !word_ok(header, 63, "-") ||
	    !hosts || !json_array_size(hosts)) {
		api_fail(e, 400, "invalid_argument", "secrets", "%s: needs name (letters, digits, "
			 "_ -), env (a variable name), header (a header name), hosts (1 to 16 "
			 "domains) and value", where);
		goto fail;
	}
	if (!json_is_string(value) || !value_ok(json_string_value(value), json_string_length(value))) {
		api_fail(e, 400, "invalid_argument", "secrets", "%s: value must be 1 to 4096 "
			 "printable ASCII characters without leading or trailing blanks", where);
		goto fail;
	}
	if (json_object_get(seen, env) || json_object_get(seen, name)) {
		api_fail(e, 400, "invalid_argument", "secrets", "%s: name and env must be unique",
			 where);
		goto fail;
	}
	json_object_set_new(seen, env, json_true());
	json_object_set_new(seen, name, json_true());
	json_array_foreach(hosts, j, host) {
		if (!domain_ok(json_string_value(host), true, h, sizeof(h))) {
			api_fail(e, 400, "invalid_argument", "secrets", "%s: host '%.100s' is not a "
				 "domain name or *.domain", where, json_string_value(host));
			goto fail;
		}
		add(&list, "%s%s", j ? "," : "", h);
		json_array_append_new(hs, json_string(h));
	}
	if (out)
		add(out, "secret %s %s %s %s %s\n", name, env, header, list.s ? list.s : "",
		    json_string_value(value));
	free(list.s);
	json_array_append_new(shown, json_pack("{s:s, s:s, s:s, s:o}", "name", name, "env", env,
					       "header", header, "hosts", hs));
	return 0;
fail:
	free(list.s);
	json_decref(hs);
	return -1;
}

int net_secret_check(json_t *sec, const char *where, json_t **shown, struct api_error *e)
{
	json_t *seen = json_object(), *one = json_array();
	int ret = secret(sec, where, seen, NULL, one, e);

	*shown = ret ? NULL : json_incref(json_array_get(one, 0));
	json_decref(seen);
	json_decref(one);
	return ret;
}

static int secrets(json_t *net, struct net_config *c, json_t *record, struct api_error *e)
{
	json_t *list = json_object_get(net, "secrets"), *sec, *seen, *shown;
	struct text out = { 0 };
	char where[32];
	size_t i;

	if (!list || json_is_null(list)) {
		json_object_set_new(record, "secrets", json_array());
		return 0;
	}
	if (!json_is_array(list) || json_array_size(list) > NET_MAX_SECRETS)
		return api_fail(e, 400, "invalid_argument", "secrets", "secrets: must be an array "
				"of at most %d objects (the agent's included)", NET_MAX_SECRETS);
	seen = json_object();
	shown = json_array();
	json_array_foreach(list, i, sec) {
		snprintf(where, sizeof(where), "secrets[%zu]", i);
		if (secret(sec, where, seen, &out, shown, e)) {
			json_decref(seen);
			json_decref(shown);
			free(out.s);
			return -1;
		}
	}
	json_decref(seen);
	json_object_set_new(record, "secrets", shown);
	c->secrets = out.s;
	return 0;
}

/* The request's own secret named like `name` or using the variable `env`. */
static bool overridden(json_t *own, const char *name, const char *env)
{
	json_t *sec;
	size_t i;

	json_array_foreach(own, i, sec) {
		json_t *n = json_object_get(sec, "name"), *v = json_object_get(sec, "env");

		if ((json_is_string(n) && !strcmp(json_string_value(n), name)) ||
		    (json_is_string(v) && !strcmp(json_string_value(v), env)))
			return true;
	}
	return false;
}

/* The agent's secret called name, or NULL. */
static json_t *agent_secret(json_t *agent, const char *name)
{
	json_t *sec;
	size_t i;

	json_array_foreach(agent, i, sec)
		if (!strcmp(json_string_value(json_object_get(sec, "name")) ?: "", name))
			return sec;
	return NULL;
}

/* The agent's secrets the request's "agent_secrets" picks: absent or null all, else an array
 * of names, each registered. */
static json_t *picked(json_t *net, json_t *agent, struct api_error *e)
{
	json_t *names = json_object_get(net, "agent_secrets"), *name, *sec, *out;
	size_t i;

	if (!names || json_is_null(names))
		return json_incref(agent);
	if (!json_is_array(names) || json_array_size(names) > NET_MAX_SECRETS) {
		api_fail(e, 400, "invalid_argument", "agent_secrets", "agent_secrets: must be an "
			 "array of at most %d names of the agent's secrets", NET_MAX_SECRETS);
		return NULL;
	}
	out = json_array();
	json_array_foreach(names, i, name) {
		sec = json_is_string(name) ? agent_secret(agent, json_string_value(name)) : NULL;
		if (!sec) {
			api_fail(e, 400, "invalid_argument", "agent_secrets", "agent_secrets[%zu]: "
				 "not the name of one of the agent's secrets (GET /v1/secrets)", i);
			json_decref(out);
			return NULL;
		}
		json_array_append(out, sec);
	}
	return out;
}

int net_merge_agent_secrets(json_t *net, json_t *agent, json_t **out, struct api_error *e)
{
	json_t *own, *pick, *merged, *sec;
	size_t i;

	*out = NULL;
	if (!json_is_object(net)) {
		*out = json_incref(net);	/* net_config_parse says what is wrong with it */
		return 0;
	}
	own = json_object_get(net, "secrets");
	if (own && !json_is_null(own) && !json_is_array(own))
		return api_fail(e, 400, "invalid_argument", "secrets", "secrets: must be an array "
				"of at most %d objects", NET_MAX_SECRETS);
	pick = picked(net, agent, e);
	if (!pick)
		return -1;
	merged = json_array();
	json_array_foreach(pick, i, sec)
		if (!overridden(own, json_string_value(json_object_get(sec, "name")) ?: "",
				json_string_value(json_object_get(sec, "env")) ?: ""))
			json_array_append(merged, sec);
	if (json_is_array(own))
		json_array_extend(merged, own);
	json_decref(pick);
	*out = json_copy(net);
	json_object_del(*out, "agent_secrets");
	json_object_set_new(*out, "secrets", merged);
	return 0;
}

/* The policy as a whole, as kiln-dns and kiln-proxy will read it. */
static int policy_check(const char *text, struct api_error *e)
{
	struct egress_policy *p = malloc(sizeof(*p));
	char err[256];
	int ret;

	if (!p)
		return api_fail(e, 500, "internal", NULL, "out of memory");
	ret = egress_policy_parse(p, text, err, sizeof(err));
	free(p);
	if (ret)
		return api_fail(e, 400, "invalid_argument", "network", "network: %s", err);
	return 0;
}

/* Create-only fields: rate_limit_kib, capture, secrets. */
static int create_fields_parse(json_t *net, struct net_config *c, json_t *record,
			       struct api_error *e)
{
	json_t *cap = json_object_get(net, "capture");
	unsigned kib;

	if (json_opt_uint(net, "rate_limit_kib", 1, NET_MAX_RATE_KIB, 0, &kib, e))
		return -1;
	if (cap && !json_is_null(cap) && !json_is_boolean(cap))
		return api_fail(e, 400, "invalid_argument", "capture", "capture: must be a "
				"boolean");
	c->rate_bps = (uint64_t)kib * 1024;
	c->capture = cap && json_is_true(cap);
	json_object_set_new(record, "rate_limit_kib", kib ? json_integer(kib) : json_null());
	json_object_set_new(record, "capture", json_boolean(c->capture));
	return secrets(net, c, record, e);
}

int net_config_parse(json_t *net, bool update, json_t *old, struct net_config *c,
		     struct api_error *e)
{
	struct text policy = { 0 };

	*c = (struct net_config){ .record = json_object() };
	if (!json_is_object(net)) {
		api_fail(e, 400, "invalid_argument", "network", "network: must be an object (or "
			 "null for no network)");
		goto fail;
	}
	if (json_only_fields(net, update ? policy_fields : create_fields, e))
		goto fail;
	add(&policy, "# written by kilnd\n");
	if (domains(net, "allow_domains", "allow", &policy, c->record, e) ||
	    domains(net, "deny_domains", "deny", &policy, c->record, e) ||
	    address_rules(net, c, &policy, c->record, e) ||
	    rewrites(net, &policy, c->record, e))
		goto fail;
	if (update) {
		json_object_set(c->record, "rate_limit_kib", json_object_get(old, "rate_limit_kib"));
		json_object_set(c->record, "capture", json_object_get(old, "capture"));
		json_object_set(c->record, "secrets", json_object_get(old, "secrets"));
	} else if (create_fields_parse(net, c, c->record, e)) {
		goto fail;
	}
	if (!policy.s) {
		api_fail(e, 500, "internal", NULL, "out of memory");
		goto fail;
	}
	if (policy_check(policy.s, e))
		goto fail;
	c->policy = policy.s;
	return 0;
fail:
	free(policy.s);
	net_config_free(c);
	return -1;
}

void net_config_free(struct net_config *c)
{
	free(c->allow_cidrs);
	free(c->policy);
	if (c->secrets)
		memset(c->secrets, 0, strlen(c->secrets));	/* values do not linger */
	free(c->secrets);
	json_decref(c->record);
	*c = (struct net_config){ 0 };
}
