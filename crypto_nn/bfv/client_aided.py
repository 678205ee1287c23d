"""Client-aided BFV: lookup tables (and any other non-polynomial op) run at the client.

The IntModel is cut at every run of non-polynomial ops (tables, max pools). The server
evaluates a *segment* — affine layers and x² — exactly under BFV and returns its output
ciphertexts; the client decrypts them (CRT across the segment's plaintext moduli), applies
the ops in the clear with ``IntModel``'s own kernels, re-encrypts, and sends the next
segment's input. One round trip per cut; every segment starts from fresh ciphertexts, so
depth and noise never accumulate across tables. The server stays stateless: a request
names its segment.

What the client learns beyond the logits: every pre-activation at every cut (the inputs
to the tables) — see docs/threat-model.md. The server learns nothing new: it sees only
ciphertexts under the client's keys, and which segment each belongs to.

The client's side of the protocol is ``bfv.client.BatchClient`` (one segment or many
alike), the server's ``bfv.batch.SegmentEvaluators``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crypto_nn.bfv.layers import LINEAR_KINDS, layers_from_ops
from crypto_nn.bfv.plan import BfvPlan, SegmentedPlan, compile_layers, served
from crypto_nn.errors import CompileError
from integer_nn.model import IntModel

_POLYNOMIAL = (*LINEAR_KINDS, "square")


@dataclass
class ClientAidedPlan(SegmentedPlan):
    segments: list[BfvPlan]
    client_ops: list[list]  # after segment k: the ops the client applies (len = segments − 1)
    cut_shapes: list[tuple[int, ...]]  # (C, H, W) of segment k's output, for those ops
    name: str = "model-bfv"
    classes: tuple[str, ...] = field(default_factory=tuple)
    pixel_max: int = 0
    output_scale: float = 1.0

    @property
    def round_trips(self) -> int:
        return len(self.client_ops)


def _split(model: IntModel) -> list[tuple[list[int], list[int]]]:
    """[(server op indices, client op indices)] in order."""
    parts: list[tuple[list[int], list[int]]] = [([], [])]
    for i, op in enumerate(model.ops):
        server, client = parts[-1]
        if op.kind in _POLYNOMIAL:
            if client:  # a polynomial op after client ops opens the next segment
                parts.append(([i], []))
            else:
                server.append(i)
        else:
            client.append(i)
    return parts


def compile_client_aided(
    model: IntModel, *, n: int = 8192, verify: bool = True, name: str = "model-bfv"
) -> ClientAidedPlan:
    """Segments between the model's non-polynomial ops, each compiled as an exact BFV plan
    for the input range and output bound integer_nn's range analysis gives it."""
    parts = _split(model)
    if not parts[0][0]:
        raise CompileError("the model starts with a non-polynomial op: nothing to encrypt first")
    if parts[-1][1]:
        raise CompileError(
            f"the model ends with non-polynomial op {parts[-1][1][0]}; the logits must come "
            "from a linear layer"
        )
    shapes = [tuple(model.in_shape)]
    probe = np.zeros((1, *model.in_shape), np.int64)
    for op in model.ops:
        probe = op.forward(probe)
        shapes.append(tuple(probe.shape[1:]))  # shapes[i + 1]: the output shape of op i
    segments, client_ops, cut_shapes = [], [], []
    in_range = (0, model.input_max)
    for server, client in parts:
        last = model.stats[server[-1]].worst
        segments.append(
            compile_layers(
                layers_from_ops([model.ops[i] for i in server], shapes[server[0]], server[0]),
                shapes[server[0]],
                in_range,
                max(abs(last.lo), abs(last.hi)),
                n=n,
                verify=verify,
            )
        )
        if client:
            client_ops.append([model.ops[i] for i in client])
            cut_shapes.append(shapes[server[-1] + 1])
            out = model.stats[client[-1]].worst
            in_range = (out.lo, out.hi)
    return served(ClientAidedPlan(segments, client_ops, cut_shapes), model, name)
