-- Outbound queue, delivery attempts, suppressions and sending caps (Sending issue).
-- Times in this file are integers: milliseconds since the epoch (the scheduler compares them).

-- One row per accepted outbound message; the body is the spool file spool_id.
CREATE TABLE outbound_messages (
  id TEXT PRIMARY KEY,                  -- msg_...
  spool_id TEXT,                        -- NULL for sandbox messages (nothing stored)
  size INTEGER NOT NULL,
  mail_from TEXT NOT NULL,              -- '' = null sender
  mailbox_id TEXT,                      -- sender mailbox (caps, events); NULL for forwards and DSNs
  sending_domain TEXT,                  -- chooses source IP / EHLO; suppression list owner
  message_id TEXT,                      -- Message-ID header value
  origin TEXT NOT NULL,                 -- submission | api | forward | dsn
  sandbox INTEGER NOT NULL DEFAULT 0,
  pending INTEGER NOT NULL,             -- recipients not final yet; the spool file is removed at 0
  created_at INTEGER NOT NULL
);

-- One row per recipient.
CREATE TABLE outbound_queue (
  id TEXT PRIMARY KEY,                  -- q_...
  message_id TEXT NOT NULL REFERENCES outbound_messages(id) ON DELETE CASCADE,
  recipient TEXT NOT NULL,
  domain TEXT NOT NULL,                 -- recipient domain (A-label)
  status TEXT NOT NULL CHECK (status IN ('queued', 'inflight', 'delivered', 'bounced', 'cancelled')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,              -- NULL unless queued
  last_code INTEGER,
  last_reply TEXT,
  delay_notified INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
-- The scheduler only ever reads due rows through this partial index (never a full scan).
CREATE INDEX outbound_queue_due ON outbound_queue(next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbound_queue_inflight ON outbound_queue(status) WHERE status = 'inflight';
CREATE INDEX outbound_queue_message ON outbound_queue(message_id);
CREATE INDEX outbound_queue_domain ON outbound_queue(domain, status);
CREATE INDEX outbound_queue_created ON outbound_queue(created_at);

-- Every delivery attempt, per recipient.
CREATE TABLE outbound_attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  queue_id TEXT NOT NULL REFERENCES outbound_queue(id) ON DELETE CASCADE,
  at INTEGER NOT NULL,
  mx TEXT,                              -- MX host name (or 'lmtp', 'sandbox', smarthost)
  ip TEXT,                              -- remote address
  source_ip TEXT,
  tls_version TEXT,
  tls_cipher TEXT,
  code INTEGER,
  reply TEXT,
  outcome TEXT NOT NULL,                -- delivered | deferred | bounced
  transcript TEXT                       -- failures only; AUTH exchanges removed
);
CREATE INDEX outbound_attempts_queue ON outbound_attempts(queue_id, id);

-- Hard-bounced recipients, per sending domain: later sends to them are refused.
CREATE TABLE suppressions (
  domain TEXT NOT NULL,
  address TEXT NOT NULL,
  reason TEXT NOT NULL,
  code INTEGER,
  created_at TEXT NOT NULL,
  PRIMARY KEY (domain, address)
);

-- One row per accepted message, for the sending caps (sliding hour/day windows by index range).
CREATE TABLE send_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  mailbox_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  recipients INTEGER NOT NULL
);
CREATE INDEX send_log_mailbox ON send_log(mailbox_id, at);
CREATE INDEX send_log_at ON send_log(at);

-- Cap overrides: target 'mailbox:<id>' or 'domain:<name>'; NULL = inherit (mailbox → domain → config).
CREATE TABLE sending_limits (
  target TEXT PRIMARY KEY,
  max_messages_per_hour INTEGER,
  max_recipients_per_day INTEGER,
  max_recipients_per_message INTEGER
);
