"""Reading and writing TFLite flatbuffers through the schema's object API."""

from __future__ import annotations

import numpy as np

# TensorType codes of the schema, with the NumPy dtype of one stored element.
DTYPES = {
    0: np.dtype(np.float32),
    1: np.dtype(np.float16),
    2: np.dtype(np.int32),
    3: np.dtype(np.uint8),
    4: np.dtype(np.int64),
    6: np.dtype(np.bool_),
    7: np.dtype(np.int16),
    9: np.dtype(np.int8),
    10: np.dtype(np.float64),
}
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string"}
TYPE_NAMES.update({6: "bool", 7: "int16", 9: "int8", 10: "float64", 16: "uint16"})

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
        model: The schema's `ModelT` object. Its `buffers` are replaced by aligned copies.

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
                builder.StartVector(1, len(raw), _BUFFER_ALIGNMENT)
                builder.head -= len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                data = builder.EndVector()
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
        copy = _AlignedBuffer()
        copy.data = buffer.data
        aligned.append(copy)
    model.buffers = aligned
    builder = _SharingBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def opcode_name(model, index: int) -> str:
    """Returns the builtin operator name (e.g. "FULLY_CONNECTED") of an operator code index."""
    code = model.operatorCodes[index]
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    for name, number in vars(schema().BuiltinOperator).items():
        if number == value and not name.startswith("_"):
            return name
    return f"BUILTIN_{value}"


def opcode_index(model, name: str) -> int:
    """Returns the index of a builtin operator code, adding the code if the model lacks it."""
    s = schema()
    value = getattr(s.BuiltinOperator, name)
    for i in range(len(model.operatorCodes)):
        if opcode_name(model, i) == name:
            return i
    code = s.OperatorCodeT()
    code.builtinCode = value
    # Codes above 127 live only in `builtinCode`; the deprecated byte holds a placeholder.
    code.deprecatedBuiltinCode = min(value, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def tensor_values(model, tensor) -> np.ndarray | None:
    """Returns a constant tensor's stored values (dense layout), or None if it has no data."""
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0 or tensor.type not in DTYPES or tensor.sparsity:
        return None
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
    values = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=DTYPES[tensor.type])
    if values.size != int(np.prod(shape)):
        return None
    return values.reshape(shape)
