-- Web console (issue #19): administrators, their passkeys, one-time invitations, server-side
-- sessions and the audit log of admin actions. Secrets (invitation tokens, session ids) are stored
-- only as SHA-256 hex hashes.
CREATE TABLE console_admins (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);

CREATE TABLE console_invites (
  token_hash TEXT PRIMARY KEY,          -- SHA-256 hex of the link's token
  admin_id TEXT NOT NULL REFERENCES console_admins(id) ON DELETE CASCADE,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  challenge TEXT,                       -- the registration challenge last handed out for it
  used_at TEXT
);

CREATE TABLE console_credentials (
  id TEXT PRIMARY KEY,                  -- WebAuthn credential id (base64url)
  admin_id TEXT NOT NULL REFERENCES console_admins(id) ON DELETE CASCADE,
  public_key BLOB NOT NULL,
  counter INTEGER NOT NULL,
  transports TEXT NOT NULL DEFAULT '[]',
  created_at TEXT NOT NULL,
  last_used_at TEXT
);
CREATE INDEX console_credentials_admin ON console_credentials (admin_id);

-- Login challenges handed out before there is a session (keyed by a short-lived cookie's hash).
CREATE TABLE console_challenges (
  id_hash TEXT PRIMARY KEY,
  challenge TEXT NOT NULL,
  expires_at TEXT NOT NULL
);

CREATE TABLE console_sessions (
  id_hash TEXT PRIMARY KEY,             -- SHA-256 hex of the cookie's value
  admin_id TEXT NOT NULL REFERENCES console_admins(id) ON DELETE CASCADE,
  csrf TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,             -- absolute end
  last_seen_at TEXT NOT NULL,           -- idle expiry counts from here
  ip TEXT NOT NULL
);
CREATE INDEX console_sessions_admin ON console_sessions (admin_id);

CREATE TABLE console_audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  admin TEXT NOT NULL,                  -- the admin's name
  action TEXT NOT NULL,                 -- e.g. domain.add, mailbox.create, login
  target TEXT,
  ip TEXT NOT NULL,
  detail TEXT                           -- JSON, never a secret
);
CREATE INDEX console_audit_at ON console_audit (at);
