-- h_brands: gross sales per customer and brand (sale rows with a brand before
-- the cutoff). Materialised once for basket and loyalty.
CREATE OR REPLACE TEMP TABLE h_brands AS
SELECT customer_id,
       brand,
       CAST(SUM(amount) AS DECIMAL(18, 4)) AS sales
FROM h_lines
WHERE kind = 'sale' AND brand IS NOT NULL
GROUP BY customer_id, brand
