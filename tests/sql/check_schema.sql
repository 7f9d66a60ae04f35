-- tests/sql/check_schema.sql — exercises schema/migrations/*.sql against a
-- database where they have been applied. Everything happens in one
-- transaction that is rolled back; any wrong result RAISEs, so
--     psql -X -v ON_ERROR_STOP=1 -d DB -f tests/sql/check_schema.sql
-- exits non-zero on failure and prints "check_schema: ok" on success.
-- (Concurrent seq allocation needs two sessions: check_seq_concurrency.sh.)

\set ON_ERROR_STOP 1
BEGIN;

-- Helpers (temporary: gone at ROLLBACK) --------------------------------------
CREATE FUNCTION pg_temp.ok(cond boolean, what text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF cond IS NOT TRUE THEN
        RAISE EXCEPTION 'check_schema FAILED: %', what;
    END IF;
END $$;

CREATE FUNCTION pg_temp.eq(actual jsonb, expected jsonb, what text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF actual IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'check_schema FAILED: %: got %, want %', what, actual, expected;
    END IF;
END $$;

CREATE FUNCTION pg_temp.eq(actual text, expected text, what text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF actual IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'check_schema FAILED: %: got %, want %', what, actual, expected;
    END IF;
END $$;

CREATE FUNCTION pg_temp.eq(actual bigint, expected bigint, what text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF actual IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'check_schema FAILED: %: got %, want %', what, actual, expected;
    END IF;
END $$;

-- Runs sql and checks that it fails with SQLSTATE state.
CREATE FUNCTION pg_temp.fails(sql text, state text, what text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE sql;
    EXCEPTION WHEN OTHERS THEN
        IF SQLSTATE <> state THEN
            RAISE EXCEPTION 'check_schema FAILED: %: SQLSTATE % (%), want %',
                what, SQLSTATE, SQLERRM, state;
        END IF;
        RETURN;
    END;
    RAISE EXCEPTION 'check_schema FAILED: %: succeeded, want SQLSTATE %', what, state;
END $$;

-- The keys of a jsonb object, sorted.
CREATE FUNCTION pg_temp.keys(j jsonb) RETURNS text
    LANGUAGE sql AS $$
    SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(j) k
$$;

-- The checks ------------------------------------------------------------------
DO $check$
DECLARE
    base   constant text := 'http://127.0.0.1:8080';
    ts_re  constant text := '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$';
    t0     constant timestamptz := '2026-11-25 12:00:00+00';
    alice  uuid; bob uuid; carol uuid; dave uuid;
    room   uuid; dm uuid; room2 uuid;
    att    uuid; att2 uuid;
    m1 uuid; m2 uuid; m3 uuid; m4 uuid; m5 uuid; m6 uuid;
    j      jsonb;
    ev     jsonb;
    s      bigint;
    n      bigint;
    r      record;
    t      text;
BEGIN
    -- parley_ts / parley_ms / parley_direct_key ---------------------------------
    PERFORM pg_temp.eq(parley_ts('2026-11-25 12:00:00.123456+00'),
                       '2026-11-25T12:00:00.123Z', 'parley_ts truncates to ms');
    SET LOCAL timezone = 'America/New_York';
    PERFORM pg_temp.eq(parley_ts('2026-11-25 07:00:00.5-05'),
                       '2026-11-25T12:00:00.500Z', 'parley_ts is UTC whatever the session zone');
    PERFORM pg_temp.eq(parley_ts('2026-01-02 03:04:05+00'),
                       '2026-01-02T03:04:05.000Z', 'parley_ts pads');
    RESET timezone;
    PERFORM pg_temp.ok(parley_ts(NULL) IS NULL, 'parley_ts(NULL) is NULL');
    PERFORM pg_temp.eq(parley_ms('1970-01-01 00:00:01.234+00'), 1234, 'parley_ms');
    PERFORM pg_temp.eq(parley_direct_key('00000000-0000-0000-0000-00000000000b',
                                         '00000000-0000-0000-0000-00000000000a'),
                       '00000000-0000-0000-0000-00000000000a:00000000-0000-0000-0000-00000000000b',
                       'parley_direct_key sorts');

    -- Users --------------------------------------------------------------------
    INSERT INTO users (username, display_name, email, password_hash, date_joined)
        VALUES ('chk_alice', 'Alice A', 'alice@example.org', 'x', t0) RETURNING id INTO alice;
    INSERT INTO users (username, password_hash) VALUES ('chk_bob', 'x') RETURNING id INTO bob;
    INSERT INTO users (username, password_hash) VALUES ('chk_carol', 'x') RETURNING id INTO carol;
    INSERT INTO users (username, password_hash) VALUES ('chk_dave', 'x') RETURNING id INTO dave;
    PERFORM pg_temp.fails(format('INSERT INTO users (username, password_hash) VALUES (%L, %L)',
                                 'chk_alice', 'y'), '23505', 'usernames are unique');
    INSERT INTO users (username, password_hash) VALUES ('CHK_alice', 'x');  -- case-sensitive

    SELECT count(*) INTO n FROM presence WHERE user_id IN (alice, bob, carol, dave);
    PERFORM pg_temp.eq(n, 4, 'every user gets a presence row');
    SELECT count(*) INTO n FROM notification_settings WHERE user_id IN (alice, bob, carol, dave);
    PERFORM pg_temp.eq(n, 4, 'every user gets notification settings');

    SELECT parley_user_json(u, alice) INTO j FROM users u WHERE id = alice;
    PERFORM pg_temp.eq(pg_temp.keys(j),
        'activity,date_joined,display_name,email,id,is_staff,username', 'user keys (self)');
    PERFORM pg_temp.eq(j, jsonb_build_object(
        'id', alice, 'username', 'chk_alice', 'display_name', 'Alice A',
        'email', 'alice@example.org', 'date_joined', '2026-11-25T12:00:00.000Z',
        'is_staff', false,
        'activity', jsonb_build_object('messages_sent', 0, 'reactions_given', 0,
                                       'last_message_at', NULL, 'last_seen', NULL)),
        'user json (self)');
    SELECT parley_user_json(u, bob) INTO j FROM users u WHERE id = alice;
    PERFORM pg_temp.ok(NOT j ? 'email', 'email hidden from others');
    SELECT parley_user_json(u, NULL) INTO j FROM users u WHERE id = alice;
    PERFORM pg_temp.ok(NOT j ? 'email', 'email hidden from nobody');
    SELECT parley_user_brief_json(u) INTO j FROM users u WHERE id = bob;
    PERFORM pg_temp.eq(j, jsonb_build_object('id', bob, 'username', 'chk_bob', 'display_name', ''),
                       'user brief json');

    -- Sessions and refresh tokens cascade with their user
    INSERT INTO sessions (id, user_id, csrf_token, expires_at)
        VALUES ('tok-1', dave, 'csrf', now() + interval '7 days');
    INSERT INTO refresh_tokens (jti, user_id, session_id, expires_at)
        VALUES (gen_random_uuid(), dave, 'tok-1', now() + interval '7 days');
    DELETE FROM sessions WHERE id = 'tok-1';
    SELECT count(*) INTO n FROM refresh_tokens WHERE user_id = dave AND session_id IS NULL;
    PERFORM pg_temp.eq(n, 1, 'deleting a session keeps its refresh token, unlinked');

    -- Attachments --------------------------------------------------------------
    INSERT INTO attachments (uploader_id, name, mime, size, storage_path, width, height,
                             thumb_path, created_at)
        VALUES (alice, 'cat.png', 'image/png', 1234, 'media/a/cat.png', 640, 480,
                'media/a/cat.thumb.jpg', t0)
        RETURNING id INTO att;
    INSERT INTO attachments (uploader_id, name, mime, size, storage_path, created_at)
        VALUES (bob, 'notes.pdf', 'application/pdf', 99, 'media/b/notes.pdf', t0)
        RETURNING id INTO att2;
    SELECT parley_attachment_json(a, base) INTO j FROM attachments a WHERE id = att;
    PERFORM pg_temp.eq(j, jsonb_build_object(
        'id', att,
        'url', base || '/api/messaging/attachments/' || att || '/download/',
        'name', 'cat.png', 'mime', 'image/png', 'size', 1234, 'width', 640, 'height', 480,
        'thumbnail_url', base || '/api/messaging/attachments/' || att || '/thumbnail/',
        'created_at', '2026-11-25T12:00:00.000Z'), 'attachment json (image)');
    SELECT parley_attachment_json(a, base) INTO j FROM attachments a WHERE id = att2;
    PERFORM pg_temp.ok(j->'thumbnail_url' = 'null' AND j->'width' = 'null',
                       'attachment json without thumbnail');

    -- A group room: alice (admin), bob, carol ---------------------------------
    INSERT INTO rooms (name, room_type, created_by, description, created_at, updated_at,
                       last_activity)
        VALUES ('general', 'group', alice, 'chat', t0, t0, t0) RETURNING id INTO room;
    INSERT INTO room_participants (room_id, user_id, is_admin, joined_at) VALUES
        (room, alice, true,  t0),
        (room, bob,   false, t0 + interval '1 s'),
        (room, carol, false, t0 + interval '2 s');
    ev := parley_room_info_event(room, 'room.created', base, alice);
    PERFORM pg_temp.eq(pg_temp.keys(ev), 'room,room_info,seq,ts,type', 'room.created keys');
    PERFORM pg_temp.eq((ev->>'seq')::bigint, 1, 'room.created is event 1');
    PERFORM pg_temp.eq(ev->>'type', 'room.created', 'room.created type');
    PERFORM pg_temp.eq(ev->>'room', room::text, 'room.created room');
    PERFORM pg_temp.ok(ev->>'ts' ~ ts_re, 'event ts format');
    j := ev->'room_info';
    PERFORM pg_temp.eq(pg_temp.keys(j),
        'admins,created_at,created_by,description,id,image,is_archived,is_private,'
        'last_activity,last_message,last_seq,max_participants,messages_count,name,'
        'participants,room_type,unread_count,updated_at', 'room keys');
    PERFORM pg_temp.eq(j->'participants', jsonb_build_array(alice, bob, carol),
                       'participants in joining order');
    PERFORM pg_temp.eq(j->'admins', jsonb_build_array(alice), 'admins');
    PERFORM pg_temp.eq((j->>'last_seq')::bigint, 1, 'room_info.last_seq is the event seq');
    PERFORM pg_temp.ok(j->'last_message' = 'null' AND j->'image' = 'null'
                       AND (j->>'is_private')::boolean AND (j->>'max_participants')::int = 256
                       AND j->>'created_by' = alice::text AND j->>'name' = 'general'
                       AND j->>'created_at' = '2026-11-25T12:00:00.000Z',
                       'room json fields');
    SELECT payload INTO j FROM room_events WHERE room_id = room AND seq = 1;
    PERFORM pg_temp.eq(j, ev, 'the stored event is the returned one');
    SELECT updated_at INTO r FROM rooms WHERE id = room;
    PERFORM pg_temp.ok(r.updated_at = t0, 'seq bookkeeping does not touch updated_at');

    -- Messages -----------------------------------------------------------------
    -- m1: alice, the CTE form (seq taken in the INSERT itself)
    WITH m AS (
        INSERT INTO messages (room_id, seq, sender_id, content, created_at, updated_at)
        VALUES (room, parley_next_seq(room), alice, 'hello world', t0 + interval '10 s',
                t0 + interval '10 s')
        RETURNING *)
    SELECT parley_message_event(m, 'message.new', base, m.sender_id), m.id INTO ev, m1 FROM m;
    INSERT INTO reads (message_id, user_id, room_id) VALUES (m1, alice, room);
    PERFORM pg_temp.eq((ev->>'seq')::bigint, 2, 'first message is event 2');
    PERFORM pg_temp.eq((ev->'message'->>'seq')::bigint, 2, 'message.seq = its message.new seq');
    PERFORM pg_temp.eq(ev->'message'->>'id', m1::text, 'message.new carries the message');
    PERFORM pg_temp.eq(pg_temp.keys(ev), 'message,room,seq,ts,type', 'message.new keys');
    PERFORM pg_temp.eq(pg_temp.keys(ev->'message'),
        'attachment,client_id,content,created_at,edited_at,forward_from,id,is_deleted,'
        'is_edited,is_pinned,location,mentions,message_type,reactions,reply_count,reply_to,'
        'room,sender,seq,stream_id,updated_at', 'message keys');

    -- m2: bob, stepwise form; a reply to m1 mentioning alice, with a client_id
    s := parley_next_seq(room);
    INSERT INTO messages (room_id, seq, sender_id, content, reply_to, mentions, client_id,
                          created_at, updated_at)
        VALUES (room, s, bob, '@alice hi', m1, ARRAY[alice], 'c-1',
                t0 + interval '20 s', t0 + interval '20 s')
        RETURNING id INTO m2;
    SELECT parley_message_event(m, 'message.new', base, bob) INTO ev FROM messages m WHERE id = m2;
    INSERT INTO reads (message_id, user_id, room_id) VALUES (m2, bob, room);
    PERFORM pg_temp.eq((ev->>'seq')::bigint, 3, 'second message is event 3');
    PERFORM pg_temp.fails(format(
        'INSERT INTO messages (room_id, seq, sender_id, content, client_id) VALUES (%L, 99, %L, %L, %L)',
        room, bob, 'again', 'c-1'), '23505', 'same sender + client_id is refused');
    PERFORM pg_temp.fails(format(
        'INSERT INTO messages (room_id, seq, sender_id, content) VALUES (%L, 3, %L, %L)',
        room, carol, 'dup seq'), '23505', 'seq is unique per room');

    -- m3: carol, with an image attachment
    s := parley_next_seq(room);
    INSERT INTO messages (room_id, seq, sender_id, content, message_type, attachment_id,
                          created_at, updated_at)
        VALUES (room, s, carol, 'look', 'image', att, t0 + interval '30 s', t0 + interval '30 s')
        RETURNING id INTO m3;
    PERFORM parley_message_event(m, 'message.new', base, carol) FROM messages m WHERE id = m3;
    INSERT INTO reads (message_id, user_id, room_id) VALUES (m3, carol, room);

    -- m4: bob, another reply to m1, deleted below; m5: bob, a location
    s := parley_next_seq(room);
    INSERT INTO messages (room_id, seq, sender_id, content, reply_to, mentions, attachment_id,
                          created_at, updated_at)
        VALUES (room, s, bob, 'oops @carol', m1, ARRAY[carol], att2,
                t0 + interval '40 s', t0 + interval '40 s')
        RETURNING id INTO m4;
    PERFORM parley_message_event(m, 'message.new', base, bob) FROM messages m WHERE id = m4;
    INSERT INTO reads (message_id, user_id, room_id) VALUES (m4, bob, room);
    s := parley_next_seq(room);
    INSERT INTO messages (room_id, seq, sender_id, message_type, latitude, longitude,
                          created_at, updated_at)
        VALUES (room, s, bob, 'location', 48.85, 2.35, t0 + interval '50 s', t0 + interval '50 s')
        RETURNING id INTO m5;
    PERFORM parley_message_event(m, 'message.new', base, bob) FROM messages m WHERE id = m5;
    INSERT INTO reads (message_id, user_id, room_id) VALUES (m5, bob, room);
    PERFORM pg_temp.fails(format(
        'INSERT INTO messages (room_id, seq, sender_id, latitude) VALUES (%L, 98, %L, 1)',
        room, bob), '23514', 'latitude without longitude is refused');
    PERFORM pg_temp.fails(format(
        'INSERT INTO messages (room_id, seq, sender_id, message_type) VALUES (%L, 98, %L, %L)',
        room, bob, 'sticker'), '23514', 'unknown message_type is refused');

    -- Counters kept by triggers
    SELECT messages_count, last_seq, last_activity INTO r FROM rooms WHERE id = room;
    PERFORM pg_temp.eq(r.messages_count, 5, 'rooms.messages_count');
    PERFORM pg_temp.eq(r.last_seq, 6, 'rooms.last_seq');
    PERFORM pg_temp.ok(r.last_activity = t0 + interval '50 s', 'rooms.last_activity');
    SELECT parley_user_json(u, NULL)->'activity' INTO j FROM users u WHERE id = bob;
    PERFORM pg_temp.eq(j, jsonb_build_object('messages_sent', 3, 'reactions_given', 0,
        'last_message_at', '2026-11-25T12:00:50.000Z', 'last_seen', NULL), 'bob activity');

    -- Message JSON
    SELECT parley_message_json(m, alice, base) INTO j FROM messages m WHERE id = m2;
    PERFORM pg_temp.eq(j, jsonb_build_object(
        'id', m2, 'room', room, 'seq', 3, 'sender', bob, 'content', '@alice hi',
        'message_type', 'text', 'attachment', NULL, 'location', NULL, 'reply_to', m1,
        'reply_count', 0, 'forward_from', NULL, 'mentions', jsonb_build_array(alice),
        'reactions', '[]'::jsonb, 'is_edited', false, 'edited_at', NULL,
        'is_deleted', false, 'is_pinned', false, 'client_id', 'c-1', 'stream_id', NULL,
        'created_at', '2026-11-25T12:00:20.000Z', 'updated_at', '2026-11-25T12:00:20.000Z'),
        'message json');
    SELECT parley_message_json(m, alice, base) INTO j FROM messages m WHERE id = m3;
    PERFORM pg_temp.eq(j->'attachment',
        (SELECT parley_attachment_json(a, base) FROM attachments a WHERE id = att),
        'message attachment');
    SELECT parley_message_json(m, alice, base) INTO j FROM messages m WHERE id = m5;
    PERFORM pg_temp.eq(j->'location', '{"latitude": 48.85, "longitude": 2.35}', 'location');
    SELECT parley_message_json(m, alice, base) INTO j FROM messages m WHERE id = m1;
    PERFORM pg_temp.eq((j->>'reply_count')::bigint, 2, 'reply_count');

    -- Reactions: 👍 by alice (first), ❤️ by bob, 👍 by bob
    INSERT INTO reactions (message_id, user_id, emoji, created_at)
        VALUES (m1, alice, '👍', t0 + interval '60 s');
    WITH x AS (INSERT INTO reactions (message_id, user_id, emoji, created_at)
               VALUES (m1, bob, '❤️', t0 + interval '61 s') RETURNING *)
    SELECT parley_reaction_event(x, 'reaction.added', bob) INTO ev FROM x;
    PERFORM pg_temp.eq((ev->>'seq')::bigint, 7, 'reaction.added takes the next seq');
    PERFORM pg_temp.eq(pg_temp.keys(ev->'reaction'), 'created_at,emoji,id,message,user',
                       'reaction keys');
    PERFORM pg_temp.ok(ev->'reaction'->>'user' = bob::text AND ev->'reaction'->>'emoji' = '❤️'
                       AND ev->'reaction'->>'message' = m1::text
                       AND ev->'reaction'->>'created_at' = '2026-11-25T12:01:01.000Z',
                       'reaction json');
    INSERT INTO reactions (message_id, user_id, emoji, created_at)
        VALUES (m1, bob, '👍', t0 + interval '62 s');
    PERFORM pg_temp.fails(format(
        'INSERT INTO reactions (message_id, user_id, emoji) VALUES (%L, %L, %L)',
        m1, bob, '👍'), '23505', 'one reaction per user, message and emoji');
    SELECT parley_message_json(m, bob, base)->'reactions' INTO j FROM messages m WHERE id = m1;
    PERFORM pg_temp.eq(j, '[{"emoji": "👍", "count": 2, "me": true},
                            {"emoji": "❤️", "count": 1, "me": true}]', 'reactions (bob)');
    SELECT parley_message_json(m, alice, base)->'reactions' INTO j FROM messages m WHERE id = m1;
    PERFORM pg_temp.eq(j, '[{"emoji": "👍", "count": 2, "me": true},
                            {"emoji": "❤️", "count": 1, "me": false}]', 'reactions (alice)');
    SELECT parley_message_json(m, NULL, base)->'reactions' INTO j FROM messages m WHERE id = m1;
    PERFORM pg_temp.eq(j, '[{"emoji": "👍", "count": 2, "me": false},
                            {"emoji": "❤️", "count": 1, "me": false}]', 'reactions (nobody)');
    SELECT parley_user_json(u, NULL)->'activity'->>'reactions_given' INTO t
      FROM users u WHERE id = bob;
    PERFORM pg_temp.eq(t, '2', 'reactions_given');
    WITH x AS (DELETE FROM reactions WHERE message_id = m1 AND user_id = bob AND emoji = '❤️'
               RETURNING *)
    SELECT parley_reaction_event(x, 'reaction.removed', bob) INTO ev FROM x;
    PERFORM pg_temp.ok((ev->>'seq')::bigint = 8 AND ev->>'type' = 'reaction.removed',
                       'reaction.removed');
    SELECT parley_message_json(m, bob, base)->'reactions' INTO j FROM messages m WHERE id = m1;
    PERFORM pg_temp.eq(j, '[{"emoji": "👍", "count": 2, "me": true}]', 'reaction removed');

    -- Edit m1: history row, is_edited, updated_at follows, message.updated event
    INSERT INTO message_edits (message_id, content, edited_at)
        SELECT id, content, now() FROM messages WHERE id = m1;
    UPDATE messages SET content = 'hello there', is_edited = true, edited_at = now()
        WHERE id = m1;
    SELECT parley_message_event(m, 'message.updated', base, alice) INTO ev
        FROM messages m WHERE id = m1;
    PERFORM pg_temp.eq((ev->>'seq')::bigint, 9, 'message.updated takes the next seq');
    PERFORM pg_temp.eq((ev->'message'->>'seq')::bigint, 2, 'an edit keeps the message seq');
    PERFORM pg_temp.ok(ev->'message'->>'content' = 'hello there'
                       AND (ev->'message'->>'is_edited')::boolean
                       AND ev->'message'->>'edited_at' = parley_ts(now())
                       AND ev->'message'->>'updated_at' = parley_ts(now()),
                       'edited message json');
    SELECT parley_message_edit_json(e) INTO j FROM message_edits e WHERE message_id = m1;
    PERFORM pg_temp.eq(j, jsonb_build_object('id', j->'id', 'message', m1,
        'content', 'hello world', 'edited_at', parley_ts(now())), 'message edit json');
    UPDATE messages SET mentions_processed_at = now() WHERE id = m2;
    SELECT updated_at INTO r FROM messages WHERE id = m2;
    PERFORM pg_temp.ok(r.updated_at = t0 + interval '20 s',
                       'bookkeeping does not touch messages.updated_at');
    SELECT count(*) INTO n FROM messages
     WHERE room_id = room AND search @@ plainto_tsquery('simple', 'THERE');
    PERFORM pg_temp.eq(n, 1, 'full-text search follows edits, case-insensitively');

    -- Delete m4 (soft): a tombstone; it no longer counts as a reply
    WITH x AS (UPDATE messages SET is_deleted = true, content = '' WHERE id = m4 RETURNING *)
    SELECT parley_message_event(x, 'message.deleted', base, bob) INTO ev FROM x;
    PERFORM pg_temp.eq((ev->>'seq')::bigint, 10, 'message.deleted takes the next seq');
    j := ev->'message';
    PERFORM pg_temp.ok((j->>'is_deleted')::boolean AND j->>'content' = ''
                       AND j->'attachment' = 'null' AND j->'mentions' = '[]',
                       'tombstone json');
    SELECT parley_message_json(m, NULL, base)->'reply_count' INTO j FROM messages m WHERE id = m1;
    PERFORM pg_temp.eq(j, '1', 'deleted replies do not count');

    -- Pin m3
    WITH x AS (UPDATE messages SET is_pinned = true WHERE id = m3 RETURNING *)
    SELECT parley_message_event(x, 'message.pinned', base, alice) INTO ev FROM x;
    PERFORM pg_temp.ok((ev->>'seq')::bigint = 11 AND (ev->'message'->>'is_pinned')::boolean,
                       'message.pinned');

    -- Unread counts and receipts ------------------------------------------------
    -- messages: m1 alice s2, m2 bob s3, m3 carol s4, m4 bob s5 (deleted), m5 bob s6
    -- last_read_seq from own receipts: alice 2, bob 6, carol 4
    SELECT last_read_seq INTO n FROM room_participants WHERE room_id = room AND user_id = bob;
    PERFORM pg_temp.eq(n, 6, 'a sender reads up to their message');
    SELECT (parley_room_json(x, alice, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 3, 'alice unread: m2, m3, m5');
    SELECT (parley_room_json(x, carol, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 1, 'carol unread: m5 (m4 deleted)');
    SELECT (parley_room_json(x, bob, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 0, 'bob unread');
    SELECT (parley_room_json(x, dave, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 0, 'non-participant unread is 0');
    SELECT (parley_room_json(x, NULL, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 0, 'nobody unread is 0');

    -- alice reads m2 alone: newest read is seq 3
    INSERT INTO reads (message_id, user_id, room_id, read_at)
        VALUES (m2, alice, room, t0 + interval '70 s');
    SELECT (parley_room_json(x, alice, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 2, 'alice unread after reading m2');
    SELECT parley_read_json(x) INTO j FROM reads x WHERE message_id = m2 AND user_id = alice;
    PERFORM pg_temp.eq(j, jsonb_build_object('id', j->'id', 'message', m2, 'user', alice,
        'read_at', '2026-11-25T12:01:10.000Z'), 'read json');
    -- alice marks the room read up to m5: receipts for m3, m5 (m4 is deleted)
    n := parley_mark_read(room, alice, 6);
    PERFORM pg_temp.eq(n, 2, 'mark_read creates the missing receipts');
    n := parley_mark_read(room, alice, 6);
    PERFORM pg_temp.eq(n, 0, 'mark_read again creates none');
    SELECT (parley_room_json(x, alice, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 0, 'alice unread after mark_read');
    -- deleting her newest receipt makes m3 (seq 4) the newest read: m5 unread again
    DELETE FROM reads WHERE message_id = m5 AND user_id = alice;
    SELECT (parley_room_json(x, alice, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 1, 'alice unread after deleting her newest receipt');

    -- last_message and the room's other fields
    UPDATE rooms SET image_id = att WHERE id = room;
    SELECT parley_room_json(x, alice, base) INTO j FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(j->'last_message',
        (SELECT parley_message_json(m, alice, base) FROM messages m WHERE id = m5),
        'last_message is the newest by seq');
    PERFORM pg_temp.eq(j->>'image', base || '/api/messaging/attachments/' || att || '/download/',
                       'room image url');
    PERFORM pg_temp.ok((j->>'messages_count')::int = 5 AND (j->>'last_seq')::int = 11
                       AND j->>'last_activity' = '2026-11-25T12:00:50.000Z'
                       AND j->>'updated_at' = parley_ts(now()),
                       'room counters, and updated_at follows a visible change');

    -- Membership and room.updated events
    INSERT INTO room_participants (room_id, user_id) VALUES (room, dave);
    ev := parley_member_event(room, 'room.member_joined', dave, dave);
    PERFORM pg_temp.eq(ev - 'ts', jsonb_build_object('type', 'room.member_joined', 'room', room,
        'seq', 12, 'user', dave), 'room.member_joined');
    SELECT (parley_room_json(x, dave, base)->>'unread_count')::bigint INTO n FROM rooms x WHERE id = room;
    PERFORM pg_temp.eq(n, 4, 'a new member has everything unread');
    UPDATE rooms SET name = 'general-2' WHERE id = room;
    ev := parley_room_info_event(room, 'room.updated', base, alice);
    PERFORM pg_temp.ok((ev->>'seq')::bigint = 13 AND ev->'room_info'->>'name' = 'general-2'
                       AND (ev->'room_info'->>'last_seq')::bigint = 13, 'room.updated');
    s := parley_room_event(room, 'room.member_left', jsonb_build_object('user', dave), dave);
    PERFORM pg_temp.eq(s, 14, 'parley_room_event returns the seq');
    DELETE FROM room_participants WHERE room_id = room AND user_id = dave;

    -- The event log is gapless and consistent with the messages
    SELECT count(*), min(seq), max(seq) INTO r FROM room_events WHERE room_id = room;
    PERFORM pg_temp.ok(r.count = 14 AND r.min = 1 AND r.max = 14, 'events 1..14 without gaps');
    SELECT count(*) INTO n FROM messages m
      JOIN room_events e ON e.room_id = m.room_id AND e.seq = m.seq
     WHERE m.room_id = room AND e.type = 'message.new'
       AND e.payload->'message'->>'id' = m.id::text;
    PERFORM pg_temp.eq(n, 5, 'every message has its message.new at its seq');
    SELECT count(*) INTO n FROM room_events
     WHERE room_id = room AND (payload->>'seq')::bigint = seq AND payload->>'type' = type
       AND payload->>'room' = room::text;
    PERFORM pg_temp.eq(n, 14, 'stored payloads carry type, room and seq');
    PERFORM pg_temp.fails(format('SELECT parley_room_event(%L, %L, %L, NULL)',
                                 room, 'message.exploded', '{}'),
                          '23514', 'unknown event types are refused');
    PERFORM pg_temp.fails(format('SELECT parley_next_seq(%L)', gen_random_uuid()),
                          'P0002', 'next_seq of an unknown room');
    PERFORM pg_temp.eq((SELECT last_seq FROM rooms WHERE id = room), 14,
                       'failed events give their seq back (subtransaction)');

    -- Direct rooms: one per pair ------------------------------------------------
    INSERT INTO rooms (room_type, created_by, max_participants, direct_key)
        VALUES ('direct', alice, 2, parley_direct_key(alice, bob)) RETURNING id INTO dm;
    PERFORM pg_temp.fails(format(
        'INSERT INTO rooms (room_type, created_by, direct_key) VALUES (%L, %L, %L)',
        'direct', bob, parley_direct_key(bob, alice)), '23505', 'one direct room per pair');
    PERFORM pg_temp.fails(format(
        'INSERT INTO rooms (room_type, created_by, direct_key) VALUES (%L, %L, %L)',
        'group', bob, 'x'), '23514', 'direct_key only on direct rooms');
    PERFORM pg_temp.fails(format(
        'INSERT INTO rooms (room_type, created_by, max_participants) VALUES (%L, %L, 10001)',
        'group', bob), '23514', 'max_participants at most 10000');
    PERFORM pg_temp.fails(format(
        'INSERT INTO rooms (room_type, created_by) VALUES (%L, %L)', 'channel', bob),
        '23514', 'unknown room_type');

    -- Presence ----------------------------------------------------------------
    UPDATE presence SET status = 'invisible', custom_status = 'hiding', status_emoji = '🙈',
                        total_online_time = 42, last_seen = t0
     WHERE user_id = carol;
    SELECT parley_presence_json(p, alice) INTO j FROM presence p WHERE user_id = carol;
    PERFORM pg_temp.eq(j, jsonb_build_object('id', j->'id', 'user', carol, 'status', 'offline',
        'last_seen', '2026-11-25T12:00:00.000Z', 'custom_status', 'hiding',
        'status_emoji', '🙈', 'away_since', NULL, 'total_online_time', 42,
        'is_online', false), 'invisible shows as offline to others');
    SELECT parley_presence_json(p, carol) INTO j FROM presence p WHERE user_id = carol;
    PERFORM pg_temp.ok(j->>'status' = 'invisible' AND NOT (j->>'is_online')::boolean,
                       'invisible to oneself');
    UPDATE presence SET status = 'away', away_since = t0 WHERE user_id = bob;
    SELECT parley_presence_json(p, alice) INTO j FROM presence p WHERE user_id = bob;
    PERFORM pg_temp.ok(j->>'status' = 'away' AND (j->>'is_online')::boolean
                       AND j->>'away_since' = '2026-11-25T12:00:00.000Z', 'away is online');
    PERFORM pg_temp.fails(format('UPDATE presence SET custom_status = %L WHERE user_id = %L',
                                 repeat('x', 101), bob), '23514', 'custom_status <= 100');
    PERFORM pg_temp.fails(format('UPDATE presence SET status = %L WHERE user_id = %L',
                                 'gone', bob), '23514', 'unknown presence status');

    -- Notifications and settings ----------------------------------------------
    INSERT INTO notifications (user_id, kind, room_id, message_id, created_at)
        VALUES (alice, 'mention', room, m2, t0);
    INSERT INTO notifications (user_id, kind, room_id, message_id)
        VALUES (alice, 'mention', room, m2)
        ON CONFLICT (user_id, message_id, kind) WHERE message_id IS NOT NULL DO NOTHING;
    SELECT count(*) INTO n FROM notifications WHERE user_id = alice;
    PERFORM pg_temp.eq(n, 1, 'a mention notifies exactly once');
    INSERT INTO notifications (user_id, kind, title, text) VALUES (alice, 'system', 'Hi', 'Yo');
    INSERT INTO notifications (user_id, kind, title, text) VALUES (alice, 'system', 'Hi', 'Yo');
    SELECT parley_notification_json(x) INTO j FROM notifications x
     WHERE user_id = alice AND kind = 'mention';
    PERFORM pg_temp.eq(j, jsonb_build_object('id', j->'id', 'kind', 'mention', 'room', room,
        'message', m2, 'title', NULL, 'text', NULL, 'is_read', false,
        'created_at', '2026-11-25T12:00:00.000Z', 'emailed_at', NULL), 'notification json');
    UPDATE notification_settings SET muted_rooms = ARRAY[room], mentions_only = true
     WHERE user_id = alice;
    SELECT parley_settings_json(x) INTO j FROM notification_settings x WHERE user_id = alice;
    PERFORM pg_temp.eq(j, jsonb_build_object('email_enabled', true, 'push_enabled', true,
        'mentions_only', true, 'muted_rooms', jsonb_build_array(room),
        'email_delay_minutes', 15), 'settings json');
    PERFORM pg_temp.fails(format(
        'UPDATE notification_settings SET email_delay_minutes = 1441 WHERE user_id = %L', alice),
        '23514', 'email_delay_minutes <= 1440');

    -- Schedules and task runs -------------------------------------------------
    SELECT string_agg(name || '=' || interval_seconds, ' ' ORDER BY interval_seconds, name)
      INTO t FROM schedules;
    PERFORM pg_temp.eq(t,
        'cleanup-expired-typing-indicators=30 cleanup-expired-presence=300 '
        'sync-presence-to-database=600 process-message-mentions=900 '
        'send-message-notification-emails=900', 'the five schedules are seeded');
    UPDATE schedules SET last_run_at = t0, next_run_at = t0 + interval '30 s'
     WHERE name = 'cleanup-expired-typing-indicators';
    SELECT parley_schedule_json(x) INTO j FROM schedules x
     WHERE name = 'cleanup-expired-typing-indicators';
    PERFORM pg_temp.eq(j, jsonb_build_object('name', 'cleanup-expired-typing-indicators',
        'interval_seconds', 30, 'enabled', true, 'last_run_at', '2026-11-25T12:00:00.000Z',
        'next_run_at', '2026-11-25T12:00:30.000Z'), 'schedule json');
    INSERT INTO task_runs (schedule, started_at, finished_at, status, items, claimed_by)
        VALUES ('process-message-mentions', t0, t0 + interval '1.5 s', 'ok', 3, 'check-node');
    SELECT parley_task_run_json(x) INTO j FROM task_runs x WHERE claimed_by = 'check-node';
    PERFORM pg_temp.eq(j, jsonb_build_object('id', j->'id', 'schedule', 'process-message-mentions',
        'started_at', '2026-11-25T12:00:00.000Z', 'finished_at', '2026-11-25T12:00:01.500Z',
        'status', 'ok', 'items', 3, 'error', NULL), 'task run json');
    PERFORM pg_temp.fails('UPDATE schedules SET interval_seconds = 0', '23514',
                          'interval_seconds > 0');

    -- Group commit: reserve a block of seqs, insert a batch, events in one go --
    INSERT INTO rooms (room_type, created_by) VALUES ('group', bob) RETURNING id INTO room2;
    INSERT INTO room_participants (room_id, user_id, is_admin) VALUES (room2, bob, true);
    PERFORM parley_room_info_event(room2, 'room.created', base, bob);
    WITH f AS (SELECT parley_reserve_seqs(room2, 3) AS first),
         m AS (INSERT INTO messages (room_id, seq, sender_id, content)
               SELECT room2, f.first + b.ord - 1, bob, b.content
                 FROM f, unnest(ARRAY['one', 'two', 'three']) WITH ORDINALITY b(content, ord)
               RETURNING *),
         x AS (INSERT INTO reads (message_id, user_id, room_id)
               SELECT id, sender_id, room_id FROM m)
    SELECT jsonb_agg(e ORDER BY (e->>'seq')::int) INTO j
      FROM parley_message_new_events((SELECT array_agg(m::messages ORDER BY m.seq) FROM m),
                                     base) AS e;
    PERFORM pg_temp.eq(jsonb_path_query_array(j, '$[*].seq'), '[2, 3, 4]', 'batch event seqs');
    PERFORM pg_temp.eq(jsonb_path_query_array(j, '$[*].message.content'),
                       '["one", "two", "three"]', 'batch event messages');
    PERFORM pg_temp.eq(jsonb_path_query_array(j, '$[*].message.seq'), '[2, 3, 4]',
                       'batch message seqs');
    PERFORM pg_temp.ok(j->0->>'type' = 'message.new' AND j->0->>'room' = room2::text
                       AND j->0->>'ts' ~ ts_re, 'batch event heads');
    SELECT last_seq, messages_count INTO r FROM rooms WHERE id = room2;
    PERFORM pg_temp.ok(r.last_seq = 4 AND r.messages_count = 3, 'batch counters');
    PERFORM pg_temp.eq((SELECT last_read_seq FROM room_participants
                         WHERE room_id = room2 AND user_id = bob), 4, 'batch receipts');
    PERFORM pg_temp.eq((SELECT string_agg(seq::text, ',' ORDER BY seq) FROM room_events
                         WHERE room_id = room2), '1,2,3,4', 'batch event log');
    PERFORM pg_temp.fails(format('SELECT parley_reserve_seqs(%L, 0)', room2), '22023',
                          'reserve_seqs needs a positive count');

    -- Deleting a room takes everything with it --------------------------------
    -- (a forward of one of its messages from another room survives, unlinked)
    WITH m AS (INSERT INTO messages (room_id, seq, sender_id, content, forward_from)
               VALUES (room2, parley_next_seq(room2), bob, 'fwd', m3) RETURNING *)
    SELECT m.id INTO m6 FROM m;
    INSERT INTO email_cursors (user_id, room_id, last_emailed_seq) VALUES (alice, room, 6);
    DELETE FROM rooms WHERE id = room;
    PERFORM pg_temp.eq((SELECT count(*) FROM messages WHERE room_id = room), 0, 'messages go');
    PERFORM pg_temp.eq((SELECT count(*) FROM room_events WHERE room_id = room), 0, 'events go');
    PERFORM pg_temp.eq((SELECT count(*) FROM room_participants WHERE room_id = room), 0,
                       'participants go');
    PERFORM pg_temp.eq((SELECT count(*) FROM reads WHERE room_id = room), 0, 'receipts go');
    PERFORM pg_temp.eq((SELECT count(*) FROM reactions WHERE message_id = m1), 0, 'reactions go');
    PERFORM pg_temp.eq((SELECT count(*) FROM message_edits WHERE message_id = m1), 0, 'edits go');
    PERFORM pg_temp.eq((SELECT count(*) FROM notifications WHERE user_id = alice), 2,
                       'room notifications go, system ones stay');
    PERFORM pg_temp.eq((SELECT count(*) FROM email_cursors WHERE room_id = room), 0, 'email cursors go');
    PERFORM pg_temp.ok((SELECT forward_from IS NULL FROM messages WHERE id = m6),
                       'a forward outlives its original');
    PERFORM pg_temp.eq((SELECT count(*) FROM attachments WHERE id IN (att, att2)), 2, 'attachments stay');

    RAISE NOTICE 'check_schema: ok';
END
$check$;

ROLLBACK;
