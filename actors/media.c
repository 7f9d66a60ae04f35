/*  actors/media.c — the media actors: uploads sniffed, measured, stored;
 *  revoked files purged. See media.h. */
#include "media.h"
#include "log.h"
#include "mailbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <magic.h>
#include <sodium.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

#define MEDIA_TICK_MS         5000      /* media.0 asks for revoked files */
#define MEDIA_SWEEP_EVERY_MS  60000     /* and sweeps the spool            */
#define MEDIA_SPOOL_MAX_AGE_S 3600      /* a spool file older is a leftover */
#define MEDIA_PENDING_MAX_MS  600000    /* unanswered persister requests    */
#define MEDIA_MIME_MAX        128
#define MEDIA_SNIFF_BYTES     (1024 * 1024)   /* libmagic reads at most this */
#define S_DIR_MAX             (PATH_MAX - 80)   /* room for "/xx/<32 hex>.thumb.jpg" */

static const char *const s_unavailable =
    "The service is unavailable; the request was not applied. Retry later.";

/* --- pure helpers (media.h) ----------------------------------------------- */

void
media_dir (const config_t *config, char *out, size_t size)
{
    if (config->media_dir && config->media_dir[0])
        snprintf (out, size, "%s", config->media_dir);
    else
        snprintf (out, size, "%s/media", config->var_dir);
}

void
media_incoming_dir (const config_t *config, char *out, size_t size)
{
    char dir[PATH_MAX];
    media_dir (config, dir, sizeof dir);
    snprintf (out, size, "%.*s/incoming", (int) (size > 10 ? size - 10 : 0), dir);
}

void
media_worker_name (const config_t *config, const char *key, char *out, size_t size)
{
    mailbox_shard_name (out, size, "media", key, (int) config->media_workers);
}

bool
media_is_image (const char *mime)
{
    return mime && strncmp (mime, "image/", 6) == 0 && !strstr (mime, "svg");
}

bool
media_fits_type (const char *mime, const char *message_type)
{
    if (!mime || !message_type)
        return false;
    if (streq (message_type, "file"))
        return true;
    if (streq (message_type, "image"))
        return media_is_image (mime);
    if (streq (message_type, "video"))
        return strncmp (mime, "video/", 6) == 0;
    if (streq (message_type, "audio"))
        return strncmp (mime, "audio/", 6) == 0;
    return false;
}

bool
media_path_valid (const char *path)
{
    if (!path || !path[0] || path[0] == '/' || strstr (path, "..") || strlen (path) > 80)
        return false;
    for (const char *p = path; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || *p == '.' || *p == '/'))
            return false;
    return true;
}

/* --- the actor's state ---------------------------------------------------- */

typedef enum { S_STORE, S_PURGE_LIST, S_PURGE_DONE } s_kind_t;

/* A request to a persister awaiting its answer. */
typedef struct {
    s_kind_t kind;
    char gateway[ENVELOPE_ID_MAX + 1];   /* MEDIA_STORE's sender            */
    char re[ENVELOPE_ID_MAX + 1];        /* and its request id              */
    char file[PATH_MAX];                 /* stored files (absolute), ""     */
    char thumb[PATH_MAX];
    int64_t since;                       /* zclock_mono () when sent        */
} s_pending_t;

typedef struct {
    magic_t magic;
    char dir[PATH_MAX];
    char incoming[PATH_MAX];
    zhashx_t *pending;                   /* persister request id -> s_pending_t */
    int64_t next_sweep;
    bool purging;
} media_t;

/* What the examination of one upload found. */
typedef struct {
    char mime[MEDIA_MIME_MAX];
    int64_t size;
    int width, height;                   /* 0 when not an image             */
    char thumb_tmp[PATH_MAX];            /* thumbnail being made, ""        */
    const char *thumb_ext;               /* "jpg" or "png"                  */
} s_found_t;

