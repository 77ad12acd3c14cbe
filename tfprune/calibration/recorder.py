"""Recording the inputs a layer receives while the model runs.

`Recorder` hands each call's first input of chosen layers to a function while the model runs
eagerly, so the layers' inputs are read where the weights are used (inside composite layers
too), batch by batch, without keeping the activations.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CallTap", "Recorder"]


class CallTap:
    """Replaces `layer.call` on each of `layers`' instances while active (the class's own call
    untouched), by `self.wrap(layer, original)`; restores what was there on exit."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = layers

    def wrap(self, layer: Any, original: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self):
        self.own = [layer.__dict__.get("call") for layer in self.layers]
        for layer in self.layers:
            object.__setattr__(layer, "call", self.wrap(layer, layer.call))
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer, own in zip(self.layers, self.own, strict=True):
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)


class Recorder(CallTap):
    """Passes each call's first input of `layers` to `record(layer, input)` while active, before
    running the layer's own call."""

    def __init__(self, layers: list[Any], record) -> None:
        super().__init__(layers)
        self.record = record

    def wrap(self, layer: Any, original: Any) -> Any:
        def call(*args, **kwargs):
            self.record(layer, args[0] if args else next(iter(kwargs.values())))
            return original(*args, **kwargs)

        return call
