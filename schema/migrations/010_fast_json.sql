-- schema/migrations/010_fast_json.sql — the same JSON, for less PostgreSQL
-- CPU. Every function here keeps its signature and its output, key for key
-- and value for value (tests/sql/check_schema.sql); only how it is computed
-- changes. Measured with tests/sql/bench_json.sh; figures in bench/README.md.
--
-- Why (PostgreSQL 15):
--   * A LANGUAGE sql function that cannot be inlined (a body with
--     sub-selects, or a data-modifying one) is parsed, analysed and planned
--     again in every query that calls it — in every transaction when called
--     from PL/pgSQL — and gets a fresh executor for every row: on a
--     50-message page `fmgr_sql` was 67 % of the backend, and on a post
--     parse + plan of SQL-function bodies was ~40 %.
--   * PL/pgSQL keeps each statement's plan for the life of the connection
--     (parleyd's connections are long-lived), and evaluates expressions
--     without sub-selects on a fast path. So the functions with sub-selects
--     (parley_message_json, parley_room_json, parley_user_json) and the
--     data-modifying parley_notify_message are PL/pgSQL here.
--   * A LANGUAGE sql function whose body is one SELECT of an expression, no
--     sub-select, no FROM, STABLE or IMMUTABLE as its contents are, neither
--     STRICT, SECURITY DEFINER nor SET, is inlined into the calling query or
--     PL/pgSQL expression: no call at all. parley_ts, parley_attachment_json,
--     parley_read_json, parley_reaction_json, parley_presence_json,
--     parley_notification_json, parley_event_json (002) already are, and so
--     is parley_message_json_parts below, which the message renderers share.
--   * Most messages have no reply and no reaction. An aggregate's executor
--     set-up (ExecInitAgg) is most of what a per-row count(*) or jsonb_agg
--     costs, so parley_message_json first asks whether there is anything to
--     aggregate (two EXISTS probes in one statement) and aggregates only
--     then. A brand-new message has nothing to ask about at all: message.new
--     events (parley_message_event, parley_message_new_events) render it
--     with reply_count 0 and reactions [] without a query.
--
-- Contract this adds: parley_message_event(m, 'message.new', ...) and
-- parley_message_new_events render m as a message nobody has replied to
-- or reacted to yet — true of a row just inserted, which is what message.new
-- is for (002_json.sql). Any other type renders it in full.
--
-- PL/pgSQL functions declared STABLE read with the calling statement's
-- snapshot, as the SQL functions they replace did.

-- ---------------------------------------------------------------------------
-- Messages
-- ---------------------------------------------------------------------------

-- The message object (API.md §2.2) from the row and its three computed
-- parts: `attachment` (the attachment object, or NULL: callers pass NULL for
-- a deleted message), `reply_count` and `reactions`. Inlined wherever it is
-- called (no sub-select): the one place the message's keys are listed.
CREATE FUNCTION parley_message_json_parts(m messages, attachment jsonb,
                                          reply_count bigint, reactions jsonb)
    RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'id',           m.id,
        'room',         m.room_id,
        'seq',          m.seq,
        'sender',       m.sender_id,
        'content',      CASE WHEN m.is_deleted THEN '' ELSE m.content END,
        'message_type', m.message_type,
        'attachment',   attachment,
        'location',     CASE WHEN NOT m.is_deleted AND m.latitude IS NOT NULL THEN
                            jsonb_build_object('latitude', m.latitude,
                                               'longitude', m.longitude) END,
        'reply_to',     m.reply_to,
        'reply_count',  reply_count,
        'forward_from', m.forward_from,
        'mentions',     CASE WHEN m.is_deleted THEN '[]'::jsonb
                             ELSE to_jsonb(m.mentions) END,
        'reactions',    reactions,
        'is_edited',    m.is_edited,
        'edited_at',    parley_ts(m.edited_at),
        'is_deleted',   m.is_deleted,
        'is_pinned',    m.is_pinned,
        'client_id',    m.client_id,
        'stream_id',    m.stream_id,
        'created_at',   parley_ts(m.created_at),
        'updated_at',   parley_ts(m.updated_at))
$$;

-- Message (API.md §2.2), as in 002_json.sql: a deleted message is a
-- tombstone (content '', attachment, location null, mentions []) that keeps
-- its reactions and reply_count; reactions one entry per emoji in order of
-- the emoji's first use, `me` whether the viewer is among its users;
-- reply_count counts non-deleted replies.
CREATE OR REPLACE FUNCTION parley_message_json(m messages, viewer uuid, base text)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_attachment  jsonb;
    v_replies     bigint := 0;
    v_reactions   jsonb := '[]'::jsonb;
    v_has_replies boolean;
    v_has_reacts  boolean;
