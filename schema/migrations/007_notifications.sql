-- schema/migrations/007_notifications.sql — notifications at commit and by
-- the mentions job, and the digest behind notification emails (API.md §2.6,
-- §2.9). See docs/notifications.md.

-- ---------------------------------------------------------------------------
-- Notifications for one message
-- ---------------------------------------------------------------------------

-- parley_notify_message(message) creates the notifications a committed
-- message causes, exactly once, and returns one row per notification it
-- created: the recipient, the notification object and whether to push it
-- (the recipient's push_enabled; pushed_at records the hand-over).
-- Rules (API.md §2.6):
--   * each mentioned participant (never the sender) gets a `mention`;
--   * in a direct room the other participant gets a `message`, or the
--     `mention` above when the message mentions them;
--   * nothing for a room the recipient muted; with mentions_only, only
--     mentions; group messages without a mention notify nobody;
--   * a recipient who already has a mention or message notification for the
--     message gets no second one (an edit adding a mention to a direct
--     message already notified); the unique index notifications_once_idx
--     backs this up against concurrent callers.
-- Marks messages.mentions_processed_at, so the process-message-mentions job
-- (which calls this too) finds the message done. Called in the transaction
-- that commits the message, so its events leave after COMMIT.
CREATE FUNCTION parley_notify_message(p_message uuid)
    RETURNS TABLE (user_id uuid, notification jsonb, push boolean)
    LANGUAGE sql AS $$
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
      FROM n
$$;

-- ---------------------------------------------------------------------------
-- Notification emails
-- ---------------------------------------------------------------------------

-- parley_email_digests(after, limit): what the send-message-notification-
-- emails job mails, for at most `limit` users with id > `after` (NULL: from
-- the start), in id order. One row per user with something to send:
--   user_id, email, name (display name or username), and rooms: a JSON array
--   of {room, name, room_type, count, from_seq, to_seq, lines}, where
--   `lines` are the newest (at most 3) messages, oldest first, as
--   {sender, content, message_type, created_at}.
-- A message is included when it is in a room the user participates in and
-- has not muted, is another person's and not deleted, lies above both the
-- user's newest read (last_read_seq) and the last seq already emailed
-- (email_cursors), and is older than the user's email_delay_minutes.
-- Users with email_enabled false or no address are skipped.
-- Per room only a prefix of the seq range is taken: messages up to (not
-- including) the first one that is still too young, so a message committed
-- late with a lower seq is never jumped over by the cursor.
-- Nothing is changed here: the job advances email_cursors to to_seq (and
-- stamps the notifications of the range emailed_at) only once the mail is
-- accepted by the SMTP server, so a failed send is retried next run.
CREATE FUNCTION parley_email_digests(p_after uuid, p_limit integer)
    RETURNS TABLE (user_id uuid, email text, name text, rooms jsonb)
    LANGUAGE sql STABLE AS $$
    WITH pairs AS (
        SELECT u.id AS uid, p.room_id,
               greatest(p.last_read_seq, coalesce(c.last_emailed_seq, 0)) AS from_seq,
               now() - make_interval(mins => s.email_delay_minutes) AS cutoff
          FROM users u
          JOIN notification_settings s ON s.user_id = u.id
          JOIN room_participants p ON p.user_id = u.id
          JOIN rooms r ON r.id = p.room_id
          LEFT JOIN email_cursors c ON c.user_id = u.id AND c.room_id = p.room_id
         WHERE s.email_enabled AND u.email <> ''
           AND (p_after IS NULL OR u.id > p_after)
           AND NOT (p.room_id = ANY (s.muted_rooms))
           AND r.last_seq > greatest(p.last_read_seq, coalesce(c.last_emailed_seq, 0))),
    bounded AS (
        SELECT pr.*, coalesce((SELECT min(y.seq) FROM messages y
                                WHERE y.room_id = pr.room_id AND y.seq > pr.from_seq
                                  AND y.created_at > pr.cutoff),
                              9223372036854775807) AS until_seq
          FROM pairs pr),
    msgs AS (
        SELECT b.uid, b.room_id, b.from_seq, m.seq, m.sender_id, m.content,
               m.message_type, m.created_at
          FROM bounded b
          JOIN messages m ON m.room_id = b.room_id AND m.seq > b.from_seq
                         AND m.seq < b.until_seq
         WHERE m.sender_id <> b.uid AND NOT m.is_deleted),
    chosen AS (
        SELECT DISTINCT uid FROM msgs ORDER BY uid LIMIT p_limit),
    per_room AS (
        SELECT g.uid, g.room_id, min(g.from_seq) AS from_seq, max(g.seq) AS to_seq,
               count(*) AS cnt, max(g.created_at) AS newest
          FROM msgs g JOIN chosen ch ON ch.uid = g.uid
         GROUP BY g.uid, g.room_id),
    rendered AS (
        SELECT pr.uid, pr.newest, jsonb_build_object(
                   'room',      pr.room_id,
                   'room_type', r.room_type,
                   'name',      CASE
                       WHEN r.room_type = 'direct' THEN 'Direct messages with ' || coalesce(
                           (SELECT coalesce(nullif(o.display_name, ''), o.username)
                              FROM room_participants op JOIN users o ON o.id = op.user_id
                             WHERE op.room_id = r.id AND op.user_id <> pr.uid LIMIT 1),
                           'nobody')
                       WHEN r.name <> '' THEN r.name
                       ELSE 'an unnamed ' || r.room_type || ' room' END,
                   'count',     pr.cnt,
                   'from_seq',  pr.from_seq,
                   'to_seq',    pr.to_seq,
                   'lines',     (SELECT jsonb_agg(l.line ORDER BY l.seq)
                                   FROM (SELECT g.seq, jsonb_build_object(
                                                'sender', coalesce(nullif(su.display_name, ''),
                                                                   su.username),
                                                'content', g.content,
                                                'message_type', g.message_type,
                                                'created_at', parley_ts(g.created_at)) AS line
                                           FROM msgs g JOIN users su ON su.id = g.sender_id
                                          WHERE g.uid = pr.uid AND g.room_id = pr.room_id
                                          ORDER BY g.seq DESC LIMIT 3) l)) AS room
          FROM per_room pr JOIN rooms r ON r.id = pr.room_id)
    SELECT u.id, u.email, coalesce(nullif(u.display_name, ''), u.username),
           jsonb_agg(x.room ORDER BY x.newest DESC)
      FROM rendered x JOIN users u ON u.id = x.uid
     GROUP BY u.id
     ORDER BY u.id
$$;

-- parley_email_sent(user, rooms): records that the digest with `rooms`
-- ([{room, from_seq, to_seq}, ...] as returned above) reached the SMTP
-- server: email_cursors move to to_seq (never back), and the user's
-- notifications for the messages of those ranges get emailed_at. Returns
-- the number of notifications stamped.
CREATE FUNCTION parley_email_sent(p_user uuid, p_rooms jsonb) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    stamped integer;
BEGIN
    INSERT INTO email_cursors AS c (user_id, room_id, last_emailed_seq)
    SELECT p_user, (x->>'room')::uuid, (x->>'to_seq')::bigint
      FROM jsonb_array_elements(p_rooms) x
      JOIN rooms r ON r.id = (x->>'room')::uuid
    ON CONFLICT (user_id, room_id) DO UPDATE
        SET last_emailed_seq = greatest(c.last_emailed_seq, EXCLUDED.last_emailed_seq);
    UPDATE notifications n SET emailed_at = now()
      FROM jsonb_array_elements(p_rooms) x, messages m
     WHERE n.user_id = p_user AND n.emailed_at IS NULL
       AND n.message_id = m.id AND m.room_id = (x->>'room')::uuid
       AND m.seq > (x->>'from_seq')::bigint AND m.seq <= (x->>'to_seq')::bigint;
    GET DIAGNOSTICS stamped = ROW_COUNT;
    RETURN stamped;
END $$;
