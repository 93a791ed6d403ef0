-- MTA-STS policies of recipient domains (RFC 8461 5.1: cached for max_age and kept across
-- restarts, so a policy cannot be stripped by blocking its DNS record or HTTPS fetch).
CREATE TABLE mta_sts_policies (
  domain TEXT PRIMARY KEY,
  id TEXT NOT NULL,
  mode TEXT NOT NULL,
  mx TEXT NOT NULL,                     -- JSON array of patterns
  max_age INTEGER NOT NULL,             -- seconds
  expires_at INTEGER NOT NULL           -- ms since the epoch
);
