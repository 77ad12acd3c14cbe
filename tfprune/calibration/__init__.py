"""Calibration: reading a model's activations on a few rows of data.

`data` (the rows, batch by batch, in whatever form they come), `recorder` (a layer's inputs as
the model runs), `statistics` (sums over input rows: squares and Gram matrices) and `ridge`
(the damped least-squares solve that one-shot pruning and the channel update share).
"""
