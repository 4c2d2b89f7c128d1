"""TF2 tensor scalars: the value of each rank-0 float TensorProto that `tf.summary.scalar` writes, vectorised.

A value may sit in tensor_content (float/double/half/bfloat16 bytes) or in a typed field (float_val,
double_val, half_val: packed or not); any other shape or encoding is left to protobuf (`needs_slow_path`).
"""

from __future__ import annotations

import numpy as np

from analyzer.ingest import protowalk as pw

# TensorProto dtypes the scalars plugin can hold.
_DT_FLOAT, _DT_DOUBLE, _DT_BFLOAT16, _DT_HALF = 1, 2, 14, 19
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5  # protobuf wire types


def tensor_scalars(buf: np.ndarray, off: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, is_rank0_float, needs_slow_path) for each TensorProto."""
    n = off.size
    tf = pw.walk(buf, off, off + length)
    dtype = np.zeros(n, np.int64)
    m, v, _ = tf.select(1, _VARINT)
    dtype[m] = v.astype(np.int64)
    shape_len = np.zeros(n, np.int64)
    m, _, ln = tf.select(2, _BYTES)
    shape_len[m] = ln
    value = np.full(n, np.nan)
    found = np.zeros(n, dtype=bool)

    def put(msg: np.ndarray, vals: np.ndarray) -> None:
        value[msg] = vals
        found[msg] = True

    for number, wire, width, want_dtype, conv in (
        (4, _BYTES, 4, _DT_FLOAT, "<f4"), (4, _BYTES, 8, _DT_DOUBLE, "<f8"),
        (4, _BYTES, 2, _DT_HALF, "<f2"), (5, _BYTES, 4, _DT_FLOAT, "<f4"),
        (5, _FIXED32, 4, _DT_FLOAT, "<f4"), (6, _BYTES, 8, _DT_DOUBLE, "<f8"),
        (6, _FIXED64, 8, _DT_DOUBLE, "<f8"),
    ):
        m, v, ln = tf.select(number, wire)
        hit = (ln == width) & (dtype[m] == want_dtype)
        if hit.any():
            put(m[hit], pw.read_at(buf, v[hit], conv).astype(np.float64))
    m, v, ln = tf.select(4, _BYTES)  # bfloat16: the high half of a float32
    hit = (ln == 2) & (dtype[m] == _DT_BFLOAT16)
    if hit.any():
        bits = pw.read_at(buf, v[hit], "<u2").astype(np.uint32) << np.uint32(16)
        put(m[hit], bits.view(np.float32).astype(np.float64))
    for wire in (_VARINT, _BYTES):  # half_val / bfloat16 via half_val: uint16 bits in a varint
        m, v, ln = tf.select(13, wire)
        if wire == _BYTES:
            packed = ln > 0
            m, v = m[packed], v[packed]
            bits, _ = pw.read_varints(buf, v.astype(np.int64)) if m.size else (np.zeros(0, np.uint64), None)
        else:
            bits = v
        if m.size:
            b16 = bits.astype(np.uint16)
            half = b16.view(np.float16).astype(np.float64)
            bf = (b16.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
            put(m, np.where(dtype[m] == _DT_BFLOAT16, bf, half))
    float_dtypes = np.isin(dtype, (_DT_FLOAT, _DT_DOUBLE, _DT_HALF, _DT_BFLOAT16))
    ok = found & (shape_len == 0) & ~tf.bad
    slow = float_dtypes & ~ok  # e.g. shape [1] or an unusual encoding: let protobuf decide
    return value, ok, slow
