-- Custody log: every custody event of a match, append-only and hash-chained:
-- hash = SHA-256(prev_hash || canonical event), the first prev_hash 32 zero bytes. The match row
-- keeps the head (last hash and seq), so a truncated tail is detected as well as an edited row.
CREATE TABLE custody_events (
    match_id uuid NOT NULL REFERENCES matches (id),
    seq integer NOT NULL CHECK (seq >= 1),
    kind text NOT NULL,
    data jsonb NOT NULL,
    at timestamptz NOT NULL,
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (match_id, seq)
);

ALTER TABLE matches
    ADD COLUMN custody_seq integer NOT NULL DEFAULT 0,
    ADD COLUMN custody_head bytea,
    -- When the parcel first entered the geofence around its destination (`arriving`, once).
    ADD COLUMN arriving_at timestamptz;

-- The breadcrumb trail of a match in transit (positions that passed the tracker's filter),
-- written in batches. The key orders a match's trail and makes a replayed batch harmless.
CREATE TABLE positions (
    match_id uuid NOT NULL REFERENCES matches (id),
    recorded_at timestamptz NOT NULL,
    lat double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng double precision NOT NULL CHECK (lng BETWEEN -180 AND 180),
    accuracy_m real NOT NULL CHECK (accuracy_m >= 0),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (match_id, recorded_at)
);
