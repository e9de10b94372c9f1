-- The worker deletes idempotency records past their retention every second; without an index
-- on their age that read the whole table (every response body of the last day) inside the
-- write lock.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
