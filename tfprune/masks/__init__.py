"""Masks, computed on the host from weight values alone: no layer, no model, no backend state.

`magnitude` (exact-k selection), `patterns` (blocks and N:M groups), `channels` (whole channel
groups), `allocation` (how a sparsity is shared among weights) and `views` (a weight seen as a
matrix of outputs by inputs).
"""
