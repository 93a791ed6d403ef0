-- What our MX concluded about each message it delivered locally, keyed by the X-Letterbox-Id header
-- it adds at acceptance (src/verdicts/store.ts). The messages API serves these instead of reading
-- headers. Times: ms since the epoch.
CREATE TABLE message_verdicts (
  id TEXT PRIMARY KEY,                  -- the X-Letterbox-Id value
  mailbox_ids TEXT NOT NULL DEFAULT '[]', -- JSON array: the mailboxes it was delivered to (a copy read elsewhere is not trusted)
  auth TEXT NOT NULL,                   -- JSON AuthVerdicts: spf, dkim, dmarc, arc with their domains
  spam TEXT,                            -- JSON spam verdict (filled by the spam scan), NULL when none
  created_at INTEGER NOT NULL
);
CREATE INDEX message_verdicts_created ON message_verdicts(created_at);
