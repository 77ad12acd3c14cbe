"""The core of pruning: the `PruneLowMagnitude` wrapper and what it holds.

`wrapper` (the layer), `rules` (what it masks and how: one mask rule per wrapper), `targets`
(its pruned weights with their masks), `groups` (updating one wrapper, or several together),
`call_signature` (the call Keras sees), `selection` (which layers a call prunes, with which
schedule), `cloning` and `in_place` (wrapping the layers of a model: a copy, or in a subclassed
model's attributes), `wrap` (whole models, both ways), `find` and `restored` (a model's
wrappers, and masks restored behind their back). Nothing outside this package reads a
wrapper's private state.
"""
