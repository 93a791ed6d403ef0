-- Domains, mailboxes, aliases and DKIM keys (Foundation).
CREATE TABLE domains (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,            -- lower-case A-label (IDN as punycode)
  unicode_name TEXT NOT NULL,           -- for display
  outbound_enabled INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL,
  last_verified_at TEXT,
  verification TEXT                     -- JSON of the last DNS verification
);

CREATE TABLE mailboxes (
  id TEXT PRIMARY KEY,
  domain_id TEXT NOT NULL REFERENCES domains(id),
  local_part TEXT NOT NULL,
  address TEXT NOT NULL UNIQUE,         -- lower-case local part @ A-label domain
  password_hash TEXT NOT NULL,          -- Dovecot scheme prefix + hash, e.g. {ARGON2ID}$argon2id$...
  quota_bytes INTEGER NOT NULL DEFAULT 0, -- 0 = unlimited
  disabled INTEGER NOT NULL DEFAULT 0,
  tags TEXT NOT NULL DEFAULT '[]',      -- JSON array of strings
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX mailboxes_domain ON mailboxes(domain_id);

CREATE TABLE aliases (
  id TEXT PRIMARY KEY,
  domain_id TEXT NOT NULL REFERENCES domains(id),
  address TEXT NOT NULL UNIQUE,         -- '*@domain' is the domain's catch-all
  targets TEXT NOT NULL,                -- JSON array of addresses, local or external
  created_at TEXT NOT NULL
);
CREATE INDEX aliases_domain ON aliases(domain_id);

CREATE TABLE dkim_keys (
  id TEXT PRIMARY KEY,
  domain_id TEXT NOT NULL REFERENCES domains(id),
  selector TEXT NOT NULL,
  algorithm TEXT NOT NULL CHECK (algorithm IN ('rsa', 'ed25519')),
  private_key_path TEXT NOT NULL,       -- PEM file, mode 0600, under data_dir/dkim
  public_key TEXT NOT NULL,             -- base64 of the DNS p= value
  active INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL,
  UNIQUE (domain_id, selector)
);