BEGIN
    IF NOT m.is_deleted AND m.attachment_id IS NOT NULL THEN
        SELECT parley_attachment_json(a, base) INTO v_attachment
          FROM attachments a WHERE a.id = m.attachment_id;
    END IF;
    SELECT EXISTS (SELECT 1 FROM messages c
                    WHERE c.reply_to = m.id AND NOT c.is_deleted),
           EXISTS (SELECT 1 FROM reactions r WHERE r.message_id = m.id)
      INTO v_has_replies, v_has_reacts;
    IF v_has_replies THEN
        SELECT count(*) INTO v_replies
          FROM messages c WHERE c.reply_to = m.id AND NOT c.is_deleted;
    END IF;
    IF v_has_reacts THEN
        SELECT coalesce(jsonb_agg(jsonb_build_object('emoji', x.emoji, 'count', x.n,
                                                     'me', x.me)
                                  ORDER BY x.first_at, x.emoji), '[]'::jsonb)
          INTO v_reactions
          FROM (SELECT r.emoji, count(*) AS n,
                       coalesce(bool_or(r.user_id = viewer), false) AS me,
                       min(r.created_at) AS first_at
                  FROM reactions r
                 WHERE r.message_id = m.id
                 GROUP BY r.emoji) x;
    END IF;
    RETURN parley_message_json_parts(m, v_attachment, v_replies, v_reactions);
END $$;

-- message.* events (002_json.sql): payload {"message": <message object>}
-- rendered for viewer NULL; message.new keeps m.seq (taken when the row was
-- inserted) and renders m as new (no query but its attachment's); every
-- other type takes a fresh seq and renders m in full. parley_append_event's
-- INSERT is done here directly (one PL/pgSQL call less per message).
CREATE OR REPLACE FUNCTION parley_message_event(m messages, p_type text, p_base text,
                                                p_actor uuid) RETURNS jsonb
    LANGUAGE plpgsql AS $$
DECLARE
    s            bigint;
    v_message    jsonb;
    v_attachment jsonb;
    ev           jsonb;
BEGIN
    IF p_type = 'message.new' THEN
        s := m.seq;
        IF NOT m.is_deleted AND m.attachment_id IS NOT NULL THEN
            SELECT parley_attachment_json(a, p_base) INTO v_attachment
              FROM attachments a WHERE a.id = m.attachment_id;
        END IF;
        v_message := parley_message_json_parts(m, v_attachment, 0, '[]'::jsonb);
    ELSE
        s := parley_next_seq(m.room_id);
        v_message := parley_message_json(m, NULL, p_base);
    END IF;
    ev := parley_event_json(m.room_id, s, p_type, jsonb_build_object('message', v_message));
    INSERT INTO room_events (room_id, seq, type, payload, actor_id)
        VALUES (m.room_id, s, p_type, ev, p_actor);
    RETURN ev;
END $$;

-- Group commit of new messages (002_json.sql): every row of p_msgs is
-- rendered as new, its attachment joined instead of looked up per row.
CREATE OR REPLACE FUNCTION parley_message_new_events(p_msgs messages[], p_base text)
    RETURNS SETOF jsonb
    LANGUAGE sql AS $$
    INSERT INTO room_events (room_id, seq, type, payload, actor_id)
    SELECT x.room_id, x.seq, 'message.new',
           parley_event_json(x.room_id, x.seq, 'message.new',
               jsonb_build_object('message', parley_message_json_parts(
                   x,
                   CASE WHEN NOT x.is_deleted AND a.id IS NOT NULL
                        THEN parley_attachment_json(a, p_base) END,
                   0, '[]'::jsonb))),
           x.sender_id
      FROM unnest(p_msgs) AS x
      LEFT JOIN attachments a ON a.id = x.attachment_id
    RETURNING payload
$$;

-- ---------------------------------------------------------------------------
-- Rooms and users
-- ---------------------------------------------------------------------------

-- Room (API.md §2.1), as in 002_json.sql: participants and admins in
-- joining order (one scan for both), unread_count other people's non-deleted
-- messages above the viewer's last_read_seq (0 for a non-participant or no
-- viewer, without a query), last_message the newest by seq.
CREATE OR REPLACE FUNCTION parley_room_json(r rooms, viewer uuid, base text)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_participants jsonb;
    v_admins       jsonb;
    v_last_read    bigint;
    v_unread       bigint := 0;
    v_last         messages;
    v_last_message jsonb;