/* An answer chosen for the client, when an upload is refused. */
typedef struct {
    int status;
    const char *field;                   /* NULL: {"detail": message}       */
    char message[256];
} s_refusal_t;

static void
s_refuse (s_refusal_t *r, int status, const char *field, const char *fmt, ...)
{
    r->status = status;
    r->field = field;
    va_list args;
    va_start (args, fmt);
    vsnprintf (r->message, sizeof r->message, fmt, args);
    va_end (args);
}

/* --- directories ---------------------------------------------------------- */

/* mkdir -p; 0 or -1 (errno). */
static int
s_mkdirs (const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    snprintf (buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir (buf, mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir (buf, mode) != 0 && errno != EEXIST ? -1 : 0;
}

/* fsyncs a file or directory by path; 0 or -1. */
static int
s_fsync_path (const char *path, bool directory)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    close (fd);
    return rc;
}

/* Removes spool files older than MEDIA_SPOOL_MAX_AGE_S (a gateway or the
   process died mid-upload). */
static void
s_sweep_spool (actor_t *self, media_t *m)
{
    DIR *dir = opendir (m->incoming);
    if (!dir)
        return;
    time_t now = time (NULL);
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (entry->d_name[0] == '.')
            continue;
        char path[PATH_MAX + 256];
        snprintf (path, sizeof path, "%s/%s", m->incoming, entry->d_name);
        struct stat st;
        if (stat (path, &st) == 0 && S_ISREG (st.st_mode)
            && now - st.st_mtime > MEDIA_SPOOL_MAX_AGE_S && unlink (path) == 0)
            log_info (actor_name (self), "removed stale spool file %s", path);
    }
    closedir (dir);
}

/* --- answers -------------------------------------------------------------- */

static void
s_answer_json (actor_t *self, const char *to, const char *re, int status, json_t *body)
{
    envelope_t *env = envelope_new (ENVELOPE_HTTP_RESPONSE);
    if (!env) {
        json_decref (body);
        return;
    }
    snprintf (env->re, sizeof env->re, "%s", re);
    char *text = json_dumps (body, JSON_COMPACT);
    envelope_set_body (env, json_pack ("{s:i s:s}", "status", status, "json", text ? text : "{}"));
    free (text);
    json_decref (body);
    actor_send (self, to, env);
    envelope_destroy (&env);
}

static void
s_answer_refusal (actor_t *self, envelope_t *request, const s_refusal_t *r)
{
    json_t *body = r->field ? json_pack ("{s:[s]}", r->field, r->message)
                            : json_pack ("{s:s}", "detail", r->message);
    s_answer_json (self, request->from, request->id, r->status, body);
}

/* --- examining an upload -------------------------------------------------- */

/* The message type the upload is for: the form's message_type. An inline
   upload without one is a `file` message (set in the request body). */
static const char *
s_message_type (envelope_t *env, json_t *request)
{
    const char *op = json_string_value (json_object_get (request, "op"));
    json_t *body = json_object_get (request, "body");
    if (op && streq (op, "messages.create")) {
        if (!json_is_object (body))
            return NULL;
        if (!json_is_string (json_object_get (body, "message_type")))
            json_object_set_new (body, "message_type", json_string ("file"));
        return json_string_value (json_object_get (body, "message_type"));
    }
    return json_string_value (json_object_get (env->body, "message_type"));
}

/* Checks the sniffed type against message_type (400 naming `file`, or
   `message_type` for a standalone upload naming no valid type). */
