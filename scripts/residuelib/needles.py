"""The secret and the forms the scanner searches for (its raw bytes, UCS-2,
UCS-4, hex, base64, a Python int's digits, values derived from it), each
held as a Needle: never one contiguous plaintext copy (see the package's
docstring)."""

import hashlib
import os
import string
import struct

ALPHABET = (string.ascii_letters + string.digits).encode()
# The forms every scenario is searched for; FORMS in a scenario adds more.
BASE_FORMS = ("raw", "ucs2", "ucs4", "hex", "base64")
REG_MIN = 8              # shortest secret fragment reported in a register


def _xor_int(data, mask):
    return int.from_bytes(data, "little") ^ mask


class Needle:
    """One form of the secret (e.g. its UCS-2 encoding), never held whole:
    `head` in clear to search for, the rest as int(rest) ^ mask."""

    def __init__(self, form, head, rest):
        self.form = form
        self.head = bytes(head)
        self.length = len(head) + len(rest)
        self._mask = int.from_bytes(os.urandom(len(rest)), "little")
        self._masked = _xor_int(rest, self._mask)

    def matches_rest(self, view):
        """True if view (len(rest) bytes) is the second half."""
        return _xor_int(view, self._mask) == self._masked

    def write_into(self, buf, at):
        """Write the needle into the bytearray buf at `at`, byte by byte
        (the tests plant copies in simulated memory with it)."""
        hl = len(self.head)
        buf[at:at + hl] = self.head
        for j in range(self.length - hl):
            k = 8 * j
            buf[at + hl + j] = ((self._masked >> k) ^ (self._mask >> k)) & 0xff

    def fragments(self, size=REG_MIN):
        """{fragment: needle offset} for every `size`-byte window. Each
        window is a separate short object: no full copy is assembled."""
        hl, n = len(self.head), self.length
        out = {}
        for off in range(n - size + 1):
            frag = bytearray(size)
            for i in range(size):
                j = off + i
                if j < hl:
                    frag[i] = self.head[j]
                else:
                    k = 8 * (j - hl)
                    frag[i] = ((self._masked >> k) ^ (self._mask >> k)) & 0xff
            out.setdefault(bytes(frag), off)
        return out


def _digits30(h1, h2):
    """The 30-bit digits (least significant first) of int.from_bytes(h1 +
    h2, 'big'), computed a byte at a time so the integer is never built."""
    digits, acc, bits = [], 0, 0
    for part in (h2, h1):
        for b in reversed(part):
            acc |= b << bits
            bits += 8
            while bits >= 30:
                digits.append(acc & 0x3fffffff)
                acc >>= 30
                bits -= 30
    if acc:
        digits.append(acc)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
    return digits


class _HalfKeyedHMAC:
    """HMAC keyed with the secret given in two halves (key <= block size),
    so the key is only ever seen XORed with ipad/opad."""

    def __init__(self, name, h1, h2):
        self.name = name
        bs = hashlib.new(name).block_size
        if len(h1) + len(h2) > bs:
            raise ValueError("secret longer than the hash block")

        def keyed(pad):
            h = hashlib.new(name)
            h.update(bytes(b ^ pad for b in h1))
            h.update(bytes(b ^ pad for b in h2))
            h.update(bytes([pad]) * (bs - len(h1) - len(h2)))
            return h

        self._inner, self._outer = keyed(0x36), keyed(0x5c)

    def digest(self, msg):
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def pbkdf2(self, salt, iterations, dklen=None):
        size = hashlib.new(self.name).digest_size
        dklen = dklen or size
        out = b""
        block = 1
        while len(out) < dklen:
            u = self.digest(salt + block.to_bytes(4, "big"))
            acc = int.from_bytes(u, "big")
            for _ in range(iterations - 1):
                u = self.digest(u)
                acc ^= int.from_bytes(u, "big")
            out += acc.to_bytes(size, "big")
            block += 1
        return out[:dklen]


