/*  actors/ops/attachments.c — the attachments operations (API.md §2.7).
 *
 *  Uploads never reach a persister as bytes: the gateway spools them and
 *  the media actor (actors/media.c) sniffs, measures and stores the file,
 *  then runs one of the internal operations below with the stored file
 *  described in `op->internal` (set only by the media actor; a request
 *  without it is refused as unknown). Downloads: the operation checks who
 *  may see the attachment and answers where its bytes are; the gateway
 *  serves them (gateway/files.c).
 *
 *  Who may see an attachment (parley_attachment_visible, 009_attachments.sql):
 *  its uploader, the participants of a room where a live message carries
 *  it, and whoever sees a room using it as its image; nobody once revoked
 *  (the last message carrying it was deleted). Anyone else: 404.
 *
 *  Internal operations:
 *  - attachments.insert: the stored upload becomes an attachment (201).
 *  - messages.create_with_file: the same, then messages.create with
 *    `attachment` set to it, in one savepoint: a refused message leaves no
 *    attachment behind. A client_id already used answers the first message
 *    (200) and drops the new attachment.
 *  - attachments.purge_list / attachments.purged (media.0): revoked
 *    attachments whose files are to be removed, then marked removed.
 */
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PURGE_BATCH "100"

/* The internal description of the stored upload, or NULL (then answers
   404 as for an unknown operation). */
static json_t *
s_internal_attachment (op_t *op)
{
    json_t *a = json_object_get (op->internal, "attachment");
    if (!json_is_object (a) || !json_is_string (json_object_get (a, "storage_path"))
        || !json_is_string (json_object_get (a, "mime"))
        || !json_is_integer (json_object_get (a, "size"))) {
        op_not_found (op);
        return NULL;
    }
    return a;
}

/* Inserts the stored upload as the caller's attachment; writes its id and
   sets *json to its object (caller owns). 1 done, 0 answered, -1 failed. */
static int
s_insert_row (op_t *op, char id[40], json_t **json)
{
    json_t *a = s_internal_attachment (op);
    if (!a)
        return 0;
    char size[24], width[16] = "", height[16] = "";
    snprintf (size, sizeof size, "%lld", (long long) json_integer_value (json_object_get (a, "size")));
    if (json_is_integer (json_object_get (a, "width"))
        && json_is_integer (json_object_get (a, "height"))) {
        snprintf (width, sizeof width, "%lld", (long long) json_integer_value (json_object_get (a, "width")));
        snprintf (height, sizeof height, "%lld", (long long) json_integer_value (json_object_get (a, "height")));
    }
    const char *name = json_string_value (json_object_get (a, "name"));
    const char *params[] = {
        op->user_id, name ? name : "", json_string_value (json_object_get (a, "mime")), size,
        json_string_value (json_object_get (a, "storage_path")),
        width[0] ? width : NULL, height[0] ? height : NULL,
        json_string_value (json_object_get (a, "thumb_path")), op->base
    };
    PGresult *res = op_exec (op,
        "WITH a AS (INSERT INTO attachments (uploader_id, name, mime, size, storage_path,"
        "                                    width, height, thumb_path)"
        "           VALUES ($1::uuid, $2, $3, $4::bigint, $5, $6::integer, $7::integer, $8)"
        "           RETURNING *)"
        "SELECT a.id, parley_attachment_json (a, $9) FROM a", 9, params);
    if (!res)
        return -1;
    snprintf (id, 40, "%s", PQgetvalue (res, 0, 0));
    *json = json_loads (PQgetvalue (res, 0, 1), 0, NULL);
    PQclear (res);
    return *json ? 1 : -1;
}

/* attachments.insert (internal) — 201 with the attachment. */
static int
s_insert (op_t *op)
{
    char id[40];
    json_t *json = NULL;
    int rc = s_insert_row (op, id, &json);
    if (rc > 0)
        op_reply (op, 201, json);
    return rc < 0 ? -1 : 0;
}

/* messages.create_with_file (internal) — the attachment, then the message
   (API.md §2.2: the file inline). */
static int
s_create_with_file (op_t *op)
{
    char id[40];
    json_t *json = NULL;
    int rc = s_insert_row (op, id, &json);
    json_decref (json);
    if (rc <= 0)
        return rc < 0 ? -1 : 0;
    const op_def_t *create = ops_lookup ("messages.create");
    if (!create || !json_is_object (op->body)) {
        op_field_error (op, "room", "This field is required.");
        return 0;
    }
    json_object_set_new (op->body, "attachment", json_string (id));
    if (create->fn (op) < 0)
        return -1;
    if (op->status == 200) {
        /* the client_id's first message was answered: this upload is unused */
        const char *params[] = { id };
        if (op_command (op, "DELETE FROM attachments WHERE id = $1::uuid", 1, params) < 0)
            return -1;
    }
    return 0;
}

/* The attachment named by the path, if the caller may see it: its JSON
   object and where its bytes are. 1 visible, 0 answered 404, -1 failed. */
