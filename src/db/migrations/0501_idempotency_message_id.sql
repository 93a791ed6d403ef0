-- The Message-ID an in-progress Idempotency-Key claim will send, so that a claim left by a crashed
-- process can be settled at the next start from the outbound queue (src/api/idempotency.ts).
ALTER TABLE api_idempotency ADD COLUMN message_id TEXT;
