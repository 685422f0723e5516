-- Family attributes: the customers row known at the cutoff, and the first order:
-- among the sale rows at the customer's earliest sale timestamp, the smallest
-- order key; its value, channel and top category (ties: alphabetically first).
WITH first_ts AS (
    SELECT customer_id, MIN(ts) AS ts
    FROM h_lines
    WHERE kind = 'sale'
    GROUP BY customer_id
),
first_lines AS (
    SELECT l.customer_id, l.order_key, l.amount, l.category, l.channel
    FROM h_lines l
    JOIN first_ts f ON f.customer_id = l.customer_id AND f.ts = l.ts
    WHERE l.kind = 'sale'
),
first_key AS (
    SELECT customer_id, MIN(order_key) AS order_key
    FROM first_lines
    GROUP BY customer_id
),
first_order_lines AS (
    SELECT fl.customer_id, fl.amount, fl.category, fl.channel
    FROM first_lines fl
    JOIN first_key k ON k.customer_id = fl.customer_id AND k.order_key = fl.order_key
),
first_order AS (
    SELECT customer_id, SUM(amount) AS value, MIN(channel) AS channel
    FROM first_order_lines
    GROUP BY customer_id
),
first_category AS (
    SELECT customer_id, category
    FROM (
        SELECT customer_id,
               category,
               ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY SUM(amount) DESC, category) AS k
        FROM first_order_lines
        WHERE category IS NOT NULL
        GROUP BY customer_id, category
    ) ranked
    WHERE k = 1
)
SELECT COALESCE(c.customer_id, f.customer_id) AS customer_id,
       c.acquisition_channel,
       c.region,
       c.country,
       CAST(DATE_DIFF('day', c.signup_day, DATE '{{ cutoff_day }}') AS DOUBLE) AS signup_age_days,
       CAST(f.value AS DOUBLE) AS first_order_value,
       fc.category AS first_order_category,
       f.channel AS first_order_channel
FROM (SELECT * FROM h_customers
      WHERE customer_id IN (SELECT customer_id FROM h_pop)) c
FULL OUTER JOIN first_order f ON f.customer_id = c.customer_id
LEFT JOIN first_category fc ON fc.customer_id = f.customer_id
