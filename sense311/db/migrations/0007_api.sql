-- The HTTP API: its tokens, and an index its incident lookups need.
-- Runs with search_path set to the deployment's schema: no schema names here.

-- A token is shown once when created; only its SHA-256 is kept (sense311/api/tokens.py).
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The public part of the token (s311_<prefix>_<secret>): finds the row without the secret.
    prefix       text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z0-9]{8}$'),
    token_hash   text NOT NULL CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    name         text NOT NULL DEFAULT '',
    scope        text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    -- Written at most once a minute per token, so reads do not each cost a write.
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- The dashboard and /api/v1/incidents?sensor_id=… look incidents up by sensor; ticketing's own
-- indexes lead with the problem.
CREATE INDEX api_incidents_sensor_idx ON incidents (sensor_id, id);
