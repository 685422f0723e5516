-- Family attributes: the customers row known at the cutoff, and the first order:
-- the sale order with the earliest timestamp (ties: smallest order key); its
-- gross value, channel and top category (largest gross sales among its lines,
-- ties: alphabetically first).
WITH ranked AS (
    SELECT customer_id,
           order_key,
           amount,
           channel,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY ts, order_key) AS k
    FROM h_orders
    WHERE kind = 'sale'
),
first_order AS (
    SELECT customer_id, order_key, amount, channel FROM ranked WHERE k = 1
),
first_category AS (
    SELECT customer_id, category
    FROM (
        SELECT l.customer_id,
               l.category,
               ROW_NUMBER() OVER (PARTITION BY l.customer_id ORDER BY SUM(l.amount) DESC, l.category) AS k
        FROM h_lines l
        JOIN first_order f ON f.customer_id = l.customer_id AND f.order_key = l.order_key
        WHERE l.kind = 'sale' AND l.category IS NOT NULL
        GROUP BY l.customer_id, l.category
    ) by_category
    WHERE k = 1
)
SELECT COALESCE(c.customer_id, f.customer_id) AS customer_id,
       c.acquisition_channel,
       c.region,
       c.country,
       CAST(DATE_DIFF('day', c.signup_day, DATE '{{ cutoff_day }}') AS DOUBLE) AS signup_age_days,
       CAST(f.amount AS DOUBLE) AS first_order_value,
       fc.category AS first_order_category,
       f.channel AS first_order_channel
FROM h_customers c
FULL OUTER JOIN first_order f ON f.customer_id = c.customer_id
LEFT JOIN first_category fc ON fc.customer_id = f.customer_id
