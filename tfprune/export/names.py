"""Tensor names in the written file: the signature's for inputs and outputs, Keras's for weights.

The converter names a tensor after the TensorFlow ops it came from, with name-scope suffixes
(`lenet_300_100_1/fc1_1/MatMul`) that cannot be mapped back to Keras layers by name: `dense_1`
there may be the layer `dense` or the layer `dense_1`. A weight is therefore matched by value:
it is named after the Keras variable (`fc1/kernel`) whose values it holds, in the layout of its
operator (see `ops.py`), within the rounding of its type. A tensor gets a Keras name only when
it is not all zeros, exactly one variable matches it, no other tensor matches that variable,
and every operator that reads it (one, or each step of an unrolled recurrent layer) reads it in
the same role; otherwise a parameter keeps the last op of its converter name. Every other
tensor loses its name.

The runtime reads no tensor name (the signature runner finds inputs and outputs through the
signature defs), so `drop_names` may then remove all but the inputs' and outputs'.
"""

from __future__ import annotations

import collections

import numpy as np

from tfprune.export import ops
from tfprune.export.graph import Graph, Subgraph, shape_of, tensor_type
from tfprune.models.registry import prunable_weights, prunes_itself
from tfprune.models.walk import walk


def _stored_values(graph: Graph, tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """The real values a constant holds, and how far each may be from its source by rounding."""
    values = graph.values(tensor)
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
    if tensor.type == tensor_type("FLOAT16"):  # float16 keeps 11 significant bits
        return values, np.abs(values) * 2.0**-11 + 2.0**-24
    return values, np.zeros_like(values)


def parameter_roles(subgraph: Subgraph) -> dict[int, ops.Parameter]:
    """Constants read as a parameter in one single role (operator and slot) -> that parameter."""
    roles = {}
    for t, reads in ops.constant_reads(subgraph).items():
        as_parameter = [read for read in reads if read.parameter is not None]
        if len({(read.name, read.slot) for read in as_parameter}) == 1:
            roles[t] = as_parameter[0].parameter
    return roles


def _labels(keras_model) -> list[tuple[str, object]]:
    """(name, variable) of every Keras variable: `layer/variable`, the full path if ambiguous."""
    variables = list({id(v): v for v in keras_model.weights}.values())
    short = ["/".join(v.path.split("/")[-2:]) for v in variables]
    counts = collections.Counter(short)
    return [
        (label if counts[label] == 1 else v.path, v)
        for label, v in zip(short, variables, strict=True)
    ]


def prunable_labels(keras_model) -> set[str]:
    """The names `name_tensors` gives the weights that pruning masks (kernels, tables)."""
    prunable = {
        id(w)
        for layer in walk(keras_model)
        if prunes_itself(layer)
        for w in prunable_weights(layer)
    }
    return {label for label, v in _labels(keras_model) if id(v) in prunable}


def _keras_names(subgraph: Subgraph, roles: dict[int, ops.Parameter], keras_model) -> dict:
    import keras

    labels = [(label, keras.ops.convert_to_numpy(v)) for label, v in _labels(keras_model)]
    matches = {}
    # A constant that is no operator's parameter (a weight multiplied elementwise, say) is
    # matched as stored, in the variable's own shape.
    others = {
        t: ops.Parameter(-1, "other", lambda array: [array], False)
        for t in ops.constant_reads(subgraph)
        if t not in roles and len(shape_of(subgraph.tensors[t])) >= 2
    }
    for t, parameter in {**roles, **others}.items():
        stored = _stored_values(subgraph.graph, subgraph.tensors[t])
        if stored is None:
            continue
        values, tolerance = stored
        if not np.any(values):
            continue  # zeros identify nothing: the converter also makes them for absent biases
        found = []
        for label, array in labels:
            for expected in parameter.layouts(array):
                if expected.shape == values.shape and np.all(
                    np.abs(values - expected) <= tolerance * (1 + 1e-6)
                ):
                    found.append(label)
                    break
        if len(found) == 1:
            matches[t] = found[0]
    taken = collections.Counter(matches.values())
    return {t: label for t, label in matches.items() if taken[label] == 1}


def name_tensors(graph: Graph, keras_model) -> None:
    """Renames the tensors of a converted model in place (see the module docstring).

    Args:
        graph: The converter's model, before any sparse rewrite.
        keras_model: The plain Keras model it was converted from.
    """
    for subgraph in graph.subgraphs:
        names = {entry.tensorIndex: entry.name for entry in subgraph.signature_entries()}
        boundary = subgraph.boundary
        roles = parameter_roles(subgraph)
        keras_names = _keras_names(subgraph, roles, keras_model)
        for t, tensor in enumerate(subgraph.tensors):
            if t in names:
                tensor.name = names[t]
            elif t in boundary:
                continue
            elif t in keras_names:
                tensor.name = keras_names[t].encode()
            elif t in roles:
                # A fused name ("a/MatMul;a/Relu;a/BiasAdd") ends with the op that reads it.
                tensor.name = tensor.name.rsplit(b";", 1)[-1]
            else:
                tensor.name = b""


def drop_names(graph: Graph) -> None:
    """Removes the name of every tensor but the subgraphs' inputs and outputs.

    Those keep theirs: the interpreter's `get_input_details()` and `get_output_details()`
    report them, and code that looks tensors up there finds them by name.
    """
    for subgraph in graph.subgraphs:
        boundary = subgraph.boundary
        for t, tensor in enumerate(subgraph.tensors):
            if t not in boundary:
                tensor.name = None
