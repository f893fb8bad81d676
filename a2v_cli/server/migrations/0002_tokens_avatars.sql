-- Tokens and tenants' avatars, so every front end authenticates and lists the same way.
-- A token is stored as its SHA-256 only (never the token): a database dump does not let anyone in.
-- One active token per name; a revoked row is kept (when, and that its hash never comes back).
CREATE TABLE tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;

-- A tenant's own avatars (the bundle files stay on the shared storage); a row is committed only once its
-- bundle is in place, and the primary key makes two creates of one id on two front ends give one avatar.
CREATE TABLE avatars (
    owner TEXT NOT NULL,
    avatar_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    pose_ids TEXT[] NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, avatar_id)
);
