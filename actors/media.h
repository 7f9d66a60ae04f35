/*  actors/media.h — the media actors: they own the media directory
 *  (API.md §2.7, docs/media.md).
 *
 *  A gateway streams an upload's file part into a spool file of its own
 *  under media_dir/incoming/ (never the whole body in memory), then hands
 *  the file over with a MEDIA_STORE envelope. From then on the file is the
 *  media actor's: it sniffs the type from the bytes (libmagic), checks it
 *  against message_type, measures images and makes their thumbnails
 *  (libvips), fsyncs, renames into place under a random name, and asks a
 *  persister to record the attachment (and, for an upload inline with a
 *  message, to create the message in the same transaction). The persister
 *  answers the media actor, which removes the files when nothing was
 *  recorded and passes the answer on to the gateway. Downloads do not come
 *  here: a persister checks who may see the file and the gateway serves the
 *  bytes (gateway/files.c).
 *
 *  media.0 also purges the files of revoked attachments (the last message
 *  carrying them was deleted, 009_attachments.sql) and stale spool files.
 *
 *  State owned: the libmagic cookie, the answers awaited from persisters.
 *  Layout of media_dir: incoming/<random>.part (spool, temporary),
 *  <xx>/<32 hex> (files), <xx>/<32 hex>.thumb.jpg|.png (thumbnails).
 */
#ifndef PARLEY_MEDIA_H
#define PARLEY_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include "actor.h"
#include "config.h"

#define MEDIA_THUMB_SIZE   320          /* thumbnails fit a 320x320 box     */
#define MEDIA_PIXELS_MAX   178956970LL  /* larger images are refused (bombs) */

extern const actor_def_t media_actor;

/* The media directory: media_dir, or var_dir/media when that is empty. */
void media_dir (const config_t *config, char *out, size_t size);

/* Where gateways spool uploads: <media dir>/incoming. */
void media_incoming_dir (const config_t *config, char *out, size_t size);

/* The media actor that stores upload `key` ("media.N"). */
void media_worker_name (const config_t *config, const char *key, char *out, size_t size);

/* True for a raster image type, shown inline and thumbnailed (image/...
   but not SVG, which can carry scripts: SVG is served as a download). */
bool media_is_image (const char *mime);

/* Whether a file of sniffed type `mime` may be sent as a message of type
   `message_type`: image needs a raster image, video video/..., audio
   audio/...; file takes anything; other types take no file. */
bool media_fits_type (const char *mime, const char *message_type);

/* True for a relative storage path the media actor makes
   ("ab/0123...ef" or with ".thumb.jpg"/".thumb.png"): no "..", no "/" at
   the start, only [0-9a-z./]. The gateway checks before opening. */
bool media_path_valid (const char *path);

#endif
