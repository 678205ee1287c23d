"""BFV: exact integer arithmetic mod plaintext primes, for the integer network (integer_nn).

The same module names as :mod:`crypto_nn.ckks`, meaning the same roles: ``params``
(parameters, batching primes, CRT), ``plan`` (plan data: :class:`BfvPlan`,
:class:`ClientAidedPlan`, :class:`BfvSinglePlan` and the client-side plans), ``compile``
(IntModel → plan), ``client`` (:class:`BfvClient`, :class:`BfvSingleClient`: key sets,
encrypt, decrypt), ``batch`` / ``single`` (the evaluators, nothing else); ``layers`` lowers
IntModel ops, ``tables`` turns lookup tables into polynomials over Z_t.
"""
