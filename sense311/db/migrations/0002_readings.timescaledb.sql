-- TimescaleDB 2.x: readings is a hypertable; compression, retention and the continuous-aggregate
-- refresh are policies added by sense311/db/storage.py from settings (they take intervals).

CREATE TABLE readings (
    time        timestamptz NOT NULL,
    sensor_id   text NOT NULL,
    metric      text NOT NULL,
    value       double precision NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT readings_key UNIQUE (sensor_id, metric, time)
);

SELECT create_hypertable('readings', 'time', chunk_time_interval => INTERVAL '7 days');

-- Segmenting by the series keeps each compressed batch one sensor's metric, which is what rule
-- and detector queries read.
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'sensor_id, metric',
    timescaledb.compress_orderby = 'time DESC'
);

-- Kept so that code calling it works in both modes; TimescaleDB creates its own chunks.
CREATE FUNCTION ensure_readings_partitions(lo timestamptz, hi timestamptz, width interval)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;

CREATE MATERIALIZED VIEW readings_hourly WITH (timescaledb.continuous) AS
SELECT time_bucket('1 hour', time) AS bucket,
       sensor_id,
       metric,
       avg(value) AS avg,
       min(value) AS min,
       max(value) AS max,
       count(*)   AS count
FROM readings
GROUP BY 1, 2, 3
WITH NO DATA;
