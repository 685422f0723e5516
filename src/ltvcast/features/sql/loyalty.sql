-- Family loyalty: brand concentration of gross sales (h_brands).
-- HHI = sum(v_b^2) / (sum v_b)^2, the squares summed exactly as DECIMAL.
SELECT customer_id,
       CASE WHEN SUM(sales) > 0 THEN CAST(MAX(sales) AS DOUBLE) / CAST(SUM(sales) AS DOUBLE) END AS top_brand_share,
       CASE WHEN SUM(sales) > 0
            THEN CAST(SUM(sales * sales) AS DOUBLE) / (CAST(SUM(sales) AS DOUBLE) * CAST(SUM(sales) AS DOUBLE))
       END AS brand_hhi
FROM h_brands
GROUP BY customer_id
