-- DMARC aggregate reports received at a domain's reports address (issue #18; src/reports/). A report
-- that could not be read is kept too (status 'rejected', with the reason). Removed with the domain.
CREATE TABLE dmarc_reports (
  id TEXT PRIMARY KEY,
  domain_id TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
  received_at TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
  reason TEXT,                           -- why it was rejected; null when accepted
  mail_from TEXT NOT NULL,               -- envelope sender of the report message
  remote_ip TEXT NOT NULL,               -- the client that delivered it
  message_id TEXT,
  org_name TEXT,
  org_email TEXT,
  report_id TEXT,
  begin_at TEXT,                         -- reporting period (ISO, UTC)
  end_at TEXT,
  policy TEXT,                           -- JSON: policy_published
  errors TEXT,                           -- JSON array: report_metadata error elements
  messages INTEGER NOT NULL DEFAULT 0,   -- sum of the records' counts
  raw BLOB                               -- the report as attached (packed), for a later re-read
);
CREATE INDEX dmarc_reports_domain ON dmarc_reports(domain_id, received_at);
-- A reporter sending the same report twice (a retry) stores it once.
CREATE UNIQUE INDEX dmarc_reports_once ON dmarc_reports(domain_id, org_name, report_id) WHERE status = 'accepted';

CREATE TABLE dmarc_report_records (
  report_id TEXT NOT NULL REFERENCES dmarc_reports(id) ON DELETE CASCADE,
  source_ip TEXT NOT NULL,
  count INTEGER NOT NULL,
  disposition TEXT NOT NULL,
  dkim TEXT,                             -- policy_evaluated: DMARC-aligned DKIM result
  spf TEXT,                              -- policy_evaluated: DMARC-aligned SPF result
  header_from TEXT,
  envelope_from TEXT,
  envelope_to TEXT,
  detail TEXT NOT NULL                   -- JSON: reasons, dkimResults, spfResults
);
CREATE INDEX dmarc_report_records_report ON dmarc_report_records(report_id);
