-- Device (app) passwords (issue #17 item 4). Only a SHA-256 hash of each password is stored (the
-- passwords are 140-bit random strings: see src/auth/app-passwords.ts). Removed with the mailbox.
CREATE TABLE app_passwords (
  id TEXT PRIMARY KEY,
  mailbox_id TEXT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,            -- lower-case hex SHA-256 of the password
  created_at TEXT NOT NULL,
  last_used_at TEXT,                    -- updated at most once a minute
  last_used_ip TEXT,
  last_used_protocol TEXT
);
CREATE INDEX app_passwords_mailbox ON app_passwords (mailbox_id);

-- Mailboxes whose main password is refused on IMAP, ManageSieve and SMTP submission.
CREATE TABLE app_password_required (
  mailbox_id TEXT PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE
);
