-- The distributed deployment's state: videos (with their jobs and idempotency keys), uploads, workers.
-- Times the API shows are ISO text, as in the SQLite history; times that decide ownership of a job
-- (heartbeats, publishing) are the database's clock, the one clock every host shares.
CREATE TABLE videos (
    video_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    pose_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'finished', 'failed', 'deleted')),
    video_url TEXT,
    mask_video_url TEXT,
    alpha_video_url TEXT,
    error TEXT,
    duration DOUBLE PRECISION,
    frame_count INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    audio_url TEXT NOT NULL,
    idempotency_key TEXT,
    alpha_format TEXT,
    -- the front end's limits, applied by whichever worker renders the job
    allow_private BOOLEAN NOT NULL DEFAULT FALSE,
    max_bytes BIGINT NOT NULL,
    download_timeout_s DOUBLE PRECISION NOT NULL,
    max_audio_seconds DOUBLE PRECISION NOT NULL,
    -- the job: tries so far, who holds it (a random id per claim), its heartbeat, why its last try ended
    attempts INTEGER NOT NULL DEFAULT 0,
    claim_id TEXT,
    heartbeat_at TIMESTAMPTZ,
    last_error TEXT,
    queued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX videos_owner_idempotency ON videos (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX videos_owner_seq ON videos (owner, seq);
CREATE INDEX videos_open ON videos (status, queued_at) WHERE status IN ('pending', 'processing');

CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at TEXT NOT NULL
);

-- one row per running `a2v worker` process, refreshed by its heartbeat (a2v_workers in the metrics)
CREATE TABLE workers (
    name TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
