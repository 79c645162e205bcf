-- Rule evaluation state: where each rule's live evaluation has got to, and the state of every
-- (rule, sensor) that is not normal. The evaluator writes both in the same transaction as the
-- detections it emits (0003), so a crash between them cannot fire twice or lose a pending period.

-- The last evaluation instant a rule has completed; the next run starts after it.
CREATE TABLE rule_watermarks (
    rule_id      text PRIMARY KEY,
    -- Aligned to interval_s (instants are k·interval in UTC).
    watermark    timestamptz NOT NULL,
    rule_version text NOT NULL,
    interval_s   double precision NOT NULL CHECK (interval_s > 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per (machine, sensor) whose state is not normal: a missing row means normal, so the
-- table stays as small as the set of open problems however many sensors a rule selects. A rule
-- with no_data: silent has a second machine, '<rule id>:silent'.
CREATE TABLE rule_state (
    rule_id      text NOT NULL,
    sensor_id    text NOT NULL,
    state        text NOT NULL CHECK (state IN ('pending', 'firing', 'recovering')),
    -- When the current state was entered (an evaluation instant).
    since        timestamptz NOT NULL,
    -- When the condition started holding (the start of pending): the detection's onset.
    onset        timestamptz,
    -- The instant of the detection while firing or recovering.
    fired_at     timestamptz,
    -- The aggregate at the last transition.
    value        double precision,
    rule_version text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, sensor_id)
);

-- Rule queries read one metric of every selected sensor over a short event-time window; the
-- readings key leads with sensor_id, so without this index each evaluation would scan a partition.
CREATE INDEX readings_metric_time_idx ON readings (metric, time);

-- Rules with `timestamp: received` (silence checks) window by arrival. Ingest appends in arrival
-- order, so a BRIN index finds recent arrivals at almost no cost to writes.
CREATE INDEX readings_received_at_idx ON readings USING brin (received_at);
