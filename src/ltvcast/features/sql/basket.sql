-- Family basket: order size and price over sale rows before the cutoff
-- (h_daily), distinct products (h_lines), categories (h_categories) and
-- brands (h_brands), discount share from the order_items of orders placed
-- before the cutoff (h_items). Distinct counts are GROUP BYs, not COUNT(DISTINCT).
WITH sales AS (
    SELECT customer_id,
           SUM(orders) AS n_orders,
           SUM(sale_lines) AS n_lines,
           SUM(items) AS items,
           SUM(sales) AS gross
    FROM h_daily
    WHERE sale_lines > 0
    GROUP BY customer_id
),
products AS (
    SELECT customer_id, COUNT(*) AS n_products
    FROM (
        SELECT customer_id, product_id
        FROM h_lines
        WHERE kind = 'sale' AND product_id IS NOT NULL
        GROUP BY customer_id, product_id
    ) p
    GROUP BY customer_id
),
categories AS (
    SELECT customer_id, COUNT(*) AS n_categories FROM h_categories GROUP BY customer_id
),
brands AS (
    SELECT customer_id, COUNT(*) AS n_brands FROM h_brands GROUP BY customer_id
),
disc AS (
    SELECT customer_id,
           SUM(discount) AS discount,
           SUM(amount + discount) AS undiscounted
    FROM h_items
    WHERE amount > 0
    GROUP BY customer_id
)
SELECT s.customer_id,
       CAST(s.n_orders AS BIGINT) AS orders,
       CAST(s.items AS DOUBLE) AS items_total,
       CAST(s.items AS DOUBLE) / s.n_orders AS items_per_order,
       CAST(s.n_lines AS DOUBLE) / s.n_orders AS lines_per_order,
       CAST(s.gross AS DOUBLE) / s.n_orders AS order_value_mean,
       CASE WHEN s.items > 0 THEN CAST(s.gross AS DOUBLE) / CAST(s.items AS DOUBLE) END AS mean_unit_price,
       CASE WHEN d.undiscounted > 0 THEN CAST(d.discount AS DOUBLE) / CAST(d.undiscounted AS DOUBLE) END AS discount_share,
       CAST(COALESCE(p.n_products, 0) AS BIGINT) AS distinct_products,
       CAST(COALESCE(c.n_categories, 0) AS BIGINT) AS distinct_categories,
       CAST(COALESCE(b.n_brands, 0) AS BIGINT) AS distinct_brands
FROM sales s
LEFT JOIN products p ON p.customer_id = s.customer_id
LEFT JOIN categories c ON c.customer_id = s.customer_id
LEFT JOIN brands b ON b.customer_id = s.customer_id
LEFT JOIN disc d ON d.customer_id = s.customer_id
