-- DKIM key rotation (issue #18; src/dkim/rotate.ts). A key's life: 'pending' (created by a rotation,
-- published but not signing until `domain verify` finds it in DNS) → 'active' (signing; `active` = 1,
-- kept in step for the readers that use it) → 'retiring' (no longer signing, still published for
-- the grace period dkim.rotation_grace from retired_at) → 'removed' (private key deleted; the
-- selector may be taken out of DNS).
ALTER TABLE dkim_keys ADD COLUMN state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('pending', 'active', 'retiring', 'removed'));
ALTER TABLE dkim_keys ADD COLUMN activated_at TEXT;
ALTER TABLE dkim_keys ADD COLUMN retired_at TEXT;
ALTER TABLE dkim_keys ADD COLUMN removed_at TEXT;
UPDATE dkim_keys SET state = CASE WHEN active = 1 THEN 'active' ELSE 'retiring' END, activated_at = created_at;
UPDATE dkim_keys SET retired_at = created_at WHERE state = 'retiring';
