"""What an export returns, and the errors it raises."""

from __future__ import annotations

import dataclasses

from tfprune.utils.table import format_table


class ConversionError(RuntimeError):
    """The Keras model could not be converted to TFLite builtin ops."""


class VerificationError(RuntimeError):
    """The written TFLite file failed to load, run, or match the Keras model."""


@dataclasses.dataclass(frozen=True)
class TensorRow:
    """One constant tensor of a `.tflite` file as stored.

    Attributes:
        name: The tensor name in the flatbuffer.
        shape: The dense shape the runtime sees.
        dtype: The element type ("float32", "int8", ...).
        sparsity: Fraction of zero entries in the dense tensor.
        layout: "dense", or the sparse layout (e.g. "CSR idx u8 seg u16 as [960, 245]").
        bytes: Bytes the tensor occupies in the file: values plus sparse index arrays.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    sparsity: float
    layout: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class ByteSplit:
    """Where every byte of a `.tflite` file goes; the parts add up to `total`.

    Attributes:
        weights: Constant values: kernels, biases and tables, dense or the values of sparse
            tensors.
        sparse_indices: The segment and index arrays of sparse tensors, with their tables.
        quantization: Scales and zero points, with their tables.
        names: Tensor names.
        graph: Everything else: operators, tensor tables, signatures, operator codes,
            alignment.
        total: The file size.

    Example:

    >>> print(ByteSplit(weights=900, sparse_indices=50, quantization=0, names=10, graph=40,
    ...                 total=1000))
    1,000 = weights 900 (90.0%) + sparse indices 50 + quantization 0 + names 10 + graph 40
    """

    weights: int
    sparse_indices: int
    quantization: int
    names: int
    graph: int
    total: int

    def __str__(self) -> str:
        share = self.weights / self.total if self.total else 0.0
        return (
            f"{self.total:,} = weights {self.weights:,} ({share:.1%}) + sparse indices "
            f"{self.sparse_indices:,} + quantization {self.quantization:,} + names "
            f"{self.names:,} + graph {self.graph:,}"
        )


@dataclasses.dataclass(frozen=True)
class Verification:
    """How the LiteRT outputs compared with Keras on the verification inputs.

    Attributes:
        samples: Number of input rows compared.
        max_abs_error: Largest absolute difference over all outputs.
        normalized_error: `max_abs_error / max(1, max |Keras output|)`.
        tolerance: The bound `normalized_error` had to stay under.
        top1_agreement: Fraction of rows whose arg-max agrees with Keras, over the rows where
            Keras's top-1 output leads the runner-up by at least 1% of the output scale (None
            for outputs with a single column, or without such rows).
        min_top1_agreement: The bound `top1_agreement` had to reach (None if not checked).
    """

    samples: int
    max_abs_error: float
    normalized_error: float
    tolerance: float
    top1_agreement: float | None
    min_top1_agreement: float | None

    @property
    def passed(self) -> bool:
        """Whether every bound held."""
        if self.normalized_error > self.tolerance:
            return False
        if self.min_top1_agreement is None or self.top1_agreement is None:
            return True
        return self.top1_agreement >= self.min_top1_agreement


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `to_tflite` wrote.

    Attributes:
        path: Where the `.tflite` file is.
        bytes: Its size.
        dense_float32_bytes: The size of the same model exported dense, in float32.
        quantize: The quantization mode (None for float32).
        sparse: Whether sparse layouts were allowed.
        tensors: One `TensorRow` per constant tensor in the file.
        verification: The comparison with Keras, or None when `verify=False`.
        batch_size: The batch size the file's inputs are fixed to, or None when the file takes
            any batch. Defaults to None.
        prefer: What the sparse layouts were chosen for, "size" or "speed". Defaults to "size".
        byte_split: Where the file's bytes go (`ByteSplit`), or None. Defaults to None.

    Example:

    >>> result = ExportResult(path="m.tflite", bytes=139_936,
    ...                       dense_float32_bytes=1_069_288, quantize=None, sparse=True,
    ...                       tensors=(), verification=None)
    >>> round(result.ratio, 3)
    0.131
    >>> print(str(result).splitlines()[0])
    m.tflite: 139,936 bytes (13.1% of dense float32, 1,069,288 bytes); quantize=None, sparse=True
    """

    path: str
    bytes: int
    dense_float32_bytes: int
    quantize: str | None
    sparse: bool
    tensors: tuple[TensorRow, ...]
    verification: Verification | None
    batch_size: int | None = None
    prefer: str = "size"
    byte_split: ByteSplit | None = None

    @property
    def ratio(self) -> float:
        """`bytes / dense_float32_bytes`."""
        return self.bytes / self.dense_float32_bytes

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.bytes:,} bytes ({self.ratio:.1%} of dense float32, "
            f"{self.dense_float32_bytes:,} bytes); quantize={self.quantize!r}, "
            f"sparse={self.sparse}"
            + ("" if self.batch_size is None else f", batch_size={self.batch_size}")
            + ("" if self.prefer == "size" else f", prefer={self.prefer!r}"),
            format_tensor_table(self.tensors),
        ]
        if self.byte_split is not None:
            lines.append(f"bytes: {self.byte_split}")
        v = self.verification
        if v is None:
            lines.append("verification: skipped")
        else:
            agreement = (
                "" if v.top1_agreement is None else f", top-1 agreement {v.top1_agreement:.3f}"
            )
            lines.append(
                f"verification: {'passed' if v.passed else 'FAILED'} on {v.samples} rows, "
                f"max abs error {v.max_abs_error:.3g} (normalized {v.normalized_error:.3g} <= "
                f"{v.tolerance:g}){agreement}"
            )
        return "\n".join(lines)


def format_tensor_table(rows) -> str:
    """Formats `TensorRow`s as an aligned text table, with a total line."""
    body = [
        (
            r.name if len(r.name) <= 48 else r.name[:45] + "...",
            "x".join(str(d) for d in r.shape) or "scalar",
            r.dtype,
            f"{r.sparsity:.1%}",
            r.layout,
            f"{r.bytes:,}",
        )
        for r in rows
    ]
    footer = ("total", "", "", "", "", f"{sum(r.bytes for r in rows):,}")
    header = ("tensor", "shape", "dtype", "sparsity", "layout", "bytes")
    return format_table(header, body, right=(3, 5), footer=footer)
