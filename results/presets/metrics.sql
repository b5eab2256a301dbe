-- metrics: the bit-error-tolerance metrics (and construction parameters) of
-- every model a database holds results for, one row per metric and layer
-- (layer -1: the whole model), with the workload names that model ran under.
SELECT coalesce((SELECT group_concat(DISTINCT e.workload) FROM evaluations AS e
                 WHERE e.model_hash = m.model_hash), '') AS workload,
       m.model_hash, m.dataset, m.name AS metric, m.layer, m.value
FROM model_metrics AS m
ORDER BY workload, m.model_hash, m.dataset, m.name, m.layer;
