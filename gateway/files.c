/*  gateway/files.c — multipart uploads spooled to disk, files served with
 *  ranges. See files.h. */
#include "files.h"
#include "log.h"
#include "media.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILES_CHUNK        65536
/* Form fields other than the file (content is up to 10 000 characters of
   UTF-8), and lws_spa's working buffer for the file's chunks. */
#define FILES_FORM_STORAGE (96 * 1024)

static const char *const s_unavailable =
    "The service is unavailable; the request was not applied. Retry later.";

/* The form fields kept (POST messages/ takes them as its JSON body would). */
static const char *const s_fields[] = {
    "room", "message_type", "content", "reply_to", "forward_from", "client_id",
    "attachment"
};
#define S_FIELD_COUNT ((int) (sizeof s_fields / sizeof s_fields[0]))

struct files_upload_t {
    struct lws_spa *spa;
    const config_t *config;
    int fd;                      /* spool file; -1 before the file part     */
    char path[PATH_MAX];         /* spool path; "" when none or handed over */
    char name[256];              /* the client's file name, cleaned         */
    int64_t size;
    bool in_file;                /* inside the `file` part                  */
    bool file_seen, file_done;
    /* a refusal chosen inside the parser callback */
    int status;
    const char *field;           /* NULL: {"detail": message}               */
    char message[160];
};

/* --- pure helpers --------------------------------------------------------- */

int
files_parse_range (const char *header, uint64_t size, uint64_t *first, uint64_t *last)
{
    while (*header == ' ')
        header++;
    if (strncasecmp (header, "bytes=", 6) != 0 || strchr (header, ','))
        return 0;
    const char *spec = header + 6;
    while (*spec == ' ')
        spec++;
    const char *dash = strchr (spec, '-');
    if (!dash)
        return 0;
    bool has_start = dash > spec, has_end = dash[1] != '\0';
    uint64_t start = 0, end = 0;
    for (const char *p = spec; p < dash; p++) {
        if (*p < '0' || *p > '9' || start > UINT64_MAX / 10 - 10)
            return 0;
        start = start * 10 + (uint64_t) (*p - '0');
    }
    for (const char *p = dash + 1; *p && *p != ' '; p++) {
        if (*p < '0' || *p > '9' || end > UINT64_MAX / 10 - 10)
            return 0;
        end = end * 10 + (uint64_t) (*p - '0');
    }
    if (!has_start && !has_end)
        return 0;
    if (!has_start) {                      /* the last `end` bytes */
        if (end == 0 || size == 0)
            return -1;
        *first = end >= size ? 0 : size - end;
        *last = size - 1;
        return 1;
    }
    if (has_end && end < start)
        return 0;
    if (start >= size)
        return -1;
    *first = start;
    *last = has_end && end < size - 1 ? end : size - 1;
    return 1;
}

