-- Plain PostgreSQL: native range partitioning by event time. Partitions are created ahead and on
-- demand by ensure_readings_partitions() and dropped by retention (sense311/db/storage.py).

CREATE TABLE readings (
    time        timestamptz NOT NULL,
    sensor_id   text NOT NULL,
    metric      text NOT NULL,
    value       double precision NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Redelivered MQTT messages and duplicate uplinks land here again: the key makes them no-ops.
    CONSTRAINT readings_key UNIQUE (sensor_id, metric, time)
) PARTITION BY RANGE (time);

-- The same signature and alignment as TimescaleDB's time_bucket(interval, timestamptz) for intervals
-- without months: buckets are aligned to 2000-01-03 00:00 UTC (a Monday), as TimescaleDB does, so the
-- same query returns the same buckets on both.
CREATE FUNCTION time_bucket(bucket_width interval, ts timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT to_timestamp(
        floor((extract(epoch FROM ts) - 946857600) / extract(epoch FROM bucket_width))
        * extract(epoch FROM bucket_width) + 946857600)
$$;

-- Creates the missing weekly-aligned partitions covering [lo, hi]. Safe to call from several
-- processes at once: an advisory lock on the table serialises the DDL.
CREATE FUNCTION ensure_readings_partitions(lo timestamptz, hi timestamptz, width interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    start_at timestamptz := time_bucket(width, lo);
    created integer := 0;
    part_name text;
BEGIN
    PERFORM pg_advisory_xact_lock('readings'::regclass::oid::bigint);
    WHILE start_at <= hi LOOP
        part_name := 'readings_p' || to_char(start_at AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MI');
        IF to_regclass(quote_ident(part_name)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                           part_name, start_at, start_at + width);
            created := created + 1;
        END IF;
        start_at := start_at + width;
    END LOOP;
    RETURN created;
END
$$;

-- Hourly rollup. On TimescaleDB this is a continuous aggregate; here a view over the partitions,
-- so the same query works on both.
CREATE VIEW readings_hourly AS
SELECT time_bucket('1 hour', time) AS bucket,
       sensor_id,
       metric,
       avg(value) AS avg,
       min(value) AS min,
       max(value) AS max,
       count(*)   AS count
FROM readings
GROUP BY 1, 2, 3;
