-- Mailbox self-service: forwarding per mailbox (issue #17 item 3). Routing (src/routing/resolve.ts)
-- reads it: external targets leave through the same SRS + ARC path as alias forwards.
CREATE TABLE mailbox_forwarding (
  mailbox_id TEXT PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
  targets TEXT NOT NULL,                -- JSON array of addresses (lower-case domain)
  keep_copy INTEGER NOT NULL DEFAULT 1, -- 1: a copy stays in the mailbox's INBOX too
  updated_at TEXT NOT NULL
);
