-- Management API keys (API issue). Only a SHA-256 hash of the secret is stored.
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,                  -- key_...
  name TEXT NOT NULL,
  prefix TEXT NOT NULL,                 -- first 8 characters after lb_live_/lb_test_, for display and lookup
  hash TEXT NOT NULL UNIQUE,            -- hex SHA-256 of the whole secret
  mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
  scopes TEXT NOT NULL,                 -- JSON array: "resource:action", "resource:*", "*"
  domains TEXT,                         -- JSON array of A-labels, or NULL = every domain
  created_at TEXT NOT NULL,
  expires_at TEXT,                      -- NULL = never
  revoked_at TEXT,
  last_used_at TEXT
);
CREATE INDEX api_keys_prefix ON api_keys(prefix);
