ALTER TABLE positions
    ADD CONSTRAINT positions_match_id_fkey FOREIGN KEY (match_id) REFERENCES matches (id);
DROP FUNCTION airbar_store_positions(uuid[], timestamptz[], double precision[], double precision[], real[]);
