"""SEAL objects between SEAL 4.1 (node-seal 7, the browser client) and the server's SEAL
(TenSEAL 0.3.18's, which writes version 4.3): the same bytes with every version header
rewritten.

Why this is sound: SEAL's changelog says the wire format did not change from 4.1 to 4.3
("the wire format is unchanged", 4.3.3 and 4.4.0), and the save/load members of every
object that crosses (``encryptionparams.cpp``, ``modulus.cpp``, ``ciphertext.cpp``,
``plaintext.cpp``, ``dynarray.h``, ``kswitchkeys.cpp``, ``randomgen.cpp``) are identical
between the v4.1.2 and v4.3.3 tags (``git diff``: only bounds checks were added to
``KSwitchKeys::load``); round-trip tests under Node prove it by experiment. What differs is
the loaders' version check: each refuses any minor version but its own, and it checks every
*nested* object's header too (each ``Modulus`` inside the parameters, the coefficient
array inside a ciphertext, the PRNG record of a seeded ciphertext, every key inside a
key-switching key set). So the header of the object and of everything nested in it is
rewritten here, walking the layout below, never by searching for byte patterns:

- parameters: scheme (1 byte), N, k (uint64), k moduli, the plain modulus — each modulus
  a nested object of one uint64;
- ciphertext (and public key): parms_id (32), NTT flag (1), size, N, k, scale, correction
  factor (uint64 / float64), a nested coefficient array (uint64 count, then the words);
  seeded when the array holds exactly N·k words — then a nested PRNG record (1-byte type,
  64-byte seed) follows;
- plaintext (and secret key, in tests only): parms_id, coefficient count, scale, a nested
  array;
- key-switching keys (relinearisation, Galois): parms_id, a count of key vectors, each a
  count and that many nested public keys.

The result is always uncompressed (compression mode none): both loaders read it, and a
compression mode one side lacks is never sent to it. Everything is hostile input: every
length is checked, and any malformed byte is a :class:`ContextError`.
"""

from __future__ import annotations

import struct

from crypto_nn.errors import ContextError
from crypto_nn.wire import inflate

HEADER = inflate.HEADER
MAJOR = 4
BROWSER_MINOR = 1  # node-seal 7.x = SEAL 4.1.2
SERVER_MINOR = 3  # TenSEAL 0.3.18's SEAL writes 4.3 (checked by the tests)
KINDS = ("params", "ciphertext", "plaintext", "kswitch")
MAX_WORDS = 1 << 28  # no object the plans use holds more 64-bit words than this
MAX_KEYS = 1 << 16  # SEAL's own bound on key-switching key vectors (4.3.3)
_U64 = struct.Struct("<Q")


