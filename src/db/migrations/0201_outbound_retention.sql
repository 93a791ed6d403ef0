-- Finished outbound messages are purged after outbound.retention (by creation time, via this index).
CREATE INDEX outbound_messages_created ON outbound_messages(created_at) WHERE pending <= 0;
