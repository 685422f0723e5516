-- Family tenure: days from the first sale (tenure_days) and from the first
-- activity of any kind (sale or return day, event day, signup day) to C.
WITH firsts AS (
    SELECT customer_id,
           MIN(CASE WHEN sale_lines > 0 THEN day END) AS first_sale,
           MIN(day) AS first_any
    FROM h_daily
    GROUP BY customer_id
    UNION ALL
    SELECT customer_id, NULL, MIN(day)
    FROM h_events_daily
    GROUP BY customer_id
    UNION ALL
    SELECT customer_id, NULL, signup_day
    FROM h_customers
    WHERE signup_day IS NOT NULL
)
SELECT customer_id,
       CAST(DATE_DIFF('day', MIN(first_sale), DATE '{{ cutoff_day }}') AS DOUBLE) AS tenure_days,
       CAST(DATE_DIFF('day', MIN(first_any), DATE '{{ cutoff_day }}') AS DOUBLE) AS days_since_first_activity
FROM firsts
GROUP BY customer_id
