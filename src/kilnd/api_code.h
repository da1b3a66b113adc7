/*
 * api_code.h - the code interpreter and OpenAI Containers parts of kilnd's API: handlers
 * (api_code.c, api_containers.c) and what they share.  Kept apart from http.h so these
 * routes live in their own files.
 */
#ifndef KILND_API_CODE_H
#define KILND_API_CODE_H

#include "http.h"

/* /v1/sandboxes/{id}/code and /v1/sandboxes/{id}/contexts... */
enum MHD_Result api_code(struct request *r);

/* /v1/containers... */
enum MHD_Result api_containers(struct request *r);

/* A connection to the agent of a running sandbox; -1 with e set (409 if it is not running,
 * 502 if its agent does not answer). */
int sandbox_agent(const struct sandbox *s, struct api_error *e);

/* Activity on sandbox id: if it is a container, its idle expiry starts again from now. */
void container_touch(const char *id);

/* The largest multipart/form-data body a container file upload may have. */
#define MAX_MULTIPART_BODY	(64u << 20)

#endif
