-- Deliverability reports sent (issue #18 items 2 and 3 out; src/reports/dmarc-out.ts, tls-out.ts).

-- The TLS outcome of each outbound SMTP attempt (src/queue/tls-outcome.ts), for the daily TLS report
-- (RFC 8460): the policy that applied ('sts' | 'tlsa' | 'no-policy-found') and 'success' or the
-- failure result type. NULL: no TLS session was attempted (local delivery, no connection made).
ALTER TABLE outbound_attempts ADD COLUMN tls_policy TEXT;
ALTER TABLE outbound_attempts ADD COLUMN tls_result TEXT;
CREATE INDEX outbound_attempts_tls ON outbound_attempts(at) WHERE tls_policy IS NOT NULL;

-- What our MX concluded about each message from a domain with a DMARC record, for the daily
-- aggregate report (RFC 7489 §7.2). Written only while reports.dmarc_send is on. Times: ms.
CREATE TABLE dmarc_evaluations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  header_from TEXT NOT NULL,          -- RFC5322.From domain
  policy_domain TEXT NOT NULL,        -- where the DMARC record applied was found
  source_ip TEXT NOT NULL,
  envelope_from TEXT,                 -- RFC5321.MailFrom domain ('' = null sender)
  envelope_to TEXT,                   -- our recipient domain
  disposition TEXT NOT NULL,          -- none | quarantine | reject (what we did)
  dkim_aligned TEXT NOT NULL,         -- pass | fail
  spf_aligned TEXT NOT NULL,          -- pass | fail
  reason TEXT,                        -- policy override type (local_policy, ...) or NULL
  dkim TEXT NOT NULL DEFAULT '[]',    -- JSON [{domain, selector, result}]
  spf TEXT NOT NULL,                  -- JSON {domain, result}
  policy TEXT NOT NULL                -- JSON {p, sp, pct, adkim, aspf} as published
);
CREATE INDEX dmarc_evaluations_at ON dmarc_evaluations(at);

-- Every report built by the daily job, sent or not (skipped with the reason). One row per report
-- domain, destination and period: the job run twice for one period sends nothing twice.
CREATE TABLE reports_sent (
  id TEXT PRIMARY KEY,                -- the report id (report_id in the XML, report-id in the JSON)
  kind TEXT NOT NULL CHECK (kind IN ('dmarc', 'tls')),
  domain TEXT NOT NULL,               -- DMARC policy domain / TLS recipient (policy) domain
  destination TEXT NOT NULL,          -- the rua mailto address
  begin_at INTEGER NOT NULL,          -- period, ms
  end_at INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('queued', 'skipped')),
  reason TEXT,                        -- why skipped
  records INTEGER NOT NULL DEFAULT 0, -- DMARC records / TLS sessions in the report
  size INTEGER NOT NULL DEFAULT 0,    -- bytes of the gzip attachment
  queue_message_id TEXT,              -- outbound_messages.id when queued
  created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX reports_sent_once ON reports_sent(kind, domain, destination, begin_at);
CREATE INDEX reports_sent_created ON reports_sent(created_at);