static int
s_check_type (const char *op, const char *mime, const char *type, s_refusal_t *r)
{
    static const char *const media[] = { "image", "video", "audio", "file", NULL };
    static const char *const others[] = { "text", "location", "system", NULL };
    bool known = false, other = false;
    for (int i = 0; type && media[i]; i++)
        known = known || streq (type, media[i]);
    for (int i = 0; type && others[i]; i++)
        other = other || streq (type, others[i]);
    if (other) {
        s_refuse (r, 400, "file", "A %s message carries no file.", type);
        return -1;
    }
    if (!type || (!known && streq (op, "messages.create")))
        return 0;           /* none given, or messages.create answers itself */
    if (!known) {
        s_refuse (r, 400, "message_type", "Must be one of image, video, audio, file.");
        return -1;
    }
    if (media_fits_type (mime, type))
        return 0;
    if (streq (type, "image") && strncmp (mime, "image/", 6) == 0)
        s_refuse (r, 400, "file", "The file is %s, which is only accepted as a file"
                  " message.", mime);
    else
        s_refuse (r, 400, "file", "The file is %s, which does not fit message_type %s.",
                  mime, type);
    return -1;
}

/* Width, height (as displayed: EXIF rotation applied) and a thumbnail of
   the image at `path`, written to `tmp_base`.thumb.<ext>. 0, or -1 when
   libvips cannot read it or it is too large. */
static int
s_measure (actor_t *self, const char *path, const char *tmp_base, s_found_t *found,
           bool *too_large)
{
    *too_large = false;
    VipsImage *image = vips_image_new_from_file (path, "access", VIPS_ACCESS_SEQUENTIAL,
                                                 NULL);
    if (!image)
        goto failed;
    long long w = vips_image_get_width (image), h = vips_image_get_height (image);
    bool swap = vips_image_get_orientation_swap (image);
    g_object_unref (image);
    if (w <= 0 || h <= 0 || w * h > MEDIA_PIXELS_MAX) {
        *too_large = w * h > MEDIA_PIXELS_MAX;
        return -1;
    }
    VipsImage *thumb = NULL;
    if (vips_thumbnail (path, &thumb, MEDIA_THUMB_SIZE, "height", MEDIA_THUMB_SIZE,
                        "size", VIPS_SIZE_DOWN, "fail_on", VIPS_FAIL_ON_ERROR, NULL) != 0)
        goto failed;
    bool alpha = vips_image_hasalpha (thumb);
    found->thumb_ext = alpha ? "png" : "jpg";
    snprintf (found->thumb_tmp, sizeof found->thumb_tmp, "%s.thumb.%s", tmp_base,
              found->thumb_ext);
    int rc = alpha ? vips_pngsave (thumb, found->thumb_tmp, "strip", TRUE, NULL)
                   : vips_jpegsave (thumb, found->thumb_tmp, "Q", 80, "strip", TRUE, NULL);
    g_object_unref (thumb);
    if (rc != 0 || s_fsync_path (found->thumb_tmp, false) != 0) {
        unlink (found->thumb_tmp);
        found->thumb_tmp[0] = '\0';
        goto failed;
    }
    found->width = (int) (swap ? h : w);
    found->height = (int) (swap ? w : h);
    return 0;
failed:
    log_info (actor_name (self), "not a readable image (%s): %s", path,
              vips_error_buffer ());
    vips_error_clear ();
    return -1;
}

/* Sniffs, checks and (for images) measures the spooled upload; fsyncs it.
   0, or -1 with the answer in `r`. */
static int
s_examine (actor_t *self, media_t *m, envelope_t *env, const char *path,
           s_found_t *found, s_refusal_t *r)
{
    json_t *request = json_object_get (env->body, "request");
    const char *op = json_string_value (json_object_get (request, "op"));
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat (fd, &st) != 0) {
        log_error (actor_name (self), "cannot open the spooled upload %s: %s", path,
                   strerror (errno));
        s_refuse (r, 503, NULL, "%s", s_unavailable);
        if (fd >= 0)
            close (fd);
        return -1;
    }
    found->size = st.st_size;
    const char *mime = found->size > 0 ? magic_descriptor (m->magic, fd) : NULL;
    snprintf (found->mime, sizeof found->mime, "%s", mime ? mime : "application/octet-stream");
    int rc = 0;
    if (found->size == 0) {
        s_refuse (r, 400, "file", "The submitted file is empty.");
        rc = -1;
    }
    const char *type = s_message_type (env, request);
    if (rc == 0)
        rc = s_check_type (op ? op : "", found->mime, type, r);
    if (rc == 0 && media_is_image (found->mime)) {
        bool too_large;
        if (s_measure (self, path, path, found, &too_large) != 0 && type
            && streq (type, "image")) {
            if (too_large)
                s_refuse (r, 400, "file", "The image has more than %lld pixels.",
                          MEDIA_PIXELS_MAX);
            else
                s_refuse (r, 400, "file", "Upload a valid image. The file you uploaded"
                          " was either not an image or a corrupted image.");
            rc = -1;
        }
    }
    if (rc == 0 && fsync (fd) != 0) {
        log_error (actor_name (self), "fsync %s: %s", path, strerror (errno));
        s_refuse (r, 503, NULL, "%s", s_unavailable);
        rc = -1;
    }
    close (fd);
    return rc;
}

