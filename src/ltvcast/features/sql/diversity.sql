-- Family diversity: category entropy (nats) of gross sales shares and the top
-- category (ties: alphabetically first), from h_categories.
-- The terms p ln p are rounded to 18 decimals and summed as DECIMAL, so the
-- result does not depend on the order of summation.
WITH totals AS (
    SELECT customer_id, SUM(sales) AS total, MAX(sales) AS top
    FROM h_categories
    GROUP BY customer_id
)
SELECT c.customer_id,
       CASE WHEN tot.total > 0
            THEN 0.0 - CAST(SUM(CASE WHEN c.sales > 0
                                     THEN CAST((CAST(c.sales AS DOUBLE) / CAST(tot.total AS DOUBLE))
                                               * LN(CAST(c.sales AS DOUBLE) / CAST(tot.total AS DOUBLE))
                                               AS DECIMAL(38, 18))
                                     ELSE 0 END) AS DOUBLE)
       END AS category_entropy,
       MIN(CASE WHEN c.sales = tot.top THEN c.category END) AS top_category
FROM h_categories c
JOIN totals tot ON tot.customer_id = c.customer_id
GROUP BY c.customer_id, tot.total
