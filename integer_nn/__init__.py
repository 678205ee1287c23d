"""Integer-domain neural networks: quantised weights, lookup-table activations, numba kernels."""
