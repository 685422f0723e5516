-- Family events: behaviour from the event stream before the cutoff.
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
           AS days_since_last_other_event
FROM h_events_daily
GROUP BY customer_id