static int
s_load (op_t *op, PGresult **out)
{
    const char *params[] = { op_param (op, "id"), op->user_id, op->base };
    PGresult *res = op_exec (op,
        "SELECT parley_attachment_json (a, $3), a.storage_path, a.thumb_path, a.mime,"
        "       a.name"
        "  FROM attachments a"
        " WHERE a.id = $1::uuid AND parley_attachment_visible (a, $2::uuid)", 3, params);
    if (!res)
        return -1;
    if (PQntuples (res) == 0) {
        PQclear (res);
        op_not_found (op);
        return 0;
    }
    *out = res;
    return 1;
}

/* GET attachments/{id}/ */
static int
s_retrieve (op_t *op)
{
    PGresult *res;
    int rc = s_load (op, &res);
    if (rc <= 0)
        return rc;
    json_t *json = json_loads (PQgetvalue (res, 0, 0), 0, NULL);
    PQclear (res);
    if (!json)
        return -1;
    op_reply (op, 200, json);
    return 0;
}

/* The answer of download/ and thumbnail/: {"file": {path, mime, name,
   inline}} — the gateway serves the bytes (a ROUTE_FILE route). */
static void
s_reply_file (op_t *op, const char *path, const char *mime, const char *name)
{
    bool is_image = strncmp (mime, "image/", 6) == 0 && !strstr (mime, "svg");
    op_reply (op, 200, json_pack ("{s:{s:s s:s s:s s:b}}", "file", "path", path,
                                  "mime", mime, "name", name, "inline", is_image));
}

/* GET attachments/{id}/download/ */
static int
s_download (op_t *op)
{
    PGresult *res;
    int rc = s_load (op, &res);
    if (rc <= 0)
        return rc;
    s_reply_file (op, PQgetvalue (res, 0, 1), PQgetvalue (res, 0, 3), PQgetvalue (res, 0, 4));
    PQclear (res);
    return 0;
}

/* GET attachments/{id}/thumbnail/ — 404 when it has none. */
static int
s_thumbnail (op_t *op)
{
    PGresult *res;
    int rc = s_load (op, &res);
    if (rc <= 0)
        return rc;
    if (PQgetisnull (res, 0, 2)) {
        PQclear (res);
        op_not_found (op);
        return 0;
    }
    const char *path = PQgetvalue (res, 0, 2);
    size_t len = strlen (path);
    bool png = len > 4 && strcmp (path + len - 4, ".png") == 0;
    char name[300];
    snprintf (name, sizeof name, "thumbnail.%s", png ? "png" : "jpg");
    s_reply_file (op, path, png ? "image/png" : "image/jpeg", name);
    PQclear (res);
    return 0;
}

/* attachments.purge_list (internal, media.0) — revoked attachments whose
   files are still there: {"results": [{id, storage_path, thumb_path}]}. */
static int
s_purge_list (op_t *op)
{
    if (!json_is_true (json_object_get (op->internal, "purge"))) {
        op_not_found (op);
        return 0;
    }
    json_t *results = op_query_json (op,
        "SELECT coalesce (jsonb_agg (jsonb_build_object ('id', a.id,"
        "           'storage_path', a.storage_path, 'thumb_path', a.thumb_path)), '[]')"
        "  FROM (SELECT * FROM attachments"
        "         WHERE revoked_at IS NOT NULL AND purged_at IS NULL"
        "         ORDER BY revoked_at LIMIT " S_PURGE_BATCH ") a", 0, NULL);
    if (!results)
        return -1;
    op_reply (op, 200, json_pack ("{s:o}", "results", results));
    return 0;
}

/* attachments.purged (internal, media.0) {"ids": [...]} — their files are
   gone. */
static int
s_purged (op_t *op)
{
    json_t *ids = json_object_get (op->internal, "ids");
    if (!json_is_array (ids)) {
        op_not_found (op);
        return 0;
    }
    char *list = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&list, &size);
    fputc ('{', out);
    size_t i;
    json_t *id;
    json_array_foreach (ids, i, id)
        if (op_is_uuid (json_string_value (id)))
            fprintf (out, "%s%s", ftell (out) > 1 ? "," : "", json_string_value (id));
    fputc ('}', out);
    fclose (out);
    const char *params[] = { list };
    long rows = op_command (op, "UPDATE attachments SET purged_at = now()"
                                " WHERE id = ANY ($1::uuid[]) AND revoked_at IS NOT NULL"
                                "   AND purged_at IS NULL", 1, params);
    free (list);
    if (rows < 0)
        return -1;
    op_reply (op, 200, json_pack ("{s:I}", "updated", (json_int_t) rows));
    return 0;
}

const op_def_t ops_attachments[] = {
    { "attachments.insert",         s_insert,           false },
    { "messages.create_with_file",  s_create_with_file, false },
    { "attachments.retrieve",       s_retrieve,         false },
    { "attachments.download",       s_download,         false },
    { "attachments.thumbnail",      s_thumbnail,        false },
    { "attachments.purge_list",     s_purge_list,       true },
    { "attachments.purged",         s_purged,           true },
    { NULL, NULL, false }
};
