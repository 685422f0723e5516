-- Family events: behaviour from the event stream before the cutoff.
-- Visit trend (as spend_slope_13w in trend.sql): a visit day is a local day with
-- any event; week k = floor((C - day - 1) / 7); only the weeks since the first
-- event day count (n13 = min(13, weeks), n52 = min(52, weeks)).
WITH event_weeks AS (
    SELECT customer_id,
           CAST(FLOOR((DATE_DIFF('day', MIN(day), DATE '{{ cutoff_day }}') - 1) / 7.0) AS INTEGER) + 1 AS weeks
    FROM h_events_daily
    GROUP BY customer_id
),
event_days AS (
    SELECT e.customer_id, e.day, e.sessions, e.views, e.add_to_carts, e.purchase_events, e.other_events,
           e.other_type_1, e.other_type_2, e.other_type_3,
           CAST(FLOOR((DATE_DIFF('day', e.day, DATE '{{ cutoff_day }}') - 1) / 7.0) AS INTEGER) AS k,
           LEAST(13, f.weeks) AS n13,
           LEAST(52, f.weeks) AS n52
    FROM h_events_daily e
    JOIN event_weeks f ON f.customer_id = e.customer_id
),
event_sums AS (
    SELECT customer_id,
           CAST(SUM(sessions) AS BIGINT) AS sessions,
           CAST(SUM(views) AS BIGINT) AS views,
           CAST(SUM(add_to_carts) AS BIGINT) AS add_to_carts,
           CAST(SUM(purchase_events) AS BIGINT) AS purchase_events,
           CAST(SUM(other_events) AS BIGINT) AS other_events,
{% for w in windows %}
           CAST(SUM(CASE WHEN day >= DATE '{{ before(w) }}' THEN sessions ELSE 0 END) AS BIGINT) AS sessions_{{ w }}d,
           CAST(SUM(CASE WHEN day >= DATE '{{ before(w) }}' THEN views ELSE 0 END) AS BIGINT) AS views_{{ w }}d,
           CAST(SUM(CASE WHEN day >= DATE '{{ before(w) }}' THEN add_to_carts ELSE 0 END) AS BIGINT) AS add_to_carts_{{ w }}d,
           CAST(SUM(CASE WHEN day >= DATE '{{ before(w) }}' THEN other_events ELSE 0 END) AS BIGINT) AS other_events_{{ w }}d,
{% endfor %}
           CASE WHEN SUM(views) > 0
                THEN CAST(SUM(add_to_carts) AS DOUBLE) / CAST(SUM(views) AS DOUBLE) END AS view_to_cart_rate,
           CASE WHEN SUM(add_to_carts) > 0
                THEN CAST(SUM(purchase_events) AS DOUBLE) / CAST(SUM(add_to_carts) AS DOUBLE) END AS cart_to_purchase_rate,
           CAST(DATE_DIFF('day', MAX(day), DATE '{{ cutoff_day }}') AS DOUBLE) AS days_since_last_visit,
           CAST(DATE_DIFF('day', MAX(CASE WHEN other_events > 0 THEN day END), DATE '{{ cutoff_day }}') AS DOUBLE)
               AS days_since_last_other_event,
           SUM(CASE WHEN k < n13 THEN (n13 - 1) / 2.0 - k ELSE 0 END) AS tilt_13w,
           CAST(SUM(CASE WHEN k < n13 THEN 1 ELSE 0 END) AS DOUBLE) AS visits_13w,
           CAST(SUM(CASE WHEN k < 52 THEN 1 ELSE 0 END) AS DOUBLE) AS visits_52w,
{% for i in (1, 2, 3) %}
           CAST(SUM(other_type_{{ i }}) AS BIGINT) AS other_type_{{ i }}_events,
           CAST(SUM(CASE WHEN day >= DATE '{{ before(90) }}' THEN other_type_{{ i }} ELSE 0 END) AS BIGINT)
               AS other_type_{{ i }}_events_90d,
           CAST(DATE_DIFF('day', MAX(CASE WHEN other_type_{{ i }} > 0 THEN day END), DATE '{{ cutoff_day }}') AS DOUBLE)
               AS days_since_other_type_{{ i }},
{% endfor %}
           MAX(n13) AS n13,
           MAX(n52) AS n52
    FROM event_days
    GROUP BY customer_id
)
SELECT customer_id,
       sessions, views, add_to_carts, purchase_events, other_events,
{% for w in windows %}
       sessions_{{ w }}d, views_{{ w }}d, add_to_carts_{{ w }}d, other_events_{{ w }}d,
{% endfor %}
       view_to_cart_rate,
       cart_to_purchase_rate,
       days_since_last_visit,
       days_since_last_other_event,
{% for i in (1, 2, 3) %}
       other_type_{{ i }}_events, other_type_{{ i }}_events_90d, days_since_other_type_{{ i }},
{% endfor %}
       CASE WHEN n13 >= 2 AND visits_52w > 0
            THEN tilt_13w / (n13 * (n13 * n13 - 1) / 12.0) / (visits_52w / n52) END AS visit_slope_13w,
       CASE WHEN visits_52w > 0 THEN (visits_13w / n13) / (visits_52w / n52) END AS visits_13w_vs_52w
FROM event_sums
