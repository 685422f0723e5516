-- h_events_daily: one row per customer and local day with any event before the
-- cutoff. A session counts once, on the local day of its first event before
-- the cutoff (session_id NULL: not a session). Types a shop adds (beyond
-- session_start, view, add_to_cart, purchase) are ranked by their count before
-- the cutoff over all customers (ties: alphabetically first); other_type_i counts
-- the events of the i-th (i = 1 .. 3) of them.
CREATE OR REPLACE TEMP TABLE h_events_daily AS
WITH type_rank AS (
    SELECT event_type,
           ROW_NUMBER() OVER (ORDER BY COUNT(*) DESC, event_type) AS type_rank
    FROM h_events
    WHERE event_type NOT IN ('session_start', 'view', 'add_to_cart', 'purchase')
    GROUP BY event_type
),
typed AS (
    SELECT e.customer_id, e.day, e.event_type, t.type_rank
    FROM h_events e
    LEFT JOIN type_rank t ON t.event_type = e.event_type
),
per_day AS (
    SELECT customer_id,
           day,
           CAST(SUM(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS BIGINT) AS views,
           CAST(SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS BIGINT) AS add_to_carts,
           CAST(SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS BIGINT) AS purchase_events,
           CAST(SUM(CASE WHEN event_type NOT IN ('session_start', 'view', 'add_to_cart', 'purchase')
                         THEN 1 ELSE 0 END) AS BIGINT) AS other_events,
{% for i in (1, 2, 3) %}
           CAST(SUM(CASE WHEN type_rank = {{ i }} THEN 1 ELSE 0 END) AS BIGINT) AS other_type_{{ i }},
{% endfor %}
           CAST(COUNT(*) AS BIGINT) AS events
    FROM typed
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
       d.other_type_1,
       d.other_type_2,
       d.other_type_3,
       d.events
FROM per_day d
LEFT JOIN session_starts s ON s.customer_id = d.customer_id AND s.day = d.day