/* --- storing -------------------------------------------------------------- */

/* Renames the spool file (and thumbnail) into <dir>/<xx>/<random>, then
   fsyncs that directory. Writes the relative paths into `rel`/`thumb_rel`
   ("" for none). 0, or -1 (nothing left in place). */
static int
s_place (actor_t *self, media_t *m, const char *spool, s_found_t *found,
         char rel[64], char thumb_rel[64])
{
    unsigned char raw[16];
    randombytes_buf (raw, sizeof raw);
    char id[33];
    for (int i = 0; i < 16; i++)
        snprintf (id + 2 * i, 3, "%02x", raw[i]);
    snprintf (rel, 64, "%.2s/%s", id, id);
    thumb_rel[0] = '\0';
    char sub[PATH_MAX + 8], file[PATH_MAX + 64], thumb[PATH_MAX + 80];
    snprintf (sub, sizeof sub, "%s/%.2s", m->dir, id);
    snprintf (file, sizeof file, "%s/%s", m->dir, rel);
    if (s_mkdirs (sub, 0750) != 0 || rename (spool, file) != 0) {
        log_error (actor_name (self), "cannot store %s as %s: %s", spool, file,
                   strerror (errno));
        return -1;
    }
    if (found->thumb_tmp[0]) {
        snprintf (thumb_rel, 64, "%.35s.thumb.%.3s", rel, found->thumb_ext);
        snprintf (thumb, sizeof thumb, "%s/%s", m->dir, thumb_rel);
        if (rename (found->thumb_tmp, thumb) != 0) {
            log_error (actor_name (self), "cannot store %s: %s", thumb, strerror (errno));
            unlink (file);
            return -1;
        }
        found->thumb_tmp[0] = '\0';
    }
    /* the renames are durable once the directory is (and the new
       subdirectory's entry in media_dir) */
    if (s_fsync_path (sub, true) != 0 || s_fsync_path (m->dir, true) != 0) {
        log_error (actor_name (self), "fsync %s: %s", sub, strerror (errno));
        unlink (file);
        if (thumb_rel[0])
            unlink (thumb);
        return -1;
    }
    return 0;
}

/* Sends an operation to a persister, awaiting the answer as `pending`
   (taken). `key` picks the persister. 0 or -1. */
static int
s_send_op (actor_t *self, media_t *m, json_t *request, const char *key,
           s_pending_t *pending)
{
    envelope_t *env = envelope_new (ENVELOPE_HTTP_REQUEST);
    if (!env) {
        json_decref (request);
        free (pending);
        return -1;
    }
    snprintf (env->from, sizeof env->from, "%s", actor_name (self));
    envelope_set_body (env, request);
    char to[48];
    mailbox_shard_name (to, sizeof to, "persister", key ? key : env->id,
                        actor_shard_count (actor_config (self), "persister"));
    int rc = actor_send (self, to, env);
    if (rc == 0) {
        pending->since = zclock_mono ();
        zhashx_insert (m->pending, env->id, pending);
    }
    else
        free (pending);
    envelope_destroy (&env);
    return rc;
}

