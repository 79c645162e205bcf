-- The device registry, the latest value per (sensor, metric) and the dead letters.
-- Migrations run with search_path set to the deployment's schema: no schema names here.

CREATE TABLE sensors (
    id          text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    kind        text NOT NULL,
    lat         double precision CHECK (lat BETWEEN -90 AND 90),
    lon         double precision CHECK (lon BETWEEN -180 AND 180),
    address     text,
    district    text,
    tags        text[] NOT NULL DEFAULT '{}',
    -- The gateway a sensor is bound to; ingest may refuse readings that arrive through another one.
    gateway     text,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensors_kind_idx ON sensors (kind);
CREATE INDEX sensors_district_idx ON sensors (district);
CREATE INDEX sensors_tags_idx ON sensors USING gin (tags);

-- Kept current by the ingest writer, so "what does sensor X say now" never scans readings.
CREATE TABLE latest_readings (
    sensor_id   text NOT NULL,
    metric      text NOT NULL,
    time        timestamptz NOT NULL,
    value       double precision NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (sensor_id, metric)
);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL DEFAULT '',
    format      text,
    sensor_id   text,
    gateway_id  text
);
CREATE INDEX dead_letters_received_at_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, received_at);
