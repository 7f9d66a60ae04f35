-- schema/migrations/006_live_presence.sql — live presence from WebSocket
-- connections (API.md §2.5, §3).
--
-- online_since: when the user's first connection opened (NULL while no
-- connection is open). When the last one has been gone for the grace period
-- the user goes offline and the time since online_since is added to
-- total_online_time, so the total counts connected time exactly once.
ALTER TABLE presence ADD COLUMN online_since timestamptz;