class Secret:
    """A random ASCII token, generated and kept as two halves."""

    def __init__(self, length=32):
        if length < 16 or length % 2:
            raise ValueError("secret length must be even and >= 16")
        raw = os.urandom(length)
        half = length // 2
        # Two separate objects, never one: see the module docstring.
        self._h1 = bytes(ALPHABET[b % len(ALPHABET)] for b in raw[:half])
        self._h2 = bytes(ALPHABET[b % len(ALPHABET)] for b in raw[half:])
        self.length = length

    def write(self, path):
        """Write the secret to a new file (mode 0600), half by half."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, self._h1)
            os.write(fd, self._h2)
        finally:
            os.close(fd)

    def needle(self, form):
        h1, h2 = self._h1, self._h2
        if form == "raw":
            return Needle(form, h1, h2)
        if form in ("ucs2", "ucs4"):
            enc = "utf-16-le" if form == "ucs2" else "utf-32-le"
            return Needle(form, h1.decode("latin-1").encode(enc),
                          h2.decode("latin-1").encode(enc))
        if form == "hex":
            return Needle(form, h1.hex().encode(), h2.hex().encode())
        if form == "base64":
            import base64
            cut = len(h1) - len(h1) % 3   # base64 of a 3-byte multiple joins
            return Needle(form, base64.b64encode(h1[:cut]),
                          base64.b64encode(h1[cut:] + h2))
        if form in ("base64+1", "base64+2"):
            # The secret inside longer base64 text (a PEM key), starting 1
            # or 2 bytes past a 3-byte boundary: the characters that encode
            # only its own bytes, from its k-th byte on.
            import base64
            k = int(form[-1])
            a = h1[k:]
            cut = len(a) - len(a) % 3
            tail = a[cut:] + h2
            tail = tail[:len(tail) - len(tail) % 3]
            return Needle(form, base64.b64encode(a[:cut]),
                          base64.b64encode(tail))
        if form == "int":
            digits = _digits30(h1, h2)
            half = (len(digits) + 1) // 2
            return Needle(form, struct.pack("<%dI" % half, *digits[:half]),
                          struct.pack("<%dI" % (len(digits) - half),
                                      *digits[half:]))
        raise ValueError("unknown form %r" % form)

    def derived(self, spec):
        """Needles (raw and hex) for a value derived from the secret:
        ("hmac", hash, msg), ("pbkdf2", hash, salt, iterations) or
        ("dtoa", n): the number int.from_bytes(secret[:n], "big"), less
        its trailing decimal zeros, as dtoa's Bigint holds it (32-bit
        words, least significant first; n a multiple of 4, at most half
        the secret)."""
        kind = spec[0]
        if kind == "hmac":
            value = _HalfKeyedHMAC(spec[1], self._h1, self._h2).digest(
                spec[2])
        elif kind == "pbkdf2":
            value = _HalfKeyedHMAC(spec[1], self._h1, self._h2).pbkdf2(
                spec[2], spec[3])
        elif kind == "dtoa":
            n = spec[1]
            if n % 4 or not 8 <= n <= len(self._h1):
                raise ValueError("dtoa: n must be a multiple of 4 in "
                                 "8..%d" % len(self._h1))
            d = int.from_bytes(self._h1[:n], "big")
            while d % 10 == 0:          # dtoa drops trailing zero digits
                d //= 10
            value = d.to_bytes(4 * ((d.bit_length() + 31) // 32), "little")
            del d
        else:
            raise ValueError("unknown derivation %r" % (kind,))
        # The derived value exists whole here for a moment (it is computed
        # whole); it is split at once and the whole dropped.
        half = len(value) // 2
        out = [Needle(kind, value[:half], value[half:]),
               Needle(kind + "-hex", value[:half].hex().encode(),
                      value[half:].hex().encode())]
        del value
        return out

    def needles(self, forms=BASE_FORMS, derived=()):
        out = [self.needle(f) for f in forms]
        for spec in derived:
            out.extend(self.derived(spec))
        return out
