"""Logistic regression trained on CKKS-encrypted features matches the same gradient descent
in the clear (with the same polynomial sigmoid) within CKKS's noise."""

import numpy as np

from crypto_nn.ckks.logreg import train_encrypted, train_plain


def test_encrypted_training_follows_plain_training_with_the_polynomial_sigmoid():
    rng = np.random.default_rng(0)
    m, d = 256, 4
    w_true = rng.normal(size=d)
    x = rng.normal(size=(m, d)) / np.sqrt(d)
    y = (x @ w_true > 0).astype(float)
    w_poly, b_poly = train_plain(x, y, 2, 1.0, "poly")
    w_enc, b_enc, trace = train_encrypted(x, y, 2, 1.0)
    assert np.abs(w_enc - w_poly).max() < 1e-3 and abs(b_enc - b_poly) < 1e-3
    assert trace.steps == 2 and trace.round_trips >= 1 and trace.upload_bytes > 0
    accuracy = float((((x @ w_enc + b_enc) > 0) == y).mean())
    assert accuracy > 0.8
