/*
 * templates.h - kilnd's templates (api_templates.c): which names exist, where their root
 * images are, and the background jobs that build an image from a recipe in the repo
 * (images/build) or warm a snapshot of it (template.h) for creates to clone.
 *
 * A template name is a root image: registered with --template NAME=ROOTFS, built through the
 * API into DATA/images/NAME.ext4, or built by `make images` into build/images/NAME.ext4.
 * A recipe images/NAME/recipe makes NAME a template that can be built.
 */
#ifndef KILND_TEMPLATES_H
#define KILND_TEMPLATES_H

#include <stdbool.h>
#include <stddef.h>

/* At startup: the recipes directory (NULL: images/ beside build/) and DATA/images. */
void templates_init(const char *recipes_dir);

/* 1-63 characters of [a-z0-9_-], not starting with '-': safe as a file name component. */
bool template_name_ok(const char *name);

/* DATA/images/NAME.ext4 if it was built through the API and is readable: 0, else -1. */
int template_built(const char *name, char *path, size_t len);

#endif
