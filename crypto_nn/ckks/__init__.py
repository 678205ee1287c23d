"""CKKS: approximate arithmetic on real numbers, for the float (torch) network.

Same module names as :mod:`crypto_nn.bfv`: ``params`` (SEAL parameters), ``plan``
(compile → Plan), ``client`` (keys, encrypt, decrypt), ``batch`` / ``single`` (the
evaluators of the two packings); ``layers`` lowers torch modules, ``logreg`` trains
logistic regression on encrypted features.
"""
