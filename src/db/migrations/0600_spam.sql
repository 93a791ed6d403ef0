-- Spam filtering overrides (issue #14): per domain and per mailbox; a NULL threshold inherits
-- (mailbox → domain → [spam] in the config). mode 'off' = never scanned, always INBOX.
CREATE TABLE spam_settings (
  scope TEXT NOT NULL CHECK (scope IN ('domain', 'mailbox')),
  target_id TEXT NOT NULL,            -- domains.id or mailboxes.id
  mode TEXT CHECK (mode IN ('on', 'off')),
  reject REAL,
  junk REAL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (scope, target_id)
);

-- Sender domains seen with a DMARC pass (greylisting exemption for senders seen before).
CREATE TABLE spam_seen_domains (
  domain TEXT PRIMARY KEY,
  first_seen TEXT NOT NULL,
  last_seen TEXT NOT NULL
);