/* The persister request for a stored upload: the gateway's request with
   the internal attachment description and the internal op's name. */
static json_t *
s_store_request (envelope_t *env, const s_found_t *found, const char *rel,
                 const char *thumb_rel)
{
    json_t *request = json_deep_copy (json_object_get (env->body, "request"));
    const char *op = json_string_value (json_object_get (request, "op"));
    bool with_message = op && streq (op, "messages.create");
    json_object_set_new (request, "op", json_string (with_message
        ? "messages.create_with_file" : "attachments.insert"));
    json_t *attachment = json_pack ("{s:O s:s s:I s:s}",
        "name", json_object_get (env->body, "name"), "mime", found->mime,
        "size", (json_int_t) found->size, "storage_path", rel);
    if (found->width > 0) {
        json_object_set_new (attachment, "width", json_integer (found->width));
        json_object_set_new (attachment, "height", json_integer (found->height));
    }
    if (thumb_rel[0])
        json_object_set_new (attachment, "thumb_path", json_string (thumb_rel));
    json_object_set_new (request, "internal", json_pack ("{s:o}", "attachment", attachment));
    return request;
}

/* Removes a placed file and its thumbnail (relative paths, "" for none). */
static void
s_unlink_placed (media_t *m, const char *rel, const char *thumb_rel)
{
    char path[PATH_MAX + 64];
    snprintf (path, sizeof path, "%.*s/%.63s", S_DIR_MAX, m->dir, rel);
    unlink (path);
    if (thumb_rel[0]) {
        snprintf (path, sizeof path, "%.*s/%.63s", S_DIR_MAX, m->dir, thumb_rel);
        unlink (path);
    }
}

/* Asks the persister of the room (or the uploader) to record the placed
   upload; its answer comes to s_on_response. 0 or -1. */
static int
s_record (actor_t *self, media_t *m, envelope_t *env, const s_found_t *found,
          const char *rel, const char *thumb_rel)
{
    s_pending_t *pending = calloc (1, sizeof *pending);
    if (!pending)
        return -1;
    pending->kind = S_STORE;
    snprintf (pending->gateway, sizeof pending->gateway, "%s", env->from);
    snprintf (pending->re, sizeof pending->re, "%s", env->id);
    snprintf (pending->file, sizeof pending->file, "%.*s/%.63s", S_DIR_MAX, m->dir, rel);
    if (thumb_rel[0])
        snprintf (pending->thumb, sizeof pending->thumb, "%.*s/%.63s", S_DIR_MAX, m->dir,
                  thumb_rel);
    json_t *request = s_store_request (env, found, rel, thumb_rel);
    const char *key = json_string_value (json_object_get (json_object_get (request, "body"),
                                                          "room"));
    if (!key)
        key = json_string_value (json_object_get (json_object_get (request, "auth"), "user"));
    return s_send_op (self, m, request, key, pending);
}

/* MEDIA_STORE: examine, place, then have a persister record it. */
static void
s_store (actor_t *self, media_t *m, envelope_t *env)
{
    const char *spool = json_string_value (json_object_get (env->body, "path"));
    size_t n = strlen (m->incoming);
    s_refusal_t refusal = { 0 };
    s_found_t found = { .width = 0 };
    char rel[64] = "", thumb_rel[64] = "";
    bool inside = spool && strncmp (spool, m->incoming, n) == 0 && spool[n] == '/'
                  && !strstr (spool + n, "..");
    if (!inside) {
        log_warn (actor_name (self), "refused a spool path outside %s", m->incoming);
        s_refuse (&refusal, 400, NULL, "Bad upload.");
    }
    else if (s_examine (self, m, env, spool, &found, &refusal) == 0) {
        if (s_place (self, m, spool, &found, rel, thumb_rel) != 0)
            s_refuse (&refusal, 503, NULL, "%s", s_unavailable);
        else if (s_record (self, m, env, &found, rel, thumb_rel) != 0) {
            s_unlink_placed (m, rel, thumb_rel);
            s_refuse (&refusal, 503, NULL, "%s", s_unavailable);
        }
        else
            actor_figure_add (self, "uploads", 1);
    }
    if (!refusal.status)
        return;
    if (inside)
        unlink (spool);         /* still there unless it was renamed */
    if (found.thumb_tmp[0])
        unlink (found.thumb_tmp);
    s_answer_refusal (self, env, &refusal);
}

