"""Recording the inputs a layer receives while the model runs.

`Recorder` hands each call's first input of chosen layers to a function while the model runs
eagerly, so the layers' inputs are read where the weights are used (inside composite layers
too), batch by batch, without keeping the activations.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Recorder"]


class Recorder:
    """Replaces `layer.call` on the instance while active, passing each call's first input to
    `record` (as numpy) before running the layer's own call."""

    def __init__(self, layers: list[Any], record) -> None:
        self.layers, self.record = layers, record

    def __enter__(self) -> Recorder:
        self.own = [layer.__dict__.get("call") for layer in self.layers]
        for layer in self.layers:
            original = layer.call

            def call(*args, _layer=layer, _original=original, **kwargs):
                self.record(_layer, args[0] if args else next(iter(kwargs.values())))
                return _original(*args, **kwargs)

            object.__setattr__(layer, "call", call)
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer, own in zip(self.layers, self.own, strict=True):
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)
