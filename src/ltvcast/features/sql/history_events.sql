-- h_events: every event strictly before the cutoff, with its local day.
CREATE OR REPLACE TEMP VIEW h_events AS
SELECT customer_id,
       session_id,
       event_type,
       ts,
       {{ local_day('ts') }} AS day
FROM src_events
WHERE ts < TIMESTAMP '{{ cutoff_utc }}'
