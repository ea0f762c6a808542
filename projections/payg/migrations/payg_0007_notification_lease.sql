-- A notice is leased to one recharger while it is sent, outside any transaction: the send is never undone by a
-- failed commit, and a recharger that dies mid-send leaves the lease to run out.
ALTER TABLE notifications ADD COLUMN claimed_until timestamptz;
