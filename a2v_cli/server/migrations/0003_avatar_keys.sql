-- avatar.create's Idempotency-Key, per owner, so a retry on any front end answers the first request's avatar.
-- A create holds its key (claim_id, claimed_until: the build's deadline and a margin; a holder that died is
-- taken over after it) while it builds, and sets avatar_id in the transaction that commits the avatar's row.
-- A key follows its avatar: deleting the avatar deletes the key, so a retry with it makes a new one.
CREATE TABLE avatar_keys (
    owner TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    avatar_id TEXT,
    claim_id TEXT,
    claimed_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, idempotency_key),
    FOREIGN KEY (owner, avatar_id) REFERENCES avatars (owner, avatar_id) ON DELETE CASCADE
);
