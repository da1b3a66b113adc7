/*
 * api_secrets.c - the secrets an agent registers once for all its sandboxes (docs/kilnd.md
 * "Secrets"):
 *
 *   GET    /v1/secrets          the agent's secrets, never their values
 *   PUT    /v1/secrets/{name}   {"env", "header", "hosts", "value"}: add or replace one
 *   GET    /v1/secrets/{name}
 *   DELETE /v1/secrets/{name}
 *
 * A networked sandbox created later gets them (all, or those its network's "agent_secrets"
 * names; network.h merges them with the sandbox's own): a placeholder in the guest's
 * environment, the value added by the egress proxy on the way to the secret's hosts only.
 * Sandboxes that exist keep the secrets they were created with.  Values go into kilnd's
 * database and out to a sandbox's proxy, never into an answer.
 */
#include <string.h>

#include "db.h"
#include "http.h"
#include "network.h"

#define AGENT_MAX_SECRETS	64

static const char *const put_fields[] = { "env", "header", "hosts", "value", NULL };

/* The secret of the path, without its value, as the answer. */
static enum MHD_Result reply_secret(struct request *r, unsigned status)
{
	json_t *list = db_secrets_json(r->agent.id, r->m.id, false);
	json_t *one = json_incref(json_array_get(list, 0));

	json_decref(list);
	if (!one) {
		api_fail(&r->e, 404, "not_found", NULL, "no secret %.63s", r->m.id);
		return reply_error(r, &r->e);
	}
	return reply_json(r, status, one);
}

static enum MHD_Result put(struct request *r)
{
	json_t *body = body_object(r->body, r->len, &r->e), *shown = NULL;
	int added = -1;

	if (!body || json_only_fields(body, put_fields, &r->e))
		goto out;
	/* The name comes from the path; the secret is checked as a sandbox's would be. */
	json_object_set_new(body, "name", json_string(r->m.id));
	if (net_secret_check(body, "secret", &shown, &r->e))
		goto out;
	added = db_secret_put(r->agent.id, shown,
			      json_string_value(json_object_get(body, "value")),
			      AGENT_MAX_SECRETS);
	if (added == 2)
		api_fail(&r->e, 409, "limit_exceeded", NULL, "an agent has at most %d secrets",
			 AGENT_MAX_SECRETS);
	else if (added < 0)
		api_fail(&r->e, 500, "internal", NULL, "cannot record the secret");
out:
	json_decref(body);
	json_decref(shown);
	if (added != 0 && added != 1)
		return reply_error(r, &r->e);
	return reply_secret(r, added ? 201 : 200);
}

static enum MHD_Result delete_one(struct request *r)
{
	int ret = db_secret_delete(r->agent.id, r->m.id);

	if (ret == 1)
		api_fail(&r->e, 404, "not_found", NULL, "no secret %.63s", r->m.id);
	else if (ret)
		api_fail(&r->e, 500, "internal", NULL, "cannot delete the secret");
	if (ret)
		return reply_error(r, &r->e);
	return reply_json(r, 200, json_pack("{s:s, s:b}", "name", r->m.id, "deleted", 1));
}

enum MHD_Result api_secrets(struct request *r)
{
	switch (r->m.route) {
	case R_SECRETS_LIST:
		return reply_json(r, 200, json_pack("{s:o}", "secrets",
						    db_secrets_json(r->agent.id, NULL, false)));
	case R_SECRET_PUT:
		return put(r);
	case R_SECRET_GET:
		return reply_secret(r, 200);
	default:
		return delete_one(r);
	}
}
