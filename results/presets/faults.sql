-- faults: faults injected, bits changed and the bit error rate per weight
-- tensor (layer) and operating point, mean over chips, for each campaign,
-- workload and device. Points come mildest first: by the point's mean BER
-- over all its layers (fewest faults per exposed bit), then sort_key and
-- label; layers in network order within a point.
SELECT campaign, workload, device, label AS operating_point, layer, chips,
       mean_bits_exposed AS bits_exposed, mean_faults_injected AS faults_injected,
       mean_bits_changed AS bits_changed, mean_ber AS ber
FROM faults_by_layer
ORDER BY campaign, workload, device,
         sum(mean_faults_injected) OVER (PARTITION BY campaign, workload, device, op_key)
           / sum(mean_bits_exposed) OVER (PARTITION BY campaign, workload, device, op_key),
         sort_key, label, op_key, layer;
