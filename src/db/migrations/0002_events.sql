-- The message tracking log, read by the API's /events and by webhooks.
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL,                   -- message.received, message.queued, message.delivered, ...
  mailbox_id TEXT,                      -- the mailbox concerned, when there is one
  domain TEXT,
  message_id TEXT,
  data TEXT NOT NULL,                   -- JSON
  created_at TEXT NOT NULL
);
CREATE INDEX events_type_time ON events(type, id);
CREATE INDEX events_mailbox ON events(mailbox_id, id);
