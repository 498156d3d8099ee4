/* {key} in a shipped C plugin's path param (the file plugin's `path`, oauth2's `refresh_token_file`): one key of
 * a keyed family, one file, never a file outside the directory the path names. Linked into each plugin, not
 * exported from it. */
#ifndef EXPIRABLE_PLUGIN_KEY_PATH_H
#define EXPIRABLE_PLUGIN_KEY_PATH_H

#include "expirable.h"

/* Whether `path` has a "." or ".." component. */
__attribute__((visibility("hidden"))) int expirable_path_has_dot_component(const char *path);

/* `path` with each "{key}" replaced by `key` (malloc'd; the caller frees it). NULL with *refused = 1 when the key
 * holds "/" or makes a "." or ".." component of the path (the path itself is checked when the plugin starts);
 * NULL with *refused = 0 when out of memory. */
__attribute__((visibility("hidden"))) char *expirable_path_with_key(const char *path, expirable_str key, int *refused);

#endif
