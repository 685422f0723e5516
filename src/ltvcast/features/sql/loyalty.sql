-- Family loyalty: brand concentration of gross sales (sale rows with a brand).
-- HHI = sum(v_b^2) / (sum v_b)^2 with the squares summed exactly as DECIMAL.
WITH by_brand AS (
    SELECT customer_id, brand, CAST(SUM(sales) AS DECIMAL(18, 4)) AS value
    FROM h_products
    WHERE brand IS NOT NULL
    GROUP BY customer_id, brand
)
SELECT customer_id,
       CASE WHEN SUM(value) > 0 THEN CAST(MAX(value) AS DOUBLE) / CAST(SUM(value) AS DOUBLE) END AS top_brand_share,
       CASE WHEN SUM(value) > 0
            THEN CAST(SUM(value * value) AS DOUBLE) / (CAST(SUM(value) AS DOUBLE) * CAST(SUM(value) AS DOUBLE))
       END AS brand_hhi
FROM by_brand
GROUP BY customer_id
