-- pareto: the energy-accuracy Pareto front per campaign, workload, data set
-- and device: the operating points that no other point beats on both energy
-- per inference (lower) and mean accuracy over chips (higher). Cheapest first.
-- Points of devices that model no energy (energy_pj NULL) are left out.
SELECT a.campaign, a.workload, a.dataset, a.device, a.label AS operating_point, a.chips,
       a.energy_pj, a.latency_ns, a.mean_accuracy, a.std_accuracy, a.mean_ber
FROM accuracy_by_point AS a
WHERE a.energy_pj IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM accuracy_by_point AS b
      WHERE b.campaign = a.campaign AND b.workload = a.workload AND b.dataset = a.dataset
        AND b.device = a.device AND b.energy_pj IS NOT NULL
        AND b.energy_pj <= a.energy_pj AND b.mean_accuracy >= a.mean_accuracy
        AND (b.energy_pj < a.energy_pj OR b.mean_accuracy > a.mean_accuracy))
ORDER BY a.campaign, a.workload, a.dataset, a.device, a.energy_pj, a.label;
