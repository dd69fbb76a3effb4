"""Serving: the BentoML service, its input schema, the model store and the prediction log.

Importing this package loads nothing heavy; `faultwatch.serve.service` imports BentoML.
"""
