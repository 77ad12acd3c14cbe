"""The quantization modes: the one table of what each mode is and how it is checked.

`to_tflite` turns its `quantize` argument into a `Mode` once (`check_quantize`); conversion,
verification and the file's batch size read the mode's fields, never the string again.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Mode:
    """One quantization mode of `to_tflite`.

    Attributes:
        quantize: The value of `to_tflite`'s `quantize` argument (None for float32).
        label: Its name in tables and on the command line.
        tolerance: Bound on max |LiteRT - Keras| / max(1, max |Keras|). Float32 differs from
            Keras only by summation order; float16 rounds weights to 11 significant bits; the
            integer modes round weights (and for "int8" activations) to 8 bits.
        min_top1_agreement: Bound on top-1 agreement with Keras over decisive rows, or None
            when only the error bound is checked.
        float16_weights: Whether weights are stored as float16.
        integer_activations: Whether activations are quantized too (full-integer kernels,
            calibrated on representative data, which is then required).
    """

    quantize: str | None
    label: str
    tolerance: float
    min_top1_agreement: float | None
    float16_weights: bool = False
    integer_activations: bool = False

    @property
    def quantized(self) -> bool:
        """Whether the converter optimizes (quantizes) at all."""
        return self.quantize is not None

    @property
    def needs_data(self) -> bool:
        """Whether calibration data is required."""
        return self.integer_activations


MODES: dict[str | None, Mode] = {
    m.quantize: m
    for m in (
        Mode(None, "float32", 1e-4, None),
        Mode("float16", "float16", 1e-2, None, float16_weights=True),
        Mode("dynamic", "dynamic", 0.1, 0.9),
        Mode("int8", "int8", 0.2, 0.9, integer_activations=True),
    )
}
QUANTIZE_MODES = tuple(MODES)
FLOAT32 = MODES[None]


def check_quantize(quantize: object) -> Mode:
    """Returns the mode of `quantize`, or raises.

    Raises:
        TypeError: If `quantize` is neither None nor a string.
        ValueError: If it names no mode.
    """
    if quantize is not None and not isinstance(quantize, str):
        raise TypeError(
            "Argument `quantize` must be None or a string. "
            f"Received: quantize={quantize!r} of type {type(quantize).__name__}"
        )
    if quantize not in MODES:
        shown = ", ".join(repr(q) if q else "None" for q in MODES)
        raise ValueError(
            f"Argument `quantize` must be one of {shown}. Received: quantize={quantize!r}"
        )
    return MODES[quantize]
