-- Dispatched chunks waiting in the work queue: every dispatch counts them,
-- and they are few (the queue's depth), however many chunks wait undispatched.
CREATE INDEX chunks_queued ON chunks (batch_id, chunk)
    WHERE status = 'pending' AND published;
