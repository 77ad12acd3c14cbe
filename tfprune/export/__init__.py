"""The deploy stage: pruned Keras model -> small, verified TFLite (LiteRT) flatbuffer.

Re-exports only. TensorFlow and LiteRT are imported inside the functions that need them, so
importing this package is cheap.
"""

from __future__ import annotations

from tfprune.export.compare import CompareRow, compare_variants, format_compare_table
from tfprune.export.describe import describe_tflite
from tfprune.export.result import (
    ByteSplit,
    ConversionError,
    ExportResult,
    TensorRow,
    Verification,
    VerificationError,
)
from tfprune.export.tflite import to_tflite

__all__ = [
    "ByteSplit",
    "CompareRow",
    "ConversionError",
    "ExportResult",
    "TensorRow",
    "Verification",
    "VerificationError",
    "compare_variants",
    "describe_tflite",
    "format_compare_table",
    "to_tflite",
]
