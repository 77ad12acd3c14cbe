"""Tensor names in the written file: the signature's for inputs and outputs, Keras's for weights.

The converter names a tensor after the TensorFlow ops it came from, with name-scope suffixes
(`lenet_300_100_1/fc1_1/MatMul`) that cannot be mapped back to Keras layers by name: `dense_1`
there may be the layer `dense` or the layer `dense_1`. A weight is therefore matched by value:
it is named after the Keras variable (`fc1/kernel`) whose values it holds, in the layout of its
operator, within the rounding of its type. A tensor gets a Keras name only when it is not all
zeros, exactly one variable matches it, no other tensor matches that variable, and every
operator that reads it (one, or each step of an unrolled recurrent layer) reads it in the same
role; otherwise it keeps the last op of its converter name. Every other tensor loses its name.
"""

from __future__ import annotations

import collections

import numpy as np

from tfprune.export import flatbuffer

_KERNELS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
# The input slots of each operator that hold parameters: kernel weights and biases, and the
# table an Embedding's GATHER reads.
_PARAMETER_SLOTS = {name: (1, 2) for name in _KERNELS} | {"GATHER": (0,)}


def _keras_layout(op: str, slot: int, array: np.ndarray) -> np.ndarray | None:
    """A Keras weight as the operator stores it, or None if it cannot be that input."""
    if slot == 2:
        return array if array.ndim == 1 else None
    if op == "GATHER":
        return array if array.ndim == 2 else None
    if op == "FULLY_CONNECTED" and array.ndim == 2:
        return array.T
    if op == "CONV_2D" and array.ndim == 4:
        return array.transpose(3, 0, 1, 2)
    if op == "DEPTHWISE_CONV_2D" and array.ndim == 4:
        h, w, channels, multiplier = array.shape
        return array.reshape(1, h, w, channels * multiplier)
    return None


def _stored_values(model, tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """The real values a constant holds, and how far each may be from its source by rounding."""
    values = flatbuffer.tensor_values(model, tensor)
    if values is None:
        return None
    values = values.astype(np.float64)
    q = tensor.quantization
    if q is not None and q.scale is not None and len(q.scale):
        shape = [1] * values.ndim
        if len(q.scale) > 1:
            if values.ndim == 0 or len(q.scale) != values.shape[q.quantizedDimension]:
                return None
            shape[q.quantizedDimension] = -1
        scale = np.asarray(q.scale, dtype=np.float64).reshape(shape)
        zero = 0 if q.zeroPoint is None else np.asarray(q.zeroPoint, np.float64).reshape(shape)
        return (values - zero) * scale, np.broadcast_to(0.5 * scale, values.shape)
    if tensor.type == 1:  # float16 keeps 11 significant bits
        return values, np.abs(values) * 2.0**-11 + 2.0**-24
    return values, np.zeros_like(values)


def _parameter_uses(model, subgraph) -> dict[int, set[tuple[str, int]]]:
    """Constant parameters (also through a DEQUANTIZE) -> every (operator, slot) reading them."""
    produced_by = {}
    for op in subgraph.operators:
        for t in np.asarray(op.outputs).tolist():
            produced_by[t] = op
    found: dict[int, set[tuple[str, int]]] = {}
    for op in subgraph.operators:
        name = flatbuffer.opcode_name(model, op.opcodeIndex)
        inputs = np.asarray(op.inputs).tolist()
        for slot in _PARAMETER_SLOTS.get(name, ()):
            if slot >= len(inputs):
                continue
            t = inputs[slot]
            source = produced_by.get(t)
            if source is not None and flatbuffer.opcode_name(model, source.opcodeIndex) == (
                "DEQUANTIZE"
            ):
                t = int(source.inputs[0])
            if t >= 0 and subgraph.tensors[t].buffer != 0:
                found.setdefault(t, set()).add((name, slot))
    return found


def _parameters(model, subgraph) -> dict[int, tuple[str, int]]:
    """Constant parameters read in a single role -> that (operator, slot)."""
    return {
        t: next(iter(uses))
        for t, uses in _parameter_uses(model, subgraph).items()
        if len(uses) == 1
    }


def _labels(keras_model) -> list[tuple[str, np.ndarray]]:
    """(name, values) of every Keras variable: `layer/variable`, the full path if ambiguous."""
    import keras

    variables = list({id(v): v for v in keras_model.weights}.values())
    short = ["/".join(v.path.split("/")[-2:]) for v in variables]
    counts = collections.Counter(short)
    return [
        (label if counts[label] == 1 else v.path, keras.ops.convert_to_numpy(v))
        for label, v in zip(short, variables, strict=True)
    ]


def _keras_names(model, subgraph, keras_model) -> dict[int, str]:
    labels = _labels(keras_model)
    matches = {}
    for t, (op, slot) in _parameters(model, subgraph).items():
        stored = _stored_values(model, subgraph.tensors[t])
        if stored is None:
            continue
        values, tolerance = stored
        if not np.any(values):
            continue  # zeros identify nothing: the converter also makes them for absent biases
        found = []
        for label, array in labels:
            expected = _keras_layout(op, slot, array)
            if expected is not None and expected.shape == values.shape:
                if np.all(np.abs(values - expected) <= tolerance * (1 + 1e-6)):
                    found.append(label)
        if len(found) == 1:
            matches[t] = found[0]
    taken = collections.Counter(matches.values())
    return {t: label for t, label in matches.items() if taken[label] == 1}


def name_tensors(model, keras_model) -> None:
    """Renames the tensors of a parsed converter model in place (see the module docstring).

    Args:
        model: A `ModelT` from `flatbuffer.read_model`, before any sparse rewrite.
        keras_model: The plain Keras model it was converted from.
    """
    for index, subgraph in enumerate(model.subgraphs):
        names = {}
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex == index:
                for entry in list(signature.inputs or []) + (signature.outputs or []):
                    names[entry.tensorIndex] = entry.name
        boundary = set(np.asarray(subgraph.inputs).tolist() + np.asarray(subgraph.outputs).tolist())
        parameters = _parameters(model, subgraph)
        keras_names = _keras_names(model, subgraph, keras_model)
        for t, tensor in enumerate(subgraph.tensors):
            if t in names:
                tensor.name = names[t]
            elif t in boundary:
                continue
            elif t in keras_names:
                tensor.name = keras_names[t].encode()
            elif t in parameters:
                # A fused name ("a/MatMul;a/Relu;a/BiasAdd") ends with the op that reads it.
                tensor.name = tensor.name.rsplit(b";", 1)[-1]
            else:
                tensor.name = b""
