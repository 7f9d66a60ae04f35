-- schema/migrations/001_core.sql — Parley's tables, constraints, indexes,
-- derived-data triggers and seeds (PostgreSQL 15, core only: no extensions).
--
-- Applied by parleyd inside one transaction and recorded in
-- schema_migrations (which the runner creates). Never edit this file once it
-- has landed: add 003_..., 004_... instead.
--
-- Conventions
--   * ids are uuid default gen_random_uuid() (built in since PG 13), except
--     sessions.id (an opaque random token) and refresh_tokens.jti.
--   * times are timestamptz; every flag and counter is NOT NULL.
--   * Users are never hard-deleted by Parley. Foreign keys that would erase
--     history (a message's sender, an attachment's uploader) therefore keep
--     the default NO ACTION; everything owned by a user (sessions, receipts,
--     reactions, presence, notifications, settings) cascades.
--   * Deleting a room deletes its participants, events, messages and
--     everything hanging off the messages (edits, receipts, reactions,
--     notifications). Every foreign key that such a cascade walks has an
--     index on the referencing side, so deleting a big room is not quadratic.
--
-- Derived data kept by triggers (the C code must NOT maintain these itself):
--   * a presence row and a notification_settings row for every new user;
--   * rooms.messages_count / last_activity on INSERT INTO messages;
--   * room_participants.last_read_seq from reads (raised on INSERT, recomputed
--     when a receipt is DELETEd directly);
--   * updated_at of messages and rooms when a user-visible column changes.
-- Everything else (is_edited, edited_at, message_edits rows, seq, events) is
-- the caller's job; see 002_json.sql for the event helpers.
--
-- Locking rule: every row the hot path writes belongs to one room (the room
-- row, its participants, messages, receipts, events), and the writes to a
-- room queue behind its row lock (parley_next_seq). No per-user row is
-- updated per message or reaction: a user's activity counters (API.md §1)
-- are computed when the user is rendered (parley_user_json) from indexed
-- messages and reactions, instead of being counters on `users` — counters
-- there would be a lock shared by every room a user writes to, and two group
-- commits touching the same two users in opposite orders would deadlock.
-- A group commit that spans rooms should lock them first, in id order:
--     SELECT 1 FROM rooms WHERE id = ANY ($1::uuid[]) ORDER BY id
--        FOR NO KEY UPDATE;
-- and any transaction may still retry on SQLSTATE 40001/40P01.

-- ---------------------------------------------------------------------------
-- Users and authentication
-- ---------------------------------------------------------------------------

