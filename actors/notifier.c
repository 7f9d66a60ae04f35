/*  actors/notifier.c — outgoing email over SMTP (libcurl). See notifier.h.
 *  State: one libcurl easy handle (its SMTP connection is reused within a
 *  batch). */
#include "notifier.h"
#include "log.h"
#include "token.h"

#include <curl/curl.h>
#include <sodium.h>
#include <time.h>

#define NOTIFIER_CONNECT_MS  5000
#define NOTIFIER_TIMEOUT_MS  30000
#define NOTIFIER_LINE_MAX    900    /* longer lines: base64 body */
#define NOTIFIER_WORD_BYTES  42     /* of UTF-8 per RFC 2047 encoded word */

typedef struct {
    CURL *curl;
} notifier_t;

/* --- formatting ------------------------------------------------------------ */

static bool
s_has_crlf (const char *s)
{
    return strpbrk (s, "\r\n") != NULL;
}

static bool
s_is_ascii (const char *s)
{
    for (const unsigned char *p = (const unsigned char *) s; *p; p++)
        if (*p >= 0x80)
            return false;
    return true;
}

int
notifier_address (const char *address, char *out, size_t out_size)
{
    if (!address || s_has_crlf (address))
        return -1;
    const char *start = strrchr (address, '<');
    const char *end = start ? strchr (start, '>') : NULL;
    size_t len;
    if (start && end) {
        start++;
        len = (size_t) (end - start);
    }
    else {
        start = address;
        len = strlen (address);
    }
    if (len == 0 || len >= out_size)
        return -1;
    memcpy (out, start, len);
    out[len] = '\0';
    const char *at = strchr (out, '@');
    if (!at || at == out || !at[1] || strpbrk (out, " <>,;\"\\\t"))
        return -1;
    return 0;
}

/* Writes `data` as base64 lines of 76 characters. */
static void
s_write_base64 (FILE *out, const unsigned char *data, size_t len)
{
    for (size_t done = 0; done < len; done += 57) {
        size_t n = len - done < 57 ? len - done : 57;
        char line[80];
        sodium_bin2base64 (line, sizeof line, data + done, n, sodium_base64_VARIANT_ORIGINAL);
        fprintf (out, "%s\r\n", line);
    }
}

/* The Subject header: as is when ASCII, else RFC 2047 encoded words (each
   holding whole UTF-8 characters), folded. */
static void
s_write_subject (FILE *out, const char *subject)
{
    fputs ("Subject: ", out);
    if (s_is_ascii (subject)) {
        fprintf (out, "%s\r\n", subject);
        return;
    }
    const unsigned char *p = (const unsigned char *) subject;
    size_t len = strlen (subject);
    bool first = true;
    while (len > 0) {
        size_t n = len < NOTIFIER_WORD_BYTES ? len : NOTIFIER_WORD_BYTES;
        while (n < len && (p[n] & 0xC0) == 0x80)   /* don't split a character */
            n--;
        char word[80];
        sodium_bin2base64 (word, sizeof word, p, n, sodium_base64_VARIANT_ORIGINAL);
        fprintf (out, "%s=?UTF-8?B?%s?=", first ? "" : "\r\n ", word);
        first = false;
        p += n;
        len -= n;
    }
    fputs ("\r\n", out);
}

/* The body: 7bit with CRLF line ends when ASCII with short lines, else
   base64 of the UTF-8 text (with CRLF line ends). */
static void
s_write_body (FILE *out, const char *text)
{
    char *crlf = NULL;
    size_t size = 0;
    FILE *body = open_memstream (&crlf, &size);
    size_t line = 0, longest = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '\r')
            continue;
        if (*p == '\n') {
            fputs ("\r\n", body);
            line = 0;
            continue;
        }
        fputc (*p, body);
        if (++line > longest)
            longest = line;
    }
    fclose (body);
    if (s_is_ascii (text) && longest <= NOTIFIER_LINE_MAX) {
        fputs ("Content-Transfer-Encoding: 7bit\r\n\r\n", out);
        fwrite (crlf, 1, size, out);
        if (size < 2 || strcmp (crlf + size - 2, "\r\n") != 0)
            fputs ("\r\n", out);
    }
    else {
        fputs ("Content-Transfer-Encoding: base64\r\n\r\n", out);
        s_write_base64 (out, (const unsigned char *) crlf, size);
    }
    free (crlf);
}

