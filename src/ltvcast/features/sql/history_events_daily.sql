-- h_events_daily: one row per customer and local day with any event before the
-- cutoff. A session counts once, on the local day of its first event before
-- the cutoff (session_id NULL: not a session).
CREATE OR REPLACE TEMP TABLE h_events_daily AS
WITH per_day AS (
    SELECT customer_id,
           day,
           CAST(SUM(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS BIGINT) AS views,
           CAST(SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS BIGINT) AS add_to_carts,
           CAST(SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS BIGINT) AS purchase_events,
           CAST(SUM(CASE WHEN event_type NOT IN ('session_start', 'view', 'add_to_cart', 'purchase')
                         THEN 1 ELSE 0 END) AS BIGINT) AS other_events,
           CAST(COUNT(*) AS BIGINT) AS events
    FROM h_events
    GROUP BY customer_id, day
),
session_starts AS (
    SELECT customer_id, {{ local_day('start_ts') }} AS day, CAST(COUNT(*) AS BIGINT) AS sessions
    FROM (
        SELECT customer_id, session_id, MIN(ts) AS start_ts
        FROM h_events
        WHERE session_id IS NOT NULL
        GROUP BY customer_id, session_id
    ) s
    GROUP BY customer_id, {{ local_day('start_ts') }}
)
SELECT d.customer_id,
       d.day,
       COALESCE(s.sessions, 0) AS sessions,
       d.views,
       d.add_to_carts,
       d.purchase_events,
       d.other_events,
       d.events
FROM per_day d
LEFT JOIN session_starts s ON s.customer_id = d.customer_id AND s.day = d.day
