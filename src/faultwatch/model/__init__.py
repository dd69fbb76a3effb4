"""The fault classifier: network, LightningModule, DataModule, and the saved-model format.

Import the submodule you need: `faultwatch.model.io` loads a saved model without Lightning,
`faultwatch.model.params` holds the `train` params section without importing torch.
"""
