/*  actors/mailbox.c — inproc inboxes and per-actor outbound sockets. */
#include "mailbox.h"
#include "log.h"

#define MAILBOX_HWM 200000

struct mailbox_t {
    zhashx_t *sockets;   /* actor name -> zsock_t (PUSH) */
};

static void
s_sock_destructor (void **item)
{
    zsock_destroy ((zsock_t **) item);
}

zsock_t *
mailbox_inbox_new (const char *name)
{
    zsock_t *inbox = zsock_new (ZMQ_PULL);
    if (!inbox)
        return NULL;
    zsock_set_rcvhwm (inbox, MAILBOX_HWM);
    if (zsock_bind (inbox, "inproc://parley.%s", name) != 0) {
        log_error (name, "cannot bind inbox: %s", zmq_strerror (zmq_errno ()));
        zsock_destroy (&inbox);
    }
    return inbox;
}

mailbox_t *
mailbox_new (void)
{
    mailbox_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->sockets = zhashx_new ();
    zhashx_set_destructor (self->sockets, s_sock_destructor);
    return self;
}

void
mailbox_destroy (mailbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy (&(*self_p)->sockets);
    free (*self_p);
    *self_p = NULL;
}

static zsock_t *
s_socket_for (mailbox_t *self, const char *to)
{
    zsock_t *sock = zhashx_lookup (self->sockets, to);
    if (sock)
        return sock;
    sock = zsock_new (ZMQ_PUSH);
    if (!sock)
        return NULL;
    zsock_set_sndhwm (sock, MAILBOX_HWM);
    zsock_set_linger (sock, 0);
    if (zsock_connect (sock, "inproc://parley.%s", to) != 0) {
        zsock_destroy (&sock);
        return NULL;
    }
    zhashx_insert (self->sockets, to, sock);
    return sock;
}

int
mailbox_send (mailbox_t *self, const char *to, const envelope_t *env)
{
    zsock_t *sock = s_socket_for (self, to);
    if (!sock)
        return -1;
    char *data = NULL;
    size_t size = 0;
    envelope_err_t err;
    if (envelope_encode (env, &data, &size, &err) != 0) {
        log_error ("mailbox", "not sending invalid %s to %s: %s",
                   envelope_type_name (env->type), to, envelope_err_string (err));
        return -1;
    }
    int rc = zmq_send (zsock_resolve (sock), data, size, ZMQ_DONTWAIT);
    free (data);
    if (rc < 0) {
        log_warn ("mailbox", "inbox of %s is full, dropped %s", to,
                  envelope_type_name (env->type));
        return -1;
    }
    return 0;
}

int
mailbox_recv (zsock_t *inbox, bool wait, envelope_t **env_p)
{
    *env_p = NULL;
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    if (zmq_msg_recv (&msg, zsock_resolve (inbox), wait ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&msg);
        return 0;
    }
    envelope_err_t err;
    char detail[128] = "";
    envelope_t *env = envelope_decode (zmq_msg_data (&msg), zmq_msg_size (&msg),
                                       &err, detail, sizeof detail);
    if (!env)
        log_error ("mailbox", "dropped undecodable envelope: %s %s",
                   envelope_err_string (err), detail);
    zmq_msg_close (&msg);
    *env_p = env;
    return 1;
}

void
mailbox_shard_name (char *name, size_t size, const char *kind, const char *key,
                    int count)
{
    uint32_t hash = 2166136261u;
    for (const unsigned char *p = (const unsigned char *) key; p && *p; p++) {
        hash ^= *p;
        hash *= 16777619u;
    }
    snprintf (name, size, "%s.%u", kind, count > 0 ? hash % (uint32_t) count : 0);
}
