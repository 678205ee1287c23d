"""Compile a network to a homomorphic-encryption plan (TenSEAL CKKS / BFV) and run it."""
