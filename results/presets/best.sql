-- best: each model's lowest-energy operating point within an accuracy-loss
-- budget (default 0.01 = one point of accuracy; `apxsim query --budget B`),
-- and the energy it saves against nominal. The reference is the point
-- labelled 'nominal' (every knob at the device's default) when the sweep has
-- one, else the most accurate point for accuracy and the most expensive for
-- energy. Ties in energy go to the more accurate point.
WITH ref AS (
    SELECT campaign, workload, dataset, device,
           coalesce(max(CASE WHEN label = 'nominal' THEN mean_accuracy END),
                    max(mean_accuracy)) AS ref_accuracy,
           coalesce(max(CASE WHEN label = 'nominal' THEN energy_pj END),
                    max(energy_pj)) AS ref_energy_pj
    FROM accuracy_by_point
    WHERE energy_pj IS NOT NULL
    GROUP BY campaign, workload, dataset, device),
ok AS (
    SELECT a.*, r.ref_accuracy, r.ref_energy_pj,
           row_number() OVER (PARTITION BY a.campaign, a.workload, a.dataset, a.device
                              ORDER BY a.energy_pj, a.mean_accuracy DESC, a.label) AS rank
    FROM accuracy_by_point AS a
    JOIN ref AS r ON r.campaign = a.campaign AND r.workload = a.workload
                 AND r.dataset = a.dataset AND r.device = a.device
    WHERE a.energy_pj IS NOT NULL
      AND a.mean_accuracy >= r.ref_accuracy - coalesce(:budget, 0.01))
SELECT campaign, workload, dataset, device, label AS operating_point, chips,
       mean_accuracy, ref_accuracy, mean_accuracy - ref_accuracy AS accuracy_change,
       energy_pj, ref_energy_pj, 1.0 - energy_pj / ref_energy_pj AS energy_saving,
       latency_ns, mean_ber
FROM ok WHERE rank = 1
ORDER BY campaign, workload, dataset, device;
