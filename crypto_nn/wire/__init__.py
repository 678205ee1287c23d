"""Bytes on the wire, shared by both schemes: SEAL objects (``seal_bytes``), ciphertext
lists (``framing``), public contexts (``context``), their common header reader
(``header``) and the checks a client's evaluation keys must pass (``key_checks``)."""