char *
notifier_format (const char *from, const char *to, const char *subject, const char *text,
                 int64_t now_ms)
{
    char from_addr[320], to_addr[320];
    if (!subject || !text || s_has_crlf (subject)
        || notifier_address (from, from_addr, sizeof from_addr) != 0
        || notifier_address (to, to_addr, sizeof to_addr) != 0)
        return NULL;
    char date[64];
    time_t seconds = (time_t) (now_ms / 1000);
    struct tm tm;
    gmtime_r (&seconds, &tm);
    strftime (date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    char id[TOKEN_ID_SIZE];
    token_uuid (id);
    char *message = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&message, &size);
    fprintf (out, "Date: %s\r\n", date);
    fprintf (out, "From: %s\r\n", s_is_ascii (from) ? from : from_addr);
    fprintf (out, "To: %s\r\n", s_is_ascii (to) ? to : to_addr);
    s_write_subject (out, subject);
    fprintf (out, "Message-ID: <%s@%s>\r\n", id, strchr (from_addr, '@') + 1);
    fputs ("MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Auto-Submitted: auto-generated\r\n", out);
    s_write_body (out, text);
    fclose (out);
    return message;
}

/* --- sending -------------------------------------------------------------- */

typedef struct {
    const char *data;
    size_t left;
} s_upload_t;

static size_t
s_read (char *buffer, size_t size, size_t count, void *arg)
{
    s_upload_t *upload = arg;
    size_t n = size * count < upload->left ? size * count : upload->left;
    memcpy (buffer, upload->data, n);
    upload->data += n;
    upload->left -= n;
    return n;
}

/* Sends one message. Returns CURLE_OK or the failure, with its text in
   `error`. */