BEGIN
    SELECT jsonb_agg(p.user_id ORDER BY p.joined_at, p.user_id),
           jsonb_agg(p.user_id ORDER BY p.joined_at, p.user_id) FILTER (WHERE p.is_admin),
           max(p.last_read_seq) FILTER (WHERE p.user_id = viewer)
      INTO v_participants, v_admins, v_last_read
      FROM room_participants p WHERE p.room_id = r.id;
    IF v_last_read IS NOT NULL THEN
        SELECT count(*) INTO v_unread
          FROM messages m
         WHERE m.room_id = r.id AND m.seq > v_last_read
           AND m.sender_id <> viewer AND NOT m.is_deleted;
    END IF;
    SELECT m.* INTO v_last
      FROM messages m WHERE m.room_id = r.id ORDER BY m.seq DESC LIMIT 1;
    IF FOUND THEN
        v_last_message := parley_message_json(v_last, viewer, base);
    END IF;
    RETURN jsonb_build_object(
        'id',               r.id,
        'name',             r.name,
        'room_type',        r.room_type,
        'participants',     coalesce(v_participants, '[]'::jsonb),
        'admins',           coalesce(v_admins, '[]'::jsonb),
        'created_by',       r.created_by,
        'description',      r.description,
        'image',            parley_attachment_url(base, r.image_id, 'download'),
        'is_private',       r.is_private,
        'max_participants', r.max_participants,
        'is_archived',      r.is_archived,
        'last_activity',    parley_ts(r.last_activity),
        'messages_count',   r.messages_count,
        'last_seq',         r.last_seq,
        'unread_count',     v_unread,
        'last_message',     v_last_message,
        'created_at',       parley_ts(r.created_at),
        'updated_at',       parley_ts(r.updated_at));
END $$;

-- User (API.md §1), as in 002_json.sql: email only for the user themself;
-- messages_sent and last_message_at from one scan of the user's messages.
CREATE OR REPLACE FUNCTION parley_user_json(u users, viewer uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_sent      bigint;
    v_last      timestamptz;
    v_reactions bigint;
BEGIN
    SELECT count(*), max(m.created_at) INTO v_sent, v_last
      FROM messages m WHERE m.sender_id = u.id;
    SELECT count(*) INTO v_reactions FROM reactions r WHERE r.user_id = u.id;
    RETURN jsonb_build_object(
               'id',           u.id,
               'username',     u.username,
               'display_name', u.display_name)
        || CASE WHEN u.id = viewer THEN jsonb_build_object('email', u.email)
                ELSE '{}'::jsonb END
        || jsonb_build_object(
               'date_joined',  parley_ts(u.date_joined),
               'is_staff',     u.is_staff,
               'activity',     jsonb_build_object(
                   'messages_sent',   v_sent,
                   'reactions_given', v_reactions,
                   'last_message_at', parley_ts(v_last),
                   'last_seen',       parley_ts(u.last_seen)));
END $$;

-- ---------------------------------------------------------------------------
-- Notifications for one message (007_notifications.sql), same rules and
-- result: the statement is unchanged, only its plan is now kept.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION parley_notify_message(p_message uuid)
    RETURNS TABLE (user_id uuid, notification jsonb, push boolean)
    LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH m AS (
        SELECT m.id, m.room_id, m.sender_id, m.mentions, r.room_type
          FROM messages m JOIN rooms r ON r.id = m.room_id
         WHERE m.id = p_message AND NOT m.is_deleted),
    candidates AS (
        SELECT x.uid AS uid, 'mention'::text AS kind
          FROM m, unnest(m.mentions) AS x(uid)
        UNION
        SELECT p.user_id, 'message'
          FROM m JOIN room_participants p ON p.room_id = m.room_id
         WHERE m.room_type = 'direct' AND NOT (p.user_id = ANY (m.mentions))),
    eligible AS (
        SELECT c.uid, c.kind, s.push_enabled
          FROM candidates c
          JOIN m ON c.uid <> m.sender_id
          JOIN notification_settings s ON s.user_id = c.uid
          JOIN room_participants p ON p.room_id = m.room_id AND p.user_id = c.uid
         WHERE NOT (m.room_id = ANY (s.muted_rooms))
           AND (c.kind = 'mention' OR NOT s.mentions_only)
           AND NOT EXISTS (SELECT 1 FROM notifications o
                            WHERE o.user_id = c.uid AND o.message_id = m.id
                              AND o.kind IN ('mention', 'message'))),
    n AS (
        INSERT INTO notifications (user_id, kind, room_id, message_id, pushed_at)
        SELECT e.uid, e.kind, m.room_id, m.id, CASE WHEN e.push_enabled THEN now() END
          FROM eligible e, m
        ON CONFLICT (user_id, message_id, kind) WHERE message_id IS NOT NULL DO NOTHING
        RETURNING *),
    done AS (
        UPDATE messages SET mentions_processed_at = now()
         WHERE id = p_message AND mentions_processed_at IS NULL AND mentions <> '{}')
    SELECT n.user_id, parley_notification_json(n::notifications), n.pushed_at IS NOT NULL
      FROM n;
END $$;
