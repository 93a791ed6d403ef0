-- Webhooks, their delivery log, and API idempotency keys (API part 2). Times: ms since the epoch.

CREATE TABLE webhooks (
  id TEXT PRIMARY KEY,                  -- wh_...
  url TEXT NOT NULL,
  events TEXT NOT NULL,                 -- JSON array of event types ('*' = all)
  description TEXT NOT NULL DEFAULT '',
  secret TEXT NOT NULL,                 -- whsec_...; signs deliveries (HMAC-SHA256)
  previous_secret TEXT,                 -- after a rotation: still signed with until previous_secret_expires_at
  previous_secret_expires_at INTEGER,
  enabled INTEGER NOT NULL DEFAULT 1,
  disabled_reason TEXT,
  failing_since INTEGER,                -- first failure since the last success
  domains TEXT,                         -- JSON array: only events of these domains (domain-restricted keys); NULL = all
  from_event_id INTEGER NOT NULL,       -- only events after this one are delivered
  created_by TEXT,                      -- API key id
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

-- The durable outbox: one row per (event, webhook), written in the same transaction that advances
-- the fan-out cursor; pending rows are retried until they succeed or the schedule ends.
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,                  -- whd_...
  webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
  event_id TEXT NOT NULL,               -- evt_<events.id>, or evt_test_... for test deliveries
  event_type TEXT NOT NULL,
  payload TEXT NOT NULL,                -- the exact JSON body sent
  status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,              -- pending only
  last_status_code INTEGER,
  last_error TEXT,
  last_duration_ms INTEGER,
  replay_of TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, created_at);
CREATE INDEX webhook_deliveries_updated ON webhook_deliveries(updated_at);

CREATE TABLE webhook_attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
  at INTEGER NOT NULL,
  status_code INTEGER,
  error TEXT,
  duration_ms INTEGER NOT NULL,
  response TEXT                         -- the first 1 KB of the reply body
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);

-- The fan-out cursor over the events table.
CREATE TABLE webhook_outbox_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_event_id INTEGER NOT NULL
);
INSERT INTO webhook_outbox_state (id, last_event_id) SELECT 1, coalesce(max(id), 0) FROM events;

-- Idempotency-Key of POST /mailboxes/:id/send, per API key, kept 24 hours.
CREATE TABLE api_idempotency (
  key_id TEXT NOT NULL,
  idem_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  status INTEGER,                       -- NULL while the first request is in progress
  response TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX api_idempotency_created ON api_idempotency(created_at);
