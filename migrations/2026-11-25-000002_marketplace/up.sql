-- Trips, parcels and the activity feed.

-- Great-circle distance in metres (haversine, mean Earth radius 6 371 008.8 m). The same
-- formula as domain::geo::distance_m, so SQL filters and Rust agree.
CREATE FUNCTION airbar_distance_m(lat1 double precision, lng1 double precision,
                                  lat2 double precision, lng2 double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT 2 * 6371008.8 * asin(least(1.0, sqrt(
        power(sin(radians(lat2 - lat1) / 2), 2)
        + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lng2 - lng1) / 2), 2))))
$$;

CREATE TABLE trips (
    id                   uuid PRIMARY KEY,
    traveler_id          uuid NOT NULL REFERENCES users (id),
    -- A location is a gazetteer code (kind, city and time zone come from the gazetteer) or a
    -- custom label; both keep their resolved coordinates and country.
    origin_code          text,
    origin_label         text NOT NULL,
    origin_country       text NOT NULL CHECK (origin_country ~ '^[A-Z]{2}$'),
    origin_lat           double precision NOT NULL CHECK (origin_lat BETWEEN -90 AND 90),
    origin_lng           double precision NOT NULL CHECK (origin_lng BETWEEN -180 AND 180),
    destination_code     text,
    destination_label    text NOT NULL,
    destination_country  text NOT NULL CHECK (destination_country ~ '^[A-Z]{2}$'),
    destination_lat      double precision NOT NULL CHECK (destination_lat BETWEEN -90 AND 90),
    destination_lng      double precision NOT NULL CHECK (destination_lng BETWEEN -180 AND 180),
    departure_at         timestamptz NOT NULL,
    arrival_at           timestamptz NOT NULL,
    capacity_grams       integer NOT NULL CHECK (capacity_grams BETWEEN 1 AND 50000),
    -- Reserved by accepted matches; never above capacity, so available never goes below 0.
    reserved_grams       integer NOT NULL DEFAULT 0,
    available_grams      integer GENERATED ALWAYS AS (capacity_grams - reserved_grams) STORED,
    price_per_kg         bigint NOT NULL CHECK (price_per_kg >= 0),
    currency             text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    accepted_categories  text[] NOT NULL CHECK (cardinality(accepted_categories) > 0),
    flight_number        text,
    notes                text CHECK (char_length(notes) <= 500),
    status               text NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'in_progress', 'completed', 'cancelled')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (arrival_at > departure_at),
    CHECK (reserved_grams BETWEEN 0 AND capacity_grams)
);
SELECT diesel_manage_updated_at('trips');
-- Search: open trips by origin bounding box (lat range, lng inside the index), or by departure.
CREATE INDEX trips_open_origin_idx ON trips (origin_lat, origin_lng) WHERE status = 'open';
CREATE INDEX trips_open_departure_idx ON trips (departure_at, id) WHERE status = 'open';
CREATE INDEX trips_traveler_idx ON trips (traveler_id, id);

CREATE TABLE parcels (
    id                   uuid PRIMARY KEY,
    sender_id            uuid NOT NULL REFERENCES users (id),
    origin_code          text,
    origin_label         text NOT NULL,
    origin_country       text NOT NULL CHECK (origin_country ~ '^[A-Z]{2}$'),
    origin_lat           double precision NOT NULL CHECK (origin_lat BETWEEN -90 AND 90),
    origin_lng           double precision NOT NULL CHECK (origin_lng BETWEEN -180 AND 180),
    destination_code     text,
    destination_label    text NOT NULL,
    destination_country  text NOT NULL CHECK (destination_country ~ '^[A-Z]{2}$'),
    destination_lat      double precision NOT NULL CHECK (destination_lat BETWEEN -90 AND 90),
    destination_lng      double precision NOT NULL CHECK (destination_lng BETWEEN -180 AND 180),
    -- Exact hand-over addresses: private to the sender (and the paid traveler).
    pickup_address       text CHECK (char_length(pickup_address) <= 300),
    dropoff_address      text CHECK (char_length(dropoff_address) <= 300),
    ready_from           timestamptz NOT NULL,
    deliver_by           timestamptz NOT NULL,
    weight_grams         integer NOT NULL CHECK (weight_grams BETWEEN 1 AND 30000),
    dimensions_cm        integer[] CHECK (dimensions_cm IS NULL OR cardinality(dimensions_cm) = 3),
    category             text NOT NULL,
    description          text NOT NULL CHECK (char_length(description) BETWEEN 10 AND 500),
    declared_value       bigint NOT NULL CHECK (declared_value >= 0),
    currency             text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    max_reward           bigint CHECK (max_reward >= 0),
    recipient_name       text NOT NULL CHECK (char_length(recipient_name) BETWEEN 1 AND 100),
    recipient_email      text,
    recipient_phone      text,
    status               text NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'matched', 'in_transit', 'delivered', 'cancelled')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (deliver_by > ready_from),
    CHECK (recipient_email IS NOT NULL OR recipient_phone IS NOT NULL)
);
SELECT diesel_manage_updated_at('parcels');
CREATE INDEX parcels_open_origin_idx ON parcels (origin_lat, origin_lng) WHERE status = 'open';
CREATE INDEX parcels_open_deliver_by_idx ON parcels (deliver_by, id) WHERE status = 'open';
CREATE INDEX parcels_sender_idx ON parcels (sender_id, id);

-- Recent events involving a user, appended by services in the transaction of the event.
CREATE TABLE activities (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    subject_type  text NOT NULL,
    subject_id    uuid NOT NULL,
    data          jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activities_user_idx ON activities (user_id, id DESC);
CREATE INDEX activities_created_idx ON activities (created_at);
