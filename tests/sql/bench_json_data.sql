-- tests/sql/bench_json_data.sql — the data tests/sql/bench_json.sh measures
-- on (committed, ANALYZEd). Not a test. Deterministic except for ids.
--   users  bj_0 .. bj_9, participants of every room below
--   rooms  bench-list: 60 messages, like bench/rest.sh's list room but with
--                      replies, reactions (1–3 emojis, up to 6 users each),
--                      an attachment, a location, mentions, an edited and a
--                      deleted message, and read receipts;
--          bench-post: 60 plain messages (the post benchmark's room);
--          bench-filler: 3 000 messages, every third with 1–2 reactions, so
--                      tables and indexes are not toy-sized.
\set ON_ERROR_STOP 1
BEGIN;
INSERT INTO users (username, display_name, email, password_hash)
SELECT 'bj_' || i, 'User ' || i, 'bj' || i || '@example.org', 'x'
  FROM generate_series(0, 9) i;
INSERT INTO attachments (uploader_id, name, mime, size, storage_path, width, height, thumb_path)
SELECT id, 'cat.png', 'image/png', 1234, 'media/cat.png', 640, 480, 'media/cat.thumb.jpg'
  FROM users WHERE username = 'bj_0';
INSERT INTO rooms (name, room_type, created_by)
SELECT n, 'group', (SELECT id FROM users WHERE username = 'bj_0')
  FROM unnest(ARRAY['bench-list', 'bench-post', 'bench-filler']) n;
INSERT INTO room_participants (room_id, user_id, is_admin, joined_at)
SELECT r.id, u.id, u.username = 'bj_0', now() + (substr(u.username, 4)::int * interval '1 s')
  FROM rooms r, users u WHERE r.name LIKE 'bench-%' AND u.username LIKE 'bj\_%';
DO $$ BEGIN
    PERFORM parley_room_info_event(id, 'room.created', 'http://h', created_by)
       FROM rooms WHERE name LIKE 'bench-%' ORDER BY id;
END $$;

DO $$
DECLARE
    users uuid[] := ARRAY(SELECT id FROM users WHERE username LIKE 'bj\_%' ORDER BY username);
    att   uuid := (SELECT id FROM attachments WHERE storage_path = 'media/cat.png');
    room  uuid;
    ids   uuid[];
    mid   uuid;
    i     int;
    k     int;
BEGIN
    -- bench-list
    room := (SELECT id FROM rooms WHERE name = 'bench-list');
    ids := '{}';
    FOR i IN 1 .. 60 LOOP
        WITH m AS (
            INSERT INTO messages (room_id, seq, sender_id, content, message_type,
                                  attachment_id, latitude, longitude, reply_to, mentions,
                                  client_id)
            VALUES (room, parley_next_seq(room), users[1 + i % 10],
                    CASE WHEN i = 7 THEN '' ELSE 'message number ' || i || ' @bj_' || (i + 3) % 10 END,
                    CASE WHEN i = 10 THEN 'image' WHEN i = 20 THEN 'location' ELSE 'text' END,
                    CASE WHEN i IN (10, 45) THEN att END,
                    CASE WHEN i = 20 THEN 48.85 END, CASE WHEN i = 20 THEN 2.35 END,
                    CASE WHEN i % 3 = 0 AND i > 3 THEN ids[i - 3] END,
                    CASE WHEN i % 4 = 0 THEN ARRAY[users[1 + (i + 3) % 10]] ELSE '{}' END,
                    'c-' || i)
            RETURNING *)
        SELECT m.id INTO mid FROM m, LATERAL parley_message_event(m, 'message.new', 'http://h',
                                                                  m.sender_id) e;
        INSERT INTO reads (message_id, user_id, room_id) VALUES (mid, users[1 + i % 10], room);
        ids := ids || mid;
    END LOOP;
    -- reactions on every other message: 1–3 emojis, up to 6 users
    FOR i IN 1 .. 60 BY 2 LOOP
        FOR k IN 0 .. (i % 6) LOOP
            INSERT INTO reactions (message_id, user_id, emoji, created_at)
            VALUES (ids[i], users[1 + (i + k) % 10],
                    (ARRAY['👍', '❤️', '😂'])[1 + k % 3], now() + k * interval '1 s');
        END LOOP;
    END LOOP;
    UPDATE messages SET content = 'edited', is_edited = true, edited_at = now() WHERE id = ids[50];
    UPDATE messages SET is_deleted = true, content = '', attachment_id = NULL WHERE id = ids[45];
    UPDATE messages SET is_pinned = true WHERE id = ids[55];
    PERFORM parley_mark_read(room, users[2], 40);

    -- bench-post and bench-filler: plain messages
    FOR room, k IN SELECT id, CASE name WHEN 'bench-post' THEN 60 ELSE 3000 END
                     FROM rooms WHERE name IN ('bench-post', 'bench-filler') LOOP
        FOR i IN 1 .. k LOOP
            WITH m AS (
                INSERT INTO messages (room_id, seq, sender_id, content)
                VALUES (room, parley_next_seq(room), users[1 + i % 10], 'filler ' || i)
                RETURNING *)
            SELECT m.id INTO mid FROM m, LATERAL parley_message_event(m, 'message.new',
                                                                      'http://h', m.sender_id) e;
            INSERT INTO reads (message_id, user_id, room_id)
                VALUES (mid, users[1 + i % 10], room);
            IF k = 3000 AND i % 3 = 0 THEN   -- the filler's reactions
                INSERT INTO reactions (message_id, user_id, emoji)
                SELECT mid, users[1 + (i + j) % 10], '👍' FROM generate_series(0, i % 2) j;
            END IF;
        END LOOP;
    END LOOP;
END $$;
COMMIT;
VACUUM ANALYZE;
