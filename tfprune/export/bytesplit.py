"""Where every byte of a `.tflite` file goes, read from the file's own layout.

A flatbuffer is a graph of tables and vectors at known positions. This module follows the few
fields that hold weights, sparse indices, quantization parameters and names, marks the bytes
each occupies (every vector, string and table once, however many tensors share it), and calls
the rest graph tables: operators, tensor tables, shapes, signatures, vtables, length prefixes
and alignment. The parts add up to the file size for a file from any writer.
"""

from __future__ import annotations

import numpy as np

from tfprune.export.graph import schema
from tfprune.export.result import ByteSplit

# Field slots of the schema tables read here, in the order schema.fbs declares them (a test
# checks them against the generated schema module).
FIELDS = {
    "Model": {"subgraphs": 2, "buffers": 4},
    "SubGraph": {"tensors": 0},
    "Tensor": {"name": 3, "quantization": 4, "sparsity": 6},
    "QuantizationParameters": {"min": 0, "max": 1, "scale": 2, "zero_point": 3, "details": 5},
    "SparsityParameters": {"traversal_order": 0, "block_map": 1, "dim_metadata": 2},
    "DimensionMetadata": {
        "array_segments_type": 2,
        "array_segments": 3,
        "array_indices_type": 4,
        "array_indices": 5,
    },
    "Buffer": {"data": 0, "offset": 1, "size": 2},
    "Int32Vector": {"values": 0},
}
_WEIGHTS, _SPARSE, _QUANTIZATION, _NAMES = 1, 2, 3, 4
_INDEX_WIDTHS = {"Int32Vector": 4, "Uint16Vector": 2, "Uint8Vector": 1}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.owner = np.zeros(len(data), dtype=np.int8)

    def _int(self, pos: int, size: int, signed: bool = False) -> int:
        return int.from_bytes(self.data[pos : pos + size], "little", signed=signed)

    def _field(self, table: int, slot: int) -> int | None:
        vtable = table - self._int(table, 4, signed=True)
        if 4 + 2 * slot >= self._int(vtable, 2):
            return None
        offset = self._int(vtable + 4 + 2 * slot, 2)
        return table + offset if offset else None

    def scalar(self, table: int, slot: int, size: int) -> int:
        pos = self._field(table, slot)
        return 0 if pos is None else self._int(pos, size)

    def ref(self, table: int, slot: int) -> int | None:
        """The position of the table, vector or string a field points to."""
        pos = self._field(table, slot)
        return None if pos is None else pos + self._int(pos, 4)

    def length(self, vector: int) -> int:
        return self._int(vector, 4)

    def elements(self, vector: int | None) -> list[int]:
        """The positions of the tables a vector of tables points to."""
        if vector is None:
            return []
        return [
            vector + 4 + 4 * i + self._int(vector + 4 + 4 * i, 4)
            for i in range(self.length(vector))
        ]

    def mark(self, start: int, end: int, category: int) -> None:
        span = self.owner[start:end]
        span[span == 0] = category

    def mark_vector(self, vector: int | None, itemsize: int, category: int, extra: int = 0):
        if vector is not None:
            self.mark(vector, vector + 4 + itemsize * self.length(vector) + extra, category)

    def mark_table(self, table: int | None, category: int) -> None:
        if table is not None:
            vtable = table - self._int(table, 4, signed=True)
            self.mark(table, table + self._int(vtable + 2, 2), category)


def split(data: bytes) -> ByteSplit:
    """Splits the bytes of a `.tflite` file (see the module docstring).

    Args:
        data: The file's bytes, a valid TFLite flatbuffer.

    Returns:
        The `ByteSplit`; `weights` counts the bytes of buffer data only.
    """
    r = _Reader(data)
    f = FIELDS
    root = r._int(0, 4)
    for buffer in r.elements(r.ref(root, f["Model"]["buffers"])):
        vector = r.ref(buffer, f["Buffer"]["data"])
        if vector is not None:
            r.mark(vector + 4, vector + 4 + r.length(vector), _WEIGHTS)
        offset = r.scalar(buffer, f["Buffer"]["offset"], 8)
        if offset > 1:  # data stored after the flatbuffer (files over 2 GB)
            r.mark(offset, offset + r.scalar(buffer, f["Buffer"]["size"], 8), _WEIGHTS)
    for subgraph in r.elements(r.ref(root, f["Model"]["subgraphs"])):
        for tensor in r.elements(r.ref(subgraph, f["SubGraph"]["tensors"])):
            _mark_sparsity(r, r.ref(tensor, f["Tensor"]["sparsity"]))
            quantization = r.ref(tensor, f["Tensor"]["quantization"])
            if quantization is not None:
                q = f["QuantizationParameters"]
                r.mark_table(quantization, _QUANTIZATION)
                for name, itemsize in (("min", 4), ("max", 4), ("scale", 4), ("zero_point", 8)):
                    r.mark_vector(r.ref(quantization, q[name]), itemsize, _QUANTIZATION)
                r.mark_table(r.ref(quantization, q["details"]), _QUANTIZATION)
            # A string is a vector of bytes with a terminating zero.
            r.mark_vector(r.ref(tensor, f["Tensor"]["name"]), 1, _NAMES, extra=1)
    counts = np.bincount(r.owner, minlength=5)
    parts = {
        "weights": int(counts[_WEIGHTS]),
        "sparse_indices": int(counts[_SPARSE]),
        "quantization": int(counts[_QUANTIZATION]),
        "names": int(counts[_NAMES]),
    }
    return ByteSplit(graph=len(data) - sum(parts.values()), total=len(data), **parts)


def _mark_sparsity(r: _Reader, sparsity: int | None) -> None:
    if sparsity is None:
        return
    widths = {
        getattr(schema().SparseIndexVector, name): width for name, width in _INDEX_WIDTHS.items()
    }
    s = FIELDS["SparsityParameters"]
    d = FIELDS["DimensionMetadata"]
    r.mark_table(sparsity, _SPARSE)
    r.mark_vector(r.ref(sparsity, s["traversal_order"]), 4, _SPARSE)
    r.mark_vector(r.ref(sparsity, s["block_map"]), 4, _SPARSE)
    dims = r.ref(sparsity, s["dim_metadata"])
    r.mark_vector(dims, 4, _SPARSE)
    for dim in r.elements(dims):
        r.mark_table(dim, _SPARSE)
        for array in ("array_segments", "array_indices"):
            table = r.ref(dim, d[array])
            if table is None:
                continue
            r.mark_table(table, _SPARSE)
            width = widths.get(r.scalar(dim, d[array + "_type"], 1), 1)
            r.mark_vector(r.ref(table, FIELDS["Int32Vector"]["values"]), width, _SPARSE)
