"""`df2infer bench`: per-stage latency percentiles and throughput of several artifacts, measured
side by side (interleaved), with an optional PyTorch eager comparison and accuracy column."""
