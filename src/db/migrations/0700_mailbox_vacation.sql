-- Mailbox self-service: the vacation reply set through the API/CLI (the Sieve script Dovecot runs
-- is generated from it under the mailbox's home). Removed with the mailbox.
CREATE TABLE mailbox_vacations (
  mailbox_id TEXT PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
  settings TEXT NOT NULL,               -- JSON: the validated vacation object
  updated_at TEXT NOT NULL
);
