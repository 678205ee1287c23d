import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integer_nn import tables
from integer_nn.errors import QuantizationError

FLOAT_FNS = {
    "relu": lambda v: max(v, 0.0),
    "sigmoid": lambda v: (
        1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
    ),
    "tanh": math.tanh,
    "identity": lambda v: v,
    "square": lambda v: v * v,
}


@settings(max_examples=120, deadline=None)
@given(
    name=st.sampled_from(sorted(FLOAT_FNS)),
    lo=st.integers(-(10**7), 10**6),
    width=st.integers(0, 10**6),
    in_scale=st.floats(1e-6, 1e-2),
    bits=st.integers(2, 10),
    max_entries=st.sampled_from([16, 1000, 1 << 14]),
)
def test_every_entry_is_the_rounded_function_at_its_bucket_centre(
    name, lo, width, in_scale, bits, max_entries
):
    hi = lo + width
    fvals = [FLOAT_FNS[name](lo * in_scale), FLOAT_FNS[name](hi * in_scale)]
    out = tables.output_range(np.array(fvals + [FLOAT_FNS[name](0.0)]), bits)
    shift, values = tables.build(name, lo, hi, in_scale=in_scale, out=out, max_entries=max_entries)
    assert len(values) <= max_entries
    assert lo + (len(values) << shift) - 1 >= hi  # the domain covers [lo, hi]
    assert shift == 0 or (hi - lo + 1) > (max_entries << (shift - 1))  # and shift is minimal
    for i in range(0, len(values), max(1, len(values) // 50)):
        centre = lo + i * 2**shift + (2**shift - 1) / 2
        expected = round(FLOAT_FNS[name](centre * in_scale) / out.scale)  # half to even, as rint
        assert values[i] == min(max(expected, out.qmin), out.qmax), i


def test_output_range_signed_and_unsigned():
    assert tables.output_range(np.array([0.0, 2.0]), 8) == tables.OutputRange(0, 255, 2.0 / 255)
    assert tables.output_range(np.array([-1.0, 0.5]), 8) == tables.OutputRange(-127, 127, 1.0 / 127)
    assert tables.output_range(np.zeros(3), 4).scale == 1.0  # a dead layer still has a scale


def test_a_new_activation_is_one_line():
    tables.register("softsign", lambda x: x / (1 + np.abs(x)))
    out = tables.OutputRange(-127, 127, 1 / 127)
    _, values = tables.build("softsign", -100, 100, in_scale=0.1, out=out)
    assert values[0] == round(-10 / 11 * 127) and values[-1] == round(10 / 11 * 127)
    assert "softsign" in tables.names()


def test_unknown_activation_and_empty_domain():
    with pytest.raises(QuantizationError, match="no table activation 'gelu'"):
        tables.function("gelu")
    with pytest.raises(QuantizationError, match="empty table domain"):
        tables.plan_domain(5, 4, 16)
