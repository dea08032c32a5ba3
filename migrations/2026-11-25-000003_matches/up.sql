-- Matches (bookings of a parcel on a trip) and their append-only event log.

CREATE TABLE matches (
    id            uuid PRIMARY KEY,
    parcel_id     uuid NOT NULL REFERENCES parcels (id),
    trip_id       uuid NOT NULL REFERENCES trips (id),
    sender_id     uuid NOT NULL REFERENCES users (id),
    traveler_id   uuid NOT NULL REFERENCES users (id),
    -- Who asked: the sender (parcel → trip) or the traveler (trip → parcel).
    requested_by  uuid NOT NULL REFERENCES users (id),
    status        text NOT NULL CHECK (status IN ('requested', 'accepted', 'declined', 'cancelled',
                  'expired', 'paid', 'in_transit', 'delivered', 'completed', 'disputed')),
    weight_grams  integer NOT NULL CHECK (weight_grams > 0),
    -- Minor units: price = price_per_kg × weight / 1000 (half up); fee = price × bps / 10 000.
    price         bigint NOT NULL CHECK (price >= 0),
    fee           bigint NOT NULL CHECK (fee >= 0 AND fee <= price),
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    room_id       uuid NOT NULL UNIQUE,
    -- When a request or an unpaid acceptance lapses; NULL once nothing can expire.
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (sender_id <> traveler_id),
    CHECK (requested_by IN (sender_id, traveler_id))
);
SELECT diesel_manage_updated_at('matches');
-- At most one live request or booking per parcel and trip.
CREATE UNIQUE INDEX matches_one_open_per_pair ON matches (parcel_id, trip_id)
    WHERE status IN ('requested', 'accepted', 'paid', 'in_transit', 'delivered', 'disputed');
CREATE INDEX matches_parcel_idx ON matches (parcel_id, status);
CREATE INDEX matches_trip_idx ON matches (trip_id, status);
CREATE INDEX matches_sender_idx ON matches (sender_id, id);
CREATE INDEX matches_traveler_idx ON matches (traveler_id, id);
-- The expiry sweeper's queue.
CREATE INDEX matches_due_idx ON matches (expires_at) WHERE status IN ('requested', 'accepted');

CREATE TABLE match_events (
    id           uuid PRIMARY KEY,
    match_id     uuid NOT NULL REFERENCES matches (id) ON DELETE CASCADE,
    -- NULL when the system acted (expiry, a competing acceptance).
    actor_id     uuid REFERENCES users (id),
    action       text NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX match_events_match_idx ON match_events (match_id, id);

-- The log is append-only.
CREATE FUNCTION match_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'match_events is append-only';
END;
$$;
CREATE TRIGGER match_events_no_update BEFORE UPDATE OR DELETE ON match_events
    FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION match_events_append_only();
