"""Keras models and layers as pruning sees them: walking what a model holds (`walk`), which
weights are prunable (`registry`), the kinds of layers (`kinds`), how a weight is a matrix
(`views`), and re-creating a layer from its config (`rebuild`)."""
