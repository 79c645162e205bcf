-- Ticketing: incidents opened by detections, tickets that group them, the transactional outbox that
-- files tickets, the tickets' status history and the detections consumer's cursor.
-- Runs with search_path set to the deployment's schema: no schema names here.

-- A ticket is what goes to the city: one request for one fault, listing its member incidents.
CREATE TABLE tickets (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    problem            text NOT NULL,
    -- Our reference, written into the request's description as a marker; stable across retries so
    -- an ambiguous POST can be found again on the server.
    reference          text NOT NULL UNIQUE,
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'submitted', 'open', 'sent', 'closed', 'failed', 'cancelled',
                                         'merged')),
    -- A follow-up names the closed ticket whose problem came back within the cooldown.
    follows_ticket_id  bigint REFERENCES tickets (id),
    -- Two unsent tickets that turn out to be one fault (an incident between them reaches both)
    -- become one: the younger's members move to the older, which it names here.
    merged_into_id     bigint REFERENCES tickets (id),
    lat                double precision,
    lon                double precision,
    -- Event time of the first member's detection (UTC): grouping windows are measured from it.
    opened_at          timestamptz NOT NULL,
    sink               text NOT NULL,
    service_code       text,
    service_request_id text,
    token              text,
    remote_status      text,
    status_notes       text,
    -- How the city closed it: 'closed' (no reason given) is not 'duplicate' (merged into another
    -- request), and neither proves the fault is fixed. 'resolved': a sink that reports no status
    -- (webhook, dry run) and every member resolved by the rules.
    outcome            text CHECK (outcome IN ('closed', 'duplicate', 'cancelled', 'resolved')),
    closed_at          timestamptz,
    remote_updated_at  timestamptz,
    sent_at            timestamptz,
    polled_at          timestamptz,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX tickets_grouping_idx ON tickets (problem, opened_at) WHERE status IN ('pending', 'submitted', 'open', 'sent');
CREATE INDEX tickets_polling_idx ON tickets (sink, polled_at) WHERE status IN ('submitted', 'open');
-- One city request is one ticket: a reconciliation that matched the wrong ticket fails loudly.
CREATE UNIQUE INDEX tickets_remote_key ON tickets (sink, service_request_id) WHERE service_request_id IS NOT NULL;

-- An incident is one problem on one sensor, from its first detection until the city closes it.
CREATE TABLE incidents (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    problem        text NOT NULL,
    sensor_id      text NOT NULL,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    -- The rules' side: firing until every rule that reported it has emitted its resolution.
    sensor_state   text NOT NULL DEFAULT 'firing' CHECK (sensor_state IN ('firing', 'resolved')),
    firing_rules   text[] NOT NULL DEFAULT '{}',
    rule_id        text NOT NULL,
    rule_version   text NOT NULL,
    severity       text NOT NULL,
    onset          timestamptz,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    detections     integer NOT NULL DEFAULT 1,
    value          double precision,
    evidence       jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Copied from the registry when the incident opens: a ticket lists where its members were.
    lat            double precision,
    lon            double precision,
    resolved_at    timestamptz,
    closed_at      timestamptz,
    outcome        text CHECK (outcome IN ('closed', 'duplicate', 'cancelled', 'resolved')),
    close_notes    text,
    -- The incident this one reopens (same problem and sensor, closed by the city within the cooldown).
    reopens_id     bigint REFERENCES incidents (id),
    last_detection_id bigint,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
-- The rule: at most one open incident per (problem, sensor), whoever races to insert it.
CREATE UNIQUE INDEX incidents_open_key ON incidents (problem, sensor_id) WHERE status = 'open';
CREATE INDEX incidents_history_idx ON incidents (problem, sensor_id, closed_at) WHERE status = 'closed';

CREATE TABLE ticket_members (
    ticket_id   bigint NOT NULL REFERENCES tickets (id),
    incident_id bigint NOT NULL UNIQUE REFERENCES incidents (id),
    joined_at   timestamptz NOT NULL,
    PRIMARY KEY (ticket_id, incident_id)
);

-- Written in the same transaction as the ticket it sends; a worker claims due rows with
-- FOR UPDATE SKIP LOCKED and holds them for a lease.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id     bigint NOT NULL REFERENCES tickets (id),
    sink          text NOT NULL,
    action        text NOT NULL DEFAULT 'create' CHECK (action IN ('create')),
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'sending', 'failed', 'sent', 'dead', 'cancelled')),
    attempts      integer NOT NULL DEFAULT 0,
    -- True while an earlier attempt may have reached the server: the next one searches first.
    in_doubt      boolean NOT NULL DEFAULT false,
    available_at  timestamptz NOT NULL,
    lease_until   timestamptz,
    last_status   integer,
    last_error    text,
    payload       jsonb,
    response      jsonb,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    sent_at       timestamptz
);
-- A ticket is created at the city once, by one row.
CREATE UNIQUE INDEX outbox_one_create ON outbox (ticket_id) WHERE action = 'create';
CREATE INDEX outbox_due_idx ON outbox (available_at) WHERE state IN ('pending', 'failed');
CREATE INDEX outbox_lease_idx ON outbox (lease_until) WHERE state = 'sending';

CREATE TABLE ticket_status_history (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id         bigint NOT NULL REFERENCES tickets (id),
    observed_at       timestamptz NOT NULL,
    status            text NOT NULL,
    status_notes      text,
    remote_updated_at timestamptz,
    source            text NOT NULL CHECK (source IN ('outbox', 'poll', 'operator'))
);
CREATE INDEX ticket_status_history_ticket_idx ON ticket_status_history (ticket_id, observed_at);

-- Every detection with id <= last_id has been handled by the named consumer.
CREATE TABLE ticketing_cursor (
    name       text PRIMARY KEY,
    last_id    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);

-- Identity values are handed out before their transaction commits, so detection 11 can be visible
-- while detection 10 is still in flight. Every insert into detections holds this shared lock until
-- it commits; the consumer takes it exclusively for an instant and reads the sequence: every id up
-- to that value is then committed or rolled back, and the cursor may pass it.
CREATE FUNCTION ticketing_detections_barrier() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('sense311.detections'), hashtext(TG_TABLE_SCHEMA));
    RETURN NULL;
END
$$;
CREATE TRIGGER detections_ticketing_barrier
    BEFORE INSERT ON detections
    FOR EACH STATEMENT EXECUTE FUNCTION ticketing_detections_barrier();
