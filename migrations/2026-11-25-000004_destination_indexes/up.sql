-- Searches by destination alone go through an index too.
CREATE INDEX trips_open_destination_idx ON trips (destination_lat, destination_lng) WHERE status = 'open';
CREATE INDEX parcels_open_destination_idx ON parcels (destination_lat, destination_lng) WHERE status = 'open';
