-- Detections and resolutions emitted by the rule evaluator: the hand-over from rules to
-- ticketing. The evaluator inserts them in the same transaction as its state change; ticketing
-- consumes them in id order from its own cursor. The unique key makes a re-run of an instant
-- (after a crash between insert and state commit is impossible, but a replayed backtest into
-- the table is not) a no-op.

CREATE TABLE detections (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id      text NOT NULL,
    rule_version text NOT NULL,
    sensor_id    text NOT NULL,
    problem      text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('detection', 'resolution')),
    fired_at     timestamptz NOT NULL,
    onset        timestamptz,
    severity     text NOT NULL DEFAULT 'medium',
    value        double precision,
    evidence     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT detections_key UNIQUE (rule_id, rule_version, sensor_id, fired_at, kind)
);
CREATE INDEX detections_sensor_idx ON detections (sensor_id, fired_at);
