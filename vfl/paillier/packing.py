"""Packing: many fixed-point values in one Paillier plaintext, for protocols that only need sums.

A plaintext of a k-bit key holds `slots` signed integers of `slot_bits` bits:

    P = v_0 + v_1 * 2^s + v_2 * 2^(2s) + ... + v_(slots-1) * 2^((slots-1) s)   (mod n)

with s = slot_bits and slots = floor((k - 2) / s), so |P| < n/4. Each slot value
must stay within |v| < 2^(s-1) (the slot's *capacity*); then the decryptor
recovers every v exactly by balanced base-2^s digits of the centred P. Adding
two packed ciphertexts adds slotwise; raising one to a plaintext k multiplies
every slot by k. That is all a sum needs:

- `encrypt_packed(pk, values (rows, count))`: each row's `count` values in
  ceil(count / slots) ciphertexts. `X @ packed` then sums rows weighted by X
  (e.g. EM statistics: all K responsibilities of a row in one ciphertext, so
  the host does F multi-exponentiations instead of F * K).
- `pack(enc, bound)`: compress existing ciphertexts before they are decrypted
  (shift by c^(2^s) and add), e.g. the host packs F * B per-bin sums into
  F * B / slots ciphertexts so that the guest decrypts that many fewer.
- `PackedEncryptedArray.masked()`: a statistically hiding mask per slot,
  STAT_BITS (80) bits wider than the slot bound, for masked two-party steps
  (`decrypt_slots` / `unmask_slots`).

Overflow is refused, not wrapped: every packed array carries `bound`, a proven
upper bound on |slot value| (in integer units, i.e. scaled by 2^precision),
updated by every operation; an operation whose result could exceed the slot
capacity raises `PaillierError`. Choose the slot width with `headroom_bits`:
the bits the values may still grow by (sums over N rows: log2 N; products with
b-bit plaintext integers: b; a mask: MASK_HEADROOM_BITS).

The bound is written in the wire header, so whatever a protocol sends must be
packed with a bound computed from public values only (shapes, declared ranges,
precisions, key size), never from the data (`pack(..., bound=public)`).
"""

from __future__ import annotations

import math
import secrets
import struct
from fractions import Fraction
from typing import Any

import gmpy2
import numpy as np

from vfl.errors import PaillierError, WireFormatError
from vfl.paillier import _kernels
from vfl.paillier._kernels import IntVec
from vfl.paillier.array import EncryptedArray, _as_object, _concat, _is_int, _mulmod, _run_chunked
from vfl.paillier.encoding import DEFAULT_PRECISION_BITS, scaled_integers
from vfl.paillier.keys import PrivateKey, PublicKey
from vfl.paillier.wire import check_fingerprint, element_width, is_packed, parse_ciphertexts

MAGIC = b"VPK1"
# Statistical hiding of every slot mask: a mask is uniform over STAT_BITS bits more than the
# slot's bound, so the masked value is within statistical distance 2^-80 of the mask alone.
# The one constant every masked packed exchange uses (LR, row packing, GMM statistics).
STAT_BITS = 80
MASK_HEADROOM_BITS = STAT_BITS + 1  # slot headroom a packed value needs to be masked (`masked`)
_PACK_CHUNK = (16, 1024)


def public_int_bound(real: float, precision: int) -> int:
    """An integer bound on |round(v * 2^precision)| for |v| <= real (a public real bound)."""
    return int(np.ceil(np.ldexp(real, precision))) + 1


def check_packed_layout(enc: object, key: PublicKey, vshape: tuple[int, ...], slot_bits: int, precision: int,
                        bound: int, what: str = "packed values") -> PackedEncryptedArray:
    """A received packed array checked against the agreed layout: key, value shape, slot width,
    precision and declared bound at most `bound` (both parties derive these from public values)."""
    if not isinstance(enc, PackedEncryptedArray):
        raise PaillierError(f"expected {what} packed, got an unpacked ciphertext array")
    if enc.public_key != key:
        raise PaillierError(f"{what} encrypted under an unexpected key")
    got, want = (enc.vshape, enc.slot_bits, enc.precision), (tuple(vshape), slot_bits, precision)
    if got != want or enc.bound > bound:
        raise PaillierError(f"{what} with shape/slot bits/precision {got} and a bound of {enc.bound.bit_length()} "
                            f"bits, expected {want} within {bound.bit_length()} bits")
    return enc


