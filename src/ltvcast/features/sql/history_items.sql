-- h_items: order_items of orders placed strictly before the cutoff (order_items
-- has no time of its own; the order's timestamp decides). The orders table's
-- returned_amount / net_amount are never read: they include later returns.
CREATE OR REPLACE TEMP VIEW h_items AS
SELECT o.customer_id,
       i.order_id,
       i.line,
       i.amount,
       COALESCE(i.discount, 0) AS discount
FROM src_order_items i
JOIN src_orders o ON o.order_id = i.order_id
WHERE o.ts < TIMESTAMP '{{ cutoff_utc }}'