class _Walk:
    """Copies a SEAL body, rewriting each nested header's minor version on the way."""

    def __init__(self, body: bytes, minor: int, what: str) -> None:
        self.src, self.out, self.pos = memoryview(body), bytearray(body), 0
        self.minor, self.what = minor, what

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.src):
            raise ContextError(f"{self.what}: ends inside its data (SEAL layout)")
        chunk = self.src[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def nested(self) -> int:
        """A nested object's header: checked, rewritten; → the size of its members."""
        at = self.pos
        magic, hsize, major, minor, compression, _, total = HEADER.unpack(self.take(HEADER.size))
        if magic != inflate.MAGIC or hsize != HEADER.size or major != MAJOR:
            raise ContextError(f"{self.what}: a nested object has no SEAL 4.x header")
        if minor not in (BROWSER_MINOR, SERVER_MINOR) or compression != inflate.NONE:
            raise ContextError(
                f"{self.what}: a nested object has version 4.{minor} or compression "
                f"{compression} (only 4.{BROWSER_MINOR}/4.{SERVER_MINOR}, uncompressed)"
            )
        if total < HEADER.size or at + total > len(self.src):
            raise ContextError(f"{self.what}: a nested object declares {total} bytes")
        self.out[at + 4] = self.minor
        return total - HEADER.size

    def modulus(self) -> None:
        if self.nested() != 8:
            raise ContextError(f"{self.what}: a modulus is not one 64-bit word")
        self.take(8)

    def array(self, most: int) -> int:
        size = self.nested()
        count = self.u64()
        if count > most or size != 8 + 8 * count:
            raise ContextError(f"{self.what}: a coefficient array of {count} words")
        self.take(8 * count)
        return count

    def params(self) -> None:
        self.take(1)  # scheme
        self.u64()  # N
        k = self.u64()
        if not 1 <= k <= 64:
            raise ContextError(f"{self.what}: {k} primes")
        for _ in range(k + 1):  # the coefficient moduli, then the plain modulus
            self.modulus()

    def ciphertext(self) -> None:
        self.take(32 + 1)  # parms_id, NTT flag
        size, n, k = self.u64(), self.u64(), self.u64()
        self.take(8 + 8)  # scale, correction factor (SEAL 4.x)
        if not (size <= 16 and n <= 1 << 17 and k <= 64):
            raise ContextError(f"{self.what}: a ciphertext of size {size}, N {n}, {k} primes")
        words = self.array(min(size * n * k, MAX_WORDS))
        if size == 2 and words == n * k:  # seeded: c1 is a PRNG seed record
            if self.nested() != 1 + 64:
                raise ContextError(f"{self.what}: a seed record that is not 65 bytes")
            self.take(1 + 64)

    def plaintext(self) -> None:
        self.take(32)  # parms_id
        self.u64()  # coefficient count
        self.take(8)  # scale
        self.array(MAX_WORDS)

    def kswitch(self) -> None:
        self.take(32)  # parms_id
        vectors = self.u64()
        if vectors > MAX_KEYS:
            raise ContextError(f"{self.what}: {vectors} key vectors")
        for _ in range(vectors):
            keys = self.u64()
            if keys > 64:
                raise ContextError(f"{self.what}: a key vector of {keys} keys")
            for _ in range(keys):
                end = self.nested() + self.pos
                self.ciphertext()  # a PublicKey is saved as its ciphertext
                if self.pos != end:
                    raise ContextError(f"{self.what}: a key's declared size is wrong")


def version(data: bytes, *, what: str = "SEAL object") -> tuple[int, int]:
    """The (major, minor) SEAL version in an object's header."""
    return inflate.header(data, what=what)[0]


def translate(data: bytes, kind: str, minor: int, bound: int, *, what: str = "SEAL object"):
    """``data`` (one SEAL 4.1 or 4.3 object of ``kind``) with every header at version
    4.``minor``, uncompressed; its body may inflate to at most ``bound`` bytes."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: one of {KINDS}")
    (major, got), _ = inflate.header(data, what=what)
    if major != MAJOR or got not in (BROWSER_MINOR, SERVER_MINOR):
        raise ContextError(
            f"{what}: SEAL version {major}.{got}; this server reads 4.{SERVER_MINOR} and, "
            f"for clients that declare it, 4.{BROWSER_MINOR}"
        )
    _, body = inflate.body(data, bound, what=what)
    walk = _Walk(body, minor, what)
    getattr(walk, kind)()
    if walk.pos != len(body):
        raise ContextError(f"{what}: {len(body) - walk.pos} bytes after its members")
    head = HEADER.pack(inflate.MAGIC, HEADER.size, MAJOR, minor, inflate.NONE, 0,
                       HEADER.size + len(body))  # fmt: skip
    return head + bytes(walk.out)


def part_kind(name: str) -> str:
    """The kind of a context part (``params``, ``relin_keys.2`` …)."""
    return "params" if name.partition(".")[0] == "params" else "kswitch"


OUTPUT_BOUND = 1 << 28  # the server's own outputs: a few MB each


class Translating:
    """An evaluator for a client that declared SEAL 4.1: its ciphertexts are rewritten to
    the server's version before the plan runs (they must come uncompressed: nothing is
    inflated for it), the outputs back to 4.1 (uncompressed)."""

    def __init__(self, evaluator) -> None:
        self.evaluator = evaluator

    def run(self, payloads: list[bytes], on_progress=None, *, segment: int = 0) -> list[bytes]:
        inputs = [
            translate(p, "ciphertext", SERVER_MINOR, len(p), what=f"ciphertext {i} (SEAL 4.1)")
            for i, p in enumerate(payloads)
        ]
        outputs = self.evaluator.run(inputs, on_progress, segment=segment)
        return [
            translate(o, "ciphertext", BROWSER_MINOR, OUTPUT_BOUND, what="output") for o in outputs
        ]
