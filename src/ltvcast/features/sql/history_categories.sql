-- h_categories: gross sales per customer and category (sale rows with a
-- category before the cutoff). Materialised once for basket and diversity.
CREATE OR REPLACE TEMP TABLE h_categories AS
SELECT customer_id,
       category,
       CAST(SUM(amount) AS DECIMAL(18, 4)) AS sales
FROM h_lines
WHERE kind = 'sale' AND category IS NOT NULL
GROUP BY customer_id, category