def usable_bits(public_key: PublicKey) -> int:
    """Plaintext bits available to slots: k - 2, so that |P| < n/4."""
    return public_key.bits - 2


def slots_for(public_key: PublicKey, slot_bits: int) -> int:
    """How many slots of `slot_bits` bits fit one plaintext of this key."""
    if slot_bits < 2:
        raise PaillierError(f"slots must be at least 2 bits wide, got {slot_bits}")
    slots = usable_bits(public_key) // slot_bits
    if slots < 1:
        raise PaillierError(f"a {slot_bits}-bit slot does not fit a {public_key.bits}-bit key")
    return slots


def slot_bits_for(bound: int, headroom_bits: int = 0) -> int:
    """Slot width for integer values of magnitude <= `bound` that may grow by `headroom_bits`."""
    if headroom_bits < 0:
        raise PaillierError(f"headroom_bits must be >= 0, got {headroom_bits}")
    return max(int(bound), 1).bit_length() + headroom_bits + 1


def _pack_ints(ints: list[int], slot_bits: int, slots: int, n: int) -> list[int]:
    """Consecutive groups of `slots` signed ints -> packed residues mod n."""
    out = []
    for g in range(0, len(ints), slots):
        acc = 0
        for v in reversed(ints[g : g + slots]):
            acc = (acc << slot_bits) + v
        out.append(acc % n)
    return out


def _unpack_residue(r: int, n: int, slot_bits: int, count: int) -> list[int]:
    """A packed residue -> its `count` signed slot values (balanced digits of centred r)."""
    v = r - n if r > n // 2 else r
    full, half, mask = 1 << slot_bits, 1 << (slot_bits - 1), (1 << slot_bits) - 1
    out = []
    for _ in range(count):
        d = v & mask
        if d >= half:
            d -= full
        out.append(d)
        v = (v - d) >> slot_bits
    if v != 0:
        raise PaillierError("packed plaintext has bits above its last slot: wrong layout or overflow")
    return out


