-- Family diversity: category entropy (nats) of gross sales shares and the top
-- category (ties: alphabetically first). Rows without a category are left out.
-- The terms p ln p are rounded to 18 decimals and summed as DECIMAL, so the
-- result does not depend on the order of summation.
WITH by_cat AS (
    SELECT customer_id, category, SUM(sales) AS value
    FROM h_products
    WHERE category IS NOT NULL
    GROUP BY customer_id, category
),
shares AS (
    SELECT customer_id,
           category,
           CAST(value AS DOUBLE) / CAST(SUM(value) OVER (PARTITION BY customer_id) AS DOUBLE) AS p,
           SUM(value) OVER (PARTITION BY customer_id) AS total,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY value DESC, category) AS rank_
    FROM by_cat
)
SELECT customer_id,
       CASE WHEN MAX(total) > 0
            THEN 0.0 - CAST(SUM(CASE WHEN p > 0 THEN CAST(p * LN(p) AS DECIMAL(38, 18)) ELSE 0 END) AS DOUBLE)
       END AS category_entropy,
       MAX(CASE WHEN rank_ = 1 THEN category END) AS top_category
FROM shares
GROUP BY customer_id
