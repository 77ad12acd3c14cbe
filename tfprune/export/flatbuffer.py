"""Reading and writing TFLite flatbuffers through the schema's object API."""

from __future__ import annotations

import copy

import numpy as np

# Tensor data is read in place by the runtime, so every buffer starts on a 16-byte boundary as
# the converter's own output does.
_BUFFER_ALIGNMENT = 16


def schema():
    """Returns the generated TFLite schema module shipped with LiteRT."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def read_model(data: bytes):
    """Parses flatbuffer bytes into a mutable `ModelT`.

    Args:
        data: The bytes of a `.tflite` file.

    Returns:
        The schema's `ModelT` object.

    Raises:
        ValueError: If the bytes are not a complete TFLite flatbuffer.
    """
    s = schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(
            "Not a TFLite flatbuffer (the file identifier 'TFL3' is missing). "
            f"Received: {len(data)} bytes starting with {bytes(data[:8])!r}"
        )
    try:
        model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as error:  # a truncated buffer fails at any depth with any error class
        raise ValueError(
            f"Truncated or corrupt TFLite flatbuffer ({type(error).__name__}: {error}). "
            f"Received: {len(data)} bytes"
        ) from None
    if not model.subgraphs:
        raise ValueError("TFLite flatbuffer holds no subgraph. Received: 0 subgraphs")
    return model


def write_model(model) -> bytes:
    """Serializes a `ModelT` with every buffer aligned to 16 bytes.

    Args:
        model: The schema's `ModelT` object (left unchanged).

    Returns:
        The flatbuffer bytes, file identifier "TFL3".
    """
    import flatbuffers

    s = schema()

    class _AlignedBuffer(s.BufferT):
        def Pack(self, builder):  # noqa: N802 - the schema's method name
            data = None
            if self.data is not None and len(self.data):
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                # Padding so that the bytes end on the alignment; the builder writes backwards
                # and the finished buffer is a multiple of it, so they also start on it.
                builder.Prep(_BUFFER_ALIGNMENT, len(raw))
                data = builder.CreateByteVector(raw)
            s.BufferStart(builder)
            if data is not None:
                s.BufferAddData(builder, data)
            return s.BufferEnd(builder)

    class _SharingBuilder(flatbuffers.Builder):
        """Writes each distinct string and array once; equal ones share the offset.

        A flatbuffer may reference the same vector from several tables. Converter output
        repeats many: the all-zero per-channel zero points of a weight and of its bias, equal
        shapes, empty names.
        """

        def __init__(self, size: int):
            super().__init__(size)
            self.written: dict[tuple, int] = {}

        def CreateString(self, text, encoding="utf-8", errors="strict"):  # noqa: N802
            key = ("string", text)
            if key not in self.written:
                self.written[key] = super().CreateString(text, encoding, errors)
            return self.written[key]

        def CreateNumpyVector(self, x):  # noqa: N802
            key = (x.dtype.str, x.shape, x.tobytes())
            if key not in self.written:
                self.written[key] = super().CreateNumpyVector(x)
            return self.written[key]

    aligned = []
    for buffer in model.buffers:
        twin = _AlignedBuffer()
        twin.data = buffer.data
        aligned.append(twin)
    packed = copy.copy(model)  # a shallow copy: the caller's model keeps its buffers
    packed.buffers = aligned
    builder = _SharingBuilder(1024)
    builder.Finish(packed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
