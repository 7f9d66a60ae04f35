/*  gateway/files.h — attachments at the edge (API.md §2.7, docs/media.md).
 *
 *  Uploads: a multipart/form-data body (POST attachments/, or POST
 *  messages/ with the file inline) is parsed as it streams in (lws_spa);
 *  the `file` part goes to a spool file under media_dir/incoming/ in the
 *  chunks it arrives in, never whole in memory, and is refused with 413 the
 *  moment it passes upload_max. The other fields are kept (they are small).
 *  Once the body is complete the spool file is handed to a media actor
 *  (MEDIA_STORE envelope), which answers like a persister would.
 *
 *  Downloads: a persister has checked who may see the file and answered
 *  where it is (a ROUTE_FILE route); the gateway reads the file in 64 KiB
 *  chunks as the socket becomes writeable — a local read, no store — with
 *  a single byte range when asked (206/416), the sniffed Content-Type,
 *  X-Content-Type-Options: nosniff and, for anything not an image,
 *  Content-Disposition: attachment.
 */
#ifndef PARLEY_GATEWAY_FILES_H
#define PARLEY_GATEWAY_FILES_H

#include <stdbool.h>
#include <stdint.h>
#include "http.h"

/* An upload being read (the session's `upload`). */
typedef struct files_upload_t files_upload_t;

/* True when the request's body is multipart/form-data. */
bool files_is_multipart (struct lws *wsi);

/* Starts parsing a multipart upload for the request (after it was
   authenticated). 0; on failure answers itself. */
int files_upload_begin (gateway_t *gw, struct lws *wsi, gw_session_t *pss);

/* Feeds a body chunk; answers 400/413/503 itself on bad input. 0. */
int files_upload_body (gateway_t *gw, struct lws *wsi, gw_session_t *pss,
                       const void *data, size_t len);

/* The body is complete: with a file, hands it to a media actor and
   registers the pending answer (returns 0); without one, sets *body to
   the form's fields as a JSON object (caller owns) and returns 1 for the
   caller to send as an ordinary request; -1 when it answered itself. */
int files_upload_complete (gateway_t *gw, struct lws *wsi, gw_session_t *pss,
                           json_t **body);

/* Starts serving the file an operation answered ({"path", "mime", "name",
   "inline"}) for the request: queues the headers and the range. */
void files_serve (gateway_t *gw, struct lws *wsi, gw_session_t *pss, json_t *file);

/* Writes the next chunk of the file being served (headers already sent).
   0 more to come, 1 done, -1 failed (close). */
int files_on_writeable (gateway_t *gw, struct lws *wsi, gw_session_t *pss);

/* Releases the upload (removing an unfinished spool file) and closes the
   file being served. */
void files_session_free (gw_session_t *pss);

/* --- pure helpers (tests/unit/test_files.c) ------------------------------ */

/* Parses a Range header for a file of `size` bytes. Returns 1 with the
   inclusive [*first, *last] for one satisfiable range, 0 when the header
   is to be ignored (absent, not bytes=, several ranges, malformed: the
   whole file is served), -1 when unsatisfiable (416). */
int files_parse_range (const char *header, uint64_t size, uint64_t *first,
                       uint64_t *last);

/* A Content-Disposition value: `attachment` (or `inline`) with an ASCII
   filename="..." fallback and filename*=UTF-8''... for the real name. */
void files_disposition (const char *name, bool is_inline, char *out, size_t size);

/* A client's file name made safe to keep and show: its last path segment,
   no control characters, valid UTF-8 (else "file"), at most `size` - 1
   bytes cut at a character boundary; "file" when nothing is left. */
void files_clean_name (const char *raw, char *out, size_t size);

#endif
