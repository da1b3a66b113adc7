/*
 * api_admin.c - agents and money: POST /v1/agents and /v1/agents/{id}/credit (admin key),
 * GET /v1/usage and /v1/wallet (an agent's own).
 */
#include <string.h>

#include "auth.h"
#include "db.h"
#include "http.h"

#define WALLET_ENTRIES	100

static enum MHD_Result create_agent(struct request *r)
{
	json_t *body = body_object(r->body, r->len, &r->e), *out;
	char id[64], key[128], hash[65];
	struct agent_req req;
	int bad;

	if (!body)
		return reply_error(r, &r->e);
	bad = parse_agent(body, &req, &r->e);
	json_decref(body);
	if (bad)
		return reply_error(r, &r->e);
	random_id("ag-", id, sizeof(id));
	if (!req.name[0])
		snprintf(req.name, sizeof(req.name), "%s", id);
	if (auth_new_key(KEY_PREFIX_AGENT, key, sizeof(key))) {
		api_fail(&r->e, 500, "internal", NULL, "no randomness for a key");
		return reply_error(r, &r->e);
	}
	auth_hash(key, hash);
	if (db_agent_create(&req, id, hash)) {
		api_fail(&r->e, 500, "internal", NULL, "cannot record the agent");
		return reply_error(r, &r->e);
	}
	out = db_agent_json(id);
	/* The only time the key is shown: kilnd keeps its hash. */
	json_object_set_new(out, "api_key", json_string(key));
	return reply_json(r, 201, out);
}

static enum MHD_Result credit(struct request *r)
{
	json_t *body = body_object(r->body, r->len, &r->e);
	char currency[8];
	struct agent a;
	int64_t amount;
	int bad;

	if (!body)
		return reply_error(r, &r->e);
	bad = parse_credit(body, &amount, currency, sizeof(currency), &r->e);
	json_decref(body);
	if (bad)
		return reply_error(r, &r->e);
	if (db_agent_get(r->m.id, &a)) {
		api_fail(&r->e, 404, "not_found", NULL, "no agent %s", r->m.id);
		return reply_error(r, &r->e);
	}
	if (strcmp(a.currency, currency)) {
		api_fail(&r->e, 400, "invalid_argument", "currency",
			 "currency: this agent's wallet is in %s", a.currency);
		return reply_error(r, &r->e);
	}
	if (db_credit(a.id, amount, currency)) {
		api_fail(&r->e, 500, "internal", NULL, "cannot record the credit");
		return reply_error(r, &r->e);
	}
	return reply_json(r, 200, db_wallet_json(a.id, 10));
}

enum MHD_Result api_admin(struct request *r)
{
	switch (r->m.route) {
	case R_AGENTS:
		return create_agent(r);
	case R_AGENT_CREDIT:
		return credit(r);
	case R_USAGE:
		return reply_json(r, 200, db_usage_json(r->agent.id));
	default:
		return reply_json(r, 200, db_wallet_json(r->agent.id, WALLET_ENTRIES));
	}
}
