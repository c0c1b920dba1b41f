"""All measurement: the decode benchmark, the op-benchmark driver, timing and ceilings, FLOPs, reports, the official runner."""
