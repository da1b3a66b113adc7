/*
 * api_snapshots.c - snapshots of sandboxes: POST /v1/sandboxes/{id}/snapshots takes one of a
 * running sandbox (which keeps running), GET /v1/snapshots lists the agent's, GET and DELETE
 * /v1/snapshots/{id}.  POST /v1/sandboxes with {"snapshot": ID} starts a new sandbox from one
 * (sandbox.c): its memory, processes and files as they were, with its own identity.
 * Snapshots belong to the agent that took them; another agent's is "not found".
 */
#include "db.h"
#include "http.h"
#include "sandbox.h"


static enum MHD_Result take(struct request *r)
{
	struct sandbox s;
	json_t *out = NULL;

	if (r->len) {
		json_t *body = body_object(r->body, r->len, &r->e);

		if (!body)
			return reply_error(r, &r->e);
		/* No options yet: an empty object, so later ones stay compatible. */
		if (json_object_size(body)) {
			const char *k = json_object_iter_key(json_object_iter(body));

			api_fail(&r->e, 400, "invalid_argument", k, "%.60s: unknown field", k);
			json_decref(body);
			return reply_error(r, &r->e);
		}
		json_decref(body);
	}
	if (own_sandbox(r, &s) || sandbox_snapshot(&s, &out, &r->e))
		return reply_error(r, &r->e);
	return reply_json(r, 201, out);
}

enum MHD_Result api_snapshots(struct request *r)
{
	struct snapshot sn;

	switch (r->m.route) {
	case R_SANDBOX_SNAPSHOT:
		return take(r);
	case R_SNAPSHOTS_LIST:
		return reply_json(r, 200, db_snapshot_list(r->agent.id));
	default:
		break;
	}
	if (db_snapshot_get(r->m.id, r->agent.id, &sn)) {
		api_fail(&r->e, 404, "not_found", NULL, "no snapshot %s", r->m.id);
		return reply_error(r, &r->e);
	}
	if (r->m.route == R_SNAPSHOT_GET)
		return reply_json(r, 200, db_snapshot_json(&sn));
	if (sandbox_snapshot_delete(&sn, &r->e))
		return reply_error(r, &r->e);
	return reply_json(r, 200, db_snapshot_json(&sn));
}