/* --- purging revoked attachments ------------------------------------------ */

static void
s_request_purge (actor_t *self, media_t *m, const char *op, json_t *internal, s_kind_t kind)
{
    s_pending_t *pending = calloc (1, sizeof *pending);
    if (!pending) {
        json_decref (internal);
        return;
    }
    pending->kind = kind;
    json_t *request = json_pack ("{s:s s:s s:s s:s s:{} s:{} s:{} s:o}", "op", op,
                                 "method", "POST", "path", "/internal/media/", "base", "",
                                 "params", "query", "auth", "internal", internal);
    if (s_send_op (self, m, request, "purge", pending) == 0 && kind == S_PURGE_LIST)
        m->purging = true;
}

/* The revoked attachments' paths: removes their files, then reports them
   purged. */
static void
s_on_purge_list (actor_t *self, media_t *m, json_t *answer)
{
    json_t *ids = json_array ();
    size_t i;
    json_t *item;
    json_array_foreach (json_object_get (answer, "results"), i, item) {
        const char *paths[] = {
            json_string_value (json_object_get (item, "storage_path")),
            json_string_value (json_object_get (item, "thumb_path")),
        };
        bool gone = true;
        for (int k = 0; k < 2; k++) {
            if (!paths[k] || !media_path_valid (paths[k]))
                continue;
            char full[PATH_MAX + 96];
            snprintf (full, sizeof full, "%s/%s", m->dir, paths[k]);
            if (unlink (full) != 0 && errno != ENOENT) {
                log_warn (actor_name (self), "cannot remove %s: %s", full, strerror (errno));
                gone = false;
            }
        }
        if (gone)
            json_array_append (ids, json_object_get (item, "id"));
    }
    if (json_array_size (ids) > 0) {
        log_info (actor_name (self), "purged the files of %zu revoked attachment(s)",
                  json_array_size (ids));
        s_request_purge (self, m, "attachments.purged", json_pack ("{s:o}", "ids", ids),
                         S_PURGE_DONE);
    }
    else
        json_decref (ids);
}

/* --- answers from persisters ---------------------------------------------- */

static void
s_on_response (actor_t *self, media_t *m, envelope_t *env)
{
    s_pending_t *pending = zhashx_lookup (m->pending, env->re);
    if (!pending)
        return;
    int status = (int) json_integer_value (json_object_get (env->body, "status"));
    if (pending->kind == S_STORE) {
        /* 201: recorded. Anything else (refused, a client_id already used,
           the database down) recorded nothing: the files go. */
        if (status != 201) {
            unlink (pending->file);
            if (pending->thumb[0])
                unlink (pending->thumb);
        }
        envelope_t *answer = envelope_new (ENVELOPE_HTTP_RESPONSE);
        if (answer) {
            snprintf (answer->re, sizeof answer->re, "%s", pending->re);
            envelope_set_body (answer, json_deep_copy (env->body));
            actor_send (self, pending->gateway, answer);
            envelope_destroy (&answer);
        }
    }
    else if (pending->kind == S_PURGE_LIST) {
        m->purging = false;
        const char *text = json_string_value (json_object_get (env->body, "json"));
        json_t *answer = status == 200 && text ? json_loads (text, 0, NULL) : NULL;
        if (answer)
            s_on_purge_list (self, m, answer);
        json_decref (answer);
    }
    zhashx_delete (m->pending, env->re);
}

/* --- the actor ------------------------------------------------------------ */

