-- SMTP TLS reports (RFC 8460) received at a domain's TLS-RPT address (issue #18; src/reports/). A
-- report that could not be read is kept too (status 'rejected', with the reason). Removed with the domain.
CREATE TABLE tls_reports (
  id TEXT PRIMARY KEY,
  domain_id TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
  received_at TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
  reason TEXT,
  mail_from TEXT NOT NULL,
  remote_ip TEXT NOT NULL,
  message_id TEXT,
  org_name TEXT,
  contact TEXT,
  report_id TEXT,
  begin_at TEXT,
  end_at TEXT,
  successful INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  policies TEXT,                         -- JSON: the parsed policies with their failure details
  raw BLOB                               -- the report as attached (packed)
);
CREATE INDEX tls_reports_domain ON tls_reports(domain_id, received_at);
CREATE UNIQUE INDEX tls_reports_once ON tls_reports(domain_id, org_name, report_id) WHERE status = 'accepted';
