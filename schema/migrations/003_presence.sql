-- schema/migrations/003_presence.sql — the rules of a presence change, in
-- one place, for every path that changes a presence record: REST
-- (presence/me/, presence/{id}/, DELETE resets), and later the WebSocket and
-- ZeroMQ `presence.set` commands and the Redis -> table sync.
--
-- parley_presence_set(user, status, custom_status, status_emoji) updates the
-- user's record; a NULL argument keeps that field. The caller validates
-- input first (status among the five, custom_status <= 100 characters: the
-- table's CHECKs are the backstop). Rules:
--   * away_since: when the status becomes `away` (kept while it stays
--     away), NULL for any other status;
--   * last_seen (presence and users.last_seen, the user's activity): set to
--     now() when the user goes from a visible online state (online, away,
--     busy) to offline or invisible — invisible looks offline to others, so
--     they see when the user was last around;
--   * updated_at: always touched.
-- Returns the updated row, or no row when the user has no presence record.
-- total_online_time is not maintained here: it needs the moment the user
-- came online, which only live presence (Redis) knows.

CREATE FUNCTION parley_presence_set(p_user uuid, p_status text, p_custom text,
                                    p_emoji text)
    RETURNS SETOF presence
    LANGUAGE plpgsql AS $$
DECLARE
    p       presence;
    old     text;
BEGIN
    SELECT status INTO old FROM presence WHERE user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE presence SET
        status        = coalesce(p_status, status),
        custom_status = coalesce(p_custom, custom_status),
        status_emoji  = coalesce(p_emoji, status_emoji),
        away_since    = CASE WHEN coalesce(p_status, status) <> 'away' THEN NULL
                             WHEN status = 'away' THEN coalesce(away_since, now())
                             ELSE now() END,
        last_seen     = CASE WHEN coalesce(p_status, status) IN ('offline', 'invisible')
                                  AND status IN ('online', 'away', 'busy')
                             THEN now() ELSE last_seen END,
        updated_at    = now()
     WHERE user_id = p_user
    RETURNING * INTO p;
    IF old IN ('online', 'away', 'busy') AND p.status IN ('offline', 'invisible') THEN
        UPDATE users SET last_seen = p.last_seen WHERE id = p_user;
    END IF;
    RETURN NEXT p;
END $$;
