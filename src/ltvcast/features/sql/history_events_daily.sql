-- h_events_daily: one row per customer and local day with any event before the
-- cutoff. A session counts once, on the day of its first event (session_id
-- NULL: not a session).
CREATE OR REPLACE TEMP TABLE h_events_daily AS
SELECT customer_id,
       day,
       CAST(SUM(sessions) AS BIGINT) AS sessions,
       CAST(SUM(views) AS BIGINT) AS views,
       CAST(SUM(add_to_carts) AS BIGINT) AS add_to_carts,
       CAST(SUM(purchase_events) AS BIGINT) AS purchase_events,
       CAST(SUM(events) AS BIGINT) AS events
FROM (
    SELECT customer_id,
           day,
           0 AS sessions,
           CASE WHEN event_type = 'view' THEN 1 ELSE 0 END AS views,
           CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END AS add_to_carts,
           CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END AS purchase_events,
           1 AS events
    FROM h_events
    UNION ALL
    SELECT customer_id, MIN(day) AS day, 1, 0, 0, 0, 0
    FROM h_events
    WHERE session_id IS NOT NULL
    GROUP BY customer_id, session_id
) per_event
GROUP BY customer_id, day