static CURLcode
s_send (actor_t *self, notifier_t *n, const char *to, const char *message,
        char *error, size_t error_size)
{
    const config_t *config = actor_config (self);
    char from_addr[320], to_addr[320], from_arg[330], to_arg[330];
    notifier_address (config->smtp_from, from_addr, sizeof from_addr);
    notifier_address (to, to_addr, sizeof to_addr);
    snprintf (from_arg, sizeof from_arg, "<%s>", from_addr);
    snprintf (to_arg, sizeof to_arg, "<%s>", to_addr);
    struct curl_slist *rcpt = curl_slist_append (NULL, to_arg);
    s_upload_t upload = { message, strlen (message) };
    char curl_error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt (n->curl, CURLOPT_URL, config->smtp_url);
    curl_easy_setopt (n->curl, CURLOPT_MAIL_FROM, from_arg);
    curl_easy_setopt (n->curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt (n->curl, CURLOPT_READFUNCTION, s_read);
    curl_easy_setopt (n->curl, CURLOPT_READDATA, &upload);
    curl_easy_setopt (n->curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt (n->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t) upload.left);
    curl_easy_setopt (n->curl, CURLOPT_CONNECTTIMEOUT_MS, (long) NOTIFIER_CONNECT_MS);
    curl_easy_setopt (n->curl, CURLOPT_TIMEOUT_MS, (long) NOTIFIER_TIMEOUT_MS);
    curl_easy_setopt (n->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (n->curl, CURLOPT_ERRORBUFFER, curl_error);
    CURLcode rc = curl_easy_perform (n->curl);
    curl_easy_setopt (n->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt (n->curl, CURLOPT_MAIL_RCPT, NULL);
    curl_slist_free_all (rcpt);
    if (rc != CURLE_OK)
        snprintf (error, error_size, "SMTP %s: %s", config->smtp_url,
                  curl_error[0] ? curl_error : curl_easy_strerror (rc));
    return rc;
}

/* Whether a failure means the server cannot be reached at all (then the
   rest of the batch would fail the same way). */
static bool
s_unreachable (CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST
        || rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_GOT_NOTHING
        || rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT;
}

/* Sends one email of the batch; true when the server accepted it. */
static bool
s_send_email (actor_t *self, notifier_t *n, json_t *email, CURLcode *rc, char *error,
              size_t error_size)
{
    const char *to = json_string_value (json_object_get (email, "to"));
    char *message = notifier_format (actor_config (self)->smtp_from, to,
                                     json_string_value (json_object_get (email, "subject")),
                                     json_string_value (json_object_get (email, "text")),
                                     zclock_time ());
    *rc = CURLE_OK;
    if (!message) {
        snprintf (error, error_size, "cannot format an email to %s (smtp_from %s)",
                  to ? to : "(none)", actor_config (self)->smtp_from);
        return false;
    }
    *rc = s_send (self, n, to, message, error, error_size);
    free (message);
    return *rc == CURLE_OK;
}

/* JOB_RUN email.send {emails}: sends them in order; answers JOB_DONE. */
static void
s_on_email_send (actor_t *self, notifier_t *n, envelope_t *env)
{
    json_t *emails = json_object_get (json_object_get (env->body, "args"), "emails");
    json_t *sent = json_array ();
    char error[512] = "";
    size_t i, failed = 0;
    json_t *email;
    json_array_foreach (emails, i, email) {
        CURLcode rc;
        char why[512];
        if (s_send_email (self, n, email, &rc, why, sizeof why)) {
            json_array_append (sent, json_object_get (email, "user"));
            continue;
        }
        failed++;
        if (!error[0])
            snprintf (error, sizeof error, "%s", why);
        log_warn (actor_name (self), "email to user %s failed: %s",
                  json_string_value (json_object_get (email, "user")), why);
        if (s_unreachable (rc)) {
            failed += json_array_size (emails) - i - 1;
            break;
        }
    }
    actor_figure_add (self, "emails_sent", (int64_t) json_array_size (sent));
    actor_figure_add (self, "emails_failed", (int64_t) failed);
    envelope_t *reply = envelope_new (ENVELOPE_JOB_DONE);
    snprintf (reply->re, sizeof reply->re, "%s", env->id);
    json_t *body = json_pack ("{s:b s:I s:{s:o s:I}}", "ok", failed == 0, "items",
                              (json_int_t) json_array_size (sent), "result", "sent", sent,
                              "failed", (json_int_t) failed);
    if (failed) {
        char text[600];
        snprintf (text, sizeof text, "%zu email(s) not sent: %s", failed, error);
        json_object_set_new (body, "error", json_string (text));
    }
    envelope_set_body (reply, body);
    if (env->from[0])
        actor_send (self, env->from, reply);
    envelope_destroy (&reply);
}

/* --- the actor ------------------------------------------------------------- */

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    /* thread-safe since libcurl 7.84 (Debian 12 has 7.88); idempotent */
    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf (error, error_size, "libcurl failed to initialise");
        return -1;
    }
    notifier_t *n = calloc (1, sizeof *n);
    if (!n)
        return -1;
    actor_set_state (self, n);
    n->curl = curl_easy_init ();
    if (!n->curl) {
        snprintf (error, error_size, "libcurl: no easy handle");
        return -1;
    }
    char from[320];
    if (notifier_address (actor_config (self)->smtp_from, from, sizeof from) != 0) {
        snprintf (error, error_size, "smtp_from: not an email address (%s)",
                  actor_config (self)->smtp_from);
        return -1;
    }
    return 0;
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    notifier_t *n = actor_state (self);
    for (size_t i = 0; i < count; i++) {
        envelope_t *env = batch[i];
        const char *job = json_string_value (json_object_get (env->body, "job"));
        if (env->type == ENVELOPE_JOB_RUN && job && streq (job, "email.send"))
            s_on_email_send (self, n, env);
    }
}

static void
s_stop (actor_t *self)
{
    notifier_t *n = actor_state (self);
    if (!n)
        return;
    if (n->curl)
        curl_easy_cleanup (n->curl);
    free (n);
    actor_set_state (self, NULL);
}

const actor_def_t notifier_actor = {
    .kind = "notifier",
    .batch_max = 1,
    .start = s_start,
    .handle = s_handle,
    .stop = s_stop,
};
