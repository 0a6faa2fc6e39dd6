-- Everything schema.sql leaves out, added once the data is in (pg_dump's
-- post-data section): keys, checks, indexes, triggers, the view, sequences.

ALTER TABLE gallery_images ADD CONSTRAINT gallery_images_pkey PRIMARY KEY (id);
ALTER TABLE guests ADD CONSTRAINT guests_pkey PRIMARY KEY (id);
ALTER TABLE guests ADD CONSTRAINT guests_email_key UNIQUE (email);
ALTER TABLE bookings ADD CONSTRAINT bookings_pkey PRIMARY KEY (id);
ALTER TABLE payments ADD CONSTRAINT payments_pkey PRIMARY KEY (id);
ALTER TABLE reviews ADD CONSTRAINT reviews_pkey PRIMARY KEY (id);

ALTER TABLE bookings ADD CONSTRAINT bookings_dates_check CHECK (check_out > check_in);
ALTER TABLE reviews ADD CONSTRAINT reviews_rating_check CHECK (rating BETWEEN 1 AND 5);
ALTER TABLE payments ADD CONSTRAINT payments_method_check CHECK (method IN ('card', 'bank_transfer', 'cash'));

ALTER TABLE bookings ADD CONSTRAINT bookings_guest_id_fkey FOREIGN KEY (guest_id) REFERENCES guests (id);
ALTER TABLE payments ADD CONSTRAINT payments_booking_id_fkey FOREIGN KEY (booking_id) REFERENCES bookings (id);
ALTER TABLE reviews ADD CONSTRAINT reviews_booking_id_fkey FOREIGN KEY (booking_id) REFERENCES bookings (id) ON DELETE CASCADE;
ALTER TABLE booking_events ADD CONSTRAINT booking_events_booking_id_fkey FOREIGN KEY (booking_id) REFERENCES bookings (id) ON DELETE CASCADE;

-- The lookups the application makes: arrivals by date, a guest's bookings,
-- a booking's payments, reviews and history.
CREATE INDEX bookings_check_in_idx ON bookings (check_in);
CREATE INDEX bookings_guest_id_idx ON bookings (guest_id);
CREATE INDEX payments_booking_id_idx ON payments (booking_id);
CREATE INDEX reviews_booking_id_idx ON reviews (booking_id);
CREATE INDEX booking_events_booking_id_idx ON booking_events (booking_id, at);

-- Leaves updated_at alone when the UPDATE sets it explicitly, so replaying a
-- recorded update reproduces the recorded value instead of a new now().
CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER gallery_images_set_updated_at BEFORE UPDATE ON gallery_images FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER guests_set_updated_at BEFORE UPDATE ON guests FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER bookings_set_updated_at BEFORE UPDATE ON bookings FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- What the website's gallery page reads.
CREATE VIEW published_gallery AS
  SELECT id, title, url, category, width, height, created_at
  FROM gallery_images
  WHERE published
  ORDER BY id;

-- COPY supplied explicit ids, so the sequences still start at 1: move each past
-- its table's largest id, or the next insert would collide.
SELECT setval(pg_get_serial_sequence('gallery_images', 'id'), (SELECT max(id) FROM gallery_images));
SELECT setval(pg_get_serial_sequence('guests', 'id'), (SELECT max(id) FROM guests));
SELECT setval(pg_get_serial_sequence('bookings', 'id'), (SELECT max(id) FROM bookings));
SELECT setval(pg_get_serial_sequence('payments', 'id'), (SELECT max(id) FROM payments));
SELECT setval(pg_get_serial_sequence('reviews', 'id'), (SELECT max(id) FROM reviews));
