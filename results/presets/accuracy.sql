-- accuracy: mean, sample standard deviation (over chips), minimum and maximum
-- test accuracy per operating point, for each campaign, workload and data set.
-- Points come in sort_key order (the value of the point's first knob,
-- ascending), then by label.
SELECT campaign, workload, dataset, device, label AS operating_point, chips,
       mean_accuracy, std_accuracy, min_accuracy, max_accuracy
FROM accuracy_by_point
ORDER BY campaign, workload, dataset, device, sort_key, label;
