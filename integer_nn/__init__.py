"""Integer-domain neural networks: quantised weights, lookup-table activations, numba kernels.

Homomorphic schemes compute over integers, so the network must live over a finite set of
integers and every non-polynomial function becomes a lookup table (thesis §3.4).
"""

from integer_nn.errors import IntModelFileError, QuantizationError
from integer_nn.model import IntModel
from integer_nn.quantize import quantize

__all__ = ["IntModel", "IntModelFileError", "QuantizationError", "quantize"]
