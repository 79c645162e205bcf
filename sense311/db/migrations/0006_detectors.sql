-- Detectors: versioned models per detector job, the scores rules read as `detector.<job>`, and
-- where each job's live scoring has got to. Runs with search_path set to the deployment's schema.

-- One row per training run of a job (detectors/store.py). A failed run keeps its row, with the
-- error and no model, so "why is version 7 missing" has an answer; the pinned version is what
-- scoring uses, and at most one version of a job is pinned.
CREATE TABLE detector_models (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The job's name: what rules read as detector.<name> and detector_scores.detector holds.
    name         text NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    -- The detector kind, its registry name ('seasonal', 'forest', …).
    kind         text NOT NULL,
    -- The job as configured when trained: detector parameters, sensor selection, metrics.
    params       jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The training window (trained_from, trained_to]; scoring continues from trained_to.
    trained_from timestamptz,
    trained_to   timestamptz,
    -- Training figures: sensors, readings, seconds, score quantiles on the training data.
    metrics      jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Pickled detector states, one per (sensor, metric); NULL when training failed.
    model        bytea,
    status       text NOT NULL CHECK (status IN ('trained', 'failed')),
    error        text,
    pinned       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    CONSTRAINT detector_models_version_key UNIQUE (name, version),
    CONSTRAINT detector_models_pinned_is_trained CHECK (NOT pinned OR (status = 'trained' AND model IS NOT NULL))
);
CREATE UNIQUE INDEX detector_models_one_pinned ON detector_models (name) WHERE pinned;

-- A detector job's score for one sensor at one evaluation instant (k · interval, UTC): the highest
-- score of the sensor's readings in (time − interval, time], and that reading's evidence.
CREATE TABLE detector_scores (
    time          timestamptz NOT NULL,
    sensor_id     text NOT NULL,
    detector      text NOT NULL,
    score         double precision CHECK (score >= 0 AND score <= 1),
    evidence      jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The detector_models version that scored it.
    model_version text,
    CONSTRAINT detector_scores_key UNIQUE (detector, sensor_id, time)
);
-- Rules read one detector's scores of every selected sensor over a short window.
CREATE INDEX detector_scores_time_idx ON detector_scores (detector, time);

-- The last instant a job's live scoring has written; the next run starts after it.
CREATE TABLE detector_watermarks (
    detector      text PRIMARY KEY,
    watermark     timestamptz NOT NULL,
    model_version text,
    updated_at    timestamptz NOT NULL
);
