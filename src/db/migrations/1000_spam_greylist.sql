-- Greylisting per domain and per mailbox (issue #14 item 2): a threshold and an on/off switch;
-- NULL inherits (mailbox → domain → [spam] greylist / greylisting in the config).
ALTER TABLE spam_settings ADD COLUMN greylist REAL;
ALTER TABLE spam_settings ADD COLUMN greylisting TEXT CHECK (greylisting IN ('on', 'off'));