/* libvips warnings (a corrupt image gives one per tile) go to the debug
   log, not stderr. */
static void
s_vips_log (const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    (void) domain, (void) level, (void) data;
    log_debug ("media", "libvips: %s", message);
}

static void
s_pending_free (void **item)
{
    free (*item);
    *item = NULL;
}

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    media_t *m = calloc (1, sizeof *m);
    if (!m)
        return -1;
    actor_set_state (self, m);
    m->pending = zhashx_new ();
    zhashx_set_destructor (m->pending, s_pending_free);
    const config_t *config = actor_config (self);
    media_dir (config, m->dir, sizeof m->dir);
    media_incoming_dir (config, m->incoming, sizeof m->incoming);
    if (s_mkdirs (m->incoming, 0750) != 0) {
        snprintf (error, error_size, "media_dir: cannot create %s: %s", m->incoming,
                  strerror (errno));
        return -1;
    }
    m->magic = magic_open (MAGIC_MIME_TYPE | MAGIC_ERROR);
    size_t bytes_max = MEDIA_SNIFF_BYTES;
    if (!m->magic || magic_load (m->magic, NULL) != 0
        || magic_setparam (m->magic, MAGIC_PARAM_BYTES_MAX, &bytes_max) != 0) {
        snprintf (error, error_size, "libmagic: cannot load its database: %s",
                  m->magic ? magic_error (m->magic) : "out of memory");
        return -1;
    }
    /* process-wide; vips_init is a no-op after the first call. No operation
       cache (every file is new) and no thread pool beyond this thread. */
    if (VIPS_INIT ("parleyd") != 0) {
        snprintf (error, error_size, "libvips: %s", vips_error_buffer ());
        return -1;
    }
    vips_cache_set_max (0);
    vips_concurrency_set (1);
    g_log_set_handler ("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                       s_vips_log, NULL);
    if (actor_index (self) == 0)
        s_sweep_spool (self, m);
    m->next_sweep = zclock_mono () + MEDIA_SWEEP_EVERY_MS;
    return 0;
}

static void
s_stop (actor_t *self)
{
    media_t *m = actor_state (self);
    if (!m)
        return;
    if (m->magic)
        magic_close (m->magic);
    zhashx_destroy (&m->pending);
    free (m);
    actor_set_state (self, NULL);
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    media_t *m = actor_state (self);
    for (size_t i = 0; i < count; i++) {
        if (batch[i]->type == ENVELOPE_MEDIA_STORE)
            s_store (self, m, batch[i]);
        else if (batch[i]->type == ENVELOPE_HTTP_RESPONSE)
            s_on_response (self, m, batch[i]);
    }
}

/* Forgets requests a persister never answered; media.0 purges revoked
   files (one indexed query per tick) and stale spool files. */
static void
s_tick (actor_t *self)
{
    media_t *m = actor_state (self);
    int64_t now = zclock_mono ();
    zlistx_t *keys = zhashx_keys (m->pending);
    for (const char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        s_pending_t *pending = zhashx_lookup (m->pending, key);
        if (now - pending->since > MEDIA_PENDING_MAX_MS) {
            if (pending->kind == S_PURGE_LIST)
                m->purging = false;
            zhashx_delete (m->pending, key);
        }
    }
    zlistx_destroy (&keys);
    if (actor_index (self) != 0)
        return;
    if (now >= m->next_sweep) {
        m->next_sweep = now + MEDIA_SWEEP_EVERY_MS;
        s_sweep_spool (self, m);
    }
    if (!m->purging)
        s_request_purge (self, m, "attachments.purge_list", json_pack ("{s:b}", "purge", 1),
                         S_PURGE_LIST);
}

const actor_def_t media_actor = {
    .kind = "media",
    .batch_max = 8,
    .tick_ms = MEDIA_TICK_MS,
    .start = s_start,
    .handle = s_handle,
    .tick = s_tick,
    .stop = s_stop,
};
