"""Bytes on the wire, shared by both schemes: SEAL objects (``seal_bytes``), ciphertext
lists (``framing``), public contexts (``context``), their common header reader
(``header``), the checks a client's evaluation keys must pass (``key_checks``), and a
ciphertext's RNS residues in and out of SEAL's format (``residues``; seeded inputs
expanded without SEAL: ``seeded``) for the batch evaluators' matrix products."""