-- Usernames are unique case-sensitively (Django's default). Search
-- (`users/?search=`, icontains on username or display_name) is an ILIKE
-- '%q%' scan: without pg_trgm no index serves an infix match, so the
-- lower() indexes below only serve exact and prefix matches
-- (lower(username) LIKE 'abc%') such as mention autocompletion.
CREATE TABLE users (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    username        text        NOT NULL UNIQUE,
    display_name    text        NOT NULL DEFAULT '',
    email           text        NOT NULL DEFAULT '',
    password_hash   text        NOT NULL,
    is_staff        boolean     NOT NULL DEFAULT false,
    date_joined     timestamptz NOT NULL DEFAULT now(),
    -- activity.last_seen (API.md §1): set when presence goes offline / by
    -- sync-presence-to-database. The other activity fields are computed
    -- (see the locking rule above).
    last_seen       timestamptz
);
CREATE INDEX users_username_lower_idx ON users (lower(username) text_pattern_ops);
CREATE INDEX users_display_name_lower_idx ON users (lower(display_name) text_pattern_ops);

-- A login session: the `sessionid` cookie is the id; csrf_token is the value
-- the `csrftoken` cookie and the X-CSRFToken header must carry.
CREATE TABLE sessions (
    id          text        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- Refresh tokens, one row per issued token (its JWT `jti`). Rotation marks
-- the old one used_at and points replaced_by at its successor, so a reused
-- token can be detected and its whole chain revoked.
CREATE TABLE refresh_tokens (
    jti         uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id  text        REFERENCES sessions (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    replaced_by uuid        -- added: the jti issued when this one was rotated
);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id)
    WHERE session_id IS NOT NULL;

-- ---------------------------------------------------------------------------
-- Media
-- ---------------------------------------------------------------------------

CREATE TABLE attachments (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    uploader_id  uuid        NOT NULL REFERENCES users (id),
    name         text        NOT NULL DEFAULT '',
    mime         text        NOT NULL,
    size         bigint      NOT NULL CHECK (size >= 0),
    storage_path text        NOT NULL,
    width        integer     CHECK (width > 0),
    height       integer     CHECK (height > 0),
    thumb_path   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_uploader_idx ON attachments (uploader_id);

-- ---------------------------------------------------------------------------
-- Rooms
-- ---------------------------------------------------------------------------

-- max_participants: API.md allows "default 256, at most 10 000" and names
-- no minimum. Direct and ai rooms hold exactly 2; a group room may be a
-- room of one (notes to self), so the floor is 1, not 2. "At least as many
-- as the current participants" is checked by the caller (400 naming
-- `participants`, 409 on join/add).
--
-- last_seq is the room's event counter (API.md §3): only parley_next_seq()
-- (002_json.sql) touches it. direct_key de-duplicates direct rooms: it is
-- parley_direct_key(a, b) of the two participants, NULL for other types.
CREATE TABLE rooms (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text        NOT NULL DEFAULT '',
    room_type        text        NOT NULL
                     CHECK (room_type IN ('direct', 'group', 'ai')),
    created_by       uuid        REFERENCES users (id) ON DELETE SET NULL,
    description      text        NOT NULL DEFAULT '',
    image_id         uuid        REFERENCES attachments (id) ON DELETE SET NULL,
    is_private       boolean     NOT NULL DEFAULT true,
    max_participants integer     NOT NULL DEFAULT 256
                     CHECK (max_participants BETWEEN 1 AND 10000),
    is_archived      boolean     NOT NULL DEFAULT false,
    last_activity    timestamptz NOT NULL DEFAULT now(),
    messages_count   integer     NOT NULL DEFAULT 0,
    last_seq         bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    direct_key       text        UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rooms_direct_key_only_direct
        CHECK (direct_key IS NULL OR room_type = 'direct')
);
-- `rooms/?discover=true`: public group rooms, newest activity first.
CREATE INDEX rooms_discover_idx ON rooms (last_activity DESC)
    WHERE NOT is_private AND room_type = 'group';
CREATE INDEX rooms_image_idx ON rooms (image_id) WHERE image_id IS NOT NULL;

-- The direct_key of a pair of users: both ids, sorted, joined by ':'.
-- Symmetric: parley_direct_key(a, b) = parley_direct_key(b, a).
CREATE FUNCTION parley_direct_key(a uuid, b uuid) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN least(a, b)::text || ':' || greatest(a, b)::text;

-- last_read_seq: the seq of the newest message the user has read in the
-- room (kept from `reads` by trigger); unread_count counts other people's
-- non-deleted messages above it.
CREATE TABLE room_participants (
    room_id       uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_admin      boolean     NOT NULL DEFAULT false,
    joined_at     timestamptz NOT NULL DEFAULT now(),
    last_read_seq bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_participants_user_idx ON room_participants (user_id);

-- The gapless per-room event log (API.md §3). payload is the complete event
-- object sent to clients: {type, room, seq, ts, <payload key>: ...}.
-- actor_id is deliberately not a foreign key: the log is append-only history.
CREATE TABLE room_events (
    room_id    uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL CHECK (seq > 0),
    -- the room-event types of API.md §3; a new type needs a migration
    type       text        NOT NULL CHECK (type IN (
                   'message.new', 'message.updated', 'message.deleted',
                   'message.pinned', 'message.unpinned',
                   'reaction.added', 'reaction.removed',
                   'room.created', 'room.updated',
                   'room.member_joined', 'room.member_left')),
    payload    jsonb       NOT NULL,
    actor_id   uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq)
);

-- ---------------------------------------------------------------------------
-- Messages and what hangs off them
-- ---------------------------------------------------------------------------

-- seq is the seq of the message's `message.new` event (unique per room).
-- (sender_id, client_id) is the idempotency key; rows without a client_id
-- never collide (NULLs are distinct). Full-text search uses the 'simple'
-- configuration (no stemming, any language): query it with
--   search @@ websearch_to_tsquery('simple', $q)   (or plainto_tsquery).
CREATE TABLE messages (
    id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    room_id               uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq                   bigint      NOT NULL CHECK (seq > 0),
    sender_id             uuid        NOT NULL REFERENCES users (id),
    content               text        NOT NULL DEFAULT '',
    message_type          text        NOT NULL DEFAULT 'text'
                          CHECK (message_type IN ('text', 'image', 'video', 'audio',
                                                  'file', 'location', 'system')),
    attachment_id         uuid        REFERENCES attachments (id) ON DELETE SET NULL,
    latitude              double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude             double precision CHECK (longitude BETWEEN -180 AND 180),
    reply_to              uuid        REFERENCES messages (id) ON DELETE SET NULL,
    forward_from          uuid        REFERENCES messages (id) ON DELETE SET NULL,
    mentions              uuid[]      NOT NULL DEFAULT '{}',
    is_edited             boolean     NOT NULL DEFAULT false,
    edited_at             timestamptz,
    is_deleted            boolean     NOT NULL DEFAULT false,
    is_pinned             boolean     NOT NULL DEFAULT false,
    client_id             text,
    stream_id             text,
    mentions_processed_at timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    search                tsvector    GENERATED ALWAYS AS
                          (to_tsvector('simple'::regconfig, content)) STORED,
    CONSTRAINT messages_room_seq_key UNIQUE (room_id, seq),
    CONSTRAINT messages_sender_client_key UNIQUE (sender_id, client_id),
    CONSTRAINT messages_location_pair
        CHECK ((latitude IS NULL) = (longitude IS NULL))
);
-- A user's activity: messages_sent (count) and last_message_at (max).
CREATE INDEX messages_sender_created_idx ON messages (sender_id, created_at);
CREATE INDEX messages_reply_to_idx ON messages (reply_to) WHERE reply_to IS NOT NULL;
-- forward_from and attachment_id: for ON DELETE SET NULL when a room goes,
-- and for "who may download this attachment" (rooms it was posted in).
CREATE INDEX messages_forward_from_idx ON messages (forward_from)
    WHERE forward_from IS NOT NULL;
CREATE INDEX messages_attachment_idx ON messages (attachment_id)
    WHERE attachment_id IS NOT NULL;
CREATE INDEX messages_search_idx ON messages USING gin (search);
-- The process-message-mentions job's work queue.
CREATE INDEX messages_mentions_pending_idx ON messages (created_at)
    WHERE mentions_processed_at IS NULL AND mentions <> '{}';
CREATE INDEX messages_pinned_idx ON messages (room_id, seq) WHERE is_pinned;

-- Earlier versions of a message (GET messages/{id}/history/): on each edit
-- the caller inserts the content being replaced; edited_at is when it was
-- replaced.
CREATE TABLE message_edits (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    content    text        NOT NULL,
    edited_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_edits_message_idx ON message_edits (message_id, edited_at);

-- Read receipts. room_id is copied from the message for the ?room= filter and
-- for last_read_seq; it is not a foreign key (the message's cascade removes
-- the receipt when the room goes).
CREATE TABLE reads (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id    uuid        NOT NULL,
    read_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reads_message_user_key UNIQUE (message_id, user_id)
);
CREATE INDEX reads_user_room_idx ON reads (user_id, room_id);

CREATE TABLE reactions (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      text        NOT NULL CHECK (octet_length(emoji) BETWEEN 1 AND 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reactions_message_user_emoji_key UNIQUE (message_id, user_id, emoji)
);
-- (message_id) is served by the unique index above (leading column); this
-- one orders a message's reactions by time for the aggregated view.
CREATE INDEX reactions_message_idx ON reactions (message_id, created_at);
-- A user's activity.reactions_given, ?user= filters, and user deletion.
CREATE INDEX reactions_user_idx ON reactions (user_id);

-- ---------------------------------------------------------------------------
-- Presence, notifications, settings
-- ---------------------------------------------------------------------------

-- The periodic copy of live presence (Redis). One row per user, created by
-- trigger at registration.
CREATE TABLE presence (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid        NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    status            text        NOT NULL DEFAULT 'offline'
                      CHECK (status IN ('online', 'away', 'busy', 'offline', 'invisible')),
    last_seen         timestamptz,
    custom_status     text        NOT NULL DEFAULT ''
                      CHECK (char_length(custom_status) <= 100),
    status_emoji      text        NOT NULL DEFAULT '',
    away_since        timestamptz,
    total_online_time bigint      NOT NULL DEFAULT 0 CHECK (total_online_time >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- title/text are set for `system` notifications (ZeroMQ `notify`), NULL
-- otherwise. emailed_at / pushed_at record delivery so no job repeats it.
CREATE TABLE notifications (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text        NOT NULL CHECK (kind IN ('mention', 'message', 'system')),
    room_id    uuid        REFERENCES rooms (id) ON DELETE CASCADE,
    message_id uuid        REFERENCES messages (id) ON DELETE CASCADE,
    title      text,
    text       text,
    is_read    boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    emailed_at timestamptz,
    pushed_at  timestamptz
);
-- Exactly once: the at-commit path and the mentions job both insert with
--   ON CONFLICT (user_id, message_id, kind) WHERE message_id IS NOT NULL
--   DO NOTHING
-- (Note: it also makes a second `system` notify about the same message for
-- the same user a conflict; callers of `notify` should use the same clause.)
CREATE UNIQUE INDEX notifications_once_idx ON notifications (user_id, message_id, kind)
    WHERE message_id IS NOT NULL;
CREATE INDEX notifications_user_created_idx ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_room_idx ON notifications (room_id) WHERE room_id IS NOT NULL;
CREATE INDEX notifications_message_idx ON notifications (message_id)
    WHERE message_id IS NOT NULL;

CREATE TABLE notification_settings (
    user_id             uuid    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email_enabled       boolean NOT NULL DEFAULT true,
    push_enabled        boolean NOT NULL DEFAULT true,
    mentions_only       boolean NOT NULL DEFAULT false,
    muted_rooms         uuid[]  NOT NULL DEFAULT '{}',
    email_delay_minutes integer NOT NULL DEFAULT 15
                        CHECK (email_delay_minutes BETWEEN 0 AND 1440)
);

-- The send-message-notification-emails job's memory: per user and room, the
-- highest message seq already emailed, so no message is emailed twice.
CREATE TABLE email_cursors (
    user_id          uuid   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id          uuid   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    last_emailed_seq bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX email_cursors_room_idx ON email_cursors (room_id);

-- ---------------------------------------------------------------------------
-- Scheduled work (API.md §2.9)
-- ---------------------------------------------------------------------------

-- A node claims a due run atomically, so several nodes never run it twice:
--   UPDATE schedules SET last_run_at = now(),
--          next_run_at = now() + make_interval(secs => interval_seconds)
--    WHERE name = $1 AND enabled AND next_run_at <= now() RETURNING *;
CREATE TABLE schedules (
    name             text        PRIMARY KEY,
    interval_seconds integer     NOT NULL CHECK (interval_seconds > 0),
    enabled          boolean     NOT NULL DEFAULT true,
    last_run_at      timestamptz,
    next_run_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE task_runs (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    schedule    text        NOT NULL REFERENCES schedules (name)
                            ON UPDATE CASCADE ON DELETE CASCADE,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text        NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'ok', 'error')),
    items       integer     NOT NULL DEFAULT 0 CHECK (items >= 0),
    error       text,
    claimed_by  text        -- the node (host:pid) that ran it
);
CREATE INDEX task_runs_schedule_started_idx ON task_runs (schedule, started_at DESC);
CREATE INDEX task_runs_started_idx ON task_runs (started_at DESC);

-- Due at once on first start (as Celery beat runs a never-run task).
INSERT INTO schedules (name, interval_seconds) VALUES
    ('cleanup-expired-typing-indicators',   30),
    ('cleanup-expired-presence',           300),
    ('sync-presence-to-database',          600),
    ('process-message-mentions',           900),
    ('send-message-notification-emails',   900)
ON CONFLICT (name) DO NOTHING;

-- ---------------------------------------------------------------------------
-- Triggers for derived data
-- ---------------------------------------------------------------------------

-- Every user has a presence record and notification settings from
-- registration on (API.md §2.5, §2.6). Callers that insert them anyway must
-- use ON CONFLICT (user_id) DO NOTHING.
CREATE FUNCTION parley_user_created() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO presence (user_id) VALUES (NEW.id) ON CONFLICT (user_id) DO NOTHING;
    INSERT INTO notification_settings (user_id) VALUES (NEW.id)
        ON CONFLICT (user_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER users_created AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION parley_user_created();

-- Statement-level with transition tables: a multi-row INSERT (group commit)
-- costs one UPDATE per room, not one per message. The room row is already
-- locked by parley_next_seq() in the same transaction. messages_count counts
-- messages posted (a soft-deleted tombstone still counts).
CREATE FUNCTION parley_messages_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rooms r
       SET messages_count = r.messages_count + n.cnt,
           last_activity  = greatest(r.last_activity, n.latest)
      FROM (SELECT room_id, count(*) AS cnt, max(created_at) AS latest
              FROM new_messages GROUP BY room_id) n
     WHERE r.id = n.room_id;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_inserted AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_messages
    FOR EACH STATEMENT EXECUTE FUNCTION parley_messages_inserted();

-- A receipt raises the reader's last_read_seq to the receipt's message seq.
CREATE FUNCTION parley_reads_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE room_participants p
       SET last_read_seq = n.max_seq
      FROM (SELECT r.user_id, m.room_id, max(m.seq) AS max_seq
              FROM new_reads r JOIN messages m ON m.id = r.message_id
             GROUP BY r.user_id, m.room_id) n
     WHERE p.room_id = n.room_id AND p.user_id = n.user_id
       AND p.last_read_seq < n.max_seq;
    RETURN NULL;
END $$;
CREATE TRIGGER reads_inserted AFTER INSERT ON reads
    REFERENCING NEW TABLE AS new_reads
    FOR EACH STATEMENT EXECUTE FUNCTION parley_reads_inserted();

-- Deleting one's receipt (DELETE reads/{id}/) makes "the newest read" the
-- newest remaining one. Receipts removed by a cascade (their message, hence
-- their room, is gone) are skipped: nothing is left to recompute, and a
-- big room's deletion must not recompute once per message.
CREATE FUNCTION parley_reads_deleted() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE room_participants p
       SET last_read_seq = coalesce(
               (SELECT max(m.seq)
                  FROM reads r JOIN messages m ON m.id = r.message_id
                 WHERE r.user_id = p.user_id AND r.room_id = p.room_id), 0)
      FROM (SELECT DISTINCT o.user_id, o.room_id
              FROM old_reads o
             WHERE EXISTS (SELECT 1 FROM messages m WHERE m.id = o.message_id)) d
     WHERE p.room_id = d.room_id AND p.user_id = d.user_id;
    RETURN NULL;
END $$;
CREATE TRIGGER reads_deleted AFTER DELETE ON reads
    REFERENCING OLD TABLE AS old_reads
    FOR EACH STATEMENT EXECUTE FUNCTION parley_reads_deleted();

-- updated_at follows changes a user can see, not bookkeeping (seq counters,
-- messages_count, last_activity, mentions_processed_at). A caller that sets
-- updated_at itself keeps its value. The column lists keep these triggers
-- off the hot path (parley_next_seq's UPDATE of last_seq never fires them).
CREATE FUNCTION parley_messages_touch() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at
       AND (NEW.content, NEW.is_deleted, NEW.is_pinned, NEW.attachment_id,
            NEW.is_edited, NEW.latitude, NEW.longitude, NEW.mentions)
           IS DISTINCT FROM
           (OLD.content, OLD.is_deleted, OLD.is_pinned, OLD.attachment_id,
            OLD.is_edited, OLD.latitude, OLD.longitude, OLD.mentions) THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_touch
    BEFORE UPDATE OF content, is_deleted, is_pinned, attachment_id, is_edited,
                     latitude, longitude, mentions ON messages
    FOR EACH ROW EXECUTE FUNCTION parley_messages_touch();

CREATE FUNCTION parley_rooms_touch() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at
       AND (NEW.name, NEW.description, NEW.image_id, NEW.is_private,
            NEW.max_participants, NEW.is_archived)
           IS DISTINCT FROM
           (OLD.name, OLD.description, OLD.image_id, OLD.is_private,
            OLD.max_participants, OLD.is_archived) THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER rooms_touch
    BEFORE UPDATE OF name, description, image_id, is_private, max_participants,
                     is_archived ON rooms
    FOR EACH ROW EXECUTE FUNCTION parley_rooms_touch();