void
files_disposition (const char *name, bool is_inline, char *out, size_t size)
{
    char ascii[256], encoded[768];
    size_t a = 0, e = 0;
    for (const unsigned char *p = (const unsigned char *) name; *p; p++) {
        if (a < sizeof ascii - 1)
            ascii[a++] = (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\') ? '_' : (char) *p;
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                     || (*p >= '0' && *p <= '9') || strchr ("!#$&+-.^_`|~", *p);
        if (e + 4 > sizeof encoded)
            break;
        if (plain)
            encoded[e++] = (char) *p;
        else
            e += (size_t) snprintf (encoded + e, 4, "%%%02X", *p);
    }
    ascii[a] = '\0';
    encoded[e] = '\0';
    snprintf (out, size, "%s; filename=\"%s\"; filename*=UTF-8''%s",
              is_inline ? "inline" : "attachment", ascii, encoded);
}

void
files_clean_name (const char *raw, char *out, size_t size)
{
    const char *base = raw ? raw : "";
    for (const char *p = base; *p; p++)
        if (*p == '/' || *p == '\\')
            base = p + 1;
    size_t n = 0;
    const unsigned char *p = (const unsigned char *) base;
    for (; *p && n < size - 1; p++)
        if (*p >= 0x20 && *p != 0x7f)
            out[n++] = (char) *p;
    if ((*p & 0xC0) == 0x80) {
        /* cut inside a character: drop its first bytes too */
        while (n > 0 && ((unsigned char) out[n - 1] & 0xC0) == 0x80)
            n--;
        if (n > 0)
            n--;
    }
    out[n] = '\0';
    json_t *probe = json_string (out);   /* jansson refuses invalid UTF-8 */
    if (!probe || n == 0)
        snprintf (out, size, "file");
    json_decref (probe);
}

/* --- uploads -------------------------------------------------------------- */

bool
files_is_multipart (struct lws *wsi)
{
    char type[256] = "";
    lws_hdr_copy (wsi, type, sizeof type, WSI_TOKEN_HTTP_CONTENT_TYPE);
    /* lws_spa recognises exactly this spelling */
    return strncmp (type, "multipart/form-data", 19) == 0;
}

/* Records why the upload is refused; the parser then stops (-1). */
static int
s_fail (files_upload_t *up, int status, const char *field, const char *message)
{
    if (!up->status) {
        up->status = status;
        up->field = field;
        snprintf (up->message, sizeof up->message, "%s", message);
    }
    return -1;
}

/* Closes and removes the spool file, if any. */
static void
s_discard (files_upload_t *up)
{
    if (up->fd >= 0)
        close (up->fd);
    up->fd = -1;
    if (up->path[0])
        unlink (up->path);
    up->path[0] = '\0';
}

static int
s_open_spool (files_upload_t *up)
{
    char dir[PATH_MAX];
    media_incoming_dir (up->config, dir, sizeof dir);
    unsigned char raw[16];
    randombytes_buf (raw, sizeof raw);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf (hex + 2 * i, 3, "%02x", raw[i]);
    snprintf (up->path, sizeof up->path, "%.*s/%s.part", (int) (sizeof up->path - 40), dir, hex);
    up->fd = open (up->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (up->fd < 0) {
        log_error ("gateway", "cannot create the spool file %s: %s", up->path, strerror (errno));
        up->path[0] = '\0';
        return s_fail (up, 503, NULL, s_unavailable);
    }
    return 0;
}

/* Appends a chunk of the file, refusing it past upload_max. */
static int
s_append (files_upload_t *up, const char *buf, int len)
{
    if (up->size + len > up->config->upload_max) {
        char message[160];
        snprintf (message, sizeof message, "The file is larger than the upload limit of"
                  " %lld bytes.", (long long) up->config->upload_max);
        return s_fail (up, 413, NULL, message);
    }
    for (int done = 0; done < len;) {
        ssize_t n = write (up->fd, buf + done, (size_t) (len - done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_error ("gateway", "cannot write the spool file %s: %s", up->path,
                       strerror (errno));
            return s_fail (up, 503, NULL, s_unavailable);
        }
        done += (int) n;
    }
    up->size += len;
    return 0;
}

/* lws_spa's callback for file parts: only the part named `file` is kept. */
static int
s_on_file (void *data, const char *name, const char *filename, char *buf, int len,
           enum lws_spa_fileupload_states state)
{
    files_upload_t *up = data;
    switch (state) {
    case LWS_UFS_OPEN:
        up->in_file = name && strcmp (name, "file") == 0;
        if (!up->in_file)
            return 0;
        if (up->file_seen)
            return s_fail (up, 400, "file", "Send one file only.");
        up->file_seen = true;
        files_clean_name (filename, up->name, sizeof up->name);
        return s_open_spool (up);
    case LWS_UFS_CONTENT:
    case LWS_UFS_FINAL_CONTENT:
        if (!up->in_file)
            return 0;
        if (len > 0 && s_append (up, buf, len) != 0)
            return -1;
        if (state == LWS_UFS_FINAL_CONTENT) {
            up->file_done = true;
            up->in_file = false;
        }
        return 0;
    default:
        return 0;
    }
}

/* Answers the refusal the parser recorded (or a parse error); the rest of
   the body is not read, so the connection closes after the answer. */
static void
s_refuse (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    files_upload_t *up = pss->upload;
    s_discard (up);
    pss->close_after = true;
    if (up->status && up->field) {
        json_t *body = json_pack ("{s:[s]}", up->field, up->message);
        char *text = json_dumps (body, JSON_COMPACT);
        http_respond (gw, wsi, pss, up->status, "application/json", text, strlen (text));
        free (text);
        json_decref (body);
    }
    else
        http_respond_detail (gw, wsi, pss, up->status ? up->status : 400,
                             up->status ? up->message : "Multipart form parse error.");
}

int
files_upload_begin (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    files_upload_t *up = calloc (1, sizeof *up);
    if (!up) {
        http_respond_detail (gw, wsi, pss, 503, s_unavailable);
        return 0;
    }
    up->fd = -1;
    up->config = gw->config;
    pss->upload = up;
    lws_spa_create_info_t info;
    memset (&info, 0, sizeof info);
    info.param_names = s_fields;
    info.count_params = S_FIELD_COUNT;
    info.max_storage = FILES_FORM_STORAGE;
    info.opt_cb = s_on_file;
    info.opt_data = up;
    up->spa = lws_spa_create_via_info (wsi, &info);
    if (!up->spa) {
        pss->close_after = true;
        http_respond_detail (gw, wsi, pss, 503, s_unavailable);
    }
    return 0;
}

int
files_upload_body (gateway_t *gw, struct lws *wsi, gw_session_t *pss, const void *data,
                   size_t len)
{
    files_upload_t *up = pss->upload;
    if (!up->spa || len == 0)
        return 0;
    if (lws_spa_process (up->spa, data, (int) len) != 0 || up->status)
        s_refuse (gw, wsi, pss);
    return 0;
}

/* The form's fields as a JSON object, or NULL after answering 400 (a
   value that is not UTF-8 text). */
static json_t *
s_form_fields (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    files_upload_t *up = pss->upload;
    json_t *fields = json_object ();
    for (int i = 0; i < S_FIELD_COUNT; i++) {
        int len = lws_spa_get_length (up->spa, i);
        const char *value = lws_spa_get_string (up->spa, i);
        if (len <= 0 || !value)
            continue;
        json_t *text = strlen (value) == (size_t) len ? json_stringn (value, (size_t) len) : NULL;
        if (!text) {
            json_decref (fields);
            up->status = 400;
            up->field = s_fields[i];
            snprintf (up->message, sizeof up->message, "Not a valid string.");
            s_refuse (gw, wsi, pss);
            return NULL;
        }
        json_object_set_new (fields, s_fields[i], text);
    }
    return fields;
}

/* Hands the spooled file to a media actor; its answer comes back like a
   persister's (re = pss->id). */
static void
s_hand_over (gateway_t *gw, struct lws *wsi, gw_session_t *pss, json_t *fields)
{
    files_upload_t *up = pss->upload;
    envelope_t *env = envelope_new (ENVELOPE_MEDIA_STORE);
    char base[300];
    http_base_url (gw, wsi, base, sizeof base);
    json_t *auth = pss->auth ? json_incref (pss->auth) : json_object ();
    json_t *request = json_pack ("{s:s s:s s:s s:s s:O s:O s:O s:o}",
        "op", pss->route->op, "method", routes_method_name (pss->method),
        "path", pss->path, "base", gw->config->public_url[0] ? gw->config->public_url : base,
        "params", pss->params, "query", pss->query, "body", fields, "auth", auth);
    json_t *body = json_pack ("{s:s s:s s:I s:o}", "path", up->path, "name", up->name,
                              "size", (json_int_t) up->size, "request", request);
    json_t *type = json_object_get (fields, "message_type");
    if (type)
        json_object_set (body, "message_type", type);
    char to[48];
    int rc = -1;
    if (env) {
        snprintf (env->from, sizeof env->from, "%s", gw->name);
        envelope_set_body (env, body);
        body = NULL;
        media_worker_name (gw->config, env->id, to, sizeof to);
        rc = mailbox_send (gw->mailbox, to, env);
    }
    json_decref (body);
    if (rc != 0) {
        envelope_destroy (&env);
        s_discard (up);
        http_respond_detail (gw, wsi, pss, 503, s_unavailable);
        return;
    }
    snprintf (pss->id, sizeof pss->id, "%s", env->id);
    envelope_destroy (&env);
    zhashx_insert (gw->pending, pss->id, wsi);
    up->path[0] = '\0';          /* the media actor's now */
}

int
files_upload_complete (gateway_t *gw, struct lws *wsi, gw_session_t *pss, json_t **body)
{
    files_upload_t *up = pss->upload;
    *body = NULL;
    if (!up->spa)
        return -1;
    lws_spa_finalize (up->spa);
    if (up->status || (up->file_seen && !up->file_done)) {
        s_refuse (gw, wsi, pss);
        return -1;
    }
    json_t *fields = s_form_fields (gw, wsi, pss);
    if (!fields)
        return -1;
    if (!up->file_seen) {
        if (strcmp (pss->route->op, "attachments.create") == 0) {
            json_decref (fields);
            up->status = 400;
            up->field = "file";
            snprintf (up->message, sizeof up->message, "No file was submitted.");
            s_refuse (gw, wsi, pss);
            return -1;
        }
        *body = fields;
        return 1;
    }
    close (up->fd);
    up->fd = -1;
    s_hand_over (gw, wsi, pss, fields);
    json_decref (fields);
    return 0;
}

/* --- downloads ------------------------------------------------------------ */

/* Opens the stored file `rel` under the media directory: the descriptor
   and its size, or -1 when it is not there (logged). */
static int
s_open_stored (gateway_t *gw, const char *rel, uint64_t *size)
{
    char dir[PATH_MAX], full[PATH_MAX + 128];
    media_dir (gw->config, dir, sizeof dir);
    if (!media_path_valid (rel))
        return -1;
    snprintf (full, sizeof full, "%s/%s", dir, rel);
    int fd = open (full, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat (fd, &st) == 0 && S_ISREG (st.st_mode) && st.st_size > 0) {
        *size = (uint64_t) st.st_size;
        return fd;
    }
    log_warn (gw->name, "attachment file %s is missing", full);
    if (fd >= 0)
        close (fd);
    return -1;
}

/* The headers of a file answer: type sniffing off, disposition, ranges. */
static void
s_file_headers (gw_session_t *pss, json_t *file, int status, uint64_t first,
                uint64_t last, uint64_t size)
{
    const char *name = json_string_value (json_object_get (file, "name"));
    char value[1200];
    files_disposition (name ? name : "file", json_is_true (json_object_get (file, "inline")),
                       value, sizeof value);
    http_add_header (pss, "Content-Disposition", value);
    http_add_header (pss, "X-Content-Type-Options", "nosniff");
    http_add_header (pss, "Content-Security-Policy", "default-src 'none'; sandbox");
    http_add_header (pss, "Accept-Ranges", "bytes");
    http_add_header (pss, "Cache-Control", "private, no-cache");
    if (status == 206) {
        snprintf (value, sizeof value, "bytes %llu-%llu/%llu", (unsigned long long) first,
                  (unsigned long long) last, (unsigned long long) size);
        http_add_header (pss, "Content-Range", value);
    }
}

void
files_serve (gateway_t *gw, struct lws *wsi, gw_session_t *pss, json_t *file)
{
    const char *mime = json_string_value (json_object_get (file, "mime"));
    uint64_t size = 0;
    int fd = mime && strlen (mime) < sizeof pss->file_mime
        ? s_open_stored (gw, json_string_value (json_object_get (file, "path")), &size) : -1;
    if (fd < 0) {
        http_respond_detail (gw, wsi, pss, 404, "Not found.");
        return;
    }
    uint64_t first = 0, last = size - 1;
    char range[256] = "";
    int ranged = 0;
    if (lws_hdr_copy (wsi, range, sizeof range, WSI_TOKEN_HTTP_RANGE) > 0
        && lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_IF_RANGE) <= 0)
        ranged = files_parse_range (range, size, &first, &last);
    pss->out = ranged >= 0 ? realloc (pss->out, LWS_PRE + FILES_CHUNK) : pss->out;
    if (ranged < 0 || !pss->out) {
        close (fd);
        char value[64];
        snprintf (value, sizeof value, "bytes */%llu", (unsigned long long) size);
        if (ranged < 0)
            http_add_header (pss, "Content-Range", value);
        http_respond_detail (gw, wsi, pss, ranged < 0 ? 416 : 503, ranged < 0
                             ? "Requested range not satisfiable." : s_unavailable);
        return;
    }
    int status = ranged > 0 ? 206 : 200;
    s_file_headers (pss, file, status, first, last, size);
    snprintf (pss->file_mime, sizeof pss->file_mime, "%s", mime);
    pss->file_fd = fd;
    pss->file_open = true;
    pss->file_pos = first;
    pss->file_end = last + 1;
    pss->out_len = (size_t) (last + 1 - first);
    pss->out_sent = 0;
    pss->status = status;
    pss->content_type = pss->file_mime;
    pss->responding = true;
    pss->body_failed = true;
    metrics_http (gw->metrics, status);
    lws_callback_on_writable (wsi);
}

int
files_on_writeable (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    uint64_t left = pss->file_end - pss->file_pos;
    size_t chunk = left > FILES_CHUNK ? FILES_CHUNK : (size_t) left;
    unsigned char *buf = (unsigned char *) pss->out + LWS_PRE;
    ssize_t n = pread (pss->file_fd, buf, chunk, (off_t) pss->file_pos);
    if (n <= 0) {
        /* the length is promised: a file that shrank can only end the connection */
        log_warn (gw->name, "attachment file read failed: %s", n < 0 ? strerror (errno)
                                                                      : "file shrank");
        return -1;
    }
    bool final = pss->file_pos + (uint64_t) n == pss->file_end;
    if (lws_write (wsi, buf, (size_t) n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != n)
        return -1;
    pss->file_pos += (uint64_t) n;
    pss->out_sent += (size_t) n;
    if (final)
        return 1;
    lws_callback_on_writable (wsi);
    return 0;
}

void
files_session_free (gw_session_t *pss)
{
    files_upload_t *up = pss->upload;
    if (up) {
        if (up->spa)
            lws_spa_destroy (up->spa);
        s_discard (up);
        free (up);
        pss->upload = NULL;
    }
    if (pss->file_open)
        close (pss->file_fd);
    pss->file_open = false;
}
