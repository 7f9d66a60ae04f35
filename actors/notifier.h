/*  actors/notifier.h — the actor that owns outgoing email (SMTP, libcurl).
 *
 *  notifier.0 sends the notification emails the
 *  send-message-notification-emails job prepared: a JOB_RUN "email.send"
 *  {emails: [{user, to, subject, text}, ...]} is answered by a JOB_DONE
 *  {ok, items: sent, error, result: {sent: [user ids]}}. Each email is an
 *  RFC 5322 message (Date, Message-ID, From smtp_from, To, Subject,
 *  text/plain; charset=utf-8) sent to smtp_url. A server that cannot be
 *  reached stops the batch (the rest count as failed); the scheduler then
 *  records the error and leaves the failed users' cursors where they were,
 *  so they are retried on the next run. libcurl blocks; it blocks only
 *  this actor.
 */
#ifndef PARLEY_NOTIFIER_H
#define PARLEY_NOTIFIER_H

#include "actor.h"

extern const actor_def_t notifier_actor;

/* Writes the RFC 5322 message for one email into a new buffer (caller
   frees): CRLF line ends, a base64 body when `text` is not ASCII, the
   subject RFC 2047-encoded when not ASCII. `from` and `to` are bare
   addresses or "Name <addr>". NULL on bad input (CR/LF in a header). */
char *notifier_format (const char *from, const char *to, const char *subject,
                       const char *text, int64_t now_ms);

/* The bare address inside "Name <addr>" or `address` itself, into `out`.
   0, or -1 when it is not a plausible address. */
int notifier_address (const char *address, char *out, size_t out_size);

#endif
