-- tests/sql/bench_json_compare.sql — renders everything bench_json_data.sql
-- loaded, for every viewer, plus the events, notifications and group-commit
-- events of a few writes (rolled back), one rendering a line. Events are
-- printed without their `ts` (now()) and notifications without id and
-- created_at (random, now()). tests/sql/bench_json.sh runs it in a database
-- with and one without 010_fast_json.sql and compares the outputs byte for
-- byte.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only on
CREATE TEMP VIEW viewers AS SELECT id FROM users UNION ALL SELECT NULL;
SELECT 'message', m.id, v.id, b.base, parley_message_json(m, v.id, b.base)
  FROM messages m, viewers v, (VALUES ('http://b'), (NULL)) b(base)
 ORDER BY m.id, v.id NULLS FIRST, b.base NULLS FIRST;
SELECT 'room', r.id, v.id, parley_room_json(r, v.id, 'http://b')
  FROM rooms r, viewers v ORDER BY r.id, v.id NULLS FIRST;
SELECT 'user', u.id, v.id, parley_user_json(u, v.id)
  FROM users u, viewers v ORDER BY u.id, v.id NULLS FIRST;
SELECT 'attachment', parley_attachment_json(a, 'http://b') FROM attachments a ORDER BY a.id;
SELECT 'reaction', parley_reaction_json(r) FROM reactions r ORDER BY r.id;
SELECT 'read', parley_read_json(r) FROM reads r ORDER BY r.id;
SELECT 'presence', p.user_id, v.id, parley_presence_json(p, v.id) - 'id'
  FROM presence p, viewers v ORDER BY p.user_id, v.id NULLS FIRST;

BEGIN;
UPDATE notification_settings SET mentions_only = true WHERE user_id = md5('bj_5')::uuid;
-- two new messages (one with an attachment), as messages.create inserts them
WITH m AS (INSERT INTO messages (id, room_id, seq, sender_id, content, message_type,
                                 attachment_id, mentions, created_at, updated_at)
           SELECT md5('cmp/' || i)::uuid, md5('bench-list')::uuid,
                  parley_next_seq(md5('bench-list')::uuid), md5('bj_3')::uuid, 'hi ' || i,
                  CASE WHEN i = 1 THEN 'image' ELSE 'text' END,
                  CASE WHEN i = 1 THEN md5('cat')::uuid END,
                  ARRAY[md5('bj_4')::uuid, md5('bj_5')::uuid, md5('bj_3')::uuid],
                  '2026-11-25 13:00:00+00', '2026-11-25 13:00:00+00'
             FROM generate_series(1, 2) i
           RETURNING *)
SELECT 'message.new', parley_message_event(m, 'message.new', 'http://b', m.sender_id) - 'ts'
  FROM m ORDER BY m.seq;
SELECT 'notify', n.user_id, n.notification - 'id' - 'created_at', n.push
  FROM parley_notify_message(md5('cmp/1')::uuid) n ORDER BY n.user_id;
SELECT 'notify again', count(*) FROM parley_notify_message(md5('cmp/1')::uuid);
-- every other message event type on every message of the list room
SELECT t, parley_message_event(m, t, 'http://b', md5('bj_1')::uuid) - 'ts'
  FROM messages m, unnest(ARRAY['message.updated', 'message.pinned']) t
 WHERE m.room_id = md5('bench-list')::uuid ORDER BY m.seq, t;
-- group commit of the room's messages as new
DELETE FROM room_events WHERE room_id = md5('bench-list')::uuid AND type = 'message.new';
SELECT 'new_events', e - 'ts'
  FROM parley_message_new_events(ARRAY(SELECT m FROM messages m
                                         WHERE m.room_id = md5('bench-list')::uuid
                                           AND m.client_id IS NULL
                                         ORDER BY m.seq), 'http://b') e
 ORDER BY (e->>'seq')::bigint;
SELECT 'room_events', room_id, seq, type, actor_id, payload - 'ts'
  FROM room_events WHERE room_id = md5('bench-list')::uuid ORDER BY seq;
ROLLBACK;
