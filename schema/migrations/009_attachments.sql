-- schema/migrations/009_attachments.sql — media (API.md §2.7): revoking an
-- attachment when the last message carrying it is deleted, and purging its
-- bytes afterwards.
--
-- "Deleting a message removes access to its attachment": a message delete
-- is soft (is_deleted, attachment_id set to NULL) and a room delete removes
-- its messages. When no live message carries the attachment any more, it
-- is revoked: 404 for everyone, its uploader included, and it can no longer
-- be attached to a new message or used as a room image. An attachment that
-- was never posted stays its uploader's. A revoked attachment's files are
-- removed by the media actor (actors/media.c), which then sets purged_at;
-- the row stays (it is history: a room image may still point at it).
ALTER TABLE attachments ADD COLUMN revoked_at timestamptz;
ALTER TABLE attachments ADD COLUMN purged_at  timestamptz;

-- The purge queue: revoked, files not yet removed.
CREATE INDEX attachments_purge_idx ON attachments (revoked_at)
    WHERE revoked_at IS NOT NULL AND purged_at IS NULL;

-- Revokes attachment `p_id` unless a live message still carries it.
CREATE FUNCTION parley_attachment_revoke(p_id uuid) RETURNS void
    LANGUAGE sql AS $$
    UPDATE attachments a SET revoked_at = now()
     WHERE a.id = p_id AND a.revoked_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM messages m
                        WHERE m.attachment_id = p_id AND NOT m.is_deleted)
$$;

-- A message losing its attachment (soft delete) or going away (room
-- delete): revoke the attachment when that was its last live message.
CREATE FUNCTION parley_attachment_revoke_trigger() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.is_deleted
       OR NEW.attachment_id IS DISTINCT FROM OLD.attachment_id THEN
        PERFORM parley_attachment_revoke(OLD.attachment_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_attachment_revoke
    AFTER UPDATE OF is_deleted, attachment_id ON messages
    FOR EACH ROW WHEN (OLD.attachment_id IS NOT NULL)
    EXECUTE FUNCTION parley_attachment_revoke_trigger();
CREATE TRIGGER messages_attachment_revoke_delete
    AFTER DELETE ON messages
    FOR EACH ROW WHEN (OLD.attachment_id IS NOT NULL)
    EXECUTE FUNCTION parley_attachment_revoke_trigger();

-- Who may see attachment `a` (GET attachments/{id}/ and its bytes): its
-- uploader; a participant of a room where a live message carries it; and
-- whoever can see a room that uses it as its image (a room's `image` URL is
-- shown to public-room visitors too). Never once revoked.
CREATE FUNCTION parley_attachment_visible(a attachments, viewer uuid) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT a.revoked_at IS NULL AND (
           a.uploader_id = viewer
        OR EXISTS (SELECT 1 FROM messages m
                     JOIN room_participants p ON p.room_id = m.room_id
                                             AND p.user_id = viewer
                    WHERE m.attachment_id = a.id AND NOT m.is_deleted)
        OR EXISTS (SELECT 1 FROM rooms r
                     LEFT JOIN room_participants p ON p.room_id = r.id
                                                  AND p.user_id = viewer
                    WHERE r.image_id = a.id
                      AND (p.user_id IS NOT NULL
                           OR (NOT r.is_private AND r.room_type = 'group'))))
$$;
