-- h_products: one row per customer and (product, category, brand) bought before
-- the cutoff, with sale rows, units and gross sales (materialised once; basket,
-- loyalty and diversity read it, so the order lines are scanned once for them).
CREATE OR REPLACE TEMP TABLE h_products AS
SELECT customer_id,
       product_id,
       category,
       brand,
       COUNT(*) AS n_lines,
       CAST(SUM(quantity) AS DECIMAL(18, 4)) AS items,
       CAST(SUM(amount) AS DECIMAL(18, 4)) AS sales
FROM h_lines
WHERE kind = 'sale'
GROUP BY customer_id, product_id, category, brand
