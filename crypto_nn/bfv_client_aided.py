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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crypto_nn.bfv import (
    _LINEAR_KINDS,
    BfvClient,
    BfvEvaluator,
    BfvPlan,
    compile_layers,
    layers_from_ops,
)
from crypto_nn.errors import CompileError, ContextError
from integer_nn.model import IntModel

_POLYNOMIAL = (*_LINEAR_KINDS, "square")


@dataclass
class ClientAidedPlan:
    segments: list[BfvPlan]
    client_ops: list[list]  # after segment k: the ops the client applies (len = segments − 1)
    cut_shapes: list[tuple[int, ...]]  # (C, H, W) of segment k's output, for those ops

    @property
    def round_trips(self) -> int:
        return len(self.client_ops)

    def describe(self) -> dict[str, object]:
        return {
            "scheme": "bfv",
            "packing": "batch",
            "tables": "client-aided",
            "round_trips": self.round_trips,
            "segments": [s.describe() for s in self.segments],
            "client_ops": [[op.describe() for op in ops] for ops in self.client_ops],
        }


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


def compile_client_aided(model: IntModel, *, n: int = 8192, verify: bool = True) -> ClientAidedPlan:
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
    return ClientAidedPlan(segments, client_ops, cut_shapes)


class ClientAidedSession:
    """The client's keys (one set per segment) and the protocol, against any ``server``
    callable ``(segment index, ciphertext sets) → ciphertext sets`` — in process, or HTTP."""

    def __init__(self, plan: ClientAidedPlan) -> None:
        self.plan = plan
        self.clients = [BfvClient(segment) for segment in plan.segments]

    def public_contexts(self) -> list[bytes]:
        return [client.public_context() for client in self.clients]

    def run(self, x_int: np.ndarray, server) -> np.ndarray:
        """Exact logits of ``x_int`` (n, C, H, W), one server call per segment."""
        n, x = len(x_int), np.asarray(x_int, dtype=np.int64)
        for k, client in enumerate(self.clients):
            values = client.decrypt_batch(server(k, client.encrypt_batch(x)), n)
            values = np.asarray(values.astype(np.int64))  # |v| ≤ bound < 2^63 by range analysis
            if k == len(self.clients) - 1:
                return values
            x = values.reshape(n, *self.plan.cut_shapes[k])
            for op in self.plan.client_ops[k]:  # in the clear: the client's share of the work
                x = op.forward(x)
        raise ContextError("the plan has no segments")


class ClientAidedEvaluator:
    """Server side: one BfvEvaluator per segment, for the contexts the client registered."""

    def __init__(self, plan: ClientAidedPlan, public_contexts: list[bytes]) -> None:
        if len(public_contexts) != len(plan.segments):
            raise ContextError(
                f"{len(public_contexts)} contexts; the plan has {len(plan.segments)} segments"
            )
        self.evaluators = [
            BfvEvaluator(seg, ctx) for seg, ctx in zip(plan.segments, public_contexts, strict=True)
        ]

    def __call__(self, segment: int, payloads: list[list[bytes]]) -> list[list[bytes]]:
        if not 0 <= segment < len(self.evaluators):
            raise ContextError(f"segment {segment}; the plan has {len(self.evaluators)}")
        return self.evaluators[segment].run_bytes(payloads)
