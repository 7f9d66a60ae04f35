-- tests/sql/bench_json_data.sql — the data tests/sql/bench_json.sh measures
-- on (committed, ANALYZEd). Not a test. Deterministic: every id is
-- md5(<name>)::uuid and every time is t0 + something, so two databases
-- loaded with it hold the same rows and must render the same JSON.
--   users  bj_0 .. bj_9, participants of every room below
--   rooms  bench-list: 60 messages, like bench/rest.sh's list room but with
--                      replies, reactions (1–3 emojis, up to 6 users each),
--                      an attachment, a location, mentions, an edited, a
--                      pinned and a deleted message (with replies and
--                      reactions), and read receipts;
--          bench-post: 60 plain messages (bench/rest.sh's list room; the
--                      post benchmark's room);
--          bench-filler: 3 000 messages, every third with 1–2 reactions, so
--                      tables and indexes are not toy-sized.
\set ON_ERROR_STOP 1
BEGIN;
CREATE TEMP TABLE t0 AS SELECT timestamptz '2026-11-25 12:00:00.123456+00' AS t0;
INSERT INTO users (id, username, display_name, email, password_hash, date_joined)
SELECT md5('bj_' || i)::uuid, 'bj_' || i, 'User ' || i, 'bj' || i || '@example.org', 'x', t0
  FROM generate_series(0, 9) i, t0;
INSERT INTO attachments (id, uploader_id, name, mime, size, storage_path, width, height,
                         thumb_path, created_at)
SELECT md5('cat')::uuid, md5('bj_0')::uuid, 'cat.png', 'image/png', 1234, 'media/cat.png',
       640, 480, 'media/cat.thumb.jpg', t0
  FROM t0;
INSERT INTO rooms (id, name, room_type, created_by, created_at, updated_at, last_activity)
SELECT md5(n)::uuid, n, 'group', md5('bj_0')::uuid, t0, t0, t0
  FROM unnest(ARRAY['bench-list', 'bench-post', 'bench-filler']) n, t0;
INSERT INTO room_participants (room_id, user_id, is_admin, joined_at)
SELECT r.id, u.id, u.username = 'bj_0', t0 + (substr(u.username, 4)::int * interval '1 s')
  FROM rooms r, users u, t0 WHERE r.name LIKE 'bench-%' AND u.username LIKE 'bj\_%';
DO $$ BEGIN
    PERFORM parley_room_info_event(id, 'room.created', 'http://h', created_by)
       FROM rooms WHERE name LIKE 'bench-%' ORDER BY id;
END $$;

DO $$
DECLARE
    t0    timestamptz := (SELECT t0 FROM t0);
    users uuid[] := ARRAY(SELECT id FROM users WHERE username LIKE 'bj\_%' ORDER BY username);
    att   uuid := md5('cat')::uuid;
    room  uuid;
    rname text;
    ids   uuid[];
    mid   uuid;
    i     int;
    k     int;
BEGIN
    -- bench-list
    room := md5('bench-list')::uuid;
    ids := '{}';
    FOR i IN 1 .. 60 LOOP
        WITH m AS (
            INSERT INTO messages (id, room_id, seq, sender_id, content, message_type,
                                  attachment_id, latitude, longitude, reply_to, mentions,
                                  client_id, created_at, updated_at)
            VALUES (md5('bench-list/' || i)::uuid, room, parley_next_seq(room),
                    users[1 + i % 10],
                    CASE WHEN i = 7 THEN '' ELSE 'message number ' || i || ' @bj_' || (i + 3) % 10 END,
                    CASE WHEN i = 10 THEN 'image' WHEN i = 20 THEN 'location' ELSE 'text' END,
                    CASE WHEN i IN (10, 45) THEN att END,
                    CASE WHEN i = 20 THEN 48.85 END, CASE WHEN i = 20 THEN 2.35 END,
                    CASE WHEN i % 3 = 0 AND i > 3 THEN ids[i - 3] END,
                    CASE WHEN i % 4 = 0 THEN ARRAY[users[1 + (i + 3) % 10]] ELSE '{}' END,
                    'c-' || i, t0 + i * interval '1 s', t0 + i * interval '1 s')
            RETURNING *)
        SELECT m.id INTO mid FROM m, LATERAL parley_message_event(m, 'message.new', 'http://h',
                                                                  m.sender_id) e;
        INSERT INTO reads (id, message_id, user_id, room_id, read_at)
            VALUES (md5('read/' || mid)::uuid, mid, users[1 + i % 10], room, t0);
        ids := ids || mid;
    END LOOP;
    -- reactions on every other message: 1–3 emojis, up to 6 users
    FOR i IN 1 .. 60 BY 2 LOOP
        FOR k IN 0 .. (i % 6) LOOP
            INSERT INTO reactions (id, message_id, user_id, emoji, created_at)
            VALUES (md5('reaction/' || i || '/' || k)::uuid, ids[i], users[1 + (i + k) % 10],
                    (ARRAY['👍', '❤️', '😂'])[1 + k % 3], t0 + (100 + k) * interval '1 s');
        END LOOP;
    END LOOP;
    UPDATE messages SET content = 'edited', is_edited = true, edited_at = t0 + interval '200 s',
                        updated_at = t0 + interval '200 s'
     WHERE id = ids[50];
    UPDATE messages SET is_deleted = true, content = '', attachment_id = NULL,
                        updated_at = t0 + interval '201 s'
     WHERE id = ids[45];
    UPDATE messages SET is_pinned = true, updated_at = t0 + interval '202 s' WHERE id = ids[55];
    INSERT INTO reads (id, message_id, user_id, room_id, read_at)
    SELECT md5('read/' || id || '/' || users[2])::uuid, id, users[2], room, t0
      FROM messages WHERE room_id = room AND seq <= 40 AND NOT is_deleted
    ON CONFLICT (message_id, user_id) DO NOTHING;

    -- bench-post and bench-filler: plain messages
    FOR room, rname, k IN SELECT id, name, CASE name WHEN 'bench-post' THEN 60 ELSE 3000 END
                            FROM rooms WHERE name IN ('bench-post', 'bench-filler') ORDER BY name LOOP
        FOR i IN 1 .. k LOOP
            WITH m AS (
                INSERT INTO messages (id, room_id, seq, sender_id, content, created_at,
                                      updated_at)
                VALUES (md5(rname || '/' || i)::uuid, room, parley_next_seq(room),
                        users[1 + i % 10], 'filler ' || i, t0 + i * interval '1 ms',
                        t0 + i * interval '1 ms')
                RETURNING *)
            SELECT m.id INTO mid FROM m, LATERAL parley_message_event(m, 'message.new',
                                                                      'http://h', m.sender_id) e;
            INSERT INTO reads (id, message_id, user_id, room_id, read_at)
                VALUES (md5('read/' || mid)::uuid, mid, users[1 + i % 10], room, t0);
            IF k = 3000 AND i % 3 = 0 THEN   -- the filler's reactions
                INSERT INTO reactions (id, message_id, user_id, emoji, created_at)
                SELECT md5('reaction/' || mid || '/' || j)::uuid, mid, users[1 + (i + j) % 10],
                       '👍', t0
                  FROM generate_series(0, i % 2) j;
            END IF;
        END LOOP;
    END LOOP;
END $$;
COMMIT;
VACUUM ANALYZE;
