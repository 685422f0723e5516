-- Family returns: return rows counted at their own timestamp (before the cutoff).
SELECT customer_id,
       CAST(SUM(return_lines) AS BIGINT) AS returns_count,
       CAST(SUM(returned) AS DOUBLE) AS returned_value,
       CASE WHEN SUM(sale_lines) > 0
            THEN CAST(SUM(return_lines) AS DOUBLE) / CAST(SUM(sale_lines) AS DOUBLE) END AS return_rate_lines,
       CASE WHEN SUM(sales) > 0
            THEN CAST(SUM(returned) AS DOUBLE) / CAST(SUM(sales) AS DOUBLE) END AS return_rate_value
FROM h_daily
GROUP BY customer_id
