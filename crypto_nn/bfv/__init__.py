"""BFV: exact integer arithmetic mod plaintext primes, for the integer network (integer_nn).

Same module names as :mod:`crypto_nn.ckks`: ``params`` (parameters, batching primes,
CRT), ``plan`` (compile → Plan), ``client`` (key sets, encrypt, decrypt), ``batch`` /
``single`` (the evaluators of the two packings); ``layers`` lowers IntModel ops,
``tables`` turns lookup tables into polynomials over Z_t, ``client_aided`` runs them at
the client between exact segments.
"""
