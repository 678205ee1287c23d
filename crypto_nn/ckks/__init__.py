"""CKKS: approximate arithmetic on real numbers, for the float (torch) network.

The same module names as :mod:`crypto_nn.bfv`, meaning the same roles: ``params`` (SEAL
parameters), ``plan`` (plan data: :class:`CkksPlan`, :class:`CkksClientPlan`), ``compile``
(torch model → plan), ``client`` (:class:`CkksClient`: keys, encrypt, decrypt), ``batch`` /
``single`` (the evaluators of the two packings, nothing else); ``layers`` lowers torch
modules, ``logreg`` trains logistic regression on encrypted features.
"""