class PackedEncryptedArray(EncryptedArray):
    """Ciphertexts each holding `slots` fixed-point values of `slot_bits` bits.

    Values have the logical shape `vshape` ((count,) or (rows, count)); the
    ciphertexts are `cipher` of shape (rows, groups), groups = ceil(count / slots),
    row i's values in its row of ciphertexts, `slots` per ciphertext, low slot first.
    """

    packed = True

    def __init__(self, public_key: PublicKey, cipher: np.ndarray, precision: int, *, slot_bits: int,
                 count: int, bound: int, vshape: tuple[int, ...]) -> None:
        super().__init__(public_key, cipher, precision)
        self.slot_bits = int(slot_bits)
        self.slots = slots_for(public_key, self.slot_bits)
        self.count = int(count)
        self.bound = int(bound)
        self.vshape = tuple(int(s) for s in vshape)
        if cipher.ndim != 2 or cipher.shape[1] != -(-self.count // self.slots):
            raise PaillierError(f"packed ciphertexts of shape {cipher.shape} do not hold {self.count} "
                                f"values at {self.slots} per ciphertext")
        self._check_bound(self.bound)

    @property
    def capacity(self) -> int:
        """The largest |slot value| (integer units) a slot holds."""
        return (1 << (self.slot_bits - 1)) - 1

    def _check_bound(self, bound: int, what: str = "values") -> None:
        if bound > self.capacity:
            raise PaillierError(
                f"packed {what} could reach {bound.bit_length()} bits, more than the "
                f"{self.slot_bits}-bit slots hold ({self.slot_bits - 1} bits and a sign): "
                f"pack with more headroom_bits"
            )

    def _with(self, cipher: np.ndarray, bound: int, precision: int | None = None,
              vshape: tuple[int, ...] | None = None, what: str = "values") -> PackedEncryptedArray:
        self._check_bound(bound, what)
        return PackedEncryptedArray(self.public_key, cipher, self.precision if precision is None else precision,
                                    slot_bits=self.slot_bits, count=self.count, bound=bound,
                                    vshape=self.vshape if vshape is None else vshape)

    def _new(self, cipher: np.ndarray, precision: int | None = None) -> PackedEncryptedArray:
        return self._with(cipher, self.bound, precision)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the packed values (not of the ciphertexts)."""
        return self.vshape

    @property
    def rows(self) -> int:
        return self.cipher.shape[0]

    def __len__(self) -> int:
        return self.vshape[0]

    def __repr__(self) -> str:
        return (f"PackedEncryptedArray(shape={self.vshape}, precision={self.precision}, "
                f"slots={self.slots}x{self.slot_bits} bits, ciphertexts={self.cipher.size}, "
                f"key={self.public_key.fingerprint.hex()})")

    def __getitem__(self, index: object) -> PackedEncryptedArray:
        if len(self.vshape) != 2:
            raise PaillierError("only rows of a 2-D packed array can be selected")
        sub = self.cipher[index]
        if sub.ndim == 1:
            sub = sub[None, :]
        return self._with(sub, self.bound, vshape=(sub.shape[0], self.count))

    def reshape(self, *shape: int) -> EncryptedArray:
        raise PaillierError("packed arrays cannot be reshaped; decrypt or unpack first")

    @property
    def T(self) -> EncryptedArray:  # noqa: N802
        raise PaillierError("packed arrays cannot be transposed")

    # -- slot arithmetic ---------------------------------------------------------
    def _same_layout(self, other: PackedEncryptedArray) -> None:
        self._same_key(other)
        if (other.slot_bits, other.count, other.precision) != (self.slot_bits, self.count, self.precision):
            raise PaillierError("packed arrays with different layouts or precisions cannot be added")

    def with_precision(self, precision: int) -> PackedEncryptedArray:
        k = precision - self.precision
        if k < 0:
            raise PaillierError("cannot lower the precision of ciphertexts")
        if k == 0:
            return self
        bound = self.bound << k
        self._check_bound(bound)
        flat = self._pow_common(self._flat(), 1 << k)
        return self._with(_as_object(flat, self.cipher.shape), bound, precision)

    def __add__(self, other: Any) -> PackedEncryptedArray:
        if isinstance(other, PackedEncryptedArray):
            self._same_layout(other)
            a, b = np.broadcast_arrays(self.cipher, other.cipher)
            bound = self.bound + other.bound
            self._check_bound(bound, "sums")
            return self._with(_mulmod(a, b, self.public_key.nsquare), bound,
                              vshape=(a.shape[0], self.count) if len(self.vshape) == 2 else self.vshape)
        if isinstance(other, EncryptedArray):
            raise PaillierError("cannot add an unpacked EncryptedArray to a packed one")
        plain = np.broadcast_to(np.asarray(other), self._values2d_shape())
        ints = scaled_integers(plain, self.precision, what="add")
        bound = self.bound + _max_abs(ints)
        self._check_bound(bound, "sums")
        residues = [_pack_ints(row, self.slot_bits, self.slots, self.public_key.n) for row in ints.tolist()]
        m = _as_object([r for row in residues for r in row], self.cipher.shape)
        return self._with(self._add_plain_residues(self.cipher, m), bound)

    __radd__ = __add__

    def __neg__(self) -> PackedEncryptedArray:
        return self._new(_as_object(self._pow_common(self._flat(), -1), self.cipher.shape))

    def __sub__(self, other: Any) -> PackedEncryptedArray:
        if isinstance(other, EncryptedArray):
            return self + (-other)
        return self + (-np.asarray(other))

    def __rsub__(self, other: Any) -> PackedEncryptedArray:
        return (-self) + other

    def _values2d_shape(self) -> tuple[int, int]:
        return (self.rows, self.count)

    def mul(self, values: Any, precision: int | None = None) -> PackedEncryptedArray:
        """Multiply every slot of row i by values[i] (a scalar multiplies all rows)."""
        arr = np.asarray(values)
        if precision is None:
            precision = 0 if _is_int(arr) else DEFAULT_PRECISION_BITS
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] not in (1, self.rows)):
            raise PaillierError(f"packed rows are scaled by one value each: got shape {arr.shape} "
                                f"for {self.rows} rows")
        k = scaled_integers(arr, precision, what="multiply ciphertexts by")
        bound = self.bound * _max_abs(k)
        self._check_bound(bound, "products")
        per_row = np.broadcast_to(k.reshape(-1, 1) if k.ndim else k, self.cipher.shape)
        flat_c = self._flat()
        if per_row.dtype != object and len(np.unique(per_row)) == 1:
            out = self._pow_common(flat_c, int(per_row.flat[0]))
        else:
            fk = per_row.ravel()
            nsq = int(self.public_key.nsquare)
            out = _concat(_run_chunked("mul", len(flat_c), (64, 4096),
                                       lambda a, b: (nsq, IntVec(flat_c[a:b]), fk[a:b])))
        return self._with(_as_object(out, self.cipher.shape), bound, self.precision + precision)

    def __mul__(self, other: Any) -> PackedEncryptedArray:
        if isinstance(other, EncryptedArray):
            raise PaillierError("Paillier cannot multiply two ciphertexts")
        return self.mul(other)

    __rmul__ = __mul__

    def sum(self, axis: int | None = 0) -> PackedEncryptedArray:
        """Sum over rows (axis 0): shape (count,). Slot values are never summed across."""
        if axis not in (0, None) or len(self.vshape) != 2:
            raise PaillierError("packed arrays sum over their rows only (axis 0 of a 2-D array)")
        bound = self.bound * self.rows
        self._check_bound(bound, "sums")
        mod = self.public_key.nsquare
        cols = [_kernels.tree_product(self.cipher[:, g], mod) for g in range(self.cipher.shape[1])]
        out = np.empty((1, len(cols)), dtype=object)
        out[0, :] = cols
        return self._with(out, bound, vshape=(self.count,))

    def rmatmul(self, matrix: np.ndarray, precision: int | None = None) -> PackedEncryptedArray:
        """`matrix @ self` for a plaintext (m, rows) matrix: shape (m, count), slotwise.

        With a row's K values packed together this is X^T Gamma in F multi-
        exponentiations instead of F * K.
        """
        if len(self.vshape) != 2:
            raise PaillierError("matrix @ packed needs a 2-D packed array (rows, count)")
        mat = np.asarray(matrix)
        if mat.ndim != 2 or mat.shape[1] != self.rows:
            raise PaillierError(f"shape mismatch: {mat.shape} @ packed {self.vshape}")
        if precision is None:
            precision = 0 if _is_int(mat) else DEFAULT_PRECISION_BITS
        k = scaled_integers(mat, precision, what="multiply ciphertexts by")
        weight = max((sum(abs(int(v)) for v in row) for row in k.tolist()), default=0)
        bound = self.bound * weight
        self._check_bound(bound, "weighted sums")
        out = np.empty((mat.shape[0], self.cipher.shape[1]), dtype=object)
        for g in range(self.cipher.shape[1]):
            out[:, g] = self._multiexp(self.cipher[:, g].tolist(), k)
        return self._with(out, bound, self.precision + precision, vshape=(mat.shape[0], self.count))

    def group_sum(self, groups: np.ndarray, n_groups: int) -> PackedEncryptedArray:
        """Sums of rows per group id in [0, n_groups): shape (n_groups, count)."""
        g = np.asarray(groups)
        if len(self.vshape) != 2 or g.ndim != 1 or g.shape[0] != self.rows or not _is_int(g):
            raise PaillierError(f"packed group_sum needs one integer group per row: got {g.shape}")
        if g.size and (g.min() < 0 or g.max() >= n_groups):
            raise PaillierError(f"group index outside [0, {n_groups})")
        largest = int(np.bincount(g, minlength=n_groups).max()) if g.size else 0
        bound = self.bound * largest
        self._check_bound(bound, "sums")
        out = np.empty((n_groups, self.cipher.shape[1]), dtype=object)
        for col in range(self.cipher.shape[1]):
            enc = EncryptedArray(self.public_key, self.cipher[:, col].copy(), self.precision)
            out[:, col] = enc.group_sum(g, n_groups).cipher
        return self._with(out, bound, vshape=(n_groups, self.count))

    def rerandomize(self, strong: bool = True) -> PackedEncryptedArray:
        plain = EncryptedArray(self.public_key, self.cipher, self.precision).rerandomize(strong)
        return self._new(plain.cipher)

    def add_residues(self, residues: np.ndarray) -> EncryptedArray:
        raise PaillierError("packed arrays are masked per slot: use .masked(stat_bits)")

    def masked(self, stat_bits: int = STAT_BITS) -> tuple[PackedEncryptedArray, np.ndarray]:
        """Add a fresh uniform mask in [0, 2^(b + stat_bits)) to every slot, b = bits of `bound`.

        Returns (masked array, mask as an object array of ints of the value shape).
        The key owner decrypts v + r, which is within statistical distance
        2^-stat_bits of uniform, hence hides v. Needs stat_bits + 1 bits of headroom;
        fewer than STAT_BITS are refused.
        """
        if stat_bits < STAT_BITS:
            raise PaillierError(f"slot masks need at least {STAT_BITS} statistical bits, got {stat_bits}")
        width = max(self.bound, 1).bit_length() + stat_bits
        bound = self.bound + (1 << width)
        self._check_bound(bound, "masked values")
        mask = np.empty((self.rows, self.count), dtype=object)
        mask.ravel()[:] = [secrets.randbits(width) for _ in range(mask.size)]
        residues = [_pack_ints(row, self.slot_bits, self.slots, self.public_key.n) for row in mask.tolist()]
        m = _as_object([r for row in residues for r in row], self.cipher.shape)
        return self._with(self._add_plain_residues(self.cipher, m), bound), mask.reshape(self.vshape)

    # -- decryption side -----------------------------------------------------------
    def _slot_ints(self, residues: np.ndarray) -> np.ndarray:
        n = self.public_key.n
        out = np.empty((self.rows, self.count), dtype=object)
        for i, row in enumerate(np.asarray(residues, dtype=object).tolist()):
            vals: list[int] = []
            for g, r in enumerate(row):
                vals.extend(_unpack_residue(int(r), n, self.slot_bits, min(self.slots, self.count - g * self.slots)))
            out[i, :] = vals
        return out.reshape(self.vshape)

    def _decode_residues(self, residues: np.ndarray) -> np.ndarray:
        ints = self._slot_ints(residues)
        return _ints_to_float(ints, self.precision)

    def ciphertexts(self) -> EncryptedArray:
        """The raw ciphertexts (rows, groups) as a plain EncryptedArray (not decodable as values)."""
        return EncryptedArray(self.public_key, self.cipher, self.precision)

    # -- wire format ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return dumps_packed(self)


def _max_abs(ints: np.ndarray) -> int:
    if ints.size == 0:
        return 0
    if ints.dtype == object:
        return max(abs(int(v)) for v in ints.ravel().tolist())
    return int(np.abs(ints.astype(np.int64)).max())


def _ints_to_float(ints: np.ndarray, precision: int) -> np.ndarray:
    scale = 1 << precision
    flat = [int(v) / scale for v in np.asarray(ints, dtype=object).ravel().tolist()]
    return np.array(flat, dtype=np.float64).reshape(np.shape(ints))


def encrypt_packed(public_key: PublicKey, values: np.ndarray, precision: int | None = None,
                   headroom_bits: int = 0, slot_bits: int | None = None,
                   bound: int | None = None) -> PackedEncryptedArray:
    """Encrypt values of shape (count,) or (rows, count), `slots` per ciphertext per row.

    The slot width is `slot_bits`, or just wide enough for the largest value plus
    `headroom_bits` of growth. Encrypting under the own key takes the CRT path.
    `bound` (integer units) declares a public bound on |value| instead of the values'
    own peak, which the array's bound (and its wire header) would otherwise reveal;
    values beyond it are refused.
    """
    arr = np.asarray(values)
    if arr.ndim not in (1, 2):
        raise PaillierError(f"packed values must be 1-D or 2-D, got shape {arr.shape}")
    vshape = arr.shape
    arr2 = arr.reshape(1, -1) if arr.ndim == 1 else arr
    if precision is None:
        precision = 0 if _is_int(arr2) else DEFAULT_PRECISION_BITS
    ints = scaled_integers(arr2, precision)
    peak = _max_abs(ints)
    if bound is not None:
        if peak > bound:
            raise PaillierError(f"values of {peak.bit_length()} bits exceed the declared bound of "
                                f"{int(bound).bit_length()} bits")
        peak = int(bound)
    if slot_bits is None:
        slot_bits = slot_bits_for(peak, headroom_bits)
    slots = slots_for(public_key, slot_bits)
    residues = [_pack_ints(row, slot_bits, slots, public_key.n) for row in ints.tolist()]
    groups = -(-arr2.shape[1] // slots) if arr2.shape[1] else 0
    flat = [r for row in residues for r in row]
    cipher = _as_object(public_key.raw_encrypt(flat), (arr2.shape[0], groups))
    return PackedEncryptedArray(public_key, cipher, precision, slot_bits=slot_bits, count=arr2.shape[1],
                                bound=peak, vshape=vshape)


def pack(enc: EncryptedArray, bound: float | int, headroom_bits: int = 0,
         slot_bits: int | None = None) -> PackedEncryptedArray:
    """Compress ciphertexts of shape (count,) or (rows, count) into packed ones, by shifting and adding.

    `bound` is the caller's guarantee on |value| (in real units) of every element
    (e.g. the number of rows for per-bin event counts); slots are sized for it
    plus `headroom_bits`. Costs slot_bits squarings per packed value, far less
    than the decryptions it saves.
    """
    if isinstance(enc, PackedEncryptedArray):
        raise PaillierError("these ciphertexts are packed already")
    if enc.ndim not in (1, 2):
        raise PaillierError(f"pack() takes 1-D or 2-D ciphertext arrays, got shape {enc.shape}")
    if not np.isfinite(float(bound)) or bound < 0:
        raise PaillierError(f"pack() needs a finite, non-negative bound, got {bound!r}")
    pk = enc.public_key
    int_bound = math.ceil(Fraction(bound) * (1 << enc.precision))
    if slot_bits is None:
        slot_bits = slot_bits_for(int_bound, headroom_bits)
    slots = slots_for(pk, slot_bits)
    c2 = enc.cipher.reshape(1, -1) if enc.ndim == 1 else enc.cipher
    rows, count = c2.shape
    groups = -(-count // slots) if count else 0
    padded = np.empty((rows, groups * slots), dtype=object)
    padded[:] = _kernels.ONE  # Enc(0) with trivial randomness: adds nothing to empty top slots
    padded[:, :count] = c2
    flat = padded.ravel().tolist()  # row-major: group g of row i is flat[(i*groups+g)*slots : +slots]
    nsq = int(pk.nsquare)
    n_groups = rows * groups
    out = _concat(_run_chunked("pack", n_groups, _PACK_CHUNK,
                               lambda a, b: (nsq, IntVec(flat[a * slots : b * slots]), slots, slot_bits)))
    packed = PackedEncryptedArray(pk, _as_object(out, (rows, groups)), enc.precision, slot_bits=slot_bits,
                                  count=count, bound=int_bound, vshape=enc.shape)
    return packed


def decrypt_slots(private_key: PrivateKey, packed: PackedEncryptedArray) -> np.ndarray:
    """Exact integer slot values (object array of the value shape), e.g. masked values."""
    if not isinstance(packed, PackedEncryptedArray):
        raise PaillierError("decrypt_slots needs a PackedEncryptedArray")
    return packed._slot_ints(private_key.decrypt_raw(packed))


def decrypt_masked_residues(private_key: PrivateKey, masked: EncryptedArray) -> np.ndarray:
    """Masked values as residues mod n (random-looking to the key owner), in the values' shape.

    The key owner's side of every "mask, decrypt, unmask" exchange: a packed array gives
    its (masked) slot values, an ordinary one its plaintext residues.
    """
    if not isinstance(masked, PackedEncryptedArray):
        return private_key.decrypt_raw(masked)
    n = private_key.public_key.n
    ints = decrypt_slots(private_key, masked)
    out = np.empty(ints.shape, dtype=object)
    out.ravel()[:] = [int(v) % n for v in ints.ravel().tolist()]
    return out


def unmask_slots(values: np.ndarray, mask: np.ndarray, precision: int) -> np.ndarray:
    """Remove a slot mask (from `masked`) from decrypted slot integers; decode to float64."""
    v = np.asarray(values, dtype=object)
    m = np.asarray(mask, dtype=object)
    if v.shape != m.shape:
        raise PaillierError(f"{v.size} masked values for a mask of {m.size}")
    diff = np.empty(v.shape, dtype=object)
    diff.ravel()[:] = [int(a) - int(b) for a, b in zip(v.ravel().tolist(), m.ravel().tolist(), strict=True)]
    return _ints_to_float(diff, precision)


# -- wire format ------------------------------------------------------------------------
#   0  4   magic b"VPK1"
#   4  8   key fingerprint
#  12  2   precision (signed)
#  14  2   slot_bits
#  16  4   count (values per row)
#  20  4   rows
#  24  1   ndim of the value shape (1 or 2)
#  25  2   byte length L of bound;  27  L  bound (unsigned big-endian)
#  ..  2   element width w;  then rows * groups ciphertexts of w bytes


def dumps_packed(arr: PackedEncryptedArray) -> bytes:
    pk = arr.public_key
    w = element_width(pk)
    b = arr.bound.to_bytes(max(1, (arr.bound.bit_length() + 7) // 8), "big")
    head = (MAGIC + pk.fingerprint + struct.pack(">hHIIB", arr.precision, arr.slot_bits, arr.count,
                                                 arr.rows, len(arr.vshape))
            + struct.pack(">H", len(b)) + b + struct.pack(">H", w))
    return head + b"".join(gmpy2.mpz(c).to_bytes(w, "big") for c in arr.cipher.ravel().tolist())


def load_ciphertexts(data: bytes, public_key: PublicKey) -> EncryptedArray | PackedEncryptedArray:
    """A ciphertext array from its wire bytes, plain (`EncryptedArray.to_bytes`) or packed, under `public_key`."""
    return loads_packed(data, public_key) if is_packed(data) else EncryptedArray.from_bytes(data, public_key)


def loads_packed(data: bytes, public_key: PublicKey) -> PackedEncryptedArray:
    mv = memoryview(data)
    if len(mv) < 27:
        raise WireFormatError(f"packed ciphertext array truncated: {len(mv)} bytes, header needs 27")
    check_fingerprint(bytes(mv[4:12]), public_key)
    precision, slot_bits, count, rows, vndim = struct.unpack(">hHIIB", mv[12:25])
    (blen,) = struct.unpack(">H", mv[25:27])
    pos = 27
    if len(mv) < pos + blen + 2:
        raise WireFormatError("packed ciphertext array truncated inside its header")
    bound = int.from_bytes(mv[pos : pos + blen], "big")
    pos += blen
    (w,) = struct.unpack(">H", mv[pos : pos + 2])
    pos += 2
    if w != element_width(public_key):
        raise WireFormatError(f"element width {w} does not match the key ({element_width(public_key)})")
    if vndim not in (1, 2) or (vndim == 1 and rows != 1):
        raise WireFormatError(f"packed array with a {vndim}-D value shape of {rows} rows")
    if slot_bits < 2 or slot_bits > usable_bits(public_key):
        raise WireFormatError(f"packed slots of {slot_bits} bits do not fit this key")
    slots = usable_bits(public_key) // slot_bits
    groups = -(-count // slots)
    if bound >= 1 << (slot_bits - 1):
        raise WireFormatError(f"packed bound of {bound.bit_length()} bits exceeds its {slot_bits}-bit slots")
    cipher = parse_ciphertexts(mv, pos, rows * groups, w, public_key, what="packed ciphertext array")
    vshape = (count,) if vndim == 1 else (rows, count)
    try:
        return PackedEncryptedArray(public_key, cipher.reshape(rows, groups), precision, slot_bits=slot_bits,
                                    count=count, bound=bound, vshape=vshape)
    except PaillierError as exc:
        raise WireFormatError(f"malformed packed ciphertext array: {exc}") from None


__all__ = [
    "MASK_HEADROOM_BITS",
    "STAT_BITS",
    "check_packed_layout",
    "PackedEncryptedArray",
    "decrypt_slots",
    "encrypt_packed",
    "pack",
    "public_int_bound",
    "slot_bits_for",
    "slots_for",
    "unmask_slots",
]
